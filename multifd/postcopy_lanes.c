/* SPDX-License-Identifier: MIT */
/* The source's urgent lanes (postcopy_lanes.h). */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "multifd/common/clock.h"
#include "multifd/ctl.h"
#include "multifd/internal.h"
#include "multifd/pcwire.h"
#include "multifd/postcopy_lanes.h"

/* Pages sent after those a request asks for (spatial locality): 60 KiB
 * of 4 KiB pages, about 5 us on a 10 Gbit/s link. */
#define LANE_NEIGHBOURS 15

/* How often an idle lane looks whether every page is claimed. */
#define LANE_POLL_MS 10

static int send_hdr(struct mfd__pc_lane *l, const struct mfd__pkt_hdr *h,
		    int iovcnt)
{
	mfd__pkt_encode(h, l->hdr);
	l->iov[0].iov_base = l->hdr;
	l->iov[0].iov_len = MFD_PKT_HDR_SIZE;
	int ret = l->chan->ops->sendv(l->chan, l->iov, iovcnt);
	if (!ret)
		l->seq++;
	return ret;
}

/* The pages at l->offs[from..from+n) of block b, flagged post-copy, one
 * packet. */
static int send_pages(struct mfd__pc_lane *l, uint32_t b, unsigned n,
		      unsigned from)
{
	uint64_t *offs = l->offs + from;
	struct mfd__pc_lanes *ls = l->ls;
	struct mfd__ramblock *rb = &ls->blocks[b];
	uint64_t psize = rb->page_size;
	struct mfd__pkt_hdr h = {
		.magic = MFD_MAGIC_PKT,
		.type = MFD_PKT_PAGES,
		.flags = MFD_PKT_F_POSTCOPY,
		.round = ls->round,
		.block = b,
		.count = n,
		.payload_len = (uint32_t)(n * psize),
		.seq = l->seq,
	};
	/* The guest is stopped here: its pages go out as they are. */
	int iovcnt = 2 + mfd__pages_iov(rb->host, offs, n, psize, l->iov + 2);
	mfd__pkt_offsets_encode(offs, n);
	l->iov[1].iov_base = offs;
	l->iov[1].iov_len = n * sizeof(uint64_t);
	int ret = send_hdr(l, &h, iovcnt);
	if (ret)
		return ret;
	l->packets++;
	l->pages += n;
	uint64_t bytes = MFD_PKT_HDR_SIZE + n * sizeof(uint64_t) + n * psize;
	STAT_ADD(ls->st->wire_bytes, bytes);
	STAT_ADD(ls->st->lane_bytes, bytes);
	STAT_ADD(ls->st->pages, n);
	STAT_ADD(ls->st->urgent_pages, n);
	STAT_ADD(ls->st->packets, 1);
	return 0;
}

/* One PAGE_REQ, checked as the destination checks a PAGES header. */
static int serve_one(struct mfd__pc_lane *l)
{
	struct mfd__pc_lanes *ls = l->ls;
	struct mfd__ctl_hdr h;
	uint8_t *payload;
	int ret = mfd__ctl_recv(l->chan, &h, &payload);
	if (ret)
		return ret;
	struct mfd__page_range r;
	if (h.type == MFD_CTL_ERROR)
		ret = mfd__ctl_peer_error(payload, h.length, "destination");
	else if (h.type != MFD_CTL_PAGE_REQ)
		ret = MFD_EUNEXPECTED;
	else if (h.length != MFD_RANGE_SIZE)
		ret = MFD_ELENGTH;
	else
		ret = mfd__page_req_decode(payload, ls->lim, &r);
	free(payload);
	if (ret) {
		mfd__err("urgent lane %u: bad page request: %s", l->idx,
			 mfd_strerror(ret));
		return ret;
	}
	STAT_ADD(ls->st->urgent_requests, 1);
	/* The pages asked for and a few neighbours: the next request on
	 * this lane waits for them. */
	uint64_t want =
		(r.length >> ls->blocks[r.block].page_shift) + LANE_NEIGHBOURS;
	if (want > ls->lim->packet_pages)
		want = ls->lim->packet_pages;
	struct mfd__pc_answer a;
	unsigned n = mfd__pc_src_claim_request(ls->pc, &r, (unsigned)want,
					       l->offs, &a);
	if (!n)
		return 0;
	unsigned mine = a.asked + a.again; /* the request's pages */
	if (mfd__test_pc_claimed) {
		mfd__test_pc_claimed(r.block, l->offs, a.asked);
		mfd__test_pc_claimed(r.block, l->offs + mine, n - mine);
	}
	if (a.again && mfd__test_pc_again)
		mfd__test_pc_again(r.block, l->offs + a.asked, a.again);
	STAT_ADD(ls->st->urgent_again_pages, a.again);
	/* The pages asked for in packets of their own: a faulting thread
	 * waits for its page, not for the neighbours behind it (15 pages
	 * are 0.5 ms at 1 Gbit/s). */
	if (a.asked && (ret = send_pages(l, r.block, a.asked, 0)))
		return ret;
	if (a.again && (ret = send_pages(l, r.block, a.again, a.asked)))
		return ret;
	return n > mine ? send_pages(l, r.block, n - mine, mine) : 0;
}

static int lane_loop(struct mfd__pc_lane *l)
{
	struct mfd__pc_lanes *ls = l->ls;
	for (;;) {
		/* Requests first; DONE only when none waits. */
		struct pollfd p = { .fd = l->chan->fd, .events = POLLIN };
		int n = poll(&p, 1, LANE_POLL_MS);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (__atomic_load_n(&ls->err, __ATOMIC_ACQUIRE))
			return -ECANCELED;
		if (n > 0) {
			int ret = serve_one(l);
			if (ret)
				return ret;
			continue;
		}
		if (__atomic_load_n(&ls->finish, __ATOMIC_ACQUIRE)) {
			struct mfd__pkt_hdr h = { .magic = MFD_MAGIC_PKT,
						  .type = MFD_PKT_DONE,
						  .round = ls->round,
						  .count = l->packets,
						  .seq = l->seq };
			int ret = send_hdr(l, &h, 1);
			if (!ret)
				STAT_ADD(ls->st->wire_bytes, MFD_PKT_HDR_SIZE);
			return ret;
		}
	}
}

static void *lane_main(void *arg)
{
	struct mfd__pc_lane *l = arg;
	/* Each request waits for this thread's wakeup. */
	int rt = mfd__thread_urgent(l->ls->rt_prio,
				    &l->ls->st->urgent_rt_threads);
	int ret = lane_loop(l);
	mfd__thread_urgent_end(rt);
	if (ret && ret != -ECANCELED) {
		int zero = 0;
		__atomic_compare_exchange_n(&l->ls->err, &zero, ret, false,
					    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
		l->ls->fail(l->ls->ctx, ret);
	}
	STAT_ADD(l->ls->st->cpu_ns, mfd__thread_cpu_ns());
	return NULL;
}

int mfd__pc_lanes_start(struct mfd__pc_lanes *ls)
{
	for (unsigned i = 0; i < ls->n; i++) {
		struct mfd__pc_lane *l = &ls->lane[i];
		l->ls = ls;
		l->idx = i;
		if (pthread_create(&l->thread, NULL, lane_main, l))
			return -EAGAIN;
		l->started = true;
	}
	return 0;
}

static void join_all(struct mfd__pc_lanes *ls)
{
	for (unsigned i = 0; i < ls->n; i++) {
		if (ls->lane[i].started)
			pthread_join(ls->lane[i].thread, NULL);
		ls->lane[i].started = false;
	}
}

int mfd__pc_lanes_finish(struct mfd__pc_lanes *ls)
{
	__atomic_store_n(&ls->finish, true, __ATOMIC_RELEASE);
	join_all(ls);
	return __atomic_load_n(&ls->err, __ATOMIC_ACQUIRE);
}

void mfd__pc_lanes_abort(struct mfd__pc_lanes *ls)
{
	int zero = 0;
	__atomic_compare_exchange_n(&ls->err, &zero, -ECANCELED, false,
				    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	for (unsigned i = 0; i < ls->n; i++)
		if (ls->lane[i].chan)
			ls->lane[i].chan->ops->shutdown(ls->lane[i].chan,
							SHUT_RDWR);
}

void mfd__pc_lanes_close(struct mfd__pc_lanes *ls)
{
	join_all(ls);
	for (unsigned i = 0; i < ls->n; i++) {
		if (ls->lane[i].chan)
			ls->lane[i].chan->ops->close(ls->lane[i].chan);
		ls->lane[i].chan = NULL;
	}
	ls->n = 0;
}
