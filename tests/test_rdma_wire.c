/* SPDX-License-Identifier: MIT */
/* RDMA channel messages (multifd/channels/rdma_wire.h): the byte layout of
 * docs/protocol.md, round trips, and every refusal with its exact code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "multifd/multifd.h"
#include "multifd/channels/rdma_wire.h"

#define HDR MFD__RDMA_HDR_SIZE

/* DATA, 2 credits, 16 bytes of payload, as docs/protocol.md lays it out. */
static const uint8_t data_hdr[HDR] = { 'M', 'F', 'D', 'R', 3, 0, 2, 0,
				       16,  0,	 0,   0,   0, 0, 0, 0 };

static void test_hdr_layout(void **state)
{
	struct mfd__rdma_hdr h;
	assert_int_equal(mfd__rdma_hdr_decode(data_hdr, HDR + 16, 16, &h), 0);
	assert_int_equal(h.type, MFD__RDMA_DATA);
	assert_int_equal(h.credits, 2);
	assert_int_equal(h.len, 16);
	uint8_t out[HDR];
	mfd__rdma_hdr_encode(&h, out);
	assert_memory_equal(out, data_hdr, HDR);
}

static void test_hdr_roundtrip(void **state)
{
	static const struct mfd__rdma_hdr cases[] = {
		{ .type = MFD__RDMA_CREDIT, .credits = 8 },
		{ .type = MFD__RDMA_FENCE, .credits = 0 },
		{ .type = MFD__RDMA_REGIONS, .credits = 1, .len = 48 },
		{ .type = MFD__RDMA_DATA,
		  .credits = 16,
		  .len = MFD__RDMA_SLOT_SIZE - HDR },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t buf[HDR];
		struct mfd__rdma_hdr h;
		mfd__rdma_hdr_encode(&cases[i], buf);
		assert_int_equal(
			mfd__rdma_hdr_decode(buf, HDR + cases[i].len, 16, &h),
			0);
		assert_int_equal(h.type, cases[i].type);
		assert_int_equal(h.credits, cases[i].credits);
		assert_int_equal(h.len, cases[i].len);
	}
}

/* The error for data_hdr with byte off set to v, received as len bytes
 * with max_credits; *h must stay untouched on a refusal. */
static int hdr_with(size_t off, uint8_t v, size_t len, unsigned max_credits)
{
	uint8_t buf[HDR];
	memcpy(buf, data_hdr, HDR);
	if (off < HDR)
		buf[off] = v;
	struct mfd__rdma_hdr h = { .type = 0xabcd, .credits = 7, .len = 9 };
	int ret = mfd__rdma_hdr_decode(buf, len, max_credits, &h);
	if (ret) {
		assert_int_equal(h.type, 0xabcd);
		assert_int_equal(h.credits, 7);
		assert_int_equal(h.len, 9);
	}
	return ret;
}

static void test_hdr_refusals(void **state)
{
	const size_t ok = HDR + 16;
	assert_int_equal(hdr_with(HDR, 0, ok, 16), 0);
	/* Shorter than a header, longer than a receive buffer. */
	assert_int_equal(hdr_with(HDR, 0, HDR - 1, 16), MFD_ELENGTH);
	assert_int_equal(hdr_with(HDR, 0, 0, 16), MFD_ELENGTH);
	assert_int_equal(hdr_with(HDR, 0, MFD__RDMA_SLOT_SIZE + 1, 16),
			 MFD_ELENGTH);
	/* Magic, checked before the length. */
	assert_int_equal(hdr_with(3, 'S', ok, 16), MFD_EBADMAGIC);
	assert_int_equal(hdr_with(0, 0, ok + 1, 16), MFD_EBADMAGIC);
	/* Length field against what arrived; reserved word. */
	assert_int_equal(hdr_with(HDR, 0, ok - 1, 16), MFD_ELENGTH);
	assert_int_equal(hdr_with(8, 17, ok, 16), MFD_ELENGTH);
	assert_int_equal(hdr_with(11, 1, ok, 16), MFD_ELENGTH);
	assert_int_equal(hdr_with(15, 1, ok, 16), MFD_ELENGTH);
	assert_int_equal(hdr_with(12, 1, ok, 16), MFD_ELENGTH);
	/* Credits: up to what the receiver gave out. */
	assert_int_equal(hdr_with(HDR, 0, ok, 2), 0);
	assert_int_equal(hdr_with(HDR, 0, ok, 1), MFD_ECOUNT);
	assert_int_equal(hdr_with(7, 1, ok, 16), MFD_ECOUNT); /* 258 */
	/* Types: 0, 5 and 0xff03 are unknown; credits come first. */
	assert_int_equal(hdr_with(4, 0, ok, 16), MFD_ETYPE);
	assert_int_equal(hdr_with(4, 5, ok, 16), MFD_ETYPE);
	assert_int_equal(hdr_with(5, 0xff, ok, 16), MFD_ETYPE);
	assert_int_equal(hdr_with(4, 5, ok, 1), MFD_ECOUNT);
	/* CREDIT and FENCE carry no payload. */
	assert_int_equal(hdr_with(4, MFD__RDMA_CREDIT, ok, 16), MFD_ELENGTH);
	assert_int_equal(hdr_with(4, MFD__RDMA_FENCE, ok, 16), MFD_ELENGTH);
	assert_int_equal(hdr_with(4, MFD__RDMA_REGIONS, ok, 16), 0);
}

static const struct mfd__rdma_region three[3] = {
	{ .addr = 0x7f0000001000ULL, .len = 1ULL << 30, .rkey = 7 },
	{ .addr = 0, .len = 0, .rkey = 0 },
	{ .addr = UINT64_MAX - 4095, .len = 4095, .rkey = 0xfffffff0u },
};

static void test_regions_roundtrip(void **state)
{
	uint8_t buf[3 * MFD__RDMA_REGION_SIZE];
	mfd__rdma_regions_encode(three, 3, buf);
	/* Entry 0: address, length, rkey, reserved, little-endian. */
	static const uint8_t e0[MFD__RDMA_REGION_SIZE] = {
		0x00, 0x10, 0x00, 0x00, 0x00, 0x7f, 0, 0, /* address */
		0,    0,    0,	  0x40, 0,    0,    0, 0, /* 1 GiB */
		7,    0,    0,	  0,	0,    0,    0, 0, /* rkey, reserved */
	};
	assert_memory_equal(buf, e0, sizeof(e0));
	struct mfd__rdma_region out[MFD__RDMA_MAX_REGIONS];
	unsigned n = 99;
	assert_int_equal(mfd__rdma_regions_decode(buf, sizeof(buf), out,
						  MFD__RDMA_MAX_REGIONS, &n),
			 0);
	assert_int_equal(n, 3);
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(out[i].addr, three[i].addr);
		assert_int_equal(out[i].len, three[i].len);
		assert_int_equal(out[i].rkey, three[i].rkey);
	}
	/* An empty table is a table. */
	assert_int_equal(mfd__rdma_regions_decode(buf, 0, out, 4, &n), 0);
	assert_int_equal(n, 0);
}

static void test_regions_refusals(void **state)
{
	uint8_t buf[3 * MFD__RDMA_REGION_SIZE];
	struct mfd__rdma_region out[3];
	unsigned n = 42;
	mfd__rdma_regions_encode(three, 3, buf);
	/* Not a whole number of entries; more entries than room. */
	assert_int_equal(
		mfd__rdma_regions_decode(buf, sizeof(buf) - 1, out, 3, &n),
		MFD_ELENGTH);
	assert_int_equal(mfd__rdma_regions_decode(buf, 1, out, 3, &n),
			 MFD_ELENGTH);
	assert_int_equal(mfd__rdma_regions_decode(buf, sizeof(buf), out, 2, &n),
			 MFD_ELENGTH);
	/* Reserved word of the last entry. */
	buf[2 * MFD__RDMA_REGION_SIZE + 23] = 1;
	assert_int_equal(mfd__rdma_regions_decode(buf, sizeof(buf), out, 3, &n),
			 MFD_EFLAGS);
	/* A range that wraps around: the last entry one byte longer. */
	struct mfd__rdma_region wrap = three[2];
	wrap.len = 4096;
	mfd__rdma_regions_encode(&wrap, 1, buf);
	assert_int_equal(mfd__rdma_regions_decode(buf, MFD__RDMA_REGION_SIZE,
						  out, 3, &n),
			 MFD_EFLAGS);
	assert_int_equal(n, 42); /* never written on a refusal */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_layout),
		cmocka_unit_test(test_hdr_roundtrip),
		cmocka_unit_test(test_hdr_refusals),
		cmocka_unit_test(test_regions_roundtrip),
		cmocka_unit_test(test_regions_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
