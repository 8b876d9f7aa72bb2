/* SPDX-License-Identifier: MIT */
/*
 * Destination prefault ahead of the receive front (config dest-prefault =
 * ahead): helper threads populate guest RAM just before the channels write
 * it, so that the first-touch cost (page allocation and zeroing; on some
 * hosts far more) is paid beside the receive path instead of inside it.
 *
 * The receive front is the highest position written so far, counted over
 * the blocks in registration order (the scanner sends each block's pages
 * in ascending order, one block after another, in the first round). The
 * helpers populate units of 2 MiB (or the block's page size if larger) in
 * the same order, never more than `window` bytes beyond the front, and
 * only whole pages inside registered blocks: a unit is clipped to its
 * block, inward to 4 KiB boundaries. They stop at the end of the last
 * block or at mfd__prefault_stop(), whichever comes first.
 *
 * Threads: mfd__prefault_note() from any receive worker (one relaxed
 * atomic max); start and stop from one thread.
 */
#ifndef RAMBLOCK_PREFAULT_H
#define RAMBLOCK_PREFAULT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "ramblock/ramblock.h"

#define MFD__PREFAULT_THREADS_MAX 4

struct mfd__prefault {
	const struct mfd__ramblock *blocks;
	unsigned nblocks;
	uint64_t *base; /* per block: its first position */
	uint64_t total; /* bytes of all blocks */
	uint64_t window;
	uint64_t front;	 /* atomic: highest position written */
	uint64_t cursor; /* atomic: next unit position to claim */
	bool stop;	 /* atomic */
	unsigned nthreads;
	pthread_t threads[MFD__PREFAULT_THREADS_MAX];
	uint64_t *cpu_ns; /* atomic, the owner's CPU account */
	uint64_t bytes;	  /* atomic: bytes populated */
	uint64_t ns;	  /* atomic: time inside the populate calls */
};

/*
 * Starts nthreads (1..MFD__PREFAULT_THREADS_MAX) helpers over blocks,
 * which must stay registered until mfd__prefault_stop(). Each adds its
 * CPU time to *cpu_ns when it ends. 0 or a negative errno (nothing runs).
 */
int mfd__prefault_start(struct mfd__prefault *pf,
			const struct mfd__ramblock *blocks, unsigned nblocks,
			uint64_t window, unsigned nthreads, uint64_t *cpu_ns);
/* A receive worker wrote block's bytes up to offset end (exclusive). */
static inline void mfd__prefault_note(struct mfd__prefault *pf, unsigned block,
				      uint64_t end)
{
	if (!pf->nthreads || block >= pf->nblocks)
		return;
	uint64_t pos = pf->base[block] + end;
	uint64_t f = __atomic_load_n(&pf->front, __ATOMIC_RELAXED);
	while (pos > f &&
	       !__atomic_compare_exchange_n(&pf->front, &f, pos, true,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}
/* Stops and joins the helpers (safe if none were started). */
void mfd__prefault_stop(struct mfd__prefault *pf);

#endif
