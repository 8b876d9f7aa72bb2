/* SPDX-License-Identifier: MIT */
/*
 * What a run reports: the items of the JSON object (or table) of a local
 * run and of one side of a two-host run, in their order. report.c writes
 * them; docs/benchmarks.md reads them.
 */
#ifndef BENCH_RESULTS_H
#define BENCH_RESULTS_H

#include <multifd/multifd.h>

#include "cli.h"
#include "local.h"
#include "report.h"
#include "twohost.h"
#include "vm.h"

void results_local(struct report *r, const struct bench_opts *o,
		   const struct vm *vm, const mfd_config *cfg,
		   const struct local_result *res);
void results_twohost(struct report *r, const struct bench_opts *o,
		     const mfd_config *cfg, const struct twohost_result *res);

/* Writes r to stdout as one JSON object or as a table, and frees it. */
void results_write(struct report *r, bool json);

#endif /* BENCH_RESULTS_H */
