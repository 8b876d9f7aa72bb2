/* SPDX-License-Identifier: MIT */
/*
 * Codecs through their ops table: a zstd round trip over many packets on
 * one context per side (the stream keeps its history from packet to
 * packet), and payloads that are corrupt, truncated, too long or that
 * inflate beyond the pages are refused without a byte written outside
 * them.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "multifd/multifd.h"
#include "multifd/compress/codec.h"
#include "testvm.h"

#define PAGE	  4096
#define PKT_PAGES 128
#define GUARD	  4096

static uint64_t seed;

/* A page like a guest's: text-like, random, or half zero. */
static void fill_page(uint8_t *p, uint64_t *st)
{
	static const char *const words[] = {
		"migration ", "channel ", "zstd ",  "page ", "the ", "of ",
		"memory ",    "dirty ",	  "round ", "\n",    "int ", "0x1f ",
	};
	switch (tvm_rand(st) % 3) {
	case 0:
		tvm_fill_random(p, PAGE, tvm_rand(st));
		break;
	case 1: {
		size_t n = 0;
		while (n < PAGE) {
			const char *w = words[tvm_rand(st) % 12];
			size_t l = strlen(w);
			if (l > PAGE - n)
				l = PAGE - n;
			memcpy(p + n, w, l);
			n += l;
		}
		break;
	}
	default:
		memset(p, 0, PAGE);
		tvm_fill_random(p, PAGE / 2, tvm_rand(st));
		break;
	}
}

/* Pages inside a buffer with guard bytes on both sides. */
struct area {
	uint8_t *base;
	size_t len;
};
static uint8_t *area_new(struct area *a, size_t pages)
{
	a->len = pages * PAGE + 2 * GUARD;
	a->base = malloc(a->len);
	assert_non_null(a->base);
	memset(a->base, 0xa5, a->len);
	return a->base + GUARD;
}
static void area_check_guards(const struct area *a)
{
	for (size_t i = 0; i < GUARD; i++) {
		assert_int_equal(a->base[i], 0xa5);
		assert_int_equal(a->base[a->len - 1 - i], 0xa5);
	}
}

/* n pages as non-contiguous iovecs where possible (every other page its
 * own vector), as the destination builds them. */
static int make_iov(struct iovec *iov, uint8_t *dst, uint32_t n)
{
	int cnt = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (i % 3 == 2) {
			iov[cnt - 1].iov_len += PAGE;
			continue;
		}
		iov[cnt].iov_base = dst + (size_t)i * PAGE;
		iov[cnt].iov_len = PAGE;
		cnt++;
	}
	return cnt;
}

static void setup_pair(const struct mfd__codec_ops *ops, struct mfd__codec *s,
		       struct mfd__codec *d, int level)
{
	memset(s, 0, sizeof(*s));
	memset(d, 0, sizeof(*d));
	assert_int_equal(ops->setup(s, PKT_PAGES * PAGE, level, 0), 0);
	assert_int_equal(ops->setup(d, PKT_PAGES * PAGE, level, 0), 0);
	s->ops = d->ops = ops;
	assert_true(s->out_cap >= PKT_PAGES * PAGE);
}

static void round_trip(const struct mfd__codec_ops *ops, int level)
{
	struct mfd__codec s, d;
	setup_pair(ops, &s, &d, level);
	uint64_t st = seed + (uint64_t)level;
	uint8_t *src = malloc(PKT_PAGES * PAGE);
	struct area a;
	uint8_t *dst = area_new(&a, PKT_PAGES);
	uint8_t *pages[PKT_PAGES];
	struct iovec iov[PKT_PAGES];
	uint64_t in = 0, out = 0;

	assert_non_null(src);
	for (int pkt = 0; pkt < 300; pkt++) {
		uint32_t n = 1 + (uint32_t)(tvm_rand(&st) % PKT_PAGES);
		for (uint32_t i = 0; i < n; i++) {
			/* Some pages repeat an earlier packet's: matches
			 * across packets need the shared history. */
			if (pkt && tvm_rand(&st) % 4 == 0)
				memcpy(src + (size_t)i * PAGE, dst,
				       PAGE); /* last packet's first page */
			else
				fill_page(src + (size_t)i * PAGE, &st);
			pages[i] = src + (size_t)i * PAGE;
		}
		size_t zlen;
		assert_int_equal(ops->compress(&s, pages, n, PAGE, &zlen), 0);
		assert_true(zlen <= mfd__codec_bound((uint64_t)n * PAGE));
		int cnt = make_iov(iov, dst, n);
		assert_int_equal(ops->decompress(&d, s.out, zlen, iov, cnt), 0);
		assert_memory_equal(dst, src, (size_t)n * PAGE);
		area_check_guards(&a);
		in += (uint64_t)n * PAGE;
		out += zlen;
	}
	print_message("%s level %d: %llu -> %llu bytes\n", ops->name, level,
		      (unsigned long long)in, (unsigned long long)out);
	if (ops == &mfd__codec_zstd)
		assert_true(out < in);
	ops->teardown(&s);
	ops->teardown(&d);
	ops->teardown(&d); /* twice: harmless */
	free(src);
	free(a.base);
}

static void test_zstd_round_trip(void **state)
{
	round_trip(&mfd__codec_zstd, 1);
	round_trip(&mfd__codec_zstd, 3);
	round_trip(&mfd__codec_zstd, 9);
}

static void test_none_round_trip(void **state)
{
	round_trip(&mfd__codec_none, 0);
}

/* Stream of packets 0..k-1 from a fresh compressor; returns the payload of
 * packet k (n pages) in *out (malloc'd); earlier packets in prev[]. */
struct stream {
	struct mfd__codec s;
	uint8_t *src;
	uint8_t *payload[4];
	size_t len[4];
	uint32_t n[4];
};

static void stream_make(struct stream *x, uint64_t st)
{
	memset(&x->s, 0, sizeof(x->s));
	assert_int_equal(mfd__codec_zstd.setup(&x->s, PKT_PAGES * PAGE, 1, 0),
			 0);
	x->src = malloc(4 * 8 * PAGE);
	assert_non_null(x->src);
	for (int k = 0; k < 4; k++) {
		uint8_t *pages[8];
		x->n[k] = 8;
		for (int i = 0; i < 8; i++) {
			pages[i] = x->src + ((size_t)k * 8 + i) * PAGE;
			fill_page(pages[i], &st);
		}
		assert_int_equal(mfd__codec_zstd.compress(&x->s, pages, 8, PAGE,
							  &x->len[k]),
				 0);
		x->payload[k] = malloc(x->len[k] + 64);
		memcpy(x->payload[k], x->s.out, x->len[k]);
	}
	mfd__codec_zstd.teardown(&x->s);
}

static void stream_free(struct stream *x)
{
	for (int k = 0; k < 4; k++)
		free(x->payload[k]);
	free(x->src);
}

/* Decodes packets 0..k-1 correctly, then packet k as given into npages
 * pages; returns the result of that last call. Guards are checked. */
static int decode_last(struct stream *x, int k, const uint8_t *p, size_t len,
		       uint32_t npages, bool genuine)
{
	struct mfd__codec d = { 0 };
	struct iovec iov[PKT_PAGES];
	struct area a;
	uint8_t *dst = area_new(&a, 16);
	assert_int_equal(mfd__codec_zstd.setup(&d, PKT_PAGES * PAGE, 1, 0), 0);
	for (int j = 0; j < k; j++) {
		int cnt = make_iov(iov, dst, x->n[j]);
		assert_int_equal(mfd__codec_zstd.decompress(&d, x->payload[j],
							    x->len[j], iov,
							    cnt),
				 0);
	}
	int cnt = make_iov(iov, dst, npages);
	int ret = mfd__codec_zstd.decompress(&d, p, len, iov, cnt);
	area_check_guards(&a);
	if (ret == 0 && genuine)
		assert_memory_equal(dst, x->src + (size_t)k * 8 * PAGE,
				    8 * PAGE);
	mfd__codec_zstd.teardown(&d);
	free(a.base);
	return ret;
}

static void test_zstd_rejects(void **state)
{
	struct stream x;
	stream_make(&x, seed * 7);
	for (int k = 0; k < 4; k++) {
		/* The genuine packet decodes. */
		assert_int_equal(
			decode_last(&x, k, x.payload[k], x.len[k], 8, true), 0);
		/* Truncated: every shorter length. */
		for (size_t l = 0; l < x.len[k]; l += 1 + l / 16)
			assert_int_equal(
				decode_last(&x, k, x.payload[k], l, 8, false),
				MFD_ECOMPRESS);
		assert_int_equal(decode_last(&x, k, x.payload[k], x.len[k] - 1,
					     8, false),
				 MFD_ECOMPRESS);
		/* Inflates beyond the pages announced: fewer pages. */
		assert_int_equal(
			decode_last(&x, k, x.payload[k], x.len[k], 7, false),
			MFD_ECOMPRESS);
		assert_int_equal(
			decode_last(&x, k, x.payload[k], x.len[k], 1, false),
			MFD_ECOMPRESS);
		/* Ends early: more pages announced than it holds. */
		assert_int_equal(
			decode_last(&x, k, x.payload[k], x.len[k], 9, false),
			MFD_ECOMPRESS);
		/* Trailing garbage after the flushed blocks. */
		uint8_t *p = x.payload[k];
		memset(p + x.len[k], 0x5a, 64);
		assert_int_equal(decode_last(&x, k, p, x.len[k] + 64, 8, false),
				 MFD_ECOMPRESS);
		/* The next packet's payload in its place (wrong history
		 * position) is refused or at least never overflows. */
		if (k < 3)
			(void)decode_last(&x, k, x.payload[k + 1], x.len[k + 1],
					  8, false);
	}
	/* Random bytes as the first packet: not a zstd frame. */
	uint8_t junk[4096];
	tvm_fill_random(junk, sizeof(junk), seed);
	assert_int_equal(decode_last(&x, 0, junk, sizeof(junk), 8, false),
			 MFD_ECOMPRESS);
	/* Bit flips anywhere: refused, or decoded to some 8 pages, never a
	 * byte outside them (decode_last checks the guards). */
	uint64_t st = seed;
	int refused = 0, n = 0;
	for (int k = 0; k < 4; k++) {
		uint8_t *copy = malloc(x.len[k]);
		for (int t = 0; t < 200; t++, n++) {
			memcpy(copy, x.payload[k], x.len[k]);
			size_t pos = tvm_rand(&st) % x.len[k];
			copy[pos] ^= (uint8_t)(1u << (tvm_rand(&st) % 8));
			if (decode_last(&x, k, copy, x.len[k], 8, false))
				refused++;
		}
		free(copy);
	}
	print_message("bit flips: %d of %d refused, the rest decoded "
		      "within the pages\n",
		      refused, n);
	stream_free(&x);
}

/*
 * zstd-long: a block of random pages sent again more than 8 MiB later (past
 * the default window) costs almost nothing the second time; a decoder set
 * up without the long window refuses the stream rather than allocate it;
 * window logs outside MFD_ZSTD_LONG_MIN..MAX are refused at setup.
 */
static void test_zstd_long(void **state)
{
	(void)state;
	const uint32_t n = 32; /* pages per packet */
	const size_t blk = 4 << 20, gap = 10 << 20;
	struct mfd__codec s, d, narrow;
	memset(&s, 0, sizeof(s));
	memset(&d, 0, sizeof(d));
	memset(&narrow, 0, sizeof(narrow));
	assert_int_equal(mfd__codec_zstd.setup(&s, n * PAGE, 1, 24), 0);
	assert_int_equal(mfd__codec_zstd.setup(&d, n * PAGE, 1, 24), 0);
	assert_int_equal(mfd__codec_zstd.setup(&narrow, n * PAGE, 1, 0), 0);
	s.ops = d.ops = narrow.ops = &mfd__codec_zstd;
	uint8_t *src = malloc(blk + gap);
	uint8_t *dst = malloc(n * PAGE);
	assert_non_null(src);
	assert_non_null(dst);
	tvm_fill_random(src, blk + gap, seed);
	uint8_t *pages[32];
	struct iovec iov = { .iov_base = dst, .iov_len = n * PAGE };
	uint64_t first = 0, again = 0;
	/* The block, the gap, then the block again. */
	for (size_t off = 0; off < 2 * blk + gap; off += n * PAGE) {
		const uint8_t *in =
			src + (off < blk + gap ? off : off - blk - gap);
		for (uint32_t i = 0; i < n; i++)
			pages[i] = (uint8_t *)in + (size_t)i * PAGE;
		size_t zlen;
		assert_int_equal(
			mfd__codec_zstd.compress(&s, pages, n, PAGE, &zlen), 0);
		assert_int_equal(
			mfd__codec_zstd.decompress(&d, s.out, zlen, &iov, 1),
			0);
		assert_memory_equal(dst, in, n * PAGE);
		if (off == 0)
			/* The frame header announces 2^24: too much for a
			 * decoder left at the default limit. */
			assert_int_equal(mfd__codec_zstd.decompress(
						 &narrow, s.out, zlen, &iov, 1),
					 MFD_ECOMPRESS);
		if (off < blk)
			first += zlen;
		else if (off >= blk + gap)
			again += zlen;
	}
	print_message("zstd-long=24: block of %zu random bytes: %llu bytes, "
		      "again %zu bytes later: %llu bytes\n",
		      blk, (unsigned long long)first, blk + gap,
		      (unsigned long long)again);
	assert_true(first > blk);
	assert_true(again < blk / 20);
	mfd__codec_zstd.teardown(&s);
	mfd__codec_zstd.teardown(&d);
	mfd__codec_zstd.teardown(&narrow);

	struct mfd__codec bad;
	memset(&bad, 0, sizeof(bad));
	assert_int_equal(
		mfd__codec_zstd.setup(&bad, PAGE, 1, MFD_ZSTD_LONG_MIN - 1),
		-EINVAL);
	assert_int_equal(
		mfd__codec_zstd.setup(&bad, PAGE, 1, MFD_ZSTD_LONG_MAX + 1),
		-EINVAL);
	free(src);
	free(dst);
}

/* The incompressibility probe: random pages (and so compressed data) are
 * flagged, text, code-like and zero pages are not. */
static void test_incompressible_probe(void **state)
{
	(void)state;
	uint8_t *p = aligned_alloc(PAGE, PAGE);
	assert_non_null(p);
	uint64_t st = seed ^ 0x5eed;
	unsigned flagged = 0;
	const unsigned pages = 2000;
	for (unsigned i = 0; i < pages; i++) {
		tvm_fill_random(p, PAGE, tvm_rand(&st));
		flagged += mfd__page_looks_incompressible(p, PAGE);
	}
	print_message("random pages flagged: %u of %u\n", flagged, pages);
	assert_true(flagged >= pages * 95 / 100);

	/* Text-like pages (fill_page's second kind) and half-zero ones. */
	for (unsigned i = 0; i < pages; i++) {
		fill_page(p, &st);
		size_t nz = 0;
		for (size_t k = 0; k < PAGE; k++)
			nz += p[k] != 0;
		if (nz > PAGE * 3 / 4) /* fully random: skip */
			continue;
		assert_false(mfd__page_looks_incompressible(p, PAGE));
	}
	memset(p, 0, PAGE);
	assert_false(mfd__page_looks_incompressible(p, PAGE));
	/* 64 byte values in every sampled position: a table, compressible. */
	for (size_t k = 0; k < PAGE; k++)
		p[k] = (uint8_t)(k * 7 % 64);
	assert_false(mfd__page_looks_incompressible(p, PAGE));
	free(p);
}

/* A hostile frame header asking for a huge window is refused, not
 * allocated. */
static void test_zstd_window_limit(void **state)
{
	/* Frame header: magic, descriptor with window descriptor present,
	 * window descriptor exponent 31 (2 GiB). */
	uint8_t frame[] = { 0x28,	    0xb5, 0x2f, 0xfd, 0x00,
			    (31 - 10) << 3, 0x01, 0x00, 0x00 };
	struct stream x = { 0 };
	x.n[0] = 8;
	assert_int_equal(decode_last(&x, 0, frame, sizeof(frame), 1, false),
			 MFD_ECOMPRESS);
}

int main(void)
{
	seed = tvm_seed("test_codec");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zstd_round_trip),
		cmocka_unit_test(test_none_round_trip),
		cmocka_unit_test(test_zstd_rejects),
		cmocka_unit_test(test_zstd_window_limit),
		cmocka_unit_test(test_zstd_long),
		cmocka_unit_test(test_incompressible_probe),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
