/* SPDX-License-Identifier: MIT */
/* The source's post-copy bookkeeping (postcopy_src.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "multifd/multifd.h"
#include "multifd/postcopy_src.h"
#include "ramblock/uffd.h"

int mfd__pc_src_init(struct mfd__pc_src *pc, struct mfd__ramblock *blocks,
		     unsigned nblocks)
{
	memset(pc, 0, sizeof(*pc));
	if (!nblocks || nblocks > MFD_MAX_BLOCKS)
		return -EINVAL;
	pc->blocks = blocks;
	pc->nblocks = nblocks;
	for (unsigned b = 0; b < nblocks; b++)
		if (mfd__bitmap_init(&pc->sent[b], blocks[b].npages) ||
		    mfd__bitmap_init(&pc->todo[b], blocks[b].npages) ||
		    mfd__bitmap_init(&pc->lane[b], blocks[b].npages) ||
		    mfd__bitmap_init(&pc->hot[b], blocks[b].npages)) {
			mfd__pc_src_destroy(pc);
			return -ENOMEM;
		}
	return 0;
}

void mfd__pc_src_destroy(struct mfd__pc_src *pc)
{
	for (unsigned b = 0; b < pc->nblocks; b++) {
		mfd__bitmap_destroy(&pc->sent[b]);
		mfd__bitmap_destroy(&pc->todo[b]);
		mfd__bitmap_destroy(&pc->lane[b]);
		mfd__bitmap_destroy(&pc->hot[b]);
	}
}

void mfd__pc_src_sent(struct mfd__pc_src *pc, unsigned b,
		      const uint64_t *offsets, unsigned n)
{
	uint32_t shift = pc->blocks[b].page_shift;
	for (unsigned i = 0; i < n; i++)
		mfd__bitmap_set(&pc->sent[b], offsets[i] >> shift);
}

/* DISCARD ranges, gathered and sent a message at a time. */
struct discards {
	struct mfd__page_range *r;
	uint32_t n;
	uint8_t *buf;
	mfd__pc_discard_fn emit;
	void *ctx;
};

static int flush(struct discards *d)
{
	if (!d->n)
		return 0;
	int len = mfd__discard_encode(d->r, d->n, d->buf,
				      mfd__discard_size(d->n));
	d->n = 0;
	return len < 0 ? len : d->emit(d->ctx, d->buf, (size_t)len);
}

static int add_run(struct discards *d, uint32_t b, uint64_t off, uint64_t len)
{
	if (d->n == MFD_DISCARD_MAX_RANGES) {
		int ret = flush(d);
		if (ret)
			return ret;
	}
	d->r[d->n++] = (struct mfd__page_range){ b, off, len };
	return 0;
}

/* The switch (final) or the early DISCARDs before the stop (!final):
 * see postcopy_src.h. */
static int64_t stale_pass(struct mfd__pc_src *pc, mfd__pc_discard_fn emit,
			  void *ctx, bool final)
{
	struct discards d = { .emit = emit, .ctx = ctx };
	uint64_t total = 0;
	int ret = 0;

	d.r = malloc(MFD_DISCARD_MAX_RANGES * sizeof(*d.r));
	d.buf = malloc(mfd__discard_size(MFD_DISCARD_MAX_RANGES));
	if (!d.r || !d.buf) {
		ret = -ENOMEM;
		goto out;
	}
	for (unsigned b = 0; b < pc->nblocks && !ret; b++) {
		struct mfd__ramblock *rb = &pc->blocks[b];
		uint64_t run = 0, start = 0;
		for (uint64_t w = 0; w < rb->dirty.nwords && !ret; w++) {
			uint64_t dirty = rb->dirty.words[w];
			uint64_t sent = pc->sent[b].words[w];
			uint64_t valid =
				w + 1 < rb->dirty.nwords || !(rb->npages & 63)
					? ~0ULL
					: (1ULL << (rb->npages & 63)) - 1;
			uint64_t stale = dirty & sent & valid;
			if (final) {
				pc->todo[b].words[w] = (dirty | ~sent) & valid;
				total += (uint64_t)__builtin_popcountll(
					pc->todo[b].words[w]);
				/* Written since the early pass: hot. */
				pc->hot[b].words[w] = dirty & valid;
				pc->hot_left += (uint64_t)__builtin_popcountll(
					dirty & valid);
			} else {
				/* Dropped there now: to send after the
				 * switch (never sent), never again as
				 * stale. */
				pc->sent[b].words[w] = sent & ~stale;
				total += (uint64_t)__builtin_popcountll(stale);
			}
			/* Consumed: every page dirty now is in todo (dirty
			 * and never sent) at the switch; what is dirty at the
			 * switch is what the guest wrote since this pass. */
			rb->dirty.words[w] = 0;
			/* Runs of stale pages, merged across words. */
			for (unsigned i = 0; i < 64 && !ret; i++) {
				uint64_t p = w * 64 + i;
				if ((stale >> i) & 1) {
					if (!run++)
						start = p;
				} else if (run) {
					ret = add_run(&d, b,
						      start << rb->page_shift,
						      run << rb->page_shift);
					run = 0;
				}
			}
		}
		if (!ret && run)
			ret = add_run(&d, b, start << rb->page_shift,
				      run << rb->page_shift);
	}
	if (!ret)
		ret = flush(&d);
	if (final)
		__atomic_store_n(&pc->left, total, __ATOMIC_RELEASE);
out:
	free(d.r);
	free(d.buf);
	return ret ? ret : (int64_t)total;
}

int64_t mfd__pc_src_switch(struct mfd__pc_src *pc, mfd__pc_discard_fn emit,
			   void *ctx)
{
	return stale_pass(pc, emit, ctx, true);
}

int64_t mfd__pc_src_predrop(struct mfd__pc_src *pc, mfd__pc_discard_fn emit,
			    void *ctx)
{
	return stale_pass(pc, emit, ctx, false);
}

/* Claims page p of block b: true for the one caller that clears its bit. */
static bool claim(struct mfd__pc_src *pc, unsigned b, uint64_t p)
{
	uint64_t bit = 1ULL << (p & 63);
	if (!(__atomic_fetch_and(&pc->todo[b].words[p >> 6], ~bit,
				 __ATOMIC_ACQ_REL) &
	      bit))
		return false;
	__atomic_fetch_sub(&pc->left, 1, __ATOMIC_RELEASE);
	return true;
}

/* Bit p of m, read atomically. */
static bool is_set(const struct mfd__bitmap *m, uint64_t p)
{
	return mfd__pc_received(m, p);
}

/* Claims page p of block b for an urgent lane. */
static bool claim_lane(struct mfd__pc_src *pc, unsigned b, uint64_t p)
{
	if (!claim(pc, b, p))
		return false;
	/* After the claim: a request for p in between is answered twice
	 * (harmless, counted), never left waiting for the bulk. */
	(void)mfd__pc_mark(&pc->lane[b], p);
	return true;
}

unsigned mfd__pc_src_claim_request(struct mfd__pc_src *pc,
				   const struct mfd__page_range *r,
				   unsigned max, uint64_t *offsets,
				   struct mfd__pc_answer *a)
{
	struct mfd__ramblock *rb = &pc->blocks[r->block];
	uint64_t first = r->offset >> rb->page_shift;
	uint64_t end = first + (r->length >> rb->page_shift);
	uint64_t p;
	unsigned n = 0;

	*a = (struct mfd__pc_answer){ 0 };
	for (p = first; p < end && n < max; p++)
		if (claim_lane(pc, r->block, p))
			offsets[n++] = p << rb->page_shift;
	a->asked = n;
	/* The bulk's: claimed before, not by a lane. Not placed at the
	 * destination either (it asked), so its copy is still on the way,
	 * maybe behind megabytes of the bulk. */
	for (p = first; p < end && n < max; p++)
		if (!is_set(&pc->todo[r->block], p) &&
		    !is_set(&pc->lane[r->block], p))
			offsets[n++] = p << rb->page_shift;
	a->again = n - a->asked;
	a->n = n;
	if (n == 0)
		return 0; /* on its way on a lane: no neighbours either */
	p = end;
	/* Neighbours: the next max - n pages, those still to send. Not
	 * further: late in post-copy most pages are sent, and looking for
	 * the next unsent ones took up to the whole block's bitmap (atomic
	 * ops all the way) per request, for pages no nearer than the bulk
	 * channels' next ones. */
	uint64_t stop = p + (max - n);
	if (stop > rb->npages)
		stop = rb->npages;
	for (; p < stop; p++)
		if (claim_lane(pc, r->block, p))
			offsets[n++] = p << rb->page_shift;
	a->n = n;
	__atomic_store_n(&pc->hint, (uint64_t)r->block << 40 | p,
			 __ATOMIC_RELAXED);
	__atomic_fetch_add(&pc->hint_seq, 1, __ATOMIC_RELEASE);
	return n;
}

void mfd__pc_src_lanes_reset(struct mfd__pc_src *pc)
{
	for (unsigned b = 0; b < pc->nblocks; b++)
		memset(pc->lane[b].words, 0,
		       pc->lane[b].nwords * sizeof(*pc->lane[b].words));
}

/* The hot pages first (see mfd__pc_src_claim_bulk): up to max of one
 * block in address order, each looked at once. */
static unsigned claim_hot(struct mfd__pc_src *pc, unsigned max, unsigned *block,
			  uint64_t *offsets)
{
	while (pc->hot_left && pc->hot_block < pc->nblocks) {
		unsigned b = pc->hot_block;
		struct mfd__bitmap *hot = &pc->hot[b];
		struct mfd__ramblock *rb = &pc->blocks[b];
		unsigned n = 0;
		for (uint64_t w = pc->hot_word; w < hot->nwords && n < max;
		     w++) {
			pc->hot_word = w;
			while (hot->words[w] && n < max) {
				unsigned i = (unsigned)__builtin_ctzll(
					hot->words[w]);
				hot->words[w] &= hot->words[w] - 1;
				pc->hot_left--;
				uint64_t p = w * 64 + i;
				if (claim(pc, b, p)) /* else a lane has it */
					offsets[n++] = p << rb->page_shift;
			}
		}
		if (n) {
			*block = b;
			return n;
		}
		pc->hot_block++;
		pc->hot_word = 0;
	}
	return 0;
}

unsigned mfd__pc_src_claim_bulk(struct mfd__pc_src *pc, unsigned max,
				unsigned *block, uint64_t *offsets)
{
	unsigned hot = claim_hot(pc, max, block, offsets);
	if (hot)
		return hot;
	uint64_t seq = __atomic_load_n(&pc->hint_seq, __ATOMIC_ACQUIRE);
	if (seq != pc->hint_seen) {
		uint64_t h = __atomic_load_n(&pc->hint, __ATOMIC_RELAXED);
		pc->hint_seen = seq;
		pc->cur_block = (unsigned)(h >> 40);
		pc->cur_page = h & ((1ULL << 40) - 1);
	}
	/* Every block once from the cursor, then the cursor's block from
	 * its start: a full wrap. */
	for (unsigned k = 0; k <= pc->nblocks; k++) {
		unsigned b = pc->cur_block;
		struct mfd__ramblock *rb = &pc->blocks[b];
		unsigned n = 0;
		/* Not only a contiguous run: late in post-copy the lanes
		 * have taken pages all over and the runs left are short; a
		 * batch of a few pages each could not keep a paced socket
		 * fed (measured: the link at 60-80 % in the last seconds). */
		uint64_t p = pc->cur_page;
		while (p < rb->npages && n < max) {
			if (!(p & 63) &&
			    !__atomic_load_n(&pc->todo[b].words[p >> 6],
					     __ATOMIC_ACQUIRE)) {
				p += 64;
				continue;
			}
			if (is_set(&pc->todo[b], p) && claim(pc, b, p))
				offsets[n++] = p << rb->page_shift;
			p++;
		}
		pc->cur_page = p < rb->npages ? p : rb->npages;
		if (n) {
			*block = b;
			return n;
		}
		if (!mfd__pc_src_left(pc))
			return 0;
		pc->cur_block = (b + 1) % pc->nblocks;
		pc->cur_page = 0;
	}
	return 0;
}

uint64_t mfd__pc_bulk_pace(uint64_t link_bps, uint64_t lane_bps)
{
	uint64_t want = link_bps / 100 * MFD__PC_PACE_PCT;
	uint64_t floor = link_bps / 4;
	return want > lane_bps + floor ? want - lane_bps : floor;
}
