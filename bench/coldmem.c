/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "coldmem.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define PROBE_BYTES (128ULL << 20)

/* A warm-up pass slower than this per GiB made the host back pages (a
 * backed THP touch takes 40-100 ms/GiB here, an unbacked one 500-1500). */
#define WARM_BACKED_MS_PER_GIB 200.0
#define WARM_MAX_PASSES	       4

static uint64_t warm_ns, probe_ns;
static double warm_last_ms_per_gib;
static unsigned warm_passes;
static bool probe_ok;
static uint64_t steal0;
static bool steal_ok;
static long long reported0;

/* KiB of free memory the guest has reported to the host so far (a kernel
 * with this page_reporting parameter; -1 without): pages reported after
 * the warm-up are no longer backed, and their next touch is a host fault
 * again. */
static long long reported_kib(void)
{
	FILE *f = fopen("/sys/module/page_reporting/parameters/reported_kib",
			"r");
	long long v = -1;
	if (f) {
		if (fscanf(f, "%lld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

/* Steal time of all CPUs (/proc/stat, USER_HZ ticks): on a VM, what the
 * host took, such as its faults behind the guest's first touches. */
static bool steal_ticks(uint64_t *out)
{
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return false;
	unsigned long long v[8] = { 0 };
	int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
		       &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	*out = v[7];
	return n == 8;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Maps len bytes the way guest RAM is mapped (THP), touches every page of
 * it and unmaps it; how long the touch took, 0 if it could not map. */
static uint64_t touch_free(uint64_t len)
{
	uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return 0;
	madvise(p, len, MADV_HUGEPAGE);
	uint64_t t = now_ns();
	if (madvise(p, len, MADV_POPULATE_WRITE) != 0)
		for (uint64_t off = 0; off < len; off += 4096)
			((volatile uint8_t *)p)[off] = 1;
	t = now_ns() - t;
	munmap(p, len);
	return t ? t : 1;
}

void coldmem_warm(const struct coldmem_opts *o)
{
	warm_ns = 0;
	warm_passes = 0;
	warm_last_ms_per_gib = 0;
	if (o->warm_gib > 0) {
		uint64_t len = (uint64_t)(o->warm_gib * (1ULL << 30));
		len = (len + (2ULL << 20) - 1) & ~((2ULL << 20) - 1);
		uint64_t t = now_ns();
		/* Until a pass finds the memory backed: a slow pass was the
		 * host backing it, and the next one shows whether it
		 * stayed. */
		while (warm_passes < WARM_MAX_PASSES) {
			uint64_t ns = touch_free(len);
			warm_passes++;
			if (!ns) {
				fprintf(stderr,
					"warning: --warm-host: mmap of %llu "
					"bytes failed\n",
					(unsigned long long)len);
				break;
			}
			warm_last_ms_per_gib = (double)ns / 1e6 *
					       (double)(1ULL << 30) /
					       (double)len;
			if (warm_last_ms_per_gib <= WARM_BACKED_MS_PER_GIB)
				break;
		}
		warm_ns = now_ns() - t;
	}
}

void coldmem_before_run(const struct coldmem_opts *o)
{
	coldmem_warm(o);
	probe_ns = touch_free(PROBE_BYTES);
	probe_ok = probe_ns != 0;
	steal_ok = steal_ticks(&steal0);
	reported0 = reported_kib();
}

void coldmem_report(struct report *r, const struct coldmem_opts *o,
		    const struct rusage *ru0, const struct rusage *ru1,
		    uint64_t cold_bytes)
{
	report_f64(r, "warm_host_gib", o->warm_gib, 2);
	report_f64(r, "warm_host_ms", (double)warm_ns / 1e6, 1);
	report_u64(r, "warm_host_passes", warm_passes);
	/* The last pass: at most WARM_BACKED_MS_PER_GIB when the host kept
	 * the memory backed, more when it gave up after WARM_MAX_PASSES. */
	report_f64(r, "warm_host_last_ms_per_gib", warm_last_ms_per_gib, 1);
	/* Whole process: in a local run the source side too, which maps
	 * nothing new during the migration. */
	report_u64(r, "minor_faults",
		   (uint64_t)(ru1->ru_minflt - ru0->ru_minflt));
	report_u64(r, "major_faults",
		   (uint64_t)(ru1->ru_majflt - ru0->ru_majflt));
	double ms_per_gib = probe_ok ? (double)probe_ns / 1e6 *
					       (double)(1ULL << 30) /
					       (double)PROBE_BYTES
				     : 0;
	report_f64(r, "first_touch_ms_per_gib", ms_per_gib, 1);
	/* What the first touch of the cold destination RAM cost at that
	 * rate: the part of the run the host's memory state decides. */
	report_f64(r, "dest_fault_ms_est",
		   ms_per_gib * (double)cold_bytes / (double)(1ULL << 30), 1);
	/* From the migration's start until this report, all CPUs. */
	uint64_t steal1;
	double steal_ms = -1;
	if (steal_ok && steal_ticks(&steal1) && steal1 >= steal0)
		steal_ms = (double)(steal1 - steal0) * 1e3 /
			   (double)sysconf(_SC_CLK_TCK);
	report_f64(r, "steal_ms", steal_ms, 1);
	/* Free memory handed back to the host from the migration's start
	 * until this report (-1: not known): if warmed pages went, the
	 * run's first touches may have met unbacked memory. */
	long long rep1 = reported_kib();
	report_f64(r, "host_reported_mib",
		   reported0 >= 0 && rep1 >= reported0
			   ? (double)(rep1 - reported0) / 1024
			   : -1,
		   1);
}
