/* SPDX-License-Identifier: MIT */
/* Resumable pre-copy: RECEIVED, and each side's bookkeeping (resume.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "multifd/common/le.h"
#include "multifd/ctl.h"
#include "multifd/multifd.h"
#include "multifd/postcopy_dst.h"
#include "multifd/postcopy_src.h"
#include "multifd/resume.h"

/* ---- RECEIVED codec ---- */

/* The first page >= i whose bit is v (npages when none). */
static uint64_t next_bit(const uint64_t *bits, uint64_t npages, uint64_t i,
			 bool v)
{
	while (i < npages) {
		uint64_t w = bits[i / 64];
		if (!v)
			w = ~w;
		w &= ~0ULL << (i % 64);
		if (w) {
			uint64_t j =
				(i & ~63ULL) + (uint64_t)__builtin_ctzll(w);
			return j < npages ? j : npages;
		}
		i = (i & ~63ULL) + 64;
	}
	return npages;
}

size_t mfd__received_encode(const uint64_t *bits, uint64_t npages,
			    uint32_t base_round, uint32_t round, uint16_t block,
			    bool last_block, uint64_t *pos, uint8_t *out,
			    size_t cap)
{
	uint64_t first = *pos, cur = first;
	uint32_t nruns = 0;
	size_t room = (cap - MFD_RECEIVED_FIXED) / MFD_RECEIVED_RUN;
	while (nruns < room) {
		uint64_t start = next_bit(bits, npages, cur, true);
		if (start == npages) {
			cur = npages;
			break;
		}
		if (start - cur > UINT32_MAX) {
			/* A gap a run cannot say: the next message starts
			 * at the run. */
			cur = start;
			break;
		}
		uint64_t end = next_bit(bits, npages, start, false);
		if (end - start > UINT32_MAX)
			end = start + UINT32_MAX; /* the rest: skip 0 */
		uint8_t *r = out + MFD_RECEIVED_FIXED +
			     (size_t)nruns * MFD_RECEIVED_RUN;
		mfd__put_le32(r, (uint32_t)(start - cur));
		mfd__put_le32(r + 4, (uint32_t)(end - start));
		nruns++;
		cur = end;
	}
	if (nruns == room && next_bit(bits, npages, cur, true) == npages)
		cur = npages;
	*pos = cur;
	mfd__put_le32(out, base_round);
	mfd__put_le16(out + 4, block);
	mfd__put_le16(out + 6,
		      last_block && cur == npages ? MFD_RECEIVED_LAST : 0);
	mfd__put_le64(out + 8, first);
	mfd__put_le32(out + 16, nruns);
	mfd__put_le32(out + 20, round);
	return MFD_RECEIVED_FIXED + (size_t)nruns * MFD_RECEIVED_RUN;
}

int mfd__received_decode(const uint8_t *p, size_t len,
			 const struct mfd__wire_limits *lim,
			 struct mfd__received *m)
{
	if (len < MFD_RECEIVED_FIXED || len > MFD_MAX_CTL_PAYLOAD)
		return MFD_ELENGTH;
	m->base_round = mfd__get_le32(p);
	m->block = mfd__get_le16(p + 4);
	m->flags = mfd__get_le16(p + 6);
	m->first = mfd__get_le64(p + 8);
	m->nruns = mfd__get_le32(p + 16);
	m->round = mfd__get_le32(p + 20);
	m->runs = p + MFD_RECEIVED_FIXED;
	if ((uint64_t)m->nruns * MFD_RECEIVED_RUN !=
	    (uint64_t)len - MFD_RECEIVED_FIXED)
		return MFD_ELENGTH;
	if (m->flags & ~MFD_RECEIVED_LAST)
		return MFD_EFLAGS;
	/* A round after the base one, or none (any round: post-copy). */
	if (m->round != MFD_ROUND_NONE && m->base_round != MFD_ROUND_NONE &&
	    m->round <= m->base_round)
		return MFD_EROUND;
	if (m->block >= lim->nblocks)
		return MFD_EBLOCK;
	const struct mfd__block_desc *b = &lim->blocks[m->block];
	uint64_t npages = b->size / b->page_size;
	if (m->first > npages)
		return MFD_EOFFSET;
	uint64_t cur = m->first;
	for (uint32_t i = 0; i < m->nruns; i++) {
		uint64_t skip = mfd__get_le32(m->runs + 8 * (size_t)i);
		uint64_t count = mfd__get_le32(m->runs + 8 * (size_t)i + 4);
		/* cur <= npages < 2^58 and both < 2^32: no wrap-around. */
		if (!count || skip + count > npages - cur)
			return MFD_EOFFSET;
		cur += skip + count;
	}
	m->end = cur;
	return 0;
}

void mfd__received_apply(const struct mfd__received *m, uint64_t *bits)
{
	uint64_t cur = m->first;
	for (uint32_t i = 0; i < m->nruns; i++) {
		cur += mfd__get_le32(m->runs + 8 * (size_t)i);
		uint64_t end = cur + mfd__get_le32(m->runs + 8 * (size_t)i + 4);
		for (; cur < end && (cur & 63); cur++)
			bits[cur / 64] |= 1ULL << (cur % 64);
		for (; cur + 64 <= end; cur += 64)
			bits[cur / 64] = ~0ULL;
		for (; cur < end; cur++)
			bits[cur / 64] |= 1ULL << (cur % 64);
	}
}

void mfd__received_apply_round(const struct mfd__received *m, uint32_t *held)
{
	uint32_t v = m->round == MFD_ROUND_NONE ? UINT32_MAX : m->round + 1;
	uint64_t cur = m->first;
	for (uint32_t i = 0; i < m->nruns; i++) {
		cur += mfd__get_le32(m->runs + 8 * (size_t)i);
		uint64_t end = cur + mfd__get_le32(m->runs + 8 * (size_t)i + 4);
		for (; cur < end; cur++)
			held[cur] = v;
	}
}

int mfd__received_next(struct mfd__received_seq *q,
		       const struct mfd__received *m)
{
	if (q->done)
		return MFD_EUNEXPECTED;
	if (q->started &&
	    (m->base_round != q->base_round || m->round < q->round))
		return MFD_EROUND;
	if (q->started && m->round == q->round &&
	    (m->block < q->block ||
	     (m->block == q->block && m->first < q->pos)))
		return MFD_EOFFSET;
	q->started = true;
	q->base_round = m->base_round;
	q->round = m->round;
	q->block = m->block;
	q->pos = m->end;
	q->done = m->flags & MFD_RECEIVED_LAST;
	return 0;
}

/* ---- destination ---- */

int mfd__rs_dst_init(struct mfd__rs_dst *t, const struct mfd__ramblock *blocks,
		     unsigned nblocks)
{
	memset(t, 0, sizeof(*t));
	t->nblocks = nblocks;
	for (unsigned i = 0; i < nblocks; i++)
		if (!(t->stamp[i] = calloc(blocks[i].npages, sizeof(uint32_t))))
			return -ENOMEM;
	return 0;
}

void mfd__rs_dst_free(struct mfd__rs_dst *t)
{
	for (unsigned i = 0; i < t->nblocks; i++)
		free(t->stamp[i]);
	memset(t, 0, sizeof(*t));
}

/* One block's bitmap as RECEIVED messages on main (at least one). */
static int send_bits(struct mfd__chan *main, const uint64_t *bits,
		     uint64_t npages, uint32_t base, uint32_t round,
		     unsigned block, bool last, uint8_t *out, size_t cap)
{
	uint64_t pos = 0;
	int ret;
	do {
		size_t len = mfd__received_encode(bits, npages, base, round,
						  (uint16_t)block, last, &pos,
						  out, cap);
		ret = mfd__ctl_send(main, MFD_CTL_RECEIVED, out, (uint32_t)len);
	} while (!ret && pos < npages);
	return ret;
}

int mfd__rs_dst_send(const struct mfd__rs_dst *t, struct mfd__chan *main,
		     const struct mfd__ramblock *blocks, uint32_t applied)
{
	/* Rounds from applied to the newest a page was placed whole in:
	 * the workers stop at a barrier, so usually just one. */
	uint32_t last = applied;
	for (unsigned b = 0; b < t->nblocks; b++)
		for (uint64_t pg = 0; pg < blocks[b].npages; pg++) {
			uint32_t v = __atomic_load_n(&t->stamp[b][pg],
						     __ATOMIC_RELAXED);
			if (v && v - 1 > last)
				last = v - 1;
		}
	size_t cap = MFD_MAX_CTL_PAYLOAD;
	uint8_t *out = malloc(cap);
	uint64_t *bits = NULL;
	int ret = out ? 0 : -ENOMEM;
	for (uint32_t r = applied; !ret && r <= last; r++) {
		for (unsigned b = 0; !ret && b < t->nblocks; b++) {
			uint64_t npages = blocks[b].npages;
			free(bits);
			bits = calloc((npages + 63) / 64, sizeof(uint64_t));
			if (!bits) {
				ret = -ENOMEM;
				break;
			}
			for (uint64_t pg = 0; pg < npages; pg++)
				if (__atomic_load_n(&t->stamp[b][pg],
						    __ATOMIC_RELAXED) == r + 1)
					bits[pg / 64] |= 1ULL << (pg % 64);
			ret = send_bits(main, bits, npages,
					applied ? applied - 1 : MFD_ROUND_NONE,
					r, b, r == last && b + 1 == t->nblocks,
					out, cap);
		}
	}
	free(bits);
	free(out);
	return ret;
}

int mfd__rs_dst_send_held(struct mfd__chan *main, const struct mfd__bitmap *rx,
			  unsigned nblocks)
{
	uint8_t *out = malloc(MFD_MAX_CTL_PAYLOAD);
	int ret = out ? 0 : -ENOMEM;
	for (unsigned b = 0; !ret && b < nblocks; b++)
		ret = send_bits(main, rx[b].words, rx[b].nbits, MFD_ROUND_NONE,
				MFD_ROUND_NONE, b, b + 1 == nblocks, out,
				MFD_MAX_CTL_PAYLOAD);
	free(out);
	return ret;
}

int mfd__rs_dst_pc_outstanding(const struct mfd__pc_dst *pc,
			       mfd__pc_request_fn send, void *ctx)
{
	for (unsigned b = 0; b < pc->nblocks; b++) {
		const struct mfd__ramblock *rb = &pc->blocks[b];
		for (uint64_t w = 0; w < pc->asked[b].nwords; w++) {
			uint64_t v = __atomic_load_n(&pc->asked[b].words[w],
						     __ATOMIC_ACQUIRE) &
				     ~__atomic_load_n(&pc->rx[b].words[w],
						      __ATOMIC_ACQUIRE);
			for (; v; v &= v - 1) {
				uint64_t pg =
					w * 64 + (uint64_t)__builtin_ctzll(v);
				struct mfd__page_range r = {
					.block = b,
					.offset = pg << rb->page_shift,
					.length = rb->page_size
				};
				int ret = send(ctx, (unsigned)(pg % pc->lanes),
					       &r);
				if (ret)
					return ret;
			}
		}
	}
	return 0;
}

/* ---- source ---- */

int mfd__rs_src_init(struct mfd__rs_src *r, const struct mfd__ramblock *blocks,
		     unsigned nblocks)
{
	memset(r, 0, sizeof(*r));
	r->nblocks = nblocks;
	for (unsigned i = 0; i < nblocks; i++) {
		r->npages[i] = blocks[i].npages;
		r->sent[i] = calloc(r->npages[i], sizeof(uint32_t));
		r->held[i] = calloc(r->npages[i], sizeof(uint32_t));
		if (!r->sent[i] || !r->held[i])
			return -ENOMEM;
	}
	return 0;
}

void mfd__rs_src_free(struct mfd__rs_src *r)
{
	for (unsigned i = 0; i < r->nblocks; i++) {
		free(r->sent[i]);
		free(r->held[i]);
	}
	memset(r, 0, sizeof(*r));
}

void mfd__rs_src_clear(struct mfd__rs_src *r)
{
	for (unsigned i = 0; i < r->nblocks; i++) {
		memset(r->sent[i], 0, r->npages[i] * sizeof(uint32_t));
		memset(r->held[i], 0, r->npages[i] * sizeof(uint32_t));
	}
	r->all = false;
}

int mfd__rs_src_recv(struct mfd__rs_src *r, struct mfd__chan *main,
		     const struct mfd__wire_limits *lim, uint32_t *base)
{
	struct mfd__received_seq q = { 0 };
	while (!q.done) {
		struct mfd__ctl_hdr h;
		uint8_t *payload;
		int ret = mfd__ctl_recv(main, &h, &payload);
		if (ret)
			return ret;
		struct mfd__received m;
		if (h.type == MFD_CTL_ERROR)
			ret = mfd__ctl_peer_error(payload, h.length,
						  "destination");
		else if (h.type != MFD_CTL_RECEIVED)
			ret = MFD_EUNEXPECTED;
		else if (!(ret = mfd__received_decode(payload, h.length, lim,
						      &m)) &&
			 !(ret = mfd__received_next(&q, &m)))
			mfd__received_apply_round(&m, r->held[m.block]);
		free(payload);
		if (ret)
			return ret;
	}
	*base = q.base_round;
	return 0;
}

static bool after(uint32_t round, uint32_t base)
{
	return base == MFD_ROUND_NONE || round > base;
}

void mfd__rs_src_collect(struct mfd__rs_src *r, const struct mfd__sentlog *l,
			 const struct mfd__ramblock *blocks, uint32_t applied)
{
	if (!l->bits)
		return;
	if (l->forgotten != MFD_ROUND_NONE && after(l->forgotten, applied)) {
		r->all = true;
		return;
	}
	for (unsigned k = 0; k < MFD__SENTLOG_ROUNDS; k++) {
		uint32_t rd = l->round[k];
		if (rd == MFD_ROUND_NONE || !after(rd, applied))
			continue;
		for (unsigned b = 0; b < r->nblocks; b++) {
			const uint64_t *w =
				l->bits + k * l->words + l->first[b];
			uint64_t nw = (blocks[b].npages + 63) / 64;
			for (uint64_t i = 0; i < nw; i++)
				for (uint64_t v = w[i]; v; v &= v - 1) {
					uint64_t pg =
						i * 64 +
						(uint64_t)__builtin_ctzll(v);
					if (r->sent[b][pg] < rd + 1)
						r->sent[b][pg] = rd + 1;
				}
		}
	}
}

uint64_t mfd__rs_src_redirty(struct mfd__rs_src *r,
			     struct mfd__ramblock *blocks, uint64_t *inflight)
{
	uint64_t again = 0, sent = 0;
	for (unsigned b = 0; b < r->nblocks; b++) {
		uint64_t n = 0, m = 0;
		for (uint64_t pg = 0; pg < r->npages[b]; pg++) {
			uint32_t s = r->sent[b][pg], h = r->held[b][pg];
			if (!s && !r->all)
				continue;
			n++;
			/* Held whole, and no copy was taken after it. */
			if (!r->all && (h == UINT32_MAX || h == s))
				continue;
			m++;
			mfd__bitmap_set(&blocks[b].dirty, pg);
		}
		sent += n * blocks[b].page_size;
		again += m * blocks[b].page_size;
	}
	*inflight = sent;
	return again;
}

int64_t mfd__rs_src_pc_todo(const struct mfd__rs_src *r, struct mfd__pc_src *pc,
			    uint64_t *again)
{
	uint64_t total = 0, lost = 0;
	/* Checked whole before the first bit changes. */
	for (unsigned b = 0; b < r->nblocks; b++)
		for (uint64_t pg = 0; pg < r->npages[b]; pg++)
			if (r->held[b][pg] && r->held[b][pg] != UINT32_MAX)
				return MFD_EROUND; /* a pre-copy round */
	for (unsigned b = 0; b < r->nblocks; b++) {
		struct mfd__bitmap *t = &pc->todo[b];
		for (uint64_t pg = 0; pg < r->npages[b]; pg++) {
			uint64_t bit = 1ULL << (pg % 64);
			if (r->held[b][pg]) {
				t->words[pg / 64] &= ~bit;
				continue;
			}
			/* Claimed before the break and not held: lost on
			 * the way, it goes again. */
			lost += !(t->words[pg / 64] & bit);
			t->words[pg / 64] |= bit;
			total++;
		}
	}
	pc->cur_block = 0;
	pc->cur_page = 0;
	__atomic_store_n(&pc->left, total, __ATOMIC_RELEASE);
	*again = lost;
	return (int64_t)total;
}
