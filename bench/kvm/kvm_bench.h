/* SPDX-License-Identifier: MIT */
/* multifd-bench --vm kvm (bench/kvm/kvm_bench.c); options in bench/cli.c. */
#ifndef MFD_BENCH_KVM_BENCH_H
#define MFD_BENCH_KVM_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "multifd/multifd.h"

struct kvm_bench_opts {
	bool on;	       /* --vm kvm */
	const char *kernel;    /* --kernel GUEST.elf */
	const char *cmdline;   /* --cmdline */
	const char *serial;    /* --serial FILE, "-" = stdout, NULL = none */
	unsigned vcpus;	       /* --vcpus */
	bool dirty_ring;       /* --dirty-log ring */
	uint64_t clear_chunk;  /* --clear-chunk (0: the VMM's default) */
	uint32_t ring_entries; /* --ring-entries (0: the VMM's default) */
};

/*
 * Live-migrates the guest between two VMMs in this process with cfg on
 * both sides, after measure_ms of running, and watches it measure_ms
 * after. Prints the report; returns the exit status: 0 when the guest
 * runs on at the destination with 0 bad pages and its serial output goes
 * on; 77 when KVM is not usable here; 1 otherwise.
 */
int kvm_bench_run(const struct kvm_bench_opts *k, uint64_t ram_bytes,
		  unsigned measure_ms, const mfd_config *cfg);

#endif
