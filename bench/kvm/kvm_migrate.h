/* SPDX-License-Identifier: MIT */
/*
 * A live migration of a running KVM guest between two VMMs in one process
 * over libmultifd (public API only): the source VMM's memory slot is the
 * block "pc.ram", its vCPUs and VM state are devices "kvm-vcpuN" and
 * "kvm-vm", its dirty log feeds the sync_dirty hook; the destination
 * restores the state in its loaded hook and starts its vCPUs.
 */
#ifndef MFD_BENCH_KVM_MIGRATE_H
#define MFD_BENCH_KVM_MIGRATE_H

#include <stddef.h>
#include <stdint.h>

#include "multifd/multifd.h"

struct kvm_mig_opts {
	const char *kernel;	/* guest ELF */
	const char *cmdline;	/* guest command line */
	unsigned vcpus;		/* 1..8 */
	uint64_t mem_bytes;	/* guest RAM */
	const mfd_config *cfg;	/* NULL: defaults */
	unsigned before_ms;	/* guest runs this long before migrating */
	unsigned after_ms;	/* and this long after it ends */
	int serial_fd;		/* both VMMs' COM1 also here; -1: not */
	int cancel_after_ms;	/* >= 0: cancel the source then */
	int kill_dest_after_ms; /* >= 0: cancel the destination then */
	uint64_t clear_chunk;	/* KVM_CLEAR_DIRTY_LOG chunk, pages */
	int dirty_mode;		/* source: VMM_DIRTY_BITMAP or _RING */
	uint32_t ring_entries;	/* per vCPU, ring mode; 0: 4096 */
	/* > 0: mfd_source_start_postcopy() this long after the start (the
	 * config's postcopy key must be manual); 0: not called. */
	unsigned postcopy_after_ms;
	int kill_dest_at_postcopy; /* tests: cancel the destination as soon
				    * as it runs the guest after the switch */
	/* Optional (tests): route the source through a proxy: given the
	 * destination's URI, write the one the source should use. Then
	 * midway() is called once the source has started. */
	void *ctx;
	int (*route)(void *ctx, const char *dest_uri, char *uri, size_t len);
	void (*midway)(void *ctx);
};

struct kvm_mig_result {
	int ret;		       /* mfd_source_wait() */
	int dest_ret;		       /* mfd_dest_wait() */
	int dest_running;	       /* destination vCPUs were started */
	int postcopy;		       /* the source's postcopy hook ran */
	uint64_t src_lines_after_stop; /* source guest lines 200 ms or more
					* after its stop hook (a resume) */
	mfd_stats src;		       /* source statistics */
	mfd_stats dst;		       /* destination statistics */
	uint64_t syncs;		       /* sync_dirty calls */
	uint64_t sync_ns;	       /* time in them */
	uint64_t dirty_pages;	       /* pages KVM reported dirty, all syncs */
	int manual_protect;	  /* bitmap mode used KVM_CLEAR_DIRTY_LOG */
	uint32_t ring_entries;	  /* ring mode: entries per vCPU */
	uint64_t ring_full_exits; /* ring mode: KVM_EXIT_DIRTY_RING_FULL */
	uint64_t ring_overflows;  /* ring mode: rings KVM overfilled */
	/* Guest's view, from its COM1 lines. */
	uint64_t serial_gap_ns; /* last source line to first dest line */
	/* The parts of that gap each side sees alone (two hosts share no
	 * clock): source, last line to the stop hook; destination, vCPUs
	 * started to the first line. */
	uint64_t src_quiet_ns, dst_quiet_ns;
	double rate_before; /* work (pages verified) per second */
	double rate_during;
	double rate_after; /* where the guest runs at the end */
	uint64_t last_seq_src, first_seq_dst, last_seq_end;
	uint64_t bad_src, bad_end; /* bad pages: source, at the end */
	uint64_t lines_after;	   /* lines where it runs after the end */
	char err[256];
};

/* Returns 0 when the run happened (whatever the migration's outcome, in
 * res->ret), -ENODEV when KVM is not usable here (res->err says why), or
 * another -errno. */
int kvm_migrate_run(const struct kvm_mig_opts *o, struct kvm_mig_result *res);

/*
 * The two halves for two hosts (or namespaces): the source boots the guest,
 * lets it run before_ms and migrates it to uri; the destination listens on
 * uri (creating the same memory and vCPUs, without a kernel), calls
 * listening() with the bound URI, loads, and watches the guest after_ms.
 * Return as kvm_migrate_run(); the outcome is in res->ret / res->dest_ret.
 */
int kvm_migrate_source(const struct kvm_mig_opts *o, const char *uri,
		       struct kvm_mig_result *res);
int kvm_migrate_dest(const struct kvm_mig_opts *o, const char *uri,
		     void (*listening)(const char *uri),
		     struct kvm_mig_result *res);

/* Parses "stamp seq=N work=W writes=R bad=B ..."; 0 or -EINVAL. */
int kvm_stamp_parse(const char *line, uint64_t *seq, uint64_t *work,
		    uint64_t *bad);

#endif
