/* SPDX-License-Identifier: MIT */
/* The verbs interface over rdma-core: libibverbs, connections by rdma_cm. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "multifd/channels/channel.h"
#include "multifd/channels/verbs.h"
#include "multifd/multifd.h"
#include "multifd/common/clock.h"
#include "multifd/common/log.h"

#define CQ_DEPTH 256

struct mfd__vqp {
	struct rdma_event_channel *ec; /* owned when not NULL */
	struct rdma_cm_id *id;
	struct ibv_pd *pd;
	struct ibv_comp_channel *cc;
	struct ibv_cq *cq;
};

struct mfd__ibv_listener {
	struct rdma_event_channel *ec;
	struct rdma_cm_id *id;
};

int mfd__ibv_probe(void)
{
	int n = 0;
	struct ibv_device **list = ibv_get_device_list(&n);
	if (list)
		ibv_free_device_list(list);
	if (!list || n == 0) {
		mfd__err("rdma: no RDMA device is present "
			 "(ibv_get_device_list found none)");
		return -ENODEV;
	}
	return 0;
}

static int wait_event(struct rdma_event_channel *ec,
		      enum rdma_cm_event_type want, uint64_t timeout_ms,
		      const int *cancel, struct rdma_cm_id **id)
{
	uint64_t deadline = mfd__now_ns() + timeout_ms * 1000000ULL;
	for (;;) {
		int ret = mfd__wait_fd_until(ec->fd, POLLIN, deadline, cancel);
		if (ret)
			return ret;
		struct rdma_cm_event *ev;
		if (rdma_get_cm_event(ec, &ev)) {
			if (errno == EAGAIN)
				continue; /* woken for nothing: wait again */
			return -errno;
		}
		enum rdma_cm_event_type type = ev->event;
		int status = ev->status;
		if (id)
			*id = ev->id;
		rdma_ack_cm_event(ev);
		if (type == want)
			return 0;
		if (type == RDMA_CM_EVENT_REJECTED)
			return -ECONNREFUSED;
		if (type == RDMA_CM_EVENT_ADDR_ERROR ||
		    type == RDMA_CM_EVENT_ROUTE_ERROR ||
		    type == RDMA_CM_EVENT_UNREACHABLE)
			return -EHOSTUNREACH;
		if (type == RDMA_CM_EVENT_CONNECT_ERROR ||
		    type == RDMA_CM_EVENT_DISCONNECTED)
			return status < 0 ? status : -ECONNRESET;
	}
}

static int setup_qp(struct mfd__vqp *q)
{
	struct ibv_context *ctx = q->id->verbs;
	if (!(q->pd = ibv_alloc_pd(ctx)) ||
	    !(q->cc = ibv_create_comp_channel(ctx)) ||
	    !(q->cq = ibv_create_cq(ctx, CQ_DEPTH, NULL, q->cc, 0)))
		return errno ? -errno : -ENOMEM;
	fcntl(q->cc->fd, F_SETFL, fcntl(q->cc->fd, F_GETFL) | O_NONBLOCK);
	if (ibv_req_notify_cq(q->cq, 0))
		return -EIO;
	struct ibv_qp_init_attr a = {
		.send_cq = q->cq,
		.recv_cq = q->cq,
		.qp_type = IBV_QPT_RC,
		.cap = { .max_send_wr = CQ_DEPTH / 2,
			 .max_recv_wr = CQ_DEPTH / 2,
			 .max_send_sge = 1,
			 .max_recv_sge = 1 },
	};
	if (rdma_create_qp(q->id, q->pd, &a))
		return -errno;
	return 0;
}

static void vqp_destroy(struct mfd__vqp *q)
{
	if (!q)
		return;
	if (q->id && q->id->qp)
		rdma_destroy_qp(q->id);
	if (q->cq)
		ibv_destroy_cq(q->cq);
	if (q->cc)
		ibv_destroy_comp_channel(q->cc);
	if (q->pd)
		ibv_dealloc_pd(q->pd);
	if (q->id)
		rdma_destroy_id(q->id);
	if (q->ec)
		rdma_destroy_event_channel(q->ec);
	free(q);
}

static const struct rdma_conn_param conn_param = {
	.responder_resources = 1,
	.initiator_depth = 1,
	.retry_count = 7,
	.rnr_retry_count = 7, /* a receiver not ready yet is retried */
};

int mfd__ibv_connect(const char *host, const char *port, uint64_t timeout_ms,
		     struct mfd__vqp **out)
{
	struct mfd__vqp *q = calloc(1, sizeof(*q));
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	int ret = q ? 0 : -ENOMEM;
	if (!ret && !(q->ec = rdma_create_event_channel()))
		ret = -errno;
	if (!ret && rdma_create_id(q->ec, &q->id, NULL, RDMA_PS_TCP))
		ret = -errno;
	if (!ret && getaddrinfo(host, port, &hints, &ai))
		ret = -EHOSTUNREACH;
	if (!ret &&
	    rdma_resolve_addr(q->id, NULL, ai->ai_addr, (int)timeout_ms))
		ret = -errno;
	if (!ret)
		ret = wait_event(q->ec, RDMA_CM_EVENT_ADDR_RESOLVED, timeout_ms,
				 NULL, NULL);
	if (!ret && rdma_resolve_route(q->id, (int)timeout_ms))
		ret = -errno;
	if (!ret)
		ret = wait_event(q->ec, RDMA_CM_EVENT_ROUTE_RESOLVED,
				 timeout_ms, NULL, NULL);
	if (!ret)
		ret = setup_qp(q);
	struct rdma_conn_param cp = conn_param;
	if (!ret && rdma_connect(q->id, &cp))
		ret = -errno;
	if (!ret)
		ret = wait_event(q->ec, RDMA_CM_EVENT_ESTABLISHED, timeout_ms,
				 NULL, NULL);
	if (ai)
		freeaddrinfo(ai);
	if (ret) {
		vqp_destroy(q);
		return ret;
	}
	*out = q;
	return 0;
}

int mfd__ibv_listen(const char *host, const char *port, int backlog,
		    struct mfd__ibv_listener **out, char *bound_port,
		    size_t portlen)
{
	struct mfd__ibv_listener *l = calloc(1, sizeof(*l));
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE },
			*ai = NULL;
	int ret = l ? 0 : -ENOMEM;
	if (!ret && !(l->ec = rdma_create_event_channel()))
		ret = -errno;
	if (!ret && rdma_create_id(l->ec, &l->id, NULL, RDMA_PS_TCP))
		ret = -errno;
	if (!ret && getaddrinfo(host, port, &hints, &ai))
		ret = -EADDRNOTAVAIL;
	if (!ret &&
	    (rdma_bind_addr(l->id, ai->ai_addr) || rdma_listen(l->id, backlog)))
		ret = -errno;
	if (ai)
		freeaddrinfo(ai);
	if (ret) {
		mfd__ibv_listener_close(l);
		return ret;
	}
	snprintf(bound_port, portlen, "%u", ntohs(rdma_get_src_port(l->id)));
	*out = l;
	return 0;
}

int mfd__ibv_accept(struct mfd__ibv_listener *l, uint64_t timeout_ms,
		    const int *cancel, struct mfd__vqp **out)
{
	struct rdma_cm_id *id = NULL;
	int ret = wait_event(l->ec, RDMA_CM_EVENT_CONNECT_REQUEST, timeout_ms,
			     cancel, &id);
	if (ret)
		return ret;
	struct mfd__vqp *q = calloc(1, sizeof(*q));
	if (!q) {
		rdma_reject(id, NULL, 0);
		rdma_destroy_id(id);
		return -ENOMEM;
	}
	q->id = id;
	ret = setup_qp(q);
	struct rdma_conn_param cp = conn_param;
	if (!ret && rdma_accept(id, &cp))
		ret = -errno;
	if (!ret)
		ret = wait_event(l->ec, RDMA_CM_EVENT_ESTABLISHED, timeout_ms,
				 cancel, NULL);
	if (ret) {
		vqp_destroy(q);
		return ret;
	}
	*out = q;
	return 0;
}

void mfd__ibv_listener_close(struct mfd__ibv_listener *l)
{
	if (!l)
		return;
	if (l->id)
		rdma_destroy_id(l->id);
	if (l->ec)
		rdma_destroy_event_channel(l->ec);
	free(l);
}

static int ibv_reg(struct mfd__vqp *q, void *addr, size_t len,
		   bool remote_write, struct mfd__vmr *out)
{
	struct ibv_mr *mr = ibv_reg_mr(
		q->pd, addr, len,
		IBV_ACCESS_LOCAL_WRITE |
			(remote_write ? IBV_ACCESS_REMOTE_WRITE : 0));
	if (!mr)
		return errno ? -errno : -ENOMEM;
	*out = (struct mfd__vmr){ .addr = addr,
				  .len = len,
				  .lkey = mr->lkey,
				  .rkey = mr->rkey,
				  .handle = mr };
	return 0;
}

static void ibv_dereg(struct mfd__vqp *q, struct mfd__vmr *mr)
{
	if (mr->handle)
		ibv_dereg_mr(mr->handle);
	mr->handle = NULL;
}

static int post(struct mfd__vqp *q, enum ibv_wr_opcode op, uint64_t wr_id,
		const void *buf, uint32_t len, uint32_t lkey, uint64_t raddr,
		uint32_t rkey)
{
	struct ibv_sge sge = { .addr = (uintptr_t)buf,
			       .length = len,
			       .lkey = lkey };
	struct ibv_send_wr wr = { .wr_id = wr_id,
				  .sg_list = &sge,
				  .num_sge = 1,
				  .opcode = op,
				  .send_flags = IBV_SEND_SIGNALED },
			   *bad;
	wr.wr.rdma.remote_addr = raddr;
	wr.wr.rdma.rkey = rkey;
	return -ibv_post_send(q->id->qp, &wr, &bad);
}

static int ibv_send(struct mfd__vqp *q, uint64_t wr_id, const void *buf,
		    uint32_t len, uint32_t lkey)
{
	return post(q, IBV_WR_SEND, wr_id, buf, len, lkey, 0, 0);
}

static int ibv_write(struct mfd__vqp *q, uint64_t wr_id, const void *buf,
		     uint32_t len, uint32_t lkey, uint64_t raddr, uint32_t rkey)
{
	return post(q, IBV_WR_RDMA_WRITE, wr_id, buf, len, lkey, raddr, rkey);
}

static int ibv_recv(struct mfd__vqp *q, uint64_t wr_id, void *buf, uint32_t len,
		    uint32_t lkey)
{
	struct ibv_sge sge = { .addr = (uintptr_t)buf,
			       .length = len,
			       .lkey = lkey };
	struct ibv_recv_wr wr = { .wr_id = wr_id,
				  .sg_list = &sge,
				  .num_sge = 1 },
			   *bad;
	return -ibv_post_recv(q->id->qp, &wr, &bad);
}

static int status_errno(enum ibv_wc_status s)
{
	switch (s) {
	case IBV_WC_SUCCESS:
		return 0;
	case IBV_WC_REM_ACCESS_ERR:
	case IBV_WC_LOC_PROT_ERR:
		return -EACCES;
	case IBV_WC_RNR_RETRY_EXC_ERR:
		return -ENOBUFS;
	case IBV_WC_WR_FLUSH_ERR:
		return -ECONNRESET;
	default:
		return -EIO;
	}
}

static int ibv_poll(struct mfd__vqp *q, struct mfd__vwc *out, int n,
		    int timeout_ms)
{
	struct ibv_wc wc[16];
	if (n > 16)
		n = 16;
	uint64_t deadline =
		timeout_ms < 0 ? UINT64_MAX
			       : mfd__now_ns() + (uint64_t)timeout_ms * 1000000;
	for (bool armed = false;;) {
		int got = ibv_poll_cq(q->cq, n, wc);
		if (got < 0)
			return -EIO;
		if (got > 0) {
			for (int i = 0; i < got; i++)
				out[i] = (struct mfd__vwc){
					.wr_id = wc[i].wr_id,
					.status = status_errno(wc[i].status),
					.op = wc[i].opcode == IBV_WC_RECV
						      ? MFD__VWC_RECV
					      : wc[i].opcode ==
							      IBV_WC_RDMA_WRITE
						      ? MFD__VWC_WRITE
						      : MFD__VWC_SEND,
					.len = wc[i].byte_len
				};
			return got;
		}
		if (!armed) {
			/* Arm, then look again: a completion that came in
			 * between would raise no event. */
			ibv_req_notify_cq(q->cq, 0);
			armed = true;
			continue;
		}
		uint64_t now = mfd__now_ns();
		if (now >= deadline)
			return 0;
		uint64_t left = (deadline - now) / 1000000 + 1;
		struct pollfd pfd = { .fd = q->cc->fd, .events = POLLIN };
		int r = poll(&pfd, 1, left > 1000 ? 1000 : (int)left);
		if (r < 0 && errno != EINTR)
			return -errno;
		struct ibv_cq *cq;
		void *ctx;
		if (r > 0 && ibv_get_cq_event(q->cc, &cq, &ctx) == 0) {
			ibv_ack_cq_events(cq, 1);
			armed = false;
		}
	}
}

static void ibv_disconnect(struct mfd__vqp *q)
{
	rdma_disconnect(q->id);
}

static int ibv_fd(struct mfd__vqp *q)
{
	return q->cc ? q->cc->fd : -1;
}

const struct mfd__verbs_ops mfd__ibv_ops = {
	.name = "rdma-core",
	.reg_mr = ibv_reg,
	.dereg_mr = ibv_dereg,
	.post_send = ibv_send,
	.post_recv = ibv_recv,
	.post_write = ibv_write,
	.poll = ibv_poll,
	.disconnect = ibv_disconnect,
	.destroy = vqp_destroy,
	.fd = ibv_fd,
};
