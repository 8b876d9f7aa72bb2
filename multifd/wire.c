/* SPDX-License-Identifier: MIT */
/*
 * Wire protocol v1 codec. Pure functions: no I/O, no allocation, no global
 * state. docs/protocol.md gives the byte layouts; the offsets below follow
 * the field order of the structs in wire.h.
 *
 * Every decoder reads only the bytes it was given and computes every
 * product or sum of wire values in 64 bits, so arbitrary input yields 0 or
 * a negative MFD_E* code, never an out-of-bounds access or overflow.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "multifd/multifd.h"
#include "multifd/wire.h"
#include "multifd/pcwire.h"
#include "multifd/compress/codec.h"

/* SETUP payload: fixed part, then one descriptor (plus name) per block. */
#define SETUP_FIXED_SIZE 24
#define SETUP_BLOCK_SIZE 16
/* END payload without digests; ERROR payload without text. */
#define END_FIXED_SIZE	 32
#define ERROR_FIXED_SIZE 8

/* A reported error code must be negative, and negatable without overflow. */
static int code_ok(int32_t code)
{
	return code < 0 && code != INT32_MIN;
}

static int page_size_ok(uint32_t ps)
{
	return ps >= MFD_MIN_PAGE_SIZE && ps <= MFD_MAX_PAGE_SIZE &&
	       (ps & (ps - 1)) == 0;
}

/* ---------------------------------------------------------------- */
/* Handshake                                                         */
/* ---------------------------------------------------------------- */

void mfd__hello_encode(const struct mfd__hello *h, uint8_t out[MFD_HELLO_SIZE])
{
	mfd__put_le32(out + 0, h->magic);
	mfd__put_le16(out + 4, h->version);
	mfd__put_le16(out + 6, h->role);
	mfd__put_le16(out + 8, h->channel);
	mfd__put_le16(out + 10, h->nchannels);
	mfd__put_le32(out + 12, h->reserved);
	memcpy(out + 16, h->session, sizeof(h->session));
	mfd__put_le64(out + 32, h->features);
}

/* h is filled in completely even when a check fails, so that a refusal
 * can name what the peer sent. */
int mfd__hello_decode(const uint8_t in[MFD_HELLO_SIZE], struct mfd__hello *h)
{
	h->magic = mfd__get_le32(in + 0);
	h->version = mfd__get_le16(in + 4);
	h->role = mfd__get_le16(in + 6);
	h->channel = mfd__get_le16(in + 8);
	h->nchannels = mfd__get_le16(in + 10);
	h->reserved = mfd__get_le32(in + 12);
	memcpy(h->session, in + 16, sizeof(h->session));
	h->features = mfd__get_le64(in + 32);

	if (h->magic != MFD_MAGIC_HELLO)
		return MFD_EBADMAGIC;
	if (h->version != MFD_PROTO_VERSION)
		return MFD_EVERSION;
	if (h->nchannels < 1 || h->nchannels > MFD_MAX_CHANNELS)
		return MFD_EROLE;
	switch (h->role) {
	case MFD_ROLE_MAIN:
		if (h->channel != 0)
			return MFD_EROLE;
		break;
	case MFD_ROLE_DATA:
		if (h->channel >= h->nchannels)
			return MFD_EROLE;
		break;
	case MFD_ROLE_URGENT:
		if (!(h->features & MFD_FEAT_POSTCOPY) ||
		    h->channel >= MFD_MAX_URGENT_LANES)
			return MFD_EROLE;
		break;
	case MFD_ROLE_RESUME:
		if (!(h->features & MFD_FEAT_RESUME) || h->channel != 0)
			return MFD_EROLE;
		break;
	default:
		return MFD_EROLE;
	}
	if (h->reserved != 0)
		return MFD_EFLAGS;
	if (h->features & ~MFD_FEATURES_KNOWN)
		return MFD_EFEATURE;
	if ((h->features & MFD_FEAT_VERIFY) &&
	    (h->features & MFD_FEAT_POSTCOPY))
		return MFD_EFEATURE;
	return 0;
}

void mfd__hello_reply_encode(const struct mfd__hello_reply *r,
			     uint8_t out[MFD_HELLO_REPLY_SIZE])
{
	mfd__put_le32(out + 0, r->magic);
	mfd__put_le16(out + 4, r->version);
	mfd__put_le16(out + 6, r->status);
	mfd__put_le32(out + 8, (uint32_t)r->error);
	mfd__put_le32(out + 12, r->reserved);
	mfd__put_le64(out + 16, r->features);
}

/*
 * Beyond wire.h: status and error must agree (accepted: error 0; refused:
 * a negative error), else MFD_EFLAGS; accepted features must be known
 * (MFD_EFEATURE). Either would otherwise let a refusal read as success.
 */
int mfd__hello_reply_decode(const uint8_t in[MFD_HELLO_REPLY_SIZE],
			    struct mfd__hello_reply *r)
{
	r->magic = mfd__get_le32(in + 0);
	r->version = mfd__get_le16(in + 4);
	r->status = mfd__get_le16(in + 6);
	r->error = (int32_t)mfd__get_le32(in + 8);
	r->reserved = mfd__get_le32(in + 12);
	r->features = mfd__get_le64(in + 16);

	if (r->magic != MFD_MAGIC_HELLO)
		return MFD_EBADMAGIC;
	if (r->version != MFD_PROTO_VERSION)
		return MFD_EVERSION;
	if (r->reserved != 0 || r->status > 1)
		return MFD_EFLAGS;
	if (r->status == 0 ? r->error != 0 : !code_ok(r->error))
		return MFD_EFLAGS;
	if (r->features & ~MFD_FEATURES_KNOWN)
		return MFD_EFEATURE;
	return 0;
}

/* ---------------------------------------------------------------- */
/* Control header                                                    */
/* ---------------------------------------------------------------- */

void mfd__ctl_hdr_encode(const struct mfd__ctl_hdr *h,
			 uint8_t out[MFD_CTL_HDR_SIZE])
{
	mfd__put_le32(out + 0, h->magic);
	mfd__put_le16(out + 4, h->type);
	mfd__put_le16(out + 6, h->flags);
	mfd__put_le32(out + 8, h->length);
	mfd__put_le32(out + 12, h->reserved);
}

int mfd__ctl_hdr_decode(const uint8_t in[MFD_CTL_HDR_SIZE],
			struct mfd__ctl_hdr *h)
{
	h->magic = mfd__get_le32(in + 0);
	h->type = mfd__get_le16(in + 4);
	h->flags = mfd__get_le16(in + 6);
	h->length = mfd__get_le32(in + 8);
	h->reserved = mfd__get_le32(in + 12);

	if (h->magic != MFD_MAGIC_CTL)
		return MFD_EBADMAGIC;
	if (h->flags != 0 || h->reserved != 0)
		return MFD_EFLAGS;

	switch (h->type) {
	case MFD_CTL_SETUP_OK:
	case MFD_CTL_LOADED:
	case MFD_CTL_COMMIT:
	case MFD_CTL_COMMITTED:
	case MFD_CTL_DISCARDED:
		return h->length == 0 ? 0 : MFD_ELENGTH;
	case MFD_CTL_ROUND:
		return h->length == MFD_ROUND_SIZE ? 0 : MFD_ELENGTH;
	case MFD_CTL_SWITCH:
		return h->length == MFD_SWITCH_SIZE ? 0 : MFD_ELENGTH;
	case MFD_CTL_CHAN_LOST:
		return h->length == MFD_CHAN_LOST_SIZE ? 0 : MFD_ELENGTH;
	case MFD_CTL_PAGE_REQ:
		return h->length == MFD_RANGE_SIZE ? 0 : MFD_ELENGTH;
	case MFD_CTL_RECEIVED:
		return h->length >= MFD_RECEIVED_FIXED &&
				       h->length <= MFD_MAX_CTL_PAYLOAD
			       ? 0
			       : MFD_ELENGTH;
	case MFD_CTL_DISCARD:
	case MFD_CTL_SETUP:
	case MFD_CTL_END:
	case MFD_CTL_ERROR:
	case MFD_CTL_DEVICES:
	case MFD_CTL_DEVICE_DATA:
		return h->length <= MFD_MAX_CTL_PAYLOAD ? 0 : MFD_ELENGTH;
	default:
		return MFD_ETYPE;
	}
}

/* ---------------------------------------------------------------- */
/* SETUP                                                             */
/* ---------------------------------------------------------------- */

static size_t name_len(const struct mfd__block_desc *b)
{
	return strnlen(b->name, sizeof(b->name));
}

size_t mfd__setup_size(const struct mfd__setup *s)
{
	size_t n = SETUP_FIXED_SIZE;

	for (uint32_t i = 0; i < s->nblocks; i++)
		n += SETUP_BLOCK_SIZE + name_len(&s->blocks[i]);
	return n;
}

int mfd__setup_encode(const struct mfd__setup *s, uint8_t *out, size_t cap)
{
	size_t need = mfd__setup_size(s);
	uint8_t *p = out;

	if (need > cap || need > INT_MAX)
		return -ENOSPC;

	mfd__put_le32(p + 0, s->nblocks);
	mfd__put_le32(p + 4, s->packet_pages);
	mfd__put_le32(p + 8, s->nchannels);
	mfd__put_le32(p + 12, (s->zstd_window_log & 0xff) |
				      (s->postcopy_lanes & 0xff) << 8);
	mfd__put_le64(p + 16, s->features);
	p += SETUP_FIXED_SIZE;

	for (uint32_t i = 0; i < s->nblocks; i++) {
		const struct mfd__block_desc *b = &s->blocks[i];
		size_t nl = name_len(b);

		mfd__put_le64(p + 0, b->size);
		mfd__put_le32(p + 8, b->page_size);
		mfd__put_le16(p + 12, (uint16_t)nl);
		mfd__put_le16(p + 14, 0);
		memcpy(p + SETUP_BLOCK_SIZE, b->name, nl);
		p += SETUP_BLOCK_SIZE + nl;
	}
	return (int)need;
}

/*
 * Codes: truncation or trailing bytes MFD_ELENGTH, reserved fields
 * MFD_EFLAGS, unknown features MFD_EFEATURE, any other out-of-range value
 * MFD_ESETUP.
 */
int mfd__setup_decode(const uint8_t *in, size_t len, struct mfd__setup *s,
		      struct mfd__block_desc *blocks)
{
	size_t pos = SETUP_FIXED_SIZE;

	s->nblocks = 0;
	s->blocks = blocks;
	if (len < SETUP_FIXED_SIZE)
		return MFD_ELENGTH;

	s->nblocks = mfd__get_le32(in + 0);
	s->packet_pages = mfd__get_le32(in + 4);
	s->nchannels = mfd__get_le32(in + 8);
	s->features = mfd__get_le64(in + 16);

	if (s->nblocks < 1 || s->nblocks > MFD_MAX_BLOCKS)
		return MFD_ESETUP;
	if (s->packet_pages < 1 || s->packet_pages > MFD_MAX_PACKET_PAGES)
		return MFD_ESETUP;
	if (s->nchannels < 1 || s->nchannels > MFD_MAX_CHANNELS)
		return MFD_ESETUP;
	/* Byte 12 the zstd window log, byte 13 the urgent lanes. */
	uint32_t params = mfd__get_le32(in + 12);
	if (params & ~0xffffu)
		return MFD_EFLAGS;
	if (s->features & ~MFD_FEATURES_KNOWN)
		return MFD_EFEATURE;
	uint32_t codec = params & 0xff;
	s->zstd_window_log = codec;
	s->postcopy_lanes = params >> 8;
	if (codec && (!(s->features & MFD_FEAT_ZSTD) ||
		      codec < MFD_ZSTD_LONG_MIN || codec > MFD_ZSTD_LONG_MAX))
		return MFD_ESETUP;
	if ((s->features & MFD_FEAT_POSTCOPY)
		    ? s->postcopy_lanes < 1 ||
			      s->postcopy_lanes > MFD_MAX_URGENT_LANES
		    : s->postcopy_lanes != 0)
		return MFD_ESETUP;

	for (uint32_t i = 0; i < s->nblocks; i++) {
		struct mfd__block_desc *b = &blocks[i];
		const uint8_t *p = in + pos;
		size_t nl;

		if (len - pos < SETUP_BLOCK_SIZE)
			return MFD_ELENGTH;
		b->size = mfd__get_le64(p + 0);
		b->page_size = mfd__get_le32(p + 8);
		nl = mfd__get_le16(p + 12);
		b->name[0] = '\0';

		if (nl < 1 || nl > MFD_MAX_NAME)
			return MFD_ESETUP;
		if (mfd__get_le16(p + 14) != 0)
			return MFD_EFLAGS;
		if (!page_size_ok(b->page_size))
			return MFD_ESETUP;
		if (b->size == 0 || (b->size & (b->page_size - 1)) != 0)
			return MFD_ESETUP;

		pos += SETUP_BLOCK_SIZE;
		if (len - pos < nl)
			return MFD_ELENGTH;
		if (memchr(in + pos, '\0', nl))
			return MFD_ESETUP;
		memcpy(b->name, in + pos, nl);
		b->name[nl] = '\0';
		pos += nl;

		/* At most 256 * 255 / 2 short compares: cheap enough. */
		for (uint32_t j = 0; j < i; j++)
			if (strcmp(blocks[j].name, b->name) == 0)
				return MFD_ESETUP;
	}
	return pos == len ? 0 : MFD_ELENGTH;
}

/* ---------------------------------------------------------------- */
/* ROUND                                                             */
/* ---------------------------------------------------------------- */

void mfd__round_encode(const struct mfd__round *r, uint8_t out[MFD_ROUND_SIZE])
{
	mfd__put_le32(out + 0, r->round);
	mfd__put_le32(out + 4, r->reserved);
	mfd__put_le64(out + 8, r->pages);
}

int mfd__round_decode(const uint8_t in[MFD_ROUND_SIZE], struct mfd__round *r)
{
	r->round = mfd__get_le32(in + 0);
	r->reserved = mfd__get_le32(in + 4);
	r->pages = mfd__get_le64(in + 8);
	return r->reserved == 0 ? 0 : MFD_EFLAGS;
}

void mfd__round_answer_encode(const struct mfd__round_answer *a,
			      uint8_t out[MFD_ROUND_SIZE])
{
	mfd__put_le32(out + 0, a->round);
	mfd__put_le32(out + 4, a->end_us);
	mfd__put_le64(out + 8, a->cost_ns);
}

int mfd__round_answer_decode(const uint8_t in[MFD_ROUND_SIZE], bool cost,
			     struct mfd__round_answer *a)
{
	a->round = mfd__get_le32(in + 0);
	a->end_us = mfd__get_le32(in + 4);
	a->cost_ns = mfd__get_le64(in + 8);
	if (!cost)
		return a->end_us || a->cost_ns ? MFD_EFLAGS : 0;
	return a->cost_ns <= MFD_MAX_ROUND_COST_NS ? 0 : MFD_EFLAGS;
}

/* ---------------------------------------------------------------- */
/* CHAN_LOST                                                         */
/* ---------------------------------------------------------------- */

void mfd__chan_lost_encode(const struct mfd__chan_lost *m,
			   uint8_t out[MFD_CHAN_LOST_SIZE])
{
	mfd__put_le16(out + 0, m->channel);
	mfd__put_le16(out + 2, m->reserved);
	mfd__put_le32(out + 4, m->round);
}

int mfd__chan_lost_decode(const uint8_t in[MFD_CHAN_LOST_SIZE],
			  uint32_t nchannels, struct mfd__chan_lost *m)
{
	m->channel = mfd__get_le16(in + 0);
	m->reserved = mfd__get_le16(in + 2);
	m->round = mfd__get_le32(in + 4);
	if (m->reserved)
		return MFD_EFLAGS;
	return m->channel < nchannels ? 0 : MFD_EROLE;
}

/* ---------------------------------------------------------------- */
/* END                                                               */
/* ---------------------------------------------------------------- */

size_t mfd__end_size(uint32_t nblocks, int with_digests)
{
	return END_FIXED_SIZE +
	       (with_digests ? (size_t)nblocks * MFD_DIGEST_SIZE : 0);
}

int mfd__end_encode(const struct mfd__end *e, uint8_t *out, size_t cap)
{
	int with = e->digests != NULL;
	size_t need = mfd__end_size(e->nblocks, with);

	if (need > cap || need > INT_MAX)
		return -ENOSPC;

	mfd__put_le32(out + 0, e->final_round);
	mfd__put_le32(out + 4, e->nblocks);
	mfd__put_le64(out + 8, e->total_pages);
	mfd__put_le64(out + 16, e->total_packets);
	mfd__put_le32(out + 24, (uint32_t)with);
	mfd__put_le32(out + 28, 0);
	if (with)
		memcpy(out + END_FIXED_SIZE, e->digests,
		       (size_t)e->nblocks * MFD_DIGEST_SIZE);
	return (int)need;
}

/*
 * Codes: nblocks 0 or > MFD_MAX_BLOCKS MFD_EBLOCK, has_digests not 0/1 or
 * reserved non-zero MFD_EFLAGS, len not exactly the size MFD_ELENGTH.
 */
int mfd__end_decode(const uint8_t *in, size_t len, struct mfd__end *e,
		    uint8_t (*digests)[MFD_DIGEST_SIZE])
{
	uint32_t has;

	e->digests = NULL;
	if (len < END_FIXED_SIZE)
		return MFD_ELENGTH;

	e->final_round = mfd__get_le32(in + 0);
	e->nblocks = mfd__get_le32(in + 4);
	e->total_pages = mfd__get_le64(in + 8);
	e->total_packets = mfd__get_le64(in + 16);
	has = mfd__get_le32(in + 24);

	if (e->nblocks < 1 || e->nblocks > MFD_MAX_BLOCKS)
		return MFD_EBLOCK;
	if (has > 1 || mfd__get_le32(in + 28) != 0)
		return MFD_EFLAGS;
	if (len != mfd__end_size(e->nblocks, (int)has))
		return MFD_ELENGTH;
	if (has) {
		memcpy(digests, in + END_FIXED_SIZE,
		       (size_t)e->nblocks * MFD_DIGEST_SIZE);
		e->digests = digests;
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* ERROR                                                             */
/* ---------------------------------------------------------------- */

int mfd__error_encode(const struct mfd__error_msg *m, uint8_t *out, size_t cap)
{
	size_t tl = strnlen(m->text, MFD_MAX_ERROR_TEXT);

	if (ERROR_FIXED_SIZE + tl > cap)
		return -ENOSPC;
	mfd__put_le32(out + 0, (uint32_t)m->code);
	mfd__put_le32(out + 4, (uint32_t)tl);
	memcpy(out + ERROR_FIXED_SIZE, m->text, tl);
	return (int)(ERROR_FIXED_SIZE + tl);
}

/*
 * Codes: code not in [INT32_MIN + 1, -1] MFD_EREMOTE (the peer did report
 * an error, just not a usable code), text length > MFD_MAX_ERROR_TEXT or
 * len not exactly 8 + text length MFD_ELENGTH.
 */
int mfd__error_decode(const uint8_t *in, size_t len, struct mfd__error_msg *m)
{
	uint32_t tl;

	m->code = 0;
	m->text[0] = '\0';
	if (len < ERROR_FIXED_SIZE)
		return MFD_ELENGTH;

	m->code = (int32_t)mfd__get_le32(in + 0);
	tl = mfd__get_le32(in + 4);
	if (tl > MFD_MAX_ERROR_TEXT || len - ERROR_FIXED_SIZE != tl)
		return MFD_ELENGTH;
	if (!code_ok(m->code))
		return MFD_EREMOTE;

	for (uint32_t i = 0; i < tl; i++) {
		uint8_t c = in[ERROR_FIXED_SIZE + i];

		m->text[i] = (c >= 0x20 && c <= 0x7e) ? (char)c : '?';
	}
	m->text[tl] = '\0';
	return 0;
}

/* ---------------------------------------------------------------- */
/* Data packets                                                      */
/* ---------------------------------------------------------------- */

void mfd__pkt_encode(const struct mfd__pkt_hdr *h,
		     uint8_t out[MFD_PKT_HDR_SIZE])
{
	mfd__put_le32(out + 0, h->magic);
	mfd__put_le16(out + 4, h->type);
	mfd__put_le16(out + 6, h->flags);
	mfd__put_le32(out + 8, h->round);
	mfd__put_le32(out + 12, h->block);
	mfd__put_le32(out + 16, h->count);
	mfd__put_le32(out + 20, h->zero_count);
	mfd__put_le32(out + 24, h->payload_len);
	mfd__put_le32(out + 28, h->seq);
}

int mfd__pkt_decode(const uint8_t in[MFD_PKT_HDR_SIZE], struct mfd__pkt_hdr *h)
{
	h->magic = mfd__get_le32(in + 0);
	h->type = mfd__get_le16(in + 4);
	h->flags = mfd__get_le16(in + 6);
	h->round = mfd__get_le32(in + 8);
	h->block = mfd__get_le32(in + 12);
	h->count = mfd__get_le32(in + 16);
	h->zero_count = mfd__get_le32(in + 20);
	h->payload_len = mfd__get_le32(in + 24);
	h->seq = mfd__get_le32(in + 28);

	if (h->magic != MFD_MAGIC_PKT)
		return MFD_EBADMAGIC;
	if (h->type < MFD_PKT_PAGES || h->type > MFD_PKT_DEVICE)
		return MFD_ETYPE;
	if (h->flags & ~(h->type == MFD_PKT_PAGES ? MFD_PKT_F_KNOWN : 0))
		return MFD_EFLAGS;
	if (h->type == MFD_PKT_DEVICE) /* checked by mfd__devpkt_validate */
		return 0;
	if (h->type != MFD_PKT_PAGES &&
	    (h->block != 0 || h->zero_count != 0 || h->payload_len != 0))
		return MFD_ELENGTH;
	return 0;
}

void mfd__grammar_init(struct mfd_data_grammar *g)
{
	memset(g, 0, sizeof(*g));
	g->final_round = MFD_ROUND_UNKNOWN;
	g->postcopy_round = MFD_ROUND_UNKNOWN;
}

void mfd__grammar_init_urgent(struct mfd_data_grammar *g)
{
	mfd__grammar_init(g);
	g->urgent = true;
}

/* Post-copy rules of a PAGES header (protocol 10.3), both connection
 * kinds: 0 or the refusal's code. */
static int postcopy_pages(const struct mfd_data_grammar *g,
			  const struct mfd__pkt_hdr *h)
{
	bool known = g->postcopy_round != MFD_ROUND_UNKNOWN;

	if (!(h->flags & MFD_PKT_F_POSTCOPY)) {
		if (g->urgent || (known && h->round >= g->postcopy_round))
			return MFD_EFLAGS;
		return 0;
	}
	if (!known)
		return MFD_EUNEXPECTED;
	return h->round == g->postcopy_round ? 0 : MFD_EROUND;
}

/* An urgent lane: hello PAGES* DONE. */
static int urgent_step(struct mfd_data_grammar *g, const struct mfd__pkt_hdr *h)
{
	int ret;

	switch (h->type) {
	case MFD_PKT_PAGES:
		if ((ret = postcopy_pages(g, h)))
			return ret;
		g->round_packets++;
		break;
	case MFD_PKT_DONE:
		if (h->count != g->round_packets)
			return MFD_ECOUNT;
		g->done = true;
		break;
	case MFD_PKT_SYNC:
	case MFD_PKT_DEVICE:
		return MFD_EUNEXPECTED;
	default:
		return MFD_ETYPE;
	}
	g->seq++;
	return 0;
}

/* The last round a SYNC may close: the final round from END, and after
 * SWITCH the post-copy round, whichever is known and lower. */
static uint32_t last_round(const struct mfd_data_grammar *g)
{
	return g->final_round < g->postcopy_round ? g->final_round
						  : g->postcopy_round;
}

int mfd__grammar_step(struct mfd_data_grammar *g, const struct mfd__pkt_hdr *h)
{
	uint32_t last = last_round(g);
	int ret;

	if (g->done)
		return MFD_EUNEXPECTED;
	if (h->seq != g->seq)
		return MFD_EROUND;
	if (g->urgent)
		return urgent_step(g, h);
	switch (h->type) {
	case MFD_PKT_PAGES:
		if (h->round != g->round)
			return MFD_EROUND;
		if ((ret = postcopy_pages(g, h)))
			return ret;
		g->round_packets++;
		g->synced = false;
		break;
	case MFD_PKT_SYNC:
		if (h->round != g->round ||
		    (last != MFD_ROUND_UNKNOWN && h->round > last))
			return MFD_EROUND;
		if (h->count != g->round_packets)
			return MFD_ECOUNT;
		g->round++;
		g->round_packets = 0;
		g->synced = true;
		break;
	case MFD_PKT_DEVICE: /* not part of the rounds */
		if (g->postcopy_round != MFD_ROUND_UNKNOWN &&
		    g->round >= g->postcopy_round)
			return MFD_EUNEXPECTED;
		break;
	case MFD_PKT_DONE:
		if (!g->synced || (g->final_round != MFD_ROUND_UNKNOWN &&
				   g->round != g->final_round + 1))
			return MFD_EROUND;
		g->done = true;
		break;
	default:
		return MFD_ETYPE;
	}
	g->seq++;
	return 0;
}

/* Beyond wire.h: a SYNC or DONE header has nothing to validate against the
 * limits, and passing one here is a caller bug: MFD_ETYPE. */
int mfd__pkt_validate(const struct mfd__pkt_hdr *h,
		      const struct mfd__wire_limits *lim)
{
	uint64_t pages = (uint64_t)h->count + h->zero_count;

	if (h->type != MFD_PKT_PAGES)
		return MFD_ETYPE;
	if ((h->flags & MFD_PKT_F_POSTCOPY) &&
	    !(lim->features & MFD_FEAT_POSTCOPY))
		return MFD_EFLAGS;
	if (h->block >= lim->nblocks)
		return MFD_EBLOCK;
	if (pages < 1 || pages > lim->packet_pages)
		return MFD_ECOUNT;
	uint64_t raw = (uint64_t)h->count * lim->blocks[h->block].page_size;
	if (h->flags & MFD_PKT_F_ZSTD) {
		if (!(lim->features & MFD_FEAT_ZSTD))
			return MFD_EFLAGS;
		if (h->count == 0 || raw > mfd__zstd_max_raw(lim) ||
		    h->payload_len == 0 ||
		    h->payload_len > mfd__zstd_bound(raw))
			return MFD_ELENGTH;
		return 0;
	}
	if ((uint64_t)h->payload_len != raw)
		return MFD_ELENGTH;
	return 0;
}

static uint64_t load_le64(const uint64_t *p)
{
	uint8_t b[8];

	memcpy(b, p, sizeof(b));
	return mfd__get_le64(b);
}

static void store_le64(uint64_t *p, uint64_t v)
{
	uint8_t b[8];

	mfd__put_le64(b, v);
	memcpy(p, b, sizeof(b));
}

/*
 * Beyond wire.h: the normal and the zero offsets must also be disjoint
 * (MFD_EOFFSET), since a page that is both has no defined content. Both
 * runs are sorted, so one merge pass checks it.
 */
int mfd__pkt_offsets_decode(const struct mfd__pkt_hdr *h, uint64_t *offsets,
			    const struct mfd__wire_limits *lim)
{
	const struct mfd__block_desc *b;
	uint64_t mask;
	size_t n, nz, i, j;
	int ret;

	/* Cheap, and it keeps lim->blocks[h->block] in bounds on misuse. */
	ret = mfd__pkt_validate(h, lim);
	if (ret)
		return ret;
	b = &lim->blocks[h->block];
	mask = (uint64_t)b->page_size - 1;
	n = h->count;
	nz = h->zero_count;

	for (i = 0; i < n + nz; i++) {
		uint64_t v = load_le64(&offsets[i]);

		offsets[i] = v;
		if ((v & mask) != 0 || v >= b->size)
			return MFD_EOFFSET;
		if (i != 0 && i != n && v <= offsets[i - 1])
			return MFD_EOFFSET;
	}

	for (i = 0, j = n; i < n && j < n + nz;) {
		if (offsets[i] == offsets[j])
			return MFD_EOFFSET;
		if (offsets[i] < offsets[j])
			i++;
		else
			j++;
	}
	return 0;
}

void mfd__pkt_offsets_encode(uint64_t *offsets, size_t n)
{
	for (size_t i = 0; i < n; i++)
		store_le64(&offsets[i], offsets[i]);
}
