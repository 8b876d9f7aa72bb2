/* SPDX-License-Identifier: MIT */
/* Latency histogram in powers of two of microseconds (lathist.h). */
#include <stdbool.h>

#include "multifd/common/lathist.h"

unsigned mfd__lathist_bucket(uint64_t ns)
{
	uint64_t us = ns / 1000;
	if (us < 2)
		return 0;
	unsigned b = 63u - (unsigned)__builtin_clzll(us);
	return b < MFD_LATHIST_BUCKETS ? b : MFD_LATHIST_BUCKETS - 1;
}

unsigned mfd__lathist_fine(uint64_t ns)
{
	uint64_t us = ns / 1000;
	if (us < 16)
		return (unsigned)us;
	unsigned o = 63u - (unsigned)__builtin_clzll(us); /* >= 4 */
	unsigned i = 16 + (o - 4) * 8 + (unsigned)((us >> (o - 3)) & 7);
	return i < MFD_LATHIST_FINE ? i : MFD_LATHIST_FINE - 1;
}

uint64_t mfd__lathist_fine_top_us(unsigned i)
{
	if (i < 16)
		return i + 1;
	unsigned o = 4 + (i - 16) / 8, sub = (i - 16) % 8;
	return (uint64_t)(8 + sub + 1) << (o - 3);
}

void mfd__lathist_add(struct mfd__lathist *h, uint64_t ns)
{
	__atomic_fetch_add(&h->bucket[mfd__lathist_bucket(ns)], 1,
			   __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->fine[mfd__lathist_fine(ns)], 1,
			   __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->count, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->sum_ns, ns, __ATOMIC_RELAXED);
	uint64_t max = __atomic_load_n(&h->max_ns, __ATOMIC_RELAXED);
	while (ns > max &&
	       !__atomic_compare_exchange_n(&h->max_ns, &max, ns, true,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

uint64_t mfd__lathist_quantile(const struct mfd__lathist *h, double q)
{
	uint64_t n[MFD_LATHIST_FINE], total = 0;
	for (unsigned i = 0; i < MFD_LATHIST_FINE; i++) {
		n[i] = __atomic_load_n(&h->fine[i], __ATOMIC_RELAXED);
		total += n[i];
	}
	if (!total || q <= 0)
		return 0;
	uint64_t max = __atomic_load_n(&h->max_ns, __ATOMIC_RELAXED);
	/* The rank of the quantile, 1-based, rounded up. */
	double want = q * (double)total;
	uint64_t rank = (uint64_t)want + ((double)(uint64_t)want < want);
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < MFD_LATHIST_FINE; i++) {
		seen += n[i];
		if (seen >= rank) {
			uint64_t top =
				i == MFD_LATHIST_FINE - 1
					? max
					: mfd__lathist_fine_top_us(i) * 1000;
			return top < max ? top : max;
		}
	}
	return max;
}
