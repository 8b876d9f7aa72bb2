/* SPDX-License-Identifier: MIT */
/*
 * Dirty trackers, property test: several threads write random pages while
 * the migration thread syncs; every write must be reported by a sync that
 * started after the write started (no write missed), for each tracker. A
 * quiet period must report nothing with uffd-wp (the kernel sees no write).
 * uffd-wp skips (exit 77 for that case) where the kernel lacks it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ramblock/tracker.h"
#include "testvm.h"

#define MiB	(1024UL * 1024)
#define RAM	(32 * MiB)
#define PAGE	4096UL
#define NPAGES	(RAM / PAGE)
#define WRITERS 3
#define SYNCS	40

static uint64_t seed;
static bool uffd_ok;
static const char *uffd_why;

struct ctx {
	struct mfd__ramblock rb;
	struct mfd__tracker t;
	bool manual;
	uint8_t *mem;
	uint32_t syncs_done; /* atomic: syncs completed */
	uint32_t *need;	     /* per page: 1 + syncs done before its
				last write began (atomic max) */
	uint32_t *reported;  /* per page: last sync that reported it */
	int quit;
	uint64_t writes;
};

struct writer {
	struct ctx *c;
	pthread_t th;
	uint64_t rng;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct ctx *c = w->c;
	uint64_t n = 0;
	while (!__atomic_load_n(&c->quit, __ATOMIC_ACQUIRE)) {
		uint64_t pg = tvm_rand(&w->rng) % NPAGES;
		uint32_t before =
			__atomic_load_n(&c->syncs_done, __ATOMIC_ACQUIRE);
		/* Record before writing: the sync that must see the write
		 * can then never miss the record. */
		uint32_t want = before + 1,
			 cur = __atomic_load_n(&c->need[pg], __ATOMIC_RELAXED);
		while (cur < want &&
		       !__atomic_compare_exchange_n(&c->need[pg], &cur, want,
						    false, __ATOMIC_ACQ_REL,
						    __ATOMIC_RELAXED))
			;
		uint64_t *p =
			(uint64_t *)(c->mem + pg * PAGE +
				     (tvm_rand(&w->rng) % (PAGE / 8)) * 8);
		/* Atomic only so that writers racing on one word are no
		 * data race for TSan; the tracker sees a plain store. */
		__atomic_store_n(p, tvm_rand(&w->rng), __ATOMIC_RELAXED);
		if (c->manual)
			mfd__ramblock_mark_dirty(&c->rb, pg * PAGE, 8);
		n++;
		if ((n & 255) == 0)
			usleep(50);
	}
	__atomic_fetch_add(&c->writes, n, __ATOMIC_RELAXED);
	return NULL;
}

/* One sync: record which sync reported each page, clear the bitmap. */
static uint64_t do_sync(struct ctx *c, uint32_t no)
{
	int64_t n = mfd__tracker_sync(&c->t, 0);
	assert_true(n >= 0);
	uint64_t cnt = 0;
	for (uint64_t pg = mfd__bitmap_find_next(&c->rb.dirty, 0); pg < NPAGES;
	     pg = mfd__bitmap_find_next(&c->rb.dirty, pg + 1)) {
		c->reported[pg] = no;
		cnt++;
	}
	assert_int_equal(cnt, (uint64_t)n);
	mfd__bitmap_clear(&c->rb.dirty);
	return cnt;
}

static void run(int kind)
{
	struct ctx c = { 0 };
	c.manual = kind == MFD__TRACKER_MANUAL;
	c.mem = tvm_map(RAM);
	tvm_fill_random(c.mem, RAM, seed);
	c.need = calloc(NPAGES, sizeof(*c.need));
	c.reported = calloc(NPAGES, sizeof(*c.reported));
	assert_non_null(c.need);
	assert_non_null(c.reported);
	assert_int_equal(mfd__ramblock_init(&c.rb, "ram", c.mem, RAM, PAGE), 0);
	assert_int_equal(mfd__tracker_start(&c.t, kind, &c.rb, 1), 0);
	assert_int_equal(c.t.kind, kind);

	struct writer w[WRITERS];
	for (int i = 0; i < WRITERS; i++) {
		w[i] = (struct writer){ .c = &c,
					.rng = seed * 31 + (uint64_t)i };
		pthread_create(&w[i].th, NULL, writer_main, &w[i]);
	}
	uint64_t total = 0;
	for (uint32_t s = 1; s <= SYNCS; s++) {
		usleep(5000);
		total += do_sync(&c, s);
		__atomic_store_n(&c.syncs_done, s, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&c.quit, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(w[i].th, NULL);
	/* The last writes are reported by the final sync. */
	total += do_sync(&c, SYNCS + 1);
	__atomic_store_n(&c.syncs_done, SYNCS + 1, __ATOMIC_RELEASE);

	uint64_t written = 0, missed = 0;
	for (uint64_t pg = 0; pg < NPAGES; pg++) {
		if (!c.need[pg])
			continue;
		written++;
		if (c.reported[pg] < c.need[pg]) {
			if (missed++ < 5)
				fprintf(stderr,
					"page %llu: last write needs sync "
					">= %u, last reported by %u\n",
					(unsigned long long)pg, c.need[pg],
					c.reported[pg]);
		}
	}
	printf("# %s: %llu writes to %llu pages, %llu pages reported over "
	       "%d syncs, %llu missed\n",
	       mfd__tracker_name(kind), (unsigned long long)c.writes,
	       (unsigned long long)written, (unsigned long long)total,
	       SYNCS + 1, (unsigned long long)missed);
	assert_int_equal(missed, 0);
	assert_true(written > 0);

	/* Nobody writes now: reading memory is no write. */
	volatile uint64_t sum = 0;
	for (uint64_t off = 0; off < RAM; off += PAGE)
		sum += c.mem[off];
	(void)sum;
	assert_int_equal(do_sync(&c, SYNCS + 2), 0);

	/* A write after the quiet sync is still seen (re-protection). */
	c.mem[5 * PAGE + 17] ^= 1;
	if (c.manual)
		mfd__ramblock_mark_dirty(&c.rb, 5 * PAGE + 17, 1);
	assert_int_equal(do_sync(&c, SYNCS + 3), 1);
	assert_int_equal(c.reported[5], SYNCS + 3);

	mfd__tracker_stop(&c.t);
	/* Stopped: the memory is writable and untracked. */
	c.mem[7 * PAGE] = 1;
	mfd__ramblock_destroy(&c.rb);
	free(c.need);
	free(c.reported);
	tvm_unmap(c.mem, RAM);
}

static void test_manual(void **state)
{
	(void)state;
	run(MFD__TRACKER_MANUAL);
}

static void test_uffd_wp(void **state)
{
	(void)state;
	if (!uffd_ok)
		skip();
	run(MFD__TRACKER_UFFD_WP);
}

/* Unaligned memory cannot be registered: the tracker falls back. */
static void test_fallback(void **state)
{
	(void)state;
	uint8_t *mem = tvm_map(2 * MiB);
	struct mfd__ramblock rb;
	struct mfd__tracker t;
	assert_int_equal(mfd__ramblock_init(&rb, "odd", mem + 512, MiB, PAGE),
			 0);
	assert_int_equal(mfd__tracker_start(&t, MFD__TRACKER_UFFD_WP, &rb, 1),
			 0);
	assert_int_equal(t.kind, MFD__TRACKER_MANUAL);
	mfd__tracker_stop(&t);
	mfd__ramblock_destroy(&rb);
	tvm_unmap(mem, 2 * MiB);
}

int main(void)
{
	seed = tvm_seed("test_tracker");
	uffd_ok = mfd__tracker_uffd_supported(&uffd_why);
	if (!uffd_ok)
		printf("# uffd-wp tracker not supported here (%s): its "
		       "test is skipped\n",
		       uffd_why);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_manual),
		cmocka_unit_test(test_uffd_wp),
		cmocka_unit_test(test_fallback),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	/* The uffd-wp case is the point of this binary: say "skipped"
	 * rather than "passed" when it could not run. */
	if (!ret && !uffd_ok)
		return 77;
	return ret;
}
