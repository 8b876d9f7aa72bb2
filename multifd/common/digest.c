/* SPDX-License-Identifier: MIT */
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>
#if defined(__x86_64__) && __has_include(<xxh_x86dispatch.h>)
/* libxxhash's run-time dispatch (AVX2, AVX-512 where the CPU has them):
 * the same digests, 3-5 times the plain build's speed per page here. */
#define XXH_DISPATCH_DISABLE_REPLACE
#include <xxh_x86dispatch.h>
#define page_xxh3 XXH3_64bits_dispatch
#else
#define page_xxh3 XXH3_64bits
#endif

#include "multifd/common/digest.h"
#include "multifd/common/le.h"

/*
 * Block digest (docs/protocol.md 5.5): XXH3-128 of the block's page
 * digests, each the XXH3-64 of one page as a little-endian u64, in page
 * order. Per page, so that each side hashes a page where it already
 * touches it (the source's worker when it sends it, the destination's
 * when it has placed it), overlapped with the transfer: inside the
 * downtime only the final round's pages are hashed, and the block digest
 * is one pass over 8 bytes per page.
 */
uint64_t mfd__page_digest(const void *page, uint64_t size)
{
	return page_xxh3(page, (size_t)size);
}

uint64_t mfd__zero_page_digest(uint64_t size)
{
	static const uint8_t zero[64 << 10];
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

void mfd__digest_pages(const uint64_t *pd, uint64_t npages,
		       uint8_t out[MFD__DIGEST_SIZE])
{
	XXH3_state_t st;
	XXH3_128bits_reset(&st);
	uint8_t le[8 * 512];
	for (uint64_t i = 0; i < npages;) {
		size_t k = 0;
		for (; k < 512 && i < npages; k++, i++)
			mfd__put_le64(le + 8 * k, pd[i]);
		XXH3_128bits_update(&st, le, 8 * k);
	}
	XXH128_canonical_t cd;
	XXH128_canonicalFromHash(&cd, XXH3_128bits_digest(&st));
	memcpy(out, cd.digest, MFD__DIGEST_SIZE);
}

void mfd__digest_mem(const struct mfd__mem *r, unsigned n, uint64_t page_size,
		     uint8_t (*out)[MFD__DIGEST_SIZE])
{
	for (unsigned b = 0; b < n; b++) {
		XXH3_state_t st;
		XXH3_128bits_reset(&st);
		for (uint64_t off = 0; off < r[b].size; off += page_size) {
			uint8_t le[8];
			mfd__put_le64(le, mfd__page_digest(r[b].host + off,
							   page_size));
			XXH3_128bits_update(&st, le, 8);
		}
		XXH128_canonical_t cd;
		XXH128_canonicalFromHash(&cd, XXH3_128bits_digest(&st));
		memcpy(out[b], cd.digest, MFD__DIGEST_SIZE);
	}
}
