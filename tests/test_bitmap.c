/* SPDX-License-Identifier: MIT */
/*
 * Dirty bitmaps: every call against a naive bit-by-bit reference, and the
 * harvest under concurrent atomic writers.
 *
 * Randomised tests print their seed; MFD_TEST_SEED=<n> replays one.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "ramblock/ramblock.h"

#define UNUSED __attribute__((unused))

static uint64_t seed;

/* splitmix64: small, seedable, good enough for test patterns. */
static uint64_t rnd_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void bm_init(struct mfd__bitmap *b, uint64_t nbits)
{
	assert_int_equal(mfd__bitmap_init(b, nbits), 0);
	assert_int_equal(b->nbits, nbits);
	assert_int_equal(b->nwords, (nbits + 63) / 64);
}

/* Bits past nbits in the last word. */
static uint64_t tail_bits(const struct mfd__bitmap *b)
{
	if (!b->nwords || !(b->nbits & 63))
		return 0;
	return b->words[b->nwords - 1] & ~((1ULL << (b->nbits & 63)) - 1);
}

static uint64_t naive_count(const struct mfd__bitmap *b)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < b->nbits; i++)
		n += mfd__bitmap_test(b, i);
	return n;
}

static uint64_t naive_find_next(const struct mfd__bitmap *b, uint64_t from)
{
	for (uint64_t i = from; i < b->nbits; i++)
		if (mfd__bitmap_test(b, i))
			return i;
	return b->nbits;
}

/* Random pattern with the given density out of 256; tail bits kept clear. */
static void random_fill(struct mfd__bitmap *b, uint64_t *state,
			unsigned density)
{
	mfd__bitmap_clear(b);
	for (uint64_t i = 0; i < b->nbits; i++)
		if ((rnd_next(state) & 255) < density)
			mfd__bitmap_set(b, i);
}

/* count_range against a bit-by-bit count, at every start and length
 * around word edges, and clipped at nbits. */
static void test_count_range(UNUSED void **state)
{
	struct mfd__bitmap b;
	const uint64_t nbits = 200;

	assert_int_equal(mfd__bitmap_init(&b, nbits), 0);
	for (uint64_t i = 0; i < nbits; i++)
		if (i % 3 == 0 || (i > 60 && i < 70) || i == 127 || i == 128)
			mfd__bitmap_set(&b, i);
	for (uint64_t start = 0; start <= nbits; start++)
		for (uint64_t n = 0; n <= nbits + 5 - start; n += 7) {
			uint64_t want = 0;
			for (uint64_t i = start; i < start + n && i < nbits;
			     i++)
				want += mfd__bitmap_test(&b, i);
			assert_int_equal(mfd__bitmap_count_range(&b, start, n),
					 want);
		}
	assert_int_equal(mfd__bitmap_count_range(&b, 0, UINT64_MAX),
			 mfd__bitmap_count(&b));
	assert_int_equal(mfd__bitmap_count_range(&b, 5, UINT64_MAX - 2),
			 mfd__bitmap_count(&b) - 2);
	mfd__bitmap_destroy(&b);
}

static void test_init_sizes(UNUSED void **state)
{
	static const uint64_t sizes[] = {
		0, 1, 63, 64, 65, 127, 128, 129, 4096
	};

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		struct mfd__bitmap b;

		bm_init(&b, sizes[k]);
		assert_non_null(b.words);
		assert_int_equal(mfd__bitmap_count(&b), 0);
		assert_int_equal(mfd__bitmap_find_next(&b, 0), sizes[k]);
		mfd__bitmap_destroy(&b);
		assert_null(b.words);
		/* destroy twice is harmless */
		mfd__bitmap_destroy(&b);
	}
}

static void test_set_test(UNUSED void **state)
{
	struct mfd__bitmap b;

	bm_init(&b, 200);
	for (uint64_t i = 0; i < 200; i += 3)
		mfd__bitmap_set(&b, i);
	for (uint64_t i = 1; i < 200; i += 7)
		mfd__bitmap_set_atomic(&b, i);
	for (uint64_t i = 0; i < 200; i++)
		assert_int_equal(mfd__bitmap_test(&b, i),
				 i % 3 == 0 || i % 7 == 1);
	assert_int_equal(mfd__bitmap_count(&b), naive_count(&b));
	assert_int_equal(tail_bits(&b), 0);
	mfd__bitmap_destroy(&b);
}

/* Every (start, n) in a window spanning three word boundaries. */
static void test_set_range_all(UNUSED void **state)
{
	const uint64_t nbits = 250;
	struct mfd__bitmap b;

	bm_init(&b, nbits);
	for (uint64_t start = 0; start < nbits; start++) {
		for (uint64_t n = 0; start + n <= nbits; n++) {
			mfd__bitmap_clear(&b);
			mfd__bitmap_set_range_atomic(&b, start, n);
			for (uint64_t i = 0; i < nbits; i++) {
				bool want = i >= start && i < start + n;

				if (mfd__bitmap_test(&b, i) != want)
					fail_msg("start %" PRIu64 " n %" PRIu64
						 " bit %" PRIu64,
						 start, n, i);
			}
			assert_int_equal(tail_bits(&b), 0);
			assert_int_equal(mfd__bitmap_count(&b), n);
		}
	}
	mfd__bitmap_destroy(&b);
}

/* A range ORs into what is there; it does not clear its neighbours. */
static void test_set_range_keeps_others(UNUSED void **state)
{
	uint64_t st = seed ^ 0x5e7;
	struct mfd__bitmap b, ref;

	bm_init(&b, 300);
	bm_init(&ref, 300);
	for (int iter = 0; iter < 2000; iter++) {
		uint64_t start = rnd_next(&st) % 300;
		uint64_t n = rnd_next(&st) % (300 - start + 1);

		random_fill(&b, &st, 40);
		memcpy(ref.words, b.words, b.nwords * 8);
		for (uint64_t i = start; i < start + n; i++)
			mfd__bitmap_set(&ref, i);
		mfd__bitmap_set_range_atomic(&b, start, n);
		assert_memory_equal(b.words, ref.words, b.nwords * 8);
	}
	mfd__bitmap_destroy(&b);
	mfd__bitmap_destroy(&ref);
}

static void test_fill_clear(UNUSED void **state)
{
	for (uint64_t nbits = 0; nbits <= 200; nbits++) {
		struct mfd__bitmap b;

		bm_init(&b, nbits);
		mfd__bitmap_fill(&b);
		assert_int_equal(tail_bits(&b), 0);
		assert_int_equal(mfd__bitmap_count(&b), nbits);
		for (uint64_t i = 0; i < nbits; i++)
			assert_true(mfd__bitmap_test(&b, i));
		assert_int_equal(mfd__bitmap_find_next(&b, 0),
				 nbits ? 0 : nbits);
		mfd__bitmap_clear(&b);
		assert_int_equal(mfd__bitmap_count(&b), 0);
		for (uint64_t i = 0; i < b.nwords; i++)
			assert_int_equal(b.words[i], 0);
		mfd__bitmap_destroy(&b);
	}
}

static void test_count_random(UNUSED void **state)
{
	uint64_t st = seed ^ 0xc0;
	struct mfd__bitmap b;

	bm_init(&b, 1000);
	for (unsigned density = 0; density <= 256; density += 16) {
		random_fill(&b, &st, density);
		assert_int_equal(mfd__bitmap_count(&b), naive_count(&b));
	}
	mfd__bitmap_destroy(&b);
}

static void test_find_next_random(UNUSED void **state)
{
	static const uint64_t sizes[] = { 1, 63, 64, 65, 130, 1000, 4097 };
	static const unsigned dens[] = { 0, 1, 8, 128, 250, 256 };
	uint64_t st = seed ^ 0xf1;

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		struct mfd__bitmap b;

		bm_init(&b, sizes[k]);
		for (size_t d = 0; d < sizeof(dens) / sizeof(dens[0]); d++) {
			random_fill(&b, &st, dens[d]);
			for (uint64_t from = 0; from <= sizes[k] + 70; from++)
				assert_int_equal(
					mfd__bitmap_find_next(&b, from),
					naive_find_next(&b, from));
		}
		mfd__bitmap_destroy(&b);
	}
}

/* Walking with find_next visits exactly the set bits, in order. */
static void test_find_next_walk(UNUSED void **state)
{
	uint64_t st = seed ^ 0xa1;
	struct mfd__bitmap b;
	uint64_t n = 0, prev = 0;

	bm_init(&b, 10000);
	random_fill(&b, &st, 3);
	for (uint64_t i = mfd__bitmap_find_next(&b, 0); i < b.nbits;
	     i = mfd__bitmap_find_next(&b, i + 1)) {
		assert_true(mfd__bitmap_test(&b, i));
		assert_true(n == 0 || i > prev);
		prev = i;
		n++;
	}
	assert_int_equal(n, mfd__bitmap_count(&b));
	mfd__bitmap_destroy(&b);
}

static void test_harvest(UNUSED void **state)
{
	uint64_t st = seed ^ 0x4a;
	struct mfd__bitmap dst, src, want;

	for (uint64_t nbits = 1; nbits < 300; nbits += 37) {
		bm_init(&dst, nbits);
		bm_init(&src, nbits);
		bm_init(&want, nbits);
		for (int iter = 0; iter < 50; iter++) {
			random_fill(&dst, &st, 30);
			random_fill(&src, &st, iter & 1 ? 30 : 0);
			for (uint64_t i = 0; i < nbits; i++) {
				bool v = mfd__bitmap_test(&dst, i) ||
					 mfd__bitmap_test(&src, i);

				want.words[i >> 6] &= ~(1ULL << (i & 63));
				if (v)
					mfd__bitmap_set(&want, i);
			}
			assert_int_equal(mfd__bitmap_harvest(&dst, &src),
					 naive_count(&want));
			assert_memory_equal(dst.words, want.words,
					    dst.nwords * 8);
			assert_int_equal(mfd__bitmap_count(&src), 0);
		}
		/* Harvesting an empty src leaves dst alone. */
		assert_int_equal(mfd__bitmap_harvest(&dst, &src),
				 mfd__bitmap_count(&dst));
		assert_memory_equal(dst.words, want.words, dst.nwords * 8);
		mfd__bitmap_destroy(&dst);
		mfd__bitmap_destroy(&src);
		mfd__bitmap_destroy(&want);
	}
}

/* A stray bit past nbits in src (an outside writer) never reaches dst. */
static void test_harvest_tail(UNUSED void **state)
{
	struct mfd__bitmap dst, src;

	bm_init(&dst, 70);
	bm_init(&src, 70);
	src.words[1] = (1ULL << 5) | (1ULL << 6) | (1ULL << 63);
	assert_int_equal(mfd__bitmap_harvest(&dst, &src), 1);
	assert_true(mfd__bitmap_test(&dst, 69));
	assert_int_equal(tail_bits(&dst), 0);
	assert_int_equal(mfd__bitmap_find_next(&dst, 0), 69);
	assert_int_equal(src.words[1], 0);
	mfd__bitmap_destroy(&dst);
	mfd__bitmap_destroy(&src);
}

/*
 * Concurrency: writers set bits while a harvester drains them. Region A:
 * every bit is set exactly once, by one writer, the writers' bits
 * interleaved so that they share every word; the harvests must then
 * deliver each bit exactly once. Region B: overlapping ranges; the union
 * of the harvests must be the union of the ranges.
 */
#define CONC_WRITERS 4
#define CONC_A	     (1u << 18)
#define CONC_B	     5000u
#define CONC_BITS    (CONC_A + CONC_B)

struct writer {
	pthread_t tid;
	unsigned id;
	struct mfd__bitmap *log;
	struct mfd__bitmap ranges; /* what this writer set in region B */
	uint64_t rnd;
	uint32_t *order;
};

static int writers_left;
static pthread_barrier_t conc_start;
static uint64_t conc_rounds; /* harvests done so far, atomic */

/* Writers pause at each quarter of their work until the harvester has
 * finished a round after it (bounded: 10 s), so that rounds interleave
 * with writes however the two CPUs are shared. */
static void wait_for_a_round(void)
{
	uint64_t r0 = __atomic_load_n(&conc_rounds, __ATOMIC_ACQUIRE);
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		sched_yield();
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while (__atomic_load_n(&conc_rounds, __ATOMIC_ACQUIRE) == r0 &&
		 t.tv_sec - t0.tv_sec < 10);
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	const uint32_t n = CONC_A / CONC_WRITERS;

	pthread_barrier_wait(&conc_start);
	for (uint32_t k = 0; k < n; k++) {
		if (k && k % (n / 4) == 0)
			wait_for_a_round();
		mfd__bitmap_set_atomic(w->log, w->order[k]);
		/* Interleave with the harvester even on few CPUs. */
		if (k % 4096 == 0)
			sched_yield();
		if (k % 16 == 0) {
			uint64_t r = rnd_next(&w->rnd);
			uint64_t i = r % CONC_B, len = 1 + (r >> 32) % 150;

			if (i + len > CONC_B)
				len = CONC_B - i;
			mfd__bitmap_set_range_atomic(w->log, CONC_A + i, len);
			for (uint64_t j = CONC_A + i; j < CONC_A + i + len; j++)
				mfd__bitmap_set(&w->ranges, j);
		}
	}
	__atomic_fetch_sub(&writers_left, 1, __ATOMIC_RELEASE);
	return NULL;
}

struct harvester {
	struct mfd__bitmap *log;
	struct mfd__bitmap total; /* union of every harvest */
	uint64_t rounds;
	uint64_t dups;	     /* region A bits harvested twice */
	uint64_t bad_counts; /* cmocka asserts belong to the main thread */
};

static void harvest_once(struct harvester *h, struct mfd__bitmap *round)
{
	uint64_t n;

	/* A fresh dst each round, as the migration does per round. */
	mfd__bitmap_clear(round);
	n = mfd__bitmap_harvest(round, h->log);
	if (n != mfd__bitmap_count(round))
		h->bad_counts++;
	for (uint64_t i = 0; i < round->nwords; i++) {
		if (i < CONC_A / 64)
			h->dups += (uint64_t)__builtin_popcountll(
				round->words[i] & h->total.words[i]);
		h->total.words[i] |= round->words[i];
	}
	h->rounds++;
	__atomic_store_n(&conc_rounds, h->rounds, __ATOMIC_RELEASE);
}

static void *harvester_main(void *arg)
{
	struct harvester *h = arg;
	struct mfd__bitmap round;

	if (mfd__bitmap_init(&round, CONC_BITS)) {
		h->bad_counts = UINT64_MAX;
		return NULL;
	}
	pthread_barrier_wait(&conc_start);
	while (__atomic_load_n(&writers_left, __ATOMIC_ACQUIRE) > 0)
		harvest_once(h, &round);
	/* Whatever the writers set after the last round. */
	harvest_once(h, &round);
	mfd__bitmap_destroy(&round);
	return NULL;
}

static void test_harvest_concurrent(UNUSED void **state)
{
	struct mfd__bitmap log, all;
	struct writer w[CONC_WRITERS];
	struct harvester h = { .log = &log };
	pthread_t htid;
	uint64_t st = seed ^ 0xcc;

	bm_init(&log, CONC_BITS);
	bm_init(&all, CONC_BITS);
	bm_init(&h.total, CONC_BITS);
	writers_left = CONC_WRITERS;
	conc_rounds = 0;
	assert_int_equal(
		pthread_barrier_init(&conc_start, NULL, CONC_WRITERS + 1), 0);
	for (unsigned k = 0; k < CONC_WRITERS; k++) {
		const uint32_t n = CONC_A / CONC_WRITERS;

		w[k].id = k;
		w[k].log = &log;
		w[k].rnd = rnd_next(&st);
		bm_init(&w[k].ranges, CONC_BITS);
		w[k].order = malloc(n * sizeof(uint32_t));
		assert_non_null(w[k].order);
		for (uint32_t j = 0; j < n; j++)
			w[k].order[j] = j * CONC_WRITERS + k;
		for (uint32_t j = n - 1; j > 0; j--) {
			uint32_t r = (uint32_t)(rnd_next(&st) % (j + 1));
			uint32_t t = w[k].order[j];

			w[k].order[j] = w[k].order[r];
			w[k].order[r] = t;
		}
	}
	assert_int_equal(pthread_create(&htid, NULL, harvester_main, &h), 0);
	for (unsigned k = 0; k < CONC_WRITERS; k++)
		assert_int_equal(
			pthread_create(&w[k].tid, NULL, writer_main, &w[k]), 0);
	for (unsigned k = 0; k < CONC_WRITERS; k++)
		assert_int_equal(pthread_join(w[k].tid, NULL), 0);
	assert_int_equal(pthread_join(htid, NULL), 0);
	pthread_barrier_destroy(&conc_start);

	assert_int_equal(h.bad_counts, 0);
	assert_int_equal(h.dups, 0);
	assert_int_equal(mfd__bitmap_count(&log), 0);

	mfd__bitmap_set_range_atomic(&all, 0, CONC_A);
	for (unsigned k = 0; k < CONC_WRITERS; k++) {
		for (uint64_t i = 0; i < all.nwords; i++)
			all.words[i] |= w[k].ranges.words[i];
		mfd__bitmap_destroy(&w[k].ranges);
		free(w[k].order);
	}
	print_message("harvest rounds: %" PRIu64 ", bits: %" PRIu64 "\n",
		      h.rounds, mfd__bitmap_count(&all));
	/* Otherwise the test proved nothing about concurrency. */
	assert_true(h.rounds > 2);
	for (uint64_t i = 0; i < CONC_BITS; i++)
		if (mfd__bitmap_test(&all, i) != mfd__bitmap_test(&h.total, i))
			fail_msg("bit %" PRIu64 ": set %d, harvested %d", i,
				 mfd__bitmap_test(&all, i),
				 mfd__bitmap_test(&h.total, i));
	mfd__bitmap_destroy(&log);
	mfd__bitmap_destroy(&all);
	mfd__bitmap_destroy(&h.total);
}

int main(void)
{
	const char *env = getenv("MFD_TEST_SEED");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_sizes),
		cmocka_unit_test(test_count_range),
		cmocka_unit_test(test_set_test),
		cmocka_unit_test(test_set_range_all),
		cmocka_unit_test(test_set_range_keeps_others),
		cmocka_unit_test(test_fill_clear),
		cmocka_unit_test(test_count_random),
		cmocka_unit_test(test_find_next_random),
		cmocka_unit_test(test_find_next_walk),
		cmocka_unit_test(test_harvest),
		cmocka_unit_test(test_harvest_tail),
		cmocka_unit_test(test_harvest_concurrent),
	};

	seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
	printf("test_bitmap: seed %" PRIu64 " (MFD_TEST_SEED=%" PRIu64
	       " to replay)\n",
	       seed, seed);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
