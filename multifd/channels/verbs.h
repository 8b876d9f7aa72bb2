/* SPDX-License-Identifier: MIT */
/*
 * The narrow verbs interface under the RDMA channel protocol (rdma.c): one
 * connected RC queue pair with its completion queue, and the five things
 * the protocol does with it. Two implementations: rdma-core
 * (verbs_ibv.c, connection setup with rdma_cm) and an in-memory fake
 * fabric for tests (tests/fake_verbs.c).
 *
 * Semantics follow RC queue pairs: work requests of one queue pair execute
 * in the order posted; an RDMA WRITE posted before a SEND is placed in the
 * responder's memory before the SEND's receive completion appears there.
 * A failed work request (bad key, out of bounds, no receive posted) puts
 * the queue pair in the error state: every later and outstanding request
 * completes with an error ("flushed"), on both sides.
 */
#ifndef MULTIFD_VERBS_H
#define MULTIFD_VERBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mfd__vqp;

/* A registered memory region. */
struct mfd__vmr {
	void *addr;
	size_t len;
	uint32_t lkey, rkey;
	void *handle; /* the implementation's */
};

enum mfd__vwc_op {
	MFD__VWC_SEND = 1,
	MFD__VWC_RECV,
	MFD__VWC_WRITE,
};

/* A work completion. */
struct mfd__vwc {
	uint64_t wr_id;
	int status;   /* 0, or -errno: -EACCES remote access (key or bounds),
		       * -ENOBUFS receiver not ready, -ECONNRESET flushed */
	int op;	      /* enum mfd__vwc_op */
	uint32_t len; /* bytes received (RECV) */
};

struct mfd__verbs_ops {
	const char *name;
	/* remote_write: the peer may RDMA WRITE into it (its rkey). */
	int (*reg_mr)(struct mfd__vqp *qp, void *addr, size_t len,
		      bool remote_write, struct mfd__vmr *out);
	void (*dereg_mr)(struct mfd__vqp *qp, struct mfd__vmr *mr);
	int (*post_send)(struct mfd__vqp *qp, uint64_t wr_id, const void *buf,
			 uint32_t len, uint32_t lkey);
	int (*post_recv)(struct mfd__vqp *qp, uint64_t wr_id, void *buf,
			 uint32_t len, uint32_t lkey);
	int (*post_write)(struct mfd__vqp *qp, uint64_t wr_id, const void *buf,
			  uint32_t len, uint32_t lkey, uint64_t raddr,
			  uint32_t rkey);
	/* Up to n completions; waits up to timeout_ms (-1: forever) for the
	 * first. Returns the count, 0 on timeout, or -errno. */
	int (*poll)(struct mfd__vqp *qp, struct mfd__vwc *wc, int n,
		    int timeout_ms);
	/* Any thread: moves the queue pair to the error state, flushing
	 * everything outstanding and waking a blocked poll, on both sides. */
	void (*disconnect)(struct mfd__vqp *qp);
	/* Releases; only when no other thread uses the queue pair. */
	void (*destroy)(struct mfd__vqp *qp);
	/* A pollable fd that turns readable when a completion may be
	 * waiting, or -1. */
	int (*fd)(struct mfd__vqp *qp);
};

/* rdma-core, with rdma_cm connection setup (verbs_ibv.c). */
extern const struct mfd__verbs_ops mfd__ibv_ops;
/* -ENODEV, with a message, when no RDMA device is present. */
int mfd__ibv_probe(void);
int mfd__ibv_connect(const char *host, const char *port, uint64_t timeout_ms,
		     struct mfd__vqp **out);
struct mfd__ibv_listener;
int mfd__ibv_listen(const char *host, const char *port, int backlog,
		    struct mfd__ibv_listener **out, char *bound_port,
		    size_t portlen);
int mfd__ibv_accept(struct mfd__ibv_listener *l, uint64_t timeout_ms,
		    const int *cancel, struct mfd__vqp **out);
void mfd__ibv_listener_close(struct mfd__ibv_listener *l);

#endif /* MULTIFD_VERBS_H */
