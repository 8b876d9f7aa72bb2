/* SPDX-License-Identifier: MIT */
/* Degraded channels: the source's per-round log of pages a worker took. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "multifd/degrade.h"
#include "multifd/wire.h"

int mfd__sentlog_init(struct mfd__sentlog *l,
		      const struct mfd__ramblock *blocks, unsigned nblocks)
{
	memset(l, 0, sizeof(*l));
	l->first = calloc(nblocks ? nblocks : 1, sizeof(*l->first));
	if (!l->first)
		return -ENOMEM;
	for (unsigned i = 0; i < nblocks; i++) {
		l->first[i] = l->words;
		l->words += (blocks[i].npages + 63) / 64;
	}
	l->bits = calloc(l->words * MFD__SENTLOG_ROUNDS + 1, sizeof(uint64_t));
	if (!l->bits) {
		free(l->first);
		l->first = NULL;
		return -ENOMEM;
	}
	l->nblocks = nblocks;
	for (unsigned k = 0; k < MFD__SENTLOG_ROUNDS; k++)
		l->round[k] = MFD_ROUND_NONE;
	l->forgotten = MFD_ROUND_NONE;
	return 0;
}

void mfd__sentlog_free(struct mfd__sentlog *l)
{
	free(l->first);
	free(l->bits);
	memset(l, 0, sizeof(*l));
}

void mfd__sentlog_note(struct mfd__sentlog *l, const struct mfd__ramblock *rb,
		       unsigned block, uint32_t round, const uint64_t *offs,
		       uint32_t n)
{
	if (!l->bits)
		return;
	unsigned k = round % MFD__SENTLOG_ROUNDS;
	uint64_t *slot = l->bits + k * l->words;
	if (l->round[k] != round) {
		/* A new round takes the slot of the oldest: what that one
		 * held is no longer known. */
		if (l->round[k] != MFD_ROUND_NONE &&
		    (l->forgotten == MFD_ROUND_NONE ||
		     l->round[k] > l->forgotten))
			l->forgotten = l->round[k];
		memset(slot, 0, l->words * sizeof(uint64_t));
		l->round[k] = round;
	}
	uint64_t *w = slot + l->first[block];
	for (uint32_t i = 0; i < n; i++) {
		uint64_t pg = offs[i] >> rb->page_shift;
		w[pg / 64] |= 1ULL << (pg % 64);
	}
}

static bool after(uint32_t round, uint32_t applied)
{
	return applied == MFD_ROUND_NONE || round > applied;
}

uint64_t mfd__sentlog_collect(const struct mfd__sentlog *l, uint32_t applied,
			      const struct mfd__ramblock *blocks,
			      uint64_t *const *out)
{
	uint64_t marked = 0;
	bool all =
		l->forgotten != MFD_ROUND_NONE && after(l->forgotten, applied);
	for (unsigned b = 0; b < l->nblocks; b++) {
		uint64_t nwords = (blocks[b].npages + 63) / 64;
		for (uint64_t i = 0; i < nwords; i++) {
			uint64_t v = 0;
			if (all) {
				v = ~0ULL;
				if (i == nwords - 1 && blocks[b].npages & 63)
					v = (1ULL << (blocks[b].npages & 63)) -
					    1;
			} else {
				for (unsigned k = 0; k < MFD__SENTLOG_ROUNDS;
				     k++)
					if (l->round[k] != MFD_ROUND_NONE &&
					    after(l->round[k], applied))
						v |= l->bits[k * l->words +
							     l->first[b] + i];
			}
			marked += (uint64_t)__builtin_popcountll(v);
			out[b][i] |= v;
		}
	}
	return marked;
}

uint64_t mfd__sentlog_redirty(const struct mfd__sentlog *l, uint32_t applied,
			      struct mfd__ramblock *blocks)
{
	uint64_t *out[MFD_MAX_BLOCKS];
	for (unsigned b = 0; b < l->nblocks; b++)
		out[b] = blocks[b].dirty.words;
	return mfd__sentlog_collect(l, applied, blocks, out);
}
