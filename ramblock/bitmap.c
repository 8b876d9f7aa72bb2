/* SPDX-License-Identifier: MIT */
/*
 * Dirty bitmaps: one bit per page, 64 pages per word.
 *
 * Invariant: the bits of the last word past nbits are always clear, so that
 * count, find_next and the scanner never see a page beyond the block. The
 * non-atomic calls keep it; harvest restores it should an outside writer
 * (a sync_dirty hook) have set a tail bit in src.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ramblock/ramblock.h"

/* Mask of the valid bits of the last word (all ones when nbits % 64 == 0). */
static uint64_t tail_mask(uint64_t nbits)
{
	unsigned r = nbits & 63;

	return r ? (1ULL << r) - 1 : ~0ULL;
}

int mfd__bitmap_init(struct mfd__bitmap *b, uint64_t nbits)
{
	/* Written so that nbits near 2^64 cannot wrap. */
	uint64_t nwords = (nbits >> 6) + !!(nbits & 63);

	if (nwords > SIZE_MAX / sizeof(uint64_t))
		return -ENOMEM;
	/* At least one word so that words is never NULL after success. */
	b->words = calloc(nwords ? nwords : 1, sizeof(uint64_t));
	if (!b->words)
		return -ENOMEM;
	b->nbits = nbits;
	b->nwords = nwords;
	return 0;
}

void mfd__bitmap_destroy(struct mfd__bitmap *b)
{
	free(b->words);
	b->words = NULL;
	b->nbits = 0;
	b->nwords = 0;
}

void mfd__bitmap_set_range_atomic(struct mfd__bitmap *b, uint64_t start,
				  uint64_t n)
{
	uint64_t end, w, last;

	if (!n)
		return;
	end = start + n; /* exclusive; callers keep it <= nbits */
	w = start >> 6;
	last = (end - 1) >> 6;

	/*
	 * Release: a writer that set a page's bit after writing the page
	 * publishes the write to whoever harvests the bit with acquire.
	 */
	if (w == last) {
		uint64_t mask = (~0ULL << (start & 63)) &
				(~0ULL >> (63 - ((end - 1) & 63)));

		__atomic_fetch_or(&b->words[w], mask, __ATOMIC_RELEASE);
		return;
	}
	if (start & 63) {
		__atomic_fetch_or(&b->words[w], ~0ULL << (start & 63),
				  __ATOMIC_RELEASE);
		w++;
	}
	for (; w < last; w++)
		__atomic_fetch_or(&b->words[w], ~0ULL, __ATOMIC_RELEASE);
	__atomic_fetch_or(&b->words[last], ~0ULL >> (63 - ((end - 1) & 63)),
			  __ATOMIC_RELEASE);
}

void mfd__bitmap_fill(struct mfd__bitmap *b)
{
	if (!b->nwords)
		return;
	memset(b->words, 0xff, b->nwords * sizeof(uint64_t));
	b->words[b->nwords - 1] = tail_mask(b->nbits);
}

void mfd__bitmap_clear(struct mfd__bitmap *b)
{
	if (b->nwords)
		memset(b->words, 0, b->nwords * sizeof(uint64_t));
}

uint64_t mfd__bitmap_count(const struct mfd__bitmap *b)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < b->nwords; i++)
		n += (uint64_t)__builtin_popcountll(b->words[i]);
	return n;
}

uint64_t mfd__bitmap_count_range(const struct mfd__bitmap *b, uint64_t start,
				 uint64_t n)
{
	uint64_t end = start + n > b->nbits || start + n < start ? b->nbits
								 : start + n;
	uint64_t c = 0;

	while (start < end) {
		uint64_t w = b->words[start / 64] >> (start % 64);
		uint64_t k = 64 - start % 64;

		if (k > end - start) {
			k = end - start;
			w &= (1ULL << k) - 1;
		}
		c += (uint64_t)__builtin_popcountll(w);
		start += k;
	}
	return c;
}

uint64_t mfd__bitmap_find_next(const struct mfd__bitmap *b, uint64_t from)
{
	uint64_t i, w, bit;

	if (from >= b->nbits)
		return b->nbits;
	i = from >> 6;
	w = b->words[i] & (~0ULL << (from & 63));
	while (!w) {
		if (++i >= b->nwords)
			return b->nbits;
		w = b->words[i];
	}
	bit = (i << 6) + (uint64_t)__builtin_ctzll(w);
	/* A stray tail bit must not name a page past the end. */
	return bit < b->nbits ? bit : b->nbits;
}

uint64_t mfd__bitmap_harvest(struct mfd__bitmap *dst, struct mfd__bitmap *src)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < dst->nwords; i++) {
		uint64_t w = dst->words[i];

		/*
		 * A relaxed look first: most words are zero in a quiet round,
		 * and a locked exchange on them would only bounce cache lines
		 * with the writers. A bit set after this load is taken by the
		 * next harvest. Acquire pairs with the writers' release so
		 * the page writes are visible once the bit is.
		 */
		if (__atomic_load_n(&src->words[i], __ATOMIC_RELAXED))
			w |= __atomic_exchange_n(&src->words[i], 0,
						 __ATOMIC_ACQUIRE);
		if (i == dst->nwords - 1)
			w &= tail_mask(dst->nbits);
		dst->words[i] = w;
		n += (uint64_t)__builtin_popcountll(w);
	}
	return n;
}
