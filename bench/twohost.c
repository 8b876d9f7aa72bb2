/* SPDX-License-Identifier: MIT */
/* Two-host mode of multifd-bench: see twohost.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plot.h"
#include "progress.h"
#include "report.h"
#include "results.h"
#include "twohost.h"
#include "vm.h"

/* The source: the image filled, the blocks registered. */
static int make_source(const struct bench_opts *o, const mfd_config *cfg,
		       struct vm *vm, struct twohost_result *res,
		       mfd_source **src)
{
	mfd_source_hooks sh;
	int err = vm_fill(vm, &o->image, o->fill_threads);

	if (err) {
		fprintf(stderr, "%s: filling RAM failed: %s\n", prog_name,
			strerror(-err));
		return err;
	}
	hooks_source(&res->hooks, &sh);
	sh.throttle = NULL; /* no guest here to throttle */
	err = mfd_source_new(src, cfg, &sh);
	if (!err)
		err = bench_add_blocks(vm, *src, NULL);
	if (err)
		return bench_report_error("source setup", *src, NULL, err);
	snprintf(res->uri, sizeof(res->uri), "%s", o->twohost_uri);
	return 0;
}

/* The destination: populated, registered and listening. */
static int make_dest(const struct bench_opts *o, const mfd_config *cfg,
		     struct vm *vm, struct twohost_result *res, mfd_dest **dst)
{
	mfd_dest_hooks dh;
	int err;

	if (o->dest_populate)
		vm_dest_populate(vm);
	hooks_dest(&res->hooks, &dh);
	err = mfd_dest_new(dst, cfg, &dh);
	if (!err)
		err = bench_add_blocks(vm, NULL, *dst);
	if (!err)
		err = bench_dest_announce(*dst, o->announce_if,
					  (const uint8_t(*)[6])o->announce_macs,
					  o->announce_nmacs);
	if (!err)
		err = mfd_dest_start(*dst, o->twohost_uri);
	if (!err)
		err = mfd_dest_get_uri(*dst, res->uri, sizeof(res->uri));
	if (err)
		return bench_report_error("destination setup", NULL, *dst, err);
	/* Scripts wait for this line before starting the source. */
	fprintf(stderr, "%s: listening on %s\n", prog_name, res->uri);
	fflush(stderr);
	return 0;
}

/* The destination regenerates the image from its seed in the (otherwise
 * unused) source half of its VM and compares. */
static void check_dest(const struct bench_opts *o, struct vm *vm,
		       struct twohost_result *res)
{
	if (res->source || res->run_err || !o->check ||
	    vm_fill(vm, &o->image, o->fill_threads))
		return;
	res->memcmp_done = true;
	res->memcmp_ok = !memcmp(vm->src, vm->dst, vm->ram_bytes);
	if (!res->memcmp_ok)
		fprintf(stderr,
			"%s: destination RAM differs from image %s seed "
			"%" PRIu64 "\n",
			prog_name, vm_image_name(&o->image), o->image.seed);
}

/* Report, timeline and plot; whether any of them failed. */
static bool outputs(const struct bench_opts *o, const mfd_config *cfg,
		    const struct twohost_result *res)
{
	const mfd_stats *st = res->source ? &res->run.src_st : &res->run.dst_st;
	struct report rep;
	char title[512];

	report_init(&rep);
	results_twohost(&rep, o, cfg, res);
	results_write(&rep, o->json);

	snprintf(title, sizeof(title),
		 "multifd-bench %s: %.0f MiB %s, %u channels, %s",
		 res->source ? "source" : "destination",
		 (double)o->ram_bytes / 1048576.0, vm_image_name(&o->image),
		 st->channels, res->uri);
	return bench_outputs(res->sampler, o->timeline, o->plot,
			     res->source ? res->hooks.stop_ns : 0,
			     st->downtime_ns, title) != 0;
}

int twohost_run(const struct bench_opts *o, const mfd_config *cfg)
{
	struct twohost_result *res = calloc(1, sizeof(*res));
	mfd_source *src = NULL;
	mfd_dest *dst = NULL;
	struct vm *vm = NULL;
	int err;

	if (!res) {
		fprintf(stderr, "%s: out of memory\n", prog_name);
		return 1;
	}
	res->source = o->mode == MODE_SOURCE;
	err = vm_create(&vm, o->ram_bytes, o->blocks, BENCH_PAGE_SIZE);
	if (err)
		goto out;
	err = res->source ? make_source(o, cfg, vm, res, &src)
			  : make_dest(o, cfg, vm, res, &dst);
	if (!err && (err = bench_run_begin(&res->run, o->timeout_s, src, dst)))
		bench_report_error("watchdog", NULL, NULL, err);
	if (err)
		goto out;
	if (res->source) {
		/* The sampler starts after mfd_source_start(), which resets
		 * the statistics without atomics (see local.c). */
		res->run_err = mfd_source_start(src, res->uri);
		if (sampler_start(&res->sampler, src, NULL, vm->page_size,
				  true))
			res->sampler = NULL;
		if (!res->run_err)
			res->run_err = mfd_source_wait(src);
	} else {
		if (sampler_start(&res->sampler, NULL, dst, vm->page_size,
				  true))
			res->sampler = NULL;
		res->run_err = mfd_dest_wait(dst);
		if (!res->run_err)
			(void)bench_dest_announce_wait(dst, o->announce_if,
						       o->announce_nmacs);
	}
	sampler_stop(res->sampler);
	bench_run_end(&res->run, src, dst);
	if (res->run_err)
		bench_report_error(res->source ? "source" : "destination", src,
				   dst, res->run_err);
	if (res->run_err == MFD_ESETUP)
		fprintf(stderr,
			"%s: give both sides the same --ram and --blocks "
			"(this side: --ram %" PRIu64 "K --blocks %u)\n",
			prog_name, o->ram_bytes >> 10, o->blocks);
	check_dest(o, vm, res);
	err = outputs(o, cfg, res) || res->run_err ||
	      (res->memcmp_done && !res->memcmp_ok);
out:
	sampler_free(res->sampler);
	mfd_source_free(src);
	mfd_dest_free(dst);
	vm_destroy(vm);
	free(res);
	return err ? 1 : 0;
}
