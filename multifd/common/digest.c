/* SPDX-License-Identifier: MIT */
/*
 * Digests of guest memory: one XXH3-64 per page, taken where each side
 * already touches the page (the source's worker when it sends it, the
 * destination's when it has placed it), overlapped with the transfer.
 * The wire's block digest (docs/protocol.md 5.5) is an XXH3-128 over
 * XXH3-64 digests of chunks of 64 page digests (mfd__digest_chunk, then
 * mfd__digest_pages over the chunk digests), kept up to date between
 * rounds (multifd/session.c); the file image's (protocol 11.5) is the
 * XXH3-128 of all page digests directly (mfd__digest_pages). Every u64
 * is hashed as little-endian bytes.
 *
 * XXH3 is compiled into the library per instruction set
 * (digest_<isa>.c) and chosen here at run time: no dependency on a
 * libxxhash built with its x86 dispatch. On this project's AVX-512
 * machine the AVX-512 build hashes a 4 KiB page in about 46 ns from L1
 * or L2, as libxxhash's dispatch does (docs/benchmarks.md,
 * mfd-digestbench).
 */
#include <errno.h>
#include <string.h>

#include "multifd/common/digest.h"

static const struct mfd__digest_ops *impl_ops(enum mfd__digest_impl impl)
{
	switch (impl) {
	case MFD__DIGEST_PORTABLE:
		return &mfd__digest_ops_portable;
#if defined(__x86_64__)
	case MFD__DIGEST_AVX2:
		return &mfd__digest_ops_avx2;
	case MFD__DIGEST_AVX512:
		return &mfd__digest_ops_avx512;
#endif
	default:
		return NULL;
	}
}

bool mfd__digest_supported(enum mfd__digest_impl impl)
{
	switch (impl) {
	case MFD__DIGEST_AUTO:
	case MFD__DIGEST_PORTABLE:
		return true;
#if defined(__x86_64__)
	case MFD__DIGEST_AVX2:
		return __builtin_cpu_supports("avx2");
	case MFD__DIGEST_AVX512:
		return __builtin_cpu_supports("avx512f");
#endif
	default:
		return false;
	}
}

static enum mfd__digest_impl best(void)
{
	for (int i = MFD__DIGEST_NIMPL - 1; i > MFD__DIGEST_PORTABLE; i--)
		if (mfd__digest_supported((enum mfd__digest_impl)i))
			return (enum mfd__digest_impl)i;
	return MFD__DIGEST_PORTABLE;
}

/* AUTO until first use; then the build in use (atomic: set once, or by
 * mfd__digest_select before a migration). */
static int current;

enum mfd__digest_impl mfd__digest_current(void)
{
	int c = __atomic_load_n(&current, __ATOMIC_RELAXED);
	if (c == MFD__DIGEST_AUTO) {
		c = best();
		__atomic_store_n(&current, c, __ATOMIC_RELAXED);
	}
	return (enum mfd__digest_impl)c;
}

int mfd__digest_select(enum mfd__digest_impl impl)
{
	if (impl == MFD__DIGEST_AUTO)
		impl = best();
	if (impl >= MFD__DIGEST_NIMPL || !mfd__digest_supported(impl))
		return -ENOTSUP;
	__atomic_store_n(&current, impl, __ATOMIC_RELAXED);
	return 0;
}

const char *mfd__digest_name(enum mfd__digest_impl impl)
{
	static const char *const names[] = { "auto", "portable", "avx2",
					     "avx512" };
	return impl < MFD__DIGEST_NIMPL ? names[impl] : "?";
}

static const struct mfd__digest_ops *ops(void)
{
	return impl_ops(mfd__digest_current());
}

uint64_t mfd__page_digest(const void *page, uint64_t size)
{
	return ops()->page(page, size);
}

uint64_t mfd__zero_page_digest(uint64_t size)
{
	return ops()->zero_page(size);
}

void mfd__digest_pages(const uint64_t *pd, uint64_t npages,
		       uint8_t out[MFD__DIGEST_SIZE])
{
	ops()->pages(pd, npages, out);
}

uint64_t mfd__digest_chunk(const uint64_t *pd, uint64_t n)
{
	return ops()->words(pd, n);
}

void mfd__digest_mem(const struct mfd__mem *r, unsigned n, uint64_t page_size,
		     uint8_t (*out)[MFD__DIGEST_SIZE])
{
	const struct mfd__digest_ops *o = ops();
	for (unsigned b = 0; b < n; b++)
		o->mem(r[b].host, r[b].size, page_size, out[b]);
}
