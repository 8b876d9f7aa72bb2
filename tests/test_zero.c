/* SPDX-License-Identifier: MIT */
/* Zero-page detection: every SIMD path the CPU has agrees with a plain byte
 * loop, on zero pages, on random pages, and on zero pages with a single
 * non-zero byte at every position. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "multifd/compress/codec.h"
#include "testvm.h"

#define PAGE 4096

static uint64_t seed;

static bool byte_loop(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static void check_impl(enum mfd__zero_impl impl)
{
	if (!mfd__zero_supported(impl)) {
		print_message("skipped: this CPU has no %s\n",
			      mfd__zero_name(impl));
		skip(); /* reported as SKIPPED, not OK */
	}
	assert_int_equal(mfd__zero_select(impl), 0);
	assert_int_equal(mfd__zero_current(), impl);
	/* Two pages, so that lengths above one page are covered too. */
	uint8_t *buf = aligned_alloc(PAGE, 2 * PAGE);
	assert_non_null(buf);
	uint64_t st = seed ^ impl;

	memset(buf, 0, 2 * PAGE);
	assert_true(mfd__buffer_is_zero(buf, PAGE));
	assert_true(mfd__buffer_is_zero(buf, 2 * PAGE));
	for (size_t pos = 0; pos < 2 * PAGE; pos++) {
		uint8_t v = (uint8_t)(tvm_rand(&st) | 1); /* never 0 */
		buf[pos] = v;
		bool want = byte_loop(buf, PAGE);
		if (mfd__buffer_is_zero(buf, PAGE) != want)
			fail_msg("%s: byte %zu = %#x: wrong answer",
				 mfd__zero_name(impl), pos, v);
		assert_false(mfd__buffer_is_zero(buf, 2 * PAGE));
		buf[pos] = 0;
	}
	/* Random pages, some with long zero prefixes. */
	for (int i = 0; i < 2000; i++) {
		tvm_fill_random(buf, PAGE, tvm_rand(&st));
		size_t zeros = tvm_rand(&st) % (PAGE + 1);
		memset(buf, 0, zeros);
		assert_int_equal(mfd__buffer_is_zero(buf, PAGE),
				 byte_loop(buf, PAGE));
	}
	free(buf);
	assert_int_equal(mfd__zero_select(MFD__ZERO_AUTO), 0);
}

static void test_portable(void **state)
{
	check_impl(MFD__ZERO_PORTABLE);
}
static void test_sse2(void **state)
{
	check_impl(MFD__ZERO_SSE2);
}
static void test_avx2(void **state)
{
	check_impl(MFD__ZERO_AVX2);
}
static void test_avx512(void **state)
{
	check_impl(MFD__ZERO_AVX512);
}

static void test_select(void **state)
{
	assert_int_equal(mfd__zero_select(MFD__ZERO_NIMPL), -ENOTSUP);
	assert_int_equal(mfd__zero_select(MFD__ZERO_AUTO), 0);
	/* Auto picks the widest path the CPU has. */
	enum mfd__zero_impl best = MFD__ZERO_PORTABLE;
	for (int i = MFD__ZERO_PORTABLE; i < MFD__ZERO_NIMPL; i++)
		if (mfd__zero_supported((enum mfd__zero_impl)i))
			best = (enum mfd__zero_impl)i;
	assert_int_equal(mfd__zero_current(), best);
	print_message("auto: %s\n", mfd__zero_name(best));
}

int main(void)
{
	seed = tvm_seed("test_zero");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_portable), cmocka_unit_test(test_sse2),
		cmocka_unit_test(test_avx2),	 cmocka_unit_test(test_avx512),
		cmocka_unit_test(test_select),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
