/* SPDX-License-Identifier: MIT */
/*
 * Stamped 4 KiB pages for the post-copy tests: index, generation,
 * pseudo-random bytes and a checksum, so that a reader can tell a whole
 * page (of which generation) from a torn one.
 */
#ifndef MFD_TEST_PAGESTAMP_H
#define MFD_TEST_PAGESTAMP_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PS 4096u

static inline uint64_t ps_mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

static inline uint64_t ps_sum(const uint8_t *p)
{
	uint64_t h = 1469598103934665603ULL;
	for (unsigned i = 0; i < PS - 8; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		h = (h ^ w) * 1099511628211ULL;
	}
	return h;
}

/* Page idx of generation gen. */
static inline void stamp(uint8_t *p, uint64_t idx, uint64_t gen)
{
	memcpy(p, &idx, 8);
	memcpy(p + 8, &gen, 8);
	for (unsigned i = 16; i < PS - 8; i += 8) {
		uint64_t w = ps_mix(idx * 1000003 + gen * 7919 + i);
		memcpy(p + i, &w, 8);
	}
	uint64_t h = ps_sum(p);
	memcpy(p + PS - 8, &h, 8);
}

static inline bool is_zero(const uint8_t *p)
{
	for (unsigned i = 0; i < PS; i++)
		if (p[i])
			return false;
	return true;
}

/* A whole stamp of page idx: its generation, or -1 (torn or foreign). */
static inline int64_t stamp_gen(const uint8_t *p, uint64_t idx)
{
	uint64_t i, g, h;
	memcpy(&i, p, 8);
	memcpy(&g, p + 8, 8);
	memcpy(&h, p + PS - 8, 8);
	return i == idx && h == ps_sum(p) ? (int64_t)g : -1;
}

/* A whole page: the stamp of idx (any generation), or zeros. */
static inline bool whole(const uint8_t *p, uint64_t idx)
{
	return stamp_gen(p, idx) >= 0 || is_zero(p);
}

/* The seed of a randomised test: $MFD_TEST_SEED, else the time; printed
 * so that a failure can be replayed. */
static inline uint64_t ps_seed(void)
{
	const char *e = getenv("MFD_TEST_SEED");
	uint64_t v = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL);
	fprintf(stderr, "MFD_TEST_SEED=%llu\n", (unsigned long long)v);
	return v;
}

#endif
