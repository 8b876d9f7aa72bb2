/* SPDX-License-Identifier: MIT */
/*
 * The two-phase handover (docs/protocol.md 7.6), with the connection cut
 * at chosen points through a proxy, on TCP sockets, io_uring and TLS:
 *  - cut after LOADED left the destination and before COMMIT reached it
 *    (the proxy drops COMMIT and closes main): both sides in-doubt, no
 *    guest runs, no resume; resolved either way (source abandons and the
 *    destination runs, or the source reclaims and the destination
 *    discards), with memory, hooks and phases checked;
 *  - cut before LOADED (the destination's main channel shut just before
 *    it sends LOADED): both sides fail as before, the source resumes;
 *  - a source without the COMMIT feature (its hello and SETUP rewritten by
 *    the proxy) is refused with MFD_EFEATURE.
 * Every case ends within a bound (io-timeout 3 s).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "multifd/wire.h"
#include "multifd/internal.h"
#include "multifd/channels/channel.h"
#include "testvm.h"

#define MiB  (1024UL * 1024)
#define RAM  (8 * MiB)
#define PAGE 4096

enum chan { TCP, URING, TLS };
static const char *chan_name[] = { "tcp", "uring", "tls" };
static char tls_dir[64];

enum cut { AFTER_LOADED, BEFORE_LOADED };
static int loaded_sent; /* atomic: the destination is about to send LOADED */
static int cut_main;	/* atomic: the proxy closed main */
static enum cut cur_cut;

static void dest_step(struct mfd__chan *main, int step)
{
	if (step == 0 && cur_cut == BEFORE_LOADED)
		main->ops->shutdown(main, SHUT_RDWR);
	/* Before LOADED leaves: the source may answer it before this
	 * thread runs again, and END has been read, so the next bytes
	 * from the source on main are COMMIT. */
	if (step == 0)
		__atomic_store_n(&loaded_sent, 1, __ATOMIC_RELEASE);
}

/* After LOADED: the next source->destination bytes on main are COMMIT;
 * they never arrive. */
static int fault(struct tvm_proxy *p, unsigned conn, uint64_t pos, size_t len)
{
	(void)p, (void)pos, (void)len;
	if (conn != 0 || cur_cut != AFTER_LOADED ||
	    !__atomic_load_n(&loaded_sent, __ATOMIC_ACQUIRE))
		return TVM_PASS;
	__atomic_store_n(&cut_main, 1, __ATOMIC_RELEASE);
	return TVM_CLOSE;
}

static bool setup(struct tvm *vm, enum chan chan)
{
	if (chan == URING && mfd__uring_available()) {
		print_message("io_uring unavailable here: skipped\n");
		return false;
	}
	char psk[128];
	snprintf(psk, sizeof(psk), "tls-psk-file=%s/psk", tls_dir);
	const char *kv[] = { "channels=2",
			     "verify=on",
			     "io-timeout=3s",
			     "connect-timeout=1s",
			     chan == URING ? "io-engine=uring"
			     : chan == TLS ? "tls=psk"
					   : NULL,
			     chan == TLS ? psk : NULL,
			     NULL };
	tvm_config(vm, kv);
	tvm_add_block(vm, "pc.ram", RAM, PAGE);
	tvm_fill_random(vm->blocks[0].src, RAM, tvm_seed("test_handover"));
	tvm_start_dest(vm);
	return true;
}

/* Runs one migration through the proxy with the cut armed. */
static void migrate_cut(struct tvm *vm, enum cut cut, int *ret, int *dret,
			uint64_t *ms)
{
	cur_cut = cut;
	__atomic_store_n(&loaded_sent, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&cut_main, 0, __ATOMIC_RELEASE);
	mfd__test_dest_handover = dest_step;
	struct tvm_proxy px = { .fault = fault };
	tvm_proxy_start(&px, vm->uri, 3);
	uint64_t t0 = tvm_now_ms();
	*ret = tvm_migrate(vm, px.listen_uri, dret);
	*ms = tvm_now_ms() - t0;
	tvm_proxy_stop(&px);
	mfd__test_dest_handover = NULL;
}

static void assert_phase(struct tvm *vm, int src_phase, int dst_phase)
{
	mfd_stats st;
	mfd_source_get_stats(vm->src, &st, sizeof(st));
	assert_int_equal(st.phase, src_phase);
	mfd_dest_get_stats(vm->dst, &st, sizeof(st));
	assert_int_equal(st.phase, dst_phase);
}

static void in_doubt_case(enum chan chan, bool to_destination)
{
	struct tvm vm = { 0 };
	if (!setup(&vm, chan))
		skip();
	uint64_t before = tvm_hash(vm.blocks[0].src, RAM);
	int ret, dret;
	uint64_t ms;
	migrate_cut(&vm, AFTER_LOADED, &ret, &dret, &ms);
	print_message("%s: source %s, destination %s, %llu ms\n",
		      chan_name[chan], mfd_strerror(ret), mfd_strerror(dret),
		      (unsigned long long)ms);
	assert_true(__atomic_load_n(&cut_main, __ATOMIC_ACQUIRE));
	assert_true(ms < 8000);

	/* Both in doubt; neither guest runs; nothing was resumed. */
	assert_int_equal(ret, MFD_EINDOUBT);
	assert_int_equal(dret, MFD_EINDOUBT);
	assert_phase(&vm, MFD_PHASE_INDOUBT, MFD_PHASE_INDOUBT);
	assert_int_equal(vm.stopped, 1);
	assert_int_equal(vm.resumed, 0);
	assert_int_equal(vm.loaded, 0);
	assert_int_equal(vm.failed, 0);
	/* What each side knows, through the hook and the API. */
	assert_int_equal(vm.src_in_doubt, 1);
	assert_int_equal(vm.dst_in_doubt, 1);
	mfd_handover h;
	assert_int_equal(mfd_source_get_handover(vm.src, &h, sizeof(h)), 0);
	assert_memory_equal(&h, &vm.src_ho, sizeof(h));
	assert_int_equal(h.in_doubt, 1);
	assert_int_equal(h.loaded, 1);
	assert_int_equal(h.commit, 1);
	assert_int_equal(h.committed, 0);
	assert_true(h.cause < 0);
	assert_int_equal(mfd_dest_get_handover(vm.dst, &h, sizeof(h)), 0);
	assert_memory_equal(&h, &vm.dst_ho, sizeof(h));
	assert_int_equal(h.in_doubt, 1);
	assert_int_equal(h.loaded, 1);
	assert_int_equal(h.commit, 0);
	assert_true(h.cause < 0);
	/* Undecided: no new migration of this guest. */
	assert_int_equal(mfd_source_start(vm.src, vm.uri), MFD_ESTATE);
	/* The destination holds the whole guest, the source's is intact. */
	assert_true(tvm_equal(&vm));
	assert_true(tvm_hash(vm.blocks[0].src, RAM) == before);

	if (to_destination) {
		assert_int_equal(mfd_source_abandon(vm.src), 0);
		assert_int_equal(mfd_dest_run(vm.dst), 0);
		assert_int_equal(vm.loaded, 1);
		assert_int_equal(vm.resumed, 0);
		assert_int_equal(vm.failed, 0);
		assert_phase(&vm, MFD_PHASE_COMPLETED, MFD_PHASE_COMPLETED);
		mfd_stats st;
		mfd_source_get_stats(vm.src, &st, sizeof(st));
		assert_int_equal(st.error, 0);
		assert_int_equal(mfd_source_wait(vm.src), 0);
		assert_int_equal(mfd_dest_wait(vm.dst), 0);
	} else {
		assert_int_equal(mfd_dest_discard(vm.dst), 0);
		assert_int_equal(mfd_source_reclaim(vm.src), 0);
		assert_int_equal(vm.loaded, 0);
		assert_int_equal(vm.resumed, 1);
		assert_int_equal(vm.failed, 1);
		assert_int_equal(vm.failed_err, MFD_EINDOUBT);
		assert_phase(&vm, MFD_PHASE_FAILED, MFD_PHASE_FAILED);
	}
	/* Decided once: a second decision, either way, is refused. */
	assert_int_equal(mfd_source_abandon(vm.src), MFD_ESTATE);
	assert_int_equal(mfd_source_reclaim(vm.src), MFD_ESTATE);
	assert_int_equal(mfd_dest_run(vm.dst), MFD_ESTATE);
	assert_int_equal(mfd_dest_discard(vm.dst), MFD_ESTATE);
	assert_int_equal(mfd_source_get_handover(vm.src, &h, sizeof(h)), 0);
	assert_int_equal(h.in_doubt, 0);
	assert_true(tvm_hash(vm.blocks[0].src, RAM) == before);
	tvm_destroy(&vm);
}

static void before_loaded_case(enum chan chan)
{
	struct tvm vm = { 0 };
	if (!setup(&vm, chan))
		skip();
	uint64_t before = tvm_hash(vm.blocks[0].src, RAM);
	int ret, dret;
	uint64_t ms;
	migrate_cut(&vm, BEFORE_LOADED, &ret, &dret, &ms);
	print_message("%s: source %s, destination %s, %llu ms\n",
		      chan_name[chan], mfd_strerror(ret), mfd_strerror(dret),
		      (unsigned long long)ms);
	assert_true(ms < 8000);
	/* Safe to decide alone: the destination never sent LOADED, so the
	 * source never committed; it resumes, the destination discards. */
	assert_true(ret < 0);
	assert_true(ret != MFD_EINDOUBT);
	assert_true(dret < 0);
	assert_true(dret != MFD_EINDOUBT);
	assert_phase(&vm, MFD_PHASE_FAILED, MFD_PHASE_FAILED);
	assert_int_equal(vm.stopped, 1);
	assert_int_equal(vm.resumed, 1);
	assert_int_equal(vm.loaded, 0);
	assert_int_equal(vm.failed, 1);
	assert_int_equal(vm.src_in_doubt, 0);
	assert_int_equal(vm.dst_in_doubt, 0);
	mfd_handover h;
	assert_int_equal(mfd_source_get_handover(vm.src, &h, sizeof(h)), 0);
	assert_int_equal(h.in_doubt + h.loaded + h.commit, 0);
	assert_int_equal(mfd_dest_get_handover(vm.dst, &h, sizeof(h)), 0);
	assert_int_equal(h.in_doubt + h.loaded + h.commit, 0);
	assert_int_equal(mfd_source_abandon(vm.src), MFD_ESTATE);
	assert_int_equal(mfd_dest_run(vm.dst), MFD_ESTATE);
	assert_int_equal(vm.loaded, 0);
	assert_true(tvm_hash(vm.blocks[0].src, RAM) == before);
	tvm_destroy(&vm);
}

#define CASES(c)                                                               \
	static void test_##c##_in_doubt_to_dest(void **s)                      \
	{                                                                      \
		(void)s;                                                       \
		in_doubt_case(c, true);                                        \
	}                                                                      \
	static void test_##c##_in_doubt_to_source(void **s)                    \
	{                                                                      \
		(void)s;                                                       \
		in_doubt_case(c, false);                                       \
	}                                                                      \
	static void test_##c##_cut_before_loaded(void **s)                     \
	{                                                                      \
		(void)s;                                                       \
		before_loaded_case(c);                                         \
	}
CASES(TCP)
CASES(URING)
CASES(TLS)

static void read_all(int fd, uint8_t *buf, size_t n)
{
	for (size_t got = 0; got < n;) {
		ssize_t r = read(fd, buf + got, n - got);
		assert_true(r > 0);
		got += (size_t)r;
	}
}

/* An older source, on a plain socket: its hello and SETUP carry
 * features; the destination must refuse them with MFD_EFEATURE at SETUP,
 * its reason naming what is missing (why). */
static void refused_at_setup(uint64_t features, const char *why)
{
	struct tvm vm = { 0 };
	const char *kv[] = { "channels=1", "io-timeout=3s", NULL };
	tvm_config(&vm, kv);
	tvm_add_block(&vm, "pc.ram", RAM, PAGE);
	tvm_start_dest(&vm);
	char host[64], port[16];
	assert_int_equal(
		mfd__uri_split(vm.uri, host, sizeof(host), port, sizeof(port)),
		0);
	struct addrinfo hints = { .ai_family = AF_INET,
				  .ai_socktype = SOCK_STREAM },
			*ai;
	assert_int_equal(getaddrinfo(host, port, &hints, &ai), 0);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, ai->ai_addr, ai->ai_addrlen), 0);
	freeaddrinfo(ai);

	struct mfd__hello h = { .magic = MFD_MAGIC_HELLO,
				.version = MFD_PROTO_VERSION,
				.role = MFD_ROLE_MAIN,
				.nchannels = 1,
				.features = features,
				.session = { 1, 2, 3 } };
	uint8_t buf[4096];
	mfd__hello_encode(&h, buf);
	assert_int_equal(write(fd, buf, MFD_HELLO_SIZE), MFD_HELLO_SIZE);
	struct mfd__hello_reply r;
	read_all(fd, buf, MFD_HELLO_REPLY_SIZE);
	assert_int_equal(mfd__hello_reply_decode(buf, &r), 0);
	assert_int_equal(r.status, 0);

	struct mfd__block_desc b = { .name = "pc.ram",
				     .size = RAM,
				     .page_size = PAGE };
	struct mfd__setup su = { .nblocks = 1,
				 .packet_pages = 128,
				 .nchannels = 1,
				 .features = features,
				 .blocks = &b };
	int len = mfd__setup_encode(&su, buf + MFD_CTL_HDR_SIZE,
				    sizeof(buf) - MFD_CTL_HDR_SIZE);
	assert_true(len > 0);
	struct mfd__ctl_hdr ch = { .magic = MFD_MAGIC_CTL,
				   .type = MFD_CTL_SETUP,
				   .length = (uint32_t)len };
	mfd__ctl_hdr_encode(&ch, buf);
	size_t n = MFD_CTL_HDR_SIZE + (size_t)len;
	assert_int_equal(write(fd, buf, n), (ssize_t)n);
	/* The answer: an ERROR that says MFD_EFEATURE. */
	read_all(fd, buf, MFD_CTL_HDR_SIZE);
	assert_int_equal(mfd__ctl_hdr_decode(buf, &ch), 0);
	assert_int_equal(ch.type, MFD_CTL_ERROR);
	assert_true(ch.length >= 4 && ch.length <= sizeof(buf));
	read_all(fd, buf, ch.length);
	struct mfd__error_msg em;
	assert_int_equal(mfd__error_decode(buf, ch.length, &em), 0);
	assert_int_equal(em.code, MFD_EFEATURE);
	assert_non_null(strstr(em.text, why));
	close(fd);
	assert_int_equal(mfd_dest_wait(vm.dst), MFD_EFEATURE);
	assert_non_null(strstr(mfd_dest_error_text(vm.dst), why));
	assert_int_equal(vm.loaded, 0);
	tvm_destroy(&vm);
}

/* A source of the protocol before COMMIT: instead of loading a guest it
 * could later run beside the source's. */
static void test_peer_without_commit(void **s)
{
	(void)s;
	refused_at_setup(0, "COMMIT");
}

/* A source whose verify sends flat block digests (before protocol 5.5's
 * chunk digests): refused at setup, not failed at END as a corruption. */
static void test_verify_without_chunks(void **s)
{
	(void)s;
	refused_at_setup(MFD_FEAT_COMMIT | MFD_FEAT_VERIFY, "VERIFY_CHUNKS");
}

#define T(c)                                                                   \
	cmocka_unit_test(test_##c##_in_doubt_to_dest),                         \
		cmocka_unit_test(test_##c##_in_doubt_to_source),               \
		cmocka_unit_test(test_##c##_cut_before_loaded)

int main(void)
{
	if (tvm_psk_dir(tls_dir, sizeof(tls_dir), "handover"))
		return 1;
	const struct CMUnitTest tests[] = {
		T(TCP),
		T(URING),
		T(TLS),
		cmocka_unit_test(test_peer_without_commit),
		cmocka_unit_test(test_verify_without_chunks),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	tvm_psk_dir_remove(tls_dir);
	return ret;
}
