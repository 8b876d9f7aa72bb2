/* SPDX-License-Identifier: MIT */
/*
 * The local run: both sides in this process, over loopback (or two
 * network namespaces), with the guest's writers and the simulated devices;
 * RAM compared byte for byte afterwards.
 */
#ifndef BENCH_LOCAL_H
#define BENCH_LOCAL_H

#include <stdbool.h>
#include <stdint.h>

#include <multifd/multifd.h>

#include "cli.h"
#include "harness.h"

struct local_result {
	int src_err;
	int dst_err;
	int setup_err; /* before the migration could start */
	bool uffd;     /* dirty-tracker = uffd-wp was asked for */
	bool memcmp_ok;
	uint64_t first_diff; /* byte offset of the first difference */
	uint64_t fill_ns;
	uint64_t populate_ns;
	uint64_t memcmp_ns;
	struct bench_run run;
	struct hook_log hooks;
	char uri[256];
	struct sampler *sampler; /* timeline and progress line */
	/* Guest workload */
	double work_before, work_during, work_after; /* per second */
	double reader_before, reader_during; /* readers' work per second */
	double work_nominal, reader_nominal; /* guest_nominal_rate() */
	uint64_t reader_work_at_start;
	uint64_t writes;
	uint64_t work_at_start;
	/* When the migration ended (mfd_dest_wait() returned; 0: not
	 * known) and the guest's work then: the end of the post-copy
	 * window (guest_during()). */
	uint64_t end_ns, work_at_end, reader_work_at_end;
	/* --cut-at-round: when the proxy cut, the source paused, the resume
	 * returned (now_ns(); 0: did not happen), and its result. */
	uint64_t cut_ns, paused_ns, resumed_ns;
	int resume_err;
};

/* Runs it; returns the process exit status (0 ok, 1 failed). */
int local_run(const struct bench_opts *o, mfd_config *scfg,
	      const mfd_config *dcfg);

/* The error that ended the run first: setup, source, destination; 0. */
int local_first_error(const struct local_result *res);

#endif /* BENCH_LOCAL_H */
