/* SPDX-License-Identifier: MIT */
/*
 * Resumable pre-copy (MFD_FEAT_RESUME, docs/protocol.md 7.8).
 *
 * When the main connection or every data connection breaks in pre-copy,
 * both sides keep their state for resume-timeout. The source reconnects
 * (mfd_source_resume(): a RESUME hello of the same session, authenticated
 * as the first); the destination answers with its received bitmap
 * (RECEIVED, control type 14): the last round whose barrier it passed and,
 * per round after it and per block, the pages it placed whole in that
 * round, as runs. The source puts back into its dirty set every page it
 * took after that barrier (its send workers' logs, multifd/degrade.h)
 * whose last copy taken is not the one the destination holds: a page of
 * round r held whole is stale when the page went again in round r + 1.
 * Pre-copy goes on from the round after the destination's barrier.
 *
 * The RECEIVED codec is pure (no I/O, no allocation) and fuzzed. Its
 * meaning does not depend on pre-copy: with base_round and round
 * MFD_ROUND_NONE the bitmap is every page received, whatever its round,
 * which is what post-copy's paused state (protocol 10.5) needs to send
 * from its received bitmap.
 */
#ifndef MULTIFD_RESUME_H
#define MULTIFD_RESUME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multifd/channels/channel.h"
#include "multifd/degrade.h"
#include "multifd/postcopy_dst.h"
#include "multifd/wire.h"
#include "ramblock/ramblock.h"

/* ---- RECEIVED (control type 14), pure ---- */

#define MFD_RECEIVED_LAST 1u /* flags: the last message of the bitmap */
#define MFD_RECEIVED_RUN  8u /* bytes per run: u32 skip, u32 count */
/* Runs in one message: the payload stays within MFD_MAX_CTL_PAYLOAD. */
#define MFD_RECEIVED_MAX_RUNS                                                  \
	((MFD_MAX_CTL_PAYLOAD - MFD_RECEIVED_FIXED) / MFD_RECEIVED_RUN)

struct mfd__received {
	uint32_t base_round; /* rounds up to it in place; NONE: from start */
	uint16_t block;
	uint16_t flags; /* MFD_RECEIVED_LAST */
	uint64_t first; /* page index where the first run's skip starts */
	uint32_t nruns;
	uint32_t round;	     /* placed whole in it (> base); NONE: any */
	const uint8_t *runs; /* decoded: nruns runs, in the payload */
	uint64_t end;	     /* decoded: the page after the last run */
};

/*
 * One message of block's bitmap (bits, npages pages) from page *pos on:
 * the runs of set bits until the block ends or cap bytes are full (cap >=
 * MFD_RECEIVED_FIXED + MFD_RECEIVED_RUN). *pos moves to where the next
 * message of the block starts (npages when the block is done); LAST is
 * set when last_block and the block is done. Returns the payload length.
 */
size_t mfd__received_encode(const uint64_t *bits, uint64_t npages,
			    uint32_t base_round, uint32_t round, uint16_t block,
			    bool last_block, uint64_t *pos, uint8_t *out,
			    size_t cap);
/*
 * Checks a payload of len bytes against lim: length = 24 + 8 x nruns
 * (MFD_ELENGTH), flags (MFD_EFLAGS), round after base_round, or NONE
 * (MFD_EROUND), block < nblocks
 * (MFD_EBLOCK), first <= the block's pages and every run (count >= 1)
 * inside the block (MFD_EOFFSET), in 64-bit arithmetic. 0 and *m filled.
 */
int mfd__received_decode(const uint8_t *p, size_t len,
			 const struct mfd__wire_limits *lim,
			 struct mfd__received *m);
/* Sets the bits of a decoded message's runs in bits (the block's). */
void mfd__received_apply(const struct mfd__received *m, uint64_t *bits);
/* Or, per page of the runs, held[page] = round + 1 (NONE: UINT32_MAX). */
void mfd__received_apply_round(const struct mfd__received *m, uint32_t *held);

/* Where the receiver is in a sequence of RECEIVED messages. */
struct mfd__received_seq {
	uint32_t base_round;
	uint32_t round;
	uint32_t block;
	uint64_t pos;
	bool started, done;
};
/* The sequence's rules for the next decoded message: the same base_round
 * throughout and rounds in order (MFD_EROUND), within a round blocks in
 * order and, within one, messages that do not overlap (MFD_EOFFSET),
 * nothing after LAST (MFD_EUNEXPECTED). */
int mfd__received_next(struct mfd__received_seq *q,
		       const struct mfd__received *m);

/* ---- destination: what arrived whole after the last applied round ---- */

struct mfd__rs_dst {
	unsigned nblocks;
	/* Per page: 1 + the round of the last packet that placed it whole
	 * (0: none). Written by the receive workers (relaxed stores: a page
	 * is in one packet per round, rounds are ordered by the barrier),
	 * read once they have all ended. */
	uint32_t *stamp[MFD_MAX_BLOCKS];
};

int mfd__rs_dst_init(struct mfd__rs_dst *t, const struct mfd__ramblock *blocks,
		     unsigned nblocks);
void mfd__rs_dst_free(struct mfd__rs_dst *t);
/* A receive worker placed n pages (byte offsets) of block whole. */
static inline void mfd__rs_dst_note(struct mfd__rs_dst *t, unsigned block,
				    uint32_t page_shift, const uint64_t *offs,
				    uint32_t n, uint32_t round)
{
	uint32_t *s = t->stamp[block];
	for (uint32_t i = 0; i < n; i++)
		__atomic_store_n(&s[offs[i] >> page_shift], round + 1,
				 __ATOMIC_RELAXED);
}
/*
 * Main channel of a resumed session: RECEIVED messages, base_round =
 * applied - 1 (rounds < applied are in place everywhere; MFD_ROUND_NONE
 * when applied is 0), for each round from applied to the newest placed
 * (at least one) and each block, the pages whose last whole placement
 * was in that round. 0 or the send's error.
 */
int mfd__rs_dst_send(const struct mfd__rs_dst *t, struct mfd__chan *main,
		     const struct mfd__ramblock *blocks, uint32_t applied);
/*
 * Post-copy (protocol 10.5): RECEIVED messages with base_round and round
 * MFD_ROUND_NONE, per block the pages set in rx (the pages in place after
 * the switch, or known zero). The placing threads must have ended. 0 or
 * the send's error.
 */
int mfd__rs_dst_send_held(struct mfd__chan *main, const struct mfd__bitmap *rx,
			  unsigned nblocks);
/*
 * Post-copy resume: every page asked for (a fault's request, pc->asked)
 * and not in place (pc->rx), a request each through send, on the lane its
 * page number selects (as the fault thread chooses). 0 or send's error.
 */
int mfd__rs_dst_pc_outstanding(const struct mfd__pc_dst *pc,
			       mfd__pc_request_fn send, void *ctx);

/* ---- source: what to send again ---- */

struct mfd__rs_src {
	unsigned nblocks;
	/* Per page, 1 + a round (0: none): the last round a worker took it
	 * in after the base round; the round RECEIVED says it is held
	 * from (UINT32_MAX: whatever the round). */
	uint32_t *sent[MFD_MAX_BLOCKS];
	uint32_t *held[MFD_MAX_BLOCKS];
	uint64_t npages[MFD_MAX_BLOCKS];
	bool all; /* a log no longer knows a round after the base: all */
};

int mfd__rs_src_init(struct mfd__rs_src *r, const struct mfd__ramblock *blocks,
		     unsigned nblocks);
void mfd__rs_src_free(struct mfd__rs_src *r);
/* Both bitmaps cleared, for the next resume. */
void mfd__rs_src_clear(struct mfd__rs_src *r);
/*
 * Reads the destination's RECEIVED messages on main (each within the
 * channel's timeout) into held; *base: their base_round. 0, the decoder's
 * or sequence's code, the peer's ERROR, or MFD_EUNEXPECTED.
 */
int mfd__rs_src_recv(struct mfd__rs_src *r, struct mfd__chan *main,
		     const struct mfd__wire_limits *lim, uint32_t *base);
/* The pages a worker took in the rounds after applied (its log), each
 * with the last of those rounds it took it in. */
void mfd__rs_src_collect(struct mfd__rs_src *r, const struct mfd__sentlog *l,
			 const struct mfd__ramblock *blocks, uint32_t applied);
/*
 * Marks dirty every collected page whose last copy taken the destination
 * does not hold whole.
 * *inflight: bytes of the collected pages (what was on its way); returns
 * the bytes marked (what goes again).
 */
uint64_t mfd__rs_src_redirty(struct mfd__rs_src *r,
			     struct mfd__ramblock *blocks, uint64_t *inflight);

struct mfd__pc_src;
/*
 * Post-copy resume: after mfd__rs_src_recv() read the post-copy form
 * (every held page UINT32_MAX), the pages to send become exactly those
 * the destination does not hold: pc's todo bitmaps and left are rebuilt
 * and its bulk cursor rewound (no lane or bulk thread may run). *again:
 * the pages claimed before the break (sent or on their way) that the
 * destination does not hold. Returns the pages to send, or MFD_EROUND
 * (nothing changed) when a message named a pre-copy round.
 */
int64_t mfd__rs_src_pc_todo(const struct mfd__rs_src *r, struct mfd__pc_src *pc,
			    uint64_t *again);

#endif /* MULTIFD_RESUME_H */
