/* SPDX-License-Identifier: MIT */
/*
 * multifd-bench --vm kvm: live-migrates a running KVM guest, between two
 * VMMs in this process or (dest / source) between two processes, and
 * reports the migration and the guest's own view of it (its work rate
 * before, during and after, and the gap in its serial output), as a table
 * or with --json as one JSON object.
 */
#include "kvm_bench.h"
#include "kvm_migrate.h"
#include "vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../harness.h"
#include "../report.h"
#include "../results.h"

#include "multifd/multifd.h"

#define EXIT_SKIP 77

static const char *const role_names[] = {
	[MODE_LOCAL] = "local",
	[MODE_SOURCE] = "source",
	[MODE_DEST] = "destination",
};

/* Scripts wait for this line before starting the source. */
static void listening(const char *uri)
{
	fprintf(stderr, "%s: listening on %s\n", prog_name, uri);
	fflush(stderr);
}

static void migration_items(struct report *r, const mfd_stats *s, bool source)
{
	report_f64(r, "total_ms", ns_to_ms(s->total_ns), 3);
	report_f64(r, "setup_ms", ns_to_ms(s->setup_ns), 3);
	report_u64(r, "rounds", s->round + 1);
	report_u64(r, "pages", s->pages);
	report_u64(r, "zero_pages", s->zero_pages);
	report_u64(r, "wire_bytes", s->wire_bytes);
	/* Measured on the source (stop hook to LOADED): null elsewhere. */
	report_f64(r, "downtime_ms", source ? ns_to_ms(s->downtime_ns) : NAN,
		   3);
	if (source) {
		report_f64(r, "down_sync_ms", ns_to_ms(s->down_sync_ns), 3);
		report_f64(r, "down_pages_ms", ns_to_ms(s->down_pages_ns), 3);
		report_f64(r, "down_end_ms", ns_to_ms(s->down_end_ns), 3);
		report_f64(r, "down_ack_ms", ns_to_ms(s->down_ack_ns), 3);
		report_f64(r, "device_downtime_ms",
			   ns_to_ms(s->device_downtime_ns), 3);
	}
	report_u64(r, "device_bytes", s->device_bytes);
}

static void dirty_log_items(struct report *r, const struct kvm_mig_result *m)
{
	report_str(r, "dirty_log", m->ring_entries ? "ring" : "bitmap");
	if (m->ring_entries) {
		report_u64(r, "ring_entries", m->ring_entries);
		report_u64(r, "ring_full_exits", m->ring_full_exits);
		report_u64(r, "ring_overflows", m->ring_overflows);
	} else
		report_bool(r, "manual_protect", m->manual_protect);
	report_u64(r, "dirty_syncs", m->syncs);
	report_f64(r, "dirty_sync_ms", ns_to_ms(m->sync_ns), 3);
	report_u64(r, "dirty_pages", m->dirty_pages);
}

/* The guest's own view; each side reports what it saw. */
static void guest_items(struct report *r, enum bench_mode mode,
			const struct kvm_mig_result *m)
{
	bool on_dest = m->dest_running;
	if (mode != MODE_DEST) {
		report_f64(r, "guest_rate_before", m->rate_before, 0);
		report_f64(r, "guest_rate_during", m->rate_during, 0);
		report_u64(r, "serial_last_seq_source", m->last_seq_src);
		report_f64(r, "serial_source_quiet_ms",
			   ns_to_ms(m->src_quiet_ns), 3);
	}
	if (mode != MODE_SOURCE && on_dest) {
		report_u64(r, "serial_first_seq_dest", m->first_seq_dst);
		report_f64(r, "serial_dest_quiet_ms", ns_to_ms(m->dst_quiet_ns),
			   3);
	}
	if (mode == MODE_LOCAL)
		report_f64(r, "serial_gap_ms",
			   on_dest ? ns_to_ms(m->serial_gap_ns) : NAN, 3);
	report_str(r, "guest_runs_on",
		   mode == MODE_SOURCE && !m->ret ? "destination"
		   : on_dest			  ? "destination"
						  : "source");
	/* Watched after the end only where the guest runs in this process. */
	if (mode == MODE_LOCAL || on_dest || (mode == MODE_SOURCE && m->ret)) {
		report_f64(r, "guest_rate_after", m->rate_after, 0);
		report_u64(r, "guest_bad_pages", m->bad_end);
		report_u64(r, "serial_lines_after", m->lines_after);
	}
}

/* 0 when the run did what it should on this side. */
static int outcome(enum bench_mode mode, const struct kvm_mig_result *m)
{
	bool dest_ok = !m->dest_ret && m->dest_running && !m->bad_end &&
		       m->lines_after;
	switch (mode) {
	case MODE_SOURCE:
		return m->ret != 0;
	case MODE_DEST:
		return !dest_ok;
	default:
		return !(dest_ok && !m->ret &&
			 m->first_seq_dst == m->last_seq_src + 1);
	}
}

static int serial_open(const char *path, int *fd)
{
	*fd = -1;
	if (!path)
		return 0;
	if (!strcmp(path, "-")) {
		*fd = 1;
		return 0;
	}
	*fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (*fd >= 0)
		return 0;
	fprintf(stderr, "%s: --serial %s: %s\n", prog_name, path,
		strerror(errno));
	return -errno;
}

int kvm_bench_run(const struct kvm_bench_opts *k, const struct bench_opts *b,
		  const mfd_config *cfg)
{
	struct kvm_mig_opts o = {
		.kernel = k->kernel,
		.cmdline = k->cmdline,
		.vcpus = k->vcpus,
		.mem_bytes = b->ram_bytes,
		.before_ms = b->measure_ms,
		.after_ms = b->measure_ms,
		.cancel_after_ms = -1,
		.kill_dest_after_ms = -1,
		.clear_chunk = k->clear_chunk,
		.ring_entries = k->ring_entries,
		.dirty_mode = k->dirty_ring ? VMM_DIRTY_RING : VMM_DIRTY_BITMAP,
		.cfg = cfg,
	};
	struct kvm_mig_result m;
	int ret, rc;

	if (serial_open(k->serial, &o.serial_fd))
		return 1;
	if (b->mode == MODE_SOURCE)
		ret = kvm_migrate_source(&o, b->twohost_uri, &m);
	else if (b->mode == MODE_DEST)
		ret = kvm_migrate_dest(&o, b->twohost_uri, listening, &m);
	else
		ret = kvm_migrate_run(&o, &m);
	if (o.serial_fd > 2)
		close(o.serial_fd);
	if (ret == -ENODEV) {
		printf("kvm: not usable here: %s\n", m.err);
		return EXIT_SKIP;
	}
	if (ret) {
		fprintf(stderr, "%s: %s\n", prog_name,
			m.err[0] ? m.err : strerror(-ret));
		return 1;
	}
	rc = outcome(b->mode, &m);

	struct report r;
	char ch[16] = "?";
	int err = b->mode == MODE_DEST ? m.dest_ret : m.ret;
	mfd_config_get(cfg, "channels", ch, sizeof(ch));
	report_init(&r);
	report_str(&r, "status", rc ? "failed" : "ok");
	if (err)
		report_str(&r, "error", mfd_strerror(err));
	report_i64(&r, "error_code", err);
	if (m.err[0])
		report_str(&r, "reason", m.err);
	report_str(&r, "vm", "kvm");
	report_str(&r, "role", role_names[b->mode]);
	if (b->mode != MODE_LOCAL)
		report_str(&r, "uri", b->twohost_uri);
	if (b->mode != MODE_DEST) {
		report_str(&r, "kernel", o.kernel);
		report_str(&r, "cmdline", o.cmdline);
	}
	report_u64(&r, "vcpus", o.vcpus);
	report_u64(&r, "ram_bytes", o.mem_bytes);
	report_str(&r, "channels", ch);
	migration_items(&r, b->mode == MODE_DEST ? &m.dst : &m.src,
			b->mode != MODE_DEST);
	if (b->mode != MODE_DEST)
		dirty_log_items(&r, &m);
	guest_items(&r, b->mode, &m);
	results_write(&r, b->json);
	return rc;
}
