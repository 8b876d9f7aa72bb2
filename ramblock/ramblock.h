/* SPDX-License-Identifier: MIT */
/*
 * Guest RAM blocks, their dirty bitmaps, and the RAM scanner.
 *
 * Each block has two bitmaps of one bit per page:
 *  - log: where writers report dirty pages (atomic OR, any thread);
 *  - dirty: the migration's own copy, owned by the migration thread alone.
 * A dirty sync moves log into dirty (word by word, atomic exchange with 0),
 * and the scanner test-and-clears dirty to build page batches. A write that
 * races with a sync lands in the next round: never lost, at most sent twice.
 */
#ifndef MULTIFD_RAMBLOCK_H
#define MULTIFD_RAMBLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mfd__bitmap {
	uint64_t *words;
	uint64_t nbits;
	uint64_t nwords;
};

/* Allocates a zeroed bitmap; 0 or -ENOMEM. */
int mfd__bitmap_init(struct mfd__bitmap *b, uint64_t nbits);
void mfd__bitmap_destroy(struct mfd__bitmap *b);

/* Atomic (any thread). */
static inline void mfd__bitmap_set_atomic(struct mfd__bitmap *b, uint64_t i)
{
	/* Release: whoever harvests the bit (acquire) also sees the write to
	 * the page that the caller made before marking it. */
	__atomic_fetch_or(&b->words[i >> 6], 1ULL << (i & 63),
			  __ATOMIC_RELEASE);
}
/* Sets bits [start, start+n) atomically, a word at a time. */
void mfd__bitmap_set_range_atomic(struct mfd__bitmap *b, uint64_t start,
				  uint64_t n);

/* Non-atomic (owner thread only). */
static inline bool mfd__bitmap_test(const struct mfd__bitmap *b, uint64_t i)
{
	return (b->words[i >> 6] >> (i & 63)) & 1;
}
static inline void mfd__bitmap_set(struct mfd__bitmap *b, uint64_t i)
{
	b->words[i >> 6] |= 1ULL << (i & 63);
}
void mfd__bitmap_fill(struct mfd__bitmap *b);  /* all nbits set */
void mfd__bitmap_clear(struct mfd__bitmap *b); /* all zero */
uint64_t mfd__bitmap_count(const struct mfd__bitmap *b);
/* Bits set in [start, start + n) (clipped to nbits). */
uint64_t mfd__bitmap_count_range(const struct mfd__bitmap *b, uint64_t start,
				 uint64_t n);
/* First set bit >= from, or nbits when there is none (word-at-a-time). */
uint64_t mfd__bitmap_find_next(const struct mfd__bitmap *b, uint64_t from);
/*
 * dst |= src, taking src's words with an atomic exchange against 0 so that
 * concurrent atomic sets on src are either harvested now or kept for the
 * next call. Returns the number of bits set in dst afterwards. Both bitmaps
 * have the same nbits.
 */
uint64_t mfd__bitmap_harvest(struct mfd__bitmap *dst, struct mfd__bitmap *src);

struct mfd__ramblock {
	char name[256];
	uint8_t *host;
	uint64_t size;
	uint32_t page_size;
	uint32_t page_shift;
	uint64_t npages;
	struct mfd__bitmap dirty; /* migration thread only */
	struct mfd__bitmap log;	  /* atomic, any thread */
};

/*
 * Checks name (1..255 bytes), page_size (power of two, 4 KiB..1 GiB), size
 * (non-zero multiple of page_size), host (non-NULL, page-size aligned
 * is not required) and allocates both bitmaps. -EINVAL or -ENOMEM.
 */
int mfd__ramblock_init(struct mfd__ramblock *rb, const char *name, void *host,
		       uint64_t size, uint32_t page_size);
void mfd__ramblock_destroy(struct mfd__ramblock *rb);

/* Marks [offset, offset+len) dirty in log (pages partly covered count). */
int mfd__ramblock_mark_dirty(struct mfd__ramblock *rb, uint64_t offset,
			     uint64_t len);

/*
 * The scanner walks the dirty bitmaps of all blocks in order and returns
 * batches of up to max_pages page offsets (bytes) of one block, clearing
 * each bit it emits. One pass = one round.
 */
struct mfd__scanner {
	struct mfd__ramblock *blocks;
	unsigned nblocks;
	unsigned max_pages;
	unsigned cur_block; /* position of the pass */
	uint64_t cur_page;
};

void mfd__scanner_init(struct mfd__scanner *s, struct mfd__ramblock *blocks,
		       unsigned nblocks, unsigned max_pages);
/* Start a new pass from the first page of the first block. */
void mfd__scanner_rewind(struct mfd__scanner *s);
/*
 * Next batch: writes up to max_pages ascending offsets of block *block into
 * offsets[] and returns how many; 0 when the pass is complete. Batches never
 * cross a block.
 */
unsigned mfd__scanner_next(struct mfd__scanner *s, unsigned *block,
			   uint64_t *offsets);

#endif /* MULTIFD_RAMBLOCK_H */
