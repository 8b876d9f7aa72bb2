/* SPDX-License-Identifier: MIT */
/*
 * Zero-page detection with run-time dispatch: AVX-512, AVX2, SSE2 on x86-64
 * (each compiled with its own target attribute, chosen with
 * __builtin_cpu_supports), and a portable word loop everywhere.
 *
 * Each path ORs 256 bytes at a time and tests once per 256 bytes: a page
 * with data usually fails in its first chunk, a zero page is read once at
 * memory speed.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "multifd/compress/codec.h"

typedef bool (*zero_fn)(const void *p, size_t len);

static bool zero_portable(const void *p, size_t len)
{
	const uint64_t *w = p;
	for (size_t i = 0; i < len / 8; i += 32) {
		uint64_t acc = 0;
		for (size_t k = 0; k < 32; k++)
			acc |= w[i + k];
		if (acc)
			return false;
	}
	return true;
}

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("sse2"))) static bool zero_sse2(const void *p, size_t len)
{
	const __m128i *v = p;
	for (size_t i = 0; i < len / 16; i += 16) {
		__m128i a = _mm_or_si128(_mm_or_si128(v[i], v[i + 1]),
					 _mm_or_si128(v[i + 2], v[i + 3]));
		__m128i b = _mm_or_si128(_mm_or_si128(v[i + 4], v[i + 5]),
					 _mm_or_si128(v[i + 6], v[i + 7]));
		__m128i c = _mm_or_si128(_mm_or_si128(v[i + 8], v[i + 9]),
					 _mm_or_si128(v[i + 10], v[i + 11]));
		__m128i d = _mm_or_si128(_mm_or_si128(v[i + 12], v[i + 13]),
					 _mm_or_si128(v[i + 14], v[i + 15]));
		__m128i acc =
			_mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d));
		if (_mm_movemask_epi8(
			    _mm_cmpeq_epi8(acc, _mm_setzero_si128())) != 0xffff)
			return false;
	}
	return true;
}

__attribute__((target("avx2"))) static bool zero_avx2(const void *p, size_t len)
{
	const __m256i *v = p;
	for (size_t i = 0; i < len / 32; i += 8) {
		__m256i a = _mm256_or_si256(
			_mm256_or_si256(_mm256_loadu_si256(v + i),
					_mm256_loadu_si256(v + i + 1)),
			_mm256_or_si256(_mm256_loadu_si256(v + i + 2),
					_mm256_loadu_si256(v + i + 3)));
		__m256i b = _mm256_or_si256(
			_mm256_or_si256(_mm256_loadu_si256(v + i + 4),
					_mm256_loadu_si256(v + i + 5)),
			_mm256_or_si256(_mm256_loadu_si256(v + i + 6),
					_mm256_loadu_si256(v + i + 7)));
		__m256i acc = _mm256_or_si256(a, b);
		if (!_mm256_testz_si256(acc, acc))
			return false;
	}
	return true;
}

__attribute__((target("avx512f"))) static bool zero_avx512(const void *p,
							   size_t len)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < len; i += 256) {
		__m512i x = _mm512_or_si512(
			_mm512_or_si512(_mm512_loadu_si512(b + i),
					_mm512_loadu_si512(b + i + 64)),
			_mm512_or_si512(_mm512_loadu_si512(b + i + 128),
					_mm512_loadu_si512(b + i + 192)));
		if (_mm512_test_epi64_mask(x, x))
			return false;
	}
	return true;
}
#endif

static zero_fn impl_fn(enum mfd__zero_impl impl)
{
	switch (impl) {
	case MFD__ZERO_PORTABLE:
		return zero_portable;
#if defined(__x86_64__)
	case MFD__ZERO_SSE2:
		return zero_sse2;
	case MFD__ZERO_AVX2:
		return zero_avx2;
	case MFD__ZERO_AVX512:
		return zero_avx512;
#endif
	default:
		return NULL;
	}
}

bool mfd__zero_supported(enum mfd__zero_impl impl)
{
	switch (impl) {
	case MFD__ZERO_AUTO:
	case MFD__ZERO_PORTABLE:
		return true;
#if defined(__x86_64__)
	case MFD__ZERO_SSE2:
		return __builtin_cpu_supports("sse2");
	case MFD__ZERO_AVX2:
		return __builtin_cpu_supports("avx2");
	case MFD__ZERO_AVX512:
		return __builtin_cpu_supports("avx512f");
#endif
	default:
		return false;
	}
}

static enum mfd__zero_impl best(void)
{
	for (int i = MFD__ZERO_NIMPL - 1; i > MFD__ZERO_PORTABLE; i--)
		if (mfd__zero_supported((enum mfd__zero_impl)i))
			return (enum mfd__zero_impl)i;
	return MFD__ZERO_PORTABLE;
}

/* 0 until first use; then the impl in use (atomic: set once, or by
 * mfd__zero_select before a migration). */
static int current;

enum mfd__zero_impl mfd__zero_current(void)
{
	int c = __atomic_load_n(&current, __ATOMIC_RELAXED);
	if (c == MFD__ZERO_AUTO) {
		c = best();
		__atomic_store_n(&current, c, __ATOMIC_RELAXED);
	}
	return (enum mfd__zero_impl)c;
}

int mfd__zero_select(enum mfd__zero_impl impl)
{
	if (impl == MFD__ZERO_AUTO)
		impl = best();
	if (impl >= MFD__ZERO_NIMPL || !mfd__zero_supported(impl))
		return -ENOTSUP;
	__atomic_store_n(&current, impl, __ATOMIC_RELAXED);
	return 0;
}

const char *mfd__zero_name(enum mfd__zero_impl impl)
{
	static const char *const names[] = { "auto", "portable", "sse2", "avx2",
					     "avx512" };
	return impl < MFD__ZERO_NIMPL ? names[impl] : "?";
}

bool mfd__buffer_is_zero(const void *p, size_t len)
{
	return impl_fn(mfd__zero_current())(p, len);
}

bool mfd__page_looks_incompressible(const void *p, size_t len)
{
	const uint8_t *b = p;
	size_t stride = len / 256;
	uint64_t seen[4] = { 0, 0, 0, 0 };
	for (size_t i = 0; i < 256; i++) {
		uint8_t v = b[i * stride];
		seen[v >> 6] |= 1ull << (v & 63);
	}
	unsigned distinct = (unsigned)(__builtin_popcountll(seen[0]) +
				       __builtin_popcountll(seen[1]) +
				       __builtin_popcountll(seen[2]) +
				       __builtin_popcountll(seen[3]));
	return distinct >= MFD__INCOMPRESSIBLE_DISTINCT;
}
