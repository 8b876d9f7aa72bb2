/* SPDX-License-Identifier: MIT */
/*
 * RDMA channels: the protocol of rdma.h above the verbs of verbs.h, and the
 * "rdma:" transport that makes channels of it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "multifd/multifd.h"
#include "multifd/channels/channel.h"
#include "multifd/channels/rdma.h"
#include "multifd/common/clock.h"

#define SLOTS	    MFD__RDMA_RECV_SLOTS
#define SLOT	    MFD__RDMA_SLOT_SIZE
#define MAX_PAYLOAD (SLOT - MFD__RDMA_HDR_SIZE)

/* wr_id: kind in the high half, slot in the low half. */
enum { WR_SEND = 1, WR_RECV = 2, WR_WRITE = 3 };
#define WR(kind, slot) ((uint64_t)(kind) << 32 | (uint32_t)(slot))

static int fail(struct mfd__rdma_ep *ep, int err)
{
	if (!ep->error)
		ep->error = err;
	return ep->error;
}

static int post_recv_slot(struct mfd__rdma_ep *ep, unsigned slot)
{
	int ret = ep->ops->post_recv(ep->qp, WR(WR_RECV, slot),
				     ep->rbuf + (size_t)slot * SLOT, SLOT,
				     ep->rmr.lkey);
	return ret ? fail(ep, ret) : 0;
}

int mfd__rdma_ep_init(struct mfd__rdma_ep *ep, const struct mfd__verbs_ops *ops,
		      struct mfd__vqp *qp, int timeout_ms)
{
	memset(ep, 0, sizeof(*ep));
	ep->ops = ops;
	ep->qp = qp;
	ep->timeout_ms = timeout_ms;
	ep->cur_slot = -1;
	ep->credits = SLOTS;
	ep->rbuf = calloc(SLOTS, SLOT);
	ep->sbuf = calloc(SLOTS, SLOT);
	int ret = -ENOMEM;
	if (!ep->rbuf || !ep->sbuf)
		goto err;
	if ((ret = ops->reg_mr(qp, ep->rbuf, (size_t)SLOTS * SLOT, false,
			       &ep->rmr)))
		goto err;
	if ((ret = ops->reg_mr(qp, ep->sbuf, (size_t)SLOTS * SLOT, false,
			       &ep->smr))) {
		ops->dereg_mr(qp, &ep->rmr);
		goto err;
	}
	for (unsigned i = 0; i < SLOTS; i++)
		if ((ret = post_recv_slot(ep, i)))
			break;
	if (!ret)
		return 0;
	ops->dereg_mr(qp, &ep->rmr);
	ops->dereg_mr(qp, &ep->smr);
err:
	free(ep->rbuf);
	free(ep->sbuf);
	ep->rbuf = ep->sbuf = NULL;
	return ret;
}

void mfd__rdma_ep_destroy(struct mfd__rdma_ep *ep)
{
	if (!ep->qp)
		return;
	/* Flush first: the fabric must let go of every buffer. */
	ep->ops->disconnect(ep->qp);
	for (unsigned i = 0; i < ep->nlocal; i++)
		ep->ops->dereg_mr(ep->qp, &ep->local[i]);
	if (ep->rbuf) {
		ep->ops->dereg_mr(ep->qp, &ep->rmr);
		ep->ops->dereg_mr(ep->qp, &ep->smr);
	}
	ep->ops->destroy(ep->qp);
	free(ep->rbuf);
	free(ep->sbuf);
	memset(ep, 0, sizeof(*ep));
}

static int send_raw(struct mfd__rdma_ep *ep, uint16_t type,
		    const struct iovec *iov, int iovcnt, size_t skip,
		    size_t len);

/* Re-posts a consumed receive buffer: one more credit owed to the peer,
 * announced on its own once half the slots are owed. */
static int repost(struct mfd__rdma_ep *ep, unsigned slot)
{
	int ret = post_recv_slot(ep, slot);
	if (ret)
		return ret;
	ep->owed++;
	/* Only when it cannot wait: this runs inside completion handling. */
	if (ep->owed >= SLOTS / 2 && ep->credits >= 1 && ep->sends_out < SLOTS)
		return send_raw(ep, MFD__RDMA_CREDIT, NULL, 0, 0, 0);
	return 0;
}

/* Handles one completion. */
static int complete(struct mfd__rdma_ep *ep, const struct mfd__vwc *wc)
{
	unsigned kind = (unsigned)(wc->wr_id >> 32);
	unsigned slot = (unsigned)wc->wr_id;
	switch (kind) {
	case WR_SEND:
		ep->sends_out--;
		break;
	case WR_WRITE:
		ep->writes_out--;
		break;
	case WR_RECV:
		break;
	default:
		return fail(ep, -EIO);
	}
	if (wc->status)
		return fail(ep, wc->status);
	if (kind != WR_RECV)
		return 0;
	if (slot >= SLOTS)
		return fail(ep, MFD_ELENGTH);
	struct mfd__rdma_hdr h;
	int ret = mfd__rdma_hdr_decode(ep->rbuf + (size_t)slot * SLOT, wc->len,
				       SLOTS - ep->credits, &h);
	if (ret)
		return fail(ep, ret);
	ep->credits += h.credits;
	if (h.type == MFD__RDMA_CREDIT)
		return repost(ep, slot);
	if (h.type == MFD__RDMA_FENCE) {
		ep->fences++;
		return repost(ep, slot);
	}
	unsigned tail = (ep->ready_head + ep->ready_n) % SLOTS;
	ep->ready[tail] = slot;
	ep->ready_len[tail] = h.len;
	ep->ready_type[tail] = h.type;
	ep->ready_n++;
	return 0;
}

/* Threaded mode, under ep->lock: waits until the poller has handled
 * something (the caller then looks again), the timeout, or an error. */
static int wait_poller(struct mfd__rdma_ep *ep)
{
	unsigned gen = ep->gen;
	int tmo = __atomic_load_n(&ep->timeout_ms, __ATOMIC_RELAXED);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (tmo > 0) {
		ts.tv_sec += tmo / 1000;
		ts.tv_nsec += (long)(tmo % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
	}
	while (ep->gen == gen && !ep->error) {
		if (tmo < 0)
			pthread_cond_wait(&ep->cv, &ep->lock);
		else if (pthread_cond_timedwait(&ep->cv, &ep->lock, &ts) &&
			 ep->gen == gen && !ep->error)
			return -ETIMEDOUT;
	}
	return ep->error;
}

/* Waits for and handles completions: 0, -ETIMEDOUT, or the error. */
static int progress(struct mfd__rdma_ep *ep)
{
	struct mfd__vwc wc[16];
	if (ep->error)
		return ep->error;
	if (ep->threaded)
		return wait_poller(ep);
	int n = ep->ops->poll(ep->qp, wc, 16, ep->timeout_ms);
	if (n < 0)
		return fail(ep, n);
	if (n == 0)
		return -ETIMEDOUT;
	for (int i = 0; i < n; i++) {
		/* Every completion is accounted for, even after an error. */
		int ret = complete(ep, &wc[i]);
		if (ret && !ep->error)
			return ret;
	}
	return ep->error;
}

static void gather(uint8_t *dst, const struct iovec *iov, int iovcnt,
		   size_t skip, size_t len)
{
	for (int i = 0; i < iovcnt && len; i++) {
		size_t l = iov[i].iov_len;
		if (skip >= l) {
			skip -= l;
			continue;
		}
		size_t n = l - skip < len ? l - skip : len;
		memcpy(dst, (const uint8_t *)iov[i].iov_base + skip, n);
		dst += n;
		len -= n;
		skip = 0;
	}
}

static int send_raw(struct mfd__rdma_ep *ep, uint16_t type,
		    const struct iovec *iov, int iovcnt, size_t skip,
		    size_t len)
{
	/* The last credit is kept for CREDIT messages. */
	unsigned need = type == MFD__RDMA_CREDIT ? 1 : 2;
	int ret;
	while (ep->credits < need || ep->sends_out >= SLOTS)
		if ((ret = progress(ep)))
			return ret;
	if (ep->error)
		return ep->error;
	/* Send completions arrive in order: the oldest slot is free. */
	unsigned slot = ep->snext;
	ep->snext = (ep->snext + 1) % SLOTS;
	uint8_t *h = ep->sbuf + (size_t)slot * SLOT;
	struct mfd__rdma_hdr hdr = { .type = type,
				     .credits = (uint16_t)ep->owed,
				     .len = (uint32_t)len };
	mfd__rdma_hdr_encode(&hdr, h);
	gather(h + MFD__RDMA_HDR_SIZE, iov, iovcnt, skip, len);
	ret = ep->ops->post_send(ep->qp, WR(WR_SEND, slot), h,
				 (uint32_t)(MFD__RDMA_HDR_SIZE + len),
				 ep->smr.lkey);
	if (ret)
		return fail(ep, ret);
	ep->owed = 0;
	ep->credits--;
	ep->sends_out++;
	return 0;
}

int mfd__rdma_send_msg(struct mfd__rdma_ep *ep, const struct iovec *iov,
		       int iovcnt)
{
	size_t len = 0;
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (len > MAX_PAYLOAD)
		return MFD_ELENGTH;
	return send_raw(ep, MFD__RDMA_DATA, iov, iovcnt, 0, len);
}

/* The next received message of any type but CREDIT. */
static int next_msg(struct mfd__rdma_ep *ep, unsigned *slot, uint32_t *len,
		    uint32_t *type)
{
	/* A message that arrived before the error is still delivered: the
	 * peer's last words (LOADED, ERROR) often come just before it
	 * disconnects. */
	while (!ep->ready_n) {
		int ret = progress(ep);
		if (ret && !ep->ready_n)
			return ret;
	}
	*slot = ep->ready[ep->ready_head];
	*len = ep->ready_len[ep->ready_head];
	*type = ep->ready_type[ep->ready_head];
	ep->ready_head = (ep->ready_head + 1) % SLOTS;
	ep->ready_n--;
	return 0;
}

int mfd__rdma_recv_msg(struct mfd__rdma_ep *ep, void *buf, size_t cap,
		       size_t *len)
{
	unsigned slot;
	uint32_t l, type;
	int ret = next_msg(ep, &slot, &l, &type);
	if (ret)
		return ret;
	if (type != MFD__RDMA_DATA)
		return fail(ep, MFD_ETYPE);
	if (l > cap)
		return fail(ep, MFD_ELENGTH);
	memcpy(buf, ep->rbuf + (size_t)slot * SLOT + MFD__RDMA_HDR_SIZE, l);
	*len = l;
	return repost(ep, slot);
}

int mfd__rdma_register(struct mfd__rdma_ep *ep, void *addr, size_t len)
{
	if (ep->nlocal == MFD__RDMA_MAX_REGIONS)
		return -ENOSPC;
	uint64_t t0 = mfd__now_ns();
	int ret = ep->ops->reg_mr(ep->qp, addr, len, true,
				  &ep->local[ep->nlocal]);
	ep->reg_ns += mfd__now_ns() - t0;
	if (ret)
		return ret;
	return (int)ep->nlocal++;
}

int mfd__rdma_send_regions(struct mfd__rdma_ep *ep)
{
	struct mfd__rdma_region r[MFD__RDMA_MAX_REGIONS];
	uint8_t buf[MFD__RDMA_MAX_REGIONS * MFD__RDMA_REGION_SIZE];
	for (unsigned i = 0; i < ep->nlocal; i++)
		r[i] = (struct mfd__rdma_region){
			.addr = (uint64_t)(uintptr_t)ep->local[i].addr,
			.len = ep->local[i].len,
			.rkey = ep->local[i].rkey
		};
	mfd__rdma_regions_encode(r, ep->nlocal, buf);
	struct iovec iov = { buf, (size_t)ep->nlocal * MFD__RDMA_REGION_SIZE };
	return send_raw(ep, MFD__RDMA_REGIONS, &iov, 1, 0, iov.iov_len);
}

int mfd__rdma_recv_regions(struct mfd__rdma_ep *ep)
{
	unsigned slot;
	uint32_t len, type;
	int ret = next_msg(ep, &slot, &len, &type);
	if (ret)
		return ret;
	if (type != MFD__RDMA_REGIONS)
		return fail(ep, MFD_ETYPE);
	unsigned n;
	ret = mfd__rdma_regions_decode(
		ep->rbuf + (size_t)slot * SLOT + MFD__RDMA_HDR_SIZE, len,
		ep->remote, MFD__RDMA_MAX_REGIONS, &n);
	if (ret)
		return fail(ep, ret);
	ep->nremote = n;
	return repost(ep, slot);
}

int mfd__rdma_write(struct mfd__rdma_ep *ep, unsigned ri, uint64_t off,
		    const void *local, size_t len)
{
	if (ri >= ep->nremote)
		return MFD_EBLOCK;
	const struct mfd__rdma_region *r = &ep->remote[ri];
	if (len > UINT32_MAX || off > r->len || len > r->len - off)
		return MFD_EOFFSET;
	const struct mfd__vmr *mr = NULL;
	for (unsigned i = 0; i < ep->nlocal && !mr; i++) {
		const uint8_t *a = ep->local[i].addr;
		if ((const uint8_t *)local >= a &&
		    (const uint8_t *)local + len <= a + ep->local[i].len)
			mr = &ep->local[i];
	}
	if (!mr)
		return -EFAULT;
	int ret;
	while (ep->writes_out >= MFD__RDMA_MAX_WRITES)
		if ((ret = progress(ep)))
			return ret;
	if (ep->error)
		return ep->error;
	ret = ep->ops->post_write(ep->qp, WR(WR_WRITE, 0), local, (uint32_t)len,
				  mr->lkey, r->addr + off, r->rkey);
	if (ret)
		return fail(ep, ret);
	ep->writes_out++;
	return 0;
}

int mfd__rdma_write_flush(struct mfd__rdma_ep *ep)
{
	int ret;
	while (ep->writes_out)
		if ((ret = progress(ep)))
			return ret;
	return ep->error;
}

int mfd__rdma_sendv(struct mfd__rdma_ep *ep, struct iovec *iov, int iovcnt)
{
	size_t total = 0;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	for (size_t off = 0; off < total;) {
		size_t n =
			total - off < MAX_PAYLOAD ? total - off : MAX_PAYLOAD;
		int ret = send_raw(ep, MFD__RDMA_DATA, iov, iovcnt, off, n);
		if (ret)
			return ret;
		off += n;
	}
	return 0;
}

int mfd__rdma_recvv(struct mfd__rdma_ep *ep, struct iovec *iov, int iovcnt)
{
	bool started = false;
	for (int i = 0; i < iovcnt; i++) {
		uint8_t *dst = iov[i].iov_base;
		size_t want = iov[i].iov_len;
		while (want) {
			if (ep->cur_slot < 0) {
				unsigned slot;
				uint32_t len, type;
				int ret = next_msg(ep, &slot, &len, &type);
				if (ret)
					return started && ret == -ECONNRESET
						       ? MFD_ETRUNCATED
						       : ret;
				if (type != MFD__RDMA_DATA)
					return fail(ep, MFD_ETYPE);
				ep->cur_slot = (int)slot;
				ep->cur_off = 0;
				ep->cur_len = len;
			}
			const uint8_t *src = ep->rbuf +
					     (size_t)ep->cur_slot * SLOT +
					     MFD__RDMA_HDR_SIZE + ep->cur_off;
			size_t n = ep->cur_len - ep->cur_off;
			if (n > want)
				n = want;
			memcpy(dst, src, n);
			dst += n;
			want -= n;
			ep->cur_off += (uint32_t)n;
			started = true;
			if (ep->cur_off == ep->cur_len) {
				unsigned slot = (unsigned)ep->cur_slot;
				ep->cur_slot = -1;
				int ret = repost(ep, slot);
				if (ret)
					return ret;
			}
		}
	}
	return 0;
}

int mfd__rdma_send_fence(struct mfd__rdma_ep *ep)
{
	return send_raw(ep, MFD__RDMA_FENCE, NULL, 0, 0, 0);
}

int mfd__rdma_wait_fence(struct mfd__rdma_ep *ep)
{
	while (!ep->fences) {
		int ret = progress(ep);
		if (ret && !ep->fences)
			return ret;
	}
	ep->fences--;
	return 0;
}

/* ---- channels ---- */

/*
 * A channel is one endpoint in threaded mode: the poller thread handles
 * every completion, so that two threads may use the channel at once (the
 * source's main channel is written by the migration thread and read by the
 * return path) and so that c.fd can tell when a message is waiting even
 * while nobody receives: it is an eventfd kept readable exactly while a
 * message (or an error) is there to be read.
 */
struct rdma_chan {
	struct mfd__chan c;
	struct mfd__rdma_ep ep;
	pthread_t poller;
	bool quit, fd_on;
};

#define EP(c) (&((struct rdma_chan *)(c))->ep)

/* Under ep.lock. */
static void update_fd(struct rdma_chan *r)
{
	bool on = r->ep.ready_n || r->ep.cur_slot >= 0 || r->ep.error;
	if (on == r->fd_on)
		return;
	uint64_t v = 1;
	if (on ? write(r->c.fd, &v, sizeof(v)) != sizeof(v)
	       : read(r->c.fd, &v, sizeof(v)) != sizeof(v))
		return;
	r->fd_on = on;
}

static void *poller_main(void *arg)
{
	struct rdma_chan *r = arg;
	struct mfd__rdma_ep *ep = &r->ep;
	struct mfd__vwc wc[16];
	for (bool quit = false; !quit;) {
		int n = ep->ops->poll(ep->qp, wc, 16, 50);
		pthread_mutex_lock(&ep->lock);
		if (n < 0)
			fail(ep, n);
		/* Every completion is accounted for, even after an error. */
		for (int i = 0; i < n; i++)
			complete(ep, &wc[i]);
		if (n) {
			ep->gen++;
			pthread_cond_broadcast(&ep->cv);
		}
		update_fd(r);
		quit = r->quit;
		pthread_mutex_unlock(&ep->lock);
	}
	return NULL;
}

static int chan_done(struct rdma_chan *r, int ret)
{
	update_fd(r);
	pthread_mutex_unlock(&r->ep.lock);
	return ret;
}

static struct rdma_chan *chan_lock(struct mfd__chan *c)
{
	struct rdma_chan *r = (struct rdma_chan *)c;
	pthread_mutex_lock(&r->ep.lock);
	return r;
}

static int rdma_chan_sendv(struct mfd__chan *c, struct iovec *iov, int iovcnt)
{
	struct rdma_chan *r = chan_lock(c);
	return chan_done(r, mfd__rdma_sendv(&r->ep, iov, iovcnt));
}

static int rdma_chan_recvv(struct mfd__chan *c, struct iovec *iov, int iovcnt)
{
	struct rdma_chan *r = chan_lock(c);
	return chan_done(r, mfd__rdma_recvv(&r->ep, iov, iovcnt));
}

static int rdma_chan_register(struct mfd__chan *c, const struct mfd__mem *mem,
			      unsigned nblocks, uint64_t *reg_ns)
{
	struct rdma_chan *r = chan_lock(c);
	struct mfd__rdma_ep *ep = &r->ep;
	int ret = ep->nlocal ? -EALREADY : 0;
	/* Region i is block i on both sides. */
	for (unsigned i = 0; !ret && i < nblocks; i++) {
		ret = mfd__rdma_register(ep, mem[i].host, mem[i].size);
		ret = ret < 0 ? ret : 0;
	}
	if (reg_ns)
		*reg_ns += ep->reg_ns;
	if (!ret)
		ret = mfd__rdma_send_regions(ep);
	if (!ret)
		ret = mfd__rdma_recv_regions(ep);
	if (!ret && ep->nremote != nblocks)
		ret = fail(ep, MFD_EBLOCK);
	return chan_done(r, ret);
}

/* Largest single WRITE: a coalesced run of huge pages may exceed 4 GiB. */
#define WRITE_MAX (1U << 30)

static int rdma_chan_send_pages(struct mfd__chan *c, uint32_t block,
				struct iovec *iov, int iovcnt)
{
	struct rdma_chan *r = chan_lock(c);
	struct mfd__rdma_ep *ep = &r->ep;
	int ret = block < ep->nlocal ? 0 : MFD_EBLOCK;
	const uint8_t *base = ret ? NULL : ep->local[block].addr;
	/* The pages first, one-sided; RC order places them before the
	 * announcement (header and offsets) arrives. */
	for (int i = 2; !ret && i < iovcnt; i++) {
		const uint8_t *p = iov[i].iov_base;
		for (size_t done = 0; !ret && done < iov[i].iov_len;) {
			size_t n = iov[i].iov_len - done;
			n = n > WRITE_MAX ? WRITE_MAX : n;
			ret = mfd__rdma_write(ep, block,
					      (uint64_t)(p + done - base),
					      p + done, n);
			done += n;
		}
	}
	if (!ret)
		ret = mfd__rdma_sendv(ep, iov, iovcnt < 2 ? iovcnt : 2);
	return chan_done(r, ret);
}

static int rdma_chan_recv_payload(struct mfd__chan *c, uint32_t block,
				  struct iovec *iov, int iovcnt)
{
	/* The pages were written before their announcement arrived. */
	return 0;
}

static int rdma_chan_round_fence(struct mfd__chan *c)
{
	struct rdma_chan *r = chan_lock(c);
	return chan_done(r, mfd__rdma_wait_fence(&r->ep));
}

static int rdma_chan_round_applied(struct mfd__chan *c)
{
	struct rdma_chan *r = chan_lock(c);
	return chan_done(r, mfd__rdma_send_fence(&r->ep));
}

static int rdma_chan_recv(struct mfd__chan *c, void *buf, size_t len)
{
	struct iovec iov = { buf, len };
	return rdma_chan_recvv(c, &iov, 1);
}

static int rdma_chan_set_timeout(struct mfd__chan *c, uint64_t ms)
{
	struct rdma_chan *r = (struct rdma_chan *)c;
	__atomic_store_n(&r->ep.timeout_ms,
			 ms == 0 || ms > INT32_MAX ? -1 : (int)ms,
			 __ATOMIC_RELAXED);
	return 0;
}

static void rdma_chan_shutdown(struct mfd__chan *c, int how)
{
	struct rdma_chan *r = (struct rdma_chan *)c;
	/* A queue pair has no half-close: the end of sending is the end.
	 * Messages already received can still be read. */
	r->ep.ops->disconnect(r->ep.qp);
	pthread_mutex_lock(&r->ep.lock);
	fail(&r->ep, -ECONNRESET);
	pthread_cond_broadcast(&r->ep.cv);
	update_fd(r);
	pthread_mutex_unlock(&r->ep.lock);
}

static void rdma_chan_close(struct mfd__chan *c)
{
	if (!c)
		return;
	struct rdma_chan *r = (struct rdma_chan *)c;
	r->ep.ops->disconnect(r->ep.qp);
	pthread_mutex_lock(&r->ep.lock);
	r->quit = true;
	pthread_mutex_unlock(&r->ep.lock);
	pthread_join(r->poller, NULL);
	mfd__rdma_ep_destroy(&r->ep);
	pthread_mutex_destroy(&r->ep.lock);
	pthread_cond_destroy(&r->ep.cv);
	close(r->c.fd);
	free(r);
}

static const struct mfd__chan_ops rdma_chan_ops = {
	.name = "rdma",
	.sendv = rdma_chan_sendv,
	.recv = rdma_chan_recv,
	.recvv = rdma_chan_recvv,
	.set_timeout = rdma_chan_set_timeout,
	.shutdown = rdma_chan_shutdown,
	.close = rdma_chan_close,
	.register_memory = rdma_chan_register,
	.send_pages = rdma_chan_send_pages,
	.recv_payload = rdma_chan_recv_payload,
	.round_fence = rdma_chan_round_fence,
	.round_applied = rdma_chan_round_applied,
};

int mfd__rdma_chan_new(const struct mfd__verbs_ops *ops, struct mfd__vqp *qp,
		       const char *peer, struct mfd__chan **out)
{
	struct rdma_chan *r = calloc(1, sizeof(*r));
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!r || fd < 0) {
		int err = fd < 0 ? -errno : -ENOMEM;
		if (fd >= 0)
			close(fd);
		free(r);
		ops->destroy(qp);
		return err;
	}
	int ret = mfd__rdma_ep_init(&r->ep, ops, qp, -1);
	if (ret) {
		ops->destroy(qp);
		close(fd);
		free(r);
		return ret;
	}
	r->ep.threaded = true;
	pthread_mutex_init(&r->ep.lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->ep.cv, &ca);
	pthread_condattr_destroy(&ca);
	r->c.ops = &rdma_chan_ops;
	r->c.fd = fd;
	snprintf(r->c.peer, sizeof(r->c.peer), "%s", peer);
	if ((ret = -pthread_create(&r->poller, NULL, poller_main, r))) {
		mfd__rdma_ep_destroy(&r->ep);
		pthread_mutex_destroy(&r->ep.lock);
		pthread_cond_destroy(&r->ep.cv);
		close(fd);
		free(r);
		return ret;
	}
	*out = &r->c;
	return 0;
}

static int rdma_wrap(struct mfd__vqp *qp, const char *peer,
		     struct mfd__chan **out)
{
	return mfd__rdma_chan_new(&mfd__ibv_ops, qp, peer, out);
}

static int rdma_connect(const char *uri, uint64_t timeout_ms,
			struct mfd__chan **out)
{
	char host[256], port[16];
	int ret = mfd__uri_split(uri, host, sizeof(host), port, sizeof(port));
	if (!ret)
		ret = mfd__ibv_probe();
	struct mfd__vqp *qp;
	if (!ret)
		ret = mfd__ibv_connect(host, port, timeout_ms, &qp);
	return ret ? ret : rdma_wrap(qp, uri + 5, out);
}

static int rdma_listen(const char *uri, int backlog, struct mfd__listener *l)
{
	char host[256], port[16], bound[16];
	int ret = mfd__uri_split(uri, host, sizeof(host), port, sizeof(port));
	if (!ret)
		ret = mfd__ibv_probe();
	struct mfd__ibv_listener *il;
	if (!ret)
		ret = mfd__ibv_listen(host, port, backlog, &il, bound,
				      sizeof(bound));
	if (ret)
		return ret;
	l->priv = il;
	l->fd = -1;
	snprintf(l->uri, sizeof(l->uri), "rdma:%.100s:%s", host, bound);
	return 0;
}

static int rdma_accept(struct mfd__listener *l, uint64_t timeout_ms,
		       const int *cancel, struct mfd__chan **out)
{
	struct mfd__vqp *qp;
	int ret = mfd__ibv_accept(l->priv, timeout_ms, cancel, &qp);
	return ret ? ret : rdma_wrap(qp, "rdma peer", out);
}

static void rdma_listener_close(struct mfd__listener *l)
{
	if (l->priv)
		mfd__ibv_listener_close(l->priv);
	l->priv = NULL;
}

const struct mfd__transport mfd__rdma_transport = {
	.name = "rdma",
	.connect = rdma_connect,
	.listen = rdma_listen,
	.accept = rdma_accept,
	.listener_close = rdma_listener_close,
};
