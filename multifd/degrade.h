/* SPDX-License-Identifier: MIT */
/*
 * Degraded channels (MFD_FEAT_DEGRADE, docs/protocol.md 7.7): what the
 * source needs to re-send when a data channel is lost.
 *
 * TCP acknowledges nothing the engine can see: a page is only known to be
 * in place on the destination once the destination has applied the SYNC
 * of its round on that channel. So each send worker notes, per round, the
 * pages it took (sent or queued) in a small ring of per-round bitmaps;
 * when its channel is lost, the destination says (CHAN_LOST) the last
 * round whose SYNC it applied there, and every page the worker took in a
 * later round goes back to the dirty set. A round older than the ring
 * (the destination that far behind) falls back to every page.
 *
 * One log per worker, written by that worker only; read by the migration
 * thread once the worker has left its channel (pool.h, dead).
 */
#ifndef MULTIFD_DEGRADE_H
#define MULTIFD_DEGRADE_H

#include <stdint.h>

#include "ramblock/ramblock.h"

/* Rounds a worker remembers: the destination is rarely more than one
 * round behind the source (the source ends a round when its SYNC left). */
#define MFD__SENTLOG_ROUNDS 4

struct mfd__sentlog {
	unsigned nblocks;
	uint64_t words;	 /* per slot, all blocks */
	uint64_t *first; /* nblocks: first word of each block */
	uint64_t *bits;	 /* MFD__SENTLOG_ROUNDS slots of words */
	uint32_t round[MFD__SENTLOG_ROUNDS]; /* of each slot; NONE: empty */
	/* The newest round whose slot was reused for a later one: rounds up
	 * to it are no longer known (MFD_ROUND_NONE: none forgotten). */
	uint32_t forgotten;
};

/* 0 or -ENOMEM. */
int mfd__sentlog_init(struct mfd__sentlog *l,
		      const struct mfd__ramblock *blocks, unsigned nblocks);
void mfd__sentlog_free(struct mfd__sentlog *l);
/* The worker took n pages (byte offsets) of block for round. */
void mfd__sentlog_note(struct mfd__sentlog *l, const struct mfd__ramblock *rb,
		       unsigned block, uint32_t round, const uint64_t *offs,
		       uint32_t n);
/*
 * Marks dirty (blocks[i].dirty) every page the worker took in a round
 * after applied, the last round whose SYNC the destination applied on the
 * channel (MFD_ROUND_NONE: none, so every round); all pages when the log
 * no longer holds those rounds. Returns the pages marked.
 */
uint64_t mfd__sentlog_redirty(const struct mfd__sentlog *l, uint32_t applied,
			      struct mfd__ramblock *blocks);
/* The same pages ORed into out[b] (one bitmap per block, its pages'
 * words) instead of the dirty set (resume.c). Returns their count. */
uint64_t mfd__sentlog_collect(const struct mfd__sentlog *l, uint32_t applied,
			      const struct mfd__ramblock *blocks,
			      uint64_t *const *out);

#endif /* MULTIFD_DEGRADE_H */
