/* SPDX-License-Identifier: MIT */
/*
 * The RAM scanner: turns the dirty bits of each block into batches of page
 * offsets, a bitmap word at a time. It runs on the migration thread, which
 * owns the dirty bitmaps, so clearing the emitted bits needs no atomics.
 *
 * The position (cur_block, cur_page) is the first page not yet examined in
 * this pass: a bit set at or after it is still emitted in this pass, a bit
 * set before it waits for the next pass.
 */
#include "ramblock/ramblock.h"

void mfd__scanner_init(struct mfd__scanner *s, struct mfd__ramblock *blocks,
		       unsigned nblocks, unsigned max_pages)
{
	s->blocks = blocks;
	s->nblocks = blocks ? nblocks : 0;
	/* A batch of 0 pages would read as "pass complete". */
	s->max_pages = max_pages ? max_pages : 1;
	mfd__scanner_rewind(s);
}

void mfd__scanner_rewind(struct mfd__scanner *s)
{
	s->cur_block = 0;
	s->cur_page = 0;
}

/*
 * Emits up to max pages of rb from s->cur_page into offsets[] and advances
 * s->cur_page. Returns the count; when the block has no more dirty pages,
 * s->cur_page ends at npages.
 */
static unsigned scan_block(struct mfd__scanner *s, struct mfd__ramblock *rb,
			   uint64_t *offsets)
{
	struct mfd__bitmap *b = &rb->dirty;
	const uint32_t shift = rb->page_shift;
	/* A packet's payload length is 32 bits: with 1 GiB pages at most 3
	 * pages fit, whatever packet-pages says. */
	const unsigned max = (uint64_t)s->max_pages << shift > UINT32_MAX
				     ? (unsigned)(UINT32_MAX >> shift)
				     : s->max_pages;
	uint64_t i, w;
	unsigned n = 0;

	if (s->cur_page >= b->nbits) {
		s->cur_page = b->nbits;
		return 0;
	}
	i = s->cur_page >> 6;
	w = b->words[i] & (~0ULL << (s->cur_page & 63));
	for (;;) {
		/* Never trust tail bits: they would be pages past the end. */
		if (i == b->nwords - 1 && (b->nbits & 63))
			w &= (1ULL << (b->nbits & 63)) - 1;
		if (w) {
			uint64_t base = i << 6, taken, page = 0;

			if (w == ~0ULL && max - n >= 64) {
				/* A fully dirty word: no per-bit search. */
				uint64_t off = base << shift;

				for (unsigned j = 0; j < 64; j++)
					offsets[n + j] =
						off + ((uint64_t)j << shift);
				n += 64;
				taken = ~0ULL;
				page = base + 63;
			} else {
				taken = 0;
				while (w && n < max) {
					unsigned bit =
						(unsigned)__builtin_ctzll(w);

					w &= w - 1;
					taken |= 1ULL << bit;
					page = base + bit;
					offsets[n++] = page << shift;
				}
			}
			b->words[i] &= ~taken;
			if (n == max) {
				s->cur_page = page + 1;
				return n;
			}
		}
		if (++i >= b->nwords)
			break;
		w = b->words[i];
	}
	s->cur_page = b->nbits;
	return n;
}

unsigned mfd__scanner_next(struct mfd__scanner *s, unsigned *block,
			   uint64_t *offsets)
{
	while (s->cur_block < s->nblocks) {
		unsigned idx = s->cur_block;
		struct mfd__ramblock *rb = &s->blocks[idx];
		unsigned n = scan_block(s, rb, offsets);

		/* Step past an exhausted block now, not on the next call. */
		if (s->cur_page >= rb->npages) {
			s->cur_block++;
			s->cur_page = 0;
		}
		if (n) {
			*block = idx;
			return n;
		}
	}
	return 0;
}
