/* SPDX-License-Identifier: MIT */
/*
 * Post-copy wire format (protocol section 10): the ranges of DISCARD and
 * PAGE_REQ, SWITCH, the URGENT hello, SETUP's urgent lanes, the post-copy
 * PAGES flag and the per-connection grammar after the switch. One test per
 * rule, each with its exact code; variable-length payloads are decoded from
 * heap buffers of exactly their length (ASan sees a read past them).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <cmocka.h>

#include "multifd/multifd.h"
#include "multifd/wire.h"
#include "multifd/pcwire.h"

/* Block 0: 1 MiB of 4 KiB pages; block 1: 8 MiB of 2 MiB pages. */
static const struct mfd__block_desc blocks[2] = {
	{ .name = "pc.ram", .size = 1 << 20, .page_size = 4096 },
	{ .name = "huge", .size = 8 << 20, .page_size = 2 << 20 },
};
static const struct mfd__wire_limits lim = {
	.nblocks = 2,
	.packet_pages = 4,
	.blocks = blocks,
	.features = MFD_FEAT_POSTCOPY,
};

static int range_rt(uint32_t block, uint64_t off, uint64_t len,
		    struct mfd__page_range *out)
{
	struct mfd__page_range r = { block, off, len };
	uint8_t buf[MFD_RANGE_SIZE];

	mfd__range_encode(&r, buf);
	return mfd__range_decode(buf, &lim, out);
}

static void test_range(void **state)
{
	struct mfd__page_range d;
	uint8_t buf[MFD_RANGE_SIZE];
	(void)state;

	assert_int_equal(range_rt(0, 8192, 4096, &d), 0);
	assert_int_equal(d.block, 0);
	assert_int_equal(d.offset, 8192);
	assert_int_equal(d.length, 4096);
	/* The whole block, and its last page. */
	assert_int_equal(range_rt(0, 0, 1 << 20, &d), 0);
	assert_int_equal(range_rt(0, (1 << 20) - 4096, 4096, &d), 0);
	assert_int_equal(range_rt(1, 6 << 20, 2 << 20, &d), 0);

	assert_int_equal(range_rt(2, 0, 4096, &d), MFD_EBLOCK);
	assert_int_equal(range_rt(UINT32_MAX, 0, 4096, &d), MFD_EBLOCK);
	/* Offsets: unaligned (to the block's own page size), at the end. */
	assert_int_equal(range_rt(0, 100, 4096, &d), MFD_EOFFSET);
	assert_int_equal(range_rt(1, 4096, 2 << 20, &d), MFD_EOFFSET);
	assert_int_equal(range_rt(0, 1 << 20, 4096, &d), MFD_EOFFSET);
	assert_int_equal(range_rt(0, UINT64_MAX & ~4095ULL, 4096, &d),
			 MFD_EOFFSET);
	/* Lengths: zero, unaligned, past the end, wrapping past 2^64. */
	assert_int_equal(range_rt(0, 0, 0, &d), MFD_ELENGTH);
	assert_int_equal(range_rt(0, 0, 4095, &d), MFD_ELENGTH);
	assert_int_equal(range_rt(1, 0, 4096, &d), MFD_ELENGTH);
	assert_int_equal(range_rt(0, 4096, 1 << 20, &d), MFD_ELENGTH);
	assert_int_equal(range_rt(0, 4096, UINT64_MAX & ~4095ULL, &d),
			 MFD_ELENGTH);

	/* Reserved word. */
	struct mfd__page_range r = { 0, 0, 4096 };
	mfd__range_encode(&r, buf);
	mfd__put_le32(buf + 4, 1);
	assert_int_equal(mfd__range_decode(buf, &lim, &d), MFD_EFLAGS);
}

static void test_page_req(void **state)
{
	struct mfd__page_range r = { 0, 4096, 4 * 4096 }, d;
	uint8_t buf[MFD_RANGE_SIZE];
	(void)state;

	mfd__page_req_encode(&r, buf);
	assert_int_equal(mfd__page_req_decode(buf, &lim, &d), 0);
	assert_int_equal(d.block, r.block);
	assert_int_equal(d.offset, r.offset);
	assert_int_equal(d.length, r.length);
	/* At most packet_pages pages: one PAGES packet answers it. */
	r.length = 5 * 4096;
	mfd__page_req_encode(&r, buf);
	assert_int_equal(mfd__page_req_decode(buf, &lim, &d), MFD_ELENGTH);
	r = (struct mfd__page_range){ 1, 0, 4 * (2 << 20) };
	mfd__page_req_encode(&r, buf);
	assert_int_equal(mfd__page_req_decode(buf, &lim, &d), 0);
	/* The range checks come first. */
	r = (struct mfd__page_range){ 3, 0, 4096 };
	mfd__page_req_encode(&r, buf);
	assert_int_equal(mfd__page_req_decode(buf, &lim, &d), MFD_EBLOCK);
	r = (struct mfd__page_range){ 0, 1 << 20, 4096 };
	mfd__page_req_encode(&r, buf);
	assert_int_equal(mfd__page_req_decode(buf, &lim, &d), MFD_EOFFSET);
}

static void test_switch(void **state)
{
	struct mfd__switch sw = { .round = 7, .pages = 1ULL << 40 }, d;
	uint8_t buf[MFD_SWITCH_SIZE];
	(void)state;

	mfd__switch_encode(&sw, buf);
	assert_int_equal(mfd__switch_decode(buf, &d), 0);
	assert_int_equal(d.round, 7);
	assert_int_equal(d.pages, 1ULL << 40);
	sw.round = 0; /* round 0 is always pre-copy */
	mfd__switch_encode(&sw, buf);
	assert_int_equal(mfd__switch_decode(buf, &d), MFD_EROUND);
	sw.round = 1;
	mfd__switch_encode(&sw, buf);
	mfd__put_le32(buf + 4, 0x80000000U);
	assert_int_equal(mfd__switch_decode(buf, &d), MFD_EFLAGS);
}

/* Encodes n ranges into an exact heap copy; returns it, length in *len. */
static uint8_t *discard_msg(const struct mfd__page_range *r, uint32_t n,
			    size_t *len)
{
	size_t need = mfd__discard_size(n);
	uint8_t *p = malloc(need);

	assert_non_null(p);
	assert_int_equal(mfd__discard_encode(r, n, p, need), (int)need);
	*len = need;
	return p;
}

static int discard_rt(const struct mfd__page_range *r, uint32_t n)
{
	size_t len;
	uint32_t count = 99;
	uint8_t *p = discard_msg(r, n, &len);
	int ret = mfd__discard_check(p, len, &lim, &count);

	if (ret == 0) {
		assert_int_equal(count, n);
		for (uint32_t i = 0; i < n; i++) {
			struct mfd__page_range g;
			mfd__discard_get(p, i, &g);
			assert_int_equal(g.block, r[i].block);
			assert_int_equal(g.offset, r[i].offset);
			assert_int_equal(g.length, r[i].length);
		}
	} else {
		assert_int_equal(count, 0);
	}
	free(p);
	return ret;
}

static void test_discard(void **state)
{
	(void)state;
	const struct mfd__page_range ok[] = {
		{ 0, 0, 4096 },	    { 0, 4096, 8192 }, /* adjacent is not
							  overlapping */
		{ 0, 65536, 4096 }, { 1, 0, 2 << 20 }, { 1, 4 << 20, 4 << 20 },
	};
	assert_int_equal(discard_rt(ok, 5), 0);
	assert_int_equal(discard_rt(ok, 1), 0);

	/* Overlap, same start, decreasing offset, decreasing block. */
	struct mfd__page_range bad[] = { { 0, 0, 8192 }, { 0, 4096, 4096 } };
	assert_int_equal(discard_rt(bad, 2), MFD_EOFFSET);
	bad[1] = (struct mfd__page_range){ 0, 0, 4096 };
	assert_int_equal(discard_rt(bad, 2), MFD_EOFFSET);
	bad[0] = (struct mfd__page_range){ 0, 8192, 4096 };
	assert_int_equal(discard_rt(bad, 2), MFD_EOFFSET);
	bad[0] = (struct mfd__page_range){ 1, 0, 2 << 20 };
	bad[1] = (struct mfd__page_range){ 0, 0, 4096 };
	assert_int_equal(discard_rt(bad, 2), MFD_EOFFSET);
	/* A bad range anywhere in the list fails the whole list. */
	bad[0] = (struct mfd__page_range){ 0, 0, 4096 };
	bad[1] = (struct mfd__page_range){ 1, 0, 4096 };
	assert_int_equal(discard_rt(bad, 2), MFD_ELENGTH);
	bad[1] = (struct mfd__page_range){ 5, 0, 4096 };
	assert_int_equal(discard_rt(bad, 2), MFD_EBLOCK);

	/* Count and length must agree; count 0 and too many refused. */
	size_t len;
	uint32_t count;
	uint8_t *p = discard_msg(ok, 2, &len);
	assert_int_equal(mfd__discard_check(p, len - 1, &lim, &count),
			 MFD_ELENGTH);
	for (size_t cut = 0; cut < len; cut++) {
		uint8_t *q = malloc(cut ? cut : 1);
		memcpy(q, p, cut);
		assert_int_equal(mfd__discard_check(q, cut, &lim, &count),
				 MFD_ELENGTH);
		free(q);
	}
	mfd__put_le32(p, 3);
	assert_int_equal(mfd__discard_check(p, len, &lim, &count), MFD_ELENGTH);
	mfd__put_le32(p, 0);
	assert_int_equal(mfd__discard_check(p, MFD_DISCARD_FIXED, &lim, &count),
			 MFD_ELENGTH);
	mfd__put_le32(p, MFD_DISCARD_MAX_RANGES + 1);
	assert_int_equal(mfd__discard_check(p, len, &lim, &count), MFD_ELENGTH);
	mfd__put_le32(p, 2);
	mfd__put_le32(p + 4, 1);
	assert_int_equal(mfd__discard_check(p, len, &lim, &count), MFD_EFLAGS);
	free(p);

	/* The encoder's own limits. */
	uint8_t small[MFD_DISCARD_FIXED + MFD_RANGE_SIZE];
	assert_int_equal(mfd__discard_encode(ok, 0, small, sizeof(small)),
			 -EINVAL);
	assert_int_equal(mfd__discard_encode(ok, 2, small, sizeof(small)),
			 -ENOSPC);
	assert_int_equal(mfd__discard_encode(ok, 1, small, sizeof(small)),
			 (int)sizeof(small));
	/* The largest list fits a control payload. */
	assert_true(mfd__discard_size(MFD_DISCARD_MAX_RANGES) <=
		    MFD_MAX_CTL_PAYLOAD);
	assert_true(mfd__discard_size(MFD_DISCARD_MAX_RANGES + 1) >
		    MFD_MAX_CTL_PAYLOAD);
}

static void test_ctl_types(void **state)
{
	struct mfd__ctl_hdr h = { .magic = MFD_MAGIC_CTL }, d;
	uint8_t buf[MFD_CTL_HDR_SIZE];
	(void)state;

	struct {
		uint16_t type;
		uint32_t length;
		int want;
	} cases[] = {
		{ MFD_CTL_SWITCH, MFD_SWITCH_SIZE, 0 },
		{ MFD_CTL_SWITCH, MFD_SWITCH_SIZE + 1, MFD_ELENGTH },
		{ MFD_CTL_SWITCH, 0, MFD_ELENGTH },
		{ MFD_CTL_PAGE_REQ, MFD_RANGE_SIZE, 0 },
		{ MFD_CTL_PAGE_REQ, MFD_RANGE_SIZE - 1, MFD_ELENGTH },
		{ MFD_CTL_DISCARD, MFD_MAX_CTL_PAYLOAD, 0 },
		{ MFD_CTL_DISCARD, MFD_MAX_CTL_PAYLOAD + 1, MFD_ELENGTH },
		{ 17, 0, MFD_ETYPE }, /* the first unknown type */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		h.type = cases[i].type;
		h.length = cases[i].length;
		mfd__ctl_hdr_encode(&h, buf);
		assert_int_equal(mfd__ctl_hdr_decode(buf, &d), cases[i].want);
	}
}

static struct mfd__hello urgent_hello(void)
{
	return (struct mfd__hello){ .magic = MFD_MAGIC_HELLO,
				    .version = MFD_PROTO_VERSION,
				    .role = MFD_ROLE_URGENT,
				    .channel = MFD_MAX_URGENT_LANES - 1,
				    .nchannels = 2,
				    .features = MFD_FEAT_POSTCOPY };
}

static int hello_rt(const struct mfd__hello *h)
{
	uint8_t buf[MFD_HELLO_SIZE];
	struct mfd__hello d;

	mfd__hello_encode(h, buf);
	return mfd__hello_decode(buf, &d);
}

static void test_hello(void **state)
{
	(void)state;
	struct mfd__hello h = urgent_hello();

	/* The lane index is not bounded by nchannels, only by the lanes. */
	assert_int_equal(hello_rt(&h), 0);
	h.channel = MFD_MAX_URGENT_LANES;
	assert_int_equal(hello_rt(&h), MFD_EROLE);
	h = urgent_hello();
	h.features = 0;
	assert_int_equal(hello_rt(&h), MFD_EROLE);
	h.role = 4;
	h.features = MFD_FEAT_POSTCOPY;
	assert_int_equal(hello_rt(&h), MFD_EROLE);
	/* Post-copy excludes verification, on every role. */
	h = urgent_hello();
	h.features |= MFD_FEAT_VERIFY;
	assert_int_equal(hello_rt(&h), MFD_EFEATURE);
	h.role = MFD_ROLE_MAIN;
	h.channel = 0;
	assert_int_equal(hello_rt(&h), MFD_EFEATURE);
	h.features = MFD_FEAT_POSTCOPY | MFD_FEAT_ZSTD;
	assert_int_equal(hello_rt(&h), 0);
	/* The engine offers post-copy (protocol 10). */
	assert_true(MFD_FEATURES_KNOWN & MFD_FEAT_POSTCOPY);
	assert_true(MFD_FEATURES_OFFERED & MFD_FEAT_POSTCOPY);
}

static int setup_rt(uint64_t features, uint32_t lanes, struct mfd__setup *d)
{
	static struct mfd__block_desc got[MFD_MAX_BLOCKS];
	struct mfd__block_desc b[1] = { blocks[0] };
	struct mfd__setup s = { .nblocks = 1,
				.packet_pages = 4,
				.nchannels = 2,
				.postcopy_lanes = lanes,
				.features = features,
				.blocks = b };
	size_t n = mfd__setup_size(&s);
	uint8_t *p = malloc(n);

	assert_non_null(p);
	assert_int_equal(mfd__setup_encode(&s, p, n), (int)n);
	int ret = mfd__setup_decode(p, n, d, got);
	free(p);
	return ret;
}

static void test_setup_lanes(void **state)
{
	struct mfd__setup d;
	(void)state;

	for (uint32_t k = 1; k <= MFD_MAX_URGENT_LANES; k++) {
		assert_int_equal(setup_rt(MFD_FEAT_POSTCOPY, k, &d), 0);
		assert_int_equal(d.postcopy_lanes, k);
	}
	assert_int_equal(setup_rt(MFD_FEAT_POSTCOPY, 0, &d), MFD_ESETUP);
	assert_int_equal(
		setup_rt(MFD_FEAT_POSTCOPY, MFD_MAX_URGENT_LANES + 1, &d),
		MFD_ESETUP);
	assert_int_equal(setup_rt(0, 1, &d), MFD_ESETUP);
	assert_int_equal(setup_rt(0, 0, &d), 0);
	assert_int_equal(d.postcopy_lanes, 0);
}

static struct mfd__pkt_hdr pages(uint32_t seq, uint32_t round, uint16_t flags)
{
	return (struct mfd__pkt_hdr){ .magic = MFD_MAGIC_PKT,
				      .type = MFD_PKT_PAGES,
				      .flags = flags,
				      .round = round,
				      .count = 1,
				      .payload_len = 4096,
				      .seq = seq };
}

static struct mfd__pkt_hdr ctl_pkt(uint16_t type, uint32_t seq, uint32_t round,
				   uint32_t count)
{
	return (struct mfd__pkt_hdr){ .magic = MFD_MAGIC_PKT,
				      .type = type,
				      .round = round,
				      .count = count,
				      .seq = seq };
}

static void test_pkt_flag(void **state)
{
	struct mfd__pkt_hdr h = pages(0, 1, MFD_PKT_F_POSTCOPY), d;
	uint8_t buf[MFD_PKT_HDR_SIZE];
	struct mfd__wire_limits nopc = lim;
	(void)state;

	mfd__pkt_encode(&h, buf);
	assert_int_equal(mfd__pkt_decode(buf, &d), 0);
	assert_int_equal(d.flags, MFD_PKT_F_POSTCOPY);
	assert_int_equal(mfd__pkt_validate(&d, &lim), 0);
	nopc.features = 0;
	assert_int_equal(mfd__pkt_validate(&d, &nopc), MFD_EFLAGS);
	/* Only on PAGES; the next bit is unknown. */
	h = ctl_pkt(MFD_PKT_SYNC, 0, 0, 0);
	h.flags = MFD_PKT_F_POSTCOPY;
	mfd__pkt_encode(&h, buf);
	assert_int_equal(mfd__pkt_decode(buf, &d), MFD_EFLAGS);
	h = pages(0, 1, 0x0004);
	mfd__pkt_encode(&h, buf);
	assert_int_equal(mfd__pkt_decode(buf, &d), MFD_EFLAGS);
}

/* Steps h and checks the code; on refusal the state is unchanged. */
static void step(struct mfd_data_grammar *g, struct mfd__pkt_hdr h, int want)
{
	struct mfd_data_grammar before = *g;

	assert_int_equal(mfd__grammar_step(g, &h), want);
	if (want)
		assert_memory_equal(&before, g, sizeof(before));
}

static void test_grammar_bulk(void **state)
{
	struct mfd_data_grammar g;
	const uint16_t PC = MFD_PKT_F_POSTCOPY;
	(void)state;

	mfd__grammar_init(&g);
	assert_int_equal(g.postcopy_round, MFD_ROUND_UNKNOWN);
	step(&g, pages(0, 0, 0), 0);
	step(&g, ctl_pkt(MFD_PKT_SYNC, 1, 0, 1), 0);
	/* Round 1 is the post-copy round; its pages come before SWITCH is
	 * known: the worker must wait for it. */
	step(&g, pages(2, 1, PC), MFD_EUNEXPECTED);
	g.postcopy_round = 1;
	step(&g, pages(2, 1, 0), MFD_EFLAGS);
	step(&g, pages(2, 1, PC), 0);
	step(&g, ctl_pkt(MFD_PKT_DEVICE, 3, 0, 0), MFD_EUNEXPECTED);
	step(&g, pages(3, 1, PC | MFD_PKT_F_ZSTD), 0);
	step(&g, ctl_pkt(MFD_PKT_SYNC, 4, 1, 2), 0);
	/* No round after the post-copy one. */
	step(&g, pages(5, 2, PC), MFD_EROUND);
	step(&g, pages(5, 2, 0), MFD_EFLAGS);
	step(&g, ctl_pkt(MFD_PKT_SYNC, 5, 2, 0), MFD_EROUND);
	step(&g, ctl_pkt(MFD_PKT_DONE, 5, 0, 0), 0);
	assert_true(g.done);

	/* A flagged page in a pre-copy round. */
	mfd__grammar_init(&g);
	g.postcopy_round = 2;
	step(&g, pages(0, 0, PC), MFD_EROUND);
	step(&g, pages(0, 0, 0), 0);
	step(&g, ctl_pkt(MFD_PKT_DEVICE, 1, 0, 0), 0);
	step(&g, ctl_pkt(MFD_PKT_SYNC, 2, 0, 1), 0);
	step(&g, ctl_pkt(MFD_PKT_SYNC, 3, 1, 0), 0);
	/* END announcing a later final round does not lift the limit. */
	g.final_round = 5;
	step(&g, ctl_pkt(MFD_PKT_SYNC, 4, 2, 0), 0);
	step(&g, ctl_pkt(MFD_PKT_SYNC, 5, 3, 0), MFD_EROUND);
}

static void test_grammar_urgent(void **state)
{
	struct mfd_data_grammar g;
	const uint16_t PC = MFD_PKT_F_POSTCOPY;
	(void)state;

	mfd__grammar_init_urgent(&g);
	assert_true(g.urgent);
	step(&g, pages(0, 3, PC), MFD_EUNEXPECTED);
	g.postcopy_round = 3;
	step(&g, pages(0, 3, 0), MFD_EFLAGS);
	step(&g, pages(0, 2, PC), MFD_EROUND);
	step(&g, pages(1, 3, PC), MFD_EROUND); /* seq */
	step(&g, pages(0, 3, PC), 0);
	step(&g, pages(1, 3, PC), 0);
	step(&g, ctl_pkt(MFD_PKT_SYNC, 2, 3, 2), MFD_EUNEXPECTED);
	step(&g, ctl_pkt(MFD_PKT_DEVICE, 2, 0, 0), MFD_EUNEXPECTED);
	step(&g, ctl_pkt(9, 2, 0, 0), MFD_ETYPE);
	step(&g, ctl_pkt(MFD_PKT_DONE, 2, 0, 1), MFD_ECOUNT);
	step(&g, ctl_pkt(MFD_PKT_DONE, 2, 0, 3), MFD_ECOUNT);
	step(&g, ctl_pkt(MFD_PKT_DONE, 2, 0, 2), 0);
	step(&g, pages(3, 3, PC), MFD_EUNEXPECTED);

	/* A lane that never carried a page ends at once. */
	mfd__grammar_init_urgent(&g);
	step(&g, ctl_pkt(MFD_PKT_DONE, 0, 0, 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_range),
		cmocka_unit_test(test_page_req),
		cmocka_unit_test(test_switch),
		cmocka_unit_test(test_discard),
		cmocka_unit_test(test_ctl_types),
		cmocka_unit_test(test_hello),
		cmocka_unit_test(test_setup_lanes),
		cmocka_unit_test(test_pkt_flag),
		cmocka_unit_test(test_grammar_bulk),
		cmocka_unit_test(test_grammar_urgent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
