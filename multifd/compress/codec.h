/* SPDX-License-Identifier: MIT */
/*
 * Page codecs behind one small ops table, and zero-page detection.
 *
 * One codec instance belongs to one channel worker for the whole migration
 * (its contexts keep their history from packet to packet, as the peer's
 * do): never share an instance between threads. Buffers are allocated once
 * by setup(); nothing is allocated per packet.
 *
 * This folder knows nothing of RAM blocks, sockets or the wire format: it
 * turns page addresses into bytes and bytes back into page addresses.
 */
#ifndef MULTIFD_COMPRESS_CODEC_H
#define MULTIFD_COMPRESS_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

enum mfd__codec_id {
	MFD__CODEC_NONE = 0,
	MFD__CODEC_ZSTD = 1,
};

struct mfd__codec;

/* zstd-long: window logs a long-distance window may take (1 MiB ..
 * 128 MiB); 0 is off. A decompressor accepts windows up to
 * MFD_ZSTD_WINDOW_LOG_DEFAULT (8 MiB: levels 1..19 stay within it) unless
 * set up for a larger one: that bounds the memory a hostile stream can
 * make it allocate. */
#define MFD_ZSTD_LONG_MIN	    20
#define MFD_ZSTD_LONG_MAX	    27
#define MFD_ZSTD_WINDOW_LOG_DEFAULT 23

struct mfd__codec_ops {
	const char *name;
	/*
	 * Prepares one channel's contexts and buffers: compress() will take
	 * at most max_in bytes per call, decompress() at most
	 * mfd__codec_bound(max_in) bytes of input. level is the codec's own
	 * (ignored by none). window_log 0 keeps the level's window; N > 0
	 * (MFD_ZSTD_LONG_MIN..MFD_ZSTD_LONG_MAX) compresses with a 2^N byte
	 * window and long-distance matching, and lets the decompressor
	 * accept windows up to 2^N (else up to 2^23, what levels 1..19 use).
	 * 0, -ENOMEM or -EINVAL.
	 */
	int (*setup)(struct mfd__codec *c, size_t max_in, int level,
		     int window_log);
	/*
	 * Compresses n pages of psize bytes (n * psize <= max_in) into c->out;
	 * on success *out_len is the length of the result, which the peer's
	 * decompress() turns back into exactly n * psize bytes. 0 or
	 * MFD_ECOMPRESS.
	 */
	int (*compress)(struct mfd__codec *c, uint8_t *const *pages, uint32_t n,
			size_t psize, size_t *out_len);
	/*
	 * Decompresses in[0..len) straight into the buffers of iov (the
	 * destination pages). Fails with MFD_ECOMPRESS unless the input is
	 * valid, fills every byte of iov exactly, and holds nothing more:
	 * never a byte written outside iov. On failure the contents of iov
	 * are undefined and the instance must not be used again.
	 */
	int (*decompress)(struct mfd__codec *c, const uint8_t *in, size_t len,
			  const struct iovec *iov, int iovcnt);
	/* Frees what setup() allocated; safe on a never set up instance. */
	void (*teardown)(struct mfd__codec *c);
};

struct mfd__codec {
	const struct mfd__codec_ops *ops;
	void *cctx, *dctx;
	uint8_t *out; /* compress() output, out_cap bytes */
	size_t out_cap;
	size_t max_in;
	int level;
	int window_log;
};

extern const struct mfd__codec_ops mfd__codec_none;
extern const struct mfd__codec_ops mfd__codec_zstd;

/* The ops of id, or NULL when unknown. */
const struct mfd__codec_ops *mfd__codec_ops_of(unsigned id);

/*
 * Largest compressed payload accepted for n input bytes (docs/protocol.md
 * section 6.1): n + n/128 + 1024, above what zstd can emit for a flushed
 * block sequence of n bytes (ZSTD_compressBound plus the frame header).
 */
static inline uint64_t mfd__codec_bound(uint64_t n)
{
	return n + n / 128 + 1024;
}

/* ---------------------------------------------------------------- */
/* Zero-page detection                                               */
/* ---------------------------------------------------------------- */

enum mfd__zero_impl {
	MFD__ZERO_AUTO = 0, /* best the CPU supports */
	MFD__ZERO_PORTABLE,
	MFD__ZERO_SSE2,
	MFD__ZERO_AVX2,
	MFD__ZERO_AVX512,
	MFD__ZERO_NIMPL,
};

/* True when every byte of p[0..len) is 0. len is a multiple of 4096 and p
 * 16-byte aligned (any guest page is). */
bool mfd__buffer_is_zero(const void *p, size_t len);
/*
 * A cheap guess that the page at p (len bytes, a multiple of 256) would not
 * compress: true when 256 bytes sampled at a fixed stride take at least
 * MFD__INCOMPRESSIBLE_DISTINCT different values. Random bytes give about
 * 162 (1 - 1/e of 256); text and code far fewer. Pages of data already
 * compressed look random, which is what is meant.
 */
#define MFD__INCOMPRESSIBLE_DISTINCT 150
bool mfd__page_looks_incompressible(const void *p, size_t len);
/* Whether this CPU (and build) can run impl. */
bool mfd__zero_supported(enum mfd__zero_impl impl);
/* Forces impl for every later call (tests, bench); MFD__ZERO_AUTO restores
 * the run-time choice. -ENOTSUP when the CPU lacks it. Not thread-safe
 * against concurrent detection: call before a migration starts. */
int mfd__zero_select(enum mfd__zero_impl impl);
/* The impl in use, and its name ("avx512", "avx2", "sse2", "portable"). */
enum mfd__zero_impl mfd__zero_current(void);
const char *mfd__zero_name(enum mfd__zero_impl impl);

#endif /* MULTIFD_COMPRESS_CODEC_H */
