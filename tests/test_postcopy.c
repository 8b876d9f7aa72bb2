/* SPDX-License-Identifier: MIT */
/*
 * Post-copy end to end (docs/protocol.md section 10), over sockets or
 * io_uring ($MFD_TEST_IO_ENGINE):
 *  - manual and auto switch: a source guest rewrites stamped pages until
 *    the stop; at the switch a destination guest starts: readers fault on
 *    pages and check every page they read is whole (stamp + checksum),
 *    writers stamp pages of their own and log what they wrote. After the
 *    migration every destination page equals the source's at the stop,
 *    except the logged ones, which hold what was written there last;
 *    after the switch the source sent every page at most once, and a
 *    lane sent a page again on request only where the bulk or another
 *    lane had claimed it (a page left out of the pages to send, then
 *    answered on request, would be lost where the guest never asks);
 *  - a destination killed after the switch (another process, SIGKILL):
 *    the source reports MFD_ELOSTGUEST and never calls resume; one
 *    cancelled (mfd_dest_cancel) while its guest runs: the same, and the
 *    destination reports the guest lost too;
 *  - a malformed PAGE_REQ (longer than packet-pages): the source refuses
 *    it with MFD_ELENGTH (its stats' error), MFD_ELOSTGUEST from wait;
 *  - the fault matrix of the post-copy messages (test_faults.c's matrix
 *    asserts a resumed guest, which post-copy forbids after SWITCH): main
 *    closed or stalled at the stop (DISCARD, SWITCH), a data channel, an
 *    urgent lane or main closed, reset or stalled after the switch;
 *  - a break in the switch's DISCARD exchange, before the stop (the
 *    destination shuts main down right after it applied a DISCARD):
 *    both sides paused (the guest still runs at the source), resumed,
 *    pre-copy goes on and the switch comes again; memory as above;
 *  - postcopy-paused (protocol 10.5, resume-timeout on): a data channel
 *    reset while bulk pages stream, an urgent lane reset on its first
 *    answer (a request outstanding, a guest thread waiting for it), main
 *    closed: both sides postcopy-paused (hooks, phase), then
 *    mfd_source_resume() to the destination's own address completes it:
 *    memory as above, no torn page, every page claimed at most once
 *    before the break and once after it, and a page claimed twice only
 *    when the destination did not hold it (the source's count of such
 *    pages, from RECEIVED, equals the test's); the destination receives
 *    a page it holds only where an urgent lane sent a page the bulk had
 *    claimed again on request (no more such arrivals than the source's
 *    count of those pages, urgent_again_pages). No resume within
 * resume-timeout, or a resume to a killed destination: a lost guest on both
 * sides, never resumed here. Skips (77) where userfaultfd cannot place
 * anonymous memory.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "multifd/channels/channel.h"
#include "multifd/internal.h"
#include "multifd/pcwire.h"
#include "pagestamp.h"
#include "ramblock/uffd.h"
#include "testvm.h"

#define RAM    (32u << 20)
#define NPAGES (RAM / PS)
/* Pages the destination's writers own (the first quarter); the readers
 * read the rest, so that no reader races a writer of the same page. */
#define WPAGES (NPAGES / 4)
#define NREAD  2
#define NWRITE 1

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c)) {                                                    \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #c);                                 \
			exit(1);                                               \
		}                                                              \
	} while (0)

struct pc_vm {
	uint8_t *src, *dst;
	mfd_source *s;
	mfd_dest *d;
	uint64_t seed;
	/* Source guest. */
	pthread_t sw;
	atomic_int src_stop;
	atomic_int stopped, resumed, switched;
	uint64_t src_span; /* the source guest writes pages [0, src_span) */
	uint64_t src_gen;
	/* Destination guest. */
	pthread_t rd[NREAD], wr[NWRITE];
	bool dst_running;
	atomic_int dst_stop;
	atomic_int torn;
	atomic_ullong reads;
	uint64_t *wlog; /* per page of the writers' range: gen + 1, 0 none */
	int failed_err;
	pid_t kill_pid; /* > 0: SIGKILL it at the switch */
	/* Fault cases: armed by the stop hook (phase STOP) or the postcopy
	 * hook (phase SWITCHED), fired at the next chunk of connection
	 * fault_conn through the proxy. */
	int fault_phase, fault_how;
	unsigned fault_conn;
	atomic_int armed, fired;
	/* postcopy-paused: the paused hooks' calls and causes; per page,
	 * how often the source sent it after the switch, before the pause
	 * (claims[0]) and after it (claims[1]). */
	atomic_int src_paused, dst_paused;
	bool fault_after_dst_switch; /* and the destination has SWITCH */
	bool ask_after_round0;	     /* start_faulty(): switch after round 0 */
	int src_cause, dst_cause;
	atomic_uint *claims[2];
	/* Per page, how often an urgent lane sent it again on request (a
	 * page the bulk had claimed), before the pause and after it. */
	atomic_uint *again[2];
};
enum { NO_FAULT, AT_STOP, AT_SWITCH };

/* Source guest: rewrites random pages with new generations until stop. */
static void *src_guest(void *arg)
{
	struct pc_vm *vm = arg;
	uint64_t st = vm->seed ^ 0x5eed, gen = 1;
	uint8_t page[PS];
	while (!atomic_load(&vm->src_stop)) {
		for (int k = 0; k < 64; k++) {
			uint64_t i = tvm_rand(&st) % vm->src_span;
			stamp(page, i, gen);
			tvm_guest_write(vm->src + i * PS, page, PS);
			mfd_source_mark_dirty(vm->s, 0, i * PS, PS);
		}
		gen++;
		usleep(200);
	}
	vm->src_gen = gen;
	return NULL;
}

static int h_stop(void *o)
{
	struct pc_vm *vm = o;
	atomic_store(&vm->src_stop, 1);
	pthread_join(vm->sw, NULL);
	atomic_fetch_add(&vm->stopped, 1);
	if (vm->fault_phase == AT_STOP)
		atomic_store(&vm->armed, 1);
	return 0;
}
static int h_resume(void *o)
{
	atomic_fetch_add(&((struct pc_vm *)o)->resumed, 1);
	return 0;
}
static void h_postcopy(void *o)
{
	struct pc_vm *vm = o;
	atomic_fetch_add(&vm->switched, 1);
	if (vm->fault_phase == AT_SWITCH)
		atomic_store(&vm->armed, 1);
	if (vm->kill_pid > 0)
		kill(vm->kill_pid, SIGKILL);
}

/* Destination readers: whole pages only, whatever page they fault on. */
static void *dst_reader(void *arg)
{
	struct pc_vm *vm = arg;
	uint64_t st = vm->seed ^ (uint64_t)pthread_self();
	while (!atomic_load(&vm->dst_stop)) {
		uint64_t i = WPAGES + tvm_rand(&st) % (NPAGES - WPAGES);
		uint8_t copy[PS];
		memcpy(copy, vm->dst + i * PS, PS);
		if (!whole(copy, i)) {
			fprintf(stderr, "torn page %llu\n",
				(unsigned long long)i);
			atomic_fetch_add(&vm->torn, 1);
		}
		atomic_fetch_add(&vm->reads, 1);
	}
	return NULL;
}

/* Destination writers: stamp pages of their range with generations far
 * above the source's, and log them. */
static void *dst_writer(void *arg)
{
	struct pc_vm *vm = arg;
	uint64_t st = vm->seed ^ 0xd57, gen = 1ULL << 40;
	uint8_t page[PS];
	while (!atomic_load(&vm->dst_stop)) {
		uint64_t i = tvm_rand(&st) % WPAGES;
		stamp(page, i, gen);
		memcpy(vm->dst + i * PS, page, PS);
		vm->wlog[i] = gen + 1;
		gen++;
		usleep(100);
	}
	return NULL;
}

static int h_postcopy_run(void *o)
{
	struct pc_vm *vm = o;
	for (int i = 0; i < NREAD; i++)
		pthread_create(&vm->rd[i], NULL, dst_reader, vm);
	for (int i = 0; i < NWRITE; i++)
		pthread_create(&vm->wr[i], NULL, dst_writer, vm);
	vm->dst_running = true;
	return 0;
}
static void h_failed(void *o, int err)
{
	((struct pc_vm *)o)->failed_err = err;
}

/* Both sides' paused hooks. The source's is called when its lanes and
 * workers have ended: what it sends from then on is the resume's. */
static void h_src_paused(void *o, int cause)
{
	struct pc_vm *vm = o;
	vm->src_cause = cause;
	atomic_fetch_add(&vm->src_paused, 1);
}
static void h_dst_paused(void *o, int cause)
{
	struct pc_vm *vm = o;
	vm->dst_cause = cause;
	atomic_fetch_add(&vm->dst_paused, 1);
}

static void dst_guest_stop(struct pc_vm *vm)
{
	if (!vm->dst_running)
		return;
	atomic_store(&vm->dst_stop, 1);
	for (int i = 0; i < NREAD; i++)
		pthread_join(vm->rd[i], NULL);
	for (int i = 0; i < NWRITE; i++)
		pthread_join(vm->wr[i], NULL);
	vm->dst_running = false;
}

static mfd_config *config(const char *const *kv)
{
	struct tvm t = { 0 };
	tvm_config(&t, kv);
	return t.cfg;
}

static void setup(struct pc_vm *vm)
{
	memset(vm, 0, sizeof(*vm));
	vm->src_span = NPAGES;
	vm->seed = tvm_seed("test_postcopy");
	vm->src = tvm_map(RAM);
	vm->dst = tvm_map(RAM);
	vm->wlog = calloc(WPAGES, sizeof(*vm->wlog));
	CHECK(vm->wlog);
	for (uint64_t i = 0; i < NPAGES; i++) {
		/* A few zero pages: placed with UFFDIO_ZEROPAGE or known
		 * zero. */
		if (i % 13 == 0)
			memset(vm->src + i * PS, 0, PS);
		else
			stamp(vm->src + i * PS, i, 0);
	}
}

static void teardown(struct pc_vm *vm)
{
	tvm_unmap(vm->src, RAM);
	tvm_unmap(vm->dst, RAM);
	free(vm->wlog);
}

static int start_dest(struct pc_vm *vm, mfd_config *cfg, char *uri, size_t len)
{
	mfd_dest_hooks dh = { .opaque = vm,
			      .failed = h_failed,
			      .postcopy_run = h_postcopy_run,
			      .paused = h_dst_paused };
	CHECK(mfd_dest_new(&vm->d, cfg, &dh) == 0);
	CHECK(mfd_dest_add_block(vm->d, "pc.ram", vm->dst, RAM, PS) == 0);
	CHECK(mfd_dest_start(vm->d, "tcp:127.0.0.1:0") == 0);
	return mfd_dest_get_uri(vm->d, uri, len);
}

static int start_source(struct pc_vm *vm, mfd_config *cfg, const char *uri)
{
	mfd_source_hooks sh = { .opaque = vm,
				.stop = h_stop,
				.resume = h_resume,
				.postcopy = h_postcopy,
				.paused = h_src_paused };
	CHECK(mfd_source_new(&vm->s, cfg, &sh) == 0);
	CHECK(mfd_source_add_block(vm->s, "pc.ram", vm->src, RAM, PS) == 0);
	pthread_create(&vm->sw, NULL, src_guest, vm);
	return mfd_source_start(vm->s, uri);
}

static struct pc_vm *claim_vm;

/* Which side of the pause a claim is on: the source's paused hook runs
 * when its lanes and workers have ended. */
static int claim_epoch(void)
{
	return atomic_load(&claim_vm->src_paused) ? 1 : 0;
}

/* Pages the source claimed, and post-copy packets the destination
 * placed, from a thread running SCHED_FIFO (postcopy-urgent-priority:
 * an urgent lane's) or not (a data channel's, or any thread where the
 * key is 0 or the process may not). */
static atomic_ullong claimed_rt, claimed_fair, placed_rt, placed_fair;
static atomic_int rt_prio_seen; /* a SCHED_FIFO thread's priority */

static bool running_rt(void)
{
	struct sched_param sp;
	if (sched_getscheduler(0) != SCHED_FIFO)
		return false;
	CHECK(sched_getparam(0, &sp) == 0);
	atomic_store(&rt_prio_seen, sp.sched_priority);
	return true;
}

/* Source, any lane or the migration thread: pages about to be sent. */
static void count_claims(unsigned block, const uint64_t *offsets, unsigned n)
{
	(void)block;
	int epoch = claim_epoch();
	atomic_fetch_add(running_rt() ? &claimed_rt : &claimed_fair, n);
	for (unsigned i = 0; i < n; i++)
		atomic_fetch_add(&claim_vm->claims[epoch][offsets[i] / PS], 1);
}

static atomic_ullong dst_dups;	/* post-copy pages that were there already */
static atomic_ullong src_again; /* pages a lane sent again (the bulk's) */

static void count_again(unsigned block, const uint64_t *offsets, unsigned n)
{
	(void)block;
	int epoch = claim_epoch();
	for (unsigned i = 0; i < n; i++)
		atomic_fetch_add(&claim_vm->again[epoch][offsets[i] / PS], 1);
	atomic_fetch_add(&src_again, n);
}

/* Post-copy packets the destination placed from a thread at the test's
 * own nice (an urgent lane's; a data channel's without
 * postcopy-bulk-nice), at postcopy-bulk-nice (a data channel's, lowered
 * at its first one) or at any other. */
static int base_nice, bulk_nice;
static atomic_ullong placed_base, placed_low, placed_other;

static void count_arrivals(unsigned block, unsigned n, int placed)
{
	(void)block;
	atomic_fetch_add(&dst_dups, n - (unsigned)placed);
	atomic_fetch_add(running_rt() ? &placed_rt : &placed_fair, 1);
	int nice = getpriority(PRIO_PROCESS, 0);
	atomic_fetch_add(nice == base_nice   ? &placed_base
			 : nice == bulk_nice ? &placed_low
					     : &placed_other,
			 1);
}

/* The source's hooks record, per page, what it sent after the switch. */
static void claims_start(struct pc_vm *vm)
{
	for (int e = 0; e < 2; e++) {
		vm->claims[e] = calloc(NPAGES, sizeof(atomic_uint));
		vm->again[e] = calloc(NPAGES, sizeof(atomic_uint));
		CHECK(vm->claims[e] && vm->again[e]);
	}
	claim_vm = vm;
	atomic_store(&dst_dups, 0);
	atomic_store(&src_again, 0);
	atomic_store(&placed_base, 0);
	atomic_store(&placed_low, 0);
	atomic_store(&placed_other, 0);
	atomic_store(&claimed_rt, 0);
	atomic_store(&claimed_fair, 0);
	atomic_store(&placed_rt, 0);
	atomic_store(&placed_fair, 0);
	atomic_store(&rt_prio_seen, 0);
	mfd__test_pc_claimed = count_claims;
	mfd__test_pc_again = count_again;
	mfd__test_dest_pc_arrived = count_arrivals;
}

static void claims_stop(struct pc_vm *vm)
{
	mfd__test_pc_claimed = NULL;
	mfd__test_pc_again = NULL;
	mfd__test_dest_pc_arrived = NULL;
	for (int e = 0; e < 2; e++) {
		free(vm->claims[e]);
		free(vm->again[e]);
	}
}

/*
 * Once every hook has fired (both sides waited for): a page a lane sent
 * again on request had been claimed, on the same side of the pause, by
 * the bulk or another lane. A page asked for that nobody claimed was left
 * out of the pages to send: the lane's answer hid it, while a page of it
 * the guest never touches would be lost. Returns the pages sent again.
 */
static uint64_t check_again(struct pc_vm *vm)
{
	uint64_t again = 0, unclaimed = 0;
	for (int e = 0; e < 2; e++)
		for (uint64_t i = 0; i < NPAGES; i++) {
			unsigned a = atomic_load(&vm->again[e][i]);
			again += a;
			if (a && !atomic_load(&vm->claims[e][i]) &&
			    !unclaimed++)
				fprintf(stderr,
					"page %llu sent again on request "
					"(epoch %d), never claimed\n",
					(unsigned long long)i, e);
		}
	CHECK(unclaimed == 0);
	CHECK(again == atomic_load(&src_again));
	return again;
}

/* Every page: the destination writer's last stamp where it wrote, else
 * the source's bytes at the stop. */
static void check_memory(struct pc_vm *vm)
{
	uint64_t bad = 0, written = 0;
	for (uint64_t i = 0; i < NPAGES; i++) {
		const uint8_t *d = vm->dst + i * PS;
		if (i < WPAGES && vm->wlog[i]) {
			written++;
			uint8_t want[PS];
			stamp(want, i, vm->wlog[i] - 1);
			bad += memcmp(d, want, PS) != 0;
		} else {
			bad += memcmp(d, vm->src + i * PS, PS) != 0;
		}
		if (bad == 1 && memcmp(d, vm->src + i * PS, PS)) {
			fprintf(stderr,
				"first bad page %llu: gen %lld here, "
				"%lld at the source\n",
				(unsigned long long)i,
				(long long)stamp_gen(d, i),
				(long long)stamp_gen(vm->src + i * PS, i));
			bad++; /* print once */
		}
	}
	printf("  pages written on the destination: %llu, wrong: %llu\n",
	       (unsigned long long)written, (unsigned long long)bad);
	CHECK(bad == 0);
}

/* May this process run a thread SCHED_FIFO (CAP_SYS_NICE, RLIMIT_RTPRIO)?
 * Asked once, of a thread of its own. */
static void *probe_rt(void *arg)
{
	struct sched_param sp = { .sched_priority = 1 };
	*(bool *)arg =
		pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0;
	return NULL;
}

static bool rt_allowed(void)
{
	static int known = -1;
	if (known < 0) {
		bool ok = false;
		pthread_t t;
		CHECK(pthread_create(&t, NULL, probe_rt, &ok) == 0);
		pthread_join(t, NULL);
		known = ok;
		printf("  SCHED_FIFO allowed here: %s\n", ok ? "yes" : "no");
	}
	return known;
}

/* A whole post-copy migration, manual (mfd_source_start_postcopy after
 * round 1), early (manual, in the middle of round 0) or auto; with
 * postcopy-bulk-nice = nice and postcopy-urgent-priority = prio (-1:
 * not set, the default 1). */
static void run_switch(const char *mode, unsigned lanes, int nice, int prio)
{
	struct pc_vm vm;
	char uri[128], lanes_kv[32], nice_kv[32], prio_kv[40];
	setup(&vm);
	snprintf(lanes_kv, sizeof(lanes_kv), "postcopy-lanes=%u", lanes);
	snprintf(nice_kv, sizeof(nice_kv), "postcopy-bulk-nice=%d", nice);
	snprintf(prio_kv, sizeof(prio_kv), "postcopy-urgent-priority=%d",
		 prio < 0 ? 1 : prio);
	bool rt = prio != 0 && rt_allowed();
	errno = 0;
	base_nice = getpriority(PRIO_PROCESS, 0);
	CHECK(errno == 0);
	bulk_nice = nice;
	bool early = strcmp(mode, "early") == 0;
	bool manual = early || strcmp(mode, "manual") == 0;
	/* early: the source guest dirties the first quarter only, so that
	 * pages taken back from the queues beyond it are sent after the
	 * switch only because they were put back in the dirty set. */
	if (early)
		vm.src_span = NPAGES / 4;
	const char *kv[] = { manual ? "postcopy=manual" : "postcopy=auto",
			     lanes_kv, "channels=2", "postcopy-after-rounds=2",
			     "downtime-limit=1",
			     /* slow enough that the guest keeps ahead (early:
			      * round 0 takes 2 s) */
			     early ? "max-bandwidth=16M" : "max-bandwidth=64M",
			     "max-postcopy-bandwidth=32M",
			     /* early: the workers' queues (2 x 8 packets
			      * of 100 pages) hold most of the guest, so the
			      * switch must take them back, and what round 0
			      * sent ends inside a 2 MiB huge page (guest RAM
			      * is MADV_HUGEPAGE), whose other pages the
			      * kernel fills with zeros */
			     early ? "packet-pages=100" : "packet-pages=512",
			     nice_kv, prio < 0 ? NULL : prio_kv, NULL };
	mfd_config *cfg = config(kv);
	claims_start(&vm);
	CHECK(start_dest(&vm, cfg, uri, sizeof(uri)) == 0);
	CHECK(start_source(&vm, cfg, uri) == 0);
	uint64_t asked_at = 0; /* early: pages sent when it was asked */
	if (manual) {
		mfd_stats st;
		do {
			usleep(1000);
			mfd_source_get_stats(vm.s, &st, sizeof(st));
		} while (st.phase <= MFD_PHASE_SETUP ||
			 (st.phase == MFD_PHASE_PRECOPY &&
			  (early ? st.pages < NPAGES / 8 : st.round < 1)));
		CHECK(mfd_source_start_postcopy(vm.s) == 0);
		asked_at = st.pages;
		CHECK(!early || st.round == 0);
	}
	int sret = mfd_source_wait(vm.s);
	int dret = mfd_dest_wait(vm.d);
	if (sret || dret) {
		/* A failure after the switch keeps guest memory registered
		 * (a lost guest): a guest thread waiting for a page is let go
		 * only by mfd_dest_free(). */
		printf("  %s: source %s, destination %s\n", mode,
		       mfd_strerror(sret), mfd_strerror(dret));
		mfd_dest_free(vm.d);
		dst_guest_stop(&vm);
		CHECK(sret == 0 && dret == 0);
	}
	dst_guest_stop(&vm);
	mfd_stats ss, ds;
	mfd_source_get_stats(vm.s, &ss, sizeof(ss));
	mfd_dest_get_stats(vm.d, &ds, sizeof(ds));
	printf("  %s, %u lane(s): source %s, destination %s; switch at round "
	       "%u; %llu urgent pages for %llu requests, %llu faults, "
	       "latency p50 %.3f ms p99 %.3f ms max %.3f ms, blocktime "
	       "%.1f ms, downtime %.1f + %.1f ms, %llu reads\n",
	       mode, lanes, mfd_strerror(sret), mfd_strerror(dret),
	       ss.postcopy_round, (unsigned long long)ss.urgent_pages,
	       (unsigned long long)ss.urgent_requests,
	       (unsigned long long)ds.faults, ds.latency_p50_ns / 1e6,
	       ds.latency_p99_ns / 1e6, ds.latency_max_ns / 1e6,
	       ds.blocktime_ns / 1e6, ss.downtime_ns / 1e6,
	       ds.downtime_ns / 1e6,
	       (unsigned long long)atomic_load(&vm.reads));
	CHECK(sret == 0 && dret == 0);
	CHECK(ss.phase == MFD_PHASE_COMPLETED);
	CHECK(ss.postcopy_round >= 1 && ds.postcopy_round == ss.postcopy_round);
	CHECK(atomic_load(&vm.switched) == 1);
	CHECK(atomic_load(&vm.stopped) == 1 && atomic_load(&vm.resumed) == 0);
	/* The readers ran while pages were being placed: they faulted,
	 * and every page they read was whole. */
	CHECK(atomic_load(&vm.reads) > 0 && ds.faults > 0);
	CHECK(atomic_load(&vm.torn) == 0);
	CHECK(ss.pages == ds.pages);
	CHECK(ds.page_requests >= ss.urgent_requests);
	/* Every page sent once after the switch, and again on request only
	 * where it had been claimed; the destination got a page it held
	 * only then. */
	for (uint64_t i = 0; i < NPAGES; i++)
		CHECK(atomic_load(&vm.claims[0][i]) <= 1);
	CHECK(ss.urgent_again_pages == check_again(&vm));
	CHECK(atomic_load(&dst_dups) <= ss.urgent_again_pages);
	/* postcopy-bulk-nice above the test's nice: the data channels'
	 * packets placed by threads lowered to it, the lanes' by threads at
	 * the test's nice; below it (0, or the test run at nice 19) no
	 * thread is raised. */
	printf("  packets placed at nice %d: %llu, at nice %d: %llu, "
	       "other: %llu\n",
	       base_nice, (unsigned long long)atomic_load(&placed_base), nice,
	       (unsigned long long)atomic_load(&placed_low),
	       (unsigned long long)atomic_load(&placed_other));
	CHECK(atomic_load(&placed_other) == 0 && atomic_load(&placed_base) > 0);
	CHECK((nice > base_nice) == (atomic_load(&placed_low) > 0));
	/* postcopy-urgent-priority where the process may: every page a lane
	 * claimed (all it sent but the bulk's, sent again) was claimed on a
	 * SCHED_FIFO thread, no data channel's; its packets were placed by
	 * one on the destination; each lane's thread on both sides and the
	 * fault thread ran so. Else none of them. */
	printf("  SCHED_FIFO: %u + %u threads, %llu pages claimed (%llu "
	       "not), %llu packets placed (%llu not)\n",
	       ss.urgent_rt_threads, ds.urgent_rt_threads,
	       (unsigned long long)atomic_load(&claimed_rt),
	       (unsigned long long)atomic_load(&claimed_fair),
	       (unsigned long long)atomic_load(&placed_rt),
	       (unsigned long long)atomic_load(&placed_fair));
	CHECK(ss.urgent_rt_threads == (rt ? lanes : 0));
	CHECK(ds.urgent_rt_threads == (rt ? lanes + 1 : 0));
	CHECK(atomic_load(&claimed_rt) ==
	      (rt ? ss.urgent_pages - ss.urgent_again_pages : 0));
	CHECK((atomic_load(&placed_rt) > 0) == (rt && ss.urgent_pages > 0));
	CHECK(atomic_load(&claimed_fair) > 0 && atomic_load(&placed_fair) > 0);
	CHECK(atomic_load(&rt_prio_seen) ==
	      (rt && ss.urgent_pages ? (prio < 0 ? 1 : prio) : 0));
	if (early) {
		/* The request ended round 0 where it was: the pages it had
		 * not reached went after the switch, not before it. */
		mfd_round_stats r0;
		CHECK(mfd_source_get_round(vm.s, 0, &r0, sizeof(r0)) == 0);
		printf("  asked after %llu pages; round 0 sent %llu of %u\n",
		       (unsigned long long)asked_at,
		       (unsigned long long)r0.pages, NPAGES);
		CHECK(ss.postcopy_round == 1);
		CHECK(r0.pages < NPAGES);
	}
	check_memory(&vm);
	mfd_source_free(vm.s);
	mfd_dest_free(vm.d);
	mfd_config_free(cfg);
	claims_stop(&vm);
	teardown(&vm);
}

/* The destination in a child process, SIGKILLed by the source's postcopy
 * hook: a lost guest, never resumed. With resume-timeout the source
 * pauses first; a resume to the dead destination fails, and so does the
 * migration when the time is up. */
static void run_killed(bool resumable)
{
	struct pc_vm vm;
	setup(&vm);
	const char *kv[] = { "postcopy=manual", "channels=2",
			     "downtime-limit=1", "max-bandwidth=64M",
			     "max-postcopy-bandwidth=8M", "io-timeout=5s",
			     /* 0: no postcopy-paused, lost at once */
			     resumable ? "resume-timeout=2s"
				       : "resume-timeout=0",
			     NULL };
	int pfd[2];
	CHECK(pipe(pfd) == 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(pfd[0]);
		mfd_config *cfg = config(kv);
		char uri[128];
		if (start_dest(&vm, cfg, uri, sizeof(uri)))
			_exit(2);
		if (write(pfd[1], uri, sizeof(uri)) != sizeof(uri))
			_exit(2);
		mfd_dest_wait(vm.d);
		_exit(3); /* never reached: killed */
	}
	close(pfd[1]);
	char uri[128];
	CHECK(read(pfd[0], uri, sizeof(uri)) == sizeof(uri));
	close(pfd[0]);
	vm.kill_pid = pid;
	mfd_config *cfg = config(kv);
	CHECK(start_source(&vm, cfg, uri) == 0);
	CHECK(mfd_source_start_postcopy(vm.s) == 0);
	if (resumable) {
		mfd_stats st;
		uint64_t t0 = tvm_now_ms();
		do {
			usleep(2000);
			mfd_source_get_stats(vm.s, &st, sizeof(st));
			CHECK(tvm_now_ms() - t0 < 20000);
		} while (st.phase != MFD_PHASE_POSTCOPY_PAUSED);
		CHECK(mfd_source_resume(vm.s, uri) < 0); /* refused */
		mfd_source_get_stats(vm.s, &st, sizeof(st));
		CHECK(st.phase == MFD_PHASE_POSTCOPY_PAUSED);
		CHECK(mfd_source_cancel(vm.s) == MFD_ESTATE);
		CHECK(atomic_load(&vm.src_paused) == 1);
	}
	int sret = mfd_source_wait(vm.s);
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	mfd_stats ss;
	mfd_source_get_stats(vm.s, &ss, sizeof(ss));
	printf("  killed destination: source %s (cause: %s): %s\n",
	       mfd_strerror(sret), mfd_strerror(ss.error),
	       mfd_source_error_text(vm.s));
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	CHECK(sret == MFD_ELOSTGUEST);
	CHECK(ss.phase == MFD_PHASE_FAILED && ss.error != 0);
	CHECK(atomic_load(&vm.switched) == 1);
	CHECK(atomic_load(&vm.stopped) == 1 && atomic_load(&vm.resumed) == 0);
	CHECK(ss.resumes == 0);
	CHECK(mfd_source_cancel(vm.s) == 0); /* nothing runs: no effect */
	mfd_source_free(vm.s);
	mfd_config_free(cfg);
	teardown(&vm);
}

/* Both sides freed (the destination first: its free lets go the guest's
 * threads blocked on missing pages), then the guest and the memory. */
static void free_vm(struct pc_vm *vm, mfd_config *cfg)
{
	atomic_store(&vm->dst_stop, 1);
	mfd_dest_free(vm->d);
	dst_guest_stop(vm);
	mfd_source_free(vm->s);
	mfd_config_free(cfg);
	teardown(vm);
}

/* The destination's embedder cancels once the guest runs there (1 MB/s
 * after the switch: far from complete): both sides report a lost guest,
 * the source never resumes it. */
static void run_cancelled(void)
{
	struct pc_vm vm;
	char uri[128];
	setup(&vm);
	const char *kv[] = { "postcopy=manual",		  "channels=2",
			     "downtime-limit=1",	  "max-bandwidth=64M",
			     "max-postcopy-bandwidth=1M", "io-timeout=5s",
			     "resume-timeout=0",	  NULL };
	mfd_config *cfg = config(kv);
	CHECK(start_dest(&vm, cfg, uri, sizeof(uri)) == 0);
	CHECK(start_source(&vm, cfg, uri) == 0);
	CHECK(mfd_source_start_postcopy(vm.s) == 0);
	mfd_stats ds, ss;
	uint64_t t0 = tvm_now_ms();
	do {
		usleep(1000);
		mfd_dest_get_stats(vm.d, &ds, sizeof(ds));
		CHECK(tvm_now_ms() - t0 < 20000);
	} while (ds.phase != MFD_PHASE_POSTCOPY || !ds.downtime_ns);
	CHECK(mfd_dest_cancel(vm.d) == 0);
	int sret = mfd_source_wait(vm.s);
	int dret = mfd_dest_wait(vm.d);
	mfd_source_get_stats(vm.s, &ss, sizeof(ss));
	mfd_dest_get_stats(vm.d, &ds, sizeof(ds));
	printf("  cancelled destination: source %s, destination %s, %llu "
	       "faults\n",
	       mfd_strerror(sret), mfd_strerror(dret),
	       (unsigned long long)ds.faults);
	CHECK(sret == MFD_ELOSTGUEST && dret == MFD_ELOSTGUEST);
	CHECK(ss.phase == MFD_PHASE_FAILED && ds.phase == MFD_PHASE_FAILED);
	CHECK(vm.failed_err == MFD_ELOSTGUEST);
	CHECK(atomic_load(&vm.switched) == 1);
	CHECK(atomic_load(&vm.stopped) == 1 && atomic_load(&vm.resumed) == 0);
	CHECK(atomic_load(&vm.torn) == 0);
	free_vm(&vm, cfg);
}

/* The destination asks for more than one packet's pages. */
static void long_request(struct mfd__page_range *r)
{
	r->length = 256 * (uint64_t)PS;
}

static void run_bad_request(void)
{
	struct pc_vm vm;
	char uri[128];
	setup(&vm);
	const char *kv[] = { "postcopy=manual",
			     "channels=2",
			     "packet-pages=64",
			     "downtime-limit=1",
			     "max-bandwidth=64M",
			     "max-postcopy-bandwidth=4M",
			     NULL };
	mfd_config *cfg = config(kv);
	mfd__test_dest_request = long_request;
	CHECK(start_dest(&vm, cfg, uri, sizeof(uri)) == 0);
	CHECK(start_source(&vm, cfg, uri) == 0);
	CHECK(mfd_source_start_postcopy(vm.s) == 0);
	int sret = mfd_source_wait(vm.s);
	int dret = mfd_dest_wait(vm.d);
	mfd_stats ss;
	mfd_source_get_stats(vm.s, &ss, sizeof(ss));
	printf("  malformed PAGE_REQ: source %s (cause %s), destination %s, "
	       "its failed hook %s\n",
	       mfd_strerror(sret), mfd_strerror(ss.error), mfd_strerror(dret),
	       mfd_strerror(vm.failed_err));
	CHECK(sret == MFD_ELOSTGUEST);
	CHECK(ss.error == MFD_ELENGTH);
	CHECK(dret == MFD_ELOSTGUEST && vm.failed_err == MFD_ELOSTGUEST);
	CHECK(atomic_load(&vm.resumed) == 0);
	/* Its faulting threads wait until the registration goes. */
	atomic_store(&vm.dst_stop, 1);
	mfd_dest_free(vm.d);
	dst_guest_stop(&vm);
	mfd__test_dest_request = NULL;
	mfd_source_free(vm.s);
	mfd_config_free(cfg);
	teardown(&vm);
}

/* ---- fault matrix of the post-copy messages ---- */

static int pc_fault(struct tvm_proxy *p, unsigned conn, uint64_t pos,
		    size_t len)
{
	struct pc_vm *vm = p->opaque;
	(void)pos;
	(void)len;
	if (conn != vm->fault_conn || !atomic_load(&vm->armed))
		return TVM_PASS;
	if (vm->fault_after_dst_switch) {
		/* SWITCH itself may still be in the proxy when the source's
		 * postcopy hook arms: a SWITCH lost on the way leaves a
		 * destination that never ran the guest (it fails). */
		mfd_stats st;
		mfd_dest_get_stats(vm->d, &st, sizeof(st));
		if (st.postcopy_round == 0)
			return TVM_PASS;
	}
	if (atomic_exchange(&vm->fired, 1))
		return TVM_PASS;
	return vm->fault_how;
}

static const char *conn_name(unsigned conn)
{
	/* main, 2 data channels, then the lanes */
	return conn == 0 ? "main" : conn <= 2 ? "data" : "urgent lane";
}

static void setup_fault(struct pc_vm *vm, int phase, unsigned conn, int how)
{
	setup(vm);
	vm->fault_phase = phase;
	vm->fault_conn = conn;
	vm->fault_how = how;
}

/* Both sides of a manual post-copy with 2 data channels and 2 lanes, the
 * source connected through px (vm's fault fields set), resume-timeout
 * resume_ms; the switch asked for at once. Returns the start time. */
static uint64_t start_faulty(struct pc_vm *vm, struct tvm_proxy *px,
			     unsigned resume_ms, char *uri, size_t len,
			     mfd_config **cfg)
{
	char rtmo[48];
	snprintf(rtmo, sizeof(rtmo), "resume-timeout=%ums", resume_ms);
	const char *kv[] = { "postcopy=manual",
			     "channels=2",
			     "postcopy-lanes=2",
			     "downtime-limit=1",
			     "max-bandwidth=64M",
			     "max-postcopy-bandwidth=16M",
			     "io-timeout=2s",
			     rtmo,
			     NULL };
	*cfg = config(kv);
	CHECK(start_dest(vm, *cfg, uri, len) == 0);
	*px = (struct tvm_proxy){ .fault = pc_fault, .opaque = vm };
	tvm_proxy_start(px, uri, 5);
	uint64_t t0 = tvm_now_ms();
	CHECK(start_source(vm, *cfg, px->listen_uri) == 0);
	if (vm->ask_after_round0) {
		/* Round 0 whole, so that the guest's writes since make the
		 * switch send DISCARDs before the stop. */
		mfd_stats st;
		do {
			usleep(1000);
			mfd_source_get_stats(vm->s, &st, sizeof(st));
		} while (st.phase <= MFD_PHASE_SETUP ||
			 (st.phase == MFD_PHASE_PRECOPY && st.round < 1));
	}
	CHECK(mfd_source_start_postcopy(vm->s) == 0);
	return t0;
}

/*
 * A connection broken (closed, reset, stalled) through a proxy at the
 * stop (main: the DISCARD, device state and SWITCH messages) or after the
 * switch (data: flagged PAGES; lane: the answers to PAGE_REQ; main: END).
 * Before SWITCH is out the guest resumes here; after it, it never does:
 * MFD_ELOSTGUEST on both sides. Either way the case ends within a few
 * io-timeouts. With resume_ms (resume-timeout) a break after the stop and
 * before SWITCH still fails on the source (the guest resumed there: no
 * pause from the stop to SWITCH, protocol 10.5); a source that sent
 * SWITCH pauses and, nothing listening for it, loses the guest after
 * resume_ms.
 */
static void run_fault(int phase, unsigned conn, int how, unsigned resume_ms)
{
	static const char *how_name[] = { "pass", "close", "reset", "stall" };
	struct pc_vm vm;
	char uri[128];
	setup_fault(&vm, phase, conn, how);
	mfd_config *cfg;
	struct tvm_proxy px;
	uint64_t t0 = start_faulty(&vm, &px, resume_ms, uri, sizeof(uri), &cfg);
	int sret = mfd_source_wait(vm.s);
	int dret = mfd_dest_wait(vm.d);
	uint64_t ms = tvm_now_ms() - t0;
	tvm_proxy_stop(&px);
	mfd_stats ss;
	mfd_source_get_stats(vm.s, &ss, sizeof(ss));
	printf("  %s %s %s: source %s (cause %s), destination %s, fired %d, "
	       "%llu ms\n",
	       phase == AT_STOP ? "at the stop," : "after the switch,",
	       how_name[how], conn_name(conn), mfd_strerror(sret),
	       mfd_strerror(ss.error), mfd_strerror(dret),
	       atomic_load(&vm.fired), (unsigned long long)ms);
	CHECK(atomic_load(&vm.fired));
	CHECK(sret != 0 && dret != 0);
	CHECK(atomic_load(&vm.stopped) == 1);
	if (atomic_load(&vm.switched)) {
		/* SWITCH left: the guest is the destination's. */
		CHECK(sret == MFD_ELOSTGUEST && atomic_load(&vm.resumed) == 0);
		CHECK(ss.error != 0 && ss.error != MFD_ELOSTGUEST);
	} else {
		CHECK(sret != MFD_ELOSTGUEST && atomic_load(&vm.resumed) == 1);
		CHECK(phase == AT_STOP);
	}
	/* The destination's guest is lost where it ran; where SWITCH never
	 * arrived it never ran there (nor anywhere: the source lost it). */
	CHECK(vm.failed_err == dret);
	CHECK((dret == MFD_ELOSTGUEST) == vm.dst_running);
	if (phase == AT_STOP)
		CHECK(!vm.dst_running || atomic_load(&vm.switched));
	/* Without resume-timeout nothing pauses; with it a destination that
	 * lost main before SWITCH cannot tell the source stopped: it pauses
	 * (as in the DISCARD exchange) and fails after resume_ms. */
	CHECK(resume_ms || atomic_load(&vm.dst_paused) == 0);
	CHECK(!resume_ms ? atomic_load(&vm.src_paused) == 0
			 : atomic_load(&vm.src_paused) <=
				   atomic_load(&vm.switched));
	CHECK(ms < 30000);
	free_vm(&vm, cfg);
}

static void run_faults(void)
{
	run_fault(AT_STOP, 0, TVM_CLOSE, 0);
	run_fault(AT_STOP, 0, TVM_STALL, 0);
	run_fault(AT_SWITCH, 1, TVM_CLOSE, 0);
	run_fault(AT_SWITCH, 2, TVM_RESET, 0);
	run_fault(AT_SWITCH, 1, TVM_STALL, 0);
	run_fault(AT_SWITCH, 3, TVM_RESET, 0);
	run_fault(AT_SWITCH, 4, TVM_STALL, 0);
	run_fault(AT_SWITCH, 0, TVM_CLOSE, 0);
	/* resume-timeout on: from the stop to SWITCH the source does not
	 * pause (its guest is resumed) unless SWITCH went out. */
	run_fault(AT_STOP, 0, TVM_CLOSE, 3000);
	run_fault(AT_STOP, 0, TVM_STALL, 3000);
}

/* ---- postcopy-paused and resume (protocol 10.5) ---- */

/* The first DISCARD applied: main breaks before its DISCARDED. */
static atomic_int discard_cut;

static void cut_at_discard(struct mfd__chan *main)
{
	if (!atomic_exchange(&discard_cut, 1))
		main->ops->shutdown(main, SHUT_RDWR);
}

static void wait_both(struct pc_vm *vm, int phase)
{
	uint64_t t0 = tvm_now_ms();
	for (;;) {
		mfd_stats ss, ds;
		mfd_source_get_stats(vm->s, &ss, sizeof(ss));
		mfd_dest_get_stats(vm->d, &ds, sizeof(ds));
		if (ss.phase == phase && ds.phase == phase)
			return;
		if (tvm_now_ms() - t0 > 20000) {
			fprintf(stderr, "phases %s / %s, waiting for %s\n",
				mfd_phase_name(ss.phase),
				mfd_phase_name(ds.phase),
				mfd_phase_name(phase));
			exit(1);
		}
		usleep(2000);
	}
}

/* run_pc_resume(): main cut by the destination in the DISCARD exchange */
#define AT_DISCARD 99

/*
 * Connection conn (0 main, 1-2 data, 3-4 lanes) broken (how) after the
 * switch, at its next chunk from the source: both sides postcopy-paused;
 * then resumed (or not: resume-timeout passes, a lost guest). conn
 * AT_DISCARD: main broken before the stop, in the DISCARD exchange: both
 * sides paused (pre-copy's phase), resumed, the switch made again.
 */
static void run_pc_resume(unsigned conn, int how, bool resume)
{
	bool early = conn == AT_DISCARD;
	struct pc_vm vm;
	char uri[128];
	setup_fault(&vm, AT_SWITCH, conn, how);
	vm.fault_after_dst_switch = true;
	claims_start(&vm);
	atomic_store(&discard_cut, 0);
	if (early)
		mfd__test_dest_discard = cut_at_discard;
	vm.ask_after_round0 = early;
	mfd_config *cfg;
	struct tvm_proxy px;
	uint64_t t0 = start_faulty(&vm, &px, resume ? 30000 : 1000, uri,
				   sizeof(uri), &cfg);
	mfd_stats ss, ds;
	if (resume && early) {
		wait_both(&vm, MFD_PHASE_PAUSED);
		CHECK(atomic_load(&discard_cut));
		CHECK(atomic_load(&vm.switched) == 0 &&
		      atomic_load(&vm.stopped) == 0);
		CHECK(mfd_source_resume(vm.s, uri) == 0);
	} else if (resume) {
		wait_both(&vm, MFD_PHASE_POSTCOPY_PAUSED);
		CHECK(atomic_load(&vm.fired));
		CHECK(mfd_source_cancel(vm.s) == MFD_ESTATE);
		/* Paused, the destination's guest runs on: what it reads is
		 * whole or waits. */
		mfd_dest_get_stats(vm.d, &ds, sizeof(ds));
		printf("  paused: %llu faults, %llu requests so far\n",
		       (unsigned long long)ds.faults,
		       (unsigned long long)ds.page_requests);
		usleep(100000);
		/* To the destination itself: the proxy is a path that broke. */
		CHECK(mfd_source_resume(vm.s, uri) == 0);
	}
	int sret = mfd_source_wait(vm.s);
	int dret = mfd_dest_wait(vm.d);
	uint64_t ms = tvm_now_ms() - t0;
	tvm_proxy_stop(&px);
	mfd_source_get_stats(vm.s, &ss, sizeof(ss));
	mfd_dest_get_stats(vm.d, &ds, sizeof(ds));
	uint64_t twice = 0, sent = 0, once_more = 0;
	for (uint64_t i = 0; i < NPAGES; i++) {
		unsigned a = atomic_load(&vm.claims[0][i]);
		unsigned b = atomic_load(&vm.claims[1][i]);
		sent += a + b;
		twice += a > 1 || b > 1;
		once_more += a && b;
	}
	printf("  %s %s, %s: source %s (cause %s), destination %s, paused "
	       "%d/%d, resumes %u/%u; %llu pages sent after the switch, "
	       "%llu again after the resume (source: %llu bytes of %llu to "
	       "send), %llu arrived twice (%llu sent again on request); "
	       "%llu reads, %llu ms\n",
	       how == TVM_RESET	  ? "reset"
	       : how == TVM_STALL ? "stalled"
				  : "closed",
	       early ? "main at a DISCARD" : conn_name(conn),
	       resume ? "resumed" : "not resumed", mfd_strerror(sret),
	       mfd_strerror(ss.error), mfd_strerror(dret),
	       atomic_load(&vm.src_paused), atomic_load(&vm.dst_paused),
	       ss.resumes, ds.resumes, (unsigned long long)sent,
	       (unsigned long long)once_more,
	       (unsigned long long)ss.resume_bytes,
	       (unsigned long long)ss.resume_inflight_bytes,
	       (unsigned long long)atomic_load(&dst_dups),
	       (unsigned long long)atomic_load(&src_again),
	       (unsigned long long)atomic_load(&vm.reads),
	       (unsigned long long)ms);
	CHECK(early ? atomic_load(&discard_cut) : atomic_load(&vm.fired));
	CHECK(atomic_load(&vm.switched) == 1);
	CHECK(atomic_load(&vm.stopped) == 1 && atomic_load(&vm.resumed) == 0);
	CHECK(atomic_load(&vm.src_paused) == 1 &&
	      atomic_load(&vm.dst_paused) == 1);
	CHECK(vm.src_cause < 0 && vm.dst_cause < 0);
	CHECK(atomic_load(&vm.torn) == 0);
	CHECK(ms < 60000);
	if (resume) {
		CHECK(sret == 0 && dret == 0);
		CHECK(ss.phase == MFD_PHASE_COMPLETED &&
		      ds.phase == MFD_PHASE_COMPLETED);
		CHECK(ss.resumes == 1 && ds.resumes == 1);
		CHECK(vm.failed_err == 0);
		/* Claimed once per side of the pause at most; twice only
		 * where the destination did not hold it (RECEIVED), and the
		 * destination got a page it held only where a lane sent a
		 * page of the bulk's again on request. */
		CHECK(twice == 0);
		/* Before the switch the resume is pre-copy's (7.8): nothing
		 * of post-copy had gone. */
		CHECK(early ? once_more == 0
			    : once_more * PS == ss.resume_bytes);
		CHECK(ss.resume_bytes <= ss.resume_inflight_bytes);
		CHECK(atomic_load(&dst_dups) <= atomic_load(&src_again));
		CHECK(ss.urgent_again_pages == check_again(&vm));
		/* The break cut pages on their way (a data channel, or a
		 * lane's first answer: a request the resume asks again). */
		if (conn != 0 && !early)
			CHECK(once_more > 0);
		dst_guest_stop(&vm);
		check_memory(&vm);
	} else {
		/* resume-timeout passed: a lost guest on both sides. */
		CHECK(sret == MFD_ELOSTGUEST && dret == MFD_ELOSTGUEST);
		CHECK(vm.failed_err == MFD_ELOSTGUEST);
		CHECK(ss.phase == MFD_PHASE_FAILED && ss.error != 0);
		CHECK(ss.resumes == 0 && ds.resumes == 0);
		CHECK(mfd_source_resume(vm.s, uri) == MFD_ESTATE);
	}
	mfd__test_dest_discard = NULL;
	atomic_store(&vm.dst_stop, 1);
	mfd_dest_free(vm.d);
	dst_guest_stop(&vm);
	mfd_source_free(vm.s);
	mfd_config_free(cfg);
	claims_stop(&vm);
	teardown(&vm);
}

static void run_pc_resumes(void)
{
	run_pc_resume(AT_DISCARD, TVM_CLOSE, true); /* before the stop */
	run_pc_resume(1, TVM_RESET, true);	    /* bulk pages streaming */
	run_pc_resume(3, TVM_RESET, true);	    /* a request outstanding */
	run_pc_resume(0, TVM_CLOSE, true);	    /* main */
	run_pc_resume(4, TVM_STALL, true); /* a lane silent: io-timeout */
	run_pc_resume(2, TVM_RESET, false);
}

int main(void)
{
	tvm_io_engine("test_postcopy");
	struct mfd__uffd_missing u;
	int ret = mfd__uffd_missing_open(&u);
	mfd__uffd_missing_close(&u);
	if (ret) {
		printf("SKIP: userfaultfd (MISSING) unavailable: %s\n",
		       mfd_strerror(ret));
		return 77;
	}
	/* One case: $MFD_TEST_CASE, or $MFD_TEST_FILTER as
	 * tests/mutations/run.sh sets it. */
	const char *only = getenv("MFD_TEST_CASE");
	if (!only || !*only)
		only = getenv("MFD_TEST_FILTER");
	if (only && !*only)
		only = NULL;
	if (!only || !strcmp(only, "manual")) {
		printf("manual switch\n");
		run_switch("manual", 1, 0, -1);
	}
	if (!only || !strcmp(only, "early")) {
		printf("manual switch in the middle of round 0\n");
		run_switch("early", 1, 0, -1);
	}
	if (!only || !strcmp(only, "auto")) {
		printf("auto switch, 2 lanes\n");
		run_switch("auto", 2, 0, 3);
	}
	if (!only || !strcmp(only, "bulknice")) {
		printf("manual switch, postcopy-bulk-nice=15, "
		       "postcopy-urgent-priority=0\n");
		run_switch("manual", 1, 15, 0);
	}
	if (!only || !strcmp(only, "killed")) {
		printf("destination killed after the switch\n");
		run_killed(false);
	}
	if (!only || !strcmp(only, "cancelled")) {
		printf("destination cancelled after the switch\n");
		run_cancelled();
	}
	if (!only || !strcmp(only, "killed-paused")) {
		printf("destination killed after the switch, resume-timeout "
		       "on\n");
		run_killed(true);
	}
	if (!only || !strcmp(only, "pcresume")) {
		printf("postcopy-paused and resumed\n");
		run_pc_resumes();
	}
	if (!only || !strcmp(only, "badreq")) {
		printf("malformed page request\n");
		run_bad_request();
	}
	if (!only || !strcmp(only, "faults")) {
		printf("fault matrix of the post-copy messages\n");
		run_faults();
	}
	printf("ok\n");
	return 0;
}
