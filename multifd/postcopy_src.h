/* SPDX-License-Identifier: MIT */
/*
 * The source's post-copy bookkeeping (docs/protocol.md 10.3), apart from
 * the channels: which pages the destination holds a stale copy of (the
 * DISCARD list), and which pages are still to be sent after the switch,
 * each claimed exactly once by whichever lane sends it first: an urgent
 * lane answering a request (the pages asked for, then following ones as
 * neighbours), or the bulk channels in address order, starting near the
 * last request.
 *
 * A request for a page the bulk channels have claimed already is answered
 * on the lane all the same: the bulk's copy may still wait in its queue
 * and the sockets' buffers (measured on loopback: 15 ms on average, up
 * to 44 ms, for a sixth of the requests); the destination places the
 * first copy to arrive and skips the other (10.4), and the guest is
 * stopped here, so both copies hold the same bytes.
 *
 * Wired into source.c (its "post-copy" section) and postcopy_lanes.c.
 *
 * Threads: mfd__pc_src_sent() and mfd__pc_src_switch() from the migration
 * thread before the switch; after it, the claims from any lane (atomic
 * per bitmap word); the bulk cursor belongs to one bulk scanner.
 */
#ifndef MULTIFD_POSTCOPY_SRC_H
#define MULTIFD_POSTCOPY_SRC_H

#include <stdbool.h>
#include <stdint.h>

#include "multifd/pcwire.h"
#include "ramblock/ramblock.h"

struct mfd__pc_src {
	struct mfd__ramblock *blocks; /* the source's, not owned */
	unsigned nblocks;
	struct mfd__bitmap sent[MFD_MAX_BLOCKS]; /* sent in pre-copy */
	struct mfd__bitmap todo[MFD_MAX_BLOCKS]; /* after the switch */
	/* Claimed by an urgent lane (atomic): on its way on a lane, not
	 * sent again when asked for. */
	struct mfd__bitmap lane[MFD_MAX_BLOCKS];
	uint64_t left; /* atomic: bits set in todo */
	/* Written by the guest between mfd__pc_src_predrop() and the
	 * switch: the bulk channels send these first (migration thread). */
	struct mfd__bitmap hot[MFD_MAX_BLOCKS];
	uint64_t hot_left; /* bits set in hot */
	unsigned hot_block;
	uint64_t hot_word;
	/* The bulk scanner's cursor, and where the last request ended
	 * (atomic; hint_seq counts requests so the scanner sees a new one). */
	unsigned cur_block;
	uint64_t cur_page;
	uint64_t hint;	   /* block << 40 | page */
	uint64_t hint_seq; /* atomic */
	uint64_t hint_seen;
};

/* 0, -EINVAL or -ENOMEM. */
int mfd__pc_src_init(struct mfd__pc_src *pc, struct mfd__ramblock *blocks,
		     unsigned nblocks);
void mfd__pc_src_destroy(struct mfd__pc_src *pc);

/* Pre-copy: the pages at offsets[0..n) of block b went out. */
void mfd__pc_src_sent(struct mfd__pc_src *pc, unsigned b,
		      const uint64_t *offsets, unsigned n);

/* Receives one DISCARD payload (len bytes); 0 or a negative code, which
 * ends mfd__pc_src_switch() with it. */
typedef int (*mfd__pc_discard_fn)(void *ctx, const uint8_t *payload,
				  size_t len);

/*
 * The switch, guest stopped and dirty bitmaps harvested: the pages still
 * to send are those dirty now or never sent; the stale ones, dirty and
 * sent before, go to the destination as DISCARD ranges (runs of pages
 * merged, in block and offset order, at most MFD_DISCARD_MAX_RANGES per
 * message), each message through emit. Consumes the dirty bitmaps.
 * Returns the number of pages to send, or a negative code.
 */
int64_t mfd__pc_src_switch(struct mfd__pc_src *pc, mfd__pc_discard_fn emit,
			   void *ctx);

/*
 * Before the stop, the guest still running, pre-copy over: DISCARDs (as
 * the switch emits them) for the pages dirty now and sent before, which
 * then count as never sent: the switch sends them and never names them
 * stale again. Consumes the dirty bitmaps: every page dirty now is never
 * sent from here on, so the switch sends it, and what is dirty at the
 * switch is what the guest wrote after this call (the hot set). The
 * destination drops them while the guest still runs here, so that only
 * the pages written after this call are dropped inside the downtime.
 * Returns the number of pages named, or a negative code.
 */
int64_t mfd__pc_src_predrop(struct mfd__pc_src *pc, mfd__pc_discard_fn emit,
			    void *ctx);

/* What an urgent lane sends in answer to a request: offsets[0..n) in
 * three runs, each ascending: the asked pages claimed now, the asked
 * pages the bulk channels had claimed (sent again), the neighbours. */
struct mfd__pc_answer {
	unsigned n;
	unsigned asked; /* offsets[0..asked): claimed by this answer */
	unsigned again; /* offsets[asked..asked+again): the bulk's too */
};

/*
 * An urgent lane answers a request r (checked by the caller with
 * mfd__page_req_decode): the pages of r still to send (claimed), those
 * of r that the bulk channels claimed before (sent again: a fault waits
 * for them), then the next pages of the block still to send (claimed),
 * up to max pages in all: of the next max - k pages only (k: the
 * request's pages in the answer). A page of r that another lane claimed
 * is on its way already: left out. Fills offsets and *a; returns a->n,
 * 0 when every page asked for is on its way on a lane (no neighbours
 * then). Sets the bulk hint past the last page.
 */
unsigned mfd__pc_src_claim_request(struct mfd__pc_src *pc,
				   const struct mfd__page_range *r,
				   unsigned max, uint64_t *offsets,
				   struct mfd__pc_answer *a);
/* After a resume, no lane running: no page is on its way on a lane. */
void mfd__pc_src_lanes_reset(struct mfd__pc_src *pc);

/*
 * The bulk scanner: claims up to max pages still to send of one block.
 * First the hot set, the pages dirty at the switch (written since
 * mfd__pc_src_predrop(), or all dirty pages without it), in block and
 * address order: the pages the guest wrote last are those it is most
 * likely to touch again first on the destination, and each one sent
 * ahead is a fault it does not take. Then the rest in address order from
 * its cursor (moved to the last request's end when a new request came
 * since the last call), wrapping around once. Returns how many, with the
 * block in *block; 0 when nothing is left.
 */
unsigned mfd__pc_src_claim_bulk(struct mfd__pc_src *pc, unsigned max,
				unsigned *block, uint64_t *offsets);

static inline uint64_t mfd__pc_src_left(const struct mfd__pc_src *pc)
{
	return __atomic_load_n(&pc->left, __ATOMIC_ACQUIRE);
}

/*
 * The pace of the data channels after the switch, all together, in bytes
 * per second: what lane_bps (the urgent lanes' recent rate) leaves of
 * link_bps at MFD__PC_PACE_PCT percent, not less than a quarter of the
 * link (the bulk must go on while the lanes are busy). The headroom lets
 * the host's queue in front of the link drain between segments, so that
 * an urgent answer finds it (nearly) empty. 0 when link_bps is 0.
 */
#define MFD__PC_PACE_PCT 95
uint64_t mfd__pc_bulk_pace(uint64_t link_bps, uint64_t lane_bps);

#endif /* MULTIFD_POSTCOPY_SRC_H */
