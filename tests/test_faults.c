/* SPDX-License-Identifier: MIT */
/*
 * Fault matrix: a migration through a proxy is broken at a chosen point
 * (round 0, a later round, switchover) in a chosen way (close or reset a
 * data channel, close the main channel, stall a channel, corrupt a byte,
 * kill the destination, cancel from the source). In every case:
 *  - the source fails with a cause (its stats say the same);
 *  - its memory is what its writer wrote (hash against a shadow copy);
 *  - stop and resume hooks balance: the guest runs again;
 *  - the destination never calls loaded and fails too;
 *  - the case ends in bounded time (short io-timeout);
 *  - the same source handle then migrates to a fresh destination.
 * Leaks are caught by the ASan build (detect_leaks=1).
 * A fault during the device state phase is tests/test_devices.c's
 * test_fault_during_device_state (it needs devices on both sides); faults
 * of the post-copy messages (DISCARD, SWITCH, flagged PAGES, PAGE_REQ)
 * are tests/test_postcopy.c's "faults" cases: after SWITCH the guest is
 * never resumed, the opposite of what this matrix asserts.
 *
 * Every case runs on TCP sockets; a representative subset (reset, close
 * main, stall, corrupt, kill the destination, over the three phases) runs
 * again on io_uring channels (io-engine=uring, skipped where io_uring is
 * unavailable) and on TLS channels (tls=psk), where the proxy sees only
 * records: a corrupt byte there is a record that fails its check.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "multifd/wire.h"
#include "multifd/channels/channel.h"
#include "testvm.h"

#define MiB  (1024UL * 1024)
#define RAM  (8 * MiB)
#define PAGE 4096

enum when { R0, LATER, SWITCHOVER };
enum what {
	CLOSE_DATA,
	RESET_DATA,
	CLOSE_MAIN,
	STALL_DATA,
	STALL_MAIN,
	CORRUPT_DATA,
	KILL_DEST,
	CANCEL_SRC,
};
static const char *what_name[] = { "close-data", "reset-data", "close-main",
				   "stall-data", "stall-main", "corrupt-data",
				   "kill-dest",	 "cancel-src" };
static const char *when_name[] = { "round0", "later-round", "switchover" };
enum chan { TCP, URING, TLS };
static const char *chan_name[] = { "tcp", "uring", "tls" };
static char tls_dir[64]; /* holds the PSK file of the TLS cases */

struct fault_case {
	enum when when;
	enum what what;
	enum chan chan;
	struct tvm vm;
	uint8_t *shadow; /* what the guest wrote, kept beside its memory */
	int syncs;	 /* sync_dirty calls (one per block per round) */
	int armed;	 /* atomic: the fault fires at the next chunk */
	int fired;	 /* atomic */
	uint64_t rng;
	uint64_t hstart; /* stream position of the next packet header */
	uint8_t hbuf[MFD_PKT_HDR_SIZE];
};

static struct fault_case *cur;

static void fire_direct(struct fault_case *fc)
{
	__atomic_store_n(&fc->fired, 1, __ATOMIC_RELEASE);
	if (fc->what == KILL_DEST)
		mfd_dest_cancel(fc->vm.dst);
	else
		mfd_source_cancel(fc->vm.src);
}

static void arm(struct fault_case *fc)
{
	if (fc->what == KILL_DEST || fc->what == CANCEL_SRC)
		fire_direct(fc);
	else
		__atomic_store_n(&fc->armed, 1, __ATOMIC_RELEASE);
}

/* The guest's writer: a few pages changed per round, on both copies. */
static int sync_dirty(void *o, unsigned block, uint64_t *bitmap,
		      uint64_t npages)
{
	struct fault_case *fc = o;
	fc->syncs++;
	/* Every page, every round: with downtime-limit 1 ms the rounds go
	 * on until max-rounds, so "a later round" is one. */
	for (uint64_t pg = 0; pg < npages; pg++) {
		uint64_t v = tvm_rand(&fc->rng);
		tvm_guest_write(fc->vm.blocks[block].src + pg * PAGE +
					(v & 0xff8),
				&v, 8);
		memcpy(fc->shadow + pg * PAGE + (v & 0xff8), &v, 8);
		bitmap[pg / 64] |= 1ULL << (pg % 64);
	}
	if (fc->when == LATER && fc->syncs == 2)
		arm(fc);
	return 0;
}

static int stop_hook(void *o)
{
	struct fault_case *fc = o;
	fc->vm.stopped++;
	if (fc->when == SWITCHOVER)
		arm(fc);
	return 0;
}

static int resume_hook(void *o)
{
	((struct fault_case *)o)->vm.resumed++;
	return 0;
}

static int fault(struct tvm_proxy *p, unsigned conn, uint64_t pos, size_t len)
{
	struct fault_case *fc = p->opaque;
	bool on_main = fc->what == CLOSE_MAIN || fc->what == STALL_MAIN;
	/* Round 0: once data channel 0 is well into its pages. */
	if (fc->when == R0 && conn == 1 && pos > MiB &&
	    !__atomic_load_n(&fc->fired, __ATOMIC_ACQUIRE)) {
		if (fc->what == KILL_DEST || fc->what == CANCEL_SRC)
			fire_direct(fc);
		else
			__atomic_store_n(&fc->armed, 1, __ATOMIC_RELEASE);
	}
	if (!__atomic_load_n(&fc->armed, __ATOMIC_ACQUIRE))
		return TVM_PASS;
	if ((on_main && conn != 0) || (!on_main && conn != 1) ||
	    fc->what == CORRUPT_DATA)
		return TVM_PASS;
	__atomic_store_n(&fc->fired, 1, __ATOMIC_RELEASE);
	switch (fc->what) {
	case CLOSE_DATA:
	case CLOSE_MAIN:
		return TVM_CLOSE;
	case RESET_DATA:
		return TVM_RESET;
	case STALL_DATA:
	case STALL_MAIN:
		return TVM_STALL;
	default:
		return TVM_PASS;
	}
}

/*
 * Follows the packet stream of data channel 0 (hello, then header, offsets,
 * payload, ...) and, once armed, flips the first byte of the next packet
 * header: a byte of page data could be healed by a later round's copy of
 * the page, a header byte never is.
 */
static void damage(struct tvm_proxy *p, unsigned conn, uint64_t pos,
		   uint8_t *buf, size_t len)
{
	struct fault_case *fc = p->opaque;
	if (fc->what != CORRUPT_DATA || conn != 1)
		return;
	if (fc->chan == TLS) {
		/* Records only: any changed byte fails the record. */
		if (__atomic_load_n(&fc->armed, __ATOMIC_ACQUIRE) &&
		    !__atomic_exchange_n(&fc->fired, 1, __ATOMIC_ACQ_REL))
			buf[len / 2] ^= 0x5a;
		return;
	}
	for (uint64_t at = pos; at < pos + len;) {
		if (at < fc->hstart) {
			at = fc->hstart;
			continue;
		}
		size_t i = (size_t)(at - fc->hstart);
		fc->hbuf[i] = buf[at - pos];
		if (i == 0 && __atomic_load_n(&fc->armed, __ATOMIC_ACQUIRE) &&
		    !__atomic_exchange_n(&fc->fired, 1, __ATOMIC_ACQ_REL))
			buf[at - pos] ^= 0x5a;
		at++;
		if (i + 1 < MFD_PKT_HDR_SIZE)
			continue;
		uint64_t next = MFD_PKT_HDR_SIZE;
		if (mfd__get_le16(fc->hbuf + 4) == MFD_PKT_PAGES)
			next += ((uint64_t)mfd__get_le32(fc->hbuf + 16) +
				 mfd__get_le32(fc->hbuf + 20)) *
					8 +
				mfd__get_le32(fc->hbuf + 24);
		fc->hstart += next;
	}
}

static mfd_dest *fresh_dest(struct tvm *vm, uint8_t *mem, char *uri, size_t len)
{
	mfd_dest *d;
	assert_int_equal(mfd_dest_new(&d, vm->cfg, NULL), 0);
	assert_int_equal(mfd_dest_add_block(d, "pc.ram", mem, RAM, PAGE), 0);
	assert_int_equal(mfd_dest_start(d, "tcp:127.0.0.1:0"), 0);
	assert_int_equal(mfd_dest_get_uri(d, uri, len), 0);
	return d;
}

static void run_case(enum when when, enum what what, enum chan chan)
{
	if (chan == URING && mfd__uring_available()) {
		print_message("io_uring unavailable here: skipped\n");
		skip();
	}
	struct fault_case fc = { .when = when,
				 .what = what,
				 .chan = chan,
				 .hstart = MFD_HELLO_SIZE };
	struct tvm *vm = &fc.vm;
	char psk[128];
	snprintf(psk, sizeof(psk), "tls-psk-file=%s/psk", tls_dir);
	/* A lost data channel fails the migration here, as between peers
	 * without MFD_FEAT_DEGRADE; tests/test_degrade.c has it on. A break
	 * in pre-copy fails it too, as without MFD_FEAT_RESUME (it would
	 * pause for resume-timeout: tests/test_resume.c). */
	const char *kv[] = { "channels=2",
			     "degraded-channels=off",
			     "resume-timeout=0",
			     "verify=on",
			     "io-timeout=3s",
			     "connect-timeout=1s",
			     "downtime-limit=1ms",
			     "max-rounds=6",
			     "packet-pages=32",
			     chan == URING ? "io-engine=uring"
			     : chan == TLS ? "tls=psk"
					   : NULL,
			     chan == TLS ? psk : NULL,
			     NULL };
	uint64_t seed = tvm_seed("test_faults");
	fc.rng = seed;
	cur = &fc;
	tvm_config(vm, kv);
	fc.shadow = tvm_add_random_block(vm, "pc.ram", RAM, PAGE, seed);
	tvm_start_dest(vm);

	struct tvm_proxy px = { .fault = fault,
				.damage = damage,
				.opaque = &fc };
	tvm_proxy_start(&px, vm->uri, 3);
	mfd_source_hooks sh = { .opaque = &fc,
				.stop = stop_hook,
				.resume = resume_hook,
				.sync_dirty = sync_dirty };
	assert_int_equal(mfd_source_new(&vm->src, vm->cfg, &sh), 0);
	assert_int_equal(mfd_source_add_block(vm->src, "pc.ram",
					      vm->blocks[0].src, RAM, PAGE),
			 0);
	uint64_t t0 = tvm_now_ms();
	int ret = mfd_source_migrate(vm->src, px.listen_uri);
	int dret = mfd_dest_wait(vm->dst);
	uint64_t dt = tvm_now_ms() - t0;
	tvm_proxy_stop(&px);
	mfd_stats st;
	mfd_source_get_stats(vm->src, &st, sizeof(st));
	print_message("%s/%s/%s: source %s, destination %s, %llu ms\n",
		      chan_name[chan], when_name[when], what_name[what],
		      mfd_strerror(ret), mfd_strerror(dret),
		      (unsigned long long)dt);

	assert_true(__atomic_load_n(&fc.fired, __ATOMIC_ACQUIRE));
	assert_true(ret < 0);
	assert_int_equal(st.error, ret);
	assert_int_equal(st.phase, ret == -ECANCELED ? MFD_PHASE_CANCELLED
						     : MFD_PHASE_FAILED);
	if (what == CANCEL_SRC)
		assert_int_equal(ret, -ECANCELED);
	assert_true(dret < 0);
	assert_int_equal(vm->loaded, 0);
	assert_int_equal(vm->stopped, vm->resumed);
	/* A fault that the source sees late (its socket buffers hold all
	 * of round 0) may find it in switchover already. */
	assert_true(vm->stopped <= 1);
	if (when == SWITCHOVER)
		assert_int_equal(vm->stopped, 1);
	assert_memory_equal(vm->blocks[0].src, fc.shadow, RAM);
	assert_true(dt < 12000);

	/* The same VM, the same handle, a fresh destination: it works. */
	uint8_t *mem = tvm_map(RAM);
	char uri[128];
	mfd_dest *d = fresh_dest(vm, mem, uri, sizeof(uri));
	fc.when = (enum when)99; /* no more faults */
	assert_int_equal(mfd_source_migrate(vm->src, uri), 0);
	assert_int_equal(mfd_dest_wait(d), 0);
	assert_memory_equal(mem, vm->blocks[0].src, RAM);
	assert_memory_equal(vm->blocks[0].src, fc.shadow, RAM);
	assert_int_equal(vm->stopped, vm->resumed + 1);
	mfd_dest_free(d);
	tvm_unmap(mem, RAM);
	tvm_unmap(fc.shadow, RAM);
	tvm_destroy(vm);
}

#define CASE(w, x)                                                             \
	static void test_##w##_##x(void **state)                               \
	{                                                                      \
		(void)state;                                                   \
		run_case(w, x, TCP);                                           \
	}
#define VARIANT(c, w, x)                                                       \
	static void test_##c##_##w##_##x(void **state)                         \
	{                                                                      \
		(void)state;                                                   \
		run_case(w, x, c);                                             \
	}
#define SUBSET(c)                                                              \
	VARIANT(c, R0, RESET_DATA)                                             \
	VARIANT(c, R0, CLOSE_MAIN)                                             \
	VARIANT(c, LATER, STALL_DATA)                                          \
	VARIANT(c, LATER, CORRUPT_DATA)                                        \
	VARIANT(c, SWITCHOVER, KILL_DEST)                                      \
	VARIANT(c, SWITCHOVER, RESET_DATA)
#define ALL(w)                                                                 \
	CASE(w, CLOSE_DATA)                                                    \
	CASE(w, RESET_DATA)                                                    \
	CASE(w, CLOSE_MAIN)                                                    \
	CASE(w, STALL_DATA)                                                    \
	CASE(w, STALL_MAIN)                                                    \
	CASE(w, CORRUPT_DATA)                                                  \
	CASE(w, KILL_DEST)                                                     \
	CASE(w, CANCEL_SRC)
ALL(R0)
ALL(LATER)
ALL(SWITCHOVER)
SUBSET(URING)
SUBSET(TLS)

/* Cancel while the source waits in setup (a destination that never
 * answers the hello), and after completion (no effect). */
static void test_cancel_setup_and_after(void **state)
{
	(void)state;
	struct fault_case fc = { .when = R0, .what = STALL_MAIN };
	struct tvm *vm = &fc.vm;
	const char *kv[] = { "channels=2", "connect-timeout=10s", NULL };
	tvm_config(vm, kv);
	tvm_add_block(vm, "pc.ram", RAM, PAGE);
	tvm_fill_random(vm->blocks[0].src, RAM, 3);
	tvm_start_dest(vm);
	struct tvm_proxy px = { .fault = fault, .opaque = &fc };
	fc.armed = 1; /* main stalls from its first byte */
	tvm_proxy_start(&px, vm->uri, 1);
	mfd_source_hooks sh = { .opaque = &fc,
				.stop = stop_hook,
				.resume = resume_hook };
	assert_int_equal(mfd_source_new(&vm->src, vm->cfg, &sh), 0);
	assert_int_equal(mfd_source_add_block(vm->src, "pc.ram",
					      vm->blocks[0].src, RAM, PAGE),
			 0);
	assert_int_equal(mfd_source_start(vm->src, px.listen_uri), 0);
	usleep(200000);
	mfd_stats st;
	mfd_source_get_stats(vm->src, &st, sizeof(st));
	assert_int_equal(st.phase, MFD_PHASE_SETUP);
	uint64_t t0 = tvm_now_ms();
	assert_int_equal(mfd_source_cancel(vm->src), 0);
	assert_int_equal(mfd_source_wait(vm->src), -ECANCELED);
	assert_true(tvm_now_ms() - t0 < 3000);
	assert_int_equal(vm->stopped, 0);
	tvm_proxy_stop(&px);

	/* Then straight to the destination: succeeds; cancel afterwards
	 * changes nothing. */
	assert_int_equal(mfd_source_migrate(vm->src, vm->uri), 0);
	assert_int_equal(mfd_dest_wait(vm->dst), 0);
	assert_int_equal(mfd_source_cancel(vm->src), 0);
	assert_int_equal(mfd_source_wait(vm->src), 0);
	mfd_source_get_stats(vm->src, &st, sizeof(st));
	assert_int_equal(st.phase, MFD_PHASE_COMPLETED);
	assert_int_equal(st.error, 0);
	assert_int_equal(vm->stopped, 1);
	assert_int_equal(vm->resumed, 0);
	assert_true(tvm_equal(vm));

	/* And a new source handle for the same VM migrates it again. */
	uint8_t *mem = tvm_map(RAM);
	char uri[128];
	mfd_dest *d = fresh_dest(vm, mem, uri, sizeof(uri));
	mfd_source *s2;
	assert_int_equal(mfd_source_new(&s2, vm->cfg, &sh), 0);
	assert_int_equal(mfd_source_add_block(s2, "pc.ram", vm->blocks[0].src,
					      RAM, PAGE),
			 0);
	assert_int_equal(mfd_source_migrate(s2, uri), 0);
	assert_int_equal(mfd_dest_wait(d), 0);
	assert_memory_equal(mem, vm->blocks[0].src, RAM);
	mfd_source_free(s2);
	mfd_dest_free(d);
	tvm_unmap(mem, RAM);
	tvm_destroy(vm);
}

#define T(w, x) cmocka_unit_test(test_##w##_##x)
#define TALL(w)                                                                \
	T(w, CLOSE_DATA), T(w, RESET_DATA), T(w, CLOSE_MAIN),                  \
		T(w, STALL_DATA), T(w, STALL_MAIN), T(w, CORRUPT_DATA),        \
		T(w, KILL_DEST), T(w, CANCEL_SRC)
#define V(c, w, x) cmocka_unit_test(test_##c##_##w##_##x)
#define TSUBSET(c)                                                             \
	V(c, R0, RESET_DATA), V(c, R0, CLOSE_MAIN), V(c, LATER, STALL_DATA),   \
		V(c, LATER, CORRUPT_DATA), V(c, SWITCHOVER, KILL_DEST),        \
		V(c, SWITCHOVER, RESET_DATA)

int main(void)
{
	if (tvm_psk_dir(tls_dir, sizeof(tls_dir), "faults"))
		return 1;
	const struct CMUnitTest tests[] = {
		TALL(R0),	  TALL(LATER),
		TALL(SWITCHOVER), TSUBSET(URING),
		TSUBSET(TLS),	  cmocka_unit_test(test_cancel_setup_and_after),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	tvm_psk_dir_remove(tls_dir);
	return ret;
}
