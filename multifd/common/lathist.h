/* SPDX-License-Identifier: MIT */
/*
 * A latency histogram in powers of two of microseconds, as QEMU 10.1's
 * postcopy-latency-dist: bucket 0 holds [0, 2) µs, bucket i >= 1 holds
 * [2^i, 2^(i+1)) µs, the last bucket everything above. Adds are atomic
 * (any thread); a reader sees each counter whole, not all of them at one
 * instant.
 */
#ifndef MULTIFD_COMMON_LATHIST_H
#define MULTIFD_COMMON_LATHIST_H

#include <stdint.h>

#define MFD_LATHIST_BUCKETS 32

struct mfd__lathist {
	uint64_t bucket[MFD_LATHIST_BUCKETS];
	uint64_t count, sum_ns, max_ns;
};

/* The bucket of a latency of ns nanoseconds. */
unsigned mfd__lathist_bucket(uint64_t ns);
void mfd__lathist_add(struct mfd__lathist *h, uint64_t ns);
/*
 * The q-quantile (0 < q <= 1), in ns: the upper bound of the bucket that
 * holds it, capped at the largest latency seen (so p100 is the max): an
 * estimate from above, within a factor of two. 0 when empty.
 */
uint64_t mfd__lathist_quantile(const struct mfd__lathist *h, double q);

#endif /* MULTIFD_COMMON_LATHIST_H */
