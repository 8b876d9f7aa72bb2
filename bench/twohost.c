/* SPDX-License-Identifier: MIT */
/* Two-host mode of multifd-bench: see twohost.h. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "plot.h"
#include "progress.h"
#include "report.h"
#include "twohost.h"

struct side {
	const struct twohost_args *a;
	mfd_source *src;
	mfd_dest *dst;
	uint64_t stop_ns, loaded_ns;
	unsigned stops, resumes;
	/* watchdog */
	pthread_t wd;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done, fired;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static double tv_s(const struct timeval *tv)
{
	return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static int on_stop(void *opaque)
{
	struct side *s = opaque;

	__atomic_store_n(&s->stop_ns, mono_ns(), __ATOMIC_RELEASE);
	__atomic_add_fetch(&s->stops, 1, __ATOMIC_RELAXED);
	return 0;
}

static int on_resume(void *opaque)
{
	struct side *s = opaque;

	__atomic_add_fetch(&s->resumes, 1, __ATOMIC_RELAXED);
	return 0;
}

static int on_loaded(void *opaque)
{
	struct side *s = opaque;

	__atomic_store_n(&s->loaded_ns, mono_ns(), __ATOMIC_RELEASE);
	return 0;
}

/* Cancels a run that takes longer than --timeout. */
static void *watchdog(void *arg)
{
	struct side *s = arg;
	struct timespec dl;
	int rc = 0;

	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += s->a->timeout_s;
	pthread_mutex_lock(&s->lock);
	while (!s->done && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&s->cond, &s->lock, &dl);
	if (!s->done) {
		s->fired = true;
		fprintf(stderr, "%s: no result after %u s, cancelling\n",
			s->a->prog, s->a->timeout_s);
		if (s->src)
			mfd_source_cancel(s->src);
		if (s->dst)
			mfd_dest_cancel(s->dst);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static int watchdog_begin(struct side *s)
{
	pthread_condattr_t ca;
	int err;

	if (!s->a->timeout_s)
		return 0;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	err = pthread_create(&s->wd, NULL, watchdog, s);
	return -err;
}

static void watchdog_end(struct side *s)
{
	if (!s->a->timeout_s)
		return;
	pthread_mutex_lock(&s->lock);
	s->done = true;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->wd, NULL);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
}

static int fail(const char *prog, const char *what, int err)
{
	fprintf(stderr, "%s: %s: %s (%d)\n", prog, what, mfd_strerror(err),
		err);
	return err;
}

static bool cfg_on(const mfd_config *cfg, const char *key)
{
	char b[16];

	return !mfd_config_get(cfg, key, b, sizeof(b)) && !strcmp(b, "on");
}

int twohost_run(const struct twohost_args *a)
{
	struct side s = { .a = a };
	mfd_source_hooks sh = { .opaque = &s,
				.stop = on_stop,
				.resume = on_resume };
	mfd_dest_hooks dh = { .opaque = &s, .loaded = on_loaded };
	struct sampler *smp = NULL;
	struct rusage ru0, ru1;
	struct report rep;
	struct vm *vm = NULL;
	mfd_stats st;
	char uri[256] = "", title[512];
	bool memcmp_done = false, memcmp_ok = false;
	uint64_t t0, wall = 0;
	int err, run_err = 0;

	err = vm_create(&vm, a->ram_bytes, a->blocks, a->page_size);
	if (err)
		return 1;
	if (a->source) {
		err = vm_fill(vm, &a->image, a->fill_threads);
		if (err) {
			fprintf(stderr, "%s: filling RAM failed: %s\n", a->prog,
				strerror(-err));
			goto out;
		}
		err = mfd_source_new(&s.src, a->cfg, &sh);
		for (unsigned i = 0; !err && i < vm->nblocks; i++)
			err = mfd_source_add_block(
				s.src, vm->blocks[i].name, vm_block_src(vm, i),
				vm->blocks[i].size, vm->page_size);
		if (err) {
			fail(a->prog, "source setup", err);
			goto out;
		}
		snprintf(uri, sizeof(uri), "%s", a->uri);
	} else {
		if (a->dest_populate)
			vm_dest_populate(vm);
		err = mfd_dest_new(&s.dst, a->cfg, &dh);
		for (unsigned i = 0; !err && i < vm->nblocks; i++)
			err = mfd_dest_add_block(
				s.dst, vm->blocks[i].name, vm_block_dst(vm, i),
				vm->blocks[i].size, vm->page_size);
		if (!err)
			err = mfd_dest_start(s.dst, a->uri);
		if (!err)
			err = mfd_dest_get_uri(s.dst, uri, sizeof(uri));
		if (err) {
			fail(a->prog, "destination setup", err);
			goto out;
		}
		/* Scripts wait for this line before starting the source. */
		fprintf(stderr, "%s: listening on %s\n", a->prog, uri);
		fflush(stderr);
	}

	err = watchdog_begin(&s);
	if (err) {
		fail(a->prog, "watchdog", err);
		goto out;
	}
	getrusage(RUSAGE_SELF, &ru0);
	t0 = mono_ns();
	if (a->source) {
		/* The sampler starts after mfd_source_start(), which resets
		 * the statistics without atomics (see main.c). */
		run_err = mfd_source_start(s.src, uri);
		if (sampler_start(&smp, s.src, NULL, a->page_size, true))
			smp = NULL;
		if (!run_err)
			run_err = mfd_source_wait(s.src);
	} else {
		if (sampler_start(&smp, NULL, s.dst, a->page_size, true))
			smp = NULL;
		run_err = mfd_dest_wait(s.dst);
	}
	sampler_stop(smp);
	wall = mono_ns() - t0;
	getrusage(RUSAGE_SELF, &ru1);
	watchdog_end(&s);
	memset(&st, 0, sizeof(st));
	if (a->source)
		mfd_source_get_stats(s.src, &st, sizeof(st));
	else
		mfd_dest_get_stats(s.dst, &st, sizeof(st));
	if (run_err)
		fail(a->prog, a->source ? "source" : "destination", run_err);
	if (run_err == MFD_ESETUP)
		fprintf(stderr,
			"%s: give both sides the same --ram and --blocks "
			"(this side: --ram %" PRIu64 "K --blocks %u)\n",
			a->prog, a->ram_bytes >> 10, a->blocks);

	/* The destination regenerates the image from its seed in the
	 * (otherwise unused) source half of its VM and compares. */
	if (!a->source && !run_err && a->check) {
		err = vm_fill(vm, &a->image, a->fill_threads);
		if (!err) {
			memcmp_done = true;
			memcmp_ok = !memcmp(vm->src, vm->dst, vm->ram_bytes);
			if (!memcmp_ok)
				fprintf(stderr,
					"%s: destination RAM differs from "
					"image %s seed %" PRIu64 "\n",
					a->prog, vm_image_name(&a->image),
					a->image.seed);
		}
	}

	report_init(&rep);
	report_str(&rep, "status",
		   !run_err && (!memcmp_done || memcmp_ok) ? "ok" : "failed");
	if (run_err)
		report_str(&rep, "error", mfd_strerror(run_err));
	report_i64(&rep, "error_code", run_err);
	report_str(&rep, "role", a->source ? "source" : "destination");
	report_str(&rep, "uri", uri);
	report_str(&rep, "image", vm_image_name(&a->image));
	report_u64(&rep, "seed", a->image.seed);
	report_u64(&rep, "ram_bytes", a->ram_bytes);
	report_u64(&rep, "blocks", a->blocks);
	report_u64(&rep, "channels", st.channels);
	report_bool(&rep, "verify", cfg_on(a->cfg, "verify"));
	report_f64(&rep, "setup_ms", (double)st.setup_ns / 1e6, 3);
	report_f64(&rep, "transfer_ms", (double)st.transfer_ns / 1e6, 3);
	/* The downtime is measured on the source (stop hook to LOADED); on
	 * the destination it is not measured: null, never 0. */
	report_f64(&rep, "downtime_ms",
		   a->source ? (double)st.downtime_ns / 1e6 : NAN, 3);
	report_f64(&rep, "total_ms", (double)st.total_ns / 1e6, 3);
	report_f64(&rep, "wall_ms", (double)wall / 1e6, 3);
	report_u64(&rep, "wire_bytes", st.wire_bytes);
	report_u64(&rep, "pages", st.pages);
	report_u64(&rep, "rounds",
		   st.phase == MFD_PHASE_NONE ? 0 : (uint64_t)st.round + 1);
	report_f64(&rep, "throughput_mbps",
		   st.transfer_ns ? (double)st.wire_bytes * 1e3 /
					    (double)st.transfer_ns
				  : NAN,
		   1);
	report_f64(&rep, "cpu_user_s",
		   tv_s(&ru1.ru_utime) - tv_s(&ru0.ru_utime), 3);
	report_f64(&rep, "cpu_sys_s", tv_s(&ru1.ru_stime) - tv_s(&ru0.ru_stime),
		   3);
	report_bool(&rep, "verified", cfg_on(a->cfg, "verify") && !run_err);
	/* null where the destination did not compare (no image to compare
	 * with); absent on the source. */
	if (!a->source && memcmp_done)
		report_bool(&rep, "memcmp_ok", memcmp_ok);
	else if (!a->source)
		report_raw(&rep, "memcmp_ok", "null");
	report_str(&rep, "phase", mfd_phase_name(st.phase));
	report_bool(&rep, "timed_out", s.fired);
	if (a->json)
		report_json(&rep, stdout);
	else
		report_table(&rep, stdout);
	report_free(&rep);
	fflush(stdout);

	snprintf(title, sizeof(title),
		 "multifd-bench %s: %.0f MiB %s, %u channels, %s",
		 a->source ? "source" : "destination",
		 (double)a->ram_bytes / 1048576.0, vm_image_name(&a->image),
		 st.channels, uri);
	if (bench_outputs(smp, a->timeline, a->plot, a->source ? s.stop_ns : 0,
			  st.downtime_ns, title))
		err = -1;
	err = err || run_err || (memcmp_done && !memcmp_ok);
out:
	sampler_free(smp);
	mfd_source_free(s.src);
	mfd_dest_free(s.dst);
	vm_destroy(vm);
	return err ? 1 : 0;
}
