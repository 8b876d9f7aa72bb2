/* SPDX-License-Identifier: MIT */
/*
 * What the local run (local.c) and the two-host run (twohost.c) share:
 * the hooks that record when the library called them, the watchdog that
 * cancels a hung migration, the timing of a run (wall clock, getrusage)
 * and the collection of the statistics afterwards. Public API only.
 */
#ifndef BENCH_HARNESS_H
#define BENCH_HARNESS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>

#include <multifd/multifd.h>

#include "report.h"

extern const char prog_name[]; /* "multifd-bench", prefix of messages */

uint64_t now_ns(void); /* CLOCK_MONOTONIC */
double ns_to_ms(uint64_t ns);

struct guest;

/* What the hooks saw, written from the library's migration threads. */
struct hook_log {
	uint64_t stop_ns;
	uint64_t resume_ns;
	uint64_t loaded_ns;
	unsigned stops;
	unsigned resumes;
	int dest_failed;     /* error given to the failed hook */
	struct guest *guest; /* NULL: no writers to pause or throttle */
	uint64_t work_at_stop;
	uint64_t reader_work_at_stop;
	int throttle_max;
	int vcpu_throttle_max; /* dirty-limit's highest per-vCPU percent */
	unsigned throttles;
	/* Post-copy: the destination's RAM, where the guest moves at the
	 * switch (NULL in a process without a guest there); when the source
	 * made the switch and when the destination ran the guest, and the
	 * guest's work at that moment. */
	uint8_t *dst_ram;
	uint64_t switch_ns;
	uint64_t run_ns;
	uint64_t work_at_run;
	uint64_t reader_work_at_run;
	/* Lazy restore (--restore FILE --lazy-restore on): the loaded hook
	 * runs the guest on the destination's RAM as postcopy_run() does,
	 * while the pages are still coming; when the restore began and
	 * ended, and the guest's work at its end. */
	bool lazy;
	uint64_t restore_t0;
	uint64_t restore_done_ns;
	uint64_t work_at_restore_done;
};

/* Hooks that write into h (which must outlive the handles). */
void hooks_source(struct hook_log *h, mfd_source_hooks *out);
void hooks_dest(struct hook_log *h, mfd_dest_hooks *out);

struct vm;

/* Registers the VM's blocks with src (its source half) or dst (its
 * destination half), whichever is not NULL. 0 or the library's error. */
int bench_add_blocks(const struct vm *vm, mfd_source *src, mfd_dest *dst);

/* --announce-if/--announce-mac: dst announces macs on ifname after the
 * guest runs (ifname NULL: nothing). 0 or the library's error. */
int bench_dest_announce(mfd_dest *dst, const char *ifname,
			const uint8_t (*macs)[6], unsigned nmacs);
/* After mfd_dest_wait(): waits for the announcement's rounds and says on
 * stderr how it ended. 0 or its error. */
int bench_dest_announce_wait(mfd_dest *dst, const char *ifname, unsigned nmacs);

/* Cancels the side(s) given (either may be NULL) after timeout_s. */
struct watchdog {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	bool fired;
	unsigned timeout_s; /* 0: no watchdog */
	mfd_source *src;
	mfd_dest *dst;
};

#define MAX_ROUND_RECORDS 1000

/* One migration as the harness times and collects it. */
struct bench_run {
	struct watchdog wd;
	uint64_t t0, wall_ns;
	struct rusage ru0, ru1;
	bool timed_out;
	mfd_stats src_st; /* zero when this process has no source */
	mfd_stats dst_st; /* zero when this process has no destination */
	mfd_round_stats rounds[MAX_ROUND_RECORDS];
	unsigned nrounds;
};

/*
 * Starts the watchdog (timeout_s, 0 = none) and the clocks. src or dst may
 * be NULL (two-host mode). 0 or a negative errno (the watchdog thread).
 */
int bench_run_begin(struct bench_run *r, unsigned timeout_s, mfd_source *src,
		    mfd_dest *dst);
/* After the side(s) returned from their wait: stops the clocks and the
 * watchdog and reads the statistics and the round records. */
void bench_run_end(struct bench_run *r, mfd_source *src, mfd_dest *dst);

/* cpu_user_s and cpu_sys_s of the process during the run. */
void report_rusage(struct report *rep, const struct bench_run *r);
/* 0 before the first round, else the number of rounds. */
uint64_t stats_rounds(const mfd_stats *st);

/*
 * The reason of a side's failure, as the bench prints it: the ONE place
 * that asks the library. The side's first failure's full reason
 * (mfd_source_error_text(src) or mfd_dest_error_text(dst); either may be
 * NULL), or mfd_strerror(err) where the library recorded none.
 */
const char *bench_error_reason(mfd_source *src, mfd_dest *dst, int err);
/* "multifd-bench: what: reason (err)" on stderr; returns err. */
int bench_report_error(const char *what, mfd_source *src, mfd_dest *dst,
		       int err);

#endif /* BENCH_HARNESS_H */
