/* SPDX-License-Identifier: MIT */
/* Digests of guest memory (docs/protocol.md 5.5, "block digest"): one
 * XXH3-64 per page, taken where the page is sent or placed, and one
 * XXH3-128 per block over them. */
#ifndef MULTIFD_COMMON_DIGEST_H
#define MULTIFD_COMMON_DIGEST_H

#include <stdint.h>

#include "multifd/common/util.h"

#define MFD__DIGEST_SIZE 16 /* XXH3-128, canonical bytes */

/* The page digest of size bytes at page. */
uint64_t mfd__page_digest(const void *page, uint64_t size);
/* The page digest of a page of size zero bytes (any size, no buffer of
 * that size needed). */
uint64_t mfd__zero_page_digest(uint64_t size);
/* The block digest of npages page digests, in page order. */
void mfd__digest_pages(const uint64_t *pd, uint64_t npages,
		       uint8_t out[MFD__DIGEST_SIZE]);
/* The block digest of the memory of each of the n ranges (pages of
 * page_size bytes) into out[i], computed from the memory itself: the
 * reference the per-page digests of a migration must equal. */
void mfd__digest_mem(const struct mfd__mem *r, unsigned n, uint64_t page_size,
		     uint8_t (*out)[MFD__DIGEST_SIZE]);

#endif /* MULTIFD_COMMON_DIGEST_H */
