/* SPDX-License-Identifier: MIT */
/*
 * The source's post-copy bookkeeping (multifd/postcopy_src.c) without
 * sockets: the DISCARD list is exactly the pages dirty at the stop that
 * were sent before, merged into runs and split into messages the
 * destination accepts; the pages to send are those dirty or never sent,
 * and each is claimed exactly once by the urgent lanes (requested pages
 * and neighbours) and the bulk scanner (from the last request on), also
 * when they race; a requested page the bulk claimed is sent again on the
 * lane (not claimed again), one a lane claimed is not.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <pthread.h>
#include <cmocka.h>

#include "multifd/multifd.h"
#include "multifd/postcopy_src.h"

/* Blocks are never touched here: a host address is only a name. */
static void *const NOWHERE = (void *)(uintptr_t)0x10000000;

struct msgs {
	struct mfd__wire_limits lim;
	struct mfd__block_desc desc[2];
	struct mfd__page_range got[256];
	unsigned ngot, nmsg;
	uint32_t sizes[8];
};

static int collect(void *ctx, const uint8_t *p, size_t len)
{
	struct msgs *m = ctx;
	uint32_t n;
	/* What the destination would check first. */
	assert_int_equal(mfd__discard_check(p, len, &m->lim, &n), 0);
	assert_true(m->nmsg < 8);
	m->sizes[m->nmsg++] = n;
	for (uint32_t i = 0; i < n && m->ngot < 256; i++)
		mfd__discard_get(p, i, &m->got[m->ngot++]);
	return 0;
}

static void limits(struct msgs *m, struct mfd__ramblock *rb, unsigned n)
{
	for (unsigned b = 0; b < n; b++) {
		memcpy(m->desc[b].name, rb[b].name, sizeof(m->desc[b].name));
		m->desc[b].name[MFD_MAX_NAME] = '\0';
		m->desc[b].size = rb[b].size;
		m->desc[b].page_size = rb[b].page_size;
	}
	m->lim = (struct mfd__wire_limits){ .nblocks = n,
					    .packet_pages = 128,
					    .blocks = m->desc,
					    .features = MFD_FEAT_POSTCOPY };
}

static void set_range(struct mfd__bitmap *bm, uint64_t a, uint64_t b)
{
	for (uint64_t i = a; i < b; i++)
		mfd__bitmap_set(bm, i);
}

static void test_discard_list(void **state)
{
	(void)state;
	struct mfd__ramblock rb[2];
	struct mfd__pc_src pc;
	static struct msgs m;

	/* 200 pages of 4 KiB; 70 of 8 KiB (a partial last word). */
	assert_int_equal(
		mfd__ramblock_init(&rb[0], "a", NOWHERE, 200 * 4096, 4096), 0);
	assert_int_equal(
		mfd__ramblock_init(&rb[1], "b", NOWHERE, 70 * 8192, 8192), 0);
	limits(&m, rb, 2);
	assert_int_equal(mfd__pc_src_init(&pc, rb, 2), 0);
	/* Pre-copy sent pages 0..149 of a, all of b. */
	uint64_t offs[150];
	for (unsigned i = 0; i < 150; i++)
		offs[i] = (uint64_t)i * 4096;
	mfd__pc_src_sent(&pc, 0, offs, 150);
	for (unsigned i = 0; i < 70; i++)
		offs[i] = (uint64_t)i * 8192;
	mfd__pc_src_sent(&pc, 1, offs, 70);
	/* Dirty at the stop. */
	set_range(&rb[0].dirty, 5, 8);
	set_range(&rb[0].dirty, 63, 66); /* across a word boundary */
	set_range(&rb[0].dirty, 140, 161);
	set_range(&rb[1].dirty, 0, 1);
	set_range(&rb[1].dirty, 69, 70);

	int64_t left = mfd__pc_src_switch(&pc, collect, &m);
	/* a: 5..7, 63..65, 140..199 (dirty or never sent); b: 0, 69. */
	assert_int_equal(left, 3 + 3 + 60 + 2);
	assert_int_equal(mfd__pc_src_left(&pc), left);
	assert_int_equal(m.nmsg, 1);
	const struct mfd__page_range want[] = {
		{ 0, 5 * 4096, 3 * 4096 },
		{ 0, 63 * 4096, 3 * 4096 },
		{ 0, 140 * 4096, 10 * 4096 }, /* 150..160 never sent */
		{ 1, 0, 8192 },
		{ 1, 69 * 8192, 8192 },
	};
	assert_int_equal(m.ngot, 5);
	for (unsigned i = 0; i < 5; i++) {
		assert_int_equal(m.got[i].block, want[i].block);
		assert_int_equal(m.got[i].offset, want[i].offset);
		assert_int_equal(m.got[i].length, want[i].length);
	}
	/* The dirty bitmaps are consumed. */
	assert_int_equal(mfd__bitmap_count(&rb[0].dirty), 0);
	assert_int_equal(mfd__bitmap_count(&rb[1].dirty), 0);

	mfd__pc_src_destroy(&pc);
	mfd__ramblock_destroy(&rb[0]);
	mfd__ramblock_destroy(&rb[1]);
}

/* More runs than one message holds: split, each message accepted. */
static void test_discard_split(void **state)
{
	(void)state;
	const uint64_t runs = 2 * MFD_DISCARD_MAX_RANGES + 5;
	struct mfd__ramblock rb;
	struct mfd__pc_src pc;
	static struct msgs m;

	assert_int_equal(
		mfd__ramblock_init(&rb, "big", NOWHERE, 2 * runs * 4096, 4096),
		0);
	limits(&m, &rb, 1);
	assert_int_equal(mfd__pc_src_init(&pc, &rb, 1), 0);
	mfd__bitmap_fill(&pc.sent[0]);
	for (uint64_t i = 0; i < runs; i++)
		mfd__bitmap_set(&rb.dirty, 2 * i);
	assert_int_equal(mfd__pc_src_switch(&pc, collect, &m), runs);
	assert_int_equal(m.nmsg, 3);
	assert_int_equal(m.sizes[0], MFD_DISCARD_MAX_RANGES);
	assert_int_equal(m.sizes[1], MFD_DISCARD_MAX_RANGES);
	assert_int_equal(m.sizes[2], 5);
	mfd__pc_src_destroy(&pc);
	mfd__ramblock_destroy(&rb);
}

static int fail_emit(void *ctx, const uint8_t *p, size_t len)
{
	(void)ctx, (void)p, (void)len;
	return -EPIPE;
}

/* A request for pages [page, page + npages) of block b answered with the
 * n pages want (page numbers), of which the first `asked` claimed for it
 * and the next `again` the bulk's, sent again. */
static void expect_answer(struct mfd__pc_src *pc, uint32_t b, uint64_t page,
			  uint64_t npages, unsigned max, unsigned asked,
			  unsigned again, const uint64_t *want, unsigned n)
{
	struct mfd__page_range r = { b, page * 4096, npages * 4096 };
	struct mfd__pc_answer a;
	uint64_t off[16];
	assert_int_equal(mfd__pc_src_claim_request(pc, &r, max, off, &a), n);
	assert_int_equal(a.n, n);
	assert_int_equal(a.asked, asked);
	assert_int_equal(a.again, again);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(off[i], want[i] * 4096);
}

static void test_claims(void **state)
{
	(void)state;
	struct mfd__ramblock rb[2];
	struct mfd__pc_src pc;
	uint64_t off[16];
	unsigned blk;

	assert_int_equal(
		mfd__ramblock_init(&rb[0], "a", NOWHERE, 64 * 4096, 4096), 0);
	assert_int_equal(
		mfd__ramblock_init(&rb[1], "b", NOWHERE, 64 * 4096, 4096), 0);
	assert_int_equal(mfd__pc_src_init(&pc, rb, 2), 0);
	/* Nothing sent in pre-copy: every page is to send, no DISCARD. A
	 * failing emit is not called. */
	assert_int_equal(mfd__pc_src_switch(&pc, fail_emit, NULL), 128);

	/* A request for page 10 of b: it and three neighbours; the first
	 * one is the page asked for (a lane sends it in a packet of its
	 * own). */
	struct mfd__page_range r = { 1, 10 * 4096, 4096 };
	struct mfd__pc_answer a = { 99, 99, 99 };
	assert_int_equal(mfd__pc_src_claim_request(&pc, &r, 4, off, &a), 4);
	assert_int_equal(a.n, 4);
	assert_int_equal(a.asked, 1);
	assert_int_equal(a.again, 0);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(off[i], (10 + i) * 4096);
	/* Asked again: on its way, nothing. Page 12 (a neighbour sent):
	 * nothing either, not even neighbours. */
	assert_int_equal(mfd__pc_src_claim_request(&pc, &r, 4, off, &a), 0);
	assert_int_equal(a.n + a.asked + a.again, 0);
	r.offset = 12 * 4096;
	assert_int_equal(mfd__pc_src_claim_request(&pc, &r, 4, off, &a), 0);
	/* The bulk scanner starts where the request ended. */
	assert_int_equal(mfd__pc_src_claim_bulk(&pc, 8, &blk, off), 8);
	assert_int_equal(blk, 1);
	assert_int_equal(off[0], 14 * 4096);
	assert_int_equal(off[7], 21 * 4096);
	/* Pages 20 and 21, both with bulk: sent again (the bulk's copies
	 * may wait behind its queue), and a neighbour claimed: 22. */
	expect_answer(&pc, 1, 20, 2, 3, 0, 2, (const uint64_t[]){ 20, 21, 22 },
		      3);
	/* 22 and 23: 23 claimed, 22 left out (a lane has it), then the
	 * neighbours 24 and 25. */
	expect_answer(&pc, 1, 22, 2, 3, 1, 0, (const uint64_t[]){ 23, 24, 25 },
		      3);

	/* Neighbours come from the next pages only: 38 and 39 for a
	 * request of 38 when 40 on are on their way (not 44 and 45). */
	r = (struct mfd__page_range){ 1, 40 * 4096, 4096 };
	assert_int_equal(mfd__pc_src_claim_request(&pc, &r, 4, off, &a), 4);
	assert_int_equal(off[3], 43 * 4096);
	r = (struct mfd__page_range){ 1, 38 * 4096, 4096 };
	assert_int_equal(mfd__pc_src_claim_request(&pc, &r, 4, off, &a), 2);
	assert_int_equal(off[0], 38 * 4096);
	assert_int_equal(off[1], 39 * 4096);

	/* The rest, once each: b from 40, then a, then b's start. */
	uint8_t seen[2][64] = { 0 };
	for (unsigned p = 10; p < 26; p++)
		seen[1][p] = 1;
	for (unsigned p = 38; p < 44; p++)
		seen[1][p] = 1;
	unsigned n, total = 22;
	while ((n = mfd__pc_src_claim_bulk(&pc, 16, &blk, off))) {
		for (unsigned i = 0; i < n; i++) {
			assert_int_equal(seen[blk][off[i] / 4096], 0);
			seen[blk][off[i] / 4096] = 1;
		}
		total += n;
	}
	assert_int_equal(total, 128);
	assert_int_equal(mfd__pc_src_left(&pc), 0);
	mfd__pc_src_destroy(&pc);

	/* An emit failure ends the switch with its code. */
	assert_int_equal(mfd__pc_src_init(&pc, rb, 2), 0);
	mfd__bitmap_fill(&pc.sent[0]);
	mfd__bitmap_set(&rb[0].dirty, 3);
	assert_int_equal(mfd__pc_src_switch(&pc, fail_emit, NULL), -EPIPE);
	mfd__pc_src_destroy(&pc);
	mfd__ramblock_destroy(&rb[0]);
	mfd__ramblock_destroy(&rb[1]);
}

/* A request for pages the bulk claimed: sent again, after the pages
 * claimed for it and before the neighbours, never claimed twice; pages
 * a lane claimed are left out, until mfd__pc_src_lanes_reset(). */
static void test_again(void **state)
{
	(void)state;
	struct mfd__ramblock rb;
	struct mfd__pc_src pc;
	uint64_t off[16];
	unsigned blk;

	assert_int_equal(mfd__ramblock_init(&rb, "a", NOWHERE, 64 * 4096, 4096),
			 0);
	assert_int_equal(mfd__pc_src_init(&pc, &rb, 1), 0);
	assert_int_equal(mfd__pc_src_switch(&pc, fail_emit, NULL), 64);
	assert_int_equal(mfd__pc_src_claim_bulk(&pc, 8, &blk, off), 8);
	/* Page 2 (the bulk's): again; its neighbours 3-5 are the bulk's
	 * too, not claimed by the lane. */
	expect_answer(&pc, 0, 2, 1, 4, 0, 1, (const uint64_t[]){ 2 }, 1);
	assert_int_equal(mfd__pc_src_left(&pc), 56);
	/* Pages 6-9: 8 and 9 claimed, 6 and 7 again, then 10-13. */
	expect_answer(&pc, 0, 6, 4, 8, 2, 2,
		      (const uint64_t[]){ 8, 9, 6, 7, 10, 11, 12, 13 }, 8);
	assert_int_equal(mfd__pc_src_left(&pc), 50);
	/* A lane's (asked or neighbour): on its way, nothing. */
	expect_answer(&pc, 0, 9, 1, 4, 0, 0, NULL, 0);
	expect_answer(&pc, 0, 11, 1, 4, 0, 0, NULL, 0);
	/* After a reset nothing is on a lane: 11 again, and of the next
	 * three pages 14 (12 and 13 are not to send any more). */
	mfd__pc_src_lanes_reset(&pc);
	expect_answer(&pc, 0, 11, 1, 4, 0, 1, (const uint64_t[]){ 11, 14 }, 2);
	assert_int_equal(mfd__pc_src_left(&pc), 49);
	mfd__pc_src_destroy(&pc);
	mfd__ramblock_destroy(&rb);
}

/* The early DISCARDs consume the dirty bits; what is dirty at the switch
 * (written since) goes first on the bulk channels, in address order,
 * skipping what a lane took; then the rest from the cursor. */
static void test_hot_first(void **state)
{
	(void)state;
	struct mfd__ramblock rb;
	struct mfd__pc_src pc;
	static struct msgs m;
	uint64_t off[8];
	unsigned blk;

	assert_int_equal(
		mfd__ramblock_init(&rb, "a", NOWHERE, 256 * 4096, 4096), 0);
	limits(&m, &rb, 1);
	assert_int_equal(mfd__pc_src_init(&pc, &rb, 1), 0);
	mfd__bitmap_fill(&pc.sent[0]); /* round 0 sent everything */
	set_range(&rb.dirty, 10, 20);
	mfd__bitmap_set(&rb.dirty, 100);
	assert_int_equal(mfd__pc_src_predrop(&pc, collect, &m), 11);
	assert_int_equal(mfd__bitmap_count(&rb.dirty), 0);
	/* Written after the early DISCARDs: 12 again, and 5, 150, 200. */
	mfd__bitmap_set(&rb.dirty, 200);
	mfd__bitmap_set(&rb.dirty, 5);
	mfd__bitmap_set(&rb.dirty, 150);
	mfd__bitmap_set(&rb.dirty, 12);
	m.ngot = 0;
	assert_int_equal(mfd__pc_src_switch(&pc, collect, &m), 14);
	/* Stale at the switch: 5, 150, 200 only (12 was dropped early). */
	assert_int_equal(m.ngot, 3);
	assert_int_equal(m.got[0].offset, 5 * 4096);
	assert_int_equal(m.got[1].offset, 150 * 4096);
	assert_int_equal(m.got[2].offset, 200 * 4096);
	/* A lane asks for 150 first. */
	struct mfd__page_range r = { 0, 150 * 4096, 4096 };
	struct mfd__pc_answer a;
	assert_int_equal(mfd__pc_src_claim_request(&pc, &r, 1, off, &a), 1);
	/* Hot: 5, 12, 200, though the request moved the cursor to 151. */
	assert_int_equal(mfd__pc_src_claim_bulk(&pc, 2, &blk, off), 2);
	assert_int_equal(off[0], 5 * 4096);
	assert_int_equal(off[1], 12 * 4096);
	assert_int_equal(mfd__pc_src_claim_bulk(&pc, 2, &blk, off), 1);
	assert_int_equal(off[0], 200 * 4096);
	/* Then the rest from the cursor (151), wrapping: 10, 11, 13..19,
	 * 100 (a batch goes on across 12, which the hot set took). */
	const uint64_t want[] = { 10, 11, 13, 14, 15, 16, 17, 18, 19, 100 };
	unsigned got = 0, n;
	while ((n = mfd__pc_src_claim_bulk(&pc, 8, &blk, off)))
		for (unsigned i = 0; i < n; i++) {
			assert_true(got < 10);
			assert_int_equal(off[i], want[got++] * 4096);
		}
	assert_int_equal(got, 10);
	assert_int_equal(mfd__pc_src_left(&pc), 0);
	mfd__pc_src_destroy(&pc);
	mfd__ramblock_destroy(&rb);
}

/* Two urgent lanes and the bulk scanner race for 100k pages. */
#define NP (100 * 1000)
struct race {
	struct mfd__pc_src pc;
	uint8_t *seen; /* atomic per byte */
};
struct lane {
	struct race *r;
	unsigned id;
};

static void mark(struct race *r, unsigned n, const uint64_t *off)
{
	for (unsigned i = 0; i < n; i++)
		__atomic_fetch_add(&r->seen[off[i] / 4096], 1,
				   __ATOMIC_RELAXED);
}

static void *urgent(void *arg)
{
	struct lane *l = arg;
	struct race *r = l->r;
	uint64_t x = 0x9e3779b97f4a7c15ULL * (l->id + 1), off[8];
	while (mfd__pc_src_left(&r->pc)) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		struct mfd__page_range q = { 0, (x % NP) * 4096, 4096 };
		struct mfd__pc_answer a;
		unsigned n = mfd__pc_src_claim_request(&r->pc, &q, 8, off, &a);
		/* Claims only: the pages sent again were the bulk's (not
		 * cmocka's assert: this is not the test's thread). */
		if (a.asked + a.again > 1 || a.n != n)
			abort();
		mark(r, a.asked, off);
		mark(r, n - a.asked - a.again, off + a.asked + a.again);
	}
	return NULL;
}

static void test_race(void **state)
{
	(void)state;
	struct mfd__ramblock rb;
	static struct race race;
	struct race *r = &race;
	struct lane lanes[2] = { { r, 0 }, { r, 1 } };
	pthread_t t[2];
	uint64_t off[128];
	unsigned blk, n;

	assert_int_equal(mfd__ramblock_init(&rb, "a", NOWHERE,
					    (uint64_t)NP * 4096, 4096),
			 0);
	assert_int_equal(mfd__pc_src_init(&r->pc, &rb, 1), 0);
	assert_int_equal(mfd__pc_src_switch(&r->pc, fail_emit, NULL), NP);
	r->seen = calloc(NP, 1);
	assert_non_null(r->seen);
	assert_int_equal(pthread_create(&t[0], NULL, urgent, &lanes[0]), 0);
	assert_int_equal(pthread_create(&t[1], NULL, urgent, &lanes[1]), 0);
	while ((n = mfd__pc_src_claim_bulk(&r->pc, 128, &blk, off)))
		mark(r, n, off);
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	for (unsigned p = 0; p < NP; p++)
		if (r->seen[p] != 1)
			fail_msg("page %u claimed %u times", p, r->seen[p]);
	assert_int_equal(mfd__pc_src_left(&r->pc), 0);
	free(r->seen);
	mfd__pc_src_destroy(&r->pc);
	mfd__ramblock_destroy(&rb);
}

/* Late in post-copy the lanes have taken pages all over: a bulk batch
 * still fills up across the gaps (every other page here), in address
 * order, each page once. */
static void test_bulk_across_gaps(void **state)
{
	(void)state;
	struct mfd__ramblock rb;
	struct mfd__pc_src pc;
	uint64_t off[64];
	unsigned blk, n, got = 0;
	struct mfd__pc_answer a;

	assert_int_equal(
		mfd__ramblock_init(&rb, "a", NOWHERE, 1024 * 4096, 4096), 0);
	assert_int_equal(mfd__pc_src_init(&pc, &rb, 1), 0);
	assert_int_equal(mfd__pc_src_switch(&pc, fail_emit, NULL), 1024);
	/* The lanes take the odd pages, and the whole word of 128..191. */
	for (uint64_t p = 1; p < 1024; p += 2) {
		struct mfd__page_range r = { 0, p * 4096, 4096 };
		assert_int_equal(mfd__pc_src_claim_request(&pc, &r, 1, off, &a),
				 1);
	}
	for (uint64_t p = 128; p < 192; p += 2) {
		struct mfd__page_range r = { 0, p * 4096, 4096 };
		assert_int_equal(mfd__pc_src_claim_request(&pc, &r, 1, off, &a),
				 1);
	}
	assert_int_equal(mfd__pc_src_left(&pc), 512 - 32);
	/* The last request (190) moved the cursor to 191: 192, 194, ...
	 * in full batches of 32, then the wrap from 0. */
	assert_int_equal(mfd__pc_src_claim_bulk(&pc, 32, &blk, off), 32);
	for (unsigned i = 0; i < 32; i++)
		assert_int_equal(off[i], (192 + 2 * i) * 4096);
	got = 32;
	uint64_t last = 0;
	bool wrapped = false;
	while ((n = mfd__pc_src_claim_bulk(&pc, 32, &blk, off))) {
		for (unsigned i = 0; i < n; i++) {
			uint64_t p = off[i] / 4096;
			assert_int_equal(p % 2, 0);
			assert_false(p >= 128 && p < 192);
			if (p < last)
				wrapped = true;
			last = p;
		}
		got += n;
		/* Full batches but the last one before the wrap and the
		 * very last. */
		assert_true(n == 32 || n == 16 || !mfd__pc_src_left(&pc));
	}
	assert_true(wrapped);
	assert_int_equal(got, 512 - 32);
	assert_int_equal(mfd__pc_src_left(&pc), 0);
	mfd__pc_src_destroy(&pc);
	mfd__ramblock_destroy(&rb);
}

/* The data channels' pace after the switch: what the lanes leave of 95 %
 * of the link, never below a quarter of it. */
static void test_bulk_pace(void **state)
{
	(void)state;
	const uint64_t link = 125000000; /* 1 Gbit/s */
	assert_int_equal(mfd__pc_bulk_pace(0, 0), 0);
	assert_int_equal(mfd__pc_bulk_pace(link, 0), 118750000);
	assert_int_equal(mfd__pc_bulk_pace(link, 40000000), 78750000);
	/* Lanes at most of the link: the bulk keeps a quarter. */
	assert_int_equal(mfd__pc_bulk_pace(link, 100000000), 31250000);
	assert_int_equal(mfd__pc_bulk_pace(link, 500000000), 31250000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_discard_list),
		cmocka_unit_test(test_discard_split),
		cmocka_unit_test(test_claims),
		cmocka_unit_test(test_again),
		cmocka_unit_test(test_hot_first),
		cmocka_unit_test(test_bulk_across_gaps),
		cmocka_unit_test(test_bulk_pace),
		cmocka_unit_test(test_race),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
