/* SPDX-License-Identifier: MIT */
/*
 * Writes the seed corpus: valid encodings made by the engine's own encoders,
 * one small file per message, under DIR/<target>/. Run by hand after a wire
 * change (gen_corpus tests/fuzz/corpus) and commit the result.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "multifd/multifd.h"
#include "multifd/wire.h"
#include "multifd/auth.h"
#include "multifd/devwire.h"
#include "multifd/pcwire.h"
#include "multifd/resume.h"
#include "multifd/compress/codec.h"
#include "multifd/channels/rdma_wire.h"
#include "devstate/vdpa_state.h"
#include "multifd/common/le.h"
#include "multifd/fileimg.h"
#include "fileimg_two.h"

static const char *root;

static void put(const char *target, const char *name, const void *buf,
		size_t len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", root, target);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", root, target, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, len, f) != len) {
		perror(path);
		exit(1);
	}
	fclose(f);
}

static size_t ctl(uint8_t *out, uint16_t type, const void *p, uint32_t len)
{
	struct mfd__ctl_hdr h = { .magic = MFD_MAGIC_CTL,
				  .type = type,
				  .length = len };
	mfd__ctl_hdr_encode(&h, out);
	memcpy(out + MFD_CTL_HDR_SIZE, p, len);
	return MFD_CTL_HDR_SIZE + len;
}

static void hello(void)
{
	uint8_t buf[MFD_HELLO_SIZE + MFD_HELLO_REPLY_SIZE];
	struct mfd__hello h = { .magic = MFD_MAGIC_HELLO,
				.version = MFD_PROTO_VERSION,
				.role = MFD_ROLE_MAIN,
				.nchannels = 4,
				.features = MFD_FEAT_VERIFY |
					    MFD_FEAT_VERIFY_CHUNKS |
					    MFD_FEAT_AUTH | MFD_FEAT_COMMIT };
	memset(h.session, 0xa5, sizeof(h.session));
	struct mfd__hello_reply r = { .magic = MFD_MAGIC_HELLO,
				      .version = MFD_PROTO_VERSION,
				      .features = h.features };
	mfd__hello_encode(&h, buf);
	mfd__hello_reply_encode(&r, buf + MFD_HELLO_SIZE);
	put("hello", "main-accepted", buf, sizeof(buf));
	h.role = MFD_ROLE_DATA;
	h.channel = 3;
	h.features = 0;
	r.status = 1;
	r.error = MFD_ESESSION;
	r.features = 0;
	mfd__hello_encode(&h, buf);
	mfd__hello_reply_encode(&r, buf + MFD_HELLO_SIZE);
	put("hello", "data-refused", buf, sizeof(buf));
}

static void control(void)
{
	static uint8_t buf[MFD_CTL_HDR_SIZE + 8192], p[8192];
	struct mfd__block_desc b[3] = {
		{ .name = "pc.ram", .size = 1 << 30, .page_size = 4096 },
		{ .name = "vga.vram", .size = 16 << 20, .page_size = 4096 },
		{ .name = "huge", .size = 1ULL << 31, .page_size = 1u << 21 },
	};
	struct mfd__setup su = { .nblocks = 3,
				 .packet_pages = 128,
				 .nchannels = 2,
				 .features = MFD_FEAT_VERIFY,
				 .blocks = b };
	int n = mfd__setup_encode(&su, p, sizeof(p));
	put("ctl", "setup3", buf, ctl(buf, MFD_CTL_SETUP, p, (uint32_t)n));
	su.nblocks = 1;
	n = mfd__setup_encode(&su, p, sizeof(p));
	put("ctl", "setup1", buf, ctl(buf, MFD_CTL_SETUP, p, (uint32_t)n));

	struct mfd__round r = { .round = 7, .pages = 1234 };
	mfd__round_encode(&r, p);
	put("ctl", "round", buf, ctl(buf, MFD_CTL_ROUND, p, MFD_ROUND_SIZE));

	struct mfd__chan_lost cl = { .channel = 1, .round = 3 };
	mfd__chan_lost_encode(&cl, p);
	put("ctl", "chan-lost", buf,
	    ctl(buf, MFD_CTL_CHAN_LOST, p, MFD_CHAN_LOST_SIZE));

	/* RECEIVED: block 0 of the fuzz target's limits (256 pages), three
	 * runs, the last message. */
	uint64_t rx[256 / 64] = { 0x0ff0, [2] = ~0ULL, [3] = 1ULL << 63 };
	uint64_t rpos = 0;
	n = (int)mfd__received_encode(rx, 256, 4, 5, 0, true, &rpos, p,
				      sizeof(p));
	put("ctl", "received", buf, ctl(buf, MFD_CTL_RECEIVED, p, (uint32_t)n));

	uint8_t dg[3][MFD_DIGEST_SIZE];
	memset(dg, 0x5a, sizeof(dg));
	struct mfd__end e = { .final_round = 3,
			      .nblocks = 3,
			      .total_pages = 99,
			      .total_packets = 9,
			      .digests = dg };
	n = mfd__end_encode(&e, p, sizeof(p));
	put("ctl", "end-digests", buf, ctl(buf, MFD_CTL_END, p, (uint32_t)n));
	e.digests = NULL;
	n = mfd__end_encode(&e, p, sizeof(p));
	put("ctl", "end", buf, ctl(buf, MFD_CTL_END, p, (uint32_t)n));

	struct mfd__error_msg m = { .code = MFD_EOFFSET };
	snprintf(m.text, sizeof(m.text), "destination: bad offset");
	n = mfd__error_encode(&m, p, sizeof(p));
	put("ctl", "error", buf, ctl(buf, MFD_CTL_ERROR, p, (uint32_t)n));
	put("ctl", "setup-ok", buf, ctl(buf, MFD_CTL_SETUP_OK, p, 0));
	put("ctl", "loaded", buf, ctl(buf, MFD_CTL_LOADED, p, 0));
	put("ctl", "commit", buf, ctl(buf, MFD_CTL_COMMIT, p, 0));
	put("ctl", "committed", buf, ctl(buf, MFD_CTL_COMMITTED, p, 0));

	static char names[2][MFD_MAX_DEV_NAME_WIRE + 1] = { "vfio-0000:3b:00.0",
							    "virtio-net" };
	struct mfd__devices dv = { .ndevices = 2,
				   .transfer = MFD_DEV_XFER_MULTIFD,
				   .chunk_max = 1 << 16,
				   .names = names };
	n = mfd__devices_encode(&dv, p, sizeof(p));
	if (n < 0)
		exit(1);
	put("ctl", "devices", buf, ctl(buf, MFD_CTL_DEVICES, p, (uint32_t)n));
	/* Chunk 3 of device 1, last, 8 bytes; limits from its first bytes:
	 * device 1 < (1 % 8 + 1) devices, chunk_max 4096. */
	struct mfd__devdata dd = { .device = 1,
				   .seq = 3,
				   .flags = MFD_DEVCHUNK_LAST };
	mfd__devdata_prefix_encode(&dd, p);
	memcpy(p + MFD_DEVDATA_PREFIX, "devstate", 8);
	put("ctl", "device-data", buf,
	    ctl(buf, MFD_CTL_DEVICE_DATA, p, MFD_DEVDATA_PREFIX + 8));
}

/* Limits prefix as fuzz_pages.c reads it: one block. */
static size_t limits(uint8_t *out, uint8_t shift, uint32_t pages,
		     uint16_t packet_pages)
{
	out[0] = 0; /* one block */
	out[1] = (uint8_t)(shift - 12);
	mfd__put_le32(out + 2, pages);
	mfd__put_le16(out + 6, (uint16_t)(packet_pages - 1));
	return 8;
}

static void pages(void)
{
	uint8_t buf[8 + MFD_PKT_HDR_SIZE + 16 * 8];
	size_t n = limits(buf, 12, 1024, 128);
	struct mfd__pkt_hdr h = { .magic = MFD_MAGIC_PKT,
				  .type = MFD_PKT_PAGES,
				  .round = 1,
				  .count = 3,
				  .zero_count = 2,
				  .payload_len = 3 * 4096,
				  .seq = 5 };
	mfd__pkt_encode(&h, buf + n);
	uint64_t off[5] = { 0, 4096, 3 * 4096, 2 * 4096, 100 * 4096 };
	mfd__pkt_offsets_encode(off, 5);
	memcpy(buf + n + MFD_PKT_HDR_SIZE, off, sizeof(off));
	put("pages", "pages-mixed", buf, n + MFD_PKT_HDR_SIZE + sizeof(off));

	n = limits(buf, 21, 8, 4);
	h.count = 1;
	h.zero_count = 0;
	h.payload_len = 1u << 21;
	mfd__pkt_encode(&h, buf + n);
	off[0] = 7ULL << 21;
	mfd__pkt_offsets_encode(off, 1);
	memcpy(buf + n + MFD_PKT_HDR_SIZE, off, 8);
	put("pages", "pages-huge", buf, n + MFD_PKT_HDR_SIZE + 8);

	h = (struct mfd__pkt_hdr){ .magic = MFD_MAGIC_PKT,
				   .type = MFD_PKT_SYNC,
				   .round = 2,
				   .count = 10,
				   .seq = 11 };
	n = limits(buf, 12, 16, 16);
	mfd__pkt_encode(&h, buf + n);
	put("pages", "sync", buf, n + MFD_PKT_HDR_SIZE);
}

static void auth(void)
{
	uint8_t buf[MFD_AUTH_MSG_SIZE * 3];
	struct mfd__auth_msg m = { .magic = MFD_MAGIC_AUTH,
				   .type = MFD_AUTH_CHALLENGE };
	memset(m.nonce, 0x11, sizeof(m.nonce));
	mfd__auth_msg_encode(&m, buf);
	m.type = MFD_AUTH_RESPONSE;
	memset(m.nonce, 0x22, sizeof(m.nonce));
	memset(m.mac, 0x33, sizeof(m.mac));
	mfd__auth_msg_encode(&m, buf + MFD_AUTH_MSG_SIZE);
	m.type = MFD_AUTH_CONFIRM;
	memset(m.nonce, 0, sizeof(m.nonce));
	memset(m.mac, 0x44, sizeof(m.mac));
	mfd__auth_msg_encode(&m, buf + 2 * MFD_AUTH_MSG_SIZE);
	put("auth", "exchange", buf, sizeof(buf));
	put("auth", "challenge", buf, MFD_AUTH_MSG_SIZE);
	/* A key file as auth_key_parse() reads it. */
	static const char hex[] = "00112233445566778899aabbccddeeff"
				  "00112233445566778899aabbccddeeff\n";
	put("auth", "key-hex", hex, sizeof(hex) - 1);
}

/* fuzz_decompress: one channel's stream of compressed PAGES packets, made
 * by the source's codec, so the seeds reach the decoder's inner paths. */
static void decompress(void)
{
	static uint8_t buf[3 + 3 * (MFD_PKT_HDR_SIZE + 4 * 8 + 20000)];
	static uint8_t page[4][4096];
	struct mfd__codec c = { .ops = &mfd__codec_zstd };
	if (c.ops->setup(&c, 8 * 4096, 1, 0))
		exit(1);
	buf[0] = 0;  /* 4 KiB pages, wire mode */
	buf[1] = 15; /* 16 pages */
	buf[2] = 7;  /* packet_pages 8 */
	size_t n = 3;
	for (unsigned p = 0; p < 3; p++) {
		uint8_t *pages[4];
		uint32_t cnt = p + 1;
		for (uint32_t i = 0; i < cnt; i++) {
			for (uint32_t j = 0; j < 4096; j++)
				page[i][j] = (uint8_t)(j % (7 + i + p) * 3);
			pages[i] = page[i];
		}
		size_t clen;
		if (c.ops->compress(&c, pages, cnt, 4096, &clen))
			exit(1);
		struct mfd__pkt_hdr h = { .magic = MFD_MAGIC_PKT,
					  .type = MFD_PKT_PAGES,
					  .flags = MFD_PKT_F_ZSTD,
					  .round = 1,
					  .count = cnt,
					  .payload_len = (uint32_t)clen,
					  .seq = p };
		mfd__pkt_encode(&h, buf + n);
		n += MFD_PKT_HDR_SIZE;
		uint64_t off[4];
		for (uint32_t i = 0; i < cnt; i++) /* 5, 6 gap 8, ... */
			off[i] = (uint64_t)(5 * p + i + (i > 1)) * 4096;
		mfd__pkt_offsets_encode(off, cnt);
		memcpy(buf + n, off, cnt * 8);
		n += cnt * 8;
		memcpy(buf + n, c.out, clen);
		n += clen;
		if (p == 0)
			put("decompress", "one-packet", buf, n);
	}
	put("decompress", "three-packets", buf, n);
	/* The same stream with one payload byte changed. */
	buf[3 + MFD_PKT_HDR_SIZE + 8 + 6] ^= 0x40;
	put("decompress", "corrupt", buf, n);
	c.ops->teardown(&c);

	/* Round-trip mode: 8 KiB pages, 8 pages, packet_pages 8. */
	static const uint8_t rt[] = {
		0x81, 7, 7,
		/* 2 pages at 1, split after 1, 4 bytes of data */
		1, 1, 1, 4, 0, 'a', 'b', 'c', 'd',
		/* 1 page at 6, zeros */
		0, 6, 0, 0, 0,
		/* 4 pages at 3, no split, 16 bytes */
		3, 3, 0, 16, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
		14, 15
	};
	put("decompress", "roundtrip", rt, sizeof(rt));
}

/* fuzz_reorder: op u8, dev u8, seq u16 (relative), len u16. */
static void reorder(void)
{
	uint8_t buf[4 + 6 * 32];
	size_t n = 0;
#define OP(o, d, s, l)                                                         \
	do {                                                                   \
		buf[n] = (o), buf[n + 1] = (d);                                \
		mfd__put_le16(buf + n + 2, (s));                               \
		mfd__put_le16(buf + n + 4, (l));                               \
		n += 6;                                                        \
	} while (0)
	/* 2 devices, max_chunk 64, bound 128 + 64, window 8. */
	buf[0] = 1, buf[1] = 63, buf[2] = 16, buf[3] = 7;
	n = 4;
	OP(0, 0, 1, 64);   /* dev 0 chunk 1 reserved, out of order */
	OP(1, 1, 0, 10);   /* dev 1 chunk 0 reserved and committed */
	OP(2, 0, 0, 0);	   /* commit dev 0 chunk 1 */
	OP(1, 0, 0, 30);   /* dev 0 chunk 0 */
	OP(4, 0, 0, 0);	   /* load dev 0: chunk 0 */
	OP(4, 0, 0, 0);	   /* load dev 0: chunk 1 */
	OP(5, 0, 0, 0);	   /* release one */
	OP(0x41, 0, 0, 0); /* dev 0 chunk 2: last, empty */
	OP(4, 0, 0, 0);	   /* load it: dev 0 done */
	OP(4, 1, 0, 0);	   /* load dev 1 chunk 0 */
	OP(0x41, 1, 1, 5); /* dev 1 chunk 1 last */
	OP(4, 1, 0, 0);
	OP(7, 0, 0, 0); /* stats */
	OP(5, 0, 0, 0);
	OP(5, 1, 0, 0);
	put("reorder", "two-devices", buf, n);
	/* Refusals: a duplicate, outside the window, past the last. */
	n = 4;
	OP(1, 0, 0, 8);
	OP(1, 0, 0, 8);	   /* duplicate */
	OP(1, 0, 8, 8);	   /* window 8: refused */
	OP(0x41, 0, 2, 8); /* last is 2 */
	OP(1, 0, 3, 8);	   /* past the last */
	OP(0x80, 0, 0, 8); /* absolute seq 0: duplicate */
	OP(1, 4, 0, 8);	   /* no such device */
	OP(1, 0, 1, 65);   /* too long */
	OP(3, 0, 0, 0);	   /* drop the reserved last */
	OP(6, 0xab, 0, 0); /* abort */
	OP(1, 0, 1, 8);
	OP(4, 0, 0, 0);
	put("reorder", "refusals", buf, n);
	/* The bound: chunks until the reserve is reached. */
	n = 4;
	for (unsigned i = 1; i < 6; i++)
		OP(1, 0, i, 64);
	OP(1, 0, 0, 64); /* fits through the reserve */
	for (unsigned i = 0; i < 6; i++) {
		OP(4, 0, 0, 0);
		OP(5, 0, 0, 0);
	}
	put("reorder", "bound", buf, n);
#undef OP
}

/* fuzz_grammar: u8 channels - 1, then op u8 (channel | type << 2 | seq off
 * << 5), round delta i8, count delta i8, spare. */
static void grammar(void)
{
	uint8_t buf[1 + 4 * 64];
	size_t n = 0;
#define OP(c, t, r, k)                                                         \
	do {                                                                   \
		buf[n] = (uint8_t)((c) | (t) << 2), buf[n + 1] = (uint8_t)(r); \
		buf[n + 2] = (uint8_t)(k), buf[n + 3] = 0;                     \
		n += 4;                                                        \
	} while (0)
	enum {
		P = MFD_PKT_PAGES,
		S = MFD_PKT_SYNC,
		D = MFD_PKT_DONE,
		V = MFD_PKT_DEVICE,
		END = 7
	};
	/* Two channels, two rounds, a device chunk before DONE, END. */
	buf[0] = 1;
	n = 1;
	OP(0, P, 0, 0);
	OP(1, P, 0, 0);
	OP(0, S, 0, 0);
	OP(1, S, 0, 0);
	OP(0, P, 0, 0);
	OP(0, S, 0, 0);
	OP(1, S, 0, 0);
	OP(0, END, 1, 0);
	OP(0, V, 0, 0);
	OP(0, D, 0, 0);
	OP(1, D, 0, 0);
	put("grammar", "session", buf, n);
	/* Refusals: DONE without SYNC, SYNC with a wrong count or round,
	 * SYNC after END's final round, anything after DONE, bad seq. */
	n = 1;
	OP(0, D, 0, 0);
	OP(0, P, 0, 0);
	OP(0, S, 0, 1);
	OP(0, S, 1, 0);
	OP(0, S, 0, 0);
	OP(0, END, 0, 0);
	OP(0, S, 0, 0);
	OP(0x20, P, 0, 0); /* seq off by one */
	OP(0, D, 0, 0);
	OP(0, P, 0, 0);
	OP(1, 5, 0, 0);
	OP(1, 0, 0, 0);
	put("grammar", "refusals", buf, n);
#undef OP
}

/* fuzz_postcopy: u8 selector, u8 limits, then the message or grammar ops
 * (op u8 type | POSTCOPY << 3 | seq off << 4, round delta, count delta,
 * spare). Limits 0xcd: two blocks, 4 pages of 4 KiB and 7 of 8 KiB,
 * packet_pages 4. In fuzz_ctl: the same messages as control messages. */
static void postcopy(void)
{
	static uint8_t buf[MFD_CTL_HDR_SIZE + 256], p[256];
	const uint8_t lim = 0xcd;
	size_t n;

	struct mfd__page_range req = { 0, 4096, 8192 };
	p[0] = 0, p[1] = lim;
	mfd__page_req_encode(&req, p + 2);
	put("postcopy", "page-req", p, 2 + MFD_RANGE_SIZE);
	put("ctl", "page-req", buf,
	    ctl(buf, MFD_CTL_PAGE_REQ, p + 2, MFD_RANGE_SIZE));

	struct mfd__switch sw = { .round = 3, .pages = 1000 };
	p[0] = 1;
	mfd__switch_encode(&sw, p + 2);
	put("postcopy", "switch", p, 2 + MFD_SWITCH_SIZE);
	put("ctl", "switch", buf,
	    ctl(buf, MFD_CTL_SWITCH, p + 2, MFD_SWITCH_SIZE));

	const struct mfd__page_range dr[3] = { { 0, 0, 4096 },
					       { 0, 8192, 8192 },
					       { 1, 0, 7 * 8192 } };
	p[0] = 2;
	int k = mfd__discard_encode(dr, 3, p + 2, sizeof(p) - 2);
	if (k < 0)
		exit(1);
	put("postcopy", "discard", p, 2 + (size_t)k);
	put("ctl", "discard", buf,
	    ctl(buf, MFD_CTL_DISCARD, p + 2, (uint32_t)k));

#define OP(t, f, r, c)                                                         \
	do {                                                                   \
		p[n] = (uint8_t)((t) | (f) << 3), p[n + 1] = (uint8_t)(r);     \
		p[n + 2] = (uint8_t)(c), p[n + 3] = 0;                         \
		n += 4;                                                        \
	} while (0)
	enum {
		P = MFD_PKT_PAGES,
		S = MFD_PKT_SYNC,
		D = MFD_PKT_DONE,
		V = MFD_PKT_DEVICE,
		SW = 5
	};
	/* A bulk connection: a pre-copy round, the switch, the post-copy
	 * round, with one refusal of each kind on the way. */
	p[0] = 3, n = 2;
	OP(P, 0, 0, 0);
	OP(S, 0, 0, 0);
	OP(P, 1, 0, 0); /* flagged before SWITCH */
	OP(SW, 0, 1, 0);
	OP(P, 0, 0, 0); /* unflagged in the post-copy round */
	OP(P, 1, 0, 0);
	OP(V, 0, 0, 0); /* device state after the switch */
	OP(P, 1, 0, 0);
	OP(S, 0, 0, 0);
	OP(P, 1, 0, 0); /* a round after the post-copy one */
	OP(D, 0, 0, 0);
	put("postcopy", "bulk", p, n);
	/* An urgent lane. */
	p[0] = 7, n = 2;
	OP(P, 1, 2, 0);
	OP(SW, 0, 2, 0);
	OP(P, 1, 2, 0);
	OP(P, 0, 2, 0);
	OP(P, 1, 1, 0);
	OP(S, 0, 0, 0);
	OP(D, 0, 0, 1);
	OP(D, 0, 0, 0);
	put("postcopy", "urgent", p, n);
#undef OP
}

/* fuzz_rdma: byte 0 = credits the receiver can take back, then the
 * message. */
static size_t rdma_msg(uint8_t *out, uint8_t room, uint16_t type,
		       uint16_t credits, const void *payload, uint32_t len)
{
	struct mfd__rdma_hdr h = { .type = type,
				   .credits = credits,
				   .len = len };
	out[0] = room;
	mfd__rdma_hdr_encode(&h, out + 1);
	if (len)
		memcpy(out + 1 + MFD__RDMA_HDR_SIZE, payload, len);
	return 1 + MFD__RDMA_HDR_SIZE + len;
}

static void rdma(void)
{
	static uint8_t buf[1 + MFD__RDMA_HDR_SIZE +
			   MFD__RDMA_MAX_REGIONS * MFD__RDMA_REGION_SIZE];
	uint8_t table[3 * MFD__RDMA_REGION_SIZE], data[64];
	struct mfd__rdma_region r[3] = {
		{ .addr = 0x7f0000000000ULL, .len = 1ULL << 30, .rkey = 7 },
		{ .addr = 0x7f8000000000ULL, .len = 16 << 20, .rkey = 8 },
		{ .addr = 0x200000, .len = 1ULL << 31, .rkey = 0xfffffff0 },
	};
	mfd__rdma_regions_encode(r, 3, table);
	put("rdma", "regions", buf,
	    rdma_msg(buf, 16, MFD__RDMA_REGIONS, 0, table, sizeof(table)));
	put("rdma", "credit", buf,
	    rdma_msg(buf, 16, MFD__RDMA_CREDIT, 8, NULL, 0));
	put("rdma", "fence", buf,
	    rdma_msg(buf, 3, MFD__RDMA_FENCE, 1, NULL, 0));
	for (unsigned i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 37);
	put("rdma", "data", buf,
	    rdma_msg(buf, 5, MFD__RDMA_DATA, 2, data, sizeof(data)));
	/* Refused: more credits than the receiver gave out. */
	put("rdma", "credits-lie", buf,
	    rdma_msg(buf, 1, MFD__RDMA_CREDIT, 2, NULL, 0));
}

/* fuzz_vdpa: vDPA device states, with and without control commands, and
 * one cut short. */
static void vdpa(void)
{
	static struct mfd__vdpa_state s;
	static uint8_t buf[MFD_VDPA_STATE_MAX];
	const char *why;
	uint8_t mac[6] = { 0x52, 0x54, 0, 1, 2, 3 }, on = 1, two[2] = { 2, 0 };
	uint8_t table[4 + 6 + 4 + 12] = {
		1, 0, 0, 0, 0x52, 0x54, 0, 9, 9, 9, 2
	};
	uint8_t off[8] = { 1 << 1 }; /* GUEST_CSUM */
	memset(&s, 0, sizeof(s));
	s.features = 1ULL << 32 | 1ULL << 5; /* VERSION_1, MAC */
	memcpy(s.mac, mac, 6);
	s.nvqs = 2;
	s.vq[0] = (struct mfd__vdpa_vq){ 0, 256, 17, 17 };
	s.vq[1] = (struct mfd__vdpa_vq){ 1, 256, 4, 2 };
	put("vdpa", "plain", buf, mfd__vdpa_state_encode(&s, buf, sizeof(buf)));
	/* MQ with two pairs, control queue, every command kind. */
	s.features |= 1ULL << 22 | 1ULL << 17 | 1ULL << 18 | 1ULL << 20 |
		      1ULL << 23 | 1ULL << 2 | 1ULL << 1 | 1ULL << 3 |
		      1ULL << 16;
	s.max_vq_pairs = 2;
	s.mtu = 1500;
	s.status = 1;
	s.nvqs = 5;
	for (unsigned i = 0; i < 5; i++)
		s.vq[i] = (struct mfd__vdpa_vq){ (uint16_t)i, 256,
						 (uint16_t)(65530 + i),
						 (uint16_t)(65530 + i) };
	s.vq[4].num = 64;
	if (mfd__vdpa_ctrl_apply(&s.ctrl, s.features, 2, 1, 1, mac, 6, &why) ||
	    mfd__vdpa_ctrl_apply(&s.ctrl, s.features, 2, 4, 0, two, 2, &why) ||
	    mfd__vdpa_ctrl_apply(&s.ctrl, s.features, 2, 0, 1, &on, 1, &why) ||
	    mfd__vdpa_ctrl_apply(&s.ctrl, s.features, 2, 0, 5, &on, 1, &why) ||
	    mfd__vdpa_ctrl_apply(&s.ctrl, s.features, 2, 1, 0, table,
				 sizeof(table), &why) ||
	    mfd__vdpa_ctrl_apply(&s.ctrl, s.features, 2, 5, 0, off, 8, &why)) {
		fprintf(stderr, "vdpa: %s\n", why);
		exit(1);
	}
	size_t n = mfd__vdpa_state_encode(&s, buf, sizeof(buf));
	put("vdpa", "control", buf, n);
	put("vdpa", "cut", buf, n - 3);
}

/* fuzz_fileimg: u8 selector, then a header (re-sealed: bit 4), a bitmap
 * (u32 npages first), an end record of the target's two-block header, or a
 * device record. */
static void fileimg(void)
{
	static struct mfd__fimg_hdr h;
	static uint8_t p[1 + 8192];
	fimg_two_blocks(&h);
	p[0] = 0x00;
	mfd__fimg_header_encode(&h, p + 1);
	put("fileimg", "header", p, 1 + 4096);
	p[0] = 0x10 | 0x20; /* re-sealed, with an end record in 1 MiB */
	mfd__fimg_header_set_end(p + 1, h.dev_off);
	put("fileimg", "header-end", p, 1 + 4096);
	p[0] = 0x01;
	mfd__put_le32(p + 1, 1000);
	memset(p + 5, 0xff, 125);
	p[5 + 124] = 0x00;
	put("fileimg", "bitmap", p, 5 + 125);
	static struct mfd__fimg_end e;
	e.nblocks = 2;
	e.ndevices = 1;
	e.dev_len = 4096;
	e.blocks[0].present = 10;
	e.blocks[0].ram[0] = 0xab;
	p[0] = 0x02;
	mfd__fimg_end_encode(&e, p + 1);
	put("fileimg", "end", p, 1 + 4096);
	struct mfd__fimg_dev d = { .name = "simdev", .index = 0, .len = 24 };
	p[0] = 0x03;
	mfd__fimg_dev_encode(&d, p + 1);
	memset(p + 1 + MFD__FIMG_DEV_REC, 0x5a, 24);
	put("fileimg", "device", p, 1 + MFD__FIMG_DEV_REC + 24);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	root = argv[1];
	if (mkdir(root, 0755) && errno != EEXIST) {
		perror(root);
		return 1;
	}
	hello();
	control();
	pages();
	auth();
	decompress();
	reorder();
	grammar();
	rdma();
	postcopy();
	vdpa();
	fileimg();
	return 0;
}
