/* SPDX-License-Identifier: MIT */
/* The RDMA channel protocol on the in-memory fake fabric: ordering,
 * credits, one-sided pages with a validated announcement, key and bounds
 * checks on every write target, injected failures, teardown mid-transfer. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_verbs.h"
#include "multifd/channels/rdma.h"
#include "multifd/internal.h"
#include "testvm.h"

static uint64_t seed;

struct pair {
	struct mfd__rdma_ep a, b;
};

static void pair_init(struct pair *p, int timeout_ms)
{
	struct mfd__vqp *qa, *qb;
	fake_pair(&qa, &qb);
	assert_int_equal(
		mfd__rdma_ep_init(&p->a, &fake_verbs_ops, qa, timeout_ms), 0);
	assert_int_equal(
		mfd__rdma_ep_init(&p->b, &fake_verbs_ops, qb, timeout_ms), 0);
	assert_int_equal(fake_posted_recvs(qa), MFD__RDMA_RECV_SLOTS);
}

static void pair_destroy(struct pair *p)
{
	mfd__rdma_ep_destroy(&p->a);
	mfd__rdma_ep_destroy(&p->b);
}

/* ---- ordering ---- */

#define NMSG 500

static size_t msg_len(uint64_t i)
{
	uint64_t s = seed + i;
	return 1 + tvm_rand(&s) % (MFD__RDMA_SLOT_SIZE - MFD__RDMA_HDR_SIZE);
}

static void *sender(void *arg)
{
	struct mfd__rdma_ep *ep = arg;
	uint8_t *buf = malloc(MFD__RDMA_SLOT_SIZE);
	intptr_t ret = 0;
	for (uint64_t i = 0; i < NMSG && !ret; i++) {
		size_t len = msg_len(i);
		tvm_fill_random(buf, len & ~(size_t)7, seed ^ i);
		memcpy(buf, &i, sizeof(i) < len ? sizeof(i) : len);
		struct iovec iov[2] = { { buf, len / 2 },
					{ buf + len / 2, len - len / 2 } };
		ret = mfd__rdma_send_msg(ep, iov, 2);
	}
	free(buf);
	return (void *)ret;
}

static void test_ordering(void **state)
{
	struct pair p;
	pair_init(&p, 10000);
	pthread_t th;
	pthread_create(&th, NULL, sender, &p.a);
	uint8_t *want = malloc(MFD__RDMA_SLOT_SIZE);
	uint8_t *got = malloc(MFD__RDMA_SLOT_SIZE);
	for (uint64_t i = 0; i < NMSG; i++) {
		size_t len = msg_len(i), n = 0;
		tvm_fill_random(want, len & ~(size_t)7, seed ^ i);
		memcpy(want, &i, sizeof(i) < len ? sizeof(i) : len);
		assert_int_equal(
			mfd__rdma_recv_msg(&p.b, got, MFD__RDMA_SLOT_SIZE, &n),
			0);
		assert_int_equal(n, len);
		assert_memory_equal(got, want, len);
	}
	void *ret;
	pthread_join(th, &ret);
	assert_int_equal((intptr_t)ret, 0);
	/* Every message cost one SEND: credits never ran the receiver dry
	 * (the fake fails a SEND with no receive posted). */
	assert_true(fake_sends(p.a.qp) == NMSG);
	assert_int_equal(p.a.error, 0);
	assert_int_equal(p.b.error, 0);
	free(want);
	free(got);
	pair_destroy(&p);
}

/* ---- credits ---- */

static void test_credits(void **state)
{
	struct pair p;
	pair_init(&p, 100);
	uint8_t byte = 7, out[8];
	struct iovec iov = { &byte, 1 };
	/* One credit is kept for CREDIT messages. */
	unsigned can = MFD__RDMA_RECV_SLOTS - 1;
	for (unsigned i = 0; i < can; i++)
		assert_int_equal(mfd__rdma_send_msg(&p.a, &iov, 1), 0);
	assert_int_equal(p.a.credits, 1);
	/* Exhausted: the sender waits, and times out, but is not broken
	 * and never overran the receiver. */
	assert_int_equal(mfd__rdma_send_msg(&p.a, &iov, 1), -ETIMEDOUT);
	assert_int_equal(p.a.error, 0);
	assert_int_equal(fake_sends(p.a.qp), can);
	assert_int_equal(fake_posted_recvs(p.b.qp), 1);

	/* The receiver consumes: credits flow back (a CREDIT message once
	 * half are owed), and the sender goes on. */
	for (unsigned i = 0; i < can; i++) {
		size_t n;
		assert_int_equal(mfd__rdma_recv_msg(&p.b, out, sizeof(out), &n),
				 0);
		assert_int_equal(n, 1);
		assert_int_equal(out[0], 7);
	}
	assert_int_equal(fake_sends(p.b.qp), 1); /* one CREDIT message */
	/* Credits come back in batches of half the slots: 8 returned, 7
	 * still owed by the receiver. */
	for (unsigned i = 0; i < MFD__RDMA_RECV_SLOTS / 2; i++)
		assert_int_equal(mfd__rdma_send_msg(&p.a, &iov, 1), 0);
	assert_int_equal(mfd__rdma_send_msg(&p.a, &iov, 1), -ETIMEDOUT);
	assert_int_equal(fake_sends(p.a.qp), can + MFD__RDMA_RECV_SLOTS / 2);
	for (unsigned i = 0; i < MFD__RDMA_RECV_SLOTS / 2; i++) {
		size_t n;
		assert_int_equal(mfd__rdma_recv_msg(&p.b, out, sizeof(out), &n),
				 0);
	}
	/* Another batch of 8 came back as soon as 8 were owed. */
	for (unsigned i = 0; i < MFD__RDMA_RECV_SLOTS / 2; i++)
		assert_int_equal(mfd__rdma_send_msg(&p.a, &iov, 1), 0);
	for (unsigned i = 0; i < MFD__RDMA_RECV_SLOTS / 2; i++) {
		size_t n;
		assert_int_equal(mfd__rdma_recv_msg(&p.b, out, sizeof(out), &n),
				 0);
	}
	assert_int_equal(fake_sends(p.a.qp), can + MFD__RDMA_RECV_SLOTS);
	assert_int_equal(p.a.error, 0);
	assert_int_equal(p.b.error, 0);

	/* A message larger than a slot is refused before anything moves. */
	static uint8_t big[MFD__RDMA_SLOT_SIZE];
	struct iovec biov = { big, sizeof(big) };
	assert_int_equal(mfd__rdma_send_msg(&p.a, &biov, 1), MFD_ELENGTH);
	pair_destroy(&p);
}

/* ---- one-sided pages ---- */

#define RAM (4u << 20)
#define PS  4096u

struct ram_pair {
	struct pair p;
	uint8_t *src, *dst;
	uint8_t *dst_other; /* a second destination block */
};

static void ram_init(struct ram_pair *r)
{
	pair_init(&r->p, 5000);
	r->src = tvm_map(RAM);
	r->dst = tvm_map(RAM);
	r->dst_other = tvm_map(RAM);
	tvm_fill_random(r->src, RAM, seed);
	uint64_t t0 = r->p.b.reg_ns;
	assert_int_equal(mfd__rdma_register(&r->p.a, r->src, RAM), 0);
	assert_int_equal(mfd__rdma_register(&r->p.b, r->dst, RAM), 0);
	assert_int_equal(mfd__rdma_register(&r->p.b, r->dst_other, RAM), 1);
	assert_true(r->p.b.reg_ns > t0); /* registration cost is reported */
	assert_int_equal(mfd__rdma_send_regions(&r->p.b), 0);
	assert_int_equal(mfd__rdma_send_regions(&r->p.a), 0);
	assert_int_equal(mfd__rdma_recv_regions(&r->p.a), 0);
	assert_int_equal(mfd__rdma_recv_regions(&r->p.b), 0);
	assert_int_equal(r->p.a.nremote, 2);
	assert_int_equal(r->p.b.nremote, 1);
}

static void ram_destroy(struct ram_pair *r)
{
	pair_destroy(&r->p);
	tvm_unmap(r->src, RAM);
	tvm_unmap(r->dst, RAM);
	tvm_unmap(r->dst_other, RAM);
}

/* Source: WRITE each page, then announce (PAGES header + offsets). */
static int send_pages(struct ram_pair *r, const uint64_t *offs, uint32_t n,
		      uint32_t seq)
{
	uint8_t msg[MFD_PKT_HDR_SIZE + 64 * 8];
	for (uint32_t i = 0; i < n; i++) {
		int ret =
			mfd__rdma_write(&r->p.a, 0, offs[i] < RAM ? offs[i] : 0,
					r->src + (offs[i] % RAM), PS);
		if (ret)
			return ret;
	}
	struct mfd__pkt_hdr h = { .magic = MFD_MAGIC_PKT,
				  .type = MFD_PKT_PAGES,
				  .count = n,
				  .payload_len = n * PS,
				  .seq = seq };
	mfd__pkt_encode(&h, msg);
	uint64_t *o = (uint64_t *)(msg + MFD_PKT_HDR_SIZE);
	memcpy(o, offs, n * 8);
	mfd__pkt_offsets_encode(o, n);
	struct iovec iov = { msg, MFD_PKT_HDR_SIZE + n * 8 };
	return mfd__rdma_send_msg(&r->p.a, &iov, 1);
}

/* Destination: the announcement is validated exactly as a PAGES header
 * on TCP before the pages count as arrived. */
static int accept_pages(struct ram_pair *r, uint64_t *offs, uint32_t *n)
{
	uint8_t msg[MFD_PKT_HDR_SIZE + 1024 * 8];
	size_t len;
	int ret = mfd__rdma_recv_msg(&r->p.b, msg, sizeof(msg), &len);
	if (ret)
		return ret;
	struct mfd__block_desc bd = { .name = "pc.ram",
				      .size = RAM,
				      .page_size = PS };
	struct mfd__wire_limits lim = { .nblocks = 1,
					.packet_pages = 64,
					.blocks = &bd };
	struct mfd__pkt_hdr h;
	if (len < MFD_PKT_HDR_SIZE)
		return MFD_ELENGTH;
	if ((ret = mfd__pkt_decode(msg, &h)) ||
	    (ret = mfd__pkt_validate(&h, &lim)))
		return ret;
	if (h.type != MFD_PKT_PAGES)
		return MFD_ETYPE;
	if (len != MFD_PKT_HDR_SIZE + mfd__pkt_offsets_size(&h))
		return MFD_ELENGTH;
	memcpy(offs, msg + MFD_PKT_HDR_SIZE, mfd__pkt_offsets_size(&h));
	if ((ret = mfd__pkt_offsets_decode(&h, offs, &lim)))
		return ret;
	*n = h.count;
	return 0;
}

static void test_one_sided_pages(void **state)
{
	struct ram_pair r;
	ram_init(&r);
	uint64_t s = seed, offs[64], got[1024];
	unsigned total = 0;
	for (uint32_t pkt = 0; pkt < 40; pkt++) {
		uint32_t n = 1 + (uint32_t)(tvm_rand(&s) % 64);
		uint64_t off = (tvm_rand(&s) % (RAM / PS - 64 * 3)) * PS;
		for (uint32_t i = 0; i < n; i++) {
			offs[i] = off;
			off += PS * (1 + tvm_rand(&s) % 3);
		}
		assert_int_equal(send_pages(&r, offs, n, pkt), 0);
		uint32_t gn = 0;
		assert_int_equal(accept_pages(&r, got, &gn), 0);
		assert_int_equal(gn, n);
		/* The writes landed before the announcement arrived. */
		for (uint32_t i = 0; i < n; i++) {
			assert_int_equal(got[i], offs[i]);
			assert_memory_equal(r.dst + got[i], r.src + got[i], PS);
		}
		total += n;
	}
	assert_int_equal(fake_writes(r.p.a.qp), total);
	assert_int_equal(mfd__rdma_write_flush(&r.p.a), 0);

	/* An announcement that lies about its pages is refused by the
	 * same validation as on TCP. */
	uint64_t bad[2] = { PS, RAM }; /* the second is past the block */
	struct mfd__pkt_hdr h = { .magic = MFD_MAGIC_PKT,
				  .type = MFD_PKT_PAGES,
				  .count = 2,
				  .payload_len = 2 * PS };
	uint8_t msg[MFD_PKT_HDR_SIZE + 16];
	mfd__pkt_encode(&h, msg);
	memcpy(msg + MFD_PKT_HDR_SIZE, bad, 16);
	mfd__pkt_offsets_encode((uint64_t *)(msg + MFD_PKT_HDR_SIZE), 2);
	struct iovec iov = { msg, sizeof(msg) };
	assert_int_equal(mfd__rdma_send_msg(&r.p.a, &iov, 1), 0);
	uint32_t gn;
	assert_int_equal(accept_pages(&r, got, &gn), MFD_EOFFSET);
	ram_destroy(&r);
}

/* ---- keys and bounds on every write target ---- */

static void test_write_checks_protocol(void **state)
{
	struct ram_pair r;
	ram_init(&r);
	unsigned before = fake_writes(r.p.a.qp);
	/* Refused before anything is posted. */
	assert_int_equal(mfd__rdma_write(&r.p.a, 2, 0, r.src, PS), MFD_EBLOCK);
	assert_int_equal(mfd__rdma_write(&r.p.a, 0, RAM - PS + 1, r.src, PS),
			 MFD_EOFFSET);
	assert_int_equal(mfd__rdma_write(&r.p.a, 0, RAM, r.src, 1),
			 MFD_EOFFSET);
	assert_int_equal(mfd__rdma_write(&r.p.a, 0, UINT64_MAX - 10, r.src, PS),
			 MFD_EOFFSET);
	assert_int_equal(mfd__rdma_write(&r.p.a, 0, 0, r.src + RAM - 8, PS),
			 -EFAULT); /* local side outside its region */
	assert_int_equal(fake_writes(r.p.a.qp), before);
	/* The last byte of each region is reachable, and only that far. */
	assert_int_equal(mfd__rdma_write(&r.p.a, 1, RAM - PS, r.src, PS), 0);
	assert_int_equal(mfd__rdma_write_flush(&r.p.a), 0);
	assert_memory_equal(r.dst_other + RAM - PS, r.src, PS);
	ram_destroy(&r);
}

enum bad_target { WRONG_RKEY, PAST_END, BEFORE_START, NO_REMOTE_WRITE };

static void fabric_rejects(enum bad_target what)
{
	struct ram_pair r;
	ram_init(&r);
	struct mfd__rdma_region t = r.p.a.remote[0];
	uint64_t addr = t.addr, len = PS;
	uint32_t rkey = t.rkey;
	switch (what) {
	case WRONG_RKEY:
		rkey = r.p.a.remote[1].rkey ^ 0x40000;
		break;
	case PAST_END:
		addr = t.addr + t.len - PS + 8;
		break;
	case BEFORE_START:
		addr = t.addr - 8;
		break;
	case NO_REMOTE_WRITE:
		/* The destination's receive buffers: registered, local only. */
		addr = (uintptr_t)r.p.b.rbuf;
		rkey = r.p.b.rmr.rkey;
		break;
	}
	uint8_t before[64];
	memcpy(before, r.dst_other, sizeof(before));
	/* Straight to the verbs, past the protocol's own checks. */
	assert_int_equal(r.p.a.ops->post_write(r.p.a.qp, 77, r.src,
					       (uint32_t)len,
					       r.p.a.local[0].lkey, addr, rkey),
			 0);
	struct mfd__vwc wc;
	assert_int_equal(r.p.a.ops->poll(r.p.a.qp, &wc, 1, 1000), 1);
	assert_int_equal(wc.wr_id, 77);
	assert_int_equal(wc.status, -EACCES);
	assert_int_equal(fake_writes(r.p.a.qp), 0);
	assert_memory_equal(r.dst_other, before, sizeof(before));
	/* The queue pair is dead on both sides: the destination learns. */
	uint8_t buf[8];
	size_t n;
	assert_int_equal(mfd__rdma_recv_msg(&r.p.b, buf, sizeof(buf), &n),
			 -ECONNRESET);
	ram_destroy(&r);
}

static void test_fabric_wrong_rkey(void **state)
{
	fabric_rejects(WRONG_RKEY);
}
static void test_fabric_past_end(void **state)
{
	fabric_rejects(PAST_END);
}
static void test_fabric_before_start(void **state)
{
	fabric_rejects(BEFORE_START);
}
static void test_fabric_not_remote_writable(void **state)
{
	fabric_rejects(NO_REMOTE_WRITE);
}

/* ---- failures ---- */

static void test_injected_post_failure(void **state)
{
	struct pair p;
	pair_init(&p, 1000);
	uint8_t x = 1;
	struct iovec iov = { &x, 1 };
	assert_int_equal(mfd__rdma_send_msg(&p.a, &iov, 1), 0);
	fake_fail_post(p.a.qp, 1, -ENOMEM);
	assert_int_equal(mfd__rdma_send_msg(&p.a, &iov, 1), -ENOMEM);
	/* Sticky: the endpoint stays failed. */
	assert_int_equal(mfd__rdma_send_msg(&p.a, &iov, 1), -ENOMEM);
	pair_destroy(&p);
}

static void *stream_sender(void *arg)
{
	struct mfd__rdma_ep *ep = arg;
	size_t len = 64u << 20;
	uint8_t *buf = calloc(1, len);
	struct iovec iov = { buf, len };
	intptr_t ret = mfd__rdma_sendv(ep, &iov, 1);
	free(buf);
	return (void *)ret;
}

static void test_teardown_mid_transfer(void **state)
{
	struct pair p;
	pair_init(&p, -1); /* no timeout: only the teardown can end it */
	pthread_t th;
	pthread_create(&th, NULL, stream_sender, &p.a);
	static uint8_t buf[1 << 20];
	struct iovec iov = { buf, sizeof(buf) };
	assert_int_equal(mfd__rdma_recvv(&p.b, &iov, 1), 0);
	/* The destination gives up half way (as shutdown does). */
	uint64_t t0 = mfd__now_ns();
	p.b.ops->disconnect(p.b.qp);
	void *ret;
	pthread_join(th, &ret);
	assert_int_equal((intptr_t)ret, -ECONNRESET);
	assert_true(mfd__now_ns() - t0 < 5000000000ULL);
	int r = mfd__rdma_recvv(&p.b, &iov, 1);
	assert_true(r == -ECONNRESET || r == MFD_ETRUNCATED);
	pair_destroy(&p);
}

struct stream_arg {
	struct mfd__rdma_ep *ep;
	struct iovec iov[3];
};

static void *stream_iov_sender(void *arg)
{
	struct stream_arg *a = arg;
	return (void *)(intptr_t)mfd__rdma_sendv(a->ep, a->iov, 3);
}

static void test_stream_round_trip(void **state)
{
	/* The stream view the channel ops use: any split, same bytes. */
	struct pair p;
	pair_init(&p, 5000);
	size_t len = 3u << 20;
	uint8_t *src = tvm_map(len), *dst = tvm_map(len);
	tvm_fill_random(src, len, seed);
	struct stream_arg a = { &p.a,
				{ { src, 100 },
				  { src + 100, len - 200 },
				  { src + len - 100, 100 } } };
	pthread_t th;
	pthread_create(&th, NULL, stream_iov_sender, &a);
	struct iovec out[2] = { { dst, 7 }, { dst + 7, len - 7 } };
	assert_int_equal(mfd__rdma_recvv(&p.b, out, 2), 0);
	void *ret;
	pthread_join(th, &ret);
	assert_int_equal((intptr_t)ret, 0);
	assert_memory_equal(dst, src, len);
	tvm_unmap(src, len);
	tvm_unmap(dst, len);
	pair_destroy(&p);
}

int main(void)
{
	seed = tvm_seed("test_rdma");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ordering),
		cmocka_unit_test(test_credits),
		cmocka_unit_test(test_one_sided_pages),
		cmocka_unit_test(test_write_checks_protocol),
		cmocka_unit_test(test_fabric_wrong_rkey),
		cmocka_unit_test(test_fabric_past_end),
		cmocka_unit_test(test_fabric_before_start),
		cmocka_unit_test(test_fabric_not_remote_writable),
		cmocka_unit_test(test_injected_post_failure),
		cmocka_unit_test(test_teardown_mid_transfer),
		cmocka_unit_test(test_stream_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
