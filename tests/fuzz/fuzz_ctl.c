/* SPDX-License-Identifier: MIT */
/* Control messages on the main channel: a 16-byte header, then the payload
 * decoder its type selects (SETUP, ROUND, END, ERROR, DEVICES,
 * DEVICE_DATA, DISCARD, SWITCH, PAGE_REQ, RECEIVED), on the bytes that follow,
 * cut to the header's length as the receiver does. */
#include <string.h>

#include "fuzz.h"
#include "multifd/multifd.h"
#include "multifd/wire.h"
#include "multifd/devwire.h"
#include "multifd/pcwire.h"
#include "multifd/resume.h"

static struct mfd__block_desc blocks[MFD_MAX_BLOCKS];
static uint8_t digests[MFD_MAX_BLOCKS][MFD_DIGEST_SIZE];
static uint8_t again[MFD_MAX_CTL_PAYLOAD];

static void setup(const uint8_t *p, size_t len)
{
	struct mfd__setup s;
	if (mfd__setup_decode(p, len, &s, blocks))
		return;
	FUZZ_ASSERT(s.nblocks >= 1 && s.nblocks <= MFD_MAX_BLOCKS);
	FUZZ_ASSERT(s.packet_pages >= 1 &&
		    s.packet_pages <= MFD_MAX_PACKET_PAGES);
	for (uint32_t i = 0; i < s.nblocks; i++) {
		uint32_t ps = blocks[i].page_size;
		FUZZ_ASSERT(ps >= MFD_MIN_PAGE_SIZE && !(ps & (ps - 1)));
		FUZZ_ASSERT(blocks[i].size && blocks[i].size % ps == 0);
		size_t n = strlen(blocks[i].name);
		FUZZ_ASSERT(n >= 1 && n <= MFD_MAX_NAME);
	}
	s.blocks = blocks;
	FUZZ_ASSERT(mfd__setup_size(&s) == len);
	int n = mfd__setup_encode(&s, again, sizeof(again));
	FUZZ_ASSERT(n == (int)len && memcmp(again, p, len) == 0);
}

static void end(const uint8_t *p, size_t len)
{
	struct mfd__end e;
	if (mfd__end_decode(p, len, &e, digests))
		return;
	FUZZ_ASSERT(e.nblocks >= 1 && e.nblocks <= MFD_MAX_BLOCKS);
	FUZZ_ASSERT(len == mfd__end_size(e.nblocks, e.digests != NULL));
	int n = mfd__end_encode(&e, again, sizeof(again));
	FUZZ_ASSERT(n == (int)len && memcmp(again, p, len) == 0);
}

static void error(const uint8_t *p, size_t len)
{
	struct mfd__error_msg m;
	if (mfd__error_decode(p, len, &m))
		return;
	FUZZ_ASSERT(m.code < 0);
	size_t n = strlen(m.text);
	FUZZ_ASSERT(n <= MFD_MAX_ERROR_TEXT);
	for (size_t i = 0; i < n; i++)
		FUZZ_ASSERT(m.text[i] >= 0x20 && m.text[i] < 0x7f);
}

static char names[MFD_MAX_DEVICES_WIRE][MFD_MAX_DEV_NAME_WIRE + 1];

static void devices(const uint8_t *p, size_t len)
{
	struct mfd__devices d;
	if (mfd__devices_decode(p, len, &d, names))
		return;
	FUZZ_ASSERT(d.ndevices >= 1 && d.ndevices <= MFD_MAX_DEVICES_WIRE);
	FUZZ_ASSERT(d.chunk_max >= MFD_DEV_CHUNK_MIN &&
		    d.chunk_max <= MFD_DEV_CHUNK_MAX);
	for (uint32_t i = 0; i < d.ndevices; i++) {
		size_t n = strlen(d.names[i]);
		FUZZ_ASSERT(n >= 1 && n <= MFD_MAX_DEV_NAME_WIRE);
		for (uint32_t j = 0; j < i; j++)
			FUZZ_ASSERT(strcmp(d.names[i], d.names[j]));
	}
	FUZZ_ASSERT(mfd__devices_size(&d) == len);
	int n = mfd__devices_encode(&d, again, sizeof(again));
	FUZZ_ASSERT(n == (int)len && memcmp(again, p, len) == 0);
}

/* A DEVICE_DATA chunk against limits taken from its own first byte. */
static void devdata(const uint8_t *p, size_t len)
{
	struct mfd__dev_limits lim = {
		.ndevices = len ? p[0] % 8 + 1u : 1,
		.chunk_max = MFD_DEV_CHUNK_MIN << (len > 1 ? p[1] % 4 : 0),
	};
	struct mfd__devdata m;
	if (mfd__devdata_decode(p, len, &lim, &m))
		return;
	FUZZ_ASSERT(m.device < lim.ndevices);
	FUZZ_ASSERT(!(m.flags & ~MFD_DEVCHUNK_KNOWN));
	FUZZ_ASSERT(m.len <= lim.chunk_max);
	FUZZ_ASSERT(m.len || (m.flags & MFD_DEVCHUNK_LAST));
	FUZZ_ASSERT(m.data == p + MFD_DEVDATA_PREFIX &&
		    MFD_DEVDATA_PREFIX + (size_t)m.len == len);
}

/* Post-copy payloads against fixed limits (fuzz_postcopy varies them). */
static const struct mfd__block_desc pc_blocks[2] = {
	{ .name = "a", .size = 1 << 20, .page_size = 4096 },
	{ .name = "b", .size = 8 << 20, .page_size = 2 << 20 },
};
static const struct mfd__wire_limits pc_lim = {
	.nblocks = 2,
	.packet_pages = 128,
	.blocks = pc_blocks,
	.features = MFD_FEAT_POSTCOPY,
};

static void postcopy(uint16_t type, const uint8_t *p, size_t len)
{
	struct mfd__page_range r;
	struct mfd__switch sw;
	uint32_t n;

	switch (type) {
	case MFD_CTL_SWITCH:
		FUZZ_ASSERT(len == MFD_SWITCH_SIZE);
		if (!mfd__switch_decode(p, &sw))
			FUZZ_ASSERT(sw.round >= 1);
		break;
	case MFD_CTL_PAGE_REQ:
		FUZZ_ASSERT(len == MFD_RANGE_SIZE);
		if (!mfd__page_req_decode(p, &pc_lim, &r))
			FUZZ_ASSERT(r.block < 2 &&
				    r.length <=
					    pc_blocks[r.block].size - r.offset);
		break;
	default: /* MFD_CTL_DISCARD */
		if (!mfd__discard_check(p, len, &pc_lim, &n))
			FUZZ_ASSERT(mfd__discard_size(n) == len);
		break;
	}
}

/* RECEIVED (resume.h) against the post-copy limits above: every run lands
 * inside its block's bitmap (a heap copy of exactly its words: ASan sees
 * a write past it), and the sequence rules hold. */
static void received(const uint8_t *p, size_t len)
{
	struct mfd__received m;
	if (mfd__received_decode(p, len, &pc_lim, &m))
		return;
	const struct mfd__block_desc *b = &pc_blocks[m.block];
	uint64_t npages = b->size / b->page_size;
	FUZZ_ASSERT(m.block < 2 && m.first <= m.end && m.end <= npages);
	FUZZ_ASSERT(len ==
		    MFD_RECEIVED_FIXED + (size_t)m.nruns * MFD_RECEIVED_RUN);
	size_t words = (npages + 63) / 64;
	uint64_t *bits = malloc(words * sizeof(uint64_t));
	if (!bits)
		return;
	memset(bits, 0, words * sizeof(uint64_t));
	mfd__received_apply(&m, bits);
	struct mfd__received_seq q = { 0 };
	FUZZ_ASSERT(mfd__received_next(&q, &m) == 0);
	/* The same message again: it overlaps itself unless it is empty. */
	int twice = mfd__received_next(&q, &m);
	FUZZ_ASSERT(twice == ((m.flags & MFD_RECEIVED_LAST) ? MFD_EUNEXPECTED
			      : m.nruns			    ? MFD_EOFFSET
							    : 0));
	free(bits);
}

/* The same bytes as the payload of a PLACED DEVICE packet (its placement
 * table, devwire.h), against a state memory and chunk size from them. */
static void devplace(const uint8_t *p, size_t len)
{
	if (len < MFD_DEVPLACE_FIXED || len > UINT32_MAX)
		return;
	uint32_t chunk_max = MFD_DEV_CHUNK_MIN << (p[0] % 4);
	uint64_t mem = len > 8 ? (uint64_t)p[8] << 12 : UINT64_MAX;
	struct mfd__devplace pl;
	if (mfd__devplace_decode_fixed(p, 7, (uint32_t)len, &pl))
		return;
	FUZZ_ASSERT(pl.nseg >= 1 && pl.nseg <= MFD_DEVPLACE_MAX_SEGS);
	FUZZ_ASSERT(pl.fence <= 7 && mfd__devplace_size(pl.nseg) <= len);
	if (mfd__devplace_decode_segs(p + MFD_DEVPLACE_FIXED, (uint32_t)len,
				      chunk_max, mem, &pl))
		return;
	uint64_t sum = 0;
	for (uint32_t i = 0; i < pl.nseg; i++) {
		const struct mfd__devseg *g = &pl.seg[i];
		FUZZ_ASSERT(g->len > 0);
		if (g->flags & MFD_DEVSEG_INLINE)
			FUZZ_ASSERT(g->mem_off == 0);
		else
			FUZZ_ASSERT(g->mem_off + g->len <= mem &&
				    g->mem_off + g->len >= g->mem_off);
		sum += g->len;
	}
	FUZZ_ASSERT(sum <= chunk_max &&
		    sum + mfd__devplace_size(pl.nseg) == len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mfd__ctl_hdr h;
	if (size < MFD_CTL_HDR_SIZE || mfd__ctl_hdr_decode(data, &h))
		return 0;
	FUZZ_ASSERT(h.length <= MFD_MAX_CTL_PAYLOAD);
	data += MFD_CTL_HDR_SIZE;
	size -= MFD_CTL_HDR_SIZE;
	/* The receiver reads exactly h.length bytes; a shorter input is a
	 * truncated connection, which never reaches a decoder. */
	if (size < h.length)
		return 0;
	/* Decoders get a heap copy of exactly length bytes, as from
	 * mfd__ctl_recv(), so ASan sees any read past it. */
	uint8_t *p = malloc(h.length ? h.length : 1);
	if (!p)
		return 0;
	memcpy(p, data, h.length);
	switch (h.type) {
	case MFD_CTL_SETUP:
		setup(p, h.length);
		break;
	case MFD_CTL_ROUND: {
		struct mfd__round r;
		FUZZ_ASSERT(h.length == MFD_ROUND_SIZE);
		(void)mfd__round_decode(p, &r);
		/* The destination's answer, with and without round cost. */
		struct mfd__round_answer a;
		for (int cost = 0; cost < 2; cost++)
			if (!mfd__round_answer_decode(p, cost, &a))
				FUZZ_ASSERT(
					cost ? a.cost_ns <=
							MFD_MAX_ROUND_COST_NS
					     : !a.end_us && !a.cost_ns);
		break;
	}
	case MFD_CTL_END:
		end(p, h.length);
		break;
	case MFD_CTL_ERROR:
		error(p, h.length);
		break;
	case MFD_CTL_DEVICES:
		devices(p, h.length);
		break;
	case MFD_CTL_DEVICE_DATA:
		devdata(p, h.length);
		devplace(p, h.length);
		break;
	case MFD_CTL_DISCARD:
	case MFD_CTL_SWITCH:
	case MFD_CTL_PAGE_REQ:
		postcopy(h.type, p, h.length);
		break;
	case MFD_CTL_RECEIVED:
		received(p, h.length);
		break;
	case MFD_CTL_CHAN_LOST: {
		struct mfd__chan_lost m;
		FUZZ_ASSERT(h.length == MFD_CHAN_LOST_SIZE);
		if (!mfd__chan_lost_decode(p, 4, &m))
			FUZZ_ASSERT(m.channel < 4 && !m.reserved);
		break;
	}
	default:
		FUZZ_ASSERT(h.length == 0);
		break;
	}
	free(p);
	return 0;
}
