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
	unsigned postcopy_after_ms; /* --postcopy-after-ms (0: never) */
};

struct bench_opts;

/*
 * Live-migrates the guest: in this process between two VMMs with cfg on
 * both sides (MODE_LOCAL), or one half of a two-process run (dest: listen
 * on --listen, restore and run; source: boot, run and migrate to
 * --connect). The guest runs --guest-measure-ms before and is watched as
 * long after. Prints the report (--json: one JSON object); returns the
 * exit status: 0 when this side did its part (the guest runs on at the
 * destination with 0 bad pages and its serial output goes on; the source's
 * migration succeeded); 77 when KVM is not usable here; 1 otherwise.
 */
int kvm_bench_run(const struct kvm_bench_opts *k, const struct bench_opts *b,
		  const mfd_config *cfg);

#endif
