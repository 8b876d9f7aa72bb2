/* SPDX-License-Identifier: MIT */
/*
 * mfd-zerobench: zero-page detection throughput on one core, per SIMD path,
 * against the memory ceilings measured in the same run: memcpy of the same
 * bytes (GB/s of source read) and a plain 64-bit OR reduction compiled for
 * the baseline ISA. The buffer is resident (written before) and all zero:
 * the detector's worst case, it must read every byte.
 *
 *   mfd-zerobench [MiB (default 512)] [repetitions (default 5)]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "multifd/compress/codec.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static volatile uint64_t sink;

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 512;
	int reps = argc > 2 ? atoi(argv[2]) : 5;
	size_t len = mib << 20;
	uint8_t *buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *dst = mmap(NULL, len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED || dst == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	madvise(buf, len, MADV_HUGEPAGE);
	madvise(dst, len, MADV_HUGEPAGE);
	memset(buf, 1, len); /* resident, not the shared zero page */
	memset(buf, 0, len);
	memset(dst, 1, len);

	printf("buffer %zu MiB, best of %d, one thread\n", mib, reps);
	double best = 1e9;
	for (int r = 0; r < reps; r++) {
		double t = now_s();
		memcpy(dst, buf, len);
		t = now_s() - t;
		best = t < best ? t : best;
	}
	double memcpy_gbs = (double)len / best / 1e9;
	printf("%-10s %7.2f GB/s\n", "memcpy", memcpy_gbs);
	best = 1e9;
	for (int r = 0; r < reps; r++) {
		const uint64_t *w = (const uint64_t *)buf;
		uint64_t acc = 0;
		double t = now_s();
		for (size_t i = 0; i < len / 8; i++)
			acc |= w[i];
		t = now_s() - t;
		sink = acc;
		best = t < best ? t : best;
	}
	printf("%-10s %7.2f GB/s\n", "or-read", (double)len / best / 1e9);

	for (int impl = MFD__ZERO_PORTABLE; impl < MFD__ZERO_NIMPL; impl++) {
		const char *name = mfd__zero_name(impl);
		if (mfd__zero_select(impl)) {
			printf("%-10s unsupported on this CPU\n", name);
			continue;
		}
		best = 1e9;
		for (int r = 0; r < reps; r++) {
			size_t zero = 0;
			double t = now_s();
			for (size_t off = 0; off < len; off += 4096)
				zero += mfd__buffer_is_zero(buf + off, 4096);
			t = now_s() - t;
			if (zero != len / 4096) {
				fprintf(stderr, "%s: wrong answer\n", name);
				return 1;
			}
			best = t < best ? t : best;
		}
		double gbs = (double)len / best / 1e9;
		printf("%-10s %7.2f GB/s  (%.2fx memcpy)\n", name, gbs,
		       gbs / memcpy_gbs);
	}
	return 0;
}
