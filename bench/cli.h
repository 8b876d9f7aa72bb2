/* SPDX-License-Identifier: MIT */
/*
 * multifd-bench's command line: the options, --help, and the one ordered
 * list of library settings.
 *
 * Every key of the library's table (mfd_config_key()) is an option
 * --KEY VALUE, made from the table at run time; --KEY VALUE and --set
 * [SECTION.]KEY=VALUE append to the same list, in command-line order, and
 * only the library checks the values (benchcfg.c applies the list). The
 * remaining options are the bench's own: the simulated VM, the guest
 * workload, the run and its outputs.
 */
#ifndef BENCH_CLI_H
#define BENCH_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include <multifd/announce.h>

#include "benchcfg.h"
#include "coldmem.h"
#include "devices.h"
#include "guest.h"
#include "kvm/kvm_bench.h"
#include "vm.h"

#define BENCH_PAGE_SIZE 4096u
#define EXIT_USAGE	2

enum bench_mode { MODE_LOCAL, MODE_DEST, MODE_SOURCE, MODE_FILE_INFO };

/* Everything the command line decides. */
struct bench_opts {
	uint64_t ram_bytes;
	unsigned blocks;
	struct vm_image image;
	bool dest_populate;
	bool json;
	const char *uri;       /* destination listen address */
	const char *transport; /* "tcp" or "rdma" */
	unsigned fill_threads;
	unsigned timeout_s; /* 0: none */
	/* Library settings (--KEY, --set, and the shorthands), in
	 * command-line order: the last one wins. */
	struct cfg_list sets;
	const char *config_path; /* --config */
	bool print_config;
	const char *timeline; /* --timeline FILE.csv */
	const char *plot;     /* --plot FILE.png */
	/* Two-host mode: "dest --listen URI" / "source --connect URI". */
	enum bench_mode mode;
	const char *twohost_uri;
	bool check; /* dest: compare RAM with the regenerated image */
	const char *dest_netns; /* ip-netns names, or NULL */
	const char *source_netns;
	const char *dump_image; /* --dump-image FILE: write the image, exit */
	/* --save FILE / --restore FILE (local runs): the source saves to
	 * file:FILE, the destination restores from it; both: one run, the
	 * save then the restore, reported like a migration. file-info FILE:
	 * the image's header, blocks and digests. */
	const char *save_path;
	const char *restore_path;
	/* --restore-cache cold: drop the image's page cache before the
	 * restore (posix_fadvise DONTNEED, as fio's invalidate=1 before its
	 * read), so it reads from the disk, not from what the save left. */
	bool restore_cold;
	const char *info_path;
	/* --announce-if IFNAME --announce-mac MAC...: the destination's
	 * self-announcement after the guest runs. */
	const char *announce_if;
	uint8_t announce_macs[MFD_ANNOUNCE_MAX_MACS][6];
	unsigned announce_nmacs;
	/* --cut-at-round N --resume-after-ms M (local runs): every
	 * connection cut once round N runs, mfd_source_resume() M ms after
	 * the pause (cutproxy.c); cut_round 0: no cut. */
	unsigned cut_round;
	unsigned resume_after_ms;
	/* Guest workload. */
	struct guest_opts guest;
	unsigned measure_ms;	       /* guest work rate before and after */
	struct bench_devices_opts dev; /* --devices ... (devices.c) */
	struct coldmem_opts cold;      /* --warm-host (coldmem.c) */
	/* --vm kvm: a real KVM guest instead of the simulated VM. */
	struct kvm_bench_opts kvm;
	bool ram_given;
};

/* Parses argv into o; on bad usage prints why and exits with EXIT_USAGE,
 * on --help prints the help and exits 0. */
void cli_parse(int argc, char **argv, struct bench_opts *o);

/* Decimal unsigned integer, nothing else. */
bool cli_parse_u64(const char *s, uint64_t *out);
/* on/off, true/false, yes/no, 1/0. */
bool cli_parse_bool(const char *s, bool *out);

#endif /* BENCH_CLI_H */
