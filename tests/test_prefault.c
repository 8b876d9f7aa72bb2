/* SPDX-License-Identifier: MIT */
/*
 * dest-prefault = ahead (ramblock/prefault.c): the helpers populate whole
 * pages inside registered blocks only, never a page outside them nor one
 * that a block only partly covers, never more than the window beyond the
 * receive front, and all of every block once the front has passed it. The
 * blocks sit between PROT_NONE guards (a write there would crash) in a
 * mapping without huge pages, so that residency (mincore) is per 4 KiB
 * page; a migration with dest-prefault=ahead lands RAM equal byte for byte.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "multifd/internal.h"
#include "ramblock/prefault.h"
#include "testvm.h"

#define PG  4096UL
#define MiB (1024UL * 1024)

static const uint64_t map_len = 32 * MiB;

static bool resident(uint8_t *base, uint64_t off)
{
	unsigned char v = 0;
	assert_int_equal(mincore(base + off, PG, &v), 0);
	return v & 1;
}

/* Whether page [off, off + PG) lies entirely inside one of the blocks. */
static bool inside(uint8_t *base, const struct mfd__ramblock *b, unsigned n,
		   uint64_t off)
{
	for (unsigned i = 0; i < n; i++)
		if (base + off >= b[i].host &&
		    base + off + PG <= b[i].host + b[i].size)
			return true;
	return false;
}

static uint64_t wait_bytes(struct mfd__prefault *pf, uint64_t want)
{
	for (int i = 0; i < 5000; i++) {
		uint64_t b = __atomic_load_n(&pf->bytes, __ATOMIC_RELAXED);
		if (b >= want)
			return b;
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	return __atomic_load_n(&pf->bytes, __ATOMIC_RELAXED);
}

static void test_blocks_only(void **state)
{
	(void)state;
	uint8_t *base = mmap(NULL, map_len, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(base != MAP_FAILED);
	madvise(base, map_len, MADV_NOHUGEPAGE);
	/* Guards: [0, 4M), [12M, 14M), [24M, 32M). */
	assert_int_equal(mprotect(base, 4 * MiB, PROT_NONE), 0);
	assert_int_equal(mprotect(base + 12 * MiB, 2 * MiB, PROT_NONE), 0);
	assert_int_equal(mprotect(base + 24 * MiB, 8 * MiB, PROT_NONE), 0);
	/* Block 0 page-aligned but not 2 MiB-aligned, its size not a
	 * multiple of 2 MiB; block 1 starts 100 bytes into a page, so its
	 * first and last pages are only partly its own. */
	struct mfd__ramblock b[2] = {
		{ .host = base + 4 * MiB + PG,
		  .size = 5 * MiB + 3 * PG,
		  .page_size = PG },
		{ .host = base + 14 * MiB + 100,
		  .size = 9 * MiB,
		  .page_size = PG },
	};
	uint64_t cpu = 0;
	struct mfd__prefault pf;
	/* Window 1 MiB, front 0: the first unit only, which ends at the
	 * first 2 MiB boundary after the block's start. */
	uintptr_t u0 = ((uintptr_t)b[0].host | (2 * MiB - 1)) + 1;
	uint64_t first = u0 - (uintptr_t)b[0].host;
	assert_int_equal(mfd__prefault_start(&pf, b, 2, 1 * MiB, 2, &cpu), 0);
	wait_bytes(&pf, first);
	struct timespec ts = { 0, 50000000 };
	nanosleep(&ts, NULL);
	assert_int_equal(__atomic_load_n(&pf.bytes, __ATOMIC_RELAXED), first);
	for (uint64_t off = 0; off < map_len; off += PG) {
		uint8_t *p = base + off;
		bool want = p >= b[0].host && (uintptr_t)p + PG <= u0;
		if (resident(base, off) != want)
			fail_msg("page at +%llu: resident %d, expected %d",
				 (unsigned long long)off, !want, want);
	}
	/* The front passes the end of block 1: everything inside. */
	mfd__prefault_note(&pf, 1, b[1].size);
	/* Block 1: 9 MiB from +100 holds 9 MiB / PG - 1 whole pages. */
	uint64_t full = b[0].size + (9 * MiB / PG - 1) * PG;
	assert_int_equal(wait_bytes(&pf, full), full);
	mfd__prefault_stop(&pf);
	assert_true(cpu > 0);
	for (uint64_t off = 0; off < map_len; off += PG) {
		bool want = inside(base, b, 2, off);
		if (resident(base, off) != want)
			fail_msg("page at +%llu: resident %d, expected %d",
				 (unsigned long long)off, !want, want);
	}
	munmap(base, map_len);
}

static void test_bad_args(void **state)
{
	(void)state;
	struct mfd__ramblock b = { .host = (uint8_t *)PG,
				   .size = PG,
				   .page_size = PG };
	uint64_t cpu = 0;
	struct mfd__prefault pf;
	assert_int_equal(mfd__prefault_start(&pf, &b, 1, 0, 1, &cpu), -EINVAL);
	assert_int_equal(mfd__prefault_start(&pf, &b, 1, MiB, 0, &cpu),
			 -EINVAL);
	assert_int_equal(mfd__prefault_start(&pf, &b, 1, MiB,
					     MFD__PREFAULT_THREADS_MAX + 1,
					     &cpu),
			 -EINVAL);
	mfd__prefault_stop(&pf); /* never started: harmless */
}

/* A whole migration with dest-prefault = ahead: RAM equal. */
static void test_migrate_ahead(void **state)
{
	(void)state;
	struct tvm vm = { 0 };
	const char *kv[] = { "dest-prefault=ahead", "channels=2", NULL };
	tvm_config(&vm, kv);
	tvm_add_block(&vm, "pc.ram", 48 * MiB, PG);
	tvm_add_block(&vm, "pc.rom", 3 * MiB, PG);
	tvm_fill_random(vm.blocks[0].src, 48 * MiB, 7);
	tvm_fill_random(vm.blocks[1].src, 3 * MiB, 8);
	int dret;
	assert_int_equal(tvm_migrate(&vm, NULL, &dret), 0);
	assert_int_equal(dret, 0);
	assert_true(tvm_equal(&vm));
	tvm_destroy(&vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blocks_only),
		cmocka_unit_test(test_bad_args),
		cmocka_unit_test(test_migrate_ahead),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
