/* SPDX-License-Identifier: MIT */
/*
 * End-to-end with zero pages and compression: a "mix" image (25% zero
 * pages, 25% random, 50% text-like) migrated with each codec over 1, 2 and
 * 4 channels arrives byte for byte; pages rewritten to zero in a later
 * round are really zeroed at the destination; a compressed payload that
 * inflates beyond its pages or ends early is refused with MFD_ECOMPRESS and
 * nothing outside the named pages is written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "multifd/compress/codec.h"
#include "multifd/wire.h"
#include "testvm.h"

#define MiB  (1024UL * 1024)
#define PAGE 4096UL

static uint64_t seed;

/* Text-like page: words from a small vocabulary, with numbers. */
static void text_page(uint8_t *p, uint64_t *st)
{
	static const char *const words[] = {
		"static ", "int ",    "return ", "the ",     "migration ",
		"page ",   "struct ", "if (",	 ") {\n",    "}\n",
		"/* ",	   " */\n",   "error ",	 "channel ", "0x",
		"= ",	   "NULL",    ";\n",	 "\t",	     "for (",
	};
	size_t n = 0;
	while (n < PAGE) {
		char num[24];
		const char *w = words[tvm_rand(st) % 20];
		if (tvm_rand(st) % 8 == 0) {
			snprintf(num, sizeof(num), "%u ",
				 (unsigned)(tvm_rand(st) % 100000));
			w = num;
		}
		size_t l = strlen(w);
		if (l > PAGE - n)
			l = PAGE - n;
		memcpy(p + n, w, l);
		n += l;
	}
}

/* The mix image, deterministic from the seed. Returns zero pages and adds
 * random ones to *randoms. */
static uint64_t fill_mix(uint8_t *mem, size_t size, uint64_t s,
			 uint64_t *randoms)
{
	uint64_t st = s, zeros = 0;
	for (size_t off = 0; off < size; off += PAGE) {
		uint64_t r = tvm_rand(&st) % 4;
		if (r == 0) {
			memset(mem + off, 0, PAGE);
			zeros++;
		} else if (r == 1) {
			tvm_fill_random(mem + off, PAGE, tvm_rand(&st));
			++*randoms;
		} else {
			text_page(mem + off, &st);
		}
	}
	return zeros;
}

static void migrate_mix(const char *codec, unsigned channels)
{
	struct tvm vm = { 0 };
	char ch[32], co[32];
	snprintf(ch, sizeof(ch), "channels=%u", channels);
	snprintf(co, sizeof(co), "compression=%s", codec);
	const char *kv[] = { ch, co, "verify=on", NULL };
	tvm_config(&vm, kv);
	const size_t ram = 48 * MiB;
	tvm_add_block(&vm, "pc.ram", ram, PAGE);
	tvm_add_block(&vm, "vga.vram", 2 * MiB + PAGE, PAGE);
	uint64_t randoms = 0;
	uint64_t zeros =
		fill_mix(vm.blocks[0].src, ram, seed + channels, &randoms);
	zeros += fill_mix(vm.blocks[1].src, 2 * MiB + PAGE, ~seed, &randoms);

	int dret = -1;
	assert_int_equal(tvm_migrate(&vm, NULL, &dret), 0);
	assert_int_equal(dret, 0);
	assert_true(tvm_equal(&vm));

	mfd_stats s, d;
	assert_int_equal(mfd_source_get_stats(vm.src, &s, sizeof(s)), 0);
	assert_int_equal(mfd_dest_get_stats(vm.dst, &d, sizeof(d)), 0);
	uint64_t npages = (ram + 2 * MiB + PAGE) / PAGE;
	/* One round of the whole image and a final round that is empty
	 * here: every zero page is detected and sent as one. */
	assert_int_equal(s.pages, npages);
	assert_int_equal(s.zero_pages, zeros);
	assert_int_equal(d.zero_pages, zeros);
	assert_int_equal(s.wire_bytes, d.wire_bytes);
	assert_int_equal(s.compressed_bytes, d.compressed_bytes);
	assert_int_equal(s.compress_in_bytes, d.compress_in_bytes);
	uint64_t data = (npages - zeros) * PAGE;
	if (!strcmp(codec, "zstd")) {
		/* Random pages skip the codec (a few may pass the probe and
		 * be compressed, to no gain); text is always compressed. */
		assert_true(s.raw_pages <= randoms);
		assert_true(s.raw_pages >= randoms * 95 / 100);
		assert_int_equal(s.compress_in_bytes,
				 data - s.raw_pages * PAGE);
		/* Text compresses, random does not: well below the data. */
		assert_true(s.compressed_bytes < data * 7 / 10);
		assert_true(s.wire_bytes < data * 7 / 10);
		assert_true(s.compress_ns > 0 && d.compress_ns > 0);
	} else {
		assert_int_equal(s.compressed_bytes, 0);
		assert_int_equal(s.compress_ns, 0);
		assert_int_equal(s.raw_pages, 0);
		assert_true(s.wire_bytes > data &&
			    s.wire_bytes < ram + 4 * MiB);
	}
	print_message("%s, %u channels: %llu zero pages, wire %llu bytes for "
		      "%llu data bytes\n",
		      codec, channels, (unsigned long long)zeros,
		      (unsigned long long)s.wire_bytes,
		      (unsigned long long)data);
	tvm_destroy(&vm);
}

static void test_none_1(void **st)
{
	migrate_mix("none", 1);
}
static void test_none_2(void **st)
{
	migrate_mix("none", 2);
}
static void test_none_4(void **st)
{
	migrate_mix("none", 4);
}
static void test_zstd_1(void **st)
{
	migrate_mix("zstd", 1);
}
static void test_zstd_2(void **st)
{
	migrate_mix("zstd", 2);
}
static void test_zstd_4(void **st)
{
	migrate_mix("zstd", 4);
}

/* ---- rounds: pages that become zero, and zero pages that get data ---- */

#define RRAM   (16 * MiB)
#define RPAGES (RRAM / PAGE)

struct rctx {
	struct tvm vm; /* first: the default hooks take it as their opaque */
	unsigned syncs;
	uint64_t rng;
};

static int rounds_sync_dirty(void *opaque, unsigned block, uint64_t *bitmap,
			     uint64_t npages)
{
	struct rctx *c = opaque;
	uint8_t *mem = c->vm.blocks[0].src;
	c->syncs++;
	/* After round 0 (syncs 2..4): zero pages that had data and give
	 * data to zero pages; report all of them. 8 MiB a round keeps the
	 * rounds going for a while (the rounds are the hook's syncs). */
	if (c->syncs < 2 || c->syncs > 4)
		return 0;
	for (unsigned i = 0; i < 2048; i++) {
		uint64_t pg = tvm_rand(&c->rng) % npages;
		if (tvm_rand(&c->rng) % 4) {
			tvm_guest_write_zero(mem + pg * PAGE, PAGE);
		} else {
			uint8_t text[PAGE];
			text_page(text, &c->rng);
			tvm_guest_write(mem + pg * PAGE, text, PAGE);
		}
		bitmap[pg / 64] |= 1ULL << (pg % 64);
	}
	return 0;
}

static void rounds_case(const char *codec)
{
	struct rctx *c = calloc(1, sizeof(*c));
	char co[32];
	snprintf(co, sizeof(co), "compression=%s", codec);
	const char *kv[] = { "channels=2",	 co,
			     "verify=on",	 "max-rounds=4",
			     "downtime-limit=1", NULL };
	tvm_config(&c->vm, kv);
	tvm_add_block(&c->vm, "pc.ram", RRAM, PAGE);
	uint64_t randoms = 0;
	fill_mix(c->vm.blocks[0].src, RRAM, seed * 3, &randoms);
	c->rng = seed;
	c->vm.shooks = (mfd_source_hooks){ .opaque = c,
					   .sync_dirty = rounds_sync_dirty };
	int dret = -1;
	assert_int_equal(tvm_migrate(&c->vm, NULL, &dret), 0);
	assert_int_equal(dret, 0);
	assert_true(tvm_equal(&c->vm));
	print_message("%u dirty syncs\n", c->syncs);
	assert_true(c->syncs >= 2);
	mfd_stats s;
	mfd_source_get_stats(c->vm.src, &s, sizeof(s));
	assert_true(s.pages > RPAGES);
	tvm_destroy(&c->vm);
	free(c);
}

static void test_rounds_zeroed_none(void **st)
{
	rounds_case("none");
}
static void test_rounds_zeroed_zstd(void **st)
{
	rounds_case("zstd");
}

/* ---- hostile: the first packet's count moved against zero_count ---- */

#define HRAM (4 * MiB)
/* The first data packet's count and zero_count on data channel 0. */
#define COUNT_POS (MFD_HELLO_SIZE + 16)

static uint8_t patch_bytes[8];

static void patch_counts(struct tvm_proxy *p, unsigned conn, uint64_t pos,
			 uint8_t *buf, size_t len)
{
	if (conn != 1)
		return;
	for (size_t i = 0; i < len; i++)
		if (pos + i >= COUNT_POS && pos + i < COUNT_POS + 8)
			buf[i] = patch_bytes[pos + i - COUNT_POS];
}

static void hostile_case(uint32_t count, uint32_t zero_count)
{
	struct tvm vm = { 0 };
	const char *kv[] = { "channels=1", "compression=zstd",
			     "packet-pages=128", "io-timeout=5s", NULL };
	tvm_config(&vm, kv);
	tvm_add_block(&vm, "pc.ram", HRAM, PAGE);
	/* First packet: 64 text pages, then 64 zero pages. */
	uint64_t st = seed;
	uint8_t *src = vm.blocks[0].src;
	for (size_t pg = 0; pg < HRAM / PAGE; pg++) {
		if (pg < 64)
			text_page(src + pg * PAGE, &st);
		else if (pg >= 128)
			tvm_fill_random(src + pg * PAGE, PAGE, pg + seed);
	}
	tvm_start_dest(&vm);
	mfd__put_le32(patch_bytes, count);
	mfd__put_le32(patch_bytes + 4, zero_count);
	struct tvm_proxy proxy = { .damage = patch_counts };
	tvm_proxy_start(&proxy, vm.uri, 2);
	int dret = 0;
	int ret = tvm_migrate(&vm, proxy.listen_uri, &dret);
	tvm_proxy_stop(&proxy);
	assert_int_equal(dret, MFD_ECOMPRESS);
	assert_int_equal(ret, MFD_ECOMPRESS);
	assert_int_equal(vm.loaded, 0);
	/* Only pages the packet named with contents may have been written:
	 * from page `count` on the destination is untouched (zero). */
	const uint8_t *dst = vm.blocks[0].dst;
	for (size_t off = (size_t)count * PAGE; off < HRAM; off++)
		if (dst[off])
			fail_msg("destination byte %zu written", off);
	tvm_destroy(&vm);
}

static void test_hostile_inflates(void **st)
{
	/* 64 pages of payload, 63 announced. */
	hostile_case(63, 65);
}

static void test_hostile_ends_early(void **st)
{
	/* 64 pages of payload, 65 announced. */
	hostile_case(65, 63);
}

/*
 * zstd-long: with the window set on both sides the mix image arrives
 * intact; a destination left at the default refuses the source's larger
 * window at SETUP (MFD_ESETUP), before any page is sent, and the source
 * learns why.
 */
static void zstd_long(bool dest_too)
{
	struct tvm vm = { 0 };
	const char *kv[] = { "channels=2", "compression=zstd", "verify=on",
			     dest_too ? "zstd-long=24" : "zstd-long=0", NULL };
	tvm_config(&vm, kv);
	tvm_add_block(&vm, "pc.ram", 8 * MiB, PAGE);
	uint64_t randoms = 0;
	fill_mix(vm.blocks[0].src, 8 * MiB, seed ^ 24, &randoms);
	tvm_start_dest(&vm); /* takes its copy of the config now */
	assert_int_equal(mfd_config_set(vm.cfg, "zstd-long", "24"), 0);
	int dret = -1;
	int ret = tvm_migrate(&vm, NULL, &dret);
	if (dest_too) {
		assert_int_equal(ret, 0);
		assert_int_equal(dret, 0);
		assert_true(tvm_equal(&vm));
	} else {
		assert_int_equal(ret, MFD_ESETUP);
		assert_int_equal(dret, MFD_ESETUP);
		mfd_stats s;
		assert_int_equal(mfd_source_get_stats(vm.src, &s, sizeof(s)),
				 0);
		assert_int_equal(s.pages, 0);
	}
	tvm_destroy(&vm);
}

/* A block of 2 MiB pages with zstd: a batch of them is compressed in
 * packets of one page each (packet-pages 512 = 2 MiB of codec input),
 * random ones are sent as they are (the probe samples every 8 KiB) and zero
 * ones as offsets. */
static void test_zstd_huge_pages(void **st)
{
	(void)st;
	struct tvm vm = { 0 };
	const char *kv[] = { "channels=2", "compression=zstd", "verify=on",
			     "packet-pages=512", NULL };
	tvm_config(&vm, kv);
	tvm_add_block(&vm, "mem1", 16 * MiB, 2 * MiB);
	uint8_t *h = vm.blocks[0].src;
	uint64_t hst = seed ^ 21, randoms = 0;
	/* Huge pages 0..7: text, random, zero, mixed 4 KiB pieces, ... */
	for (unsigned i = 0; i < 8; i++) {
		uint8_t *pg = h + (size_t)i * 2 * MiB;
		switch (i % 4) {
		case 0:
			for (size_t o = 0; o < 2 * MiB; o += PAGE)
				text_page(pg + o, &hst);
			break;
		case 1:
			tvm_fill_random(pg, 2 * MiB, tvm_rand(&hst));
			break;
		case 2:
			memset(pg, 0, 2 * MiB);
			break;
		default:
			fill_mix(pg, 2 * MiB, tvm_rand(&hst), &randoms);
			break;
		}
	}
	int dret = -1;
	assert_int_equal(tvm_migrate(&vm, NULL, &dret), 0);
	assert_int_equal(dret, 0);
	assert_true(tvm_equal(&vm));
	mfd_stats s;
	assert_int_equal(mfd_source_get_stats(vm.src, &s, sizeof(s)), 0);
	print_message("huge pages: %llu compressed bytes in, %llu raw pages, "
		      "%llu zero pages, %llu packets\n",
		      (unsigned long long)s.compress_in_bytes,
		      (unsigned long long)s.raw_pages,
		      (unsigned long long)s.zero_pages,
		      (unsigned long long)s.packets);
	/* Both text pages went through the codec, whole pages only; the
	 * random ones that the sampling check calls incompressible did not
	 * (it samples 256 bytes and wants 150 distinct values: random bytes
	 * give 162 +- 5, so about 1 page in 100 is sent to the codec, which
	 * only costs its CPU); both zero ones were detected. */
	unsigned want_raw = 0;
	for (unsigned i = 1; i < 8; i += 4)
		want_raw += mfd__page_looks_incompressible(
			h + (size_t)i * 2 * MiB, 2 * MiB);
	assert_true(s.compress_in_bytes >= 2 * 2 * MiB);
	assert_int_equal(s.compress_in_bytes % (2 * MiB), 0);
	assert_true(s.raw_pages >= want_raw);
	assert_int_equal(s.zero_pages, 2);
	/* Half, but for a random page that went through the codec (it
	 * comes out as large as it went in). */
	assert_true(s.compressed_bytes <
		    s.compress_in_bytes / 2 + (2 - want_raw) * 2 * MiB);
	tvm_destroy(&vm);
}

static void test_zstd_long_both(void **st)
{
	(void)st;
	zstd_long(true);
}

static void test_zstd_long_refused(void **st)
{
	(void)st;
	zstd_long(false);
}

int main(void)
{
	seed = tvm_seed("test_compress");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_none_1),
		cmocka_unit_test(test_none_2),
		cmocka_unit_test(test_none_4),
		cmocka_unit_test(test_zstd_1),
		cmocka_unit_test(test_zstd_2),
		cmocka_unit_test(test_zstd_4),
		cmocka_unit_test(test_rounds_zeroed_none),
		cmocka_unit_test(test_rounds_zeroed_zstd),
		cmocka_unit_test(test_hostile_inflates),
		cmocka_unit_test(test_hostile_ends_early),
		cmocka_unit_test(test_zstd_huge_pages),
		cmocka_unit_test(test_zstd_long_both),
		cmocka_unit_test(test_zstd_long_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
