/* SPDX-License-Identifier: MIT */
/*
 * The self-announcement (include/multifd/announce.h).
 *
 * "test_announce unit": the frame layout byte by byte, the schedule, the
 * argument checks, and the destination's announce hook after a migration
 * over loopback (rounds, spacing, stop on free, a failing hook).
 *
 * "test_announce netns": the frames on a real link. The test moves itself
 * into a network namespace of its own (unshare(CLONE_NEWNET): nobody else's
 * interfaces are touched, and the kernel removes the namespace with its
 * veth pair when the process ends, also when it fails or crashes), sends
 * on one end of a veth pair and captures on the other with an AF_PACKET
 * socket: count (rounds x MACs), spacing (+-20 ms), source MACs, layout.
 * Exit 77 when not root or namespaces or veth are unavailable.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "multifd/announce.h"
#include "testvm.h"

#define TOL_MS 20
/* Schedules tried before a spacing error counts (see dest_hook_rounds). */
#define TIMING_TRIES 3

static const uint8_t MAC1[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const uint8_t MAC2[6] = { 0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x0e };

/* QEMU's announce_self_create() layout, written out by hand. */
static void expected_frame(uint8_t want[60], const uint8_t mac[6])
{
	const uint8_t head[] = {
		0xff,	0xff,	0xff,	0xff,	0xff,	0xff, /* destination */
		mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], /* source */
		0x80,	0x35,					/* RARP */
		0x00,	0x01,					/* Ethernet */
		0x08,	0x00,					/* IPv4 */
		6,	4,					/* lengths */
		0x00,	0x03, /* reverse request */
		mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], /* sha */
		0,	0,	0,	0,			/* spa */
		mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], /* tha */
		0,	0,	0,	0,			/* tpa */
	};
	_Static_assert(sizeof(head) == 42, "RARP frame head");
	memset(want, 0, 60);
	memcpy(want, head, sizeof(head));
}

static double ms_between(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) * 1e3 +
	       (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

/* ---------------------------------------------------------------- unit */

static void frame_layout(void **state)
{
	uint8_t f[MFD_ANNOUNCE_FRAME_LEN], want[60];

	memset(f, 0xa5, sizeof(f)); /* padding must be written, not left */
	assert_int_equal(mfd_announce_frame(f, MAC1), 0);
	expected_frame(want, MAC1);
	assert_memory_equal(f, want, 60);
	assert_int_equal(mfd_announce_frame(f, MAC2), 0);
	expected_frame(want, MAC2);
	assert_memory_equal(f, want, 60);
}

static void frame_refuses_group_addresses(void **state)
{
	uint8_t f[60], keep[60];
	const uint8_t zero[6] = { 0 },
		      bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	const uint8_t mcast[6] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0x01 };

	memset(f, 0x11, sizeof(f));
	memcpy(keep, f, sizeof(f));
	assert_int_equal(mfd_announce_frame(f, zero), -EINVAL);
	assert_int_equal(mfd_announce_frame(f, bcast), -EINVAL);
	assert_int_equal(mfd_announce_frame(f, mcast), -EINVAL);
	assert_int_equal(mfd_announce_frame(NULL, MAC1), -EINVAL);
	assert_memory_equal(f, keep, sizeof(f));
}

static void parse_mac(void **state)
{
	uint8_t m[6] = { 9, 9, 9, 9, 9, 9 };
	const uint8_t keep[6] = { 9, 9, 9, 9, 9, 9 };

	assert_int_equal(mfd_announce_parse_mac("52:54:00:12:34:56", m), 0);
	assert_memory_equal(m, MAC1, 6);
	assert_int_equal(mfd_announce_parse_mac("02-AA-bb-CC-dd-0E", m), 0);
	assert_memory_equal(m, MAC2, 6);
	memcpy(m, keep, 6);
	const char *bad[] = { "",
			      "52:54:00:12:34",
			      "52:54:00:12:34:567",
			      "52:54:00:12:34:5g",
			      "52.54.00.12.34.56",
			      "5:254:00:12:34:56",
			      "52:54:00:12:34:56:" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(mfd_announce_parse_mac(bad[i], m), -EINVAL);
		assert_memory_equal(m, keep, 6);
	}
}

static void schedule(void **state)
{
	mfd_announce_params p;
	mfd_config *cfg = NULL;

	/* QEMU's defaults: 50, 150, 250, 350, 450 ms before rounds 1..5. */
	assert_int_equal(mfd_announce_get_params(NULL, &p), 0);
	assert_int_equal(p.initial_ms, 50);
	assert_int_equal(p.max_ms, 550);
	assert_int_equal(p.rounds, 5);
	assert_int_equal(p.step_ms, 100);
	const uint64_t want[] = { 50, 150, 250, 350, 450, 550, 550 };
	for (unsigned r = 0; r < 7; r++)
		assert_int_equal(mfd_announce_delay_ms(&p, r), want[r]);

	/* The keys reach the params; max caps from the start. */
	assert_int_equal(mfd_config_new(&cfg), 0);
	assert_int_equal(mfd_config_set(cfg, "announce-initial", "300ms"), 0);
	assert_int_equal(mfd_config_set(cfg, "announce-max", "200"), 0);
	assert_int_equal(mfd_config_set(cfg, "announce-rounds", "7"), 0);
	assert_int_equal(mfd_config_set(cfg, "announce-step", "1s"), 0);
	assert_int_equal(mfd_config_set(cfg, "announce-step", "0"),
			 MFD_ECONFIG);
	assert_int_equal(mfd_config_set(cfg, "announce-rounds", "1001"),
			 MFD_ECONFIG);
	assert_int_equal(mfd_announce_get_params(cfg, &p), 0);
	assert_int_equal(p.initial_ms, 300);
	assert_int_equal(p.max_ms, 200);
	assert_int_equal(p.rounds, 7);
	assert_int_equal(p.step_ms, 1000);
	assert_int_equal(mfd_announce_delay_ms(&p, 0), 200);
	assert_int_equal(mfd_announce_delay_ms(&p, 6), 200);
	mfd_config_free(cfg);
}

static void run_checks_arguments(void **state)
{
	mfd_announce_params p;
	const uint8_t macs[2][6] = { { 0x52, 0x54, 0, 1, 2, 3 },
				     { 0x01, 0x54, 0, 1, 2, 3 } };

	assert_int_equal(mfd_announce_get_params(NULL, &p), 0);
	assert_int_equal(mfd_announce_run("lo", macs, 0, &p), -EINVAL);
	assert_int_equal(mfd_announce_run("lo", macs, 2, &p), -EINVAL);
	assert_int_equal(mfd_announce_run("", macs, 1, &p), -EINVAL);
	assert_int_equal(
		mfd_announce_run("an-interface-name-too-long", macs, 1, &p),
		-EINVAL);
	assert_int_equal(mfd_announce_run("lo", macs, 1, NULL), -EINVAL);
	assert_int_equal(mfd_announce_run("mfdnosuch0", macs, 1, &p), -ENODEV);
	assert_int_equal(mfd_dest_set_announce(NULL, "lo", macs, 1), -EINVAL);
}

/* The destination's hook: when each round came, relative to loaded. */
struct hook_rec {
	struct timespec loaded_at, at[16];
	unsigned rounds[16], n;
	int fail_at; /* round whose call returns -1; -1: none */
};

static int rec_announce(void *opaque, unsigned round)
{
	struct tvm *vm = opaque;
	struct hook_rec *h = vm->opaque;

	unsigned n = h->n; /* only this thread writes it */

	if (n < 16) {
		clock_gettime(CLOCK_MONOTONIC, &h->at[n]);
		h->rounds[n] = round;
		__atomic_store_n(&h->n, n + 1, __ATOMIC_RELEASE);
	}
	return (int)round == h->fail_at ? -1 : 0;
}

static void migrate_with_hook(struct tvm *vm, struct hook_rec *h,
			      const char *initial, const char *step,
			      const char *rounds)
{
	char k1[64], k2[64], k3[64];
	snprintf(k1, sizeof(k1), "announce-initial=%s", initial);
	snprintf(k2, sizeof(k2), "announce-step=%s", step);
	snprintf(k3, sizeof(k3), "announce-rounds=%s", rounds);
	const char *kv[] = { "channels=2",	   k1,	k2, k3,
			     "announce-max=550ms", NULL };
	int dret = -1;

	tvm_config(vm, kv);
	tvm_add_block(vm, "pc.ram", 4 << 20, 4096);
	tvm_fill_random(vm->blocks[0].src, 4 << 20, 16);
	vm->opaque = h;
	vm->dest_announce = rec_announce;
	tvm_start_dest(vm);
	assert_int_equal(tvm_migrate(vm, NULL, &dret), 0);
	clock_gettime(CLOCK_MONOTONIC, &h->loaded_at);
	assert_int_equal(dret, 0);
	assert_int_equal(vm->loaded, 1);
	assert_true(tvm_equal(vm));
}

/* One schedule through the hook; false when only its timing was off
 * (a loaded machine can hold a waking thread for tens of ms). */
static bool hook_rounds_once(void)
{
	struct tvm vm = { 0 };
	struct hook_rec h = { .fail_at = -1 };
	bool on_time = true;

	migrate_with_hook(&vm, &h, "100ms", "50ms", "4");
	/* mfd_dest_wait() did not wait for the schedule (700 ms in all; the
	 * first round may come before this line on a loaded machine). */
	assert_true(__atomic_load_n(&h.n, __ATOMIC_ACQUIRE) < 4);
	assert_int_equal(mfd_dest_announce_wait(vm.dst), 0);
	assert_int_equal(h.n, 4);
	/* Delays 100, 150, 200, 250 ms; the first measured from after the
	 * wait returned, so only its upper bound is exact. */
	const double want[] = { 100, 150, 200, 250 };
	double first = ms_between(&h.loaded_at, &h.at[0]);
	printf("# round 0 after %.1f ms from the migration's end\n", first);
	on_time &= first <= want[0] + TOL_MS;
	for (unsigned i = 0; i < 4; i++) {
		assert_int_equal(h.rounds[i], i);
		if (i == 0)
			continue;
		double gap = ms_between(&h.at[i - 1], &h.at[i]);
		printf("# round %u after %.1f ms (want %.0f)\n", i, gap,
		       want[i]);
		on_time &= gap >= want[i] - TOL_MS && gap <= want[i] + TOL_MS;
	}
	/* Joined: a second wait returns the same result at once. */
	assert_int_equal(mfd_dest_announce_wait(vm.dst), 0);
	tvm_destroy(&vm);
	return on_time;
}

static void dest_hook_rounds(void **state)
{
	/* The order and count hold every time; the spacing in one of
	 * TIMING_TRIES schedules (a wrong schedule is off in all). */
	bool on_time = false;
	for (int t = 0; t < TIMING_TRIES && !on_time; t++)
		if (!(on_time = hook_rounds_once()))
			printf("# spacing off by more than %d ms: again\n",
			       TOL_MS);
	assert_true(on_time);
}

static void dest_hook_failure_ends_rounds(void **state)
{
	struct tvm vm = { 0 };
	struct hook_rec h = { .fail_at = 1 };

	migrate_with_hook(&vm, &h, "0", "1ms", "5");
	assert_int_equal(mfd_dest_announce_wait(vm.dst), MFD_EHOOK);
	assert_int_equal(h.n, 2);
	tvm_destroy(&vm);
}

static void dest_free_stops_rounds(void **state)
{
	struct tvm vm = { 0 };
	struct hook_rec h = { .fail_at = -1 };
	struct timespec t0, t1;

	/* The first round is due 100 s after the guest runs. */
	migrate_with_hook(&vm, &h, "100s", "1ms", "5");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	tvm_destroy(&vm);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(h.n, 0);
	assert_true(ms_between(&t0, &t1) < 1000);
}

static void dest_failed_load_announces_nothing(void **state)
{
	struct tvm vm = { 0 };
	struct hook_rec h = { .fail_at = -1 };
	const char *kv[] = { "channels=1", "announce-initial=0", NULL };

	tvm_config(&vm, kv);
	tvm_add_block(&vm, "pc.ram", 1 << 20, 4096);
	vm.opaque = &h;
	vm.dest_announce = rec_announce;
	tvm_start_dest(&vm);
	assert_int_equal(mfd_dest_cancel(vm.dst), 0);
	assert_int_not_equal(mfd_dest_wait(vm.dst), 0);
	assert_int_equal(mfd_dest_announce_wait(vm.dst), 0);
	assert_int_equal(h.n, 0);
	tvm_destroy(&vm);
}

static int run_unit(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(frame_layout),
		cmocka_unit_test(frame_refuses_group_addresses),
		cmocka_unit_test(parse_mac),
		cmocka_unit_test(schedule),
		cmocka_unit_test(run_checks_arguments),
		cmocka_unit_test(dest_hook_rounds),
		cmocka_unit_test(dest_hook_failure_ends_rounds),
		cmocka_unit_test(dest_free_stops_rounds),
		cmocka_unit_test(dest_failed_load_announces_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* --------------------------------------------------------------- netns */

#define IF_TX "mfdan0"
#define IF_RX "mfdan1"
#define MAXF  64

static int fails;
static int late; /* spacing errors of the last schedule checked */
#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			printf("FAIL %s:%d: ", __FILE__, __LINE__);            \
			printf(__VA_ARGS__);                                   \
			printf("\n");                                          \
			fails++;                                               \
		}                                                              \
	} while (0)

struct capture {
	uint8_t f[MAXF][128];
	ssize_t len[MAXF];
	struct timespec at[MAXF];
	unsigned n;
};

static int capture_open(void)
{
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC,
			htons(MFD_ANNOUNCE_ETHERTYPE));
	if (fd < 0)
		return -1;
	struct sockaddr_ll a = { .sll_family = AF_PACKET,
				 .sll_protocol = htons(MFD_ANNOUNCE_ETHERTYPE),
				 .sll_ifindex = (int)if_nametoindex(IF_RX) };
	int on = 1;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads what arrived until the link is quiet for quiet_ms; kernel receive
 * timestamps, so the reader's own delay does not count. */
static void capture_drain(int fd, struct capture *c, int quiet_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	c->n = 0;
	while (c->n < MAXF && poll(&pfd, 1, quiet_ms) == 1) {
		char cbuf[256];
		struct iovec iov = { c->f[c->n], sizeof(c->f[c->n]) };
		struct msghdr m = { .msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = cbuf,
				    .msg_controllen = sizeof(cbuf) };
		ssize_t n = recvmsg(fd, &m, 0);
		if (n < 0)
			break;
		c->len[c->n] = n;
		memset(&c->at[c->n], 0, sizeof(c->at[c->n]));
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm;
		     cm = CMSG_NXTHDR(&m, cm))
			if (cm->cmsg_level == SOL_SOCKET &&
			    cm->cmsg_type == SCM_TIMESTAMPNS)
				memcpy(&c->at[c->n], CMSG_DATA(cm),
				       sizeof(struct timespec));
		c->n++;
	}
}

/*
 * rounds x nmacs frames, round by round in the order of macs, each equal
 * byte for byte to the expected frame, rounds spaced as p says (+-20 ms).
 */
static void check_capture(const char *what, const struct capture *c,
			  const uint8_t (*macs)[6], unsigned nmacs,
			  const mfd_announce_params *p)
{
	CHECK(c->n == p->rounds * nmacs, "%s: %u frames, want %u", what, c->n,
	      p->rounds * nmacs);
	for (unsigned i = 0; i < c->n && i < p->rounds * nmacs; i++) {
		uint8_t want[60];
		unsigned r = i / nmacs, k = i % nmacs;

		expected_frame(want, macs[k]);
		CHECK(c->len[i] == 60, "%s: frame %u: %zd bytes", what, i,
		      c->len[i]);
		CHECK(memcmp(c->f[i] + 6, macs[k], 6) == 0,
		      "%s: frame %u: source MAC", what, i);
		CHECK(c->len[i] == 60 && memcmp(c->f[i], want, 60) == 0,
		      "%s: frame %u: layout", what, i);
		if (k || r == 0)
			continue;
		double gap = ms_between(&c->at[i - nmacs], &c->at[i]);
		double d = (double)mfd_announce_delay_ms(p, r);
		printf("# %s: round %u after %.1f ms (want %.0f)\n", what, r,
		       gap, d);
		if (gap < d - TOL_MS || gap > d + TOL_MS) {
			printf("# %s: round %u after %.1f ms, want %.0f +- "
			       "%d\n",
			       what, r, gap, d, TOL_MS);
			late++;
		}
	}
}

static void dest_setup_frames(struct tvm *vm)
{
	const uint8_t(*macs)[6] = vm->opaque;
	int err = mfd_dest_set_announce(vm->dst, IF_TX, macs, 2);
	CHECK(err == 0, "mfd_dest_set_announce: %d", err);
}

/* A migration whose destination announces on the veth; its frames. */
static void dest_frames_once(int fd, struct capture *c,
			     const uint8_t (*macs)[6])
{
	struct tvm vm = { 0 };
	const char *kv[] = { "channels=2", "announce-initial=30ms",
			     "announce-step=30ms", "announce-rounds=3", NULL };
	int dret = -1;
	tvm_config(&vm, kv);
	tvm_add_block(&vm, "pc.ram", 1 << 20, 4096);
	tvm_fill_random(vm.blocks[0].src, 1 << 20, 7);
	vm.opaque = (void *)macs;
	vm.dest_setup = dest_setup_frames;
	tvm_start_dest(&vm);
	int err = tvm_migrate(&vm, NULL, &dret);
	CHECK(err == 0 && dret == 0, "migration: source %d, destination %d",
	      err, dret);
	CHECK(tvm_equal(&vm), "memory differs");
	err = mfd_dest_announce_wait(vm.dst);
	CHECK(err == 0, "mfd_dest_announce_wait: %d", err);
	mfd_stats st;
	mfd_dest_get_stats(vm.dst, &st, sizeof(st));
	printf("# destination cpu_ns %llu (announcement thread included)\n",
	       (unsigned long long)st.cpu_ns);
	tvm_destroy(&vm);
	mfd_announce_params p = {
		.initial_ms = 30, .max_ms = 550, .rounds = 3, .step_ms = 30
	};
	capture_drain(fd, c, 200);
	check_capture("destination", c, macs, 2, &p);
}

static int run_netns(void)
{
	const uint8_t macs[2][6] = {
		{ 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 },
		{ 0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x0e },
	};
	mfd_announce_params p;
	struct capture *c = calloc(1, sizeof(*c));

	if (geteuid() != 0) {
		printf("SKIP: needs root (a network namespace and a veth "
		       "pair)\n");
		return 77;
	}
	if (unshare(CLONE_NEWNET) < 0) {
		printf("SKIP: unshare(CLONE_NEWNET): %s\n", strerror(errno));
		return 77;
	}
	/* In the new namespace only: its lo (the migration runs over it) and
	 * the pair created here. */
	if (system("ip link set lo up && ip link add " IF_TX
		   " type veth peer name " IF_RX " && ip link set " IF_TX
		   " up && ip link set " IF_RX " up") != 0) {
		printf("SKIP: no veth pair (ip link add ... type veth)\n");
		return 77;
	}
	int fd = capture_open();
	if (fd < 0) {
		printf("SKIP: AF_PACKET capture socket: %s\n", strerror(errno));
		return 77;
	}

	/* 1. The blocking helper with QEMU's defaults: 1.25 s. Count,
	 * layout and MACs hold every time; the spacing in one of
	 * TIMING_TRIES schedules (a loaded machine can hold a waking thread
	 * for tens of ms; a wrong schedule is off every time). */
	CHECK(mfd_announce_get_params(NULL, &p) == 0, "params");
	for (int t = 0; t < TIMING_TRIES; t++) {
		late = 0;
		int err = mfd_announce_run(IF_TX, macs, 2, &p);
		CHECK(err == 0, "mfd_announce_run: %d", err);
		capture_drain(fd, c, 200);
		check_capture("helper", c, macs, 2, &p);
		if (!late)
			break;
		printf("# helper: spacing off: again\n");
	}
	CHECK(!late, "helper: spacing off in %d schedules", TIMING_TRIES);

	/* 2. The destination's thread after a real migration, frames on
	 * the veth: 3 rounds 30, 60, 90 ms apart. */
	for (int t = 0; t < TIMING_TRIES; t++) {
		late = 0;
		dest_frames_once(fd, c, macs);
		if (!late)
			break;
		printf("# destination: spacing off: again\n");
	}
	CHECK(!late, "destination: spacing off in %d schedules", TIMING_TRIES);

	close(fd);
	free(c);
	/* The namespace, with the pair, ends with this process. */
	printf("%s\n", fails ? "FAILED" : "ok");
	return fails ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "netns") == 0)
		return run_netns();
	return run_unit();
}
