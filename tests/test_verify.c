/* SPDX-License-Identifier: MIT */
/*
 * Verification catches a page that arrives wrong. One page of the source
 * holds a marker; a proxy flips one byte of it inside a valid PAGES packet
 * (headers and offsets untouched), or a destination-side test hook
 * (mfd__test_dest_placed) changes it after it was placed. With verify on,
 * the destination must answer MFD_EVERIFY, never call its loaded hook, and
 * the source must report MFD_EVERIFY and resume its stopped guest. With
 * verify off the same damage goes through unnoticed: the damage is real,
 * and it is the digest comparison that stops it.
 *
 * The digests are taken per page where a page is sent and where it is
 * placed (docs/protocol.md 5.5): a page re-sent in a later round must
 * carry its new digest on both sides (no damage: the migration succeeds;
 * the later copy damaged in flight: MFD_EVERIFY), and a destination page
 * that should be zero but is not is caught too.
 *
 * Device state has no digest of its own (docs/protocol.md: END carries
 * per-block RAM digests only); a device validates what it was given when
 * it enters STOP (test_devices), so there is no device case here.
 * Last, the per-page digests combine to the digest of the memory itself,
 * and the wire's block digests, kept up to date chunk by chunk between
 * rounds, equal the protocol's definition computed from scratch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "multifd/internal.h"
#include "multifd/common/digest.h"
#include "multifd/session.h"
#include "testvm.h"

#define MiB	 (1024UL * 1024)
#define RAM	 (8 * MiB)
#define PAGE	 4096UL
#define MARK_PG	 300
#define MARK	 0x4b52414d4b52414dULL
#define MARK2	 0x32324b52414d4b52ULL /* the marker page's later copy */
#define FLIP_BIT 0x10

static uint64_t seed;
static int flips;	    /* atomic */
static uint64_t flip_value; /* the marker the proxy damages */

/* Flips one byte of the first marker seen on a data channel, once. */
static void flip_marker(struct tvm_proxy *p, unsigned conn, uint64_t pos,
			uint8_t *buf, size_t len)
{
	if (conn == 0)
		return;
	for (size_t i = 0; i + 8 <= len; i++) {
		uint64_t v;
		memcpy(&v, buf + i, 8);
		if (v == flip_value) {
			/* One flip in all: the rest of the page may come in a
			 * later read (TCP splits it), and must pass. */
			int none = 0;
			if (__atomic_compare_exchange_n(&flips, &none, 1, false,
							__ATOMIC_RELAXED,
							__ATOMIC_RELAXED))
				buf[i + 3] ^= FLIP_BIT;
			return;
		}
	}
}

/* A receive worker placed the marker page: one bit of it changes before
 * the worker takes its digest. */
static void change_placed(unsigned block, uint8_t *host,
			  const uint64_t *offsets, uint32_t count)
{
	for (uint32_t i = 0; block == 0 && i < count; i++)
		if (offsets[i] == MARK_PG * PAGE &&
		    !__atomic_fetch_add(&flips, 1, __ATOMIC_RELAXED))
			host[MARK_PG * PAGE + 100] ^= FLIP_BIT;
}

/* The guest rewrites the marker page once, after round 0: the page goes
 * out again in the final round, now holding MARK2. */
static int syncs; /* sync_dirty calls: the migration thread's */
static int rewrite_marker(void *o, unsigned block, uint64_t *bitmap,
			  uint64_t npages)
{
	struct tvm *vm = o;
	(void)npages;
	if (block == 0 && syncs++ == 0) {
		uint64_t page[PAGE / 8];
		for (size_t i = 0; i < PAGE / 8; i++)
			page[i] = MARK2;
		tvm_guest_write(vm->blocks[0].src + MARK_PG * PAGE, page, PAGE);
		bitmap[MARK_PG / 64] |= 1ULL << (MARK_PG % 64);
	}
	return 0;
}

enum how { PROXY, HOOK, PROXY_RESENT };

static void run(enum how how, bool verify)
{
	syncs = 0;
	flip_value = how == PROXY_RESENT ? MARK2 : MARK;
	struct tvm vm = { 0 };
	const char *kv[] = { "channels=2", verify ? "verify=on" : "verify=off",
			     "io-timeout=10s", NULL };
	tvm_config(&vm, kv);
	tvm_add_block(&vm, "pc.ram", RAM, PAGE);
	tvm_fill_random(vm.blocks[0].src, RAM, seed);
	uint64_t *mark = (uint64_t *)(vm.blocks[0].src + MARK_PG * PAGE);
	for (size_t i = 0; i < PAGE / 8; i++)
		mark[i] = MARK;
	uint64_t before = tvm_hash(vm.blocks[0].src, RAM), after = before;
	if (how == PROXY_RESENT) {
		/* What the guest holds once it has rewritten the marker. */
		uint8_t *shadow = tvm_map(RAM);
		memcpy(shadow, vm.blocks[0].src, RAM);
		for (size_t i = 0; i < PAGE / 8; i++)
			((uint64_t *)(shadow + MARK_PG * PAGE))[i] = MARK2;
		after = tvm_hash(shadow, RAM);
		tvm_unmap(shadow, RAM);
		vm.shooks.sync_dirty = rewrite_marker;
	}
	tvm_start_dest(&vm);

	__atomic_store_n(&flips, 0, __ATOMIC_RELAXED);
	struct tvm_proxy proxy = { .damage = flip_marker };
	int dret = 0, ret;
	if (how != HOOK) {
		tvm_proxy_start(&proxy, vm.uri, 3);
		ret = tvm_migrate(&vm, proxy.listen_uri, &dret);
		tvm_proxy_stop(&proxy);
	} else {
		mfd__test_dest_placed = change_placed;
		ret = tvm_migrate(&vm, NULL, &dret);
		mfd__test_dest_placed = NULL;
	}
	printf("# %s, verify %s: source %d (%s), destination %d (%s)\n",
	       how == PROXY	     ? "proxy"
	       : how == PROXY_RESENT ? "proxy, re-sent page"
				     : "hook",
	       verify ? "on" : "off", ret, mfd_strerror(ret), dret,
	       mfd_strerror(dret));
	/* The damage happened, exactly once. */
	assert_int_equal(__atomic_load_n(&flips, __ATOMIC_RELAXED), 1);
	assert_int_equal(vm.stopped, 1);
	if (verify) {
		assert_int_equal(dret, MFD_EVERIFY);
		assert_int_equal(ret, MFD_EVERIFY);
		assert_int_equal(vm.loaded, 0);
		assert_int_equal(vm.failed, 1);
		assert_int_equal(vm.failed_err, MFD_EVERIFY);
		/* The guest runs on at the source, its memory untouched. */
		assert_int_equal(vm.resumed, 1);
		assert_true(tvm_hash(vm.blocks[0].src, RAM) ==
			    (how == PROXY_RESENT ? after : before));
		mfd_stats st;
		mfd_source_get_stats(vm.src, &st, sizeof(st));
		assert_int_equal(st.phase, MFD_PHASE_FAILED);
		assert_int_equal(st.error, MFD_EVERIFY);
	} else {
		assert_int_equal(ret, 0);
		assert_int_equal(dret, 0);
		assert_int_equal(vm.loaded, 1);
		assert_int_equal(vm.resumed, 0);
		/* Only one byte differs, by the flipped bit, in the
		 * marker page. */
		assert_false(tvm_equal(&vm));
		uint8_t *d = vm.blocks[0].dst, *s = vm.blocks[0].src;
		size_t ndiff = 0, at = 0;
		for (size_t i = 0; i < RAM; i++)
			if (d[i] != s[i]) {
				ndiff++;
				at = i;
			}
		assert_int_equal(ndiff, 1);
		assert_int_equal(at / PAGE, MARK_PG);
		assert_int_equal(d[at] ^ s[at], FLIP_BIT);
	}
	tvm_destroy(&vm);
}

static void test_flip_in_flight(void **s)
{
	run(PROXY, true);
}
static void test_flip_in_flight_unverified(void **s)
{
	run(PROXY, false);
}
static void test_changed_after_placing(void **s)
{
	run(HOOK, true);
}
static void test_changed_after_placing_unverified(void **s)
{
	run(HOOK, false);
}

static void test_resent_in_flight(void **s)
{
	run(PROXY_RESENT, true);
}

/* The marker page re-sent in the final round, undamaged: both sides'
 * page digests follow the later copy, and the migration succeeds. */
static void test_resent_clean(void **s)
{
	(void)s;
	struct tvm vm = { 0 };
	const char *kv[] = { "channels=2", "verify=on", "io-timeout=10s",
			     NULL };
	tvm_config(&vm, kv);
	tvm_add_block(&vm, "pc.ram", RAM, PAGE);
	tvm_fill_random(vm.blocks[0].src, RAM, seed);
	syncs = 0;
	vm.shooks.sync_dirty = rewrite_marker;
	int dret;
	int ret = tvm_migrate(&vm, NULL, &dret);
	assert_int_equal(ret, 0);
	assert_int_equal(dret, 0);
	assert_int_equal(vm.loaded, 1);
	assert_true(syncs >= 2);
	mfd_stats st;
	mfd_source_get_stats(vm.src, &st, sizeof(st));
	assert_int_equal(st.pages, RAM / PAGE + 1); /* the page went twice */
	assert_int_equal(((uint64_t *)(vm.blocks[0].dst + MARK_PG * PAGE))[7],
			 MARK2);
	assert_true(tvm_equal(&vm));
	tvm_destroy(&vm);
}

/* A zero page arrives where the destination's memory is not zero: the
 * library does not write it (its received-map says nothing landed
 * there), and the digest of what the destination holds catches it. */
static void dest_not_zero(bool verify)
{
	struct tvm vm = { 0 };
	const char *kv[] = { "channels=2", verify ? "verify=on" : "verify=off",
			     "io-timeout=10s", NULL };
	tvm_config(&vm, kv);
	tvm_add_block(&vm, "pc.ram", RAM, PAGE);
	tvm_fill_random(vm.blocks[0].src, RAM, seed);
	memset(vm.blocks[0].src + MARK_PG * PAGE, 0, PAGE);
	vm.blocks[0].dst[MARK_PG * PAGE + 7] = 1;
	int dret;
	int ret = tvm_migrate(&vm, NULL, &dret);
	if (verify) {
		assert_int_equal(dret, MFD_EVERIFY);
		assert_int_equal(ret, MFD_EVERIFY);
		assert_int_equal(vm.loaded, 0);
		assert_int_equal(vm.resumed, 1);
	} else {
		assert_int_equal(ret, 0);
		assert_false(tvm_equal(&vm)); /* the damage is real */
	}
	tvm_destroy(&vm);
}
static void test_dest_not_zero(void **s)
{
	(void)s;
	dest_not_zero(true);
}
static void test_dest_not_zero_unverified(void **s)
{
	(void)s;
	dest_not_zero(false);
}

/* The block digest of page digests is the digest of the memory, a zero
 * page's digest needs no zero buffer, and one bit changes it. */
static void test_page_digests_combine(void **s)
{
	(void)s;
	const size_t size = 4 * MiB, hp = 2 * MiB;
	uint8_t *mem = tvm_map(size);
	tvm_fill_random(mem, size, seed);
	memset(mem + 3 * PAGE, 0, PAGE);
	uint64_t pd[4 * MiB / PAGE];
	for (size_t i = 0; i < size / PAGE; i++)
		pd[i] = mfd__page_digest(mem + i * PAGE, PAGE);
	assert_true(pd[3] == mfd__zero_page_digest(PAGE));
	uint8_t a[1][MFD_DIGEST_SIZE], b[1][MFD_DIGEST_SIZE];
	mfd__digest_pages(pd, size / PAGE, a[0]);
	struct mfd__mem m = { .host = mem, .size = size };
	mfd__digest_mem(&m, 1, PAGE, b);
	assert_memory_equal(a, b, MFD_DIGEST_SIZE);
	mem[size - 1] ^= 1;
	mfd__digest_mem(&m, 1, PAGE, b);
	assert_memory_not_equal(a, b, MFD_DIGEST_SIZE);
	memset(mem, 0, hp);
	assert_true(mfd__page_digest(mem, hp) == mfd__zero_page_digest(hp));
	assert_true(mfd__zero_page_digest(hp) != mfd__zero_page_digest(PAGE));
	tvm_unmap(mem, size);
}

/* Every build of XXH3 the CPU can run (portable, AVX2, AVX-512) gives
 * libxxhash's digests: page digests of several lengths and of zero
 * pages, and block digests equal to XXH3-128 of the page digests as
 * little-endian bytes (docs/protocol.md 5.5). AUTO is the widest. */
static void test_digest_builds_agree(void **s)
{
	(void)s;
	const size_t size = 4 * MiB, hp = 2 * MiB;
	const size_t lens[] = { 1, 100, 240, 241, 1000, PAGE, 64 << 10, hp };
	uint8_t *mem = tvm_map(size), *zero = tvm_map(hp);
	tvm_fill_random(mem, size, seed);
	static uint64_t pd[4 * MiB / PAGE];
	static uint8_t le[8 * (4 * MiB / PAGE)];
	for (size_t i = 0; i < size / PAGE; i++) {
		pd[i] = XXH3_64bits(mem + i * PAGE, PAGE);
		for (int k = 0; k < 8; k++)
			le[8 * i + k] = (uint8_t)(pd[i] >> (8 * k));
	}
	XXH128_canonical_t want;
	XXH128_canonicalFromHash(&want, XXH3_128bits(le, sizeof(le)));
	unsigned ran = 0;
	for (int impl = MFD__DIGEST_PORTABLE; impl < MFD__DIGEST_NIMPL;
	     impl++) {
		if (mfd__digest_select((enum mfd__digest_impl)impl)) {
			printf("digest %s: not on this CPU\n",
			       mfd__digest_name((enum mfd__digest_impl)impl));
			continue;
		}
		ran++;
		for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
			assert_true(mfd__page_digest(mem + 8, lens[i]) ==
				    XXH3_64bits(mem + 8, lens[i]));
			assert_true(mfd__zero_page_digest(lens[i]) ==
				    XXH3_64bits(zero, lens[i]));
		}
		uint64_t mine[4 * MiB / PAGE];
		for (size_t i = 0; i < size / PAGE; i++)
			mine[i] = mfd__page_digest(mem + i * PAGE, PAGE);
		assert_memory_equal(mine, pd, sizeof(pd));
		uint8_t a[1][MFD_DIGEST_SIZE], b[1][MFD_DIGEST_SIZE];
		mfd__digest_pages(pd, size / PAGE, a[0]);
		assert_memory_equal(a[0], want.digest, MFD_DIGEST_SIZE);
		struct mfd__mem m = { .host = mem, .size = size };
		mfd__digest_mem(&m, 1, PAGE, b);
		assert_memory_equal(b[0], want.digest, MFD_DIGEST_SIZE);
		/* One bit of one page changes its page digest. */
		mem[5 * PAGE + 77] ^= 4;
		assert_true(mfd__page_digest(mem + 5 * PAGE, PAGE) != pd[5]);
		mem[5 * PAGE + 77] ^= 4;
	}
	assert_true(ran >= 1);
	assert_int_equal(mfd__digest_select(MFD__DIGEST_AUTO), 0);
	enum mfd__digest_impl widest = MFD__DIGEST_PORTABLE;
	for (int impl = MFD__DIGEST_PORTABLE; impl < MFD__DIGEST_NIMPL; impl++)
		if (mfd__digest_supported((enum mfd__digest_impl)impl))
			widest = (enum mfd__digest_impl)impl;
	assert_int_equal(mfd__digest_current(), widest);
	printf("digest builds checked: %u, in use: %s\n", ran,
	       mfd__digest_name(mfd__digest_current()));
	assert_int_equal(mfd__digest_select(MFD__DIGEST_NIMPL), -ENOTSUP);
	tvm_unmap(mem, size);
	tvm_unmap(zero, hp);
}

/* docs/protocol.md 5.5 from scratch with libxxhash: page digests, chunk
 * digests of 64 of them, XXH3-128 of the chunk digests, all as
 * little-endian u64s. */
static void wire_digest_ref(const uint8_t *mem, uint64_t npages,
			    uint8_t out[MFD_DIGEST_SIZE])
{
	static uint8_t pd[8 * MFD_DIGEST_CHUNK_PAGES], cd[8 * 1024];
	uint64_t nc = 0;
	for (uint64_t first = 0; first < npages;
	     first += MFD_DIGEST_CHUNK_PAGES, nc++) {
		uint64_t n = npages - first < MFD_DIGEST_CHUNK_PAGES
				     ? npages - first
				     : MFD_DIGEST_CHUNK_PAGES;
		for (uint64_t i = 0; i < n; i++) {
			uint64_t d =
				XXH3_64bits(mem + (first + i) * PAGE, PAGE);
			for (int k = 0; k < 8; k++)
				pd[8 * i + k] = (uint8_t)(d >> (8 * k));
		}
		uint64_t c = XXH3_64bits(pd, 8 * n);
		assert_true(nc < sizeof(cd) / 8);
		for (int k = 0; k < 8; k++)
			cd[8 * nc + k] = (uint8_t)(c >> (8 * k));
	}
	XXH128_canonical_t h;
	XXH128_canonicalFromHash(&h, XXH3_128bits(cd, 8 * nc));
	memcpy(out, h.digest, MFD_DIGEST_SIZE);
}

/* The wire's block digests made incrementally (pages recorded in rounds,
 * chunks rehashed between them) equal the definition from scratch, on
 * blocks whose last chunk is short; and only the chunks a recorded page
 * marked are rehashed (a page digest changed behind the session's back
 * is not seen until its page is recorded). */
static void test_wire_digests_incremental(void **s)
{
	(void)s;
	static struct mfd__session ss;
	const uint64_t np[2] = { 15 * MFD_DIGEST_CHUNK_PAGES + 37, 3 };
	uint8_t *mem[2];
	mfd__session_init(&ss, NULL);
	for (int b = 0; b < 2; b++) {
		mem[b] = tvm_map(np[b] * PAGE);
		tvm_fill_random(mem[b], np[b] * PAGE, seed + (uint64_t)b);
		assert_int_equal(mfd__session_add_block(&ss, b ? "b" : "a",
							mem[b], np[b] * PAGE,
							PAGE),
				 0);
	}
	assert_int_equal(mfd__session_digests_alloc(&ss), 0);
	uint64_t rng = seed;
	uint8_t got[2][MFD_DIGEST_SIZE], want[MFD_DIGEST_SIZE];
	for (int round = 0; round < 6; round++) {
		for (int b = 0; b < 2; b++) {
			uint64_t n = round ? 1 + tvm_rand(&rng) % 20 : np[b];
			for (uint64_t k = 0; k < n; k++) {
				uint64_t pg =
					round ? tvm_rand(&rng) % np[b] : k;
				uint8_t *p = mem[b] + pg * PAGE;
				bool zero = round == 2 && k == 0;
				if (zero)
					memset(p, 0, PAGE);
				else if (round)
					p[tvm_rand(&rng) % PAGE] ^= 0x5a;
				mfd__session_page_digest(&ss, (unsigned)b,
							 pg * PAGE, zero);
			}
		}
		mfd__session_chunks_update(&ss);
		mfd__session_wire_digests(&ss, got);
		for (int b = 0; b < 2; b++) {
			wire_digest_ref(mem[b], np[b], want);
			assert_memory_equal(got[b], want, MFD_DIGEST_SIZE);
		}
	}
	/* Incremental: an unmarked change is not rehashed, a marked one is. */
	uint8_t before[2][MFD_DIGEST_SIZE];
	memcpy(before, got, sizeof(got));
	mem[0][700 * PAGE + 5] ^= 1;
	ss.pdig[0][700] ^= 1;
	mfd__session_chunks_update(&ss);
	mfd__session_wire_digests(&ss, got);
	assert_memory_equal(got, before, sizeof(got));
	mfd__session_page_digest(&ss, 0, 700 * PAGE, false);
	mfd__session_chunks_update(&ss);
	mfd__session_wire_digests(&ss, got);
	wire_digest_ref(mem[0], np[0], want);
	assert_memory_equal(got[0], want, MFD_DIGEST_SIZE);
	assert_memory_not_equal(got[0], before[0], MFD_DIGEST_SIZE);
	mfd__session_destroy(&ss);
	for (int b = 0; b < 2; b++)
		tvm_unmap(mem[b], np[b] * PAGE);
}

int main(void)
{
	tvm_io_engine("test_verify");
	seed = tvm_seed("test_verify");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flip_in_flight),
		cmocka_unit_test(test_flip_in_flight_unverified),
		cmocka_unit_test(test_changed_after_placing),
		cmocka_unit_test(test_changed_after_placing_unverified),
		cmocka_unit_test(test_resent_in_flight),
		cmocka_unit_test(test_resent_clean),
		cmocka_unit_test(test_dest_not_zero),
		cmocka_unit_test(test_dest_not_zero_unverified),
		cmocka_unit_test(test_page_digests_combine),
		cmocka_unit_test(test_digest_builds_agree),
		cmocka_unit_test(test_wire_digests_incremental),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
