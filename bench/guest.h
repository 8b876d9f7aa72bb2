/* SPDX-License-Identifier: MIT */
/*
 * The bench's guest workload: "vCPU" writer threads that write real bytes
 * into the VM's RAM at a given total dirty rate, with a compute loop
 * between writes standing for the instructions a guest retires. Each
 * writer runs in 10 ms time slices, and each slice is a fixed job: the
 * compute that takes load% of the slice on an idle CPU (calibrated at
 * start in thread CPU time) with the slice's writes spread through it;
 * the next slice starts when the job is done, 10 ms after the last at
 * the earliest. The work done (compute iterations) is the guest's
 * progress: a write that blocks (post-copy fault, write protection), a
 * throttle's sleep or a CPU taken by others lowers the work rate below
 * the nominal one, and nothing raises it above.
 *
 * pause() parks every writer and returns only when all are parked (the
 * stop hook); resume() lets them go on; throttle(pct) makes each writer
 * sleep pct/(100-pct) of a 10 ms slice after each slice, as QEMU's
 * cpu-throttle does with its vCPUs.
 */
#ifndef BENCH_GUEST_H
#define BENCH_GUEST_H

#include <stdbool.h>
#include <stdint.h>

#include <multifd/multifd.h>

#include "vm.h"

enum guest_pattern {
	GUEST_UNIFORM, /* any page */
	GUEST_HOTSET,  /* 90% of writes to hot_fraction of the pages */
	GUEST_SEQ,     /* each writer walks its own stripe in order */
};

struct guest_opts {
	unsigned writers;
	double dirty_mbps; /* total: pages dirtied x page size, 1e6 B/s */
	enum guest_pattern pattern;
	double hot_fraction;
	unsigned load_pct; /* busy share of each writer's time slice */
	/* Compute threads that never write (vCPUs of a mixed guest): they
	 * run in the same slices, pause and throttle with the writers. */
	unsigned readers;
	/* Writer i writes only stripe i of RAM (npages / writers pages), the
	 * pattern applied within it: what dirty-limit attributes by. */
	bool own_ranges;
};

struct guest;

int guest_pattern_parse(const char *s, enum guest_pattern *out);
const char *guest_pattern_name(enum guest_pattern p);

/* Starts the writers on the source RAM of vm. */
int guest_start(struct guest **out, const struct guest_opts *o, struct vm *vm);
/* From now on each write is also reported with mfd_source_mark_dirty()
 * (src non-NULL), or not (NULL): what a KVM dirty log does for a
 * hypervisor using the manual tracker. */
void guest_set_marking(struct guest *g, mfd_source *src);
/* Writers write into ram (the same layout) from now on: after a
 * migration the guest runs on at the destination. Call while paused. */
void guest_set_ram(struct guest *g, uint8_t *ram);
/* Whether a writer wrote page pg (of the VM's RAM) since the guest moved
 * to another RAM with guest_set_ram(): those pages differ from the
 * source's after a post-copy migration by design. */
bool guest_moved_wrote(const struct guest *g, uint64_t pg);
void guest_pause(struct guest *g);
void guest_resume(struct guest *g);
void guest_throttle(struct guest *g, int pct);
/* One thread alone (dirty-limit): writers are vCPUs 0..writers-1, readers
 * follow. The larger of this and guest_throttle() applies. */
void guest_throttle_vcpu(struct guest *g, unsigned vcpu, int pct);
/* With own_ranges: writer i's stripe as RAM offset and length; false
 * without. */
bool guest_writer_range(const struct guest *g, unsigned i, uint64_t *off,
			uint64_t *len);
/* The readers' work so far (any thread). */
uint64_t guest_reader_work(struct guest *g);
/* The work per second the writers (readers: the readers) do when
 * nothing stalls them: their demand, the load% of each slice. */
double guest_nominal_rate(const struct guest *g, bool readers);
/* Totals so far (any thread). */
uint64_t guest_work(struct guest *g);
uint64_t guest_writes(struct guest *g);
/*
 * The guest's work rate (work per second) during a migration, the same
 * quantity in every mode: the work it did while it was meant to run,
 * over the time it was meant to run. That is from the migration's start
 * to the stop hook, and for post-copy also from the destination's
 * postcopy_run (the guest runs there, faulting) to the end; the downtime
 * between counts in neither mode (it is reported as downtime). A
 * throttle's sleep counts as time, so a throttled guest shows a lower
 * rate. Times in ns (one clock); run_ns 0: it never ran on after the
 * stop (pre-copy); stop_ns 0: it never stopped (failure: until end).
 * Returns 0 for an empty or inconsistent window.
 */
struct guest_span {
	uint64_t start_ns, stop_ns, run_ns, end_ns;
	uint64_t work_start, work_stop, work_run, work_end;
};
double guest_span_rate(const struct guest_span *s);
/* Stops and joins the writers; accepts NULL. */
void guest_stop(struct guest *g);

#endif /* BENCH_GUEST_H */
