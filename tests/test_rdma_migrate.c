/* SPDX-License-Identifier: MIT */
/*
 * Whole migrations over RDMA channels on the in-memory fake fabric
 * ("fake-rdma:", tests/fake_rdma.c): uncompressed pages written one-sided
 * into registered destination RAM and announced, compressed packets through
 * the posted receive buffers, rounds kept apart by the round fence, bad
 * write targets and teardown failing the migration cleanly.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_rdma.h"
#include "fake_verbs.h"
#include "testvm.h"

#define MiB  (1024UL * 1024)
#define PAGE 4096UL

static uint64_t seed;

/* Random contents with runs of zero pages, so that both kinds travel. */
static void fill(struct tvm *vm, unsigned b, uint64_t s)
{
	struct tvm_block *blk = &vm->blocks[b];
	tvm_fill_random(blk->src, blk->size, s);
	uint64_t rng = s;
	for (size_t off = 0; off < blk->size; off += PAGE)
		if (tvm_rand(&rng) % 8 == 0)
			memset(blk->src + off, 0, PAGE);
}

static void setup_vm(struct tvm *vm, unsigned channels, const char *extra)
{
	static char ch[32];
	snprintf(ch, sizeof(ch), "channels=%u", channels);
	const char *kv[] = { ch, "verify=on", extra, NULL };
	tvm_config(vm, kv);
	vm->listen_uri = "fake-rdma:local:0";
}

static void migrate(unsigned channels, size_t ram, const char *extra)
{
	struct tvm vm = { 0 };
	setup_vm(&vm, channels, extra);
	tvm_add_block(&vm, "pc.ram", ram, PAGE);
	tvm_add_block(&vm, "vga.vram", 8 * MiB, PAGE);
	fill(&vm, 0, seed + channels);
	fill(&vm, 1, seed * 3 + channels);
	int dret = -1;
	assert_int_equal(tvm_migrate(&vm, NULL, &dret), 0);
	assert_int_equal(dret, 0);
	assert_true(tvm_equal(&vm));
	assert_int_equal(vm.stopped, 1);
	assert_int_equal(vm.resumed, 0);
	assert_int_equal(vm.loaded, 1);
	mfd_stats s, d;
	assert_int_equal(mfd_source_get_stats(vm.src, &s, sizeof(s)), 0);
	assert_int_equal(mfd_dest_get_stats(vm.dst, &d, sizeof(d)), 0);
	assert_int_equal(s.channels, channels);
	assert_int_equal(s.pages, d.pages);
	assert_int_equal(s.zero_pages, d.zero_pages);
	assert_true(s.zero_pages > 0);
	assert_int_equal(s.wire_bytes, d.wire_bytes);
	/* Guest RAM was registered on both sides. */
	assert_true(s.register_ns > 0);
	assert_true(d.register_ns > 0);
	printf("  %u channels, %zu MiB%s%s: register %.2f/%.2f ms\n", channels,
	       ram / MiB, extra ? ", " : "", extra ? extra : "",
	       s.register_ns / 1e6, d.register_ns / 1e6);
	tvm_destroy(&vm);
}

static void test_one_channel(void **state)
{
	migrate(1, 128 * MiB, NULL);
}

static void test_two_channels(void **state)
{
	migrate(2, 64 * MiB, NULL);
}

static void test_four_channels(void **state)
{
	migrate(4, 256 * MiB, NULL);
}

/* Compressed packets travel through the receive buffers. */
static void test_zstd(void **state)
{
	migrate(2, 64 * MiB, "compression=zstd");
}

/* ---- rounds ---- */

#define RRAM   (64 * MiB)
#define RPAGES (RRAM / PAGE)
#define HOT    4096

struct rounds {
	struct tvm vm;
	uint64_t rng;
	uint32_t syncs;
	uint64_t hot[HOT];
};

/* Between rounds: rewrite the hot pages, a quarter of them as zero pages
 * (the destination clears those itself, so a page of round r+1 written
 * one-sided before round r is applied would be lost). */
static int hook_sync_dirty(void *opaque, unsigned block, uint64_t *bitmap,
			   uint64_t npages)
{
	struct rounds *r = opaque;
	if (block != 0)
		return 0;
	r->syncs++;
	for (unsigned i = 0; i < HOT; i++) {
		uint64_t pg = r->hot[i];
		uint64_t *p = (uint64_t *)(r->vm.blocks[0].src + pg * PAGE);
		if (tvm_rand(&r->rng) % 4 == 0) {
			tvm_guest_write_zero(p, PAGE);
		} else {
			uint64_t head[2] = { r->syncs, pg };
			tvm_guest_write(p, head, sizeof(head));
			uint64_t at = 2 + tvm_rand(&r->rng) % (PAGE / 8 - 2);
			uint64_t v = tvm_rand(&r->rng);
			tvm_guest_write(&p[at], &v, sizeof(v));
		}
		bitmap[pg / 64] |= 1ULL << (pg % 64);
	}
	return 0;
}

static void test_rounds(void **state)
{
	for (unsigned iter = 0; iter < 8; iter++) {
		struct rounds *r = calloc(1, sizeof(*r));
		r->rng = seed + iter;
		setup_vm(&r->vm, 4, "max-rounds=6");
		/* downtime-limit 1 ms keeps the rounds going to max-rounds. */
		mfd_config_set(r->vm.cfg, "downtime-limit", "1");
		tvm_add_block(&r->vm, "pc.ram", RRAM, PAGE);
		fill(&r->vm, 0, seed ^ iter);
		for (unsigned i = 0; i < HOT; i++)
			r->hot[i] = tvm_rand(&r->rng) % RPAGES;
		r->vm.shooks =
			(mfd_source_hooks){ .opaque = r,
					    .sync_dirty = hook_sync_dirty };
		int dret = -1;
		assert_int_equal(tvm_migrate(&r->vm, NULL, &dret), 0);
		assert_int_equal(dret, 0);
		assert_true(tvm_equal(&r->vm));
		mfd_stats st;
		mfd_source_get_stats(r->vm.src, &st, sizeof(st));
		assert_int_equal(st.round, 6);
		tvm_destroy(&r->vm);
		free(r);
	}
}

/* ---- failures ---- */

/* A write the fabric refuses (a key it never issued, or past the end of
 * the region) fails the migration on both sides; the source VM never
 * stopped, or was resumed. */
static void bad_write(enum fake_bad_write what, unsigned nth)
{
	struct tvm vm = { 0 };
	setup_vm(&vm, 2, "io-timeout=5000");
	tvm_add_block(&vm, "pc.ram", 64 * MiB, PAGE);
	fill(&vm, 0, seed + what);
	uint64_t before = tvm_hash(vm.blocks[0].src, 64 * MiB);
	fake_bad_write(nth, what);
	int dret = 0;
	uint64_t t0 = tvm_now_ms();
	int ret = tvm_migrate(&vm, NULL, &dret);
	fake_bad_write(0, FAKE_WRITE_OK);
	printf("  source: %s; destination: %s (%llu ms)\n", mfd_strerror(ret),
	       mfd_strerror(dret), (unsigned long long)(tvm_now_ms() - t0));
	assert_true(ret < 0);
	assert_true(dret < 0);
	assert_int_equal(vm.stopped, vm.resumed);
	assert_int_equal(vm.loaded, 0);
	assert_int_equal(vm.failed, 1);
	assert_true(tvm_hash(vm.blocks[0].src, 64 * MiB) == before);
	mfd_stats s;
	mfd_source_get_stats(vm.src, &s, sizeof(s));
	assert_int_equal(s.phase, MFD_PHASE_FAILED);
	tvm_destroy(&vm);
}

static void test_bad_rkey(void **state)
{
	bad_write(FAKE_WRITE_BAD_RKEY, 100);
}

static void test_write_past_end(void **state)
{
	bad_write(FAKE_WRITE_PAST_END, 300);
}

static int h_stop(void *o)
{
	((struct tvm *)o)->stopped++;
	return 0;
}

static int h_resume(void *o)
{
	((struct tvm *)o)->resumed++;
	return 0;
}

struct canceller {
	struct tvm *vm;
	bool dest;
};

static void *cancel_main(void *arg)
{
	struct canceller *c = arg;
	mfd_stats d;
	for (;;) {
		mfd_dest_get_stats(c->vm->dst, &d, sizeof(d));
		if (d.pages > 2000 || d.phase >= MFD_PHASE_COMPLETED)
			break;
		usleep(200);
	}
	if (c->dest)
		mfd_dest_cancel(c->vm->dst);
	else
		mfd_source_cancel(c->vm->src);
	return NULL;
}

/* Either side torn down while pages are in flight: both end, no hang, no
 * leak (ASan), the source running. */
static void teardown(bool dest)
{
	struct tvm vm = { 0 };
	setup_vm(&vm, 4, NULL);
	tvm_add_block(&vm, "pc.ram", 128 * MiB, PAGE);
	fill(&vm, 0, seed + 77);
	tvm_start_dest(&vm);
	/* The migration has started before the canceller does. */
	mfd_source_hooks sh = { .opaque = &vm,
				.stop = h_stop,
				.resume = h_resume };
	assert_int_equal(mfd_source_new(&vm.src, vm.cfg, &sh), 0);
	assert_int_equal(mfd_source_add_block(vm.src, "pc.ram",
					      vm.blocks[0].src, 128 * MiB,
					      PAGE),
			 0);
	struct canceller c = { &vm, dest };
	pthread_t th;
	assert_int_equal(mfd_source_start(vm.src, vm.uri), 0);
	pthread_create(&th, NULL, cancel_main, &c);
	int ret = mfd_source_wait(vm.src);
	int dret = mfd_dest_wait(vm.dst);
	pthread_join(th, NULL);
	printf("  source: %s; destination: %s\n", mfd_strerror(ret),
	       mfd_strerror(dret));
	assert_true(ret < 0);
	assert_true(dret < 0);
	assert_int_equal(vm.stopped, vm.resumed);
	assert_int_equal(vm.loaded, 0);
	tvm_destroy(&vm);
}

static void test_dest_cancel_mid_transfer(void **state)
{
	teardown(true);
}

static void test_source_cancel_mid_transfer(void **state)
{
	teardown(false);
}

int main(void)
{
	seed = tvm_seed("test_rdma_migrate");
	fake_rdma_install();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_channel),
		cmocka_unit_test(test_two_channels),
		cmocka_unit_test(test_four_channels),
		cmocka_unit_test(test_zstd),
		cmocka_unit_test(test_rounds),
		cmocka_unit_test(test_bad_rkey),
		cmocka_unit_test(test_write_past_end),
		cmocka_unit_test(test_dest_cancel_mid_transfer),
		cmocka_unit_test(test_source_cancel_mid_transfer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
