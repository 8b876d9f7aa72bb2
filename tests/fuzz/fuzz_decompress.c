/* SPDX-License-Identifier: MIT */
/*
 * The destination's zstd path: compressed PAGES packets as recv_pages()
 * handles them, with one decompression context for the whole input (as one
 * channel keeps it for the whole migration). Input:
 *
 *   u8  page shift 12 + (x & 3) % 3; bit 7 set: round-trip mode (below)
 *   u8  pages in the block - 1 (mod 32)
 *   u8  packet_pages - 1 (mod 32)
 *   then packets: 32-byte header, offsets, payload_len bytes of payload
 *   (the input ends a packet early: a truncated connection, stop).
 *
 * Every packet must pass the same checks as on the wire (decode, validate
 * with MFD_FEAT_ZSTD negotiated, offsets) before its payload is copied into
 * the codec's buffer and decompressed into the pages it names, grouped in
 * iovecs as recv_pages() groups them. Checked: the payload never exceeds
 * the codec's buffer, and whatever the payload, no byte of guest memory
 * outside the named pages changes (ASan sees writes outside the block).
 * After a failure the context is not used again in this input, as in the
 * engine (the next input resets it).
 *
 * Round-trip mode: each record is u8 pages - 1, u8 first page, u8 split,
 * u16 data length, data; the pages are filled from the data (repeated),
 * compressed by the source's codec, checked against the wire bound and
 * validation, decompressed by the destination's, and must come back
 * byte-for-byte.
 */
#include <string.h>
#include <zstd.h>

#include "fuzz.h"
#include "multifd/multifd.h"
#include "multifd/wire.h"
#include "multifd/compress/codec.h"

#define MAX_PAGES 32

struct ctx {
	struct mfd__block_desc blk;
	struct mfd__wire_limits lim;
	uint8_t *host;
	uint32_t npages, psize;
	struct mfd__codec dc; /* the destination's, for the whole input */
};

/*
 * The codecs are set up once for the largest packet and reset for every
 * input (a fresh stream, same parameters): setting up zstd contexts per
 * input would cost most of the run. The buffer bound is checked against
 * the input's own limits instead.
 */
static struct mfd__codec dcodec = { .ops = &mfd__codec_zstd };
static struct mfd__codec scodec = { .ops = &mfd__codec_zstd };

static int codecs_setup(void)
{
	static int state; /* 0 not yet, 1 ready, -1 failed */
	if (!state) {
		size_t max = (size_t)MAX_PAGES * MFD_MIN_PAGE_SIZE;
		state = dcodec.ops->setup(&dcodec, max, 1, 0) ||
					scodec.ops->setup(&scodec, max, 1, 0)
				? -1
				: 1;
	}
	if (state < 0)
		return -1;
	ZSTD_DCtx_reset(dcodec.dctx, ZSTD_reset_session_only);
	ZSTD_CCtx_reset(scodec.cctx, ZSTD_reset_session_only);
	return 0;
}

/* Pattern of page pg outside any packet: distinct per page. */
static uint8_t pat(uint32_t pg)
{
	return (uint8_t)(0xa5 ^ (pg * 37));
}

static void fill_others(struct ctx *x, const bool *named)
{
	for (uint32_t pg = 0; pg < x->npages; pg++)
		if (!named[pg])
			memset(x->host + (size_t)pg * x->psize, pat(pg),
			       x->psize);
}

static void check_others(struct ctx *x, const bool *named)
{
	for (uint32_t pg = 0; pg < x->npages; pg++) {
		if (named[pg])
			continue;
		static uint8_t want[1u << 14];
		memset(want, pat(pg), x->psize);
		FUZZ_ASSERT(memcmp(x->host + (size_t)pg * x->psize, want,
				   x->psize) == 0);
	}
}

/* Contiguous pages as one iovec, as recv_pages() builds them. */
static int make_iov(struct ctx *x, const uint64_t *off, uint32_t count,
		    struct iovec *iov, bool *named)
{
	int iovcnt = 0;
	uint8_t *prev_end = NULL;
	for (uint32_t i = 0; i < count; i++) {
		uint8_t *page = x->host + off[i];
		named[off[i] / x->psize] = true;
		if (page == prev_end) {
			iov[iovcnt - 1].iov_len += x->psize;
		} else {
			iov[iovcnt].iov_base = page;
			iov[iovcnt].iov_len = x->psize;
			iovcnt++;
		}
		prev_end = page + x->psize;
	}
	return iovcnt;
}

/* Packets from the wire. Returns after the first refusal or failure. */
static void wire_mode(struct ctx *x, const uint8_t *data, size_t size)
{
	uint64_t off[MFD_MAX_PACKET_PAGES];
	struct iovec iov[MAX_PAGES];
	while (size >= MFD_PKT_HDR_SIZE) {
		struct mfd__pkt_hdr h;
		if (mfd__pkt_decode(data, &h) || h.type != MFD_PKT_PAGES ||
		    !(h.flags & MFD_PKT_F_ZSTD) ||
		    mfd__pkt_validate(&h, &x->lim))
			return;
		data += MFD_PKT_HDR_SIZE, size -= MFD_PKT_HDR_SIZE;
		size_t olen = mfd__pkt_offsets_size(&h);
		FUZZ_ASSERT(olen <= sizeof(off));
		FUZZ_ASSERT(h.payload_len <=
			    mfd__zstd_bound(mfd__zstd_max_raw(&x->lim)));
		if (size < olen + h.payload_len)
			return;
		memcpy(off, data, olen);
		data += olen, size -= olen;
		if (mfd__pkt_offsets_decode(&h, off, &x->lim))
			return;
		FUZZ_ASSERT(h.count <= x->npages);
		bool named[MAX_PAGES] = { false };
		int iovcnt = make_iov(x, off, h.count, iov, named);
		fill_others(x, named);
		/* Into the codec's own buffer, as recv() puts it there. */
		memcpy(x->dc.out, data, h.payload_len);
		int ret = x->dc.ops->decompress(&x->dc, x->dc.out,
						h.payload_len, iov, iovcnt);
		FUZZ_ASSERT(ret == 0 || ret == MFD_ECOMPRESS);
		check_others(x, named);
		if (ret)
			return;
		data += h.payload_len, size -= h.payload_len;
	}
}

/* Source codec -> destination codec, must round-trip exactly. */
static void roundtrip_mode(struct ctx *x, const uint8_t *data, size_t size)
{
	struct mfd__codec sc = scodec;
	uint8_t *ref = malloc((size_t)x->npages * x->psize);
	uint8_t *pages[MAX_PAGES];
	struct iovec iov[MAX_PAGES];
	while (ref && size >= 5) {
		uint32_t n = data[0] % x->lim.packet_pages + 1u;
		uint32_t first = data[1] % x->npages;
		uint32_t split = data[2];
		size_t dlen = mfd__get_le16(data + 3);
		data += 5, size -= 5;
		if (dlen > size)
			dlen = size;
		if (first + n > x->npages)
			n = x->npages - first;
		/* The source never puts more than the bound in a packet. */
		if ((uint64_t)n * x->psize > mfd__zstd_max_raw(&x->lim))
			n = (uint32_t)(mfd__zstd_max_raw(&x->lim) / x->psize);
		if (n == 0)
			break;
		/* The pages: the data repeated, or zeros without data. */
		size_t raw = (size_t)n * x->psize;
		if (!dlen) {
			memset(ref, 0, raw);
		} else {
			size_t have = dlen < raw ? dlen : raw;
			memcpy(ref, data, have);
			for (; have < raw; have *= 2)
				memcpy(ref + have, ref,
				       have < raw - have ? have : raw - have);
		}
		data += dlen, size -= dlen;
		for (uint32_t i = 0; i < n; i++)
			pages[i] = ref + (size_t)i * x->psize;
		size_t clen = 0;
		FUZZ_ASSERT(sc.ops->compress(&sc, pages, n, x->psize, &clen) ==
			    0);
		/* What the source sends passes the destination's checks. */
		struct mfd__pkt_hdr h = { .magic = MFD_MAGIC_PKT,
					  .type = MFD_PKT_PAGES,
					  .flags = MFD_PKT_F_ZSTD,
					  .count = n,
					  .payload_len = (uint32_t)clen };
		FUZZ_ASSERT(clen <= mfd__zstd_bound(raw));
		FUZZ_ASSERT(mfd__pkt_validate(&h, &x->lim) == 0);
		/* Destination pages first..first+n, as one or two iovecs. */
		bool named[MAX_PAGES] = { false };
		uint64_t off[MAX_PAGES];
		for (uint32_t i = 0; i < n; i++)
			off[i] = (uint64_t)(first + i) * x->psize;
		int iovcnt = make_iov(x, off, n, iov, named);
		if (n > 1 && split % n) {
			size_t a = (size_t)(split % n) * x->psize;
			iov[1].iov_base = (uint8_t *)iov[0].iov_base + a;
			iov[1].iov_len = iov[0].iov_len - a;
			iov[0].iov_len = a;
			iovcnt = 2;
		}
		fill_others(x, named);
		memcpy(x->dc.out, sc.out, clen);
		FUZZ_ASSERT(x->dc.ops->decompress(&x->dc, x->dc.out, clen, iov,
						  iovcnt) == 0);
		FUZZ_ASSERT(memcmp(x->host + off[0], ref, raw) == 0);
		check_others(x, named);
	}
	free(ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctx x = { 0 };
	if (size < 3)
		return 0;
	bool roundtrip = data[0] & 0x80;
	x.psize = 1u << (12 + (data[0] & 3) % 3);
	x.npages = data[1] % MAX_PAGES + 1u;
	x.blk.page_size = x.psize;
	x.blk.size = (uint64_t)x.npages * x.psize;
	x.lim.nblocks = 1;
	x.lim.blocks = &x.blk;
	x.lim.packet_pages = data[2] % MAX_PAGES + 1u;
	x.lim.features = MFD_FEAT_ZSTD;
	data += 3, size -= 3;

	/* Exactly the block, so ASan sees any write past it. */
	x.host = malloc(x.blk.size);
	if (!x.host || codecs_setup()) {
		free(x.host);
		return 0;
	}
	x.dc = dcodec;
	FUZZ_ASSERT(x.dc.out_cap >= mfd__zstd_bound(mfd__zstd_max_raw(&x.lim)));
	if (roundtrip)
		roundtrip_mode(&x, data, size);
	else
		wire_mode(&x, data, size);
	free(x.host);
	return 0;
}
