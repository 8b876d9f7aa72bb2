/* SPDX-License-Identifier: MIT */
/*
 * The source's urgent lanes after the post-copy switch (docs/protocol.md
 * 10.3 step 5): one thread per lane reads the destination's PAGE_REQs,
 * claims the pages asked for plus following ones (mfd__pc_src_claim_request)
 * and sends them at once on the same lane, flagged post-copy, straight from
 * the (stopped) guest's memory. The lane is the only writer of its
 * connection; nothing else reads it.
 *
 * Threads: start, finish and close from the migration thread; abort from
 * any thread.
 */
#ifndef MULTIFD_POSTCOPY_LANES_H
#define MULTIFD_POSTCOPY_LANES_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "multifd/channels/channel.h"
#include "multifd/postcopy_src.h"
#include "multifd/stats.h"
#include "multifd/wire.h"

struct mfd__pc_lanes;

struct mfd__pc_lane {
	struct mfd__pc_lanes *ls;
	unsigned idx;
	struct mfd__chan *chan;
	pthread_t thread;
	bool started;
	uint32_t seq, packets; /* lane thread only */
	uint64_t pages;	       /* lane thread only: PAGES' pages */
	uint8_t hdr[MFD_PKT_HDR_SIZE];
	uint64_t offs[MFD_MAX_PACKET_PAGES];
	struct iovec iov[MFD_MAX_PACKET_PAGES + 2];
};

struct mfd__pc_lanes {
	unsigned n;
	struct mfd__pc_lane lane[MFD_MAX_URGENT_LANES];
	/* Set before start. */
	struct mfd__pc_src *pc;
	struct mfd__ramblock *blocks;
	const struct mfd__wire_limits *lim; /* checks each PAGE_REQ */
	uint32_t round;			    /* the post-copy round */
	unsigned rt_prio; /* postcopy-urgent-priority (mfd__thread_urgent) */
	struct mfd__stats *st;
	void (*fail)(void *ctx, int err); /* a lane's failure */
	void *ctx;
	bool finish; /* atomic: every page is claimed, send DONE */
	int err;     /* atomic: the first lane failure */
};

/* Starts a thread per lane with a channel: 0 or -errno (the started ones
 * run on; mfd__pc_lanes_finish() or abort ends them). */
int mfd__pc_lanes_start(struct mfd__pc_lanes *ls);
/* Every page is claimed: each lane sends what it has claimed, then DONE,
 * and ends. Joins them; 0 or the first lane failure. */
int mfd__pc_lanes_finish(struct mfd__pc_lanes *ls);
/* Shuts every lane down (any thread); their threads end with an error. */
void mfd__pc_lanes_abort(struct mfd__pc_lanes *ls);
/* Joins what still runs and closes the channels. */
void mfd__pc_lanes_close(struct mfd__pc_lanes *ls);

#endif /* MULTIFD_POSTCOPY_LANES_H */
