/* SPDX-License-Identifier: MIT */
/*
 * Wire protocol v1 codec: round trips, one rejection test per malformed
 * field with its exact code, truncation at every byte, and a seeded random
 * test of every decoder (MFD_WIRE_SEED=n to replay, MFD_WIRE_ITERS=n).
 *
 * Variable-length messages are decoded from heap buffers of exactly the
 * given length, so that ASan reports any read past it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <limits.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "multifd/multifd.h"
#include "multifd/wire.h"
#include "multifd/resume.h"
#include "multifd/compress/codec.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static const uint8_t session_id[16] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
					0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98,
					0x76, 0x54, 0x32, 0x10 };

/* A heap block of exactly len bytes (ASan-checked), maybe a copy. */
/* noinline: at -O3 GCC propagates impossible lengths of callers into the
 * malloc size and warns (alloc-size-larger-than). */
__attribute__((noinline)) static uint8_t *alloc_exact(size_t len)
{
	uint8_t *p = malloc(len ? len : 1);

	assert_non_null(p);
	return p;
}

static uint8_t *exact(const uint8_t *buf, size_t len)
{
	uint8_t *p = alloc_exact(len);

	if (len)
		memcpy(p, buf, len);
	return p;
}

/* ---------------------------------------------------------------- */
/* Handshake                                                         */
/* ---------------------------------------------------------------- */

static struct mfd__hello good_hello(void)
{
	struct mfd__hello h = {
		.magic = MFD_MAGIC_HELLO,
		.version = MFD_PROTO_VERSION,
		.role = MFD_ROLE_DATA,
		.channel = 3,
		.nchannels = 8,
		.features = MFD_FEAT_VERIFY,
	};

	memcpy(h.session, session_id, sizeof(h.session));
	return h;
}

static int hello_rt(const struct mfd__hello *h, struct mfd__hello *out)
{
	uint8_t buf[MFD_HELLO_SIZE];

	mfd__hello_encode(h, buf);
	return mfd__hello_decode(buf, out);
}

static void test_hello_roundtrip(void **state)
{
	struct mfd__hello h = good_hello(), d;
	uint8_t buf[MFD_HELLO_SIZE];

	(void)state;
	assert_int_equal(hello_rt(&h, &d), 0);
	assert_memory_equal(&h, &d, sizeof(h));

	h.role = MFD_ROLE_MAIN;
	h.channel = 0;
	h.nchannels = MFD_MAX_CHANNELS;
	h.features = 0;
	assert_int_equal(hello_rt(&h, &d), 0);
	assert_memory_equal(&h, &d, sizeof(h));

	/* Byte layout: little-endian at the documented offsets. */
	h = good_hello();
	mfd__hello_encode(&h, buf);
	assert_memory_equal(buf, "MFDH", 4);
	assert_int_equal(buf[4], 1);
	assert_int_equal(buf[5], 0);
	assert_int_equal(buf[6], MFD_ROLE_DATA);
	assert_int_equal(buf[8], 3);
	assert_int_equal(buf[10], 8);
	assert_memory_equal(buf + 16, session_id, 16);
	assert_int_equal(buf[32], 1);
}

static void test_hello_reject(void **state)
{
	struct mfd__hello h, d;

	(void)state;
	h = good_hello();
	h.magic = MFD_MAGIC_CTL;
	assert_int_equal(hello_rt(&h, &d), MFD_EBADMAGIC);

	h = good_hello();
	h.version = 0;
	assert_int_equal(hello_rt(&h, &d), MFD_EVERSION);
	h.version = 2;
	assert_int_equal(hello_rt(&h, &d), MFD_EVERSION);
	/* The decoded fields are there even on failure. */
	assert_int_equal(d.version, 2);

	h = good_hello();
	h.role = 0;
	assert_int_equal(hello_rt(&h, &d), MFD_EROLE);
	h.role = 3;
	assert_int_equal(hello_rt(&h, &d), MFD_EROLE);

	h = good_hello();
	h.role = MFD_ROLE_MAIN;
	h.channel = 1;
	assert_int_equal(hello_rt(&h, &d), MFD_EROLE);

	h = good_hello();
	h.channel = h.nchannels;
	assert_int_equal(hello_rt(&h, &d), MFD_EROLE);
	h.channel = h.nchannels - 1;
	assert_int_equal(hello_rt(&h, &d), 0);
	h.channel = 0xffff;
	assert_int_equal(hello_rt(&h, &d), MFD_EROLE);

	h = good_hello();
	h.nchannels = 0;
	h.channel = 0;
	assert_int_equal(hello_rt(&h, &d), MFD_EROLE);
	h.role = MFD_ROLE_MAIN;
	assert_int_equal(hello_rt(&h, &d), MFD_EROLE);
	h.nchannels = MFD_MAX_CHANNELS + 1;
	assert_int_equal(hello_rt(&h, &d), MFD_EROLE);

	h = good_hello();
	h.reserved = 1;
	assert_int_equal(hello_rt(&h, &d), MFD_EFLAGS);
	h.reserved = 0x80000000U;
	assert_int_equal(hello_rt(&h, &d), MFD_EFLAGS);

	h = good_hello();
	h.features = 1ULL << 5; /* first unknown bit */
	assert_int_equal(hello_rt(&h, &d), MFD_EFEATURE);
	h.features = MFD_FEAT_VERIFY | (1ULL << 63);
	assert_int_equal(hello_rt(&h, &d), MFD_EFEATURE);
}

static struct mfd__hello_reply good_reply(void)
{
	struct mfd__hello_reply r = {
		.magic = MFD_MAGIC_HELLO,
		.version = MFD_PROTO_VERSION,
		.status = 0,
		.features = MFD_FEAT_VERIFY,
	};
	return r;
}

static int reply_rt(const struct mfd__hello_reply *r,
		    struct mfd__hello_reply *out)
{
	uint8_t buf[MFD_HELLO_REPLY_SIZE];

	mfd__hello_reply_encode(r, buf);
	return mfd__hello_reply_decode(buf, out);
}

static void test_hello_reply_roundtrip(void **state)
{
	struct mfd__hello_reply r = good_reply(), d;
	uint8_t buf[MFD_HELLO_REPLY_SIZE];

	(void)state;
	assert_int_equal(reply_rt(&r, &d), 0);
	assert_memory_equal(&r, &d, sizeof(r));

	r.status = 1;
	r.error = MFD_ESESSION;
	r.features = 0;
	assert_int_equal(reply_rt(&r, &d), 0);
	assert_memory_equal(&r, &d, sizeof(r));

	mfd__hello_reply_encode(&r, buf);
	assert_memory_equal(buf, "MFDH", 4);
	assert_int_equal(buf[6], 1);
	/* -1004 as i32 LE */
	assert_int_equal(buf[8], 0x14);
	assert_int_equal(buf[9], 0xfc);
	assert_int_equal(buf[10], 0xff);
	assert_int_equal(buf[11], 0xff);
}

static void test_hello_reply_reject(void **state)
{
	struct mfd__hello_reply r, d;

	(void)state;
	r = good_reply();
	r.magic = MFD_MAGIC_PKT;
	assert_int_equal(reply_rt(&r, &d), MFD_EBADMAGIC);

	r = good_reply();
	r.version = 2;
	assert_int_equal(reply_rt(&r, &d), MFD_EVERSION);

	r = good_reply();
	r.status = 2;
	assert_int_equal(reply_rt(&r, &d), MFD_EFLAGS);

	r = good_reply();
	r.reserved = 1;
	assert_int_equal(reply_rt(&r, &d), MFD_EFLAGS);

	/* Accepted with an error, refused without one. */
	r = good_reply();
	r.error = MFD_EROLE;
	assert_int_equal(reply_rt(&r, &d), MFD_EFLAGS);
	r.status = 1;
	r.error = 0;
	assert_int_equal(reply_rt(&r, &d), MFD_EFLAGS);
	r.error = 5;
	assert_int_equal(reply_rt(&r, &d), MFD_EFLAGS);
	r.error = INT32_MIN;
	assert_int_equal(reply_rt(&r, &d), MFD_EFLAGS);

	r = good_reply();
	r.features = 1ULL << 11; /* the first unknown bit above VERIFY_CHUNKS */
	assert_int_equal(reply_rt(&r, &d), MFD_EFEATURE);
}

/* ---------------------------------------------------------------- */
/* Control header, ROUND                                             */
/* ---------------------------------------------------------------- */

static int ctl_rt(uint16_t type, uint32_t length, struct mfd__ctl_hdr *out)
{
	struct mfd__ctl_hdr h = {
		.magic = MFD_MAGIC_CTL,
		.type = type,
		.length = length,
	};
	uint8_t buf[MFD_CTL_HDR_SIZE];

	mfd__ctl_hdr_encode(&h, buf);
	return mfd__ctl_hdr_decode(buf, out);
}

static void test_ctl_hdr_roundtrip(void **state)
{
	static const struct {
		uint16_t type;
		uint32_t length;
	} ok[] = {
		{ MFD_CTL_SETUP, 100 },	 { MFD_CTL_SETUP, MFD_MAX_CTL_PAYLOAD },
		{ MFD_CTL_SETUP_OK, 0 }, { MFD_CTL_ROUND, MFD_ROUND_SIZE },
		{ MFD_CTL_END, 32 },	 { MFD_CTL_END, MFD_MAX_CTL_PAYLOAD },
		{ MFD_CTL_LOADED, 0 },	 { MFD_CTL_ERROR, 8 },
		{ MFD_CTL_ERROR, 0 },
	};
	struct mfd__ctl_hdr d;
	uint8_t buf[MFD_CTL_HDR_SIZE];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		assert_int_equal(ctl_rt(ok[i].type, ok[i].length, &d), 0);
		assert_int_equal(d.magic, MFD_MAGIC_CTL);
		assert_int_equal(d.type, ok[i].type);
		assert_int_equal(d.length, ok[i].length);
		assert_int_equal(d.flags, 0);
		assert_int_equal(d.reserved, 0);
	}

	mfd__ctl_hdr_encode(&(struct mfd__ctl_hdr){ .magic = MFD_MAGIC_CTL,
						    .type = MFD_CTL_END,
						    .length = 0x01020304 },
			    buf);
	assert_memory_equal(buf, "MFDC\x04\x00\x00\x00\x04\x03\x02\x01", 12);
}

static void test_ctl_hdr_reject(void **state)
{
	struct mfd__ctl_hdr h = { .magic = MFD_MAGIC_CTL,
				  .type = MFD_CTL_SETUP_OK },
			    d;
	uint8_t buf[MFD_CTL_HDR_SIZE];

	(void)state;
	h.magic = MFD_MAGIC_HELLO;
	mfd__ctl_hdr_encode(&h, buf);
	assert_int_equal(mfd__ctl_hdr_decode(buf, &d), MFD_EBADMAGIC);

	h.magic = MFD_MAGIC_CTL;
	h.flags = 1;
	mfd__ctl_hdr_encode(&h, buf);
	assert_int_equal(mfd__ctl_hdr_decode(buf, &d), MFD_EFLAGS);
	h.flags = 0;
	h.reserved = 1;
	mfd__ctl_hdr_encode(&h, buf);
	assert_int_equal(mfd__ctl_hdr_decode(buf, &d), MFD_EFLAGS);

	assert_int_equal(ctl_rt(0, 0, &d), MFD_ETYPE);
	/* RECEIVED (resume): at least its fixed part, at most 2^20. */
	assert_int_equal(ctl_rt(MFD_CTL_RECEIVED, 23, &d), MFD_ELENGTH);
	assert_int_equal(ctl_rt(MFD_CTL_RECEIVED, 24, &d), 0);
	assert_int_equal(ctl_rt(MFD_CTL_RECEIVED, MFD_MAX_CTL_PAYLOAD + 1, &d),
			 MFD_ELENGTH);
	assert_int_equal(ctl_rt(17, 0, &d), MFD_ETYPE); /* after CHAN_LOST */
	assert_int_equal(ctl_rt(0xffff, 0, &d), MFD_ETYPE);
	/* DISCARDED (post-copy): empty, exactly. */
	assert_int_equal(ctl_rt(MFD_CTL_DISCARDED, 0, &d), 0);
	assert_int_equal(d.type, MFD_CTL_DISCARDED);
	assert_int_equal(ctl_rt(MFD_CTL_DISCARDED, 1, &d), MFD_ELENGTH);

	assert_int_equal(ctl_rt(MFD_CTL_SETUP_OK, 1, &d), MFD_ELENGTH);
	assert_int_equal(ctl_rt(MFD_CTL_LOADED, 1, &d), MFD_ELENGTH);
	assert_int_equal(ctl_rt(MFD_CTL_LOADED, UINT32_MAX, &d), MFD_ELENGTH);
	assert_int_equal(ctl_rt(MFD_CTL_ROUND, 0, &d), MFD_ELENGTH);
	assert_int_equal(ctl_rt(MFD_CTL_ROUND, MFD_ROUND_SIZE - 1, &d),
			 MFD_ELENGTH);
	assert_int_equal(ctl_rt(MFD_CTL_ROUND, MFD_ROUND_SIZE + 1, &d),
			 MFD_ELENGTH);
	assert_int_equal(ctl_rt(MFD_CTL_SETUP, MFD_MAX_CTL_PAYLOAD + 1, &d),
			 MFD_ELENGTH);
	assert_int_equal(ctl_rt(MFD_CTL_END, MFD_MAX_CTL_PAYLOAD + 1, &d),
			 MFD_ELENGTH);
	assert_int_equal(ctl_rt(MFD_CTL_ERROR, UINT32_MAX, &d), MFD_ELENGTH);
}

static void test_round(void **state)
{
	struct mfd__round r = { .round = 7, .pages = 0x123456789aULL }, d;
	uint8_t buf[MFD_ROUND_SIZE];

	(void)state;
	mfd__round_encode(&r, buf);
	assert_int_equal(mfd__round_decode(buf, &d), 0);
	assert_memory_equal(&r, &d, sizeof(r));
	assert_int_equal(buf[0], 7);
	assert_int_equal(buf[8], 0x9a);
	assert_int_equal(buf[12], 0x12);

	r.reserved = 1;
	mfd__round_encode(&r, buf);
	assert_int_equal(mfd__round_decode(buf, &d), MFD_EFLAGS);
}

/* The destination's ROUND: its cost fields only with MFD_FEAT_ROUND_COST,
 * bounded; without it they must be 0. */
static void test_round_answer(void **state)
{
	struct mfd__round_answer a = { .round = 9,
				       .end_us = 2500,
				       .cost_ns = 123456 },
				 d;
	uint8_t buf[MFD_ROUND_SIZE];

	(void)state;
	mfd__round_answer_encode(&a, buf);
	assert_int_equal(buf[0], 9);
	assert_int_equal(buf[4], 2500 & 0xff);
	assert_int_equal(buf[5], 2500 >> 8);
	assert_int_equal(buf[8], 123456 & 0xff);
	assert_int_equal(mfd__round_answer_decode(buf, true, &d), 0);
	assert_memory_equal(&a, &d, sizeof(a));
	assert_int_equal(mfd__round_answer_decode(buf, false, &d), MFD_EFLAGS);
	a.cost_ns = MFD_MAX_ROUND_COST_NS;
	mfd__round_answer_encode(&a, buf);
	assert_int_equal(mfd__round_answer_decode(buf, true, &d), 0);
	a.cost_ns = MFD_MAX_ROUND_COST_NS + 1;
	mfd__round_answer_encode(&a, buf);
	assert_int_equal(mfd__round_answer_decode(buf, true, &d), MFD_EFLAGS);
	/* An old destination's answer: ROUND(round, 0). */
	a = (struct mfd__round_answer){ .round = 3 };
	mfd__round_answer_encode(&a, buf);
	assert_int_equal(mfd__round_answer_decode(buf, false, &d), 0);
	assert_int_equal(d.round, 3);
	a.end_us = 1;
	mfd__round_answer_encode(&a, buf);
	assert_int_equal(mfd__round_answer_decode(buf, false, &d), MFD_EFLAGS);
}

/* ---------------------------------------------------------------- */
/* SETUP                                                             */
/* ---------------------------------------------------------------- */

#define SETUP_MAX_BYTES (24 + MFD_MAX_BLOCKS * (16 + MFD_MAX_NAME) + 64)

static struct mfd__block_desc good_blocks[] = {
	{ "pc.ram", 64ULL << 20, 4096 },
	{ "hugepages", 4ULL << 30, 2U << 20 },
	{ "vga.vram", 16ULL << 20, 4096 },
	{ "giant", 2ULL << 30, 1U << 30 },
	{ "rom", 64ULL << 10, 16384 },
};

static struct mfd__setup good_setup(struct mfd__block_desc *blocks)
{
	struct mfd__setup s = {
		.nblocks = ARRAY_SIZE(good_blocks),
		.packet_pages = 128,
		.nchannels = 8,
		.features = MFD_FEAT_VERIFY,
		.blocks = blocks,
	};

	memcpy(blocks, good_blocks, sizeof(good_blocks));
	return s;
}

/* Offset of block i's descriptor in an encoded SETUP. */
static size_t setup_blk_off(const struct mfd__setup *s, uint32_t i)
{
	size_t off = 24;

	for (uint32_t j = 0; j < i; j++)
		off += 16 + strlen(s->blocks[j].name);
	return off;
}

static int setup_decode_exact(const uint8_t *buf, size_t len,
			      struct mfd__setup *d,
			      struct mfd__block_desc *dblocks)
{
	uint8_t *p = exact(buf, len);
	int ret = mfd__setup_decode(p, len, d, dblocks);

	free(p);
	return ret;
}

static int setup_rt(const struct mfd__setup *s)
{
	static uint8_t buf[SETUP_MAX_BYTES];
	static struct mfd__block_desc dblocks[MFD_MAX_BLOCKS];
	struct mfd__setup d;
	int n = mfd__setup_encode(s, buf, sizeof(buf));

	assert_true(n > 0);
	return setup_decode_exact(buf, (size_t)n, &d, dblocks);
}

static void assert_setup_equal(const struct mfd__setup *a,
			       const struct mfd__setup *b)
{
	assert_int_equal(a->nblocks, b->nblocks);
	assert_int_equal(a->packet_pages, b->packet_pages);
	assert_int_equal(a->nchannels, b->nchannels);
	assert_int_equal(a->zstd_window_log, b->zstd_window_log);
	assert_int_equal(a->features, b->features);
	for (uint32_t i = 0; i < a->nblocks; i++) {
		assert_string_equal(a->blocks[i].name, b->blocks[i].name);
		assert_int_equal(a->blocks[i].size, b->blocks[i].size);
		assert_int_equal(a->blocks[i].page_size,
				 b->blocks[i].page_size);
	}
}

static void test_setup_roundtrip(void **state)
{
	static struct mfd__block_desc blocks[MFD_MAX_BLOCKS];
	static struct mfd__block_desc dblocks[MFD_MAX_BLOCKS];
	static uint8_t buf[SETUP_MAX_BYTES];
	struct mfd__setup s = good_setup(blocks), d;
	int n;

	(void)state;
	n = mfd__setup_encode(&s, buf, sizeof(buf));
	assert_int_equal(n, (int)mfd__setup_size(&s));
	assert_int_equal(setup_decode_exact(buf, (size_t)n, &d, dblocks), 0);
	assert_ptr_equal(d.blocks, dblocks);
	assert_setup_equal(&s, &d);

	/* Layout of the fixed part and of the first descriptor. */
	assert_int_equal(mfd__get_le32(buf + 0), ARRAY_SIZE(good_blocks));
	assert_int_equal(mfd__get_le32(buf + 4), 128);
	assert_int_equal(mfd__get_le32(buf + 8), 8);
	assert_int_equal(mfd__get_le32(buf + 12), 0);
	assert_int_equal(mfd__get_le64(buf + 16), MFD_FEAT_VERIFY);
	assert_int_equal(mfd__get_le64(buf + 24), 64ULL << 20);
	assert_int_equal(mfd__get_le32(buf + 32), 4096);
	assert_int_equal(mfd__get_le16(buf + 36), 6);
	assert_int_equal(mfd__get_le16(buf + 38), 0);
	assert_memory_equal(buf + 40, "pc.ram", 6);
	assert_int_equal(setup_blk_off(&s, 1), 46);

	/* Encoding needs exactly mfd__setup_size() bytes. */
	assert_int_equal(mfd__setup_encode(&s, buf, (size_t)n - 1), -ENOSPC);
	assert_int_equal(mfd__setup_encode(&s, buf, (size_t)n), n);

	/* Limits: 256 blocks, 255-byte names, extreme page sizes. */
	s.nblocks = MFD_MAX_BLOCKS;
	s.packet_pages = MFD_MAX_PACKET_PAGES;
	s.nchannels = MFD_MAX_CHANNELS;
	s.features = 0;
	for (uint32_t i = 0; i < MFD_MAX_BLOCKS; i++) {
		memset(blocks[i].name, 'a' + (i % 26), MFD_MAX_NAME);
		snprintf(blocks[i].name, 8, "b%03u", i);
		blocks[i].name[4] = '_';
		blocks[i].name[MFD_MAX_NAME] = '\0';
		blocks[i].page_size =
			i & 1 ? MFD_MIN_PAGE_SIZE : MFD_MAX_PAGE_SIZE;
		blocks[i].size = (uint64_t)blocks[i].page_size * (i + 1);
	}
	n = mfd__setup_encode(&s, buf, sizeof(buf));
	assert_int_equal(n, 24 + MFD_MAX_BLOCKS * (16 + MFD_MAX_NAME));
	assert_int_equal(setup_decode_exact(buf, (size_t)n, &d, dblocks), 0);
	assert_setup_equal(&s, &d);

	/* One block, one-byte name, minimum everything. */
	s.nblocks = 1;
	s.packet_pages = 1;
	s.nchannels = 1;
	strcpy(blocks[0].name, "x");
	blocks[0].page_size = 4096;
	blocks[0].size = 4096;
	assert_int_equal(setup_rt(&s), 0);
}

static void test_setup_reject_fields(void **state)
{
	static struct mfd__block_desc blocks[MFD_MAX_BLOCKS];
	static struct mfd__block_desc dblocks[MFD_MAX_BLOCKS];
	static uint8_t buf[SETUP_MAX_BYTES];
	struct mfd__setup s, d;
	size_t n, b1;

	(void)state;
#define RESET()                                                                \
	do {                                                                   \
		s = good_setup(blocks);                                        \
		n = (size_t)mfd__setup_encode(&s, buf, sizeof(buf));           \
		b1 = setup_blk_off(&s, 1);                                     \
	} while (0)
#define DECODE() setup_decode_exact(buf, n, &d, dblocks)

	RESET();
	assert_int_equal(DECODE(), 0);

	/* nblocks */
	s.nblocks = 0;
	n = (size_t)mfd__setup_encode(&s, buf, sizeof(buf));
	assert_int_equal(DECODE(), MFD_ESETUP);
	RESET();
	mfd__put_le32(buf + 0, MFD_MAX_BLOCKS + 1);
	assert_int_equal(DECODE(), MFD_ESETUP);
	mfd__put_le32(buf + 0, UINT32_MAX);
	assert_int_equal(DECODE(), MFD_ESETUP);
	/* More blocks announced than present: missing bytes. */
	mfd__put_le32(buf + 0, ARRAY_SIZE(good_blocks) + 1);
	assert_int_equal(DECODE(), MFD_ELENGTH);
	/* Fewer: trailing bytes. */
	mfd__put_le32(buf + 0, ARRAY_SIZE(good_blocks) - 1);
	assert_int_equal(DECODE(), MFD_ELENGTH);

	/* packet_pages, nchannels */
	RESET();
	mfd__put_le32(buf + 4, 0);
	assert_int_equal(DECODE(), MFD_ESETUP);
	mfd__put_le32(buf + 4, MFD_MAX_PACKET_PAGES + 1);
	assert_int_equal(DECODE(), MFD_ESETUP);
	RESET();
	mfd__put_le32(buf + 8, 0);
	assert_int_equal(DECODE(), MFD_ESETUP);
	mfd__put_le32(buf + 8, MFD_MAX_CHANNELS + 1);
	assert_int_equal(DECODE(), MFD_ESETUP);

	/* zstd window log (byte 12), urgent lanes (byte 13), reserved,
	 * features */
	RESET();
	mfd__put_le32(buf + 12, 1u << 16);
	assert_int_equal(DECODE(), MFD_EFLAGS);
	mfd__put_le32(buf + 12, 1u << 24);
	assert_int_equal(DECODE(), MFD_EFLAGS);
	mfd__put_le32(buf + 12, 1u << 8); /* lanes without MFD_FEAT_POSTCOPY */
	assert_int_equal(DECODE(), MFD_ESETUP);
	mfd__put_le32(buf + 12, MFD_ZSTD_LONG_MAX);
	assert_int_equal(DECODE(), MFD_ESETUP); /* without MFD_FEAT_ZSTD */
	mfd__put_le64(buf + 16, MFD_FEAT_VERIFY | MFD_FEAT_ZSTD);
	assert_int_equal(DECODE(), 0);
	assert_int_equal(d.zstd_window_log, MFD_ZSTD_LONG_MAX);
	mfd__put_le32(buf + 12, MFD_ZSTD_LONG_MAX + 1);
	assert_int_equal(DECODE(), MFD_ESETUP);
	mfd__put_le32(buf + 12, MFD_ZSTD_LONG_MIN - 1);
	assert_int_equal(DECODE(), MFD_ESETUP);
	mfd__put_le32(buf + 12, MFD_ZSTD_LONG_MIN);
	assert_int_equal(DECODE(), 0);
	RESET();
	mfd__put_le64(buf + 16, 1ULL << 5); /* the first unknown bit */
	assert_int_equal(DECODE(), MFD_EFEATURE);
	mfd__put_le64(buf + 16, 1ULL << 63);
	assert_int_equal(DECODE(), MFD_EFEATURE);

	/* per-block reserved */
	RESET();
	mfd__put_le16(buf + b1 + 14, 1);
	assert_int_equal(DECODE(), MFD_EFLAGS);

	/* name: empty, too long, NUL inside, duplicate */
	RESET();
	blocks[1].name[0] = '\0';
	n = (size_t)mfd__setup_encode(&s, buf, sizeof(buf));
	assert_int_equal(DECODE(), MFD_ESETUP);
	RESET();
	mfd__put_le16(buf + b1 + 12, 0);
	assert_int_equal(DECODE(), MFD_ESETUP);
	RESET();
	memset(blocks[1].name, 'n', sizeof(blocks[1].name)); /* 256, no NUL */
	n = (size_t)mfd__setup_encode(&s, buf, sizeof(buf));
	assert_int_equal(mfd__get_le16(buf + b1 + 12), MFD_MAX_NAME + 1);
	assert_int_equal(DECODE(), MFD_ESETUP);
	RESET();
	mfd__put_le16(buf + b1 + 12, 0xffff);
	assert_int_equal(DECODE(), MFD_ESETUP);
	RESET();
	buf[b1 + 16 + 2] = '\0';
	assert_int_equal(DECODE(), MFD_ESETUP);
	RESET();
	buf[b1 + 16] = '\0'; /* first byte */
	assert_int_equal(DECODE(), MFD_ESETUP);
	RESET();
	strcpy(blocks[3].name, blocks[1].name);
	n = (size_t)mfd__setup_encode(&s, buf, sizeof(buf));
	assert_int_equal(DECODE(), MFD_ESETUP);
	RESET();
	strcpy(blocks[4].name, blocks[0].name);
	n = (size_t)mfd__setup_encode(&s, buf, sizeof(buf));
	assert_int_equal(DECODE(), MFD_ESETUP);
	/* A prefix is not a duplicate. */
	RESET();
	strcpy(blocks[1].name, "pc.ra");
	n = (size_t)mfd__setup_encode(&s, buf, sizeof(buf));
	assert_int_equal(DECODE(), 0);

	/* page size: not a power of two, too small, too big, zero */
	static const uint32_t bad_ps[] = {
		0,
		1,
		2048,
		4095,
		4097,
		3 * 4096,
		MFD_MAX_PAGE_SIZE + 4096,
		1U << 31,
		UINT32_MAX,
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad_ps); i++) {
		RESET();
		mfd__put_le32(buf + b1 + 8, bad_ps[i]);
		assert_int_equal(DECODE(), MFD_ESETUP);
	}

	/* size: zero, not a multiple of the page size */
	static const uint64_t bad_size[] = {
		0, 1, 4096, (4ULL << 30) + 4096, (2ULL << 20) - 1, UINT64_MAX,
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad_size); i++) {
		RESET(); /* block 1: 2 MiB pages */
		mfd__put_le64(buf + b1, bad_size[i]);
		assert_int_equal(DECODE(), MFD_ESETUP);
	}
	RESET();
	mfd__put_le64(buf + b1, UINT64_MAX - (2ULL << 20) + 1);
	assert_int_equal(DECODE(), 0);
#undef RESET
#undef DECODE
}

static void test_setup_lengths(void **state)
{
	static struct mfd__block_desc blocks[MFD_MAX_BLOCKS];
	static struct mfd__block_desc dblocks[MFD_MAX_BLOCKS];
	static uint8_t buf[SETUP_MAX_BYTES];
	struct mfd__setup s = good_setup(blocks), d;
	size_t n = (size_t)mfd__setup_encode(&s, buf, sizeof(buf));

	(void)state;
	/* Truncated at every byte position. */
	for (size_t len = 0; len < n; len++)
		assert_int_equal(setup_decode_exact(buf, len, &d, dblocks),
				 MFD_ELENGTH);
	/* Trailing bytes. */
	for (size_t extra = 1; extra <= 17; extra++)
		assert_int_equal(
			setup_decode_exact(buf, n + extra, &d, dblocks),
			MFD_ELENGTH);
	/* A name length that runs past the end. */
	mfd__put_le16(buf + setup_blk_off(&s, 4) + 12, 200);
	assert_int_equal(setup_decode_exact(buf, n, &d, dblocks), MFD_ELENGTH);
	/* And one that stops short. */
	mfd__put_le16(buf + setup_blk_off(&s, 4) + 12, 2);
	assert_int_equal(setup_decode_exact(buf, n, &d, dblocks), MFD_ELENGTH);
}

/* ---------------------------------------------------------------- */
/* END                                                               */
/* ---------------------------------------------------------------- */

static int end_decode_exact(const uint8_t *buf, size_t len, struct mfd__end *e,
			    uint8_t (*digests)[MFD_DIGEST_SIZE])
{
	uint8_t *p = exact(buf, len);
	int ret = mfd__end_decode(p, len, e, digests);

	free(p);
	return ret;
}

static void test_end_roundtrip(void **state)
{
	static uint8_t dig[MFD_MAX_BLOCKS][MFD_DIGEST_SIZE];
	static uint8_t ddig[MFD_MAX_BLOCKS][MFD_DIGEST_SIZE];
	static uint8_t buf[32 + MFD_MAX_BLOCKS * MFD_DIGEST_SIZE];
	struct mfd__end e =
			   {
			       .final_round = 5,
			       .nblocks = 3,
			       .total_pages = 1ULL << 40,
			       .total_packets = 123456789,
			       .digests = dig,
			   },
		       d;
	int n;

	(void)state;
	for (size_t i = 0; i < sizeof(dig); i++)
		((uint8_t *)dig)[i] = (uint8_t)(i * 7 + 1);

	assert_int_equal(mfd__end_size(3, 1), 32 + 3 * 16);
	assert_int_equal(mfd__end_size(3, 0), 32);
	n = mfd__end_encode(&e, buf, sizeof(buf));
	assert_int_equal(n, 32 + 3 * 16);
	assert_int_equal(mfd__get_le32(buf + 24), 1);
	assert_int_equal(end_decode_exact(buf, (size_t)n, &d, ddig), 0);
	assert_ptr_equal(d.digests, ddig);
	assert_int_equal(d.final_round, 5);
	assert_int_equal(d.nblocks, 3);
	assert_int_equal(d.total_pages, 1ULL << 40);
	assert_int_equal(d.total_packets, 123456789);
	assert_memory_equal(ddig, dig, 3 * MFD_DIGEST_SIZE);

	e.digests = NULL;
	n = mfd__end_encode(&e, buf, sizeof(buf));
	assert_int_equal(n, 32);
	assert_int_equal(mfd__get_le32(buf + 24), 0);
	assert_int_equal(end_decode_exact(buf, (size_t)n, &d, ddig), 0);
	assert_null(d.digests);
	assert_int_equal(d.nblocks, 3);

	e.digests = dig;
	e.nblocks = MFD_MAX_BLOCKS;
	n = mfd__end_encode(&e, buf, sizeof(buf));
	assert_int_equal(n, (int)sizeof(buf));
	assert_int_equal(end_decode_exact(buf, (size_t)n, &d, ddig), 0);
	assert_memory_equal(ddig, dig, sizeof(dig));
	assert_int_equal(mfd__end_encode(&e, buf, sizeof(buf) - 1), -ENOSPC);
}

static void test_end_reject(void **state)
{
	static uint8_t dig[4][MFD_DIGEST_SIZE];
	static uint8_t ddig[MFD_MAX_BLOCKS][MFD_DIGEST_SIZE];
	uint8_t buf[32 + 4 * MFD_DIGEST_SIZE + 16];
	struct mfd__end e = { .nblocks = 4, .digests = dig }, d;
	size_t n;

	(void)state;
	n = (size_t)mfd__end_encode(&e, buf, sizeof(buf));
	for (size_t len = 0; len < n; len++)
		assert_int_equal(end_decode_exact(buf, len, &d, ddig),
				 MFD_ELENGTH);
	assert_int_equal(end_decode_exact(buf, n + 1, &d, ddig), MFD_ELENGTH);
	assert_int_equal(end_decode_exact(buf, n + 16, &d, ddig), MFD_ELENGTH);

	/* Digests announced but absent, or absent but present. */
	mfd__put_le32(buf + 24, 0);
	assert_int_equal(end_decode_exact(buf, n, &d, ddig), MFD_ELENGTH);
	assert_int_equal(end_decode_exact(buf, 32, &d, ddig), 0);
	mfd__put_le32(buf + 24, 1);
	assert_int_equal(end_decode_exact(buf, 32, &d, ddig), MFD_ELENGTH);

	mfd__put_le32(buf + 24, 2);
	assert_int_equal(end_decode_exact(buf, n, &d, ddig), MFD_EFLAGS);
	mfd__put_le32(buf + 24, 1);
	mfd__put_le32(buf + 28, 1);
	assert_int_equal(end_decode_exact(buf, n, &d, ddig), MFD_EFLAGS);
	mfd__put_le32(buf + 28, 0);

	mfd__put_le32(buf + 4, 0);
	assert_int_equal(end_decode_exact(buf, 32, &d, ddig), MFD_EBLOCK);
	mfd__put_le32(buf + 4, MFD_MAX_BLOCKS + 1);
	assert_int_equal(end_decode_exact(buf, n, &d, ddig), MFD_EBLOCK);
	/* nblocks * 16 must not wrap into a small, matching length. */
	mfd__put_le32(buf + 4, 0x10000000U);
	assert_int_equal(end_decode_exact(buf, 32, &d, ddig), MFD_EBLOCK);
}

/* ---------------------------------------------------------------- */
/* ERROR                                                             */
/* ---------------------------------------------------------------- */

static int error_decode_exact(const uint8_t *buf, size_t len,
			      struct mfd__error_msg *m)
{
	uint8_t *p = exact(buf, len);
	int ret = mfd__error_decode(p, len, m);

	free(p);
	return ret;
}

static void test_error_roundtrip(void **state)
{
	static struct mfd__error_msg m, d;
	uint8_t buf[8 + MFD_MAX_ERROR_TEXT + 8];
	int n;

	(void)state;
	m.code = MFD_EVERIFY;
	strcpy(m.text, "block pc.ram: digest mismatch");
	n = mfd__error_encode(&m, buf, sizeof(buf));
	assert_int_equal(n, 8 + (int)strlen(m.text));
	assert_int_equal((int32_t)mfd__get_le32(buf), MFD_EVERIFY);
	assert_int_equal(mfd__get_le32(buf + 4), strlen(m.text));
	assert_int_equal(error_decode_exact(buf, (size_t)n, &d), 0);
	assert_int_equal(d.code, MFD_EVERIFY);
	assert_string_equal(d.text, m.text);

	/* Empty text. */
	m.code = -ECONNRESET;
	m.text[0] = '\0';
	n = mfd__error_encode(&m, buf, sizeof(buf));
	assert_int_equal(n, 8);
	assert_int_equal(error_decode_exact(buf, 8, &d), 0);
	assert_int_equal(d.code, -ECONNRESET);
	assert_string_equal(d.text, "");

	/* Longest text: the encoder stops at MFD_MAX_ERROR_TEXT. */
	memset(m.text, 'e', sizeof(m.text));
	n = mfd__error_encode(&m, buf, sizeof(buf));
	assert_int_equal(n, 8 + MFD_MAX_ERROR_TEXT);
	assert_int_equal(error_decode_exact(buf, (size_t)n, &d), 0);
	assert_int_equal(strlen(d.text), MFD_MAX_ERROR_TEXT);
	assert_int_equal(mfd__error_encode(&m, buf, (size_t)n - 1), -ENOSPC);

	/* Non-printable bytes become '?'. */
	memcpy(buf,
	       "\x15\xfc\xff\xff\x06\x00\x00\x00"
	       "a\nb\x7f\x80z",
	       14);
	assert_int_equal(error_decode_exact(buf, 14, &d), 0);
	assert_int_equal(d.code, MFD_EROLE);
	assert_string_equal(d.text, "a?b??z");
	buf[8] = '\0';
	assert_int_equal(error_decode_exact(buf, 14, &d), 0);
	assert_string_equal(d.text, "??b??z");
}

static void test_error_reject(void **state)
{
	static struct mfd__error_msg m, d;
	uint8_t buf[8 + MFD_MAX_ERROR_TEXT + 8];
	size_t n;

	(void)state;
	m.code = MFD_ETYPE;
	strcpy(m.text, "unknown packet type 9");
	n = (size_t)mfd__error_encode(&m, buf, sizeof(buf));
	for (size_t len = 0; len < n; len++)
		assert_int_equal(error_decode_exact(buf, len, &d), MFD_ELENGTH);
	assert_int_equal(error_decode_exact(buf, n + 1, &d), MFD_ELENGTH);

	mfd__put_le32(buf, 0);
	assert_int_equal(error_decode_exact(buf, n, &d), MFD_EREMOTE);
	mfd__put_le32(buf, 1001);
	assert_int_equal(error_decode_exact(buf, n, &d), MFD_EREMOTE);
	mfd__put_le32(buf, (uint32_t)INT32_MIN);
	assert_int_equal(error_decode_exact(buf, n, &d), MFD_EREMOTE);
	mfd__put_le32(buf, (uint32_t)(INT32_MIN + 1));
	assert_int_equal(error_decode_exact(buf, n, &d), 0);

	/* Text longer than the limit, even when the bytes are there. */
	memset(buf + 8, 'x', MFD_MAX_ERROR_TEXT + 1);
	mfd__put_le32(buf + 4, MFD_MAX_ERROR_TEXT + 1);
	assert_int_equal(
		error_decode_exact(buf, 8 + MFD_MAX_ERROR_TEXT + 1, &d),
		MFD_ELENGTH);
	mfd__put_le32(buf + 4, UINT32_MAX);
	assert_int_equal(error_decode_exact(buf, 8, &d), MFD_ELENGTH);
	mfd__put_le32(buf + 4, UINT32_MAX - 7);
	assert_int_equal(error_decode_exact(buf, 8, &d), MFD_ELENGTH);
}

/* ---------------------------------------------------------------- */
/* Data packets                                                      */
/* ---------------------------------------------------------------- */

static struct mfd__pkt_hdr good_pages(void)
{
	struct mfd__pkt_hdr h = {
		.magic = MFD_MAGIC_PKT,
		.type = MFD_PKT_PAGES,
		.round = 2,
		.block = 1,
		.count = 3,
		.zero_count = 2,
		.payload_len = 3 * (2U << 20),
		.seq = 41,
	};
	return h;
}

static int pkt_rt(const struct mfd__pkt_hdr *h, struct mfd__pkt_hdr *out)
{
	uint8_t buf[MFD_PKT_HDR_SIZE];

	mfd__pkt_encode(h, buf);
	return mfd__pkt_decode(buf, out);
}

static void test_pkt_roundtrip(void **state)
{
	struct mfd__pkt_hdr h = good_pages(), d;
	uint8_t buf[MFD_PKT_HDR_SIZE];

	(void)state;
	assert_int_equal(pkt_rt(&h, &d), 0);
	assert_memory_equal(&h, &d, sizeof(h));
	mfd__pkt_encode(&h, buf);
	assert_memory_equal(buf,
			    "MFDP\x01\x00\x00\x00\x02\x00\x00\x00"
			    "\x01\x00\x00\x00\x03\x00\x00\x00"
			    "\x02\x00\x00\x00\x00\x00\x60\x00"
			    "\x29\x00\x00\x00",
			    MFD_PKT_HDR_SIZE);

	h = (struct mfd__pkt_hdr){ .magic = MFD_MAGIC_PKT,
				   .type = MFD_PKT_SYNC,
				   .round = 9,
				   .count = 1000,
				   .seq = UINT32_MAX };
	assert_int_equal(pkt_rt(&h, &d), 0);
	assert_memory_equal(&h, &d, sizeof(h));
	h.type = MFD_PKT_DONE;
	h.count = 0;
	assert_int_equal(pkt_rt(&h, &d), 0);
	assert_memory_equal(&h, &d, sizeof(h));
}

static void test_pkt_reject(void **state)
{
	struct mfd__pkt_hdr h, d;

	(void)state;
	h = good_pages();
	h.magic = MFD_MAGIC_HELLO;
	assert_int_equal(pkt_rt(&h, &d), MFD_EBADMAGIC);
	h.magic = 0x50444650U; /* byte-swapped */
	assert_int_equal(pkt_rt(&h, &d), MFD_EBADMAGIC);

	h = good_pages();
	h.type = 0;
	assert_int_equal(pkt_rt(&h, &d), MFD_ETYPE);
	h.type = 5;
	assert_int_equal(pkt_rt(&h, &d), MFD_ETYPE);
	h.type = 0xffff;
	assert_int_equal(pkt_rt(&h, &d), MFD_ETYPE);

	h = good_pages();
	h.flags = MFD_PKT_F_ZSTD; /* the PAGES flags (post-copy's too) */
	assert_int_equal(pkt_rt(&h, &d), 0);
	h.flags = MFD_PKT_F_KNOWN;
	assert_int_equal(pkt_rt(&h, &d), 0);
	h.flags = 4;
	assert_int_equal(pkt_rt(&h, &d), MFD_EFLAGS);
	h.flags = MFD_PKT_F_ZSTD | 0x8000;
	assert_int_equal(pkt_rt(&h, &d), MFD_EFLAGS);
	for (uint16_t t = MFD_PKT_SYNC; t <= MFD_PKT_DONE; t++) {
		h = (struct mfd__pkt_hdr){ .magic = MFD_MAGIC_PKT, .type = t };
		h.flags = MFD_PKT_F_ZSTD;
		assert_int_equal(pkt_rt(&h, &d), MFD_EFLAGS);
	}

	for (uint16_t t = MFD_PKT_SYNC; t <= MFD_PKT_DONE; t++) {
		h = (struct mfd__pkt_hdr){ .magic = MFD_MAGIC_PKT, .type = t };
		h.block = 1;
		assert_int_equal(pkt_rt(&h, &d), MFD_ELENGTH);
		h.block = 0;
		h.zero_count = 1;
		assert_int_equal(pkt_rt(&h, &d), MFD_ELENGTH);
		h.zero_count = 0;
		h.payload_len = 4096;
		assert_int_equal(pkt_rt(&h, &d), MFD_ELENGTH);
	}
}

static const struct mfd__wire_limits good_limits = {
	.nblocks = ARRAY_SIZE(good_blocks),
	.packet_pages = 128,
	.blocks = good_blocks,
};

/* Compressed PAGES: only when negotiated; count >= 1; the pages fit in
 * packet_pages * 4 KiB; 1 <= payload_len <= bound(count * page_size). */
static void test_pkt_validate_zstd(void **state)
{
	struct mfd__wire_limits lim = good_limits;
	struct mfd__pkt_hdr h = { .magic = MFD_MAGIC_PKT,
				  .type = MFD_PKT_PAGES,
				  .flags = MFD_PKT_F_ZSTD,
				  .block = 0,
				  .count = 3,
				  .zero_count = 2,
				  .payload_len = 100 };

	(void)state;
	lim.features = 0;
	assert_int_equal(mfd__pkt_validate(&h, &lim), MFD_EFLAGS);
	lim.features = MFD_FEAT_ZSTD;
	assert_int_equal(mfd__pkt_validate(&h, &lim), 0);

	/* Payload length bounds, in 64 bits. */
	uint64_t raw = 3 * 4096;
	h.payload_len = 0;
	assert_int_equal(mfd__pkt_validate(&h, &lim), MFD_ELENGTH);
	h.payload_len = 1;
	assert_int_equal(mfd__pkt_validate(&h, &lim), 0);
	h.payload_len = (uint32_t)(raw + raw / 128 + 1024);
	assert_int_equal(mfd__pkt_validate(&h, &lim), 0);
	h.payload_len++;
	assert_int_equal(mfd__pkt_validate(&h, &lim), MFD_ELENGTH);
	h.payload_len = UINT32_MAX;
	assert_int_equal(mfd__pkt_validate(&h, &lim), MFD_ELENGTH);

	/* Only zero pages: nothing to decompress. */
	h.count = 0;
	h.payload_len = 1;
	assert_int_equal(mfd__pkt_validate(&h, &lim), MFD_ELENGTH);

	/* A full packet of 4 KiB pages is the largest input. */
	h.count = lim.packet_pages;
	h.zero_count = 0;
	h.payload_len = 1000;
	assert_int_equal(mfd__pkt_validate(&h, &lim), 0);
	/* 2 MiB pages: one is already more than 128 * 4 KiB. */
	h.block = 1;
	h.count = 1;
	assert_int_equal(mfd__pkt_validate(&h, &lim), MFD_ELENGTH);
	/* 16 KiB pages: up to 32 of them. */
	h.block = 4;
	h.count = 32;
	assert_int_equal(mfd__pkt_validate(&h, &lim), 0);
	h.count = 33;
	assert_int_equal(mfd__pkt_validate(&h, &lim), MFD_ELENGTH);

	/* Without the flag the exact length rule holds as before. */
	h.flags = 0;
	h.block = 0;
	h.count = 3;
	h.payload_len = 100;
	assert_int_equal(mfd__pkt_validate(&h, &lim), MFD_ELENGTH);
	h.payload_len = 3 * 4096;
	assert_int_equal(mfd__pkt_validate(&h, &lim), 0);
}

static void test_pkt_validate(void **state)
{
	const struct mfd__wire_limits *lim = &good_limits;
	struct mfd__pkt_hdr h;

	(void)state;
	h = good_pages();
	assert_int_equal(mfd__pkt_validate(&h, lim), 0);

	/* Block index. */
	h.block = lim->nblocks;
	assert_int_equal(mfd__pkt_validate(&h, lim), MFD_EBLOCK);
	h.block = UINT32_MAX;
	assert_int_equal(mfd__pkt_validate(&h, lim), MFD_EBLOCK);

	/* Counts: at least one page, at most packet_pages in all. */
	h = good_pages();
	h.block = 0;
	h.count = 0;
	h.zero_count = 0;
	h.payload_len = 0;
	assert_int_equal(mfd__pkt_validate(&h, lim), MFD_ECOUNT);
	h.zero_count = 1; /* only zero pages: fine */
	assert_int_equal(mfd__pkt_validate(&h, lim), 0);
	h.zero_count = lim->packet_pages;
	assert_int_equal(mfd__pkt_validate(&h, lim), 0);
	h.zero_count = lim->packet_pages + 1;
	assert_int_equal(mfd__pkt_validate(&h, lim), MFD_ECOUNT);
	h.zero_count = 0;
	h.count = lim->packet_pages;
	h.payload_len = lim->packet_pages * 4096;
	assert_int_equal(mfd__pkt_validate(&h, lim), 0);
	h.count = lim->packet_pages + 1;
	h.payload_len = (lim->packet_pages + 1) * 4096;
	assert_int_equal(mfd__pkt_validate(&h, lim), MFD_ECOUNT);
	h.count = 64;
	h.zero_count = 65;
	h.payload_len = 64 * 4096;
	assert_int_equal(mfd__pkt_validate(&h, lim), MFD_ECOUNT);
	/* count + zero_count wraps to 0 and to 1 in 32 bits. */
	h.count = UINT32_MAX;
	h.zero_count = 1;
	h.payload_len = 0;
	assert_int_equal(mfd__pkt_validate(&h, lim), MFD_ECOUNT);
	h.zero_count = 2;
	assert_int_equal(mfd__pkt_validate(&h, lim), MFD_ECOUNT);
	h.count = 1;
	h.zero_count = UINT32_MAX;
	h.payload_len = 4096;
	assert_int_equal(mfd__pkt_validate(&h, lim), MFD_ECOUNT);

	/* Payload length. */
	h = good_pages();
	h.payload_len++;
	assert_int_equal(mfd__pkt_validate(&h, lim), MFD_ELENGTH);
	h.payload_len -= 2;
	assert_int_equal(mfd__pkt_validate(&h, lim), MFD_ELENGTH);
	h.payload_len = 0;
	assert_int_equal(mfd__pkt_validate(&h, lim), MFD_ELENGTH);
	/* 4 pages of 1 GiB = 2^32 bytes, which is 0 in 32 bits. */
	h.block = 3;
	h.count = 4;
	h.zero_count = 0;
	h.payload_len = 0;
	assert_int_equal(mfd__pkt_validate(&h, lim), MFD_ELENGTH);
	h.count = 3;
	h.payload_len = 3U << 30;
	assert_int_equal(mfd__pkt_validate(&h, lim), 0);

	/* Only PAGES headers carry anything to validate. */
	h = (struct mfd__pkt_hdr){ .magic = MFD_MAGIC_PKT,
				   .type = MFD_PKT_SYNC };
	assert_int_equal(mfd__pkt_validate(&h, lim), MFD_ETYPE);
}

/* Encodes host-order offsets and decodes them against good_limits. */
static int offsets_rt(uint32_t block, uint32_t count, uint32_t zero_count,
		      const uint64_t *host, uint64_t *out)
{
	struct mfd__pkt_hdr h = {
		.magic = MFD_MAGIC_PKT,
		.type = MFD_PKT_PAGES,
		.block = block,
		.count = count,
		.zero_count = zero_count,
		.payload_len = count * good_blocks[block].page_size,
	};
	size_t n = (size_t)count + zero_count;
	uint64_t *wire = malloc(n * sizeof(*wire));
	int ret;

	assert_non_null(wire);
	assert_int_equal(mfd__pkt_offsets_size(&h), n * sizeof(uint64_t));
	memcpy(wire, host, n * sizeof(*wire));
	mfd__pkt_offsets_encode(wire, n);
	ret = mfd__pkt_offsets_decode(&h, wire, &good_limits);
	if (out)
		memcpy(out, wire, n * sizeof(*wire));
	free(wire);
	return ret;
}

static void test_offsets(void **state)
{
	const uint64_t P = 4096, H = 2U << 20;
	const uint64_t SZ0 = good_blocks[0].size, SZ1 = good_blocks[1].size;
	uint64_t out[8];

	(void)state;
	{
		/* Wire order is little-endian whatever the host. */
		uint64_t v = 0x0102030405060708ULL;
		uint8_t b[8];

		mfd__pkt_offsets_encode(&v, 1);
		memcpy(b, &v, 8);
		assert_memory_equal(b, "\x08\x07\x06\x05\x04\x03\x02\x01", 8);
	}
	{
		/* Normal run, then zero run that restarts lower. */
		const uint64_t o[] = { 0, P, 5 * P, SZ0 - P, 2 * P, 3 * P };
		assert_int_equal(offsets_rt(0, 4, 2, o, out), 0);
		assert_memory_equal(out, o, sizeof(o));
	}
	{
		const uint64_t o[] = { H, 7 * H, SZ1 - H };
		assert_int_equal(offsets_rt(1, 3, 0, o, out), 0);
		assert_memory_equal(out, o, sizeof(o));
		assert_int_equal(offsets_rt(1, 0, 3, o, out), 0);
		assert_memory_equal(out, o, sizeof(o));
	}

	/* Unaligned: to the block's page size, not to 4 KiB. */
	assert_int_equal(offsets_rt(0, 1, 0, (uint64_t[]){ 1 }, NULL),
			 MFD_EOFFSET);
	assert_int_equal(offsets_rt(0, 2, 0, (uint64_t[]){ 0, P + 8 }, NULL),
			 MFD_EOFFSET);
	assert_int_equal(offsets_rt(1, 1, 0, (uint64_t[]){ P }, NULL),
			 MFD_EOFFSET);
	assert_int_equal(offsets_rt(1, 1, 1, (uint64_t[]){ 0, H + P }, NULL),
			 MFD_EOFFSET);

	/* Out of range: == size, > size, huge. */
	assert_int_equal(offsets_rt(0, 1, 0, (uint64_t[]){ SZ0 }, NULL),
			 MFD_EOFFSET);
	assert_int_equal(offsets_rt(0, 0, 1, (uint64_t[]){ SZ0 }, NULL),
			 MFD_EOFFSET);
	assert_int_equal(offsets_rt(0, 2, 0, (uint64_t[]){ 0, SZ0 + P }, NULL),
			 MFD_EOFFSET);
	assert_int_equal(
		offsets_rt(0, 1, 0, (uint64_t[]){ UINT64_MAX - P + 1 }, NULL),
		MFD_EOFFSET);

	/* Not increasing, duplicate: in either run. */
	assert_int_equal(offsets_rt(0, 3, 0, (uint64_t[]){ 0, 2 * P, P }, NULL),
			 MFD_EOFFSET);
	assert_int_equal(offsets_rt(0, 2, 0, (uint64_t[]){ P, P }, NULL),
			 MFD_EOFFSET);
	assert_int_equal(
		offsets_rt(0, 1, 3, (uint64_t[]){ 0, P, 3 * P, 2 * P }, NULL),
		MFD_EOFFSET);
	assert_int_equal(offsets_rt(0, 1, 2, (uint64_t[]){ 0, P, P }, NULL),
			 MFD_EOFFSET);
	/* A page both normal and zero. */
	assert_int_equal(offsets_rt(0, 3, 2,
				    (uint64_t[]){ 0, 2 * P, 4 * P, P, 4 * P },
				    NULL),
			 MFD_EOFFSET);
	assert_int_equal(offsets_rt(0, 1, 1, (uint64_t[]){ 0, 0 }, NULL),
			 MFD_EOFFSET);

	/* The header is re-checked: an invalid one is refused. */
	{
		struct mfd__pkt_hdr h = good_pages();
		uint64_t o[5] = { 0 };

		h.block = 99;
		assert_int_equal(mfd__pkt_offsets_decode(&h, o, &good_limits),
				 MFD_EBLOCK);
	}
}

/* ---------------------------------------------------------------- */
/* Randomized: every decoder on random and mutated bytes             */
/* ---------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* splitmix64: the same sequence on every platform for a seed. */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint32_t rnd_below(uint32_t n)
{
	return (uint32_t)(rnd() % n);
}

static void rnd_fill(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
}

/* Flip, set or clear a few bytes of a valid message. */
static void mutate(uint8_t *p, size_t n)
{
	uint32_t k = 1 + rnd_below(3);

	if (n == 0)
		return;
	for (uint32_t i = 0; i < k; i++) {
		size_t at = rnd_below((uint32_t)n);

		switch (rnd_below(4)) {
		case 0:
			p[at] ^= (uint8_t)(1u << rnd_below(8));
			break;
		case 1:
			p[at] = (uint8_t)rnd();
			break;
		case 2:
			p[at] = 0;
			break;
		default:
			p[at] = 0xff;
			break;
		}
	}
}

static void assert_code(int ret)
{
	if (ret == 0)
		return;
	/* Only the protocol codes: a decoder never reports -errno. */
	assert_in_range(-ret, 1001, 1020);
}

static void fuzz_fixed(size_t size, const uint8_t *valid,
		       int (*decode_encode)(const uint8_t *, uint8_t *))
{
	uint8_t *in = malloc(size), re[64];
	int ret;

	assert_non_null(in);
	if (rnd_below(2)) {
		rnd_fill(in, size);
	} else {
		memcpy(in, valid, size);
		mutate(in, size);
	}
	ret = decode_encode(in, re);
	assert_code(ret);
	/* Whatever decodes re-encodes to the same bytes: the encoding is
	 * canonical, so no field is silently ignored. */
	if (ret == 0)
		assert_memory_equal(in, re, size);
	free(in);
}

static int de_hello(const uint8_t *in, uint8_t *re)
{
	struct mfd__hello h;
	int ret = mfd__hello_decode(in, &h);

	if (ret == 0)
		mfd__hello_encode(&h, re);
	return ret;
}

static int de_reply(const uint8_t *in, uint8_t *re)
{
	struct mfd__hello_reply r;
	int ret = mfd__hello_reply_decode(in, &r);

	if (ret == 0) {
		assert_true(r.status == 0 ? r.error == 0 : r.error < 0);
		mfd__hello_reply_encode(&r, re);
	}
	return ret;
}

static int de_ctl(const uint8_t *in, uint8_t *re)
{
	struct mfd__ctl_hdr h;
	int ret = mfd__ctl_hdr_decode(in, &h);

	if (ret == 0) {
		assert_true(h.length <= MFD_MAX_CTL_PAYLOAD);
		mfd__ctl_hdr_encode(&h, re);
	}
	return ret;
}

static int de_round(const uint8_t *in, uint8_t *re)
{
	struct mfd__round r;
	int ret = mfd__round_decode(in, &r);

	if (ret == 0)
		mfd__round_encode(&r, re);
	return ret;
}

static int de_pkt(const uint8_t *in, uint8_t *re)
{
	struct mfd__pkt_hdr h;
	int ret = mfd__pkt_decode(in, &h);

	if (ret == 0)
		mfd__pkt_encode(&h, re);
	return ret;
}

/* A variable-length message: random, or valid then mutated, truncated or
 * extended. Returns a heap buffer of exactly *len bytes. */
static uint8_t *fuzz_input(const uint8_t *valid, size_t vlen, size_t maxlen,
			   size_t *len)
{
	uint8_t *in;
	size_t n;

	switch (rnd_below(4)) {
	case 0:
		n = rnd_below((uint32_t)maxlen + 1);
		in = alloc_exact(n);
		rnd_fill(in, n);
		break;
	case 1: /* truncated or extended valid message */
		n = rnd_below((uint32_t)vlen + 33);
		in = alloc_exact(n);
		memcpy(in, valid, n < vlen ? n : vlen);
		if (n > vlen)
			rnd_fill(in + vlen, n - vlen);
		break;
	default:
		n = vlen;
		in = exact(valid, n);
		mutate(in, n);
		break;
	}
	*len = n;
	return in;
}

static void fuzz_setup(const uint8_t *valid, size_t vlen)
{
	static struct mfd__block_desc blocks[MFD_MAX_BLOCKS];
	static uint8_t re[SETUP_MAX_BYTES];
	struct mfd__setup s;
	size_t len;
	uint8_t *in = fuzz_input(valid, vlen, 1024, &len);
	int ret = mfd__setup_decode(in, len, &s, blocks);

	assert_code(ret);
	if (ret == 0) {
		assert_in_range(s.nblocks, 1, MFD_MAX_BLOCKS);
		for (uint32_t i = 0; i < s.nblocks; i++) {
			size_t nl = strnlen(blocks[i].name, MFD_MAX_NAME + 1);

			assert_in_range(nl, 1, MFD_MAX_NAME);
			assert_int_equal(blocks[i].size % blocks[i].page_size,
					 0);
		}
		assert_int_equal(mfd__setup_encode(&s, re, sizeof(re)),
				 (int)len);
		assert_memory_equal(re, in, len);
	}
	free(in);
}

static void fuzz_end(const uint8_t *valid, size_t vlen)
{
	static uint8_t dig[MFD_MAX_BLOCKS][MFD_DIGEST_SIZE];
	static uint8_t re[32 + MFD_MAX_BLOCKS * MFD_DIGEST_SIZE];
	struct mfd__end e;
	size_t len;
	uint8_t *in = fuzz_input(valid, vlen, 256, &len);
	int ret = mfd__end_decode(in, len, &e, dig);

	assert_code(ret);
	if (ret == 0) {
		assert_in_range(e.nblocks, 1, MFD_MAX_BLOCKS);
		assert_int_equal(mfd__end_encode(&e, re, sizeof(re)), (int)len);
		assert_memory_equal(re, in, len);
	}
	free(in);
}

static void fuzz_error(const uint8_t *valid, size_t vlen)
{
	static struct mfd__error_msg m;
	size_t len;
	uint8_t *in = fuzz_input(valid, vlen, 600, &len);
	int ret = mfd__error_decode(in, len, &m);

	assert_code(ret);
	if (ret == 0) {
		size_t tl = strlen(m.text);

		assert_true(m.code < 0);
		assert_int_equal(tl, len - 8);
		for (size_t i = 0; i < tl; i++)
			assert_in_range((uint8_t)m.text[i], 0x20, 0x7e);
	}
	free(in);
}

/* A PAGES header near the limits, then offsets near the block's range. */
static void fuzz_pkt_offsets(void)
{
	const struct mfd__wire_limits *lim = &good_limits;
	struct mfd__pkt_hdr h = good_pages();
	uint64_t *off;
	size_t n;
	int ret;

	h.block = rnd_below(lim->nblocks + 1);
	h.count = rnd_below(lim->packet_pages + 2);
	h.zero_count = rnd_below(lim->packet_pages + 2 - h.count);
	if (rnd_below(16) == 0)
		h.count = (uint32_t)rnd();
	if (rnd_below(16) == 0)
		h.zero_count = (uint32_t)rnd();
	h.payload_len = h.block < lim->nblocks
				? h.count * lim->blocks[h.block].page_size
				: (uint32_t)rnd();
	if (rnd_below(16) == 0)
		h.payload_len = (uint32_t)rnd();

	ret = mfd__pkt_validate(&h, lim);
	assert_code(ret);
	if (ret != 0)
		return;
	assert_true(h.block < lim->nblocks);

	const struct mfd__block_desc *b = &lim->blocks[h.block];
	uint64_t npages = b->size / b->page_size;

	n = (size_t)h.count + h.zero_count;
	assert_in_range(n, 1, lim->packet_pages);
	off = malloc(n * sizeof(*off));
	assert_non_null(off);
	/* Mostly valid runs (sorted page offsets), sometimes garbage. */
	for (size_t i = 0; i < n; i++) {
		uint64_t step = 1 + rnd_below(rnd_below(2) ? 2 : 64);
		int first = i == 0 || i == h.count;

		off[i] = (first ? rnd_below(
					  (uint32_t)(npages < 64 ? npages : 64))
				: off[i - 1] / b->page_size + step) *
			 b->page_size;
		switch (rnd_below(32)) {
		case 0:
			off[i] = rnd();
			break;
		case 1:
			off[i] += 1;
			break;
		case 2:
			off[i] = b->size;
			break;
		}
	}
	mfd__pkt_offsets_encode(off, n);
	ret = mfd__pkt_offsets_decode(&h, off, lim);
	assert_code(ret);
	if (ret == 0) {
		for (size_t i = 0; i < n; i++) {
			assert_int_equal(off[i] % b->page_size, 0);
			assert_true(off[i] < b->size);
			if (i != 0 && i != h.count)
				assert_true(off[i] > off[i - 1]);
			for (size_t j = h.count; i < h.count && j < n; j++)
				assert_true(off[i] != off[j]);
		}
	}
	free(off);
}

static void test_random(void **state)
{
	static struct mfd__block_desc blocks[MFD_MAX_BLOCKS];
	static uint8_t setup_buf[SETUP_MAX_BYTES];
	static uint8_t dig[4][MFD_DIGEST_SIZE];
	static struct mfd__error_msg em = { MFD_EOFFSET,
					    "offset 0x1001 in pc.ram" };
	uint8_t hello[MFD_HELLO_SIZE], reply[MFD_HELLO_REPLY_SIZE];
	uint8_t ctl[MFD_CTL_HDR_SIZE], round[MFD_ROUND_SIZE];
	uint8_t pkt[MFD_PKT_HDR_SIZE], end_buf[32 + 4 * MFD_DIGEST_SIZE];
	uint8_t err_buf[8 + MFD_MAX_ERROR_TEXT];
	struct mfd__setup s = good_setup(blocks);
	struct mfd__hello h = good_hello();
	struct mfd__hello_reply r = good_reply();
	struct mfd__pkt_hdr p = good_pages();
	struct mfd__end e = { .final_round = 3, .nblocks = 4, .digests = dig };
	const char *env;
	uint64_t seed;
	unsigned long iters = 20000;
	size_t setup_len, end_len, err_len;

	(void)state;
	env = getenv("MFD_WIRE_SEED");
	seed = env ? strtoull(env, NULL, 0)
		   : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	env = getenv("MFD_WIRE_ITERS");
	if (env)
		iters = strtoul(env, NULL, 0);
	print_message("test_random: MFD_WIRE_SEED=%llu MFD_WIRE_ITERS=%lu\n",
		      (unsigned long long)seed, iters);
	rng_state = seed;

	mfd__hello_encode(&h, hello);
	mfd__hello_reply_encode(&r, reply);
	mfd__ctl_hdr_encode(&(struct mfd__ctl_hdr){ .magic = MFD_MAGIC_CTL,
						    .type = MFD_CTL_ROUND,
						    .length = MFD_ROUND_SIZE },
			    ctl);
	mfd__round_encode(&(struct mfd__round){ .round = 4, .pages = 77 },
			  round);
	mfd__pkt_encode(&p, pkt);
	setup_len = (size_t)mfd__setup_encode(&s, setup_buf, sizeof(setup_buf));
	end_len = (size_t)mfd__end_encode(&e, end_buf, sizeof(end_buf));
	err_len = (size_t)mfd__error_encode(&em, err_buf, sizeof(err_buf));

	for (unsigned long i = 0; i < iters; i++) {
		fuzz_fixed(MFD_HELLO_SIZE, hello, de_hello);
		fuzz_fixed(MFD_HELLO_REPLY_SIZE, reply, de_reply);
		fuzz_fixed(MFD_CTL_HDR_SIZE, ctl, de_ctl);
		fuzz_fixed(MFD_ROUND_SIZE, round, de_round);
		fuzz_fixed(MFD_PKT_HDR_SIZE, pkt, de_pkt);
		fuzz_setup(setup_buf, setup_len);
		fuzz_end(end_buf, end_len);
		fuzz_error(err_buf, err_len);
		fuzz_pkt_offsets();
	}
}

/* RECEIVED (resume.h): a bitmap's runs round-trip, split over messages
 * when the room is small; every bound is checked. */
static void test_received(void **state)
{
	(void)state;
	static const struct mfd__block_desc blocks[2] = {
		{ .name = "a", .size = 1000 * 4096ULL, .page_size = 4096 },
		{ .name = "b", .size = 64 * 4096ULL, .page_size = 4096 },
	};
	const struct mfd__wire_limits lim = { .nblocks = 2, .blocks = blocks };
	uint64_t bits[16] = { 0 }, back[16] = { 0 };
	/* Runs at a word's edges, a single page, the block's last page. */
	for (uint64_t pg = 60; pg < 70; pg++)
		bits[pg / 64] |= 1ULL << (pg % 64);
	bits[2] |= 1ULL << 5;
	for (uint64_t pg = 990; pg < 1000; pg++)
		bits[pg / 64] |= 1ULL << (pg % 64);
	uint8_t buf[MFD_RECEIVED_FIXED + 2 * MFD_RECEIVED_RUN];
	struct mfd__received_seq q = { 0 };
	uint64_t pos = 0;
	unsigned msgs = 0;
	do {
		size_t len = mfd__received_encode(bits, 1000, 7, 8, 0, true,
						  &pos, buf, sizeof(buf));
		struct mfd__received m;
		assert_int_equal(mfd__received_decode(buf, len, &lim, &m), 0);
		assert_int_equal(m.base_round, 7);
		assert_int_equal(mfd__received_next(&q, &m), 0);
		mfd__received_apply(&m, back);
		msgs++;
	} while (pos < 1000);
	assert_int_equal(msgs, 2); /* 3 runs, 2 a message */
	assert_true(q.done);
	assert_memory_equal(bits, back, sizeof(bits));

	/* One run, then its rejections. */
	pos = 0;
	size_t len = mfd__received_encode(bits, 64, MFD_ROUND_NONE, 2, 1, false,
					  &pos, buf, sizeof(buf));
	struct mfd__received m;
	assert_int_equal(len, MFD_RECEIVED_FIXED + MFD_RECEIVED_RUN);
	assert_int_equal(mfd__received_decode(buf, len, &lim, &m), 0);
	assert_int_equal(m.flags, 0);
	assert_int_equal(mfd__received_decode(buf, len - 1, &lim, &m),
			 MFD_ELENGTH);
	uint8_t bad[sizeof(buf)];
	memcpy(bad, buf, len);
	bad[4] = 2; /* block 2 of 2 */
	assert_int_equal(mfd__received_decode(bad, len, &lim, &m), MFD_EBLOCK);
	memcpy(bad, buf, len);
	bad[6] = 2; /* unknown flag */
	assert_int_equal(mfd__received_decode(bad, len, &lim, &m), MFD_EFLAGS);
	memcpy(bad, buf, len);
	memset(bad, 0, 4);
	bad[0] = 2; /* base round 2: round 2 is not after it */
	assert_int_equal(mfd__received_decode(bad, len, &lim, &m), MFD_EROUND);
	bad[20] = 3; /* round 3 is */
	assert_int_equal(mfd__received_decode(bad, len, &lim, &m), 0);
	assert_int_equal(m.round, 3);
	memcpy(bad, buf, len);
	bad[8] = 65; /* first past the block's 64 pages */
	assert_int_equal(mfd__received_decode(bad, len, &lim, &m), MFD_EOFFSET);
	memcpy(bad, buf, len);
	memset(bad + MFD_RECEIVED_FIXED + 4, 0, 4); /* an empty run */
	assert_int_equal(mfd__received_decode(bad, len, &lim, &m), MFD_EOFFSET);
	memcpy(bad, buf, len);
	memset(bad + MFD_RECEIVED_FIXED, 0xff, 4); /* a skip past the end */
	assert_int_equal(mfd__received_decode(bad, len, &lim, &m), MFD_EOFFSET);

	/* The sequence: one base round, blocks in order, nothing after LAST. */
	struct mfd__received_seq q2 = { 0 };
	struct mfd__received a = { .base_round = 3, .block = 1, .end = 10 };
	assert_int_equal(mfd__received_next(&q2, &a), 0);
	struct mfd__received b = a;
	b.base_round = 4;
	assert_int_equal(mfd__received_next(&q2, &b), MFD_EROUND);
	b = a;
	b.block = 0;
	assert_int_equal(mfd__received_next(&q2, &b), MFD_EOFFSET);
	b = a;
	b.first = 9;
	assert_int_equal(mfd__received_next(&q2, &b), MFD_EOFFSET);
	b.first = 10;
	b.flags = MFD_RECEIVED_LAST;
	assert_int_equal(mfd__received_next(&q2, &b), 0);
	assert_int_equal(mfd__received_next(&q2, &a), MFD_EUNEXPECTED);

	/* Rounds in order; a later round starts its blocks again. */
	struct mfd__received_seq q3 = { 0 };
	struct mfd__received r4 = {
		.base_round = 3, .round = 4, .block = 1, .end = 10
	};
	assert_int_equal(mfd__received_next(&q3, &r4), 0);
	struct mfd__received r = r4;
	r.round = 3;
	r.block = 1;
	r.first = 20;
	assert_int_equal(mfd__received_next(&q3, &r), MFD_EROUND);
	r.round = 5;
	r.block = 0;
	r.first = 0;
	assert_int_equal(mfd__received_next(&q3, &r), 0);

	/* Per page, the round it is held from (+1; NONE: any). */
	uint32_t held[64] = { 0 };
	pos = 0;
	memset(bits, 0, sizeof(bits));
	bits[0] = 0xf0;
	len = mfd__received_encode(bits, 64, 3, 6, 1, true, &pos, buf,
				   sizeof(buf));
	assert_int_equal(mfd__received_decode(buf, len, &lim, &m), 0);
	mfd__received_apply_round(&m, held);
	for (unsigned i = 0; i < 64; i++)
		assert_int_equal(held[i], i >= 4 && i < 8 ? 7 : 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hello_roundtrip),
		cmocka_unit_test(test_received),
		cmocka_unit_test(test_hello_reject),
		cmocka_unit_test(test_hello_reply_roundtrip),
		cmocka_unit_test(test_hello_reply_reject),
		cmocka_unit_test(test_ctl_hdr_roundtrip),
		cmocka_unit_test(test_ctl_hdr_reject),
		cmocka_unit_test(test_round),
		cmocka_unit_test(test_round_answer),
		cmocka_unit_test(test_setup_roundtrip),
		cmocka_unit_test(test_setup_reject_fields),
		cmocka_unit_test(test_setup_lengths),
		cmocka_unit_test(test_end_roundtrip),
		cmocka_unit_test(test_end_reject),
		cmocka_unit_test(test_error_roundtrip),
		cmocka_unit_test(test_error_reject),
		cmocka_unit_test(test_pkt_roundtrip),
		cmocka_unit_test(test_pkt_reject),
		cmocka_unit_test(test_pkt_validate),
		cmocka_unit_test(test_pkt_validate_zstd),
		cmocka_unit_test(test_offsets),
		cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
