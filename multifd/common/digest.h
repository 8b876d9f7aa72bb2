/* SPDX-License-Identifier: MIT */
/* Digests of guest memory (docs/protocol.md 5.5, "block digest"): one
 * XXH3-64 per page, taken where the page is sent or placed, and one
 * XXH3-128 per block over them. XXH3 is built into the library once per
 * instruction set and the widest one the CPU has is used (run-time
 * dispatch, like zero-page detection); every path gives the same
 * digests. */
#ifndef MULTIFD_COMMON_DIGEST_H
#define MULTIFD_COMMON_DIGEST_H

#include <stdbool.h>
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
/* XXH3-64 of n page digests as little-endian u64s: the digest of a
 * chunk of page digests (docs/protocol.md 5.5, the wire's block digest
 * is made of these). */
uint64_t mfd__digest_chunk(const uint64_t *pd, uint64_t n);
/* The block digest of the memory of each of the n ranges (pages of
 * page_size bytes) into out[i], computed from the memory itself: the
 * reference the per-page digests of a migration must equal. */
void mfd__digest_mem(const struct mfd__mem *r, unsigned n, uint64_t page_size,
		     uint8_t (*out)[MFD__DIGEST_SIZE]);

/* One instruction set's build of the functions above (one range). */
struct mfd__digest_ops {
	uint64_t (*page)(const void *page, uint64_t size);
	uint64_t (*zero_page)(uint64_t size);
	void (*pages)(const uint64_t *pd, uint64_t npages,
		      uint8_t out[MFD__DIGEST_SIZE]);
	uint64_t (*words)(const uint64_t *pd, uint64_t n);
	void (*mem)(const uint8_t *host, uint64_t size, uint64_t page_size,
		    uint8_t out[MFD__DIGEST_SIZE]);
};
extern const struct mfd__digest_ops mfd__digest_ops_portable;
#if defined(__x86_64__)
extern const struct mfd__digest_ops mfd__digest_ops_avx2;
extern const struct mfd__digest_ops mfd__digest_ops_avx512;
#endif

/* The builds, widest last. AUTO: the widest the CPU has. */
enum mfd__digest_impl {
	MFD__DIGEST_AUTO,
	MFD__DIGEST_PORTABLE,
	MFD__DIGEST_AVX2,
	MFD__DIGEST_AVX512,
	MFD__DIGEST_NIMPL
};
/* Whether this build and CPU can run impl. */
bool mfd__digest_supported(enum mfd__digest_impl impl);
/* Uses impl from now on (tests, benchmarks; before a migration starts):
 * 0, or -ENOTSUP when this build or CPU lacks it. */
int mfd__digest_select(enum mfd__digest_impl impl);
/* The build in use (chosen at first use). */
enum mfd__digest_impl mfd__digest_current(void);
const char *mfd__digest_name(enum mfd__digest_impl impl);

#endif /* MULTIFD_COMMON_DIGEST_H */
