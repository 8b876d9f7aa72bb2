/* SPDX-License-Identifier: MIT */
/*
 * The per-channel grammar of data connections (mfd__grammar_step, protocol
 * 7.2 and 7.3) driven by arbitrary sequences of packet headers over up to
 * four channels, and END announcing a final round at any point. Input:
 *
 *   u8 channels - 1 (mod 4), then operations of 4 bytes:
 *
 *   u8 op: bits 0-1 channel, bits 2-4 type (0..7: 1-4 are the packet
 *          types, 0 and 5-6 unknown ones, 7 announces END's final round
 *          = the round byte on every channel), bit 5: seq off by one;
 *   u8 round relative to the channel's round (signed);
 *   u8 count relative to its PAGES in the round (signed);
 *   u8 spare
 *
 * Checked against a model kept as the history of accepted packets (not as
 * the grammar's own counters): a step is accepted exactly when the history
 * allows it; a refused step leaves the state unchanged and its code is the
 * documented one; nothing is accepted after DONE.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "multifd/multifd.h"
#include "multifd/wire.h"

#define NCH  4
#define HIST 4096

struct ev {
	uint16_t type;
	uint32_t round;
};

struct chan {
	struct mfd_data_grammar g;
	struct ev h[HIST];
	unsigned n;
};

/* Round the channel is in: SYNCs accepted so far. */
static uint32_t m_round(const struct chan *c)
{
	uint32_t r = 0;
	for (unsigned i = 0; i < c->n; i++)
		r += c->h[i].type == MFD_PKT_SYNC;
	return r;
}

/* PAGES since the last SYNC. */
static uint32_t m_pages(const struct chan *c)
{
	uint32_t p = 0;
	for (unsigned i = c->n; i-- > 0;) {
		if (c->h[i].type == MFD_PKT_SYNC)
			break;
		p += c->h[i].type == MFD_PKT_PAGES;
	}
	return p;
}

/* The last packet other than DEVICE was a SYNC. */
static bool m_synced(const struct chan *c)
{
	for (unsigned i = c->n; i-- > 0;)
		if (c->h[i].type != MFD_PKT_DEVICE)
			return c->h[i].type == MFD_PKT_SYNC;
	return false;
}

static bool m_done(const struct chan *c)
{
	return c->n && c->h[c->n - 1].type == MFD_PKT_DONE;
}

/* The model's verdict: 0 or the code of the first rule broken. */
static int expect(const struct chan *c, const struct mfd__pkt_hdr *h,
		  uint32_t final)
{
	bool known = final != MFD_ROUND_UNKNOWN;
	if (m_done(c))
		return MFD_EUNEXPECTED;
	if (h->seq != c->n)
		return MFD_EROUND;
	switch (h->type) {
	case MFD_PKT_PAGES:
		return h->round == m_round(c) ? 0 : MFD_EROUND;
	case MFD_PKT_SYNC:
		if (h->round != m_round(c) || (known && h->round > final))
			return MFD_EROUND;
		return h->count == m_pages(c) ? 0 : MFD_ECOUNT;
	case MFD_PKT_DEVICE:
		return 0;
	case MFD_PKT_DONE:
		if (!m_synced(c) || (known && m_round(c) != final + 1))
			return MFD_EROUND;
		return 0;
	default:
		return MFD_ETYPE;
	}
}

static struct chan ch[NCH];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned n = (data[0] & 3) + 1;
	uint32_t final = MFD_ROUND_UNKNOWN;
	for (unsigned i = 0; i < n; i++) {
		mfd__grammar_init(&ch[i].g);
		ch[i].n = 0;
	}
	for (size_t off = 1; off + 4 <= size; off += 4) {
		const uint8_t *op = data + off;
		struct chan *c = &ch[(op[0] & 3) % n];
		unsigned t = (op[0] >> 2) & 7;
		uint32_t round = m_round(c) + (uint32_t)(int32_t)(int8_t)op[1];
		if (t == 7) {
			final = op[1];
			continue;
		}
		struct mfd__pkt_hdr h = {
			.magic = MFD_MAGIC_PKT,
			.type = (uint16_t)t,
			.round = round,
			.count = m_pages(c) + (uint32_t)(int32_t)(int8_t)op[2],
			.seq = c->n + ((op[0] >> 5) & 1),
		};
		c->g.final_round = final;
		struct mfd_data_grammar before = c->g;
		int want = expect(c, &h, final);
		int got = mfd__grammar_step(&c->g, &h);
		FUZZ_ASSERT(got == want);
		if (got) {
			FUZZ_ASSERT(before.seq == c->g.seq &&
				    before.round == c->g.round &&
				    before.round_packets ==
					    c->g.round_packets &&
				    before.synced == c->g.synced &&
				    before.done == c->g.done);
			continue;
		}
		FUZZ_ASSERT(c->n < HIST);
		c->h[c->n++] = (struct ev){ .type = h.type, .round = h.round };
		FUZZ_ASSERT(c->g.seq == c->n);
		FUZZ_ASSERT(c->g.round == m_round(c));
		FUZZ_ASSERT(c->g.done == m_done(c));
	}
	return 0;
}
