/* SPDX-License-Identifier: MIT */
/* What a run reports: see results.h. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices.h"
#include "vdpa.h"
#include "guest.h"
#include "results.h"

/* Effective value of an integer key, or fallback when unreadable. */
static uint64_t config_u64(const mfd_config *cfg, const char *key,
			   uint64_t fallback)
{
	char buf[64];
	uint64_t v;

	if (mfd_config_get(cfg, key, buf, sizeof(buf)) ||
	    !cli_parse_u64(buf, &v))
		return fallback;
	return v;
}

static bool config_bool(const mfd_config *cfg, const char *key, bool fallback)
{
	char buf[64];
	bool v;

	if (mfd_config_get(cfg, key, buf, sizeof(buf)) ||
	    !cli_parse_bool(buf, &v))
		return fallback;
	return v;
}

/* An item with a key's effective value, when it can be read. */
static void report_key(struct report *r, const char *name,
		       const mfd_config *cfg, const char *key,
		       const char *fallback)
{
	char buf[64];

	if (!mfd_config_get(cfg, key, buf, sizeof(buf)))
		report_str(r, name, buf);
	else if (fallback)
		report_str(r, name, fallback);
}

/* status, error (when failed: the library's text for err, else why_not),
 * error_code. */
static void report_outcome(struct report *r, int err, const char *why_not)
{
	report_str(r, "status", !err && !why_not ? "ok" : "failed");
	if (err)
		report_str(r, "error", mfd_strerror(err));
	else if (why_not)
		report_str(r, "error", why_not);
	report_i64(r, "error_code", err);
}

/* Not measured (no time to divide by) is null in the report, never 0. */
static double mbps(uint64_t bytes, uint64_t ns)
{
	return ns ? (double)bytes * 1e3 / (double)ns : NAN;
}

/* Post-copy's measures (null without a switch). Downtime: the stop hook
 * to the destination's postcopy_run, as the hooks saw it (one process);
 * the library's parts: the source's stop to SWITCH sent, the
 * destination's SWITCH read to the guest running. */
static void postcopy_items(struct report *r, const mfd_stats *s,
			   const mfd_stats *d, const struct hook_log *h)
{
	bool on = s->postcopy_round != 0;

	report_u64(r, "postcopy_round", s->postcopy_round);
	report_f64(r, "postcopy_downtime_ms",
		   on && h->run_ns > h->stop_ns
			   ? ns_to_ms(h->run_ns - h->stop_ns)
			   : NAN,
		   3);
	report_f64(r, "postcopy_dest_downtime_ms",
		   on ? ns_to_ms(d->downtime_ns) : NAN, 3);
	report_f64(r, "postcopy_ms", on ? ns_to_ms(s->postcopy_ns) : NAN, 3);
	report_u64(r, "urgent_requests", s->urgent_requests);
	report_u64(r, "urgent_pages", s->urgent_pages);
	report_u64(r, "urgent_again_pages", s->urgent_again_pages);
	report_u64(r, "urgent_rt_threads",
		   (uint64_t)s->urgent_rt_threads + d->urgent_rt_threads);
	report_u64(r, "lane_bytes", s->lane_bytes);
	report_u64(r, "data_channel_bytes", d->wire_bytes - d->lane_bytes);
	report_u64(r, "faults", d->faults);
	report_u64(r, "page_requests", d->page_requests);
	report_f64(r, "request_p50_ms",
		   d->page_requests ? ns_to_ms(d->latency_p50_ns) : NAN, 3);
	report_f64(r, "request_p99_ms",
		   d->page_requests ? ns_to_ms(d->latency_p99_ns) : NAN, 3);
	report_f64(r, "request_max_ms",
		   d->page_requests ? ns_to_ms(d->latency_max_ns) : NAN, 3);
	report_f64(r, "blocktime_ms", on ? ns_to_ms(d->blocktime_ns) : NAN, 3);
}

static void local_run_items(struct report *r, const struct bench_opts *o,
			    const struct vm *vm, const mfd_config *cfg,
			    const struct local_result *res)
{
	const mfd_stats *s = &res->run.src_st, *d = &res->run.dst_st;
	int err = local_first_error(res);
	bool verify = config_bool(cfg, "verify", true);
	uint64_t total_ns = s->total_ns ? s->total_ns : res->run.wall_ns;
	uint64_t hooks_down_ns = 0;

	if (res->hooks.stop_ns && res->hooks.loaded_ns > res->hooks.stop_ns)
		hooks_down_ns = res->hooks.loaded_ns - res->hooks.stop_ns;

	report_outcome(r, err,
		       err || res->memcmp_ok
			       ? NULL
			       : "destination RAM differs from source");
	report_str(r, "image", vm_image_name(&o->image));
	report_u64(r, "seed", o->image.seed);
	report_u64(r, "ram_bytes", o->ram_bytes);
	report_u64(r, "blocks", o->blocks);
	report_u64(r, "page_size", BENCH_PAGE_SIZE);
	report_u64(r, "channels",
		   s->channels ? s->channels : config_u64(cfg, "channels", 0));
	report_u64(r, "packet_pages", config_u64(cfg, "packet-pages", 0));
	report_bool(r, "verify", verify);
	report_bool(r, "thp", vm && vm->src_thp && vm->dst_thp);
	report_bool(r, "dest_populate", o->dest_populate);
	report_str(r, "uri", res->uri);
	report_str(r, "transport", o->transport);
	report_key(r, "io_engine", cfg, "io-engine", "?");

	report_f64(r, "fill_ms", ns_to_ms(res->fill_ns), 1);
	report_f64(r, "dest_populate_ms", ns_to_ms(res->populate_ns), 1);
	report_f64(r, "setup_ms", ns_to_ms(s->setup_ns), 3);
	report_f64(r, "transfer_ms", ns_to_ms(s->transfer_ns), 3);
	report_f64(r, "downtime_ms", ns_to_ms(s->downtime_ns), 3);
	report_f64(r, "downtime_hooks_ms", ns_to_ms(hooks_down_ns), 3);
	report_f64(r, "verify_ms", ns_to_ms(s->verify_ns), 3);
	report_f64(r, "dest_verify_ms", ns_to_ms(d->verify_ns), 3);
	report_f64(r, "total_ms", ns_to_ms(total_ns), 3);
	report_f64(r, "wall_ms", ns_to_ms(res->run.wall_ns), 3);
	report_f64(r, "memcmp_ms", ns_to_ms(res->memcmp_ns), 1);

	report_u64(r, "wire_bytes", s->wire_bytes);
	report_u64(r, "dest_wire_bytes", d->wire_bytes);
	report_u64(r, "pages_sent", s->pages);
	report_u64(r, "zero_pages", s->zero_pages);
	report_key(r, "compression", cfg, "compression", "none");
	report_u64(r, "compressed_bytes", s->compressed_bytes);
	report_u64(r, "raw_pages", s->raw_pages);
	report_f64(r, "compression_ratio",
		   s->compressed_bytes ? (double)s->compress_in_bytes /
						 (double)s->compressed_bytes
				       : NAN,
		   3);
	report_f64(r, "compress_cpu_s", (double)s->compress_ns / 1e9, 3);
	report_f64(r, "decompress_cpu_s", (double)d->compress_ns / 1e9, 3);
	report_u64(r, "dest_pages", d->pages);
	report_u64(r, "packets", s->packets);
	report_u64(r, "rounds", stats_rounds(s));
	postcopy_items(r, s, d, &res->hooks);

	report_f64(
		r, "throughput_mbps",
		mbps(s->wire_bytes, s->transfer_ns ? s->transfer_ns : total_ns),
		1);
	report_f64(r, "effective_mbps", mbps(o->ram_bytes, total_ns), 1);
	report_f64(r, "last_round_mbps", (double)s->bandwidth_bps / 1e6, 1);
	report_rusage(r, &res->run);
	report_f64(r, "src_cpu_s", (double)s->cpu_ns / 1e9, 3);
	report_f64(r, "dst_cpu_s", (double)d->cpu_ns / 1e9, 3);
	report_f64(r, "src_cpu_s_per_gib",
		   (double)s->cpu_ns / 1e9 / ((double)o->ram_bytes / (1 << 30)),
		   3);
	report_f64(r, "dst_cpu_s_per_gib",
		   (double)d->cpu_ns / 1e9 / ((double)o->ram_bytes / (1 << 30)),
		   3);
	report_u64(r, "stop_hooks", res->hooks.stops);
	report_u64(r, "resume_hooks", res->hooks.resumes);
	report_bool(r, "verified", verify && !err);
	report_bool(r, "memcmp_ok", res->memcmp_ok);
	report_str(r, "source_phase", mfd_phase_name(s->phase));
	report_str(r, "dest_phase", mfd_phase_name(d->phase));
	report_bool(r, "timed_out", res->run.timed_out);
	report_u64(r, "lib_version", (uint64_t)mfd_version());
}

/* The rounds as one JSON array. */
/* An estimate in ms; -1 for none (no timed round yet). */
static double est_ms(uint64_t ns)
{
	return ns >= UINT64_MAX / 8 ? -1 : ns_to_ms(ns);
}

static void report_rounds(struct report *r, const struct bench_run *run)
{
	size_t len = 0, cap = 64 + (size_t)run->nrounds * 1000;
	char *json = malloc(cap);

	if (!json)
		return;
	len += (size_t)snprintf(json + len, cap - len, "[");
	for (unsigned i = 0; i < run->nrounds; i++) {
		const mfd_round_stats *x = &run->rounds[i];

		len += (size_t)snprintf(
			json + len, cap - len,
			"%s{\"round\": %u, \"pages\": %" PRIu64
			", \"bytes\": %" PRIu64 ", \"ms\": %.3f, \"mbps\": %.1f"
			", \"dirty_pages\": %" PRIu64 ", \"dirty_mbps\": %.1f"
			", \"throttle_pct\": %u, \"sync_ms\": %.3f"
			", \"device_stop_bytes\": %" PRIu64
			", \"expected_ms\": %.3f, \"expected_stop_ms\": %.3f"
			", \"expected_sync_ms\": %.3f"
			", \"expected_ram_ms\": %.3f"
			", \"expected_device_ms\": %.3f"
			", \"expected_end_ms\": %.3f, \"over_part\": \"%s\""
			", \"unsent_bytes\": %" PRIu64
			", \"device_bytes\": %" PRIu64 ", \"device_ms\": %.3f"
			", \"expected_q_ms\": %.3f, \"cpu_ms\": %.3f"
			", \"wait_ms\": %.3f, \"threads\": %u"
			", \"sync_cpu_ms\": %.3f, \"tail_bytes\": %" PRIu64
			", \"tail_ms\": %.3f, \"dest_ms\": %.3f"
			", \"dest_end_ms\": %.3f, \"device_cpu_ms\": %.3f"
			", \"device_wait_ms\": %.3f, \"device_full_ms\": %.3f}",
			i ? ", " : "", x->round, x->pages, x->bytes,
			ns_to_ms(x->ns), (double)x->bandwidth_bps / 1e6,
			x->dirty_pages, (double)x->dirty_rate_bps / 1e6,
			x->throttle_pct, ns_to_ms(x->sync_ns),
			x->device_stop_bytes, est_ms(x->expected_downtime_ns),
			est_ms(x->expected_stop_ns),
			est_ms(x->expected_sync_ns), est_ms(x->expected_ram_ns),
			est_ms(x->expected_device_ns),
			est_ms(x->expected_end_ns),
			mfd_down_part_name((int)x->over_part), x->unsent_bytes,
			x->device_bytes, ns_to_ms(x->device_ns),
			est_ms(x->expected_downtime_q_ns),
			ns_to_ms(x->page_cpu_ns), ns_to_ms(x->page_wait_ns),
			x->page_threads, ns_to_ms(x->sync_cpu_ns),
			x->tail_bytes, ns_to_ms(x->tail_ns),
			ns_to_ms(x->dest_ns), ns_to_ms(x->dest_end_ns),
			ns_to_ms(x->device_cpu_ns), ns_to_ms(x->device_wait_ns),
			ns_to_ms(x->device_full_ns));
	}
	snprintf(json + len, cap - len, "]");
	report_raw(r, "round_stats", json);
	free(json);
}

/* Percent of the reference rate the guest did not get; 0 without one. */
static double slowdown_pct(double during, double ref)
{
	return ref > 0 ? 100.0 * (1.0 - during / ref) : 0;
}

/* Pre-copy and the guest's slowdown. */
static void local_precopy_items(struct report *r, const struct bench_opts *o,
				const mfd_config *cfg,
				const struct local_result *res)
{
	const mfd_stats *s = &res->run.src_st;

	report_str(r, "tracker", s->tracker == 1 ? "uffd-wp" : "manual");
	report_key(r, "downtime_limit", cfg, "downtime-limit", NULL);
	report_key(r, "max_bandwidth", cfg, "max-bandwidth", NULL);
	report_key(r, "timeout_policy", cfg, "timeout-policy", NULL);
	report_bool(r, "auto_converge", config_bool(cfg, "auto-converge", 0));
	report_bool(r, "forced", s->forced);
	report_u64(r, "channels_lost", s->channels_lost);
	if (o->cut_round) {
		/* --cut-at-round: what the resume cost. */
		report_u64(r, "cut_at_round", o->cut_round);
		report_u64(r, "resumes", s->resumes);
		report_u64(r, "resume_bytes", s->resume_bytes);
		report_u64(r, "resume_inflight_bytes",
			   s->resume_inflight_bytes);
		report_str(r, "resume_result", mfd_strerror(res->resume_err));
		report_f64(r, "cut_to_paused_ms",
			   res->paused_ns
				   ? ns_to_ms(res->paused_ns - res->cut_ns)
				   : 0,
			   3);
		report_f64(r, "paused_ms",
			   res->resumed_ns
				   ? ns_to_ms(res->resumed_ns - res->paused_ns)
				   : 0,
			   3);
	}
	report_f64(r, "down_sync_ms", ns_to_ms(s->down_sync_ns), 3);
	report_f64(r, "down_pages_ms", ns_to_ms(s->down_pages_ns), 3);
	report_f64(r, "down_end_ms", ns_to_ms(s->down_end_ns), 3);
	report_f64(r, "down_ack_ms", ns_to_ms(s->down_ack_ns), 3);
	report_f64(r, "down_stop_ms", ns_to_ms(s->down_stop_ns), 3);
	report_f64(r, "expected_downtime_ms", est_ms(s->expected_downtime_ns),
		   3);
	/* At downtime-quantile: what the budget was held against. */
	report_key(r, "downtime_quantile", cfg, "downtime-quantile", NULL);
	report_f64(r, "expected_downtime_q_ms",
		   est_ms(s->expected_downtime_q_ns), 3);
	report_f64(r, "expected_stop_ms", est_ms(s->expected_stop_ns), 3);
	report_f64(r, "expected_sync_ms", est_ms(s->expected_sync_ns), 3);
	report_f64(r, "expected_ram_ms", est_ms(s->expected_ram_ns), 3);
	report_f64(r, "expected_device_ms", est_ms(s->expected_device_ns), 3);
	report_f64(r, "expected_end_ms", est_ms(s->expected_end_ns), 3);
	report_str(r, "over_part", mfd_down_part_name((int)s->over_part));
	/* Measured in the estimate's parts (mfd_stats.down_device_ns). */
	report_f64(r, "measured_stop_ms", ns_to_ms(s->down_stop_ns), 3);
	report_f64(r, "measured_sync_ms",
		   ns_to_ms(s->down_sync_ns - s->down_stop_ns), 3);
	report_f64(r, "measured_ram_ms", ns_to_ms(s->down_pages_ns), 3);
	report_f64(r, "measured_device_ms", ns_to_ms(s->down_device_ns), 3);
	report_f64(
		r, "measured_end_ms",
		ns_to_ms(s->down_end_ns + s->down_ack_ns - s->down_device_ns),
		3);
	report_str(r, "overrun_part", mfd_down_part_name((int)s->overrun_part));
	report_f64(r, "estimate_error_pct",
		   s->downtime_ns && s->expected_downtime_ns < UINT64_MAX / 8
			   ? 100.0 *
				     ((double)s->expected_downtime_ns -
				      (double)s->downtime_ns) /
				     (double)s->downtime_ns
			   : 0,
		   1);
	report_f64(r, "dirty_rate_mbps", (double)s->dirty_rate_bps / 1e6, 1);
	report_u64(r, "throttle_pct", s->throttle_max_pct);
	report_u64(r, "throttle_calls", res->hooks.throttles);
	report_u64(r, "writers", o->guest.writers);
	if (o->guest.writers) {
		report_str(r, "pattern", guest_pattern_name(o->guest.pattern));
		report_f64(r, "guest_dirty_rate_mbps", o->guest.dirty_mbps, 1);
		report_u64(r, "guest_load_pct", o->guest.load_pct);
		report_u64(r, "guest_writes", res->writes);
		report_f64(r, "guest_work_nominal", res->work_nominal / 1e6, 2);
		report_f64(r, "guest_work_before", res->work_before / 1e6, 2);
		report_f64(r, "guest_work_during", res->work_during / 1e6, 2);
		report_f64(r, "guest_work_after", res->work_after / 1e6, 2);
		/* Against the guest's demand (guest.h): the rate measured
		 * in the second before the migration is a sample of a
		 * shared machine right after gigabytes were filled, up to
		 * half below it; the demand is the same for every mode. */
		report_f64(r, "guest_slowdown_pct",
			   slowdown_pct(res->work_during, res->work_nominal),
			   1);
		report_f64(r, "guest_slowdown_before_pct",
			   slowdown_pct(res->work_during, res->work_before), 1);
		report_u64(r, "readers", o->guest.readers);
		report_f64(r, "reader_work_nominal", res->reader_nominal / 1e6,
			   2);
		report_f64(r, "reader_work_before", res->reader_before / 1e6,
			   2);
		report_f64(r, "reader_work_during", res->reader_during / 1e6,
			   2);
		report_f64(
			r, "reader_slowdown_pct",
			slowdown_pct(res->reader_during, res->reader_nominal),
			1);
		report_f64(r, "reader_slowdown_before_pct",
			   slowdown_pct(res->reader_during, res->reader_before),
			   1);
		report_bool(r, "dirty_limit",
			    config_bool(cfg, "dirty-limit", 0));
		report_u64(r, "vcpu_throttle_max_pct",
			   (uint64_t)res->hooks.vcpu_throttle_max);
	}
	report_rounds(r, &res->run);
}

/* --restore FILE --lazy-restore on: how soon the guest ran (as the bench
 * saw it, and the library's own measure), how long the pages streamed
 * after that, the guest's work rate meanwhile against its rate before
 * the run, and the faults it took. */
static void lazy_items(struct report *r, const mfd_stats *d,
		       const struct local_result *res)
{
	const struct hook_log *h = &res->hooks;
	bool ran = h->run_ns > h->restore_t0;
	bool done = ran && h->restore_done_ns > h->run_ns;
	double rate =
		done ? (double)(h->work_at_restore_done - h->work_at_run) *
				1e9 / (double)(h->restore_done_ns - h->run_ns)
		     : NAN;

	report_f64(r, "lazy_to_run_ms",
		   ran ? ns_to_ms(h->run_ns - h->restore_t0) : NAN, 3);
	report_f64(r, "lazy_lib_to_run_ms", ns_to_ms(d->downtime_ns), 3);
	report_f64(r, "lazy_stream_ms",
		   done ? ns_to_ms(h->restore_done_ns - h->run_ns) : NAN, 3);
	report_f64(r, "lazy_guest_work", rate / 1e6, 2);
	report_f64(r, "lazy_guest_work_pct_of_before",
		   res->work_before > 0 ? 100.0 * rate / res->work_before : NAN,
		   1);
	report_u64(r, "lazy_faults", d->faults);
	report_u64(r, "lazy_page_requests", d->page_requests);
	report_f64(r, "lazy_blocktime_ms", ns_to_ms(d->blocktime_ns), 3);
	report_f64(r, "lazy_latency_p50_us", (double)d->latency_p50_ns / 1e3,
		   1);
	report_f64(r, "lazy_latency_p99_us", (double)d->latency_p99_ns / 1e3,
		   1);
}

/* --save / --restore: each direction's time and RAM throughput (RAM
 * bytes / the side's total time), and the bytes it wrote or read. */
static void local_file_items(struct report *r, const struct bench_opts *o,
			     const struct local_result *res)
{
	const mfd_stats *s = &res->run.src_st, *d = &res->run.dst_st;

	if (o->save_path) {
		report_str(r, "save_file", o->save_path);
		report_f64(r, "save_ms", ns_to_ms(s->total_ns), 3);
		report_f64(r, "save_mbps", mbps(o->ram_bytes, s->total_ns), 1);
		report_u64(r, "save_written_bytes", s->wire_bytes);
	}
	if (o->restore_path) {
		report_str(r, "restore_file", o->restore_path);
		report_str(r, "restore_cache",
			   o->restore_cold ? "cold" : "warm");
		report_f64(r, "restore_ms", ns_to_ms(d->total_ns), 3);
		report_f64(r, "restore_mbps", mbps(o->ram_bytes, d->total_ns),
			   1);
		report_u64(r, "restore_read_bytes", d->wire_bytes);
	}
	if (o->restore_path && res->hooks.lazy)
		lazy_items(r, d, res);
}

void results_local(struct report *r, const struct bench_opts *o,
		   const struct vm *vm, const mfd_config *cfg,
		   const struct local_result *res)
{
	local_run_items(r, o, vm, cfg, res);
	local_file_items(r, o, res);
	local_precopy_items(r, o, cfg, res);
	bench_devices_report(r, &o->dev, &res->run.src_st, &res->run.dst_st);
	bench_vdpa_report(r);
	coldmem_report(r, &o->cold, &res->run.ru0, &res->run.ru1,
		       o->dest_populate ? 0 : o->ram_bytes);
}

void results_write(struct report *r, bool json)
{
	if (json)
		report_json(r, stdout);
	else
		report_table(r, stdout);
	report_free(r);
	fflush(stdout);
}

void results_twohost(struct report *r, const struct bench_opts *o,
		     const mfd_config *cfg, const struct twohost_result *res)
{
	const mfd_stats *st = res->source ? &res->run.src_st : &res->run.dst_st;
	bool verify = config_bool(cfg, "verify", false);

	report_str(r, "status",
		   !res->run_err && (!res->memcmp_done || res->memcmp_ok)
			   ? "ok"
			   : "failed");
	if (res->run_err)
		report_str(r, "error", mfd_strerror(res->run_err));
	report_i64(r, "error_code", res->run_err);
	report_str(r, "role", res->source ? "source" : "destination");
	report_str(r, "uri", res->uri);
	report_str(r, "image", vm_image_name(&o->image));
	report_u64(r, "seed", o->image.seed);
	report_u64(r, "ram_bytes", o->ram_bytes);
	report_u64(r, "blocks", o->blocks);
	report_u64(r, "channels", st->channels);
	report_bool(r, "verify", verify);
	report_f64(r, "setup_ms", ns_to_ms(st->setup_ns), 3);
	report_f64(r, "transfer_ms", ns_to_ms(st->transfer_ns), 3);
	/* The downtime is measured on the source (stop hook to LOADED); on
	 * the destination it is not measured: null, never 0. */
	report_f64(r, "downtime_ms",
		   res->source ? ns_to_ms(st->downtime_ns) : NAN, 3);
	report_f64(r, "total_ms", ns_to_ms(st->total_ns), 3);
	report_f64(r, "wall_ms", ns_to_ms(res->run.wall_ns), 3);
	report_u64(r, "wire_bytes", st->wire_bytes);
	report_u64(r, "pages", st->pages);
	report_u64(r, "rounds", stats_rounds(st));
	report_f64(r, "throughput_mbps", mbps(st->wire_bytes, st->transfer_ns),
		   1);
	report_rusage(r, &res->run);
	report_bool(r, "verified", verify && !res->run_err);
	/* null where the destination did not compare (no image to compare
	 * with); absent on the source. */
	if (!res->source && res->memcmp_done)
		report_bool(r, "memcmp_ok", res->memcmp_ok);
	else if (!res->source)
		report_raw(r, "memcmp_ok", "null");
	report_str(r, "phase", mfd_phase_name(st->phase));
	report_bool(r, "timed_out", res->run.timed_out);
}
