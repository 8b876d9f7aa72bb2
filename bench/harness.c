/* SPDX-License-Identifier: MIT */
/* What the local and the two-host runs share: see harness.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <multifd/announce.h>

#include "guest.h"
#include "harness.h"
#include "vm.h"

const char prog_name[] = "multifd-bench";

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

double ns_to_ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

/* ---- Hooks: record when they ran, and drive the guest's writers ---- */

static int hook_stop(void *opaque)
{
	struct hook_log *h = opaque;

	__atomic_store_n(&h->stop_ns, now_ns(), __ATOMIC_RELEASE);
	__atomic_add_fetch(&h->stops, 1, __ATOMIC_RELAXED);
	/* Returns when every writer is parked: the memory is final. */
	guest_pause(h->guest);
	h->work_at_stop = guest_work(h->guest);
	h->reader_work_at_stop = guest_reader_work(h->guest);
	return 0;
}

static int hook_resume(void *opaque)
{
	struct hook_log *h = opaque;

	__atomic_store_n(&h->resume_ns, now_ns(), __ATOMIC_RELEASE);
	__atomic_add_fetch(&h->resumes, 1, __ATOMIC_RELAXED);
	guest_resume(h->guest);
	return 0;
}

static int hook_throttle(void *opaque, int pct)
{
	struct hook_log *h = opaque;

	guest_throttle(h->guest, pct);
	if (pct > h->throttle_max)
		h->throttle_max = pct;
	h->throttles++;
	return 0;
}

static int hook_throttle_vcpu(void *opaque, unsigned vcpu, int pct)
{
	struct hook_log *h = opaque;

	guest_throttle_vcpu(h->guest, vcpu, pct);
	if (pct > h->vcpu_throttle_max)
		h->vcpu_throttle_max = pct;
	h->throttles++;
	return 0;
}

static int hook_postcopy_run(void *opaque);

static int hook_loaded(void *opaque)
{
	struct hook_log *h = opaque;

	__atomic_store_n(&h->loaded_ns, now_ns(), __ATOMIC_RELEASE);
	if (h->lazy) {
		/* A guest still running where it was (a restore alone)
		 * stops there first. */
		guest_pause(h->guest);
		return hook_postcopy_run(opaque);
	}
	return 0;
}

/* Post-copy: the source has sent SWITCH; the guest is the destination's. */
static void hook_postcopy(void *opaque)
{
	struct hook_log *h = opaque;

	__atomic_store_n(&h->switch_ns, now_ns(), __ATOMIC_RELEASE);
}

/* Post-copy: the guest runs on the destination's RAM from now on; its
 * writers fault on the pages not there yet. */
static int hook_postcopy_run(void *opaque)
{
	struct hook_log *h = opaque;

	if (h->guest && h->dst_ram) {
		guest_set_marking(h->guest, NULL);
		guest_set_ram(h->guest, h->dst_ram);
		h->work_at_run = guest_work(h->guest);
		h->reader_work_at_run = guest_reader_work(h->guest);
		guest_resume(h->guest);
	}
	__atomic_store_n(&h->run_ns, now_ns(), __ATOMIC_RELEASE);
	return 0;
}

static void hook_failed(void *opaque, int err)
{
	struct hook_log *h = opaque;

	__atomic_store_n(&h->dest_failed, err, __ATOMIC_RELEASE);
}

void hooks_source(struct hook_log *h, mfd_source_hooks *out)
{
	*out = (mfd_source_hooks){
		.opaque = h,
		.stop = hook_stop,
		.resume = hook_resume,
		.throttle = hook_throttle,
		.throttle_vcpu = hook_throttle_vcpu,
		.postcopy = hook_postcopy,
	};
}

void hooks_dest(struct hook_log *h, mfd_dest_hooks *out)
{
	*out = (mfd_dest_hooks){
		.opaque = h,
		.loaded = hook_loaded,
		.failed = hook_failed,
		.postcopy_run = hook_postcopy_run,
	};
}

int bench_add_blocks(const struct vm *vm, mfd_source *src, mfd_dest *dst)
{
	int err = 0;

	for (unsigned i = 0; !err && i < vm->nblocks; i++) {
		const struct vm_block *b = &vm->blocks[i];

		err = src ? mfd_source_add_block(src, b->name,
						 vm_block_src(vm, i), b->size,
						 vm->page_size)
			  : mfd_dest_add_block(dst, b->name,
					       vm_block_dst(vm, i), b->size,
					       vm->page_size);
	}
	return err;
}

int bench_dest_announce(mfd_dest *dst, const char *ifname,
			const uint8_t (*macs)[6], unsigned nmacs)
{
	return ifname ? mfd_dest_set_announce(dst, ifname, macs, nmacs) : 0;
}

int bench_dest_announce_wait(mfd_dest *dst, const char *ifname, unsigned nmacs)
{
	if (!ifname)
		return 0;
	int err = mfd_dest_announce_wait(dst);
	if (err)
		fprintf(stderr, "%s: announce on %s: %s\n", prog_name, ifname,
			mfd_strerror(err));
	else
		fprintf(stderr, "%s: announced %u MAC address(es) on %s\n",
			prog_name, nmacs, ifname);
	return err;
}

/* ---- Watchdog: a hung migration is cancelled rather than hanging ---- */

static void *watchdog_thread(void *arg)
{
	struct watchdog *w = arg;
	struct timespec deadline;
	int rc = 0;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += w->timeout_s;
	pthread_mutex_lock(&w->lock);
	while (!w->done && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&w->cond, &w->lock, &deadline);
	if (!w->done) {
		w->fired = true;
		fprintf(stderr, "%s: no result after %u s, cancelling\n",
			prog_name, w->timeout_s);
		if (w->src)
			mfd_source_cancel(w->src);
		if (w->dst)
			mfd_dest_cancel(w->dst);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static int watchdog_start(struct watchdog *w, unsigned timeout_s,
			  mfd_source *src, mfd_dest *dst)
{
	pthread_condattr_t ca;
	int err;

	memset(w, 0, sizeof(*w));
	w->timeout_s = timeout_s;
	w->src = src;
	w->dst = dst;
	if (!timeout_s)
		return 0;
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);
	err = pthread_create(&w->thread, NULL, watchdog_thread, w);
	if (err) {
		pthread_cond_destroy(&w->cond);
		pthread_mutex_destroy(&w->lock);
		w->timeout_s = 0;
		return -err;
	}
	return 0;
}

/* Whether it fired. */
static bool watchdog_stop(struct watchdog *w)
{
	if (!w->timeout_s)
		return false;
	pthread_mutex_lock(&w->lock);
	w->done = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	return w->fired;
}

/* ---- One run: clocks, watchdog, statistics ---- */

int bench_run_begin(struct bench_run *r, unsigned timeout_s, mfd_source *src,
		    mfd_dest *dst)
{
	int err = watchdog_start(&r->wd, timeout_s, src, dst);

	if (err)
		return err;
	getrusage(RUSAGE_SELF, &r->ru0);
	r->t0 = now_ns();
	return 0;
}

void bench_run_end(struct bench_run *r, mfd_source *src, mfd_dest *dst)
{
	r->wall_ns = now_ns() - r->t0;
	getrusage(RUSAGE_SELF, &r->ru1);
	r->timed_out = watchdog_stop(&r->wd);
	if (src)
		mfd_source_get_stats(src, &r->src_st, sizeof(r->src_st));
	if (dst)
		mfd_dest_get_stats(dst, &r->dst_st, sizeof(r->dst_st));
	while (src && r->nrounds < MAX_ROUND_RECORDS &&
	       !mfd_source_get_round(src, r->nrounds, &r->rounds[r->nrounds],
				     sizeof(r->rounds[0])))
		r->nrounds++;
}

static double tv_to_s(const struct timeval *tv)
{
	return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

void report_rusage(struct report *rep, const struct bench_run *r)
{
	report_f64(rep, "cpu_user_s",
		   tv_to_s(&r->ru1.ru_utime) - tv_to_s(&r->ru0.ru_utime), 3);
	report_f64(rep, "cpu_sys_s",
		   tv_to_s(&r->ru1.ru_stime) - tv_to_s(&r->ru0.ru_stime), 3);
}

uint64_t stats_rounds(const mfd_stats *st)
{
	return st->phase == MFD_PHASE_NONE ? 0 : (uint64_t)st->round + 1;
}

/* ---- Failure reasons ---- */

const char *bench_error_reason(mfd_source *src, mfd_dest *dst, int err)
{
	const char *text = src	 ? mfd_source_error_text(src)
			   : dst ? mfd_dest_error_text(dst)
				 : "";
	return text && *text ? text : mfd_strerror(err);
}

int bench_report_error(const char *what, mfd_source *src, mfd_dest *dst,
		       int err)
{
	fprintf(stderr, "%s: %s: %s (%d)\n", prog_name, what,
		bench_error_reason(src, dst, err), err);
	return err;
}
