/* SPDX-License-Identifier: MIT */
/*
 * The RDMA channel protocol, above the verbs interface (verbs.h). One
 * endpoint per channel (one RC queue pair), owned by one thread at a time.
 *
 * Messages: every SEND lands in a receive buffer the peer posted. Each
 * starts with a 16-byte header (docs/protocol.md, "RDMA channels"): magic
 * "MFDR", type, credits returned, length. Flow control is by credits: a
 * side may have at most as many SENDs outstanding as the peer has receive
 * buffers posted (MFD__RDMA_RECV_SLOTS, the same on both sides); each
 * consumed and re-posted buffer is a credit returned, carried by the next
 * message or by a CREDIT message when half the slots are owed. One credit
 * is kept back for CREDIT messages so that two sides with nothing but
 * credits to say can never block each other.
 *
 * One-sided data: both sides register guest RAM as memory regions and
 * exchange their tables (REGIONS: address, length, rkey). Uncompressed
 * pages are written with RDMA WRITE straight into the destination's
 * region, then announced by a DATA message carrying the PAGES header and
 * offsets exactly as on TCP. RC ordering places the writes before the
 * announcement arrives; the destination validates the announcement as it
 * validates a PAGES header before it accepts that the pages arrived.
 * Compressed packets and device state travel as DATA messages.
 */
#ifndef MULTIFD_RDMA_H
#define MULTIFD_RDMA_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "multifd/channels/rdma_wire.h"
#include "multifd/channels/verbs.h"

#define MFD__RDMA_MAX_WRITES 64 /* RDMA WRITEs in flight */

struct mfd__rdma_ep {
	const struct mfd__verbs_ops *ops;
	struct mfd__vqp *qp;
	int timeout_ms; /* for every wait; -1 none */

	uint8_t *rbuf, *sbuf; /* RECV_SLOTS slots each */
	struct mfd__vmr rmr, smr;
	unsigned credits;   /* SENDs the peer can take now */
	unsigned owed;	    /* re-posted receive buffers not yet announced */
	unsigned sends_out; /* SENDs without a completion yet */
	unsigned snext;	    /* next send slot */
	unsigned writes_out;

	/* Received, not yet consumed, in arrival order. */
	uint32_t ready[MFD__RDMA_RECV_SLOTS];
	uint32_t ready_len[MFD__RDMA_RECV_SLOTS];
	uint16_t ready_type[MFD__RDMA_RECV_SLOTS];
	unsigned ready_head, ready_n;
	/* Partly consumed DATA message (the stream API). */
	int cur_slot;
	uint32_t cur_off, cur_len;

	struct mfd__vmr local[MFD__RDMA_MAX_REGIONS];
	unsigned nlocal;
	struct mfd__rdma_region remote[MFD__RDMA_MAX_REGIONS];
	unsigned nremote;
	uint64_t reg_ns; /* time spent registering memory */
	int error;	 /* sticky */
	unsigned fences; /* FENCE messages received, not yet waited for */

	/* Threaded mode (channels): a poller thread handles every
	 * completion under lock and bumps gen; the callers hold lock and
	 * wait on cv instead of polling. Off for the bare protocol. */
	bool threaded;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	unsigned gen;
};

/* Takes qp: registers the message buffers and posts every receive. */
int mfd__rdma_ep_init(struct mfd__rdma_ep *ep, const struct mfd__verbs_ops *ops,
		      struct mfd__vqp *qp, int timeout_ms);
/* Deregisters everything and destroys the queue pair. */
void mfd__rdma_ep_destroy(struct mfd__rdma_ep *ep);

/* Registers [addr, addr+len) for the peer to write (guest RAM); returns
 * its index in this side's table. Time is added to ep->reg_ns. */
int mfd__rdma_register(struct mfd__rdma_ep *ep, void *addr, size_t len);
/* Sends this side's table; receives the peer's (exactly one each). */
int mfd__rdma_send_regions(struct mfd__rdma_ep *ep);
int mfd__rdma_recv_regions(struct mfd__rdma_ep *ep);

/* One DATA message of len <= MFD__RDMA_SLOT_SIZE - header, gathered from
 * iov. Waits for a credit. */
int mfd__rdma_send_msg(struct mfd__rdma_ep *ep, const struct iovec *iov,
		       int iovcnt);
/* The next DATA message into buf (cap bytes); *len its length.
 * MFD_ELENGTH when it does not fit. */
int mfd__rdma_recv_msg(struct mfd__rdma_ep *ep, void *buf, size_t cap,
		       size_t *len);

/* RDMA WRITE of len bytes at local (inside a registered region) to
 * offset off of the peer's region ri. Bounds and the region are checked
 * here first (MFD_EBLOCK, MFD_EOFFSET); the fabric checks them again. */
int mfd__rdma_write(struct mfd__rdma_ep *ep, unsigned ri, uint64_t off,
		    const void *local, size_t len);
/* Waits until every WRITE posted so far has completed. */
int mfd__rdma_write_flush(struct mfd__rdma_ep *ep);

/* The stream view used by the channel ops: bytes cut into DATA messages. */
int mfd__rdma_sendv(struct mfd__rdma_ep *ep, struct iovec *iov, int iovcnt);
int mfd__rdma_recvv(struct mfd__rdma_ep *ep, struct iovec *iov, int iovcnt);

/* FENCE: tells the peer this side's round is applied; waits for one. */
int mfd__rdma_send_fence(struct mfd__rdma_ep *ep);
int mfd__rdma_wait_fence(struct mfd__rdma_ep *ep);

struct mfd__chan;
/* A channel over qp (taken, destroyed with the channel): the stream ops,
 * the one-sided page ops and a poller thread. peer names it in messages. */
int mfd__rdma_chan_new(const struct mfd__verbs_ops *ops, struct mfd__vqp *qp,
		       const char *peer, struct mfd__chan **out);

#endif /* MULTIFD_RDMA_H */
