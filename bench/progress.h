/* SPDX-License-Identifier: MIT */
/*
 * The bench's sampler: a thread that reads the migration's statistics every
 * 100 ms (mfd_source_get_stats, or mfd_dest_get_stats on a destination),
 * keeps one sample per interval for --timeline and --plot, and draws a
 * live progress line on stderr when stderr is a terminal.
 */
#ifndef BENCH_PROGRESS_H
#define BENCH_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <multifd/multifd.h>

#define SAMPLE_INTERVAL_NS 100000000ULL

struct sample {
	uint64_t t_ns; /* since the sampler started */
	int phase;     /* enum mfd_phase */
	uint32_t round;
	uint64_t wire_bytes; /* sent (source) or received (destination) */
	uint64_t pending_bytes;
	double throughput_bps; /* wire bytes/s over the last interval */
	/*
	 * Guest writes per second over the last interval, estimated from the
	 * statistics (growth of pending bytes plus bytes sent) during
	 * pre-copy; 0 otherwise.
	 */
	double dirty_bps;
	double expected_downtime_ms; /* pending / last round's bandwidth
				      * (current throughput in round 0) */
	/* The library's estimate at its last decision, fixed costs
	 * included (source; -1 before the first), and the part over
	 * downtime-limit then (enum mfd_down_part). */
	double budget_ms;
	int over_part;
};

struct sampler;

/*
 * Starts sampling src (or, when src is NULL, dst): the first sample is
 * taken at once, then one at every multiple of SAMPLE_INTERVAL_NS, and a
 * last one when the sampler stops. A sample that could only be taken late
 * (the machine was busy) covers the intervals it missed; times are the
 * real ones, so they always grow. progress draws the
 * live line (only if stderr is a terminal). page_size converts page counts
 * to bytes.
 */
int sampler_start(struct sampler **out, mfd_source *src, mfd_dest *dst,
		  uint32_t page_size, bool progress);
/* Takes a last sample, stops the thread and clears the progress line. */
void sampler_stop(struct sampler *s);
/* Monotonic time (CLOCK_MONOTONIC, ns) of the first sample. */
uint64_t sampler_t0(const struct sampler *s);
const struct sample *sampler_samples(const struct sampler *s, size_t *n);
/* CSV with a header line; 0 or -errno (message printed). */
int sampler_write_csv(const struct sampler *s, const char *path);
void sampler_free(struct sampler *s);

#endif /* BENCH_PROGRESS_H */
