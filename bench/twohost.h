/* SPDX-License-Identifier: MIT */
/*
 * Two-host mode: "multifd-bench dest --listen URI" and "multifd-bench
 * source --connect URI" in two processes (or hosts). Both sides are given
 * the same VM shape (--ram, --blocks; the destination also --image and
 * --seed for its own byte-for-byte check); the library's SETUP check
 * refuses a destination whose RAM layout differs, naming the difference.
 * The hooks, watchdog, timing and statistics are the harness's
 * (harness.h), as in the local run.
 */
#ifndef BENCH_TWOHOST_H
#define BENCH_TWOHOST_H

#include <stdbool.h>

#include <multifd/multifd.h>

#include "cli.h"
#include "harness.h"

struct twohost_result {
	bool source; /* else destination */
	int run_err;
	bool memcmp_done; /* destination: the image was regenerated */
	bool memcmp_ok;
	char uri[256];
	struct hook_log hooks;
	struct sampler *sampler; /* timeline and progress line */
	struct bench_run run;
};

/* Runs this process's side (o->mode) with cfg; returns the process exit
 * status (0 ok, 1 failed). */
int twohost_run(const struct bench_opts *o, const mfd_config *cfg);

#endif /* BENCH_TWOHOST_H */
