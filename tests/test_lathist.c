/* SPDX-License-Identifier: MIT */
/* The latency histogram (multifd/common/lathist.c): buckets at their
 * edges, quantiles as bucket upper bounds capped at the max, and adds
 * from several threads (TSan). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>
#include <cmocka.h>

#include "multifd/common/lathist.h"

#define US 1000ULL

static void test_buckets(void **state)
{
	(void)state;
	assert_int_equal(mfd__lathist_bucket(0), 0);
	assert_int_equal(mfd__lathist_bucket(1999), 0);
	assert_int_equal(mfd__lathist_bucket(2 * US), 1);
	assert_int_equal(mfd__lathist_bucket(4 * US - 1), 1);
	assert_int_equal(mfd__lathist_bucket(4 * US), 2);
	assert_int_equal(mfd__lathist_bucket(1024 * US), 10);
	assert_int_equal(mfd__lathist_bucket(UINT64_MAX),
			 MFD_LATHIST_BUCKETS - 1);
}

static void test_fine(void **state)
{
	(void)state;
	/* 1 µs wide below 16 µs. */
	assert_int_equal(mfd__lathist_fine(0), 0);
	assert_int_equal(mfd__lathist_fine(15999), 15);
	assert_int_equal(mfd__lathist_fine_top_us(15), 16);
	/* Then 8 an octave: [16, 18) µs is 16, [30, 32) is 23, [32, 36)
	 * is 24; 300 µs is in [288, 320). */
	assert_int_equal(mfd__lathist_fine(16 * US), 16);
	assert_int_equal(mfd__lathist_fine_top_us(16), 18);
	assert_int_equal(mfd__lathist_fine(31 * US), 23);
	assert_int_equal(mfd__lathist_fine_top_us(23), 32);
	assert_int_equal(mfd__lathist_fine(32 * US), 24);
	assert_int_equal(mfd__lathist_fine_top_us(24), 36);
	unsigned i = mfd__lathist_fine(300 * US);
	assert_int_equal(mfd__lathist_fine_top_us(i), 320);
	assert_int_equal(mfd__lathist_fine(287 * US) + 1, i);
	/* Every bucket's top is the next one's bottom, no gap. */
	for (unsigned k = 16; k + 1 < MFD_LATHIST_FINE; k++)
		assert_int_equal(
			mfd__lathist_fine(mfd__lathist_fine_top_us(k) * US),
			k + 1);
	assert_int_equal(mfd__lathist_fine(UINT64_MAX), MFD_LATHIST_FINE - 1);
}

static void test_quantiles(void **state)
{
	(void)state;
	struct mfd__lathist h;
	memset(&h, 0, sizeof(h));
	assert_int_equal(mfd__lathist_quantile(&h, 0.5), 0);

	/* 98 requests of 300 µs, one of 1.5 ms, one of 7 ms. */
	for (int i = 0; i < 98; i++)
		mfd__lathist_add(&h, 300 * US);
	mfd__lathist_add(&h, 1500 * US);
	mfd__lathist_add(&h, 7000 * US);
	assert_int_equal(h.count, 100);
	assert_int_equal(h.max_ns, 7000 * US);
	assert_int_equal(h.sum_ns, (98 * 300 + 1500 + 7000) * US);
	assert_int_equal(h.bucket[8], 98); /* [256, 512) µs */
	/* p50 and p98: the top of the fine bucket [288, 320) µs; p99 the
	 * top of [1408, 1536); p100 the max itself, not 7168 µs. */
	assert_int_equal(mfd__lathist_quantile(&h, 0.5), 320 * US);
	assert_int_equal(mfd__lathist_quantile(&h, 0.98), 320 * US);
	assert_int_equal(mfd__lathist_quantile(&h, 0.99), 1536 * US);
	assert_int_equal(mfd__lathist_quantile(&h, 1.0), 7000 * US);
	/* A single sample: every quantile is it, capped. */
	memset(&h, 0, sizeof(h));
	mfd__lathist_add(&h, 3 * US);
	assert_int_equal(mfd__lathist_quantile(&h, 0.01), 3 * US);
	assert_int_equal(mfd__lathist_quantile(&h, 0.99), 3 * US);
}

static struct mfd__lathist shared;

static void *adder(void *arg)
{
	uint64_t base = (uintptr_t)arg;
	for (uint64_t i = 0; i < 10000; i++)
		mfd__lathist_add(&shared, base + i);
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	pthread_t t[4];
	for (uintptr_t i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, adder,
						(void *)(i * 1000000)),
				 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(shared.count, 40000);
	assert_int_equal(shared.max_ns, 3000000 + 9999);
	uint64_t n = 0;
	for (int i = 0; i < MFD_LATHIST_BUCKETS; i++)
		n += shared.bucket[i];
	assert_int_equal(n, 40000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buckets),
		cmocka_unit_test(test_fine),
		cmocka_unit_test(test_quantiles),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
