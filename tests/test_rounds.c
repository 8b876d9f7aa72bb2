/* SPDX-License-Identifier: MIT */
/*
 * Rounds and the sync barrier, before real dirty tracking: between rounds
 * the sync_dirty hook rewrites a hot set of pages with new contents and
 * reports them (half through the hook's bitmap, half through
 * mfd_source_mark_dirty), while a "vCPU" thread keeps writing and marking
 * pages until the stop hook pauses it. The same pages travel in every round
 * over 4 channels, so a page of an old round applied after a newer copy
 * would leave the destination different from the source.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testvm.h"

#define MiB    (1024UL * 1024)
#define RAM    (64 * MiB)
#define PAGE   4096UL
#define NPAGES (RAM / PAGE)
#define HOT    4096

struct ctx {
	struct tvm vm;
	uint64_t rng;
	uint32_t syncs;
	uint64_t hot[HOT];
	/* vCPU thread */
	pthread_t th;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	bool has_vcpu, paused, quit, ack;
	uint64_t vcpu_rng;
	uint64_t vcpu_writes;
};

static uint64_t seed;

static void write_page(struct ctx *c, uint64_t page, uint64_t *rng,
		       uint32_t stamp)
{
	uint64_t *p = (uint64_t *)(c->vm.blocks[0].src + page * PAGE);
	p[0] = stamp;
	p[1] = page;
	p[2 + tvm_rand(rng) % (PAGE / 8 - 2)] = tvm_rand(rng);
}

static int hook_sync_dirty(void *opaque, unsigned block, uint64_t *bitmap,
			   uint64_t npages)
{
	struct ctx *c = opaque;
	assert_int_equal(npages, NPAGES);
	c->syncs++;
	for (unsigned i = 0; i < HOT; i++) {
		uint64_t pg = c->hot[i];
		write_page(c, pg, &c->rng, c->syncs);
		if (i & 1)
			bitmap[pg / 64] |= 1ULL << (pg % 64);
		else
			assert_int_equal(mfd_source_mark_dirty(c->vm.src, 0,
							       pg * PAGE, PAGE),
					 0);
	}
	return 0;
}

static void *vcpu_main(void *arg)
{
	struct ctx *c = arg;
	for (;;) {
		pthread_mutex_lock(&c->lock);
		while (c->paused && !c->quit) {
			c->ack = true;
			pthread_cond_broadcast(&c->cv);
			pthread_cond_wait(&c->cv, &c->lock);
		}
		bool quit = c->quit;
		pthread_mutex_unlock(&c->lock);
		if (quit)
			return NULL;
		/* Write, then report: a write is never reported before it
		 * happened, as with a hardware dirty log. */
		for (int k = 0; k < 16; k++) {
			uint64_t pg = tvm_rand(&c->vcpu_rng) % NPAGES;
			write_page(c, pg, &c->vcpu_rng, 0xc0ffee);
			mfd_source_mark_dirty(c->vm.src, 0, pg * PAGE, PAGE);
			__atomic_fetch_add(&c->vcpu_writes, 1,
					   __ATOMIC_RELAXED);
		}
		usleep(200); /* about 300 MB/s of dirtying */
	}
}

static int hook_stop(void *opaque)
{
	struct ctx *c = opaque;
	pthread_mutex_lock(&c->lock);
	c->paused = true;
	c->ack = false;
	pthread_cond_broadcast(&c->cv);
	while (c->has_vcpu && !c->ack)
		pthread_cond_wait(&c->cv, &c->lock);
	pthread_mutex_unlock(&c->lock);
	c->vm.stopped++;
	return 0;
}

static int hook_resume(void *opaque)
{
	struct ctx *c = opaque;
	pthread_mutex_lock(&c->lock);
	c->paused = false;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->lock);
	c->vm.resumed++;
	return 0;
}

/* Slows the first data channel so that rounds overlap in flight: without
 * the destination's barrier a late page of round r lands over round r+1. */
static void slow_channel(struct tvm_proxy *p, unsigned conn, uint64_t pos,
			 uint8_t *buf, size_t len)
{
	if (conn == 1)
		usleep(1000);
}

static void run_once(unsigned iter, bool vcpu, bool slow)
{
	struct ctx *c = calloc(1, sizeof(*c));
	c->rng = seed + iter;
	c->vcpu_rng = seed * 7 + iter;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cv, NULL);
	/* downtime-limit 1 ms keeps the rounds going until max-rounds. */
	const char *kv[] = { "channels=4", "verify=on", "max-rounds=6",
			     "downtime-limit=1", NULL };
	tvm_config(&c->vm, kv);
	tvm_add_block(&c->vm, "pc.ram", RAM, PAGE);
	tvm_fill_random(c->vm.blocks[0].src, RAM, seed ^ iter);
	for (unsigned i = 0; i < HOT; i++)
		c->hot[i] = tvm_rand(&c->rng) % NPAGES;
	c->vm.shooks = (mfd_source_hooks){ .opaque = c,
					   .stop = hook_stop,
					   .resume = hook_resume,
					   .sync_dirty = hook_sync_dirty };
	tvm_start_dest(&c->vm);
	/* The source handle must exist before the vCPU marks pages. */
	mfd_source_hooks sh = c->vm.shooks;
	assert_int_equal(mfd_source_new(&c->vm.src, c->vm.cfg, &sh), 0);
	assert_int_equal(mfd_source_add_block(c->vm.src, "pc.ram",
					      c->vm.blocks[0].src, RAM, PAGE),
			 0);
	c->has_vcpu = vcpu;
	if (vcpu) {
		pthread_create(&c->th, NULL, vcpu_main, c);
		/* On a loaded machine the vCPU may not have run yet: let it
		 * write before the migration starts, so it really races. */
		while (__atomic_load_n(&c->vcpu_writes, __ATOMIC_RELAXED) < 64)
			usleep(100);
	}
	struct tvm_proxy proxy = { .damage = slow_channel };
	if (slow)
		tvm_proxy_start(&proxy, c->vm.uri, 5);
	int ret = mfd_source_migrate(c->vm.src,
				     slow ? proxy.listen_uri : c->vm.uri);
	if (slow)
		tvm_proxy_stop(&proxy);
	int dret = mfd_dest_wait(c->vm.dst);
	assert_int_equal(ret, 0);
	assert_int_equal(dret, 0);
	/* The vCPU is paused: source memory is what it was at the stop. */
	assert_true(tvm_equal(&c->vm));
	mfd_stats st;
	mfd_source_get_stats(c->vm.src, &st, sizeof(st));
	assert_int_equal(st.round, 6); /* rounds 0..5, final round 6 */
	assert_int_equal(c->syncs, 7);
	assert_int_equal(c->vm.stopped, 1);
	assert_int_equal(c->vm.resumed, 0);
	if (vcpu) {
		pthread_mutex_lock(&c->lock);
		c->quit = true;
		pthread_cond_broadcast(&c->cv);
		pthread_mutex_unlock(&c->lock);
		pthread_join(c->th, NULL);
		assert_true(c->vcpu_writes > 0);
	}
	tvm_destroy(&c->vm);
	free(c);
}

static void test_rounds_hook_only(void **state)
{
	for (unsigned i = 0; i < 5; i++)
		run_once(i, false, false);
}

static void test_rounds_with_vcpu(void **state)
{
	for (unsigned i = 0; i < 15; i++)
		run_once(100 + i, true, false);
}

static void test_rounds_slow_channel(void **state)
{
	for (unsigned i = 0; i < 4; i++)
		run_once(200 + i, true, true);
}

int main(void)
{
	tvm_io_engine("test_rounds");
	seed = tvm_seed("test_rounds");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rounds_hook_only),
		cmocka_unit_test(test_rounds_with_vcpu),
		cmocka_unit_test(test_rounds_slow_channel),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
