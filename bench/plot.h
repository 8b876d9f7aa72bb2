/* SPDX-License-Identifier: MIT */
/* --plot: a PNG of throughput and pending bytes over time, by gnuplot. */
#ifndef BENCH_PLOT_H
#define BENCH_PLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "progress.h"

/* True when a gnuplot executable is on PATH. */
bool plot_available(void);

/*
 * Draws v[0..n) into the PNG at path: throughput (left axis) and pending
 * bytes (right axis) over time, the switchover as a vertical line at
 * switch_s and the downtime as a shaded band switch_s..switch_s+down_s
 * (both skipped when switch_s < 0). Returns 0, or -1 after printing why.
 */
int plot_png(const char *path, const struct sample *v, size_t n,
	     double switch_s, double down_s, const char *title);

#endif /* BENCH_PLOT_H */

/*
 * After a run: writes the --timeline CSV (when timeline is non-NULL) and
 * the --plot PNG (when plot is non-NULL) from the sampler. stop_ns is the
 * CLOCK_MONOTONIC time the stop hook ran (0: no switchover). Returns 0 or
 * -1 when an output could not be written (reason printed).
 */
int bench_outputs(const struct sampler *s, const char *timeline,
		  const char *plot, uint64_t stop_ns, uint64_t downtime_ns,
		  const char *title);
