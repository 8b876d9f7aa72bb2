/* SPDX-License-Identifier: MIT */
/*
 * The device-state reorder buffer driven by arbitrary chunk headers and an
 * arbitrary interleaving of receivers and loaders, in one thread. Input:
 *
 *   u8 devices - 1 (mod 4), u8 max_chunk - 1, u8 extra bytes of bound
 *   (max_bytes = 2 * max_chunk + extra * 4), u8 window - 1 (mod 16; bit 7:
 *   MFD_DEV_SEQ_WINDOW), then operations of 6 bytes:
 *
 *   u8 op, u8 dev, u16 seq (relative to the loader's next unless op bit 7:
 *   absolute), u16 length
 *
 * op (low 3 bits): 0/1 reserve (op bit 6: last chunk; reserve then commit
 * at once for 1), 2 commit a reserved chunk, 3 drop one, 4 loader next,
 * 5 release a loaded chunk, 6 abort, 7 queries. The harness keeps its own
 * model of what it holds and never makes a call that would block (a
 * reserve that does not fit, a next with nothing ready): a wrong model is
 * a hang, which libFuzzer reports too.
 *
 * Checked: the bytes held never exceed max_bytes, nor does the peak; a
 * reserve accepted only inside the window, above what is loaded, without a
 * duplicate and not past a known last chunk; the loader gets every
 * device's chunks in order, each with the payload its receiver wrote,
 * until the last one; no chunk is leaked or freed twice (ASan, LSan).
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "multifd/multifd.h"
#include "multifd/wire.h"
#include "devstate/reorder.h"

#define NDEV	4
#define MAXHELD 256

enum hstate { RESERVED, COMMITTED, LOADED };

struct held {
	struct mfd__rchunk *c;
	enum hstate st;
};

struct model {
	struct mfd__reorder *r;
	uint64_t max_bytes;
	uint32_t max_chunk, window;
	unsigned ndevs;
	uint32_t next[NDEV];
	bool done[NDEV];
	bool aborted;
	struct held h[MAXHELD];
	unsigned nh;
};

static uint8_t fill(uint32_t dev, uint32_t seq, uint32_t i)
{
	return (uint8_t)(dev * 131 + seq * 7 + i);
}

static void forget(struct model *m, unsigned i)
{
	m->h[i] = m->h[--m->nh];
}

/* The i-th held chunk in state st (mod their number), or -1. */
static int pick(struct model *m, enum hstate st, unsigned i)
{
	unsigned n = 0;
	for (unsigned k = 0; k < m->nh; k++)
		n += m->h[k].st == st;
	if (!n)
		return -1;
	i %= n;
	for (unsigned k = 0; k < m->nh; k++)
		if (m->h[k].st == st && i-- == 0)
			return (int)k;
	return -1;
}

static void check_bound(struct model *m)
{
	FUZZ_ASSERT(mfd__reorder_bytes(m->r) <= m->max_bytes);
	uint64_t held = 0;
	for (unsigned k = 0; k < m->nh; k++)
		held += m->h[k].c->len;
	FUZZ_ASSERT(mfd__reorder_bytes(m->r) == held);
}

static void reserve(struct model *m, uint8_t op, uint32_t dev, uint32_t seq,
		    uint32_t len)
{
	bool last = op & 0x40;
	if (m->nh == MAXHELD)
		return;
	/* A call that would wait for space is not made (one thread). */
	if (!m->aborted && dev < m->ndevs && len <= m->max_chunk &&
	    (len || last)) {
		uint64_t limit = seq == m->next[dev]
					 ? m->max_bytes
					 : m->max_bytes - m->max_chunk;
		if (mfd__reorder_bytes(m->r) + len > limit)
			return;
	}
	struct mfd__rchunk *c = NULL;
	int ret = mfd__reorder_reserve(m->r, dev, seq, len, last, &c);
	if (ret) {
		FUZZ_ASSERT(ret < 0 && !c);
		if (dev >= m->ndevs)
			FUZZ_ASSERT(ret == MFD_EDEVICE || m->aborted);
		return;
	}
	FUZZ_ASSERT(!m->aborted && c && dev < m->ndevs);
	FUZZ_ASSERT(c->dev == dev && c->seq == seq && c->len == len &&
		    c->last == last && !c->ready);
	FUZZ_ASSERT(len <= m->max_chunk && (len || last));
	FUZZ_ASSERT(!m->done[dev] && seq >= m->next[dev]);
	FUZZ_ASSERT((uint64_t)seq < (uint64_t)m->next[dev] + m->window);
	for (unsigned k = 0; k < m->nh; k++) {
		const struct mfd__rchunk *o = m->h[k].c;
		if (o->dev != dev || m->h[k].st == LOADED)
			continue;
		FUZZ_ASSERT(o->seq != seq);
		FUZZ_ASSERT(!(o->last && seq > o->seq));
		FUZZ_ASSERT(!(last && o->seq > seq));
	}
	for (uint32_t i = 0; i < len; i++)
		c->data[i] = fill(dev, seq, i);
	m->h[m->nh++] = (struct held){ c, RESERVED };
	if ((op & 7) == 1) {
		mfd__reorder_commit(m->r, c);
		m->h[m->nh - 1].st = COMMITTED;
	}
}

static void next(struct model *m, uint32_t dev)
{
	if (dev >= m->ndevs)
		return;
	/* Would the loader wait? Only when nothing it needs is ready. */
	bool ready = m->aborted || m->done[dev];
	for (unsigned k = 0; !ready && k < m->nh; k++)
		ready = m->h[k].st == COMMITTED && m->h[k].c->dev == dev &&
			m->h[k].c->seq == m->next[dev];
	if (!ready || m->nh == MAXHELD)
		return;
	struct mfd__rchunk *c = NULL;
	int ret = mfd__reorder_next(m->r, dev, &c);
	if (m->aborted) {
		FUZZ_ASSERT(ret < 0);
		return;
	}
	if (m->done[dev]) {
		FUZZ_ASSERT(ret == 1);
		return;
	}
	FUZZ_ASSERT(ret == 0 && c && c->ready);
	FUZZ_ASSERT(c->dev == dev && c->seq == m->next[dev]);
	for (uint32_t i = 0; i < c->len; i++)
		FUZZ_ASSERT(c->data[i] == fill(dev, c->seq, i));
	for (unsigned k = 0; k < m->nh; k++)
		if (m->h[k].c == c)
			m->h[k].st = LOADED;
	m->next[dev]++;
	if (c->last)
		m->done[dev] = true;
	FUZZ_ASSERT(mfd__reorder_dev_done(m->r, dev) == m->done[dev]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct model m = { 0 };
	if (size < 4)
		return 0;
	m.ndevs = data[0] % NDEV + 1u;
	m.max_chunk = data[1] + 1u;
	m.max_bytes = 2ULL * m.max_chunk + data[2] * 4u;
	m.window = data[3] & 0x80 ? MFD_DEV_SEQ_WINDOW : (data[3] & 15) + 1u;
	data += 4, size -= 4;
	FUZZ_ASSERT(mfd__reorder_new(&m.r, m.ndevs, m.max_bytes, m.max_chunk,
				     m.window) == 0);
	/* The bound's precondition is refused. */
	struct mfd__reorder *bad = NULL;
	FUZZ_ASSERT(mfd__reorder_new(&bad, m.ndevs, 2ULL * m.max_chunk - 1,
				     m.max_chunk, m.window) == -EINVAL);

	for (; size >= 6; data += 6, size -= 6) {
		uint8_t op = data[0];
		uint32_t dev = data[1] % (NDEV + 1); /* one past, sometimes */
		uint32_t seq = mfd__get_le16(data + 2);
		uint32_t len = mfd__get_le16(data + 4) % (m.max_chunk + 2u);
		if (!(op & 0x80) && dev < m.ndevs)
			seq += m.next[dev];
		else if (op & 0x80 && data[2] == 0xff)
			seq = UINT32_MAX - data[3];
		int k;
		switch (op & 7) {
		case 0:
		case 1:
			reserve(&m, op, dev, seq, len);
			break;
		case 2:
			if ((k = pick(&m, RESERVED, data[1])) >= 0) {
				mfd__reorder_commit(m.r, m.h[k].c);
				m.h[k].st = COMMITTED;
			}
			break;
		case 3:
			if ((k = pick(&m, RESERVED, data[1])) >= 0) {
				mfd__reorder_drop(m.r, m.h[k].c);
				forget(&m, (unsigned)k);
			}
			break;
		case 4:
			next(&m, dev);
			break;
		case 5:
			if ((k = pick(&m, LOADED, data[1])) >= 0) {
				mfd__reorder_release(m.r, m.h[k].c);
				forget(&m, (unsigned)k);
			}
			break;
		case 6:
			/* Rare: an abort ends most of what follows. */
			if (data[1] == 0xab) {
				mfd__reorder_abort(m.r, -ETIMEDOUT);
				m.aborted = true;
			}
			break;
		default: {
			struct mfd__reorder_stats st;
			mfd__reorder_get_stats(m.r, &st);
			FUZZ_ASSERT(st.peak_bytes <= m.max_bytes);
			FUZZ_ASSERT(st.waits == 0);
			FUZZ_ASSERT(!mfd__reorder_dev_done(m.r, m.ndevs + dev));
			break;
		}
		}
		check_bound(&m);
	}
	/* Loaded chunks belong to the loader; the rest to the buffer. */
	for (unsigned k = 0; k < m.nh; k++)
		if (m.h[k].st == LOADED)
			mfd__reorder_release(m.r, m.h[k].c);
	mfd__reorder_free(m.r);
	return 0;
}
