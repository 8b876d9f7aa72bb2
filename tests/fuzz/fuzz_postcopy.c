/* SPDX-License-Identifier: MIT */
/*
 * Post-copy messages (protocol section 10, multifd/pcwire.h) and the
 * grammar after the switch. Input: u8 selector, u8 limits, then:
 *
 *   selector % 4 == 0: PAGE_REQ, 24 bytes;
 *   selector % 4 == 1: SWITCH, 16 bytes;
 *   selector % 4 == 2: a DISCARD payload, the rest of the input;
 *   selector % 4 == 3: grammar ops of 4 bytes on one bulk connection
 *     (selector bit 2 clear) or one urgent lane (set):
 *       u8 op: bits 0-2 type (0..7: 1-4 the packet types, 5 SWITCH sets
 *              the post-copy round to the round byte, 6 END sets the final
 *              round, 0 and 7 unknown types), bit 3 flag POSTCOPY,
 *              bit 4 seq off by one;
 *       u8 round relative to the connection's round (signed);
 *       u8 count relative to its PAGES in the round (signed); u8 spare.
 *
 *   selector >= 0xf0 (before the above): the postcopy-paused resume
 *     (protocol 10.5) as the source takes it: u8 claimed-pattern, then
 *     RECEIVED messages, each u8 n and 24 + 8 x (n % 32) bytes (fewer at
 *     the end); the accepted ones go into the held arrays, then the
 *     pages to send are rebuilt (mfd__rs_src_pc_todo): exactly the pages
 *     not held, or MFD_EROUND with nothing changed when a message named a
 *     pre-copy round. The held pages re-encoded in the post-copy form
 *     decode to the same pages.
 *
 * Limits: 1..4 blocks, page size 4 KiB << (0..3), 1..16 pages each,
 * packet_pages 1..4, from the limits byte. An accepted message must keep
 * every range inside its block, in order, and re-encode to the same
 * bytes; the grammar must agree with a model kept as the history of
 * accepted packets and leave its state unchanged on refusal.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "multifd/multifd.h"
#include "multifd/wire.h"
#include "multifd/pcwire.h"
#include "multifd/postcopy_src.h"
#include "multifd/resume.h"

static struct mfd__block_desc blocks[4];
static struct mfd__wire_limits lim;

static void make_limits(uint8_t b)
{
	lim.nblocks = (b & 3) + 1;
	lim.packet_pages = ((b >> 2) & 3) + 1;
	lim.blocks = blocks;
	lim.features = MFD_FEAT_POSTCOPY;
	for (uint32_t i = 0; i < lim.nblocks; i++) {
		blocks[i].page_size = 4096u << ((b >> 4) + i) % 4;
		blocks[i].size = (uint64_t)blocks[i].page_size *
				 (((b >> 6) + 3 * i) % 16 + 1);
	}
}

static void range_ok(const struct mfd__page_range *r)
{
	FUZZ_ASSERT(r->block < lim.nblocks);
	const struct mfd__block_desc *b = &blocks[r->block];
	FUZZ_ASSERT(r->offset % b->page_size == 0);
	FUZZ_ASSERT(r->length && r->length % b->page_size == 0);
	FUZZ_ASSERT(r->offset < b->size && r->length <= b->size - r->offset);
}

static void page_req(const uint8_t *p, size_t n)
{
	struct mfd__page_range r;
	uint8_t again[MFD_RANGE_SIZE];
	if (n < MFD_RANGE_SIZE || mfd__page_req_decode(p, &lim, &r))
		return;
	range_ok(&r);
	FUZZ_ASSERT(r.length <=
		    (uint64_t)lim.packet_pages * blocks[r.block].page_size);
	mfd__page_req_encode(&r, again);
	FUZZ_ASSERT(memcmp(again, p, MFD_RANGE_SIZE) == 0);
}

static void switch_msg(const uint8_t *p, size_t n)
{
	struct mfd__switch sw;
	uint8_t again[MFD_SWITCH_SIZE];
	if (n < MFD_SWITCH_SIZE || mfd__switch_decode(p, &sw))
		return;
	FUZZ_ASSERT(sw.round >= 1);
	mfd__switch_encode(&sw, again);
	FUZZ_ASSERT(memcmp(again, p, MFD_SWITCH_SIZE) == 0);
}

static struct mfd__page_range ranges[MFD_DISCARD_MAX_RANGES];

static void discard(const uint8_t *data, size_t n)
{
	uint32_t count;
	/* An exact heap copy, as from mfd__ctl_recv(). */
	uint8_t *p = malloc(n ? n : 1);
	if (!p)
		return;
	memcpy(p, data, n);
	if (mfd__discard_check(p, n, &lim, &count)) {
		free(p);
		return;
	}
	FUZZ_ASSERT(count >= 1 && mfd__discard_size(count) == n);
	for (uint32_t i = 0; i < count; i++) {
		mfd__discard_get(p, i, &ranges[i]);
		range_ok(&ranges[i]);
		if (i)
			FUZZ_ASSERT(ranges[i].block > ranges[i - 1].block ||
				    (ranges[i].block == ranges[i - 1].block &&
				     ranges[i].offset >=
					     ranges[i - 1].offset +
						     ranges[i - 1].length));
	}
	uint8_t *again = malloc(n);
	if (again) {
		FUZZ_ASSERT(mfd__discard_encode(ranges, count, again, n) ==
			    (int)n);
		FUZZ_ASSERT(memcmp(again, p, n) == 0);
		free(again);
	}
	free(p);
}

/* ---- the grammar, against a model of accepted history ---- */

#define HIST 4096
static uint16_t hist[HIST];
static unsigned nh;

static uint32_t m_round(void)
{
	uint32_t r = 0;
	for (unsigned i = 0; i < nh; i++)
		r += hist[i] == MFD_PKT_SYNC;
	return r;
}

static uint32_t m_pages(void)
{
	uint32_t p = 0;
	for (unsigned i = nh; i-- > 0;) {
		if (hist[i] == MFD_PKT_SYNC)
			break;
		p += hist[i] == MFD_PKT_PAGES;
	}
	return p;
}

static bool m_synced(void)
{
	for (unsigned i = nh; i-- > 0;)
		if (hist[i] != MFD_PKT_DEVICE)
			return hist[i] == MFD_PKT_SYNC;
	return false;
}

static int m_postcopy(const struct mfd__pkt_hdr *h, bool urgent, uint32_t pcr)
{
	bool known = pcr != MFD_ROUND_UNKNOWN;
	if (!(h->flags & MFD_PKT_F_POSTCOPY))
		return urgent || (known && h->round >= pcr) ? MFD_EFLAGS : 0;
	if (!known)
		return MFD_EUNEXPECTED;
	return h->round == pcr ? 0 : MFD_EROUND;
}

static int expect(const struct mfd__pkt_hdr *h, bool urgent, uint32_t final,
		  uint32_t pcr)
{
	if (nh && hist[nh - 1] == MFD_PKT_DONE)
		return MFD_EUNEXPECTED;
	if (h->seq != nh)
		return MFD_EROUND;
	if (urgent) {
		switch (h->type) {
		case MFD_PKT_PAGES:
			return m_postcopy(h, true, pcr);
		case MFD_PKT_DONE:
			return h->count == m_pages() ? 0 : MFD_ECOUNT;
		case MFD_PKT_SYNC:
		case MFD_PKT_DEVICE:
			return MFD_EUNEXPECTED;
		default:
			return MFD_ETYPE;
		}
	}
	uint32_t last = final < pcr ? final : pcr;
	switch (h->type) {
	case MFD_PKT_PAGES:
		if (h->round != m_round())
			return MFD_EROUND;
		return m_postcopy(h, false, pcr);
	case MFD_PKT_SYNC:
		if (h->round != m_round() ||
		    (last != MFD_ROUND_UNKNOWN && h->round > last))
			return MFD_EROUND;
		return h->count == m_pages() ? 0 : MFD_ECOUNT;
	case MFD_PKT_DEVICE:
		return pcr != MFD_ROUND_UNKNOWN && m_round() >= pcr
			       ? MFD_EUNEXPECTED
			       : 0;
	case MFD_PKT_DONE:
		if (!m_synced() ||
		    (final != MFD_ROUND_UNKNOWN && m_round() != final + 1))
			return MFD_EROUND;
		return 0;
	default:
		return MFD_ETYPE;
	}
}

static void grammar(bool urgent, const uint8_t *data, size_t size)
{
	struct mfd_data_grammar g;
	uint32_t final = MFD_ROUND_UNKNOWN, pcr = MFD_ROUND_UNKNOWN;

	if (urgent)
		mfd__grammar_init_urgent(&g);
	else
		mfd__grammar_init(&g);
	nh = 0;
	for (size_t off = 0; off + 4 <= size; off += 4) {
		const uint8_t *op = data + off;
		unsigned t = op[0] & 7;
		uint32_t round = m_round() + (uint32_t)(int32_t)(int8_t)op[1];
		if (t == 5 || t == 6) {
			if (t == 5)
				pcr = op[1];
			else
				final = op[1];
			continue;
		}
		struct mfd__pkt_hdr h = {
			.magic = MFD_MAGIC_PKT,
			.type = (uint16_t)t,
			.flags = (op[0] & 8) ? MFD_PKT_F_POSTCOPY : 0,
			.round = round,
			.count = m_pages() + (uint32_t)(int32_t)(int8_t)op[2],
			.seq = nh + ((op[0] >> 4) & 1),
		};
		g.final_round = final;
		g.postcopy_round = pcr;
		struct mfd_data_grammar before = g;
		int want = expect(&h, urgent, final, pcr);
		int got = mfd__grammar_step(&g, &h);
		FUZZ_ASSERT(got == want);
		if (got) {
			FUZZ_ASSERT(memcmp(&before, &g, sizeof(g)) == 0);
			continue;
		}
		FUZZ_ASSERT(nh < HIST);
		hist[nh++] = h.type;
		FUZZ_ASSERT(g.seq == nh);
		FUZZ_ASSERT(urgent || g.round == m_round());
	}
}

/* The held pages of block b, re-encoded as the destination sends them
 * (base and round none), decode to the same pages. */
static void held_roundtrip(const struct mfd__rs_src *r, unsigned b,
			   uint8_t *buf, size_t cap)
{
	uint64_t np = r->npages[b], words = (np + 63) / 64;
	uint64_t bits[1] = { 0 }, back[1] = { 0 };
	FUZZ_ASSERT(words == 1); /* at most 16 pages a block here */
	for (uint64_t pg = 0; pg < np; pg++)
		if (r->held[b][pg])
			bits[0] |= 1ULL << pg;
	uint64_t pos = 0;
	while (pos < np) {
		size_t len = mfd__received_encode(bits, np, MFD_ROUND_NONE,
						  MFD_ROUND_NONE, (uint16_t)b,
						  true, &pos, buf, cap);
		struct mfd__received m;
		FUZZ_ASSERT(mfd__received_decode(buf, len, &lim, &m) == 0);
		FUZZ_ASSERT(m.round == MFD_ROUND_NONE);
		mfd__received_apply(&m, back);
	}
	FUZZ_ASSERT(bits[0] == back[0]);
}

static void pc_resume(const uint8_t *p, size_t n)
{
	struct mfd__ramblock rb[4];
	struct mfd__rs_src r;
	struct mfd__pc_src pc;
	memset(rb, 0, sizeof(rb));
	for (unsigned b = 0; b < lim.nblocks; b++) {
		rb[b].size = blocks[b].size;
		rb[b].page_size = blocks[b].page_size;
		rb[b].page_shift = (uint32_t)__builtin_ctz(blocks[b].page_size);
		rb[b].npages = blocks[b].size / blocks[b].page_size;
	}
	if (!n)
		return;
	if (mfd__rs_src_init(&r, rb, lim.nblocks) ||
	    mfd__pc_src_init(&pc, rb, lim.nblocks)) {
		mfd__rs_src_free(&r);
		return;
	}
	/* Pages still to send at the break: the rest was claimed. */
	uint64_t before[4];
	for (unsigned b = 0; b < lim.nblocks; b++) {
		pc.todo[b].words[0] = (0x9e3779b97f4a7c15ULL * (p[0] + b)) &
				      ((1ULL << rb[b].npages) - 1);
		before[b] = pc.todo[b].words[0];
	}
	p++, n--;
	struct mfd__received_seq q = { 0 };
	while (n) {
		size_t len =
			MFD_RECEIVED_FIXED + MFD_RECEIVED_RUN * (p[0] % 32);
		p++, n--;
		if (len > n)
			len = n;
		struct mfd__received m;
		if (!mfd__received_decode(p, len, &lim, &m) &&
		    !mfd__received_next(&q, &m))
			mfd__received_apply_round(&m, r.held[m.block]);
		p += len, n -= len;
	}
	bool pre = false;
	for (unsigned b = 0; b < lim.nblocks; b++)
		for (uint64_t pg = 0; pg < rb[b].npages; pg++)
			pre |= r.held[b][pg] && r.held[b][pg] != UINT32_MAX;
	uint64_t again = 0, want_again = 0, want = 0;
	int64_t left = mfd__rs_src_pc_todo(&r, &pc, &again);
	if (pre) {
		FUZZ_ASSERT(left == MFD_EROUND);
		for (unsigned b = 0; b < lim.nblocks; b++)
			FUZZ_ASSERT(pc.todo[b].words[0] == before[b]);
	} else {
		uint8_t buf[MFD_RECEIVED_FIXED + 8 * MFD_RECEIVED_RUN];
		for (unsigned b = 0; b < lim.nblocks; b++) {
			for (uint64_t pg = 0; pg < rb[b].npages; pg++) {
				bool send = !r.held[b][pg];
				bool t = (pc.todo[b].words[0] >> pg) & 1;
				FUZZ_ASSERT(t == send);
				want += send;
				want_again += send && !((before[b] >> pg) & 1);
			}
			held_roundtrip(&r, b, buf, sizeof(buf));
		}
		FUZZ_ASSERT(left == (int64_t)want && again == want_again);
		FUZZ_ASSERT(mfd__pc_src_left(&pc) == want);
	}
	mfd__pc_src_destroy(&pc);
	mfd__rs_src_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t sel = data[0];
	make_limits(data[1]);
	data += 2;
	size -= 2;
	if (sel >= 0xf0) {
		pc_resume(data, size);
		return 0;
	}
	switch (sel % 4) {
	case 0:
		page_req(data, size);
		break;
	case 1:
		switch_msg(data, size);
		break;
	case 2:
		discard(data, size);
		break;
	default:
		grammar(sel & 4, data, size);
		break;
	}
	return 0;
}
