/* SPDX-License-Identifier: MIT */
/*
 * Degraded channels (docs/protocol.md 7.7): one of 4 data channels is
 * closed or reset by a proxy in round 0, in a later round, or during the
 * final pages (guest stopped). The migration completes on the other
 * three: memory equal byte for byte, the guest's writes all there (a
 * shadow copy), the loaded hook called once, the source's guest stopped
 * once and never resumed, channels_lost = 1 on both sides, in bounded
 * time. On sockets, io_uring and TLS.
 *
 * Without the feature on one side (degraded-channels=off) the same cut
 * fails the migration as before (tests/test_faults.c covers that matrix
 * in full; one case here checks the negotiation).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "multifd/channels/channel.h"
#include "testvm.h"

#define MiB  (1024UL * 1024)
#define RAM  (32 * MiB)
#define PAGE 4096

enum when { R0, LATER, FINAL };
static const char *when_name[] = { "round0", "later-round", "final-pages" };
enum chan { TCP, URING, TLS };
static const char *chan_name[] = { "tcp", "uring", "tls" };
static char tls_dir[64];

struct dcase {
	enum when when;
	int how; /* TVM_CLOSE or TVM_RESET */
	struct tvm vm;
	uint8_t *shadow;
	int syncs;
	int armed, fired; /* atomic */
	uint64_t rng;
};

/* The guest writes 8 bytes in a quarter of the pages each round (both
 * copies), another quarter each time: a page a lost channel carried is
 * not dirty again in the next round, so only the re-send puts it in
 * place; each round still carries megabytes on each channel. */
static int sync_dirty(void *o, unsigned block, uint64_t *bitmap,
		      uint64_t npages)
{
	struct dcase *c = o;
	(void)block;
	c->syncs++;
	for (uint64_t pg = c->syncs % 4; pg < npages; pg += 4) {
		uint64_t v = tvm_rand(&c->rng);
		tvm_guest_write(c->vm.blocks[0].src + pg * PAGE + (v & 0xff8),
				&v, 8);
		memcpy(c->shadow + pg * PAGE + (v & 0xff8), &v, 8);
		bitmap[pg / 64] |= 1ULL << (pg % 64);
	}
	if (c->when == LATER && c->syncs == 2)
		__atomic_store_n(&c->armed, 1, __ATOMIC_RELEASE);
	return 0;
}

static int stop_hook(void *o)
{
	struct dcase *c = o;
	c->vm.stopped++;
	if (c->when == FINAL)
		__atomic_store_n(&c->armed, 1, __ATOMIC_RELEASE);
	return 0;
}

static int resume_hook(void *o)
{
	((struct dcase *)o)->vm.resumed++;
	return 0;
}

/* Connection 2 is data channel 1 (0 is main). */
static int fault(struct tvm_proxy *p, unsigned conn, uint64_t pos, size_t len)
{
	struct dcase *c = p->opaque;
	(void)len;
	if (conn != 2 || __atomic_load_n(&c->fired, __ATOMIC_ACQUIRE))
		return TVM_PASS;
	if (c->when == R0 && pos > MiB)
		__atomic_store_n(&c->armed, 1, __ATOMIC_RELEASE);
	if (!__atomic_load_n(&c->armed, __ATOMIC_ACQUIRE))
		return TVM_PASS;
	__atomic_store_n(&c->fired, 1, __ATOMIC_RELEASE);
	return c->how;
}

static void run(enum when when, int how, enum chan chan, bool dest_off)
{
	if (chan == URING && mfd__uring_available()) {
		print_message("io_uring unavailable here: skipped\n");
		skip();
	}
	struct dcase c = { .when = when, .how = how };
	struct tvm *vm = &c.vm;
	char psk[128];
	snprintf(psk, sizeof(psk), "tls-psk-file=%s/psk", tls_dir);
	const char *kv[] = { "channels=4",
			     "verify=on",
			     "io-timeout=3s",
			     "connect-timeout=2s",
			     "downtime-limit=1ms",
			     "max-rounds=4",
			     "packet-pages=32",
			     chan == URING ? "io-engine=uring"
			     : chan == TLS ? "tls=psk"
					   : NULL,
			     chan == TLS ? psk : NULL,
			     NULL };
	uint64_t seed = tvm_seed("test_degrade");
	c.rng = seed;
	tvm_config(vm, kv);
	c.shadow = tvm_add_random_block(vm, "pc.ram", RAM, PAGE, seed);
	if (dest_off) {
		/* The destination without the feature: the source's hello
		 * asks for it and is refused, so the source goes without. */
		assert_int_equal(
			mfd_config_set(vm->cfg, "degraded-channels", "off"), 0);
	}
	tvm_start_dest(vm);
	if (dest_off)
		assert_int_equal(
			mfd_config_set(vm->cfg, "degraded-channels", "on"), 0);

	struct tvm_proxy px = { .fault = fault, .opaque = &c };
	tvm_proxy_start(&px, vm->uri, 5);
	mfd_source_hooks sh = { .opaque = &c,
				.stop = stop_hook,
				.resume = resume_hook,
				.sync_dirty = sync_dirty };
	assert_int_equal(mfd_source_new(&vm->src, vm->cfg, &sh), 0);
	assert_int_equal(mfd_source_add_block(vm->src, "pc.ram",
					      vm->blocks[0].src, RAM, PAGE),
			 0);
	uint64_t t0 = tvm_now_ms();
	int ret = mfd_source_migrate(vm->src, px.listen_uri);
	/* A destination that refused a main hello waits for another. */
	if (dest_off)
		mfd_dest_cancel(vm->dst);
	int dret = mfd_dest_wait(vm->dst);
	uint64_t dt = tvm_now_ms() - t0;
	tvm_proxy_stop(&px);
	mfd_stats ss, ds;
	mfd_source_get_stats(vm->src, &ss, sizeof(ss));
	mfd_dest_get_stats(vm->dst, &ds, sizeof(ds));
	print_message("%s/%s/%s%s: source %s, destination %s, lost %u/%u, "
		      "%u rounds, %llu ms\n",
		      chan_name[chan], when_name[when],
		      how == TVM_CLOSE ? "close" : "reset",
		      dest_off ? "/dest-off" : "", mfd_strerror(ret),
		      mfd_strerror(dret), ss.channels_lost, ds.channels_lost,
		      ss.round, (unsigned long long)dt);
	assert_true(dest_off || __atomic_load_n(&c.fired, __ATOMIC_ACQUIRE));
	assert_true(dt < 20000);
	assert_memory_equal(vm->blocks[0].src, c.shadow, RAM);
	if (dest_off) {
		/* Refused at the handshake: nothing was migrated. */
		assert_int_equal(ret, MFD_EFEATURE);
		assert_int_equal(vm->loaded, 0);
		assert_int_equal(vm->stopped, vm->resumed);
	} else {
		assert_int_equal(ret, 0);
		assert_int_equal(dret, 0);
		assert_int_equal(ss.phase, MFD_PHASE_COMPLETED);
		assert_int_equal(ss.channels_lost, 1);
		assert_int_equal(ds.channels_lost, 1);
		assert_int_equal(vm->loaded, 1);
		assert_int_equal(vm->stopped, 1);
		assert_int_equal(vm->resumed, 0);
		assert_memory_equal(vm->blocks[0].dst, vm->blocks[0].src, RAM);
	}
	tvm_unmap(c.shadow, RAM);
	tvm_destroy(vm);
}

#define CASE(c, w, h)                                                          \
	static void test_##c##_##w##_##h(void **state)                         \
	{                                                                      \
		(void)state;                                                   \
		run(w, TVM_##h, c, false);                                     \
	}
CASE(TCP, R0, CLOSE)
CASE(TCP, R0, RESET)
CASE(TCP, LATER, CLOSE)
CASE(TCP, LATER, RESET)
CASE(TCP, FINAL, CLOSE)
CASE(TCP, FINAL, RESET)
CASE(URING, R0, RESET)
CASE(URING, LATER, CLOSE)
CASE(URING, FINAL, RESET)
CASE(TLS, R0, CLOSE)
CASE(TLS, LATER, RESET)
CASE(TLS, FINAL, CLOSE)

static void test_dest_without_feature(void **state)
{
	(void)state;
	run(LATER, TVM_RESET, TCP, true);
}

#define T(c, w, h) cmocka_unit_test(test_##c##_##w##_##h)

int main(void)
{
	if (tvm_psk_dir(tls_dir, sizeof(tls_dir), "degrade"))
		return 1;
	const struct CMUnitTest tests[] = {
		T(TCP, R0, CLOSE),
		T(TCP, R0, RESET),
		T(TCP, LATER, CLOSE),
		T(TCP, LATER, RESET),
		T(TCP, FINAL, CLOSE),
		T(TCP, FINAL, RESET),
		T(URING, R0, RESET),
		T(URING, LATER, CLOSE),
		T(URING, FINAL, RESET),
		T(TLS, R0, CLOSE),
		T(TLS, LATER, RESET),
		T(TLS, FINAL, CLOSE),
		cmocka_unit_test(test_dest_without_feature),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	tvm_psk_dir_remove(tls_dir);
	return ret;
}
