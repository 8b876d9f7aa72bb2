/* SPDX-License-Identifier: MIT */
/*
 * The destination's post-copy state (docs/protocol.md 10.3, 10.4), apart
 * from the connections: the received bitmaps, the discarded ranges, the
 * userfaultfd registration, placement, and the fault thread that turns
 * the guest's faults into page requests. dest.c owns the connections and
 * calls in here; this file never reads or writes a socket (a request goes
 * out through the request callback).
 *
 * Wired into dest.c (its "post-copy" sections).
 *
 * Threads: mfd__pc_dst_received() and mfd__pc_dst_place() from any
 * receive worker; init, discard, switch and stop from the loader thread;
 * the fault thread is started by switch and ended by stop.
 */
#ifndef MULTIFD_POSTCOPY_DST_H
#define MULTIFD_POSTCOPY_DST_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "multifd/common/lathist.h"
#include "multifd/pcwire.h"
#include "ramblock/ramblock.h"
#include "ramblock/uffd.h"

/* Sends a PAGE_REQ for r on urgent lane `lane` (fault thread); 0 or a
 * negative code, which stops the fault thread and is kept in err. */
typedef int (*mfd__pc_request_fn)(void *ctx, unsigned lane,
				  const struct mfd__page_range *r);

struct mfd__pc_dst {
	struct mfd__ramblock *blocks; /* the destination's, not owned */
	unsigned nblocks;
	unsigned lanes; /* SETUP postcopy_lanes, >= 1 */
	/* postcopy-urgent-priority for the fault thread, and the stat it
	 * counts in when it gets it (mfd__thread_urgent). */
	unsigned rt_prio;
	uint32_t *rt_count;
	mfd__pc_request_fn request;
	void *ctx;

	struct mfd__uffd_missing u;
	/* Per block: pages in place (or known zero), pages requested. */
	struct mfd__bitmap rx[MFD_MAX_BLOCKS];
	struct mfd__bitmap asked[MFD_MAX_BLOCKS];
	uint64_t total;	  /* pages of all blocks */
	uint64_t present; /* atomic: bits set in rx */
	bool registered;
	bool prepared; /* mfd__pc_dst_prepare() done: registered, dropped */

	pthread_t fault_thread;
	bool fault_running;
	bool stop; /* atomic */
	int err;   /* atomic: the fault thread's failure, 0 */

	/* Atomic counters (fault thread). */
	uint64_t faults, requests, local_zero;

	/*
	 * Measures (docs/protocol.md 10.4). Per page, atomic: when it was
	 * first requested, how many faults wait for it and the sum of their
	 * times (20 bytes per page). At its placement: the request's
	 * latency goes into the histogram, and every waiting fault's wait
	 * into blocktime (the time guest threads spent blocked). A fault
	 * that races with the placement of its page may go uncounted.
	 */
	uint64_t *t_req[MFD_MAX_BLOCKS];
	uint64_t *t_sum[MFD_MAX_BLOCKS];
	uint32_t *waiters[MFD_MAX_BLOCKS];
	struct mfd__lathist latency; /* request to placement */
	uint64_t blocktime_ns;	     /* atomic */
};

/* 0, -EINVAL (no block, lanes 0) or -ENOMEM. */
int mfd__pc_dst_init(struct mfd__pc_dst *pc, struct mfd__ramblock *blocks,
		     unsigned nblocks, unsigned lanes,
		     mfd__pc_request_fn request, void *ctx);
/* Ends the fault thread, unregisters, frees. Safe after a failed init. */
void mfd__pc_dst_destroy(struct mfd__pc_dst *pc);
/* Ends the fault thread and unregisters (every page is in place); the
 * bitmaps and measures stay until destroy. */
void mfd__pc_dst_stop(struct mfd__pc_dst *pc);
/* After a failure: ends the fault thread (no request goes out any more)
 * and keeps the registration, so that the guest's threads that fault on
 * a missing page stay blocked instead of reading zeros. */
void mfd__pc_dst_halt(struct mfd__pc_dst *pc);
/* Before the switch: drops every page whose received bit is clear
 * (MADV_DONTNEED), so that it faults once registered and its content is
 * placed: a page populated by anything but a received packet (the
 * dest-prefault helpers, a stale copy) would otherwise refuse UFFDIO_COPY
 * with EEXIST and keep the wrong bytes. Pages that hold nothing already
 * (present nor swapped in /proc/self/pagemap) are left alone: one
 * drop per run of pages that hold something. 0, MFD_ESTATE after the
 * switch, or -errno. */
int mfd__pc_dst_drop_missing(struct mfd__pc_dst *pc);

/*
 * Once pre-copy is over (every pre-copy page placed; nothing but a
 * post-copy placement writes guest memory from now on): registers every
 * block (mfd__pc_dst_register) and drops every page not received
 * (mfd__pc_dst_drop_missing), the first time only; later calls return 0
 * at once. The destination calls it at the first DISCARD, while the
 * guest still runs on the source, so that the switch itself does neither
 * (about 25 ms of a 2 GiB guest's downtime), and again at SWITCH for a
 * migration that had no DISCARD. 0, MFD_ESTATE after the switch, or
 * -errno.
 */
int mfd__pc_dst_prepare(struct mfd__pc_dst *pc);

/* Pre-copy: a page (with contents or zero) of block b at offset arrived. */
void mfd__pc_dst_received(struct mfd__pc_dst *pc, unsigned b, uint64_t offset);

/*
 * A DISCARD payload, before the switch (registered or not): the whole
 * list is checked first
 * (mfd__discard_check against lim: no range is acted on when one is bad),
 * then each range is dropped (MADV_DONTNEED) and its received bits
 * cleared. 0, the check's code, MFD_ESTATE after the switch, or -errno.
 */
int mfd__pc_dst_discard(struct mfd__pc_dst *pc, const uint8_t *payload,
			size_t len, const struct mfd__wire_limits *lim);

/*
 * Registers every block with userfaultfd (MISSING) before the first
 * DISCARD is applied: a dropped page of a registered range is never
 * filled by anything but a placement (khugepaged, with the default
 * max_ptes_none, collapses a huge page with holes and fills them with
 * zeros, which UFFDIO_COPY could then not replace: EEXIST). Nothing may
 * touch a dropped page until the switch (it would wait for the fault
 * thread). 0 (also when registered already), -ENOTSUP, or -errno.
 */
int mfd__pc_dst_register(struct mfd__pc_dst *pc);
/* The switch: registers every block with userfaultfd (MISSING) unless
 * done already, and starts the fault thread. The caller has waited for every
 * pre-copy page. 0, -ENOTSUP where userfaultfd cannot do it, or -errno. */
int mfd__pc_dst_switch(struct mfd__pc_dst *pc);

/*
 * The pages of one post-copy packet of block b: n pages at offsets
 * (ascending, validated by the caller), their bytes back to back at src
 * (page_size each), or zero pages when src is NULL. Pages in place are
 * skipped; each run of contiguous pages not in place is placed with one
 * ioctl (docs/benchmarks.md: 2 MiB runs move 1.3-1.5x the bytes of 4 KiB
 * ones). Returns the pages this call put in place (each page is counted
 * by exactly one caller), MFD_ESTATE before the switch, or -errno.
 */
int mfd__pc_dst_place_pages(struct mfd__pc_dst *pc, unsigned b,
			    const uint64_t *offsets, unsigned n,
			    const uint8_t *src);
/* One page: 1 put in place by this call, 0 in place already, or as
 * above. */
int mfd__pc_dst_place(struct mfd__pc_dst *pc, unsigned b, uint64_t offset,
		      const void *src);

/*
 * A lazy restore from a file (multifd/filemig.c), before the switch:
 * every page of block b whose bit is clear in have (not in the file: a
 * hole, zero) counts as received, so that a fault on it is answered with
 * a zero page and nothing fetches it. Loader thread only.
 */
void mfd__pc_dst_known_zero(struct mfd__pc_dst *pc, unsigned b,
			    const struct mfd__bitmap *have);
/*
 * Claims page `page` of block b for the caller to fetch and place: true
 * when it is not in place and nobody asked for it or claimed it before
 * (the asked bitmap). A fault on a claimed page waits for the claimer's
 * placement. Any thread.
 */
bool mfd__pc_dst_claim(struct mfd__pc_dst *pc, unsigned b, uint64_t page);
/*
 * Places the n pages of block b from page `first` on (claimed by the
 * caller, or requested through the request callback), their bytes at src
 * back to back, or zero pages when src is NULL; then their bits and
 * measures. The pages this call put in place, -EEXIST when one of them
 * was populated already (nothing but its claimer fills a claimed page of
 * emptied memory: something else wrote it, and it keeps those bytes), or
 * -errno.
 */
int mfd__pc_dst_place_run(struct mfd__pc_dst *pc, unsigned b, uint64_t first,
			  uint64_t n, const uint8_t *src);

/* Every page of every block is in place. */
static inline bool mfd__pc_dst_complete(const struct mfd__pc_dst *pc)
{
	return __atomic_load_n(&pc->present, __ATOMIC_ACQUIRE) == pc->total;
}

#endif /* MULTIFD_POSTCOPY_DST_H */
