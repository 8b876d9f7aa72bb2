/* SPDX-License-Identifier: MIT */
/*
 * The RAM scanner against a reference: every dirty page exactly once per
 * pass, in batches of one block, ascending, page-aligned, bounded.
 *
 * Randomised tests print their seed; MFD_TEST_SEED=<n> replays one.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "ramblock/ramblock.h"

#define UNUSED __attribute__((unused))

static uint64_t seed;
static char guest; /* the scanner never touches memory: any host will do */

static uint64_t rnd_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

struct layout {
	uint32_t page_size;
	uint64_t npages;
};

/* Different page sizes; most sizes not a multiple of 64 pages. */
static const struct layout mixed[] = {
	{ 4096, 1000 },	 { 2u << 20, 77 }, { 4096, 1 },
	{ 65536, 4097 }, { 4096, 64 },	   { 1u << 30, 3 },
	{ 4096, 130 },	 { 2u << 20, 1 },  { 4096, 3 * 64 + 63 },
};
#define NMIXED (sizeof(mixed) / sizeof(mixed[0]))

static void blocks_init(struct mfd__ramblock *rb, const struct layout *l,
			unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		char name[32];

		snprintf(name, sizeof(name), "block%u", i);
		assert_int_equal(
			mfd__ramblock_init(&rb[i], name, &guest,
					   l[i].npages * l[i].page_size,
					   l[i].page_size),
			0);
		assert_int_equal(rb[i].npages, l[i].npages);
	}
}

static void blocks_destroy(struct mfd__ramblock *rb, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		mfd__ramblock_destroy(&rb[i]);
}

static void random_dirty(struct mfd__ramblock *rb, unsigned n, uint64_t *st,
			 unsigned density)
{
	for (unsigned i = 0; i < n; i++) {
		mfd__bitmap_clear(&rb[i].dirty);
		for (uint64_t p = 0; p < rb[i].npages; p++)
			if ((rnd_next(st) & 255) < density)
				mfd__bitmap_set(&rb[i].dirty, p);
	}
}

/* want[i] = copy of rb[i].dirty */
static void snapshot(struct mfd__bitmap *want, struct mfd__ramblock *rb,
		     unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(mfd__bitmap_init(&want[i], rb[i].npages), 0);
		memcpy(want[i].words, rb[i].dirty.words,
		       rb[i].dirty.nwords * sizeof(uint64_t));
	}
}

static void bitmaps_destroy(struct mfd__bitmap *b, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		mfd__bitmap_destroy(&b[i]);
}

/*
 * Checks one batch against the pass so far: want holds pages that must
 * still come in this pass (cleared as they do), pos[] the next page each
 * block may emit.
 */
static void check_batch(struct mfd__scanner *s, unsigned block,
			const uint64_t *off, unsigned n,
			struct mfd__bitmap *want, uint64_t *pos,
			unsigned *last_block)
{
	struct mfd__ramblock *rb;

	assert_in_range(n, 1, s->max_pages);
	assert_in_range(block, 0, s->nblocks - 1);
	/* Blocks in order: never back to an earlier one within a pass. */
	assert_true(block >= *last_block);
	*last_block = block;
	rb = &s->blocks[block];
	for (unsigned k = 0; k < n; k++) {
		uint64_t page = off[k] >> rb->page_shift;

		if (off[k] & (rb->page_size - 1))
			fail_msg("block %u: offset %#" PRIx64 " unaligned",
				 block, off[k]);
		if (off[k] >= rb->size)
			fail_msg("block %u: offset %#" PRIx64 " past the end",
				 block, off[k]);
		/* Ascending within the batch and across batches. */
		if (page < pos[block])
			fail_msg("block %u: page %" PRIu64
				 " not ascending (expected >= %" PRIu64 ")",
				 block, page, pos[block]);
		pos[block] = page + 1;
		if (!mfd__bitmap_test(&want[block], page))
			fail_msg("block %u: page %" PRIu64
				 " emitted but not dirty (or twice)",
				 block, page);
		want[block].words[page >> 6] &= ~(1ULL << (page & 63));
		assert_false(mfd__bitmap_test(&rb->dirty, page));
	}
}

/*
 * Runs the rest of a pass and checks it emits exactly want; returns the
 * number of batches.
 */
static unsigned run_pass(struct mfd__scanner *s, struct mfd__bitmap *want)
{
	uint64_t *off = calloc(s->max_pages, sizeof(uint64_t));
	uint64_t *pos = calloc(s->nblocks ? s->nblocks : 1, sizeof(uint64_t));
	unsigned block, n, batches = 0, last_block = 0, prev_n = 0;
	unsigned prev_block = 0;

	assert_non_null(off);
	assert_non_null(pos);
	while ((n = mfd__scanner_next(s, &block, off)) != 0) {
		/*
		 * Only the last batch of a block may be short: the packets
		 * go out as full as the bitmap allows.
		 */
		if (batches && prev_n < s->max_pages)
			assert_true(block != prev_block);
		check_batch(s, block, off, n, want, pos, &last_block);
		prev_n = n;
		prev_block = block;
		batches++;
	}
	for (unsigned i = 0; i < s->nblocks; i++) {
		assert_int_equal(mfd__bitmap_count(&want[i]), 0);
		assert_int_equal(mfd__bitmap_count(&s->blocks[i].dirty), 0);
	}
	/* A complete pass stays complete until rewound. */
	assert_int_equal(mfd__scanner_next(s, &block, off), 0);
	free(off);
	free(pos);
	return batches;
}

static void test_random_passes(UNUSED void **state)
{
	static const unsigned maxes[] = { 1, 7, 63, 64, 65, 100, 128, 1024 };
	static const unsigned dens[] = { 0, 1, 16, 128, 240, 256 };
	uint64_t st = seed ^ 0x5ca;
	struct mfd__ramblock rb[NMIXED];
	struct mfd__bitmap want[NMIXED];
	struct mfd__scanner s;

	blocks_init(rb, mixed, NMIXED);
	for (size_t m = 0; m < sizeof(maxes) / sizeof(maxes[0]); m++) {
		mfd__scanner_init(&s, rb, NMIXED, maxes[m]);
		for (size_t d = 0; d < sizeof(dens) / sizeof(dens[0]); d++) {
			for (int iter = 0; iter < 3; iter++) {
				random_dirty(rb, NMIXED, &st, dens[d]);
				snapshot(want, rb, NMIXED);
				mfd__scanner_rewind(&s);
				run_pass(&s, want);
				bitmaps_destroy(want, NMIXED);
			}
		}
	}
	blocks_destroy(rb, NMIXED);
}

/* Fully dirty: batches are exactly max_pages except each block's last. */
static void test_full(UNUSED void **state)
{
	static const unsigned maxes[] = { 1, 64, 100, 128, 1024 };
	struct mfd__ramblock rb[NMIXED];
	struct mfd__bitmap want[NMIXED];
	struct mfd__scanner s;

	blocks_init(rb, mixed, NMIXED);
	for (size_t m = 0; m < sizeof(maxes) / sizeof(maxes[0]); m++) {
		unsigned batches, expect = 0;

		for (unsigned i = 0; i < NMIXED; i++) {
			mfd__bitmap_fill(&rb[i].dirty);
			expect += (unsigned)((rb[i].npages + maxes[m] - 1) /
					     maxes[m]);
		}
		snapshot(want, rb, NMIXED);
		mfd__scanner_init(&s, rb, NMIXED, maxes[m]);
		batches = run_pass(&s, want);
		assert_int_equal(batches, expect);
		bitmaps_destroy(want, NMIXED);
	}
	blocks_destroy(rb, NMIXED);
}

static void test_empty(UNUSED void **state)
{
	struct mfd__ramblock rb[NMIXED];
	struct mfd__scanner s;
	uint64_t off[16];
	unsigned block = 12345;

	blocks_init(rb, mixed, NMIXED);
	mfd__scanner_init(&s, rb, NMIXED, 16);
	assert_int_equal(mfd__scanner_next(&s, &block, off), 0);
	assert_int_equal(block, 12345); /* untouched */
	assert_int_equal(mfd__scanner_next(&s, &block, off), 0);
	mfd__scanner_rewind(&s);
	assert_int_equal(mfd__scanner_next(&s, &block, off), 0);

	/* No blocks at all. */
	mfd__scanner_init(&s, NULL, 0, 16);
	assert_int_equal(mfd__scanner_next(&s, &block, off), 0);
	blocks_destroy(rb, NMIXED);
}

/* Exact offsets for a hand-made pattern. */
static void test_exact(UNUSED void **state)
{
	static const struct layout l[] = { { 4096, 200 }, { 2u << 20, 10 } };
	struct mfd__ramblock rb[2];
	struct mfd__scanner s;
	uint64_t off[4];
	unsigned block;

	blocks_init(rb, l, 2);
	mfd__bitmap_set(&rb[0].dirty, 0);
	mfd__bitmap_set(&rb[0].dirty, 63);
	mfd__bitmap_set(&rb[0].dirty, 64);
	mfd__bitmap_set(&rb[0].dirty, 199);
	mfd__bitmap_set(&rb[0].dirty, 150);
	mfd__bitmap_set(&rb[1].dirty, 9);
	mfd__scanner_init(&s, rb, 2, 4);

	assert_int_equal(mfd__scanner_next(&s, &block, off), 4);
	assert_int_equal(block, 0);
	assert_int_equal(off[0], 0);
	assert_int_equal(off[1], 63 * 4096);
	assert_int_equal(off[2], 64 * 4096);
	assert_int_equal(off[3], 150 * 4096);
	assert_int_equal(mfd__scanner_next(&s, &block, off), 1);
	assert_int_equal(block, 0);
	assert_int_equal(off[0], 199 * 4096);
	assert_int_equal(mfd__scanner_next(&s, &block, off), 1);
	assert_int_equal(block, 1);
	assert_int_equal(off[0], 9ULL << 21);
	assert_int_equal(mfd__scanner_next(&s, &block, off), 0);
	blocks_destroy(rb, 2);
}

/* Bits past npages in the last word (a careless hook) are never emitted. */
static void test_tail_bits_ignored(UNUSED void **state)
{
	static const struct layout l[] = { { 4096, 70 } };
	struct mfd__ramblock rb[1];
	struct mfd__scanner s;
	uint64_t off[64];
	unsigned block;

	blocks_init(rb, l, 1);
	rb[0].dirty.words[1] = ~0ULL; /* pages 64..69 and 58 bogus bits */
	mfd__scanner_init(&s, rb, 1, 64);
	assert_int_equal(mfd__scanner_next(&s, &block, off), 6);
	assert_int_equal(off[5], 69 * 4096);
	assert_int_equal(mfd__scanner_next(&s, &block, off), 0);
	blocks_destroy(rb, 1);
}

static void test_max_pages_zero(UNUSED void **state)
{
	static const struct layout l[] = { { 4096, 10 } };
	struct mfd__ramblock rb[1];
	struct mfd__scanner s;
	uint64_t off[1];
	unsigned block;

	blocks_init(rb, l, 1);
	mfd__bitmap_fill(&rb[0].dirty);
	mfd__scanner_init(&s, rb, 1, 0); /* treated as 1 */
	for (int i = 0; i < 10; i++)
		assert_int_equal(mfd__scanner_next(&s, &block, off), 1);
	assert_int_equal(mfd__scanner_next(&s, &block, off), 0);
	blocks_destroy(rb, 1);
}

/*
 * Bits set again mid-pass: ahead of the scanner they are emitted in this
 * pass, behind it in the next one.
 */
static void test_redirty_mid_pass(UNUSED void **state)
{
	/* Block 1 has more dirty pages than a batch: the scanner stays. */
	static const struct layout l[] = { { 4096, 300 },
					   { 65536, 5000 },
					   { 2u << 20, 90 } };
	static const unsigned maxes[] = { 1, 8, 64, 100, 1024 };
	uint64_t st = seed ^ 0x3d;

	for (size_t m = 0; m < sizeof(maxes) / sizeof(maxes[0]); m++) {
		for (int iter = 0; iter < 20; iter++) {
			struct mfd__ramblock rb[3];
			struct mfd__bitmap want[3], next[3];
			struct mfd__scanner s;
			uint64_t *off = calloc(maxes[m], sizeof(uint64_t));
			uint64_t pos[3] = { 0, 0, 0 };
			unsigned block, n, last_block = 0;
			uint64_t cur;

			assert_non_null(off);
			blocks_init(rb, l, 3);
			random_dirty(rb, 3, &st, iter % 2 ? 80 : 250);
			mfd__bitmap_set(&rb[1].dirty, l[1].npages - 1);
			assert_true(mfd__bitmap_count(&rb[1].dirty) > maxes[m]);
			snapshot(want, rb, 3);
			for (int i = 0; i < 3; i++)
				assert_int_equal(
					mfd__bitmap_init(&next[i], l[i].npages),
					0);
			mfd__scanner_init(&s, rb, 3, maxes[m]);

			/* Run until the first batch of block 1. */
			do {
				n = mfd__scanner_next(&s, &block, off);
				assert_int_not_equal(n, 0);
				check_batch(&s, block, off, n, want, pos,
					    &last_block);
			} while (block != 1);
			/* The first page block 1 has not emitted yet. */
			cur = pos[1];

			/* Behind: all of block 0, and block 1 below cur. */
			for (int k = 0; k < 10; k++) {
				uint64_t p0 = rnd_next(&st) % l[0].npages;
				uint64_t p1 = rnd_next(&st) % cur;

				mfd__bitmap_set(&rb[0].dirty, p0);
				mfd__bitmap_set(&next[0], p0);
				mfd__bitmap_set(&rb[1].dirty, p1);
				mfd__bitmap_set(&next[1], p1);
			}
			/* Ahead: block 1 from cur on, and block 2. */
			for (int k = 0; k < 10; k++) {
				uint64_t p1 = cur + rnd_next(&st) %
							    (l[1].npages - cur);
				uint64_t p2 = rnd_next(&st) % l[2].npages;

				mfd__bitmap_set(&rb[1].dirty, p1);
				mfd__bitmap_set(&want[1], p1);
				mfd__bitmap_set(&rb[2].dirty, p2);
				mfd__bitmap_set(&want[2], p2);
			}
			/* The rest of this pass: the ahead pages only. */
			while ((n = mfd__scanner_next(&s, &block, off)) != 0)
				check_batch(&s, block, off, n, want, pos,
					    &last_block);
			for (int i = 0; i < 3; i++)
				assert_int_equal(mfd__bitmap_count(&want[i]),
						 0);

			/* Next pass: exactly the behind pages. */
			mfd__scanner_rewind(&s);
			run_pass(&s, next);

			free(off);
			bitmaps_destroy(want, 3);
			bitmaps_destroy(next, 3);
			blocks_destroy(rb, 3);
		}
	}
}

/* Rewind mid-pass: what was emitted stays clear, the rest still comes. */
static void test_rewind_mid_pass(UNUSED void **state)
{
	uint64_t st = seed ^ 0x77;
	struct mfd__ramblock rb[NMIXED];
	struct mfd__bitmap want[NMIXED];
	struct mfd__scanner s;
	uint64_t off[50], pos[NMIXED] = { 0 };
	unsigned block, n, last_block = 0;

	blocks_init(rb, mixed, NMIXED);
	random_dirty(rb, NMIXED, &st, 200);
	snapshot(want, rb, NMIXED);
	mfd__scanner_init(&s, rb, NMIXED, 50);
	for (int k = 0; k < 30; k++) {
		n = mfd__scanner_next(&s, &block, off);
		assert_int_not_equal(n, 0);
		check_batch(&s, block, off, n, want, pos, &last_block);
	}
	mfd__scanner_rewind(&s);
	assert_int_equal(s.cur_block, 0);
	assert_int_equal(s.cur_page, 0);
	run_pass(&s, want);
	bitmaps_destroy(want, NMIXED);
	blocks_destroy(rb, NMIXED);
}

/* Many passes with writers' log harvested in between, as the engine does. */
static void test_rounds_with_harvest(UNUSED void **state)
{
	uint64_t st = seed ^ 0x99;
	struct mfd__ramblock rb[NMIXED];
	struct mfd__bitmap want[NMIXED];
	struct mfd__scanner s;

	blocks_init(rb, mixed, NMIXED);
	for (unsigned i = 0; i < NMIXED; i++)
		mfd__bitmap_fill(&rb[i].dirty);
	mfd__scanner_init(&s, rb, NMIXED, 128);
	for (int round = 0; round < 10; round++) {
		if (round) {
			for (unsigned i = 0; i < NMIXED; i++) {
				uint64_t off = rnd_next(&st) % rb[i].size;
				uint64_t len =
					rnd_next(&st) % (rb[i].size - off + 1);

				assert_int_equal(mfd__ramblock_mark_dirty(
							 &rb[i], off, len),
						 0);
				mfd__bitmap_harvest(&rb[i].dirty, &rb[i].log);
			}
		}
		snapshot(want, rb, NMIXED);
		mfd__scanner_rewind(&s);
		run_pass(&s, want);
		bitmaps_destroy(want, NMIXED);
	}
	blocks_destroy(rb, NMIXED);
}

/* ---- ramblock ---- */

static void test_ramblock_init_checks(UNUSED void **state)
{
	struct mfd__ramblock rb;
	char name[300];

	memset(name, 'a', sizeof(name));
	name[255] = 0;
	assert_int_equal(mfd__ramblock_init(&rb, name, &guest, 8192, 4096), 0);
	assert_string_equal(rb.name, name);
	assert_int_equal(rb.npages, 2);
	assert_int_equal(rb.page_shift, 12);
	assert_int_equal(mfd__bitmap_count(&rb.dirty), 0);
	assert_int_equal(mfd__bitmap_count(&rb.log), 0);
	mfd__ramblock_destroy(&rb);
	mfd__ramblock_destroy(&rb); /* twice is harmless */

	name[255] = 'a';
	name[256] = 0;
	assert_int_equal(mfd__ramblock_init(&rb, name, &guest, 8192, 4096),
			 -EINVAL);  /* 256 bytes */
	mfd__ramblock_destroy(&rb); /* safe after a failed init */
	assert_int_equal(mfd__ramblock_init(&rb, "", &guest, 8192, 4096),
			 -EINVAL);
	assert_int_equal(mfd__ramblock_init(&rb, NULL, &guest, 8192, 4096),
			 -EINVAL);
	assert_int_equal(mfd__ramblock_init(&rb, "x", NULL, 8192, 4096),
			 -EINVAL);
	assert_int_equal(mfd__ramblock_init(&rb, "x", &guest, 0, 4096),
			 -EINVAL);
	assert_int_equal(mfd__ramblock_init(&rb, "x", &guest, 4096 + 512, 4096),
			 -EINVAL);
	assert_int_equal(mfd__ramblock_init(&rb, "x", &guest, 8192, 2048),
			 -EINVAL);
	assert_int_equal(
		mfd__ramblock_init(&rb, "x", &guest, 3 * 8192, 3 * 4096),
		-EINVAL);
	assert_int_equal(
		mfd__ramblock_init(&rb, "x", &guest, 1ULL << 32, 1U << 31),
		-EINVAL);
	assert_int_equal(mfd__ramblock_init(&rb, "x", &guest, 0, 0), -EINVAL);
	assert_int_equal(mfd__ramblock_init(NULL, "x", &guest, 8192, 4096),
			 -EINVAL);
	/* host alignment is not required */
	assert_int_equal(
		mfd__ramblock_init(&rb, "x", &guest + 1, 1ULL << 30, 1U << 30),
		0);
	assert_int_equal(rb.npages, 1);
	assert_int_equal(rb.page_shift, 30);
	mfd__ramblock_destroy(&rb);
}

static void test_mark_dirty(UNUSED void **state)
{
	struct mfd__ramblock rb;
	const uint64_t ps = 4096, np = 130;

	assert_int_equal(mfd__ramblock_init(&rb, "ram", &guest, np * ps, ps),
			 0);
	/* len 0: nothing, wherever it points */
	assert_int_equal(mfd__ramblock_mark_dirty(&rb, 0, 0), 0);
	assert_int_equal(mfd__ramblock_mark_dirty(&rb, UINT64_MAX, 0), 0);
	assert_int_equal(mfd__bitmap_count(&rb.log), 0);

	/* Partly covered pages count. */
	assert_int_equal(mfd__ramblock_mark_dirty(&rb, ps - 1, 2), 0);
	assert_true(mfd__bitmap_test(&rb.log, 0));
	assert_true(mfd__bitmap_test(&rb.log, 1));
	assert_int_equal(mfd__bitmap_count(&rb.log), 2);
	mfd__bitmap_clear(&rb.log);

	assert_int_equal(mfd__ramblock_mark_dirty(&rb, 5, 1), 0);
	assert_int_equal(mfd__bitmap_find_next(&rb.log, 0), 0);
	assert_int_equal(mfd__bitmap_count(&rb.log), 1);
	mfd__bitmap_clear(&rb.log);

	/* The whole block, and its last byte. */
	assert_int_equal(mfd__ramblock_mark_dirty(&rb, 0, np * ps), 0);
	assert_int_equal(mfd__bitmap_count(&rb.log), np);
	mfd__bitmap_clear(&rb.log);
	assert_int_equal(mfd__ramblock_mark_dirty(&rb, np * ps - 1, 1), 0);
	assert_int_equal(mfd__bitmap_find_next(&rb.log, 0), np - 1);
	assert_int_equal(mfd__bitmap_count(&rb.log), 1);
	mfd__bitmap_clear(&rb.log);

	/* Pages 63..65: across a word boundary. */
	assert_int_equal(mfd__ramblock_mark_dirty(&rb, 63 * ps + 100, 2 * ps),
			 0);
	assert_int_equal(mfd__bitmap_count(&rb.log), 3);
	assert_true(mfd__bitmap_test(&rb.log, 63));
	assert_true(mfd__bitmap_test(&rb.log, 65));
	mfd__bitmap_clear(&rb.log);

	/* Beyond the block, including wrap-around. */
	assert_int_equal(mfd__ramblock_mark_dirty(&rb, np * ps, 1), -ERANGE);
	assert_int_equal(mfd__ramblock_mark_dirty(&rb, 0, np * ps + 1),
			 -ERANGE);
	assert_int_equal(mfd__ramblock_mark_dirty(&rb, ps, np * ps), -ERANGE);
	assert_int_equal(mfd__ramblock_mark_dirty(&rb, ps, UINT64_MAX),
			 -ERANGE);
	assert_int_equal(mfd__ramblock_mark_dirty(&rb, UINT64_MAX, 2), -ERANGE);
	assert_int_equal(mfd__bitmap_count(&rb.log), 0);
	/* The dirty bitmap belongs to the migration thread: untouched. */
	assert_int_equal(mfd__bitmap_count(&rb.dirty), 0);
	mfd__ramblock_destroy(&rb);
}

int main(void)
{
	const char *env = getenv("MFD_TEST_SEED");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ramblock_init_checks),
		cmocka_unit_test(test_mark_dirty),
		cmocka_unit_test(test_exact),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_tail_bits_ignored),
		cmocka_unit_test(test_max_pages_zero),
		cmocka_unit_test(test_random_passes),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_redirty_mid_pass),
		cmocka_unit_test(test_rewind_mid_pass),
		cmocka_unit_test(test_rounds_with_harvest),
	};

	seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
	printf("test_scanner: seed %" PRIu64 " (MFD_TEST_SEED=%" PRIu64
	       " to replay)\n",
	       seed, seed);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
