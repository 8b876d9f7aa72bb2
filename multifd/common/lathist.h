/* SPDX-License-Identifier: MIT */
/*
 * A latency histogram in powers of two of microseconds, as QEMU 10.1's
 * postcopy-latency-dist: bucket 0 holds [0, 2) µs, bucket i >= 1 holds
 * [2^i, 2^(i+1)) µs, the last bucket everything above. Beside it a finer
 * one for the quantiles (log-linear: 1 µs wide below 16 µs, then 8
 * buckets an octave, each at most 1/8 of its lower bound wide), so that
 * a p50 of 300 µs reads 320 µs, not 512. Adds are atomic (any thread); a
 * reader sees each counter whole, not all of them at one instant.
 */
#ifndef MULTIFD_COMMON_LATHIST_H
#define MULTIFD_COMMON_LATHIST_H

#include <stdint.h>

#define MFD_LATHIST_BUCKETS 32
/* 16 of 1 µs, then 8 an octave from 16 µs to 2^36 µs, the last one
 * everything above. */
#define MFD_LATHIST_FINE (16 + 32 * 8)

struct mfd__lathist {
	uint64_t bucket[MFD_LATHIST_BUCKETS];
	uint64_t fine[MFD_LATHIST_FINE];
	uint64_t count, sum_ns, max_ns;
};

/* The bucket of a latency of ns nanoseconds. */
unsigned mfd__lathist_bucket(uint64_t ns);
/* Its fine bucket, and the upper bound of fine bucket i in µs. */
unsigned mfd__lathist_fine(uint64_t ns);
uint64_t mfd__lathist_fine_top_us(unsigned i);
void mfd__lathist_add(struct mfd__lathist *h, uint64_t ns);
/*
 * The q-quantile (0 < q <= 1), in ns: the upper bound of the fine bucket
 * that holds it, capped at the largest latency seen (so p100 is the
 * max): an estimate from above, within 1 µs below 16 µs and within 12.5 %
 * above. 0 when empty.
 */
uint64_t mfd__lathist_quantile(const struct mfd__lathist *h, double q);

#endif /* MULTIFD_COMMON_LATHIST_H */
