/* SPDX-License-Identifier: MIT */
/*
 * An in-memory RC fabric for tests: two connected queue pairs in one
 * process. Work requests execute when posted (which keeps RC order);
 * every RDMA WRITE is checked against the target's registered regions
 * (rkey, remote-write access, bounds) and a violation fails the request
 * with -EACCES and puts both queue pairs in the error state, as hardware
 * does. A SEND with no receive posted fails with -ENOBUFS (what a queue
 * pair without RNR retries reports), so credit bugs show.
 */
#ifndef MFD_FAKE_VERBS_H
#define MFD_FAKE_VERBS_H

#include "multifd/channels/verbs.h"

extern const struct mfd__verbs_ops fake_verbs_ops;

/* Two connected queue pairs (destroy each with ops.destroy). */
void fake_pair(struct mfd__vqp **a, struct mfd__vqp **b);
/* Fails the n-th post on qp from now (1 = the next) with err. */
void fake_fail_post(struct mfd__vqp *qp, unsigned n, int err);
enum fake_bad_write {
	FAKE_WRITE_OK = 0,
	FAKE_WRITE_BAD_RKEY, /* the key of no region */
	FAKE_WRITE_PAST_END, /* one page past the region's end */
};
/* The n-th RDMA WRITE from now, on any queue pair, targets what the sender
 * did not ask for (a sender's bug or a hostile peer's table). */
void fake_bad_write(unsigned n, enum fake_bad_write what);
/* Counters for assertions. */
unsigned fake_sends(struct mfd__vqp *qp);
unsigned fake_writes(struct mfd__vqp *qp);
unsigned fake_posted_recvs(struct mfd__vqp *qp);

#endif
