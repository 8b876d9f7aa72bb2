/* SPDX-License-Identifier: MIT */
/*
 * The digest functions of one instruction set (multifd/common/digest.c
 * picks one at run time). Included once by each digest_<isa>.c, which
 * defines DIGEST_ISA and is compiled with that ISA's flags: XXH3 inlined
 * from <xxhash.h> picks its widest vector path from the compiler's
 * target macros (__AVX512F__, __AVX2__, SSE2 on any x86-64, NEON, else
 * scalar). The results are the same on every path (XXH3 is defined on
 * bytes, not on vectors); tests/test_verify.c checks them against
 * libxxhash.
 */
#ifndef DIGEST_ISA
#error "define DIGEST_ISA before including digest_impl.h"
#endif

#include <string.h>
#define XXH_INLINE_ALL /* static copies of XXH3, built for this ISA */
#include <xxhash.h>

#include "multifd/common/digest.h"

#define DIGEST_CAT2(a, b) a##b
#define DIGEST_CAT(a, b)  DIGEST_CAT2(a, b)
#define DIGEST_OPS	  DIGEST_CAT(mfd__digest_ops_, DIGEST_ISA)

static uint64_t page(const void *p, uint64_t size)
{
	return XXH3_64bits(p, (size_t)size);
}

static uint64_t zero_page(uint64_t size)
{
	static const uint8_t zero[64 << 10];
	if (size <= sizeof(zero))
		return XXH3_64bits(zero, (size_t)size);
	XXH3_state_t st;
	XXH3_64bits_reset(&st);
	for (uint64_t done = 0; done < size;) {
		uint64_t n =
			size - done < sizeof(zero) ? size - done : sizeof(zero);
		XXH3_64bits_update(&st, zero, (size_t)n);
		done += n;
	}
	return XXH3_64bits_digest(&st);
}

/* One page digest as 8 little-endian bytes: a single store (le.h's
 * byte loop is not merged by the compiler, and it cost 1.5 ms per 2 GiB
 * of 4 KiB pages here, more than the hashing). */
static inline void put_digest(uint8_t *p, uint64_t v)
{
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	memcpy(p, &v, 8);
}

static void canonical(XXH128_hash_t h, uint8_t out[MFD__DIGEST_SIZE])
{
	XXH128_canonical_t cd;
	XXH128_canonicalFromHash(&cd, h);
	memcpy(out, cd.digest, MFD__DIGEST_SIZE);
}

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
/* Feeds n u64s to a streaming XXH3 (update: the 64- or 128-bit one) as
 * little-endian bytes, 512 at a time. */
static void update_le(XXH3_state_t *st, const uint64_t *pd, uint64_t n,
		      XXH_errorcode (*update)(XXH3_state_t *, const void *,
					      size_t))
{
	uint8_t le[8 * 512];
	for (uint64_t i = 0; i < n;) {
		size_t k = 0;
		for (; k < 512 && i < n; k++, i++)
			put_digest(le + 8 * k, pd[i]);
		update(st, le, 8 * k);
	}
}
#endif

/* XXH3-128 of the page digests as little-endian u64s: on a
 * little-endian host that is their memory as it is, in one call. */
static void pages(const uint64_t *pd, uint64_t npages,
		  uint8_t out[MFD__DIGEST_SIZE])
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	canonical(XXH3_128bits(pd, (size_t)npages * 8), out);
#else
	XXH3_state_t st;
	XXH3_128bits_reset(&st);
	update_le(&st, pd, npages, XXH3_128bits_update);
	canonical(XXH3_128bits_digest(&st), out);
#endif
}

/* XXH3-64 of n page digests as little-endian u64s (a chunk's digest). */
static uint64_t words(const uint64_t *pd, uint64_t n)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return XXH3_64bits(pd, (size_t)n * 8);
#else
	XXH3_state_t st;
	XXH3_64bits_reset(&st);
	update_le(&st, pd, n, XXH3_64bits_update);
	return XXH3_64bits_digest(&st);
#endif
}

static void mem(const uint8_t *host, uint64_t size, uint64_t page_size,
		uint8_t out[MFD__DIGEST_SIZE])
{
	XXH3_state_t st;
	XXH3_128bits_reset(&st);
	uint8_t le[8 * 512];
	for (uint64_t off = 0; off < size;) {
		size_t k = 0;
		for (; k < 512 && off < size; k++, off += page_size)
			put_digest(le + 8 * k,
				   XXH3_64bits(host + off, (size_t)page_size));
		XXH3_128bits_update(&st, le, 8 * k);
	}
	canonical(XXH3_128bits_digest(&st), out);
}

const struct mfd__digest_ops DIGEST_OPS = {
	.page = page,
	.zero_page = zero_page,
	.pages = pages,
	.words = words,
	.mem = mem,
};
