/* SPDX-License-Identifier: MIT */
/*
 * Post-copy placement (ramblock/uffd.c, docs/protocol.md 10.4): pages land
 * through userfaultfd exactly once, the first placement wins, the guest's
 * own writes are never overwritten, discarded pages fault again, and a
 * guest thread that faults never reads a torn page while an urgent lane
 * and a bulk lane place pages at the same time.
 *
 * Pages carry a stamp (tests/pagestamp.h), so a reader can tell a whole
 * page from a torn one. Exit 77 where
 * userfaultfd is not available. MFD_TEST_SEED=n replays the random reads;
 * MFD_UFFD_MEASURE_MB=n sizes the 4 KiB against 2 MiB placement timing
 * (default 64 MiB; printed, not asserted).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ramblock/ramblock.h"
#include "ramblock/uffd.h"
#include "pagestamp.h"

static uint8_t *map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(p != MAP_FAILED);
	return p;
}

static void open_or_skip(struct mfd__uffd_missing *u)
{
	int ret = mfd__uffd_missing_open(u);
	if (ret == -ENOTSUP) {
		fprintf(stderr, "userfaultfd not available: skipped\n");
		exit(77);
	}
	assert_int_equal(ret, 0);
}

static void test_place_once(void **state)
{
	(void)state;
	struct mfd__uffd_missing u;
	struct mfd__bitmap rx;
	uint8_t *mem = map(16 * PS), a[PS], b[PS], buf[5 * PS];

	open_or_skip(&u);
	assert_int_equal(mfd__uffd_missing_register(&u, mem, 16 * PS), 0);
	assert_int_equal(mfd__bitmap_init(&rx, 16), 0);
	stamp(a, 3, 1);
	stamp(b, 3, 2);

	assert_int_equal(mfd__pc_place(&u, &rx, mem, PS, 3, a, NULL), 1);
	assert_true(mfd__pc_received(&rx, 3));
	assert_memory_equal(mem + 3 * PS, a, PS);
	/* A second arrival: skipped by the bitmap. */
	assert_int_equal(mfd__pc_place(&u, &rx, mem, PS, 3, b, NULL), 0);
	assert_memory_equal(mem + 3 * PS, a, PS);
	/* Without the bit the kernel refuses it (EEXIST): still 0, and the
	 * bit is set again. */
	rx.words[0] = 0;
	assert_int_equal(mfd__pc_place(&u, &rx, mem, PS, 3, b, NULL), 0);
	assert_true(mfd__pc_received(&rx, 3));
	assert_memory_equal(mem + 3 * PS, a, PS);

	/* A zero page. */
	assert_int_equal(mfd__pc_place(&u, &rx, mem, PS, 5, NULL, NULL), 1);
	assert_true(is_zero(mem + 5 * PS));

	/* The guest writes page 3 on the destination; a late copy of the
	 * page does not undo it, with or without the bit. */
	mem[3 * PS + 100] = 0x55;
	assert_int_equal(mfd__pc_place(&u, &rx, mem, PS, 3, b, NULL), 0);
	rx.words[0] = 0;
	assert_int_equal(mfd__pc_place(&u, &rx, mem, PS, 3, b, NULL), 0);
	assert_int_equal(mem[3 * PS + 100], 0x55);

	/* Several pages in one call, two of them populated (3 and 5): the
	 * others are placed, those two keep what they hold. */
	for (unsigned i = 0; i < 5; i++)
		stamp(buf + i * PS, 2 + i, 9);
	assert_int_equal(mfd__uffd_place(&u, mem + 2 * PS, buf, 5 * PS), 0);
	assert_memory_equal(mem + 2 * PS, buf, PS);
	assert_memory_equal(mem + 4 * PS, buf + 2 * PS, PS);
	assert_memory_equal(mem + 6 * PS, buf + 4 * PS, PS);
	assert_int_equal(mem[3 * PS + 100], 0x55);
	assert_true(is_zero(mem + 5 * PS));
	/* And all of them free: one call, 1. */
	assert_int_equal(mfd__uffd_place(&u, mem + 8 * PS, buf, 5 * PS), 1);
	assert_memory_equal(mem + 8 * PS, buf, 5 * PS);

	assert_int_equal(mfd__uffd_missing_unregister(&u, mem, 16 * PS), 0);
	mfd__uffd_missing_close(&u);
	mfd__bitmap_destroy(&rx);
	munmap(mem, 16 * PS);
}

struct reader {
	const uint8_t *page;
	uint8_t copy[PS];
	pthread_t t;
};

static void *read_page(void *arg)
{
	struct reader *r = arg;
	memcpy(r->copy, r->page, PS);
	return NULL;
}

static void test_discard_faults(void **state)
{
	(void)state;
	struct mfd__uffd_missing u;
	uint8_t *mem = map(8 * PS), fresh[PS];
	uint64_t addr;

	open_or_skip(&u);
	for (unsigned i = 0; i < 8; i++)
		stamp(mem + i * PS, i, 0); /* pre-copy's content */
	assert_int_equal(mfd__uffd_discard(mem + 2 * PS, 2 * PS), 0);
	assert_int_equal(mfd__uffd_missing_register(&u, mem, 8 * PS), 0);

	/* A page kept from pre-copy is read without a fault. */
	struct reader r = { .page = mem + PS };
	assert_int_equal(pthread_create(&r.t, NULL, read_page, &r), 0);
	pthread_join(r.t, NULL);
	assert_int_equal(mfd__uffd_next_fault(&u, &addr, 0), 0);
	assert_memory_equal(r.copy, mem + PS, PS);

	/* A discarded page faults; the reader gets the new content, never
	 * the stale copy. */
	r.page = mem + 3 * PS;
	assert_int_equal(pthread_create(&r.t, NULL, read_page, &r), 0);
	assert_int_equal(mfd__uffd_next_fault(&u, &addr, 10000), 1);
	assert_true(addr >= (uintptr_t)(mem + 3 * PS) &&
		    addr < (uintptr_t)(mem + 4 * PS));
	stamp(fresh, 3, 1);
	assert_int_equal(mfd__uffd_place(&u, mem + 3 * PS, fresh, PS), 1);
	pthread_join(r.t, NULL);
	assert_memory_equal(r.copy, fresh, PS);
	/* Nothing else faulted. */
	assert_int_equal(mfd__uffd_next_fault(&u, &addr, 0), 0);

	mfd__uffd_missing_close(&u);
	munmap(mem, 8 * PS);
}

/* Many ranges dropped at once (more than one batch): exactly those read
 * as zeros afterwards, the others keep their bytes. */
static void test_drop_batch(void **state)
{
	(void)state;
	const unsigned n = 3 * MFD_DROP_BATCH;
	uint8_t *mem = map((size_t)n * PS);
	struct mfd__drop *d = malloc(sizeof(*d));
	assert_non_null(d);
	memset(mem, 0x5a, (size_t)n * PS);
	mfd__drop_init(d);
	/* Every odd page alone, then pages 8..11 as one range. */
	for (unsigned i = 1; i < n; i += 2)
		assert_int_equal(mfd__drop_add(d, mem + (size_t)i * PS, PS), 0);
	assert_int_equal(mfd__drop_add(d, mem + 8 * PS, 4 * PS), 0);
	assert_int_equal(mfd__drop_finish(d), 0);
	for (unsigned i = 0; i < n; i++) {
		bool gone = i % 2 || (i >= 8 && i < 12);
		assert_int_equal(mem[(size_t)i * PS], gone ? 0 : 0x5a);
		assert_int_equal(mem[(size_t)i * PS + PS - 1], gone ? 0 : 0x5a);
	}
	/* Nothing added: finishing does nothing. */
	mfd__drop_init(d);
	assert_int_equal(mfd__drop_finish(d), 0);
	assert_int_equal(mem[0], 0x5a);
	free(d);
	munmap(mem, (size_t)n * PS);
}

/* ---- readers fault while an urgent lane and a bulk lane place ---- */

#define NPAGES	 2048
#define NREADERS 4
#define NREADS	 3000
#define QCAP	 NPAGES

struct sim {
	struct mfd__uffd_missing u;
	struct mfd__bitmap rx;
	uint8_t *mem, *image;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t q[QCAP];
	unsigned qhead, qtail;
	unsigned requests;
	bool stop;
	unsigned placed_lane, placed_bulk;
	unsigned torn;
	uint64_t seed;
};

static bool zero_page(uint64_t i)
{
	return i % 16 == 5;
}

static const void *src_of(struct sim *s, uint64_t i)
{
	return zero_page(i) ? NULL : s->image + i * PS;
}

static void *fault_thread(void *arg)
{
	struct sim *s = arg;
	uint64_t addr;

	for (;;) {
		pthread_mutex_lock(&s->lock);
		bool stop = s->stop;
		pthread_mutex_unlock(&s->lock);
		if (stop)
			break;
		int ret = mfd__uffd_next_fault(&s->u, &addr, 20);
		assert_true(ret >= 0);
		if (ret == 0)
			continue;
		uint64_t page = (addr - (uintptr_t)s->mem) / PS;
		assert_true(page < NPAGES);
		pthread_mutex_lock(&s->lock);
		assert_true(s->qtail - s->qhead < QCAP);
		s->q[s->qtail++ % QCAP] = page;
		s->requests++;
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

/* The urgent lane: each requested page and up to three following ones. */
static void *lane_thread(void *arg)
{
	struct sim *s = arg;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (s->qhead == s->qtail && !s->stop)
			pthread_cond_wait(&s->cond, &s->lock);
		if (s->qhead == s->qtail)
			break;
		uint64_t page = s->q[s->qhead++ % QCAP];
		pthread_mutex_unlock(&s->lock);
		unsigned n = 0;
		for (uint64_t i = page; i < page + 4 && i < NPAGES; i++) {
			int ret = mfd__pc_place(&s->u, &s->rx, s->mem, PS, i,
						src_of(s, i), NULL);
			assert_true(ret >= 0);
			n += (unsigned)ret;
		}
		pthread_mutex_lock(&s->lock);
		s->placed_lane += n;
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* The bulk lane: every page in address order, slowly enough that the
 * readers fault. */
static void *bulk_thread(void *arg)
{
	struct sim *s = arg;
	unsigned n = 0;

	for (uint64_t i = 0; i < NPAGES; i++) {
		int ret = mfd__pc_place(&s->u, &s->rx, s->mem, PS, i,
					src_of(s, i), NULL);
		assert_true(ret >= 0);
		n += (unsigned)ret;
		if (i % 64 == 63)
			usleep(500);
	}
	pthread_mutex_lock(&s->lock);
	s->placed_bulk = n;
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

struct rd {
	struct sim *s;
	unsigned id;
	pthread_t t;
};

static void *reader_thread(void *arg)
{
	struct rd *r = arg;
	struct sim *s = r->s;
	uint64_t x = s->seed + r->id * 0x9e3779b97f4a7c15ULL;
	uint8_t copy[PS];
	unsigned torn = 0;

	for (unsigned k = 0; k < NREADS; k++) {
		x = ps_mix(x + k);
		uint64_t i = x % NPAGES;
		/* One access per word, as a guest reads: the first touch
		 * faults and waits for the whole page. */
		memcpy(copy, s->mem + i * PS, PS);
		if (!whole(copy, i) || (zero_page(i) != is_zero(copy)))
			torn++;
	}
	pthread_mutex_lock(&s->lock);
	s->torn += torn;
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static void test_faulting_readers(void **state)
{
	(void)state;
	static struct sim s;
	pthread_t ft, lt, bt;
	struct rd rd[NREADERS];

	memset(&s, 0, sizeof(s));
	open_or_skip(&s.u);
	s.seed = ps_seed();
	s.mem = map((size_t)NPAGES * PS);
	s.image = malloc((size_t)NPAGES * PS);
	assert_non_null(s.image);
	for (uint64_t i = 0; i < NPAGES; i++)
		stamp(s.image + i * PS, i, 7);
	assert_int_equal(mfd__bitmap_init(&s.rx, NPAGES), 0);
	pthread_mutex_init(&s.lock, NULL);
	pthread_cond_init(&s.cond, NULL);
	assert_int_equal(
		mfd__uffd_missing_register(&s.u, s.mem, (size_t)NPAGES * PS),
		0);

	assert_int_equal(pthread_create(&ft, NULL, fault_thread, &s), 0);
	assert_int_equal(pthread_create(&lt, NULL, lane_thread, &s), 0);
	for (unsigned i = 0; i < NREADERS; i++) {
		rd[i] = (struct rd){ .s = &s, .id = i };
		assert_int_equal(
			pthread_create(&rd[i].t, NULL, reader_thread, &rd[i]),
			0);
	}
	/* The guest runs before the bulk lane starts: its first faults are
	 * served by the urgent lane alone. */
	pthread_mutex_lock(&s.lock);
	while (s.placed_lane == 0)
		pthread_cond_wait(&s.cond, &s.lock);
	pthread_mutex_unlock(&s.lock);
	assert_int_equal(pthread_create(&bt, NULL, bulk_thread, &s), 0);
	for (unsigned i = 0; i < NREADERS; i++)
		pthread_join(rd[i].t, NULL);
	pthread_join(bt, NULL);
	pthread_mutex_lock(&s.lock);
	s.stop = true;
	pthread_cond_broadcast(&s.cond);
	pthread_mutex_unlock(&s.lock);
	pthread_join(ft, NULL);
	pthread_join(lt, NULL);

	fprintf(stderr,
		"requests %u, placed by the lane %u, by bulk %u, torn %u\n",
		s.requests, s.placed_lane, s.placed_bulk, s.torn);
	assert_int_equal(s.torn, 0);
	assert_true(s.requests >= 1 && s.placed_lane >= 1);
	/* Every page exactly once, whichever lane came first. */
	assert_int_equal(s.placed_lane + s.placed_bulk, NPAGES);
	assert_int_equal(mfd__bitmap_count(&s.rx), NPAGES);
	for (uint64_t i = 0; i < NPAGES; i++) {
		if (zero_page(i))
			assert_true(is_zero(s.mem + i * PS));
		else
			assert_memory_equal(s.mem + i * PS, s.image + i * PS,
					    PS);
	}

	mfd__uffd_missing_close(&s.u);
	mfd__bitmap_destroy(&s.rx);
	pthread_mutex_destroy(&s.lock);
	pthread_cond_destroy(&s.cond);
	munmap(s.mem, (size_t)NPAGES * PS);
	free(s.image);
}

/* ---- 4 KiB against 2 MiB placement ---- */

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Places len bytes of src into a fresh registered mapping in units of
 * unit bytes; returns GB/s, checks the content. */
static double place_rate(const uint8_t *src, size_t len, size_t unit)
{
	struct mfd__uffd_missing u;
	uint8_t *mem = map(len + (2u << 20));
	/* 2 MiB aligned, huge-page hinted, as the bench's guest RAM. */
	uint8_t *base = (uint8_t *)(((uintptr_t)mem + (2u << 20) - 1) &
				    ~(uintptr_t)((2u << 20) - 1));
	madvise(base, len, MADV_HUGEPAGE);
	open_or_skip(&u);
	assert_int_equal(mfd__uffd_missing_register(&u, base, len), 0);
	double t0 = now();
	for (size_t off = 0; off < len; off += unit)
		assert_int_equal(
			mfd__uffd_place(&u, base + off, src + off, unit), 1);
	double t = now() - t0;
	assert_memory_equal(base + len - PS, src + len - PS, PS);
	assert_memory_equal(base, src, PS);
	mfd__uffd_missing_close(&u);
	munmap(mem, len + (2u << 20));
	return (double)len / t / 1e9;
}

static void test_placement_unit(void **state)
{
	(void)state;
	const char *e = getenv("MFD_UFFD_MEASURE_MB");
	size_t mb = e ? strtoul(e, NULL, 0) : 64;
	size_t len = (mb ? mb : 2) << 20;
	len &= ~(size_t)((2u << 20) - 1);
	uint8_t *src = malloc(len);
	assert_non_null(src);
	for (size_t i = 0; i < len; i += PS)
		stamp(src + i, i / PS, 1);
	/* Interleaved, three times each: the first touch of fresh memory
	 * weighs on whichever runs first. */
	for (int k = 0; k < 3; k++) {
		double small = place_rate(src, len, PS);
		double huge = place_rate(src, len, 2u << 20);
		fprintf(stderr,
			"placement of %zu MiB: 4 KiB units %.2f GB/s, "
			"2 MiB units %.2f GB/s\n",
			len >> 20, small, huge);
	}
	free(src);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_place_once),
		cmocka_unit_test(test_discard_faults),
		cmocka_unit_test(test_drop_batch),
		cmocka_unit_test(test_faulting_readers),
		cmocka_unit_test(test_placement_unit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
