/* SPDX-License-Identifier: MIT */
/*
 * Resumable pre-copy (docs/protocol.md 7.8): a proxy resets every
 * connection of a migration in round 2 (the data channels as they send,
 * main when it next speaks); both sides pause (paused hooks, phase
 * paused) and keep their state.
 *
 * - resumed: mfd_source_resume() to the destination's listener (not
 *   through the proxy: another path) completes the migration: memory
 *   equal byte for byte, the guest's writes all there (a shadow copy),
 *   one resume on each side, the bytes sent again reported and no more
 *   than what was in flight; on sockets, io_uring and TLS, without
 *   degraded channels (every cut pauses) and, on sockets, with them.
 * - no resume: after resume-timeout (1 s here) the source fails with the
 *   break's cause, its guest never stopped (it ran all along), the
 *   destination fails (failed hook), in bounded time.
 * - refused: while paused, a RESUME hello with another session id is
 *   refused with MFD_ESESSION, one with the session's id and another key
 *   with MFD_EAUTH, a resume to where nothing listens fails; the source
 *   stays paused and the right resume then completes.
 */
#include <errno.h>
#include <fcntl.h>
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

#include "multifd/admit.h"
#include "multifd/auth.h"
#include "multifd/channels/channel.h"
#include "testvm.h"

#define MiB  (1024UL * 1024)
#define RAM  (32 * MiB)
#define PAGE 4096

enum chan { TCP, URING, TLS };
static const char *chan_name[] = { "tcp", "uring", "tls" };
static char tls_dir[64];

struct rcase {
	struct tvm vm;
	uint8_t *shadow;
	int syncs;
	int armed, cut;		   /* atomic */
	int src_paused, src_cause; /* atomic */
	uint64_t rng;
	uint8_t hello[MFD_HELLO_SIZE]; /* main's, as it passed the proxy */
	int have_hello;
};

/* The guest writes 8 bytes into a quarter of the pages each round (both
 * copies), another quarter each time: a page lost in flight is not dirty
 * again at once, so only the re-send after the resume puts it in place. */
static void guest_write(struct rcase *c, uint64_t pg, uint64_t *bitmap)
{
	uint64_t v = tvm_rand(&c->rng);
	tvm_guest_write(c->vm.blocks[0].src + pg * PAGE + (v & 0xff8), &v, 8);
	memcpy(c->shadow + pg * PAGE + (v & 0xff8), &v, 8);
	bitmap[pg / 64] |= 1ULL << (pg % 64);
}

static int sync_dirty(void *o, unsigned block, uint64_t *bitmap,
		      uint64_t npages)
{
	struct rcase *c = o;
	(void)block;
	c->syncs++;
	for (uint64_t pg = c->syncs % 4; pg < npages; pg += 4)
		if (pg % 16 != 1 || c->syncs <= 2)
			guest_write(c, pg, bitmap);
	/* Pages written for rounds 1 and 2 only (the cut comes in round
	 * 2): the copy of round 1 may be in place on the destination while
	 * the newer one of round 2 was lost in flight, and nothing writes
	 * them again. */
	if (c->syncs <= 2)
		for (uint64_t pg = 1; pg < npages; pg += 16)
			guest_write(c, pg, bitmap);
	if (c->syncs == 2)
		__atomic_store_n(&c->armed, 1, __ATOMIC_RELEASE);
	return 0;
}

static int stop_hook(void *o)
{
	((struct rcase *)o)->vm.stopped++;
	return 0;
}

static int resume_hook(void *o)
{
	((struct rcase *)o)->vm.resumed++;
	return 0;
}

static void paused_hook(void *o, int cause)
{
	struct rcase *c = o;
	c->src_cause = cause;
	__atomic_fetch_add(&c->src_paused, 1, __ATOMIC_RELEASE);
}

/* Once armed (round 2) and a data channel is past its first MiB: every
 * connection is reset as it next sends, main included. */
static int fault(struct tvm_proxy *p, unsigned conn, uint64_t pos, size_t len)
{
	struct rcase *c = p->opaque;
	(void)len;
	if (__atomic_load_n(&c->cut, __ATOMIC_ACQUIRE))
		return TVM_RESET;
	if (conn == 0 || pos < MiB ||
	    !__atomic_load_n(&c->armed, __ATOMIC_ACQUIRE))
		return TVM_PASS;
	__atomic_store_n(&c->cut, 1, __ATOMIC_RELEASE);
	return TVM_RESET;
}

/* Keeps main's hello (without TLS): its session id and features. */
static void spy(struct tvm_proxy *p, unsigned conn, uint64_t pos, uint8_t *buf,
		size_t len)
{
	struct rcase *c = p->opaque;
	if (conn == 0 && pos == 0 && len >= MFD_HELLO_SIZE && !c->have_hello) {
		memcpy(c->hello, buf, MFD_HELLO_SIZE);
		c->have_hello = 1;
	}
}

static const char *key_file(const char *name, char ch)
{
	static char path[2][128];
	char *f = path[ch != 'a'];
	snprintf(f, sizeof(path[0]), "%s/%s", tls_dir, name);
	int fd = open(f, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	char k[64];
	memset(k, ch, sizeof(k));
	assert_int_equal(write(fd, k, sizeof(k)), (ssize_t)sizeof(k));
	close(fd);
	return f;
}

static void wait_phase(mfd_source *s, mfd_dest *d, int phase)
{
	uint64_t t0 = tvm_now_ms();
	for (;;) {
		mfd_stats ss, ds;
		mfd_source_get_stats(s, &ss, sizeof(ss));
		mfd_dest_get_stats(d, &ds, sizeof(ds));
		if (ss.phase == phase && ds.phase == phase)
			return;
		assert_true(ss.phase != MFD_PHASE_FAILED);
		assert_true(tvm_now_ms() - t0 < 15000);
		usleep(10000);
	}
}

/* A hand-made RESUME: main's hello with session or key changed. */
static int foreign_resume(struct rcase *c, bool other_session)
{
	struct mfd__hello h;
	assert_true(c->have_hello);
	assert_int_equal(mfd__hello_decode(c->hello, &h), 0);
	h.role = MFD_ROLE_RESUME;
	if (other_session)
		h.session[0] ^= 0x5a;
	struct mfd__key key;
	assert_int_equal(mfd__auth_key_load(key_file("other", 'b'), &key), 0);
	struct mfd__chan *ch;
	assert_int_equal(mfd__connect(NULL, c->vm.uri, 2000, &ch), 0);
	ch->ops->set_timeout(ch, 2000);
	uint64_t f = 0;
	int ret = mfd__handshake_source(ch, &h, &key, &f);
	ch->ops->close(ch);
	return ret;
}

/* RESUMED_DG: with degraded channels on, the first connections cut are
 * dropped (their pages settled as 7.7 says) before the last pauses. */
enum mode { RESUMED, NO_RESUME, REFUSED, RESUMED_DG };

static void run(enum chan chan, enum mode mode)
{
	if (chan == URING && mfd__uring_available()) {
		print_message("io_uring unavailable here: skipped\n");
		skip();
	}
	struct rcase c = { 0 };
	struct tvm *vm = &c.vm;
	char psk[320], key[320];
	snprintf(psk, sizeof(psk), "tls-psk-file=%s/psk", tls_dir);
	if (mode == REFUSED)
		snprintf(key, sizeof(key), "auth-key-file=%s",
			 key_file("right", 'a'));
	const char *kv[] = { "channels=4",
			     "verify=on",
			     "io-timeout=3s",
			     "connect-timeout=2s",
			     "downtime-limit=1ms",
			     "max-rounds=5",
			     "packet-pages=32",
			     mode == RESUMED_DG ? "degraded-channels=on"
						: "degraded-channels=off",
			     mode == NO_RESUME ? "resume-timeout=1s"
					       : "resume-timeout=20s",
			     chan == URING     ? "io-engine=uring"
			     : chan == TLS     ? "tls=psk"
			     : mode == REFUSED ? key
					       : NULL,
			     chan == TLS ? psk : NULL,
			     NULL };
	uint64_t seed = tvm_seed("test_resume");
	c.rng = seed;
	tvm_config(vm, kv);
	c.shadow = tvm_add_random_block(vm, "pc.ram", RAM, PAGE, seed);
	tvm_start_dest(vm);

	struct tvm_proxy px = { .fault = fault, .damage = spy, .opaque = &c };
	tvm_proxy_start(&px, vm->uri, 5);
	mfd_source_hooks sh = { .opaque = &c,
				.stop = stop_hook,
				.resume = resume_hook,
				.sync_dirty = sync_dirty,
				.paused = paused_hook };
	assert_int_equal(mfd_source_new(&vm->src, vm->cfg, &sh), 0);
	assert_int_equal(mfd_source_add_block(vm->src, "pc.ram",
					      vm->blocks[0].src, RAM, PAGE),
			 0);
	uint64_t t0 = tvm_now_ms();
	assert_int_equal(mfd_source_start(vm->src, px.listen_uri), 0);
	if (mode != NO_RESUME) {
		wait_phase(vm->src, vm->dst, MFD_PHASE_PAUSED);
		/* Not paused: nothing to resume twice. */
		if (mode == REFUSED) {
			assert_int_equal(foreign_resume(&c, true),
					 MFD_ESESSION);
			assert_int_equal(foreign_resume(&c, false), MFD_EAUTH);
			assert_true(mfd_source_resume(vm->src,
						      "tcp:127.0.0.1:1") < 0);
			mfd_stats st;
			mfd_source_get_stats(vm->src, &st, sizeof(st));
			assert_int_equal(st.phase, MFD_PHASE_PAUSED);
			mfd_dest_get_stats(vm->dst, &st, sizeof(st));
			assert_int_equal(st.phase, MFD_PHASE_PAUSED);
		}
		assert_int_equal(mfd_source_resume(vm->src, vm->uri), 0);
	}
	int ret = mfd_source_wait(vm->src);
	int dret = mfd_dest_wait(vm->dst);
	uint64_t dt = tvm_now_ms() - t0;
	assert_int_equal(mfd_source_resume(vm->src, vm->uri), MFD_ESTATE);
	tvm_proxy_stop(&px);
	mfd_stats ss, ds;
	mfd_source_get_stats(vm->src, &ss, sizeof(ss));
	mfd_dest_get_stats(vm->dst, &ds, sizeof(ds));
	print_message("%s/%d: source %s, destination %s, resumes %u/%u, "
		      "re-sent %llu of %llu in flight, %u rounds, %llu ms\n",
		      chan_name[chan], mode, mfd_strerror(ret),
		      mfd_strerror(dret), ss.resumes, ds.resumes,
		      (unsigned long long)ss.resume_bytes,
		      (unsigned long long)ss.resume_inflight_bytes, ss.round,
		      (unsigned long long)dt);
	assert_true(__atomic_load_n(&c.cut, __ATOMIC_ACQUIRE));
	assert_int_equal(__atomic_load_n(&c.src_paused, __ATOMIC_ACQUIRE), 1);
	assert_int_equal(__atomic_load_n(&vm->dst_paused, __ATOMIC_ACQUIRE), 1);
	assert_true(c.src_cause < 0 && vm->dst_paused_cause < 0);
	assert_true(dt < 30000);
	/* The guest ran on here all along; its memory is its own. */
	assert_memory_equal(vm->blocks[0].src, c.shadow, RAM);
	if (mode == NO_RESUME) {
		assert_int_equal(ret, c.src_cause);
		assert_int_equal(ss.phase, MFD_PHASE_FAILED);
		assert_true(dret < 0);
		assert_int_equal(vm->failed, 1);
		assert_int_equal(vm->loaded, 0);
		assert_int_equal(vm->stopped, 0);
		assert_int_equal(vm->resumed, 0);
		assert_int_equal(ss.resumes, 0);
	} else {
		assert_int_equal(ret, 0);
		assert_int_equal(dret, 0);
		assert_int_equal(ss.phase, MFD_PHASE_COMPLETED);
		assert_int_equal(ss.resumes, 1);
		assert_int_equal(ds.resumes, 1);
		assert_int_equal(vm->loaded, 1);
		assert_int_equal(vm->failed, 0);
		assert_int_equal(vm->stopped, 1);
		assert_int_equal(vm->resumed, 0);
		/* Cut in the middle of a round: pages were on their way, and
		 * only those the destination lacked went again. */
		assert_true(ss.resume_inflight_bytes > 0);
		assert_true(ss.resume_bytes > 0);
		assert_true(ss.resume_bytes <= ss.resume_inflight_bytes);
		assert_memory_equal(vm->blocks[0].dst, vm->blocks[0].src, RAM);
	}
	tvm_unmap(c.shadow, RAM);
	tvm_destroy(vm);
}

#define CASE(c, m)                                                             \
	static void test_##c##_##m(void **state)                               \
	{                                                                      \
		(void)state;                                                   \
		run(c, m);                                                     \
	}
CASE(TCP, RESUMED)
CASE(URING, RESUMED)
CASE(TLS, RESUMED)
CASE(TCP, NO_RESUME)
CASE(TLS, NO_RESUME)
CASE(TCP, REFUSED)
CASE(TCP, RESUMED_DG)

int main(void)
{
	if (tvm_psk_dir(tls_dir, sizeof(tls_dir), "resume")) {
		perror("psk dir");
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_TCP_RESUMED),
		cmocka_unit_test(test_URING_RESUMED),
		cmocka_unit_test(test_TLS_RESUMED),
		cmocka_unit_test(test_TCP_NO_RESUME),
		cmocka_unit_test(test_TLS_NO_RESUME),
		cmocka_unit_test(test_TCP_REFUSED),
		cmocka_unit_test(test_TCP_RESUMED_DG),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	unlink(key_file("other", 'b'));
	char f[160];
	snprintf(f, sizeof(f), "%s/right", tls_dir);
	unlink(f);
	tvm_psk_dir_remove(tls_dir);
	return ret;
}
