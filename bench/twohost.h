/* SPDX-License-Identifier: MIT */
/*
 * Two-host mode: "multifd-bench dest --listen URI" and "multifd-bench
 * source --connect URI" in two processes (or hosts). Both sides are given
 * the same VM shape (--ram, --blocks; the destination also --image and
 * --seed for its own byte-for-byte check); the library's SETUP check
 * refuses a destination whose RAM layout differs, naming the difference.
 */
#ifndef BENCH_TWOHOST_H
#define BENCH_TWOHOST_H

#include <stdbool.h>
#include <stdint.h>

#include <multifd/multifd.h>

#include "vm.h"

struct twohost_args {
	const char *prog;
	bool source;	 /* else destination */
	const char *uri; /* --connect (source) or --listen (destination) */
	uint64_t ram_bytes;
	unsigned blocks;
	uint32_t page_size;
	struct vm_image image;
	unsigned fill_threads;
	bool dest_populate;
	bool check; /* destination: regenerate the image and compare */
	bool json;
	unsigned timeout_s; /* 0: none */
	const mfd_config *cfg;
	const char *timeline;
	const char *plot;
};

/* Runs one side; returns the process exit status (0 ok, 1 failed). */
int twohost_run(const struct twohost_args *a);

#endif /* BENCH_TWOHOST_H */
