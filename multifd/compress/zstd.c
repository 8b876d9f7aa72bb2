/* SPDX-License-Identifier: MIT */
/*
 * zstd codec: one streaming context per channel and direction for the whole
 * migration. Every packet is the pages fed in order and then flushed
 * (ZSTD_e_flush), so a packet ends on a block boundary and the peer can
 * decode it completely, while later packets still match against the
 * history of earlier ones (the window), as in one long stream.
 *
 * Decompression writes straight into the destination pages, one output
 * buffer per iovec: zstd never writes past the end of an output buffer, and
 * the checks below make any length other than the exact one an error.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "multifd/multifd.h"
#include "multifd/compress/codec.h"

static void zstd_teardown(struct mfd__codec *c)
{
	ZSTD_freeCCtx(c->cctx);
	ZSTD_freeDCtx(c->dctx);
	free(c->out);
	c->cctx = c->dctx = NULL;
	c->out = NULL;
	c->out_cap = 0;
}

static int zstd_setup(struct mfd__codec *c, size_t max_in, int level,
		      int window_log)
{
	if (window_log &&
	    (window_log < MFD_ZSTD_LONG_MIN || window_log > MFD_ZSTD_LONG_MAX))
		return -EINVAL;
	c->max_in = max_in;
	c->level = level;
	c->window_log = window_log;
	c->out_cap = (size_t)mfd__codec_bound(max_in);
	c->out = malloc(c->out_cap);
	c->cctx = ZSTD_createCCtx();
	c->dctx = ZSTD_createDCtx();
	if (!c->out || !c->cctx || !c->dctx) {
		zstd_teardown(c);
		return -ENOMEM;
	}
	int wmax = window_log > MFD_ZSTD_WINDOW_LOG_DEFAULT
			   ? window_log
			   : MFD_ZSTD_WINDOW_LOG_DEFAULT;
	if (ZSTD_isError(ZSTD_CCtx_setParameter(
		    c->cctx, ZSTD_c_compressionLevel, level)) ||
	    ZSTD_isError(ZSTD_DCtx_setParameter(c->dctx, ZSTD_d_windowLogMax,
						wmax))) {
		zstd_teardown(c);
		return -EINVAL;
	}
	/* A long window: repeats far apart in guest RAM (the same library
	 * or file loaded twice, page-cache copies) are found by the
	 * long-distance matcher at little cost in speed; the window buffer
	 * (2^window_log bytes) is allocated on both sides, per channel. */
	if (window_log &&
	    (ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_windowLog,
						 window_log)) ||
	     ZSTD_isError(ZSTD_CCtx_setParameter(
		     c->cctx, ZSTD_c_enableLongDistanceMatching, 1)))) {
		zstd_teardown(c);
		return -EINVAL;
	}
	return 0;
}

static int zstd_compress(struct mfd__codec *c, uint8_t *const *pages,
			 uint32_t n, size_t psize, size_t *out_len)
{
	if ((uint64_t)n * psize > c->max_in)
		return MFD_ECOMPRESS;
	ZSTD_outBuffer out = { .dst = c->out, .size = c->out_cap, .pos = 0 };
	for (uint32_t i = 0; i < n; i++) {
		ZSTD_inBuffer in = { .src = pages[i], .size = psize, .pos = 0 };
		while (in.pos < in.size) {
			size_t r = ZSTD_compressStream2(c->cctx, &out, &in,
							ZSTD_e_continue);
			if (ZSTD_isError(r) ||
			    (out.pos == out.size && in.pos < in.size))
				return MFD_ECOMPRESS;
		}
	}
	ZSTD_inBuffer none = { .src = NULL, .size = 0, .pos = 0 };
	size_t left;
	do {
		left = ZSTD_compressStream2(c->cctx, &out, &none, ZSTD_e_flush);
		if (ZSTD_isError(left) || (left && out.pos == out.size))
			return MFD_ECOMPRESS;
	} while (left);
	*out_len = out.pos;
	return 0;
}

static int zstd_decompress(struct mfd__codec *c, const uint8_t *inbuf,
			   size_t len, const struct iovec *iov, int iovcnt)
{
	ZSTD_inBuffer in = { .src = inbuf, .size = len, .pos = 0 };
	for (int i = 0; i < iovcnt; i++) {
		ZSTD_outBuffer out = { .dst = iov[i].iov_base,
				       .size = iov[i].iov_len,
				       .pos = 0 };
		while (out.pos < out.size) {
			size_t in0 = in.pos, out0 = out.pos;
			size_t r = ZSTD_decompressStream(c->dctx, &out, &in);
			if (ZSTD_isError(r))
				return MFD_ECOMPRESS;
			/* No progress with room left: the payload ended
			 * early. */
			if (in.pos == in0 && out.pos == out0)
				return MFD_ECOMPRESS;
		}
	}
	/* Every page is full: whatever input remains must decode to
	 * nothing (a block or frame boundary); one byte of output more is
	 * an inflated payload. */
	uint8_t extra;
	while (in.pos < in.size) {
		ZSTD_outBuffer out = { .dst = &extra, .size = 1, .pos = 0 };
		size_t in0 = in.pos;
		size_t r = ZSTD_decompressStream(c->dctx, &out, &in);
		if (ZSTD_isError(r) || out.pos || in.pos == in0)
			return MFD_ECOMPRESS;
	}
	/* Output the decoder still holds from this input is extra too. */
	ZSTD_outBuffer out = { .dst = &extra, .size = 1, .pos = 0 };
	size_t r = ZSTD_decompressStream(c->dctx, &out, &in);
	if (ZSTD_isError(r) || out.pos)
		return MFD_ECOMPRESS;
	return 0;
}

const struct mfd__codec_ops mfd__codec_zstd = {
	.name = "zstd",
	.setup = zstd_setup,
	.compress = zstd_compress,
	.decompress = zstd_decompress,
	.teardown = zstd_teardown,
};
