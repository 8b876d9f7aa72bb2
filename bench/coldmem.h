/* SPDX-License-Identifier: MIT */
/*
 * Cold destination memory, made visible and controllable (BENCHMARKING.md,
 * "the destination's page faults"):
 *
 *  --warm-host GiB  right before the migration, touch and free that much
 *                   anonymous memory, so that the host has backed free
 *                   pages (on a VM whose balloon reports freed memory, the
 *                   first touch of reported memory costs far more than of
 *                   memory the host still backs); a pass slower than
 *                   200 ms/GiB (the host was backing it) is repeated, up
 *                   to 4 passes, and the passes and the last pass's rate
 *                   are reported;
 *  report           the minor and major faults taken during the migration
 *                   (getrusage), and the first-touch cost of the moment:
 *                   a timer around the first touch of a probe mapping made
 *                   just before the migration, after the warm-up; and
 *                   the steal time of the run (/proc/stat), where a VM
 *                   sees the host's share of its first touches; and the
 *                   free memory the guest reported to the host during
 *                   the run (page_reporting's reported_kib, where the
 *                   kernel has it): warmed pages that went back.
 */
#ifndef BENCH_COLDMEM_H
#define BENCH_COLDMEM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>

#include "report.h"

struct coldmem_opts {
	double warm_gib; /* --warm-host, 0: none */
};

/* Right before the migration starts: the warm-up, then the probe. */
/* --warm-host alone (no probe, no new baselines): before a second step
 * of one run (the restore after a save). */
void coldmem_warm(const struct coldmem_opts *o);
void coldmem_before_run(const struct coldmem_opts *o);
/*
 * JSON / table items. ru0 / ru1: getrusage(RUSAGE_SELF) around the
 * migration; cold_bytes: destination RAM not touched before the run (0
 * when it was populated), whose first touch the run paid.
 */
void coldmem_report(struct report *r, const struct coldmem_opts *o,
		    const struct rusage *ru0, const struct rusage *ru1,
		    uint64_t cold_bytes);

#endif
