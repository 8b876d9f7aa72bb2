/* SPDX-License-Identifier: MIT */
/* The local run: see local.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cutproxy.h"
#include "devices.h"
#include "vdpa.h"
#include "guest.h"
#include "local.h"
#include "plot.h"
#include "progress.h"
#include "report.h"
#include "results.h"
#include "vm.h"

/* Writes the filled source RAM to path. 0 or a negative errno. */
static int dump_image(const struct vm *vm, const char *path)
{
	FILE *f = fopen(path, "wb");
	if (!f) {
		fprintf(stderr, "%s: %s: %s\n", prog_name, path,
			strerror(errno));
		return -errno;
	}
	size_t n = fwrite(vm->src, 1, vm->ram_bytes, f);
	int err = n == vm->ram_bytes ? 0 : -EIO;
	if (fclose(f) && !err)
		err = -errno;
	if (err)
		fprintf(stderr, "%s: %s: write failed\n", prog_name, path);
	return err;
}

/* Offset of the first differing byte, compared in 1 MiB slices so that a
 * mismatch can be located; UINT64_MAX when equal. */
/* The first byte that differs, or UINT64_MAX; pages the guest wrote on
 * the destination after a post-copy switch are skipped (they hold its
 * writes, by design). */
static uint64_t compare_ram(const struct vm *vm, const struct guest *g)
{
	const uint64_t slice = 1ULL << 20;

	for (uint64_t off = 0; off < vm->ram_bytes; off += slice) {
		uint64_t len = vm->ram_bytes - off;

		if (len > slice)
			len = slice;
		if (!memcmp(vm->src + off, vm->dst + off, len))
			continue;
		for (uint64_t i = off; i < off + len; i++)
			if (vm->src[i] != vm->dst[i] &&
			    !guest_moved_wrote(g, i / vm->page_size))
				return i;
	}
	return UINT64_MAX;
}

/*
 * Network namespaces (bench/scripts/netns.sh makes them): the calling thread
 * switches to /var/run/netns/NAME around mfd_dest_start() or
 * mfd_source_start(); the sockets and threads those create stay there.
 * *home receives the thread's own namespace; name NULL does nothing.
 */
static int netns_enter(const char *name, int *home)
{
	char path[256];
	int fd, err = 0;

	*home = -1;
	if (!name)
		return 0;
	snprintf(path, sizeof(path), "/var/run/netns/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	*home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || *home < 0 || setns(fd, CLONE_NEWNET) < 0) {
		err = -errno;
		fprintf(stderr, "%s: network namespace %s: %s\n", prog_name,
			name, strerror(errno));
		if (*home >= 0)
			close(*home);
		*home = -1;
	}
	if (fd >= 0)
		close(fd);
	return err;
}

static void netns_leave(int *home)
{
	if (*home < 0)
		return;
	if (setns(*home, CLONE_NEWNET) < 0) {
		fprintf(stderr, "%s: back to own network namespace: %s\n",
			prog_name, strerror(errno));
		exit(1);
	}
	close(*home);
	*home = -1;
}

/* The writers report their writes while the manual tracker runs. */
/* Dirty-limit's attribution: each writer's stripe, cut at block edges. */
static int register_vcpus(const struct vm *vm, struct guest *g, mfd_source *src)
{
	uint64_t off, len;

	for (unsigned i = 0; guest_writer_range(g, i, &off, &len); i++)
		for (unsigned b = 0; b < vm->nblocks; b++) {
			const struct vm_block *blk = &vm->blocks[b];
			uint64_t lo = off > blk->offset ? off : blk->offset;
			uint64_t hi = off + len < blk->offset + blk->size
					      ? off + len
					      : blk->offset + blk->size;
			int err = hi > lo ? mfd_source_set_vcpu_range(
						    src, i, b, lo - blk->offset,
						    hi - lo)
					  : 0;
			if (err)
				return err;
		}
	return 0;
}

static void guest_attach(struct local_result *res, mfd_source *src, bool start)
{
	if (!start || !res->uffd)
		guest_set_marking(res->hooks.guest, src);
}

/* uffd-wp falls back to manual where the kernel lacks it: the writers must
 * then report their writes. Waits until the tracker has been chosen. */
static void guest_check_tracker(struct local_result *res, mfd_source *src)
{
	mfd_stats st;

	if (!res->hooks.guest || !res->uffd)
		return;
	do {
		usleep(100);
		mfd_source_get_stats(src, &st, sizeof(st));
	} while (st.phase == MFD_PHASE_SETUP);
	if (st.phase == MFD_PHASE_PRECOPY && st.tracker == 0) {
		fprintf(stderr,
			"%s: uffd-wp unavailable, the writers mark "
			"their pages instead\n",
			prog_name);
		guest_set_marking(res->hooks.guest, src);
	}
}

/* Both handles with the VM's blocks and the devices. */
static int make_sides(const struct bench_opts *o, struct vm *vm,
		      const mfd_config *scfg, const mfd_config *dcfg,
		      struct local_result *res, mfd_source **src,
		      mfd_dest **dst)
{
	mfd_source_hooks sh;
	mfd_dest_hooks dh;
	int err;

	hooks_source(&res->hooks, &sh);
	hooks_dest(&res->hooks, &dh);
	err = mfd_dest_new(dst, dcfg, &dh);
	if (err)
		return bench_report_error("mfd_dest_new", NULL, NULL, err);
	err = bench_add_blocks(vm, NULL, *dst);
	if (err)
		return bench_report_error("mfd_dest_add_block", NULL, *dst,
					  err);
	err = bench_dest_announce(*dst, o->announce_if,
				  (const uint8_t(*)[6])o->announce_macs,
				  o->announce_nmacs);
	if (err)
		return bench_report_error("--announce-if", NULL, *dst, err);
	err = mfd_source_new(src, scfg, &sh);
	if (err)
		return bench_report_error("mfd_source_new", NULL, NULL, err);
	err = bench_add_blocks(vm, *src, NULL);
	if (err)
		return bench_report_error("mfd_source_add_block", *src, NULL,
					  err);
	err = bench_devices_attach(&o->dev, *src, *dst, vm->src, vm->ram_bytes);
	if (err)
		return bench_report_error("devices", NULL, NULL, err);
	err = register_vcpus(vm, res->hooks.guest, *src);
	if (err)
		return bench_report_error("mfd_source_set_vcpu_range", *src,
					  NULL, err);
	err = bench_vdpa_attach(o->dev.vdpa, *src, *dst, vm->nblocks);
	if (err)
		return bench_report_error("--devices-vdpa", NULL, NULL, err);
	return 0;
}

/* The destination listens, in its namespace: sockets and threads keep the
 * namespace they were created in. */
static int start_dest(const struct bench_opts *o, mfd_dest *dst)
{
	int home = -1;
	int err = netns_enter(o->dest_netns, &home);

	if (err)
		return err;
	err = mfd_dest_start(dst, o->uri);
	netns_leave(&home);
	if (err)
		fprintf(stderr, "%s: mfd_dest_start(%s): %s (%d)\n", prog_name,
			o->uri, bench_error_reason(NULL, dst, err), err);
	return err;
}

/* --postcopy manual: the switch is asked for once round 0 has ended, as
 * a management layer would after seeing pre-copy lag. */
static void manual_postcopy(const mfd_config *scfg, mfd_source *src)
{
	char v[16];
	mfd_stats st;

	if (mfd_config_get(scfg, "postcopy", v, sizeof(v)) ||
	    strcmp(v, "manual"))
		return;
	do {
		usleep(1000);
		mfd_source_get_stats(src, &st, sizeof(st));
	} while (st.phase == MFD_PHASE_SETUP ||
		 (st.phase == MFD_PHASE_PRECOPY && st.round < 1));
	if (st.phase == MFD_PHASE_PRECOPY)
		(void)mfd_source_start_postcopy(src);
}

/* --cut-at-round N: once round N runs, every connection is reset; after
 * the pause, --resume-after-ms later, mfd_source_resume() goes straight
 * to the destination (another path than the cut one). */
static void cut_and_resume(const struct bench_opts *o, mfd_source *src,
			   struct cutproxy *px, struct local_result *res)
{
	mfd_stats st;
	do {
		usleep(1000);
		mfd_source_get_stats(src, &st, sizeof(st));
	} while (st.phase == MFD_PHASE_SETUP ||
		 (st.phase == MFD_PHASE_PRECOPY && st.round < o->cut_round));
	if (st.phase != MFD_PHASE_PRECOPY)
		return; /* converged (or failed) before: nothing cut */
	cutproxy_cut(px);
	res->cut_ns = now_ns();
	do {
		usleep(1000);
		mfd_source_get_stats(src, &st, sizeof(st));
	} while (st.phase == MFD_PHASE_PRECOPY);
	if (st.phase != MFD_PHASE_PAUSED)
		return; /* not resumable (resume-timeout=0): it failed */
	res->paused_ns = now_ns();
	usleep(o->resume_after_ms * 1000);
	res->resume_err = mfd_source_resume(src, res->uri);
	res->resumed_ns = now_ns();
}

static void migrate(const struct bench_opts *o, struct vm *vm,
		    const mfd_config *scfg, const mfd_config *dcfg,
		    struct local_result *res)
{
	mfd_source *src = NULL;
	int netns_home = -1;
	mfd_dest *dst = NULL;
	int err;

	res->hooks.dst_ram = vm->dst; /* post-copy: the guest moves there */
	err = make_sides(o, vm, scfg, dcfg, res, &src, &dst);
	if (!err)
		err = start_dest(o, dst);
	if (err)
		goto fail;
	err = mfd_dest_get_uri(dst, res->uri, sizeof(res->uri));
	if (err) {
		bench_report_error("mfd_dest_get_uri", NULL, dst, err);
	} else {
		/* --warm-host and the first-touch probe: right before. */
		coldmem_before_run(&o->cold);
		if ((err = bench_run_begin(&res->run, o->timeout_s, src, dst)))
			bench_report_error("watchdog", NULL, NULL, err);
	}
	if (err) {
		/* The started destination waits for a connection: end it. */
		mfd_dest_cancel(dst);
		mfd_dest_wait(dst);
		goto fail;
	}
	res->work_at_start = guest_work(res->hooks.guest);
	res->reader_work_at_start = guest_reader_work(res->hooks.guest);
	guest_attach(res, src, true);
	res->src_err = netns_enter(o->source_netns, &netns_home);
	struct cutproxy *px = NULL;
	char via[256];
	snprintf(via, sizeof(via), "%s", res->uri);
	if (!res->src_err && o->cut_round &&
	    (res->src_err = cutproxy_start(&px, res->uri, via, sizeof(via))))
		bench_report_error("cut proxy", NULL, NULL, res->src_err);
	if (!res->src_err) {
		res->src_err = mfd_source_start(src, via);
		netns_leave(&netns_home);
	}
	/*
	 * After mfd_source_start(): it resets the statistics with plain
	 * stores, which would race with a sampler already reading them
	 * (TSan). The first sample is taken within microseconds of start.
	 */
	if (!res->src_err &&
	    sampler_start(&res->sampler, src, NULL, vm->page_size, true))
		res->sampler = NULL; /* no timeline, not a failed run */
	if (!res->src_err)
		guest_check_tracker(res, src);
	if (!res->src_err)
		manual_postcopy(scfg, src);
	if (!res->src_err && px)
		cut_and_resume(o, src, px, res);
	if (!res->src_err)
		res->src_err = mfd_source_wait(src);
	/* A source that never connected leaves the destination waiting for
	 * a connection forever. */
	if (res->src_err)
		mfd_dest_cancel(dst);
	res->dst_err = mfd_dest_wait(dst);
	res->end_ns = now_ns();
	res->work_at_end = guest_work(res->hooks.guest);
	res->reader_work_at_end = guest_reader_work(res->hooks.guest);
	cutproxy_stop(px);
	if (!res->dst_err)
		(void)bench_dest_announce_wait(dst, o->announce_if,
					       o->announce_nmacs);
	sampler_stop(res->sampler);
	bench_run_end(&res->run, src, dst);
	/* The guest must not report to a source about to be freed. */
	guest_attach(res, NULL, false);
	if (res->src_err)
		bench_report_error("source", src, NULL, res->src_err);
	if (res->dst_err)
		bench_report_error("destination", NULL, dst, res->dst_err);
	/* Its traffic marks the source's pages: before the source goes. */
	bench_vdpa_finish(!res->src_err && !res->dst_err);
	mfd_source_free(src);
	mfd_dest_free(dst);
	return;

fail:
	res->setup_err = err;
	bench_vdpa_finish(false);
	mfd_source_free(src);
	mfd_dest_free(dst);
}

/* --restore-cache cold: the restore starts with none of the image in the
 * page cache, as fio's read does (invalidate=1: the same fadvise), so the
 * two read from the same place. Flushed first: dirty pages would stay. */
static void drop_file_cache(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int err = fd < 0 ? errno : 0;

	if (!err && fdatasync(fd) < 0)
		err = errno;
	if (!err)
		err = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	if (err)
		fprintf(stderr,
			"multifd-bench: --restore-cache cold: %s: %s "
			"(the restore may read from the page cache)\n",
			path, strerror(err));
	if (fd >= 0)
		close(fd);
}

/* --save FILE / --restore FILE: the source saves to file:FILE while the
 * guest runs, then (or only) the destination restores from it. */
static void migrate_file(const struct bench_opts *o, struct vm *vm,
			 const mfd_config *scfg, const mfd_config *dcfg,
			 struct local_result *res)
{
	mfd_source *src = NULL;
	mfd_dest *dst = NULL;
	char uri[sizeof(res->uri)];
	int err = make_sides(o, vm, scfg, dcfg, res, &src, &dst);

	if (!err) {
		coldmem_before_run(&o->cold);
		if ((err = bench_run_begin(&res->run, o->timeout_s, src, dst)))
			bench_report_error("watchdog", NULL, NULL, err);
	}
	if (err) {
		res->setup_err = err;
		goto out;
	}
	res->work_at_start = guest_work(res->hooks.guest);
	res->reader_work_at_start = guest_reader_work(res->hooks.guest);
	if (o->save_path) {
		snprintf(res->uri, sizeof(res->uri), "file:%s", o->save_path);
		guest_attach(res, src, true);
		res->src_err = mfd_source_start(src, res->uri);
		if (!res->src_err && sampler_start(&res->sampler, src, NULL,
						   vm->page_size, true))
			res->sampler = NULL;
		if (!res->src_err)
			guest_check_tracker(res, src);
		if (!res->src_err)
			res->src_err = mfd_source_wait(src);
		sampler_stop(res->sampler);
		guest_attach(res, NULL, false);
	}
	if (o->restore_path && !res->src_err) {
		char lazy[8] = "";
		(void)mfd_config_get(dcfg, "lazy-restore", lazy, sizeof(lazy));
		/* Lazy: the loaded hook moves the guest there and runs it. */
		res->hooks.lazy = !strcmp(lazy, "on");
		res->hooks.dst_ram = vm->dst;
		snprintf(uri, sizeof(uri), "file:%s", o->restore_path);
		if (!o->save_path)
			snprintf(res->uri, sizeof(res->uri), "%s", uri);
		if (o->restore_cold)
			drop_file_cache(o->restore_path);
		/* The restore starts from host-backed free memory too (its
		 * page cache), as the save did. */
		if (o->save_path)
			coldmem_warm(&o->cold);
		res->hooks.restore_t0 = now_ns();
		res->dst_err = mfd_dest_start(dst, uri);
		if (!res->dst_err)
			res->dst_err = mfd_dest_wait(dst);
		res->hooks.restore_done_ns = now_ns();
		res->hooks.work_at_restore_done = guest_work(res->hooks.guest);
	}
	bench_run_end(&res->run, src, dst);
	if (res->src_err)
		bench_report_error("source", src, NULL, res->src_err);
	if (res->dst_err)
		bench_report_error("destination", NULL, dst, res->dst_err);
out:
	bench_vdpa_finish(!local_first_error(res));
	mfd_source_free(src);
	mfd_dest_free(dst);
}

int local_first_error(const struct local_result *res)
{
	if (res->setup_err)
		return res->setup_err;
	if (res->src_err)
		return res->src_err;
	return res->dst_err;
}

/* ---- Guest impact ---- */

/* Work per second of the running guest's writers over ms milliseconds;
 * the readers' in *readers (NULL: not wanted). */
static double work_rate(struct guest *g, unsigned ms, double *readers)
{
	uint64_t w0 = guest_work(g), r0 = guest_reader_work(g), t0 = now_ns();

	usleep(ms * 1000u);
	double dt = (double)(now_ns() - t0);
	if (readers)
		*readers = (double)(guest_reader_work(g) - r0) * 1e9 / dt;
	return (double)(guest_work(g) - w0) * 1e9 / dt;
}

/* The guest's work rate during the migration: guest_span_rate(), for the
 * writers and the readers. */
static void guest_during(struct local_result *res)
{
	struct guest *g = res->hooks.guest;
	const struct hook_log *h = &res->hooks;

	if (!g || !res->run.t0)
		return;
	/* Work before run.t0 was measured by work_rate(), which ended
	 * just before: count from its end. The window ends when the
	 * migration did: for post-copy when the destination had every page
	 * (mfd_dest_wait() returned), not after the bench's own teardown,
	 * where the guest runs on without faults (4 ms of a 22 s run,
	 * measured: small, but not the migration's). */
	bool ended = res->end_ns != 0;
	struct guest_span w = {
		.start_ns = res->run.t0,
		.stop_ns = h->stop_ns,
		.run_ns = h->run_ns,
		.end_ns = ended ? res->end_ns : now_ns(),
		.work_start = res->work_at_start,
		.work_stop = h->work_at_stop,
		.work_run = h->work_at_run,
		.work_end = ended ? res->work_at_end : guest_work(g),
	};
	struct guest_span r = w;

	r.work_start = res->reader_work_at_start;
	r.work_stop = h->reader_work_at_stop;
	r.work_run = h->reader_work_at_run;
	r.work_end = ended ? res->reader_work_at_end : guest_reader_work(g);
	res->work_during = guest_span_rate(&w);
	res->reader_during = guest_span_rate(&r);
}

/* After success the guest runs on at the destination (the source is
 * parked); after a failure it still runs at the source. */
static void guest_after(const struct bench_opts *o, struct vm *vm,
			struct local_result *res)
{
	struct guest *g = res->hooks.guest;

	if (!g)
		return;
	if (res->hooks.run_ns) {
		guest_resume(g); /* post-copy: it runs there already */
	} else if (res->hooks.stops && !res->hooks.resumes) {
		guest_set_ram(g, vm->dst);
		guest_resume(g);
	}
	res->work_after = work_rate(g, o->measure_ms, NULL);
	res->writes = guest_writes(g);
}

/* ---- The run ---- */

/* The VM filled (and, for --dump-image, written out: *done). */
static int prepare_vm(const struct bench_opts *o, struct vm **vm,
		      struct local_result *res, bool *done)
{
	uint64_t t;
	int err = vm_create(vm, o->ram_bytes, o->blocks, BENCH_PAGE_SIZE);

	if (err)
		return err;
	t = now_ns();
	err = vm_fill(*vm, &o->image, o->fill_threads);
	res->fill_ns = now_ns() - t;
	if (err) {
		fprintf(stderr, "%s: filling RAM with image %s failed: %s\n",
			prog_name, vm_image_name(&o->image), strerror(-err));
		return err;
	}
	if (o->dump_image) {
		*done = true;
		return dump_image(*vm, o->dump_image);
	}
	if (o->dest_populate) {
		t = now_ns();
		vm_dest_populate(*vm);
		res->populate_ns = now_ns() - t;
	}
	return 0;
}

static int start_guest(const struct bench_opts *o, struct vm *vm,
		       struct local_result *res)
{
	int err;

	if (!o->guest.writers)
		return 0;
	err = guest_start(&res->hooks.guest, &o->guest, vm);
	if (err) {
		fprintf(stderr, "%s: starting the guest writers: %s\n",
			prog_name, strerror(-err));
		return err;
	}
	/* A first window as warm-up: right after filling and populating
	 * gigabytes the machine is still busy (page reclaim, free page
	 * reporting), which depressed this baseline by up to half in early
	 * runs. */
	work_rate(res->hooks.guest, o->measure_ms, NULL);
	res->work_before =
		work_rate(res->hooks.guest, o->measure_ms, &res->reader_before);
	res->work_nominal = guest_nominal_rate(res->hooks.guest, false);
	res->reader_nominal = guest_nominal_rate(res->hooks.guest, true);
	return 0;
}

/*
 * The embedder's side of the downtime estimate: what the stop hook costs.
 * The writers park at their next check, which takes longer on a loaded
 * machine, so pause and resume them a few times and declare the median
 * (stop-cost, rounded up to the ms), unless the user set it. (The slowest
 * of three declared 22 ms where the stop then took 1.5 ms, at load 14.)
 */
static void declare_stop_cost(struct guest *g, mfd_config *scfg)
{
	char v[32];
	uint64_t t[5];

	if (!g || mfd_config_get(scfg, "stop-cost", v, sizeof(v)) ||
	    strcmp(v, "0ms"))
		return;
	for (int i = 0; i < 5; i++) {
		uint64_t t0 = now_ns();

		guest_pause(g);
		t[i] = now_ns() - t0;
		guest_resume(g);
		usleep(2000);
	}
	for (int i = 1; i < 5; i++) /* insertion sort of five */
		for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
			uint64_t x = t[j];

			t[j] = t[j - 1];
			t[j - 1] = x;
		}
	snprintf(v, sizeof(v), "%" PRIu64 "ms", (t[2] + 999999) / 1000000);
	(void)mfd_config_set(scfg, "stop-cost", v);
}

static void check_ram(const struct vm *vm, struct local_result *res)
{
	uint64_t t = now_ns();

	/* Post-copy: the guest runs on the destination; stop it there while
	 * its RAM is compared (guest_after() lets it go on). */
	if (res->hooks.run_ns)
		guest_pause(res->hooks.guest);
	res->first_diff = compare_ram(vm, res->hooks.guest);
	res->memcmp_ns = now_ns() - t;
	res->memcmp_ok = res->first_diff == UINT64_MAX;
	if (!res->memcmp_ok)
		fprintf(stderr,
			"%s: destination RAM differs from source, first at "
			"byte %" PRIu64 " (page %" PRIu64 ")\n",
			prog_name, res->first_diff,
			res->first_diff / BENCH_PAGE_SIZE);
}

/* Report, timeline and plot; whether the run failed. */
static bool outputs(const struct bench_opts *o, const struct vm *vm,
		    const mfd_config *scfg, const struct local_result *res)
{
	struct report rep;
	char title[256];
	bool failed;

	report_init(&rep);
	results_local(&rep, o, vm, scfg, res);
	results_write(&rep, o->json);
	failed = local_first_error(res) || !res->memcmp_ok ||
		 (o->dev.n && !bench_devices_equal()) ||
		 (o->dev.vdpa && !bench_vdpa_equal());
	snprintf(title, sizeof(title),
		 "multifd-bench: %.0f MiB %s, %u channels, loopback",
		 (double)o->ram_bytes / 1048576.0, vm_image_name(&o->image),
		 res->run.src_st.channels);
	/* Post-copy: the downtime ends when the guest runs there. */
	if (bench_outputs(res->sampler, o->timeline, o->plot,
			  res->hooks.stop_ns,
			  res->hooks.run_ns > res->hooks.stop_ns
				  ? res->hooks.run_ns - res->hooks.stop_ns
				  : res->run.src_st.downtime_ns,
			  title))
		failed = true;
	return failed;
}

int local_run(const struct bench_opts *o, mfd_config *scfg,
	      const mfd_config *dcfg)
{
	struct local_result *res = calloc(1, sizeof(*res));
	struct vm *vm = NULL;
	char tracker[32];
	bool done = false;
	int err;

	if (!res) {
		fprintf(stderr, "%s: out of memory\n", prog_name);
		return 1;
	}
	res->uffd = !mfd_config_get(scfg, "dirty-tracker", tracker,
				    sizeof(tracker)) &&
		    !strcmp(tracker, "uffd-wp");
	err = prepare_vm(o, &vm, res, &done);
	if (!err && !done)
		err = start_guest(o, vm, res);
	if (err || done)
		goto out;
	declare_stop_cost(res->hooks.guest, scfg);

	if (o->save_path || o->restore_path)
		migrate_file(o, vm, scfg, dcfg, res);
	else
		migrate(o, vm, scfg, dcfg, res);
	guest_during(res);
	/* A save alone leaves nothing to compare. */
	if (!local_first_error(res) && o->save_path && !o->restore_path)
		res->memcmp_ok = true;
	else if (!local_first_error(res))
		check_ram(vm, res);
	guest_after(o, vm, res);
	err = outputs(o, vm, scfg, res);

out:
	sampler_free(res->sampler);
	guest_stop(res->hooks.guest);
	bench_devices_free(); /* before the RAM its DMA writes */
	bench_vdpa_free();
	vm_destroy(vm);
	free(res);
	return err ? 1 : 0;
}
