/* SPDX-License-Identifier: MIT */
/* Device-state reorder buffer: order, validation, bound, back-pressure. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "devstate/reorder.h"
#include "multifd/multifd.h"
#include "testvm.h"

static void fill(uint8_t *p, uint32_t len, uint32_t dev, uint32_t seq)
{
	uint64_t s = ((uint64_t)dev << 32) | seq;
	for (uint32_t i = 0; i < len; i++)
		p[i] = (uint8_t)(tvm_rand(&s) >> 13);
}

static void put(struct mfd__reorder *r, uint32_t dev, uint32_t seq,
		uint32_t len, bool last)
{
	struct mfd__rchunk *c;
	assert_int_equal(mfd__reorder_reserve(r, dev, seq, len, last, &c), 0);
	fill(c->data, len, dev, seq);
	mfd__reorder_commit(r, c);
}

static void test_out_of_order_single(void **state)
{
	struct mfd__reorder *r;
	assert_int_equal(mfd__reorder_new(&r, 2, 1 << 20, 1024, 64), 0);
	put(r, 0, 2, 100, true);
	put(r, 1, 0, 10, true);
	put(r, 0, 1, 100, false);
	struct mfd__rchunk *c;
	/* Device 1 is complete, device 0 waits for seq 0. */
	assert_int_equal(mfd__reorder_next(r, 1, &c), 0);
	assert_int_equal(c->seq, 0);
	assert_true(c->last);
	mfd__reorder_release(r, c);
	assert_int_equal(mfd__reorder_next(r, 1, &c), 1);
	assert_true(mfd__reorder_dev_done(r, 1));
	put(r, 0, 0, 50, false);
	for (uint32_t s = 0; s < 3; s++) {
		assert_int_equal(mfd__reorder_next(r, 0, &c), 0);
		assert_int_equal(c->seq, s);
		uint8_t exp[100];
		fill(exp, c->len, 0, s);
		assert_memory_equal(c->data, exp, c->len);
		mfd__reorder_release(r, c);
	}
	assert_int_equal(mfd__reorder_next(r, 0, &c), 1);
	assert_int_equal(mfd__reorder_bytes(r), 0);
	mfd__reorder_free(r);
}

static void test_rejects(void **state)
{
	struct mfd__reorder *r;
	struct mfd__rchunk *c = NULL;
	assert_int_equal(mfd__reorder_new(&r, 2, 1 << 20, 1024, 64), 0);
	/* Device index. */
	assert_int_equal(mfd__reorder_reserve(r, 2, 0, 10, false, &c),
			 MFD_EDEVICE);
	/* Lengths. */
	assert_int_equal(mfd__reorder_reserve(r, 0, 0, 1025, false, &c),
			 MFD_ELENGTH);
	assert_int_equal(mfd__reorder_reserve(r, 0, 0, 0, false, &c),
			 MFD_ELENGTH);
	/* Window: [next, next + 64). */
	assert_int_equal(mfd__reorder_reserve(r, 0, 64, 10, false, &c),
			 MFD_EROUND);
	assert_int_equal(mfd__reorder_reserve(r, 0, UINT32_MAX, 10, false, &c),
			 MFD_EROUND);
	put(r, 0, 63, 10, false);
	/* Duplicate, while buffered and while only reserved. */
	assert_int_equal(mfd__reorder_reserve(r, 0, 63, 10, false, &c),
			 MFD_EROUND);
	struct mfd__rchunk *open;
	assert_int_equal(mfd__reorder_reserve(r, 0, 5, 10, false, &open), 0);
	assert_int_equal(mfd__reorder_reserve(r, 0, 5, 10, false, &c),
			 MFD_EROUND);
	mfd__reorder_drop(r, open);
	/* Already loaded. */
	put(r, 1, 0, 10, false);
	assert_int_equal(mfd__reorder_next(r, 1, &c), 0);
	mfd__reorder_release(r, c);
	assert_int_equal(mfd__reorder_reserve(r, 1, 0, 10, false, &c),
			 MFD_EROUND);
	/* After the last chunk; a second last; a last before a later one. */
	put(r, 1, 3, 0, true);
	assert_int_equal(mfd__reorder_reserve(r, 1, 4, 10, false, &c),
			 MFD_EROUND);
	assert_int_equal(mfd__reorder_reserve(r, 1, 2, 10, true, &c),
			 MFD_EROUND);
	assert_int_equal(mfd__reorder_reserve(r, 0, 10, 10, true, &c),
			 MFD_EROUND); /* 63 is already there */
	/* Nothing rejected was kept. */
	assert_int_equal(mfd__reorder_bytes(r), 10);
	/* Bad parameters. */
	struct mfd__reorder *bad;
	assert_int_equal(mfd__reorder_new(&bad, 1, 1000, 1000, 64), -EINVAL);
	assert_int_equal(mfd__reorder_new(&bad, 0, 4000, 1000, 64), -EINVAL);
	mfd__reorder_free(r);
}

struct blocked {
	struct mfd__reorder *r;
	uint32_t dev, seq, len;
	int ret;
	int done; /* atomic */
};

static void *reserve_thread(void *arg)
{
	struct blocked *b = arg;
	struct mfd__rchunk *c = NULL;
	b->ret = mfd__reorder_reserve(b->r, b->dev, b->seq, b->len, false, &c);
	if (b->ret == 0) {
		fill(c->data, b->len, b->dev, b->seq);
		mfd__reorder_commit(b->r, c);
	}
	__atomic_store_n(&b->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { 0, ms * 1000000L };
	nanosleep(&ts, NULL);
}

static void test_back_pressure(void **state)
{
	struct mfd__reorder *r;
	const uint32_t chunk = 1000;
	/* Room for 4 chunks; the last one is the in-order reserve. */
	assert_int_equal(mfd__reorder_new(&r, 1, 4 * chunk, chunk, 1024), 0);
	for (uint32_t s = 1; s <= 3; s++)
		put(r, 0, s, chunk, false);
	assert_int_equal(mfd__reorder_bytes(r), 3 * chunk);
	/* An out-of-order chunk must wait: the buffer does not grow. */
	struct blocked b = { .r = r, .dev = 0, .seq = 4, .len = chunk };
	pthread_t t;
	pthread_create(&t, NULL, reserve_thread, &b);
	sleep_ms(100);
	assert_int_equal(__atomic_load_n(&b.done, __ATOMIC_ACQUIRE), 0);
	assert_int_equal(mfd__reorder_bytes(r), 3 * chunk);
	/* The chunk the loader needs still gets in (the reserve). */
	put(r, 0, 0, chunk, false);
	assert_int_equal(mfd__reorder_bytes(r), 4 * chunk);
	assert_int_equal(__atomic_load_n(&b.done, __ATOMIC_ACQUIRE), 0);
	/* The loader consumes: the waiter gets in. */
	struct mfd__rchunk *c;
	assert_int_equal(mfd__reorder_next(r, 0, &c), 0);
	assert_int_equal(c->seq, 0);
	mfd__reorder_release(r, c);
	/* 3 chunks held: still no room outside the reserve. */
	sleep_ms(50);
	assert_int_equal(__atomic_load_n(&b.done, __ATOMIC_ACQUIRE), 0);
	assert_int_equal(mfd__reorder_next(r, 0, &c), 0);
	assert_int_equal(c->seq, 1);
	mfd__reorder_release(r, c);
	pthread_join(t, NULL);
	assert_int_equal(b.ret, 0);
	struct mfd__reorder_stats st;
	mfd__reorder_get_stats(r, &st);
	assert_true(st.waits >= 1);
	assert_true(st.peak_bytes <= 4 * chunk);
	mfd__reorder_free(r);
}

static void test_abort_while_blocked(void **state)
{
	struct mfd__reorder *r;
	assert_int_equal(mfd__reorder_new(&r, 2, 2000, 1000, 1024), 0);
	put(r, 0, 1, 1000, false);
	struct blocked b = { .r = r, .dev = 0, .seq = 2, .len = 1000 };
	pthread_t t;
	pthread_create(&t, NULL, reserve_thread, &b);
	sleep_ms(50);
	assert_int_equal(__atomic_load_n(&b.done, __ATOMIC_ACQUIRE), 0);
	mfd__reorder_abort(r, -ECANCELED);
	pthread_join(t, NULL);
	assert_int_equal(b.ret, -ECANCELED);
	/* A loader waiting for a chunk that never comes is woken too. */
	struct mfd__rchunk *c;
	assert_int_equal(mfd__reorder_next(r, 1, &c), -ECANCELED);
	mfd__reorder_free(r);
}

/* ---------------------------------------------------------------- */
/* Random: several channels, several devices, loaders applying while  */
/* later chunks arrive.                                              */
/* ---------------------------------------------------------------- */

#define NDEV	3
#define NCHAN	4
#define PER_DEV 400
#define CHUNK	4096U
#define MAXB	(6ULL * CHUNK)

struct rchunk {
	uint32_t dev, seq, len;
	bool last;
};

struct rnd {
	struct mfd__reorder *r;
	struct rchunk *q[NCHAN];
	unsigned qn[NCHAN];
	int bound_violations; /* atomic */
	uint64_t applied[NDEV];
	uint64_t seed;
};

struct rarg {
	struct rnd *x;
	unsigned idx;
};

static void *receiver(void *arg)
{
	struct rarg *a = arg;
	struct rnd *x = a->x;
	for (unsigned i = 0; i < x->qn[a->idx]; i++) {
		struct rchunk *k = &x->q[a->idx][i];
		struct mfd__rchunk *c;
		int ret = mfd__reorder_reserve(x->r, k->dev, k->seq, k->len,
					       k->last, &c);
		assert_int_equal(ret, 0);
		if (mfd__reorder_bytes(x->r) > MAXB)
			__atomic_fetch_add(&x->bound_violations, 1,
					   __ATOMIC_RELAXED);
		fill(c->data, k->len, k->dev, k->seq);
		mfd__reorder_commit(x->r, c);
	}
	return NULL;
}

static void *loader(void *arg)
{
	struct rarg *a = arg;
	struct rnd *x = a->x;
	uint32_t expect = 0;
	uint8_t *buf = malloc(CHUNK);
	uint64_t s = x->seed ^ a->idx;
	for (;;) {
		struct mfd__rchunk *c;
		int ret = mfd__reorder_next(x->r, a->idx, &c);
		if (ret == 1)
			break;
		assert_int_equal(ret, 0);
		assert_int_equal(c->seq, expect);
		fill(buf, c->len, c->dev, c->seq);
		assert_memory_equal(buf, c->data, c->len);
		expect++;
		if (tvm_rand(&s) % 8 == 0)
			usleep(200); /* a slow restore now and then */
		mfd__reorder_release(x->r, c);
	}
	x->applied[a->idx] = expect;
	free(buf);
	return NULL;
}

static void test_random_channels(void **state)
{
	struct rnd x = { 0 };
	x.seed = tvm_seed("test_reorder");
	uint64_t s = x.seed;
	assert_int_equal(mfd__reorder_new(&x.r, NDEV, MAXB, CHUNK, 1024), 0);
	for (unsigned c = 0; c < NCHAN; c++)
		x.q[c] = calloc(NDEV * PER_DEV, sizeof(struct rchunk));
	/* A global send order that keeps each device's sequence; each chunk
	 * goes to a random channel. */
	uint32_t next[NDEV] = { 0 };
	unsigned left = NDEV * PER_DEV;
	while (left) {
		uint32_t d = (uint32_t)(tvm_rand(&s) % NDEV);
		if (next[d] == PER_DEV)
			continue;
		unsigned ch = (unsigned)(tvm_rand(&s) % NCHAN);
		bool last = next[d] == PER_DEV - 1;
		uint32_t len = (uint32_t)(tvm_rand(&s) % CHUNK) + 1;
		x.q[ch][x.qn[ch]++] =
			(struct rchunk){ d, next[d]++, len, last };
		left--;
	}
	pthread_t rt[NCHAN], lt[NDEV];
	struct rarg ra[NCHAN], la[NDEV];
	for (unsigned d = 0; d < NDEV; d++) {
		la[d] = (struct rarg){ &x, d };
		pthread_create(&lt[d], NULL, loader, &la[d]);
	}
	for (unsigned c = 0; c < NCHAN; c++) {
		ra[c] = (struct rarg){ &x, c };
		pthread_create(&rt[c], NULL, receiver, &ra[c]);
	}
	for (unsigned c = 0; c < NCHAN; c++)
		pthread_join(rt[c], NULL);
	for (unsigned d = 0; d < NDEV; d++)
		pthread_join(lt[d], NULL);
	for (unsigned d = 0; d < NDEV; d++)
		assert_int_equal(x.applied[d], PER_DEV);
	assert_int_equal(x.bound_violations, 0);
	struct mfd__reorder_stats st;
	mfd__reorder_get_stats(x.r, &st);
	assert_true(st.peak_bytes <= MAXB);
	assert_int_equal(st.chunks, NDEV * PER_DEV);
	printf("peak %llu of %llu bytes, %llu waits on the bound\n",
	       (unsigned long long)st.peak_bytes, (unsigned long long)MAXB,
	       (unsigned long long)st.waits);
	assert_int_equal(mfd__reorder_bytes(x.r), 0);
	for (unsigned c = 0; c < NCHAN; c++)
		free(x.q[c]);
	mfd__reorder_free(x.r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_out_of_order_single),
		cmocka_unit_test(test_rejects),
		cmocka_unit_test(test_back_pressure),
		cmocka_unit_test(test_abort_while_blocked),
		cmocka_unit_test(test_random_channels),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
