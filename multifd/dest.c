/* SPDX-License-Identifier: MIT */
/*
 * Destination side: accept the channels, check every packet, place pages
 * straight into guest memory, keep rounds apart with a barrier, verify.
 *
 * Threads: the loader thread accepts the connections and then reads the
 * main channel; one receive worker per data channel. Every byte from the
 * network is untrusted: headers and offsets are validated completely before
 * any payload byte is read into guest memory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "multifd/compress/codec.h"
#include "multifd/channels/tls.h"
#include "multifd/admit.h"
#include "multifd/filemig.h"
#include "multifd/ctl.h"
#include "multifd/devload.h"
#include "multifd/postcopy_dst.h"
#include "multifd/resume.h"
#include "multifd/session.h"
#include "ramblock/prefault.h"
#include "multifd/announcer.h"

struct mfd_dest;

struct recv_worker {
	struct mfd_dest *d;
	unsigned idx;
	pthread_t thread;
	bool started;
	struct mfd__chan *chan;
	struct mfd_data_grammar g; /* where this channel is in its grammar */
	bool exited;		   /* atomic: the worker has ended */
	bool urgent;		   /* a post-copy urgent lane */
	bool lowered;		   /* postcopy-bulk-nice applied */
	/* Post-copy: packet_pages pages, where a flagged packet lands before
	 * UFFDIO_COPY places it. */
	uint8_t *stage;
	/* Degraded channels (protocol 7.7): lost, under d->lock: the
	 * channel broke and the worker left it (applied: the last round
	 * whose SYNC it applied); kill: the source dropped it (atomic);
	 * told: CHAN_LOST sent (loader thread); src_lost: the source's
	 * CHAN_LOST read (loader thread). */
	bool lost, kill, told, src_lost;
	uint32_t applied;
	uint32_t inflight; /* pages of the packet being read into memory */
	uint32_t inflight_block;
	uint64_t pages, packets; /* PAGES received whole on this channel */
	/* With MFD_FEAT_ZSTD; codec.out receives the compressed payload. */
	struct mfd__codec codec;
	uint64_t offsets[MFD_MAX_PACKET_PAGES];
	struct iovec iov[MFD_MAX_PACKET_PAGES];
};

struct mfd_dest {
	struct mfd__session ss; /* config, blocks, thread, error, stats */
	mfd_dest_hooks hooks;
	struct mfd__wire_limits lim;
	uint32_t zstd_window_log; /* the source's zstd-long, from SETUP */

	struct mfd__listener lst;
	struct mfd__admitq aq; /* pending connections: loader thread */

	pthread_mutex_t lock; /* guards main and w for shutdown from others */
	struct mfd__chan *main;
	struct recv_worker *w;
	unsigned n;
	struct mfd__barrier barrier;
	unsigned ndone; /* atomic: channels that reached DONE */
	unsigned nlost; /* under lock: channels lost (degraded) */
	/* Degraded channels: rounds every live channel has applied (atomic,
	 * raised by the workers past each barrier), and how many of them
	 * the source has been told with ROUND (loader thread). */
	uint32_t synced, synced_told;
	/* Round cost: when the barrier of round synced - 1 passed (atomic,
	 * mfd__now_ns(), by the worker that raised synced). */
	uint64_t synced_ns;
	/* The rounds a worker reaching the barrier will have applied past
	 * it (its grammar's round; the same for all), for the barrier's
	 * completion (atomic). */
	uint32_t arriving;
	/* The last barrier's rehash of chunk digests (ns; written by the
	 * barrier's last arrival, read after the workers are joined). */
	uint64_t chunks_ns;
	uint32_t final_round; /* atomic: from END, MFD_ROUND_UNKNOWN before */
	uint64_t rx_packets;  /* atomic: packets of any type completely read,
				 the progress that bounded waits look at */
	bool told; /* an ERROR went to the source: never a second one */
	uint64_t features;
	uint8_t session[16];
	int wake_fd; /* eventfd: dest_fail wakes the loader thread */
	/*
	 * Received-map, one bit per page of each block: set when a page with
	 * contents was written there, i.e. the page may hold non-zero data.
	 * A zero page is written only where its bit is set: the registered
	 * memory starts zero. Atomic word operations: channels write
	 * different pages of one round, which may share a word; the round
	 * barrier orders the rounds.
	 */
	uint64_t *recvd[MFD_MAX_BLOCKS];

	struct mfd__devload dl;	  /* device state (devload.c) */
	struct mfd__prefault pf;  /* dest-prefault = ahead */
	struct mfd__announcer an; /* after the guest runs (announce.c) */
	mfd_handover ho;	  /* under lock: what this side knows */

	/* ---- post-copy (postcopy_dst.c; protocol 10) ---- */
	struct mfd__pc_dst pc; /* kept after a load: its measures */
	bool pc_up;	       /* pc initialised (under lock) */
	unsigned nlanes;       /* urgent lanes, from SETUP */
	unsigned nw;	       /* workers: n data channels, then the lanes */
	uint32_t pc_round;     /* atomic: SWITCH's round; UNKNOWN before */
	uint32_t last_round;   /* the last ROUND read + 1 (main loop) */
	uint32_t applied;      /* atomic: rounds whose barrier has passed */
	bool lane_done[MFD_MAX_URGENT_LANES]; /* atomic: DONE read */
	uint64_t t_switch;

	/* ---- resumable pre-copy (resume.c; protocol 7.8) ---- */
	struct mfd__rs_dst rs; /* with MFD_FEAT_RESUME: what arrived when */
	int rs_broken;	       /* atomic: the break that paused the load */
	/* postcopy-paused: the fault thread's requests wait (req_paused,
	 * atomic) and are sent again at the resume; req_lock orders its
	 * sends against the lanes' close and replacement. */
	pthread_mutex_t req_lock;
	bool req_paused;
};

/* finish_load(): the connections broke, the load is paused. */
#define LOAD_PAUSED 2

/* dest-prefault = ahead: how far ahead of the receive front, how many. */
#define PREFAULT_WINDOW	 (256ULL << 20)
#define PREFAULT_THREADS 2

static void dest_fail_cb(void *ctx, int err);
static void note_synced(mfd_dest *d, uint32_t rounds);

int mfd_dest_new(mfd_dest **out, const mfd_config *cfg,
		 const mfd_dest_hooks *hooks)
{
	if (!out)
		return -EINVAL;
	mfd_dest *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	mfd__session_init(&d->ss, cfg);
	if (hooks)
		d->hooks = *hooks;
	d->lst.fd = -1;
	d->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (d->wake_fd < 0) {
		int err = -errno;
		free(d);
		return err;
	}
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->req_lock, NULL);
	mfd__barrier_init(&d->barrier, 1);
	d->final_round = MFD_ROUND_UNKNOWN;
	d->pc_round = MFD_ROUND_UNKNOWN;
	mfd__devload_init(&d->dl, &d->lock, dest_fail_cb, d);
	mfd__announcer_init(&d->an);
	*out = d;
	return 0;
}

void mfd_dest_free(mfd_dest *d)
{
	if (!d)
		return;
	if (d->ss.running) {
		mfd_dest_cancel(d);
		mfd_dest_wait(d);
	}
	mfd__announcer_destroy(&d->an); /* stops the rounds still due */
	if (d->pc_up)
		mfd__pc_dst_destroy(&d->pc);
	mfd__listener_close(&d->lst);
	mfd__session_destroy(&d->ss);
	mfd__barrier_destroy(&d->barrier);
	mfd__devload_destroy(&d->dl);
	close(d->wake_fd);
	pthread_mutex_destroy(&d->lock);
	pthread_mutex_destroy(&d->req_lock);
	free(d);
}

/* ---- device state (devload.c) ---- */
int mfd_dest_add_device(mfd_dest *d, const char *name,
			const mfd_device_ops *ops, void *opaque)
{
	if (!d || !name || !ops)
		return -EINVAL;
	if (d->ss.running || d->ss.st.phase != MFD_PHASE_NONE)
		return MFD_ESTATE;
	return mfd__devset_add(&d->dl.set, name, ops, opaque);
}
/* ---- end device state ---- */

int mfd_dest_add_block(mfd_dest *d, const char *name, void *host, uint64_t size,
		       uint32_t page_size)
{
	if (!d)
		return -EINVAL;
	return mfd__session_add_block(&d->ss, name, host, size, page_size);
}

/* Any thread: record the cause and unblock every thread of the load. */
static void dest_fail(mfd_dest *d, int err)
{
	mfd__session_fail(&d->ss, err);
	mfd__barrier_abort(&d->barrier);
	pthread_mutex_lock(&d->lock);
	for (unsigned i = 0; d->w && i < d->nw; i++)
		if (d->w[i].chan)
			d->w[i].chan->ops->shutdown(d->w[i].chan, SHUT_RDWR);
	mfd__devload_abort(&d->dl, err); /* receivers waiting for room */
	pthread_mutex_unlock(&d->lock);
	/* The loader thread polls this beside the main channel; the main
	 * channel itself stays whole so that it can still tell the source
	 * why, and close without a reset. */
	uint64_t one = 1;
	if (write(d->wake_fd, &one, sizeof(one)) < 0)
		mfd__warn("eventfd: %s", strerror(errno));
}

static void dest_fail_cb(void *ctx, int err)
{
	mfd_dest *d = ctx;
	if (!mfd__session_check(&d->ss))
		mfd__err("device state: %s", mfd_strerror(err));
	dest_fail(d, err);
}

/* ---- post-copy: receive into the staging buffer, place atomically ---- */

/*
 * A post-copy packet (protocol 10.4): the payload lands in the worker's
 * staging buffer (decompressed there with zstd), then every page not yet
 * in place is placed with UFFDIO_COPY, every zero page with
 * UFFDIO_ZEROPAGE. A page in place already (requested and placed, or
 * written by the guest) is left as it is.
 */
static int recv_placed(struct recv_worker *w, const struct mfd__pkt_hdr *h,
		       size_t olen)
{
	mfd_dest *d = w->d;
	struct mfd__ramblock *rb = &d->ss.blocks[h->block];
	uint64_t len = (uint64_t)h->count * rb->page_size;
	struct iovec iov = { .iov_base = w->stage, .iov_len = len };
	int ret = 0;
	if (!w->urgent && !w->lowered) { /* postcopy-bulk-nice */
		w->lowered = true;
		if (d->ss.cfg.postcopy_bulk_nice)
			(void)mfd__thread_lower(
				0, (int)d->ss.cfg.postcopy_bulk_nice);
	}
	if (h->flags & MFD_PKT_F_ZSTD) {
		if ((ret = w->chan->ops->recv(w->chan, w->codec.out,
					      h->payload_len)))
			return ret == -ECONNRESET ? MFD_ETRUNCATED : ret;
		if (h->count &&
		    (ret = w->codec.ops->decompress(&w->codec, w->codec.out,
						    h->payload_len, &iov, 1)))
			return ret;
	} else if (len && (ret = w->chan->ops->recv(w->chan, w->stage, len))) {
		return ret == -ECONNRESET ? MFD_ETRUNCATED : ret;
	}
	int placed = mfd__pc_dst_place_pages(&d->pc, h->block, w->offsets,
					     h->count, w->stage);
	if (placed >= 0 && h->zero_count)
		ret = mfd__pc_dst_place_pages(&d->pc, h->block,
					      w->offsets + h->count,
					      h->zero_count, NULL);
	if (placed < 0 || ret < 0)
		return placed < 0 ? placed : ret;
	if (mfd__test_dest_pc_arrived)
		mfd__test_dest_pc_arrived(h->block, h->count + h->zero_count,
					  placed + (h->zero_count ? ret : 0));
	w->pages += (uint64_t)h->count + h->zero_count; /* END's totals */
	w->packets++;
	STAT_ADD(d->ss.st.wire_bytes, MFD_PKT_HDR_SIZE + olen + h->payload_len);
	if (w->urgent)
		STAT_ADD(d->ss.st.lane_bytes,
			 MFD_PKT_HDR_SIZE + olen + h->payload_len);
	STAT_ADD(d->ss.st.pages, (uint64_t)h->count + h->zero_count);
	STAT_ADD(d->ss.st.zero_pages, h->zero_count);
	STAT_ADD(d->ss.st.packets, 1);
	return 0;
}

/* A worker that reads a flagged PAGES before the loader has handled
 * SWITCH waits for it, at most io-timeout. */
static int wait_switch(mfd_dest *d, uint32_t *round)
{
	uint64_t deadline = mfd__deadline_ms(d->ss.cfg.io_timeout_ms);
	for (;;) {
		uint32_t r = __atomic_load_n(&d->pc_round, __ATOMIC_ACQUIRE);
		if (r != MFD_ROUND_UNKNOWN) {
			*round = r;
			return 0;
		}
		int err = mfd__session_check(&d->ss);
		if (err)
			return err;
		if (mfd__now_ns() > deadline)
			return MFD_EUNEXPECTED; /* flagged, and no SWITCH */
		struct timespec ts = { 0, 100000 };
		nanosleep(&ts, NULL);
	}
}

/* The fault thread's request, on its lane (protocol 10.4). The lane's
 * worker only reads: one writer. */
static bool pause_absorb(mfd_dest *d, int ret);

/* One PAGE_REQ on lane `lane`, under req_lock. */
static int send_request_locked(mfd_dest *d, unsigned lane,
			       const struct mfd__page_range *r)
{
	uint8_t msg[MFD_RANGE_SIZE];
	struct mfd__page_range q = *r;
	if (mfd__test_dest_request)
		mfd__test_dest_request(&q);
	mfd__page_req_encode(&q, msg);
	return mfd__ctl_send(d->w[d->n + lane].chan, MFD_CTL_PAGE_REQ, msg,
			     sizeof(msg));
}

static int send_request(void *ctx, unsigned lane,
			const struct mfd__page_range *r)
{
	mfd_dest *d = ctx;
	/* After the lane's DONE every page is on its way: nothing to ask. */
	if (__atomic_load_n(&d->lane_done[lane], __ATOMIC_ACQUIRE))
		return 0;
	pthread_mutex_lock(&d->req_lock);
	/* postcopy-paused: asked and not here, so asked again at the
	 * resume (mfd__rs_dst_pc_outstanding). */
	int ret = __atomic_load_n(&d->req_paused, __ATOMIC_ACQUIRE)
			  ? 0
			  : send_request_locked(d, lane, r);
	pthread_mutex_unlock(&d->req_lock);
	if (ret && pause_absorb(d, ret))
		return 0;
	if (ret && !__atomic_load_n(&d->lane_done[lane], __ATOMIC_ACQUIRE)) {
		if (!mfd__session_check(&d->ss))
			mfd__err("urgent lane %u: %s", lane, mfd_strerror(ret));
		dest_fail(d, ret);
		return ret;
	}
	return 0;
}
/* ---- end post-copy receive ---- */

/*
 * Verify on a byte stream (MFD__VERIFY_PIECE): the payload (w->iov, the
 * packet's pages with contents) lands piece by piece, and each piece's
 * pages are hashed as soon as they are in guest memory.
 */
static int recv_hashed(struct recv_worker *w, const struct mfd__pkt_hdr *h,
		       int iovcnt)
{
	struct mfd__ramblock *rb = &w->d->ss.blocks[h->block];
	uint32_t per = mfd__verify_piece_pages(rb->page_size);
	struct mfd__iov_cursor cur = { w->iov, iovcnt, 0 };
	struct iovec piece[MFD__VERIFY_PIECE_IOV];
	for (uint32_t i = 0; i < h->count; i += per) {
		uint32_t k = h->count - i < per ? h->count - i : per;
		size_t left = k * rb->page_size;
		while (left) {
			size_t took;
			int cnt = mfd__iov_cut(&cur, left, piece,
					       MFD__VERIFY_PIECE_IOV, &took);
			int ret = w->chan->ops->recvv(w->chan, piece, cnt);
			if (ret)
				return ret;
			left -= took;
		}
		if (mfd__test_dest_placed)
			mfd__test_dest_placed(h->block, rb->host,
					      w->offsets + i, k);
		for (uint32_t j = i; j < i + k; j++)
			mfd__session_page_digest(&w->d->ss, h->block,
						 w->offsets[j], false);
	}
	return 0;
}

/* The barrier's last arrival: every worker has placed the round's pages
 * and waits; the chunks of the page digests they recorded are rehashed
 * now (the final round's while the source makes its own digests), so
 * that END rehashes at most what was placed since (after a resume). */
static void round_placed(void *arg)
{
	mfd_dest *d = arg;
	/* The source waits for this round's ROUND before its own digests
	 * (degraded channels): it goes first, so that the two sides' work
	 * overlaps. */
	if (d->features & MFD_FEAT_DEGRADE)
		note_synced(d, __atomic_load_n(&d->arriving, __ATOMIC_RELAXED));
	uint64_t t0 = mfd__now_ns();
	mfd__session_chunks_update(&d->ss);
	d->chunks_ns = mfd__now_ns() - t0;
}

static int recv_pages(struct recv_worker *w, const struct mfd__pkt_hdr *h)
{
	mfd_dest *d = w->d;
	int ret = mfd__pkt_validate(h, &d->lim);
	if (ret)
		return ret;
	size_t olen = mfd__pkt_offsets_size(h);
	if ((ret = w->chan->ops->recv(w->chan, w->offsets, olen)))
		return ret == -ECONNRESET ? MFD_ETRUNCATED : ret;
	if ((ret = mfd__pkt_offsets_decode(h, w->offsets, &d->lim)))
		return ret;
	if (h->flags & MFD_PKT_F_POSTCOPY)
		return recv_placed(w, h, olen);

	/* Every offset is now known to be a page inside the block: the
	 * payload goes straight into guest memory, contiguous pages as one
	 * iovec (read into them, or decompressed into them). */
	struct mfd__ramblock *rb = &d->ss.blocks[h->block];
	uint64_t psize = rb->page_size;
	int iovcnt =
		mfd__pages_iov(rb->host, w->offsets, h->count, psize, w->iov);
	w->inflight = h->count; /* these may be partly written from here */
	w->inflight_block = h->block;
	bool verify = d->features & MFD_FEAT_VERIFY;
	bool pieces = verify && iovcnt && !(h->flags & MFD_PKT_F_ZSTD) &&
		      !w->chan->ops->recv_payload;
	if (h->flags & MFD_PKT_F_ZSTD) {
		/* Validated: payload_len <= the bound for packet_pages
		 * pages of 4 KiB, which is the size of codec.out. */
		if ((ret = w->chan->ops->recv(w->chan, w->codec.out,
					      h->payload_len)))
			return ret == -ECONNRESET ? MFD_ETRUNCATED : ret;
		uint64_t t0 = mfd__thread_cpu_ns();
		ret = w->codec.ops->decompress(&w->codec, w->codec.out,
					       h->payload_len, w->iov, iovcnt);
		if (ret)
			return ret;
		STAT_ADD(d->ss.st.compress_ns, mfd__thread_cpu_ns() - t0);
		STAT_ADD(d->ss.st.compressed_bytes, h->payload_len);
		STAT_ADD(d->ss.st.compress_in_bytes, h->count * psize);
	} else if (pieces) {
		if ((ret = recv_hashed(w, h, iovcnt)))
			return ret == -ECONNRESET ? MFD_ETRUNCATED : ret;
	} else if (iovcnt && (ret = mfd__chan_recv_payload(w->chan, h->block,
							   w->iov, iovcnt))) {
		return ret == -ECONNRESET ? MFD_ETRUNCATED : ret;
	}
	/* Verify: the digest of each page as it now is in guest memory,
	 * while it is in this core's cache. This channel owns these pages
	 * until the round's barrier. */
	if (!pieces && mfd__test_dest_placed)
		mfd__test_dest_placed(h->block, rb->host, w->offsets, h->count);
	for (uint32_t i = 0; verify && !pieces && i < h->count; i++)
		mfd__session_page_digest(&d->ss, h->block, w->offsets[i],
					 false);
	/* Zero pages: only where a page with contents landed before. */
	uint64_t *map = d->recvd[h->block];
	uint32_t shift = rb->page_shift;
	for (uint32_t i = 0; i < h->count; i++) {
		uint64_t pg = w->offsets[i] >> shift;
		__atomic_fetch_or(&map[pg >> 6], 1ULL << (pg & 63),
				  __ATOMIC_RELAXED);
	}
	for (uint32_t i = 0; i < h->zero_count; i++) {
		uint64_t off = w->offsets[h->count + i], pg = off >> shift;
		uint64_t bit = 1ULL << (pg & 63);
		bool written = false;
		if (__atomic_load_n(&map[pg >> 6], __ATOMIC_RELAXED) & bit) {
			memset(rb->host + off, 0, psize);
			__atomic_fetch_and(&map[pg >> 6], ~bit,
					   __ATOMIC_RELAXED);
			written = true;
		}
		/* A page left as it was is checked, not assumed: memory
		 * that was not zero at the start shows in the digest. */
		if (verify)
			mfd__session_page_digest(
				&d->ss, h->block, off,
				written || mfd__buffer_is_zero(rb->host + off,
							       psize));
	}

	if (d->pc_up) /* post-copy: what is here needs no request */
		for (uint32_t i = 0; i < h->count + h->zero_count; i++)
			mfd__pc_dst_received(&d->pc, h->block, w->offsets[i]);
	if (d->rs.nblocks) /* resume: these are here whole */
		mfd__rs_dst_note(&d->rs, h->block, shift, w->offsets,
				 h->count + h->zero_count, h->round);
	w->inflight = 0;
	w->pages += (uint64_t)h->count + h->zero_count;
	w->packets++;
	if (h->count)
		mfd__prefault_note(&d->pf, h->block,
				   w->offsets[h->count - 1] + psize);
	STAT_ADD(d->ss.st.wire_bytes, MFD_PKT_HDR_SIZE + olen + h->payload_len);
	STAT_ADD(d->ss.st.pages, (uint64_t)h->count + h->zero_count);
	STAT_ADD(d->ss.st.zero_pages, h->zero_count);
	STAT_ADD(d->ss.st.packets, 1);
	return 0;
}

static int recv_loop(struct recv_worker *w)
{
	mfd_dest *d = w->d;
	uint8_t raw[MFD_PKT_HDR_SIZE];
	struct mfd__pkt_hdr h;
	int ret;

	for (;;) {
		if ((ret = w->chan->ops->recv(w->chan, raw, sizeof(raw))))
			return ret;
		if ((ret = mfd__pkt_decode(raw, &h)))
			return ret;
		/* The grammar is checked as each header is read: a DONE
		 * without its SYNC fails here, not at END. */
		w->g.final_round =
			__atomic_load_n(&d->final_round, __ATOMIC_ACQUIRE);
		if (h.type == MFD_PKT_PAGES && (h.flags & MFD_PKT_F_POSTCOPY) &&
		    (d->features & MFD_FEAT_POSTCOPY) &&
		    w->g.postcopy_round == MFD_ROUND_UNKNOWN &&
		    (ret = wait_switch(d, &w->g.postcopy_round)))
			return ret;
		if ((ret = mfd__grammar_step(&w->g, &h)))
			return ret;
		switch (h.type) {
		case MFD_PKT_PAGES:
			if ((ret = recv_pages(w, &h)))
				return ret;
			STAT_ADD(d->rx_packets, 1);
			break;
		case MFD_PKT_SYNC:
			STAT_ADD(d->ss.st.wire_bytes, MFD_PKT_HDR_SIZE);
			STAT_ADD(d->rx_packets, 1);
			/* No channel starts round r+1 until every channel has
			 * applied all of round r: an old copy of a page can
			 * never land after a newer one. Bounded by io-timeout
			 * without progress, and by any channel's end or
			 * failure. */
			__atomic_store_n(&d->arriving, w->g.round,
					 __ATOMIC_RELAXED);
			if ((ret = mfd__barrier_wait(&d->barrier)))
				return ret;
			/* Every page of round h.round is in place (SWITCH
			 * waits for this). */
			for (uint32_t a = __atomic_load_n(&d->applied,
							  __ATOMIC_ACQUIRE);
			     a < h.round + 1 &&
			     !__atomic_compare_exchange_n(
				     &d->applied, &a, h.round + 1, false,
				     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);)
				;
			if (d->features &
			    (MFD_FEAT_DEGRADE | MFD_FEAT_ROUND_COST))
				note_synced(d, w->g.round);
			/* One-sided transports: the source may now write
			 * round r+1. */
			if (w->chan->ops->round_applied &&
			    (ret = w->chan->ops->round_applied(w->chan)))
				return ret;
			break;
		case MFD_PKT_DEVICE: /* device state: not part of rounds */
			if ((ret = mfd__devload_pkt(&d->dl, w->chan, &h)))
				return ret;
			STAT_ADD(d->rx_packets, 1);
			break;
		case MFD_PKT_DONE:
			STAT_ADD(d->ss.st.wire_bytes, MFD_PKT_HDR_SIZE);
			if (w->urgent) { /* not part of the rounds */
				__atomic_store_n(&d->lane_done[w->idx - d->n],
						 true, __ATOMIC_RELEASE);
				return 0;
			}
			/* No barrier can be complete from now on: a channel
			 * that sends another SYNC fails at once. */
			mfd__barrier_leave(&d->barrier);
			__atomic_fetch_add(&d->ndone, 1, __ATOMIC_RELEASE);
			return 0;
		}
	}
}

static bool leave_lost(struct recv_worker *w, int ret);
static int pause_reason(mfd_dest *d);

static void *recv_worker_main(void *arg)
{
	struct recv_worker *w = arg;
	/* post-copy: an urgent lane's worker places the pages a faulting
	 * guest thread waits for; it wakes ahead of busy threads. */
	int rt = w->idx >= w->d->n
			 ? mfd__thread_urgent(
				   w->d->ss.cfg.postcopy_urgent_priority,
				   &w->d->ss.st.urgent_rt_threads)
			 : 0;
	int ret = recv_loop(w);
	mfd__thread_urgent_end(rt);
	if (ret && __atomic_load_n(&w->d->rs_broken, __ATOMIC_ACQUIRE)) {
		/* Paused (resumable pre-copy): the load waits, not fails. */
	} else if (ret && leave_lost(w, ret)) {
		/* The others go on without this channel. */
	} else if (ret && pause_absorb(w->d, ret)) {
		/* The last channel broke: paused, the others stopped. */
	} else if (ret && ret != -ECANCELED) {
		if (!mfd__session_check(&w->d->ss))
			mfd__err("channel %u (%s): %s", w->idx, w->chan->peer,
				 mfd_strerror(ret));
		dest_fail(w->d, ret);
	} else if (ret) {
		dest_fail(w->d, ret);
	}
	STAT_ADD(w->d->ss.st.cpu_ns, mfd__thread_cpu_ns());
	__atomic_store_n(&w->exited, true, __ATOMIC_RELEASE);
	uint64_t one = 1; /* the loader may be waiting for this */
	if (write(w->d->wake_fd, &one, sizeof(one)) < 0)
		mfd__warn("eventfd: %s", strerror(errno));
	return NULL;
}

/* Receive workers [from, to): 0 or -errno. */
static int start_range(mfd_dest *d, unsigned from, unsigned to)
{
	int ret = 0;
	for (unsigned i = from; i < to && !ret; i++) {
		ret = -pthread_create(&d->w[i].thread, NULL, recv_worker_main,
				      &d->w[i]);
		d->w[i].started = ret == 0;
	}
	return ret;
}

/* ---- degraded channels (docs/protocol.md 7.7) ---- */

/*
 * Worker w's channel broke (or the source dropped it) in pre-copy: with
 * MFD_FEAT_DEGRADE, before END and with another channel alive, the worker
 * leaves for good instead of failing the load. It has written its last
 * byte: the pages of a packet it was reading count as written (a zero
 * page sent again later clears them), and the barrier stops counting it,
 * so the others' next round starts only after everything it wrote. The
 * loader tells the source (CHAN_LOST) the last round it applied here.
 */
static bool leave_lost(struct recv_worker *w, int ret)
{
	mfd_dest *d = w->d;
	if (!(d->features & MFD_FEAT_DEGRADE) || mfd__session_check(&d->ss) ||
	    __atomic_load_n(&d->final_round, __ATOMIC_ACQUIRE) !=
		    MFD_ROUND_UNKNOWN ||
	    !(__atomic_load_n(&w->kill, __ATOMIC_ACQUIRE) ||
	      mfd__is_transport_error(ret)))
		return false;
	pthread_mutex_lock(&d->lock);
	bool last = d->nlost + 1 >= d->n;
	if (!last) {
		d->nlost++;
		w->lost = true;
		w->applied = w->g.round ? w->g.round - 1 : MFD_ROUND_NONE;
	}
	pthread_mutex_unlock(&d->lock);
	if (last)
		return false;
	/* The pages of a packet it was reading may be partly written. */
	for (uint32_t i = 0; i < w->inflight; i++) {
		const struct mfd__ramblock *rb =
			&d->ss.blocks[w->inflight_block];
		uint64_t pg = w->offsets[i] >> rb->page_shift;
		__atomic_fetch_or(&d->recvd[w->inflight_block][pg >> 6],
				  1ULL << (pg & 63), __ATOMIC_RELAXED);
	}
	STAT_ADD(d->ss.st.channels_lost, 1);
	mfd__warn("channel %u (%s) lost after round %d: %s; the others go on",
		  w->idx, w->chan->peer,
		  w->applied == MFD_ROUND_NONE ? -1 : (int)w->applied,
		  mfd_strerror(ret));
	mfd__barrier_drop(&d->barrier);
	return true;
}

/* A worker past the barrier of round rounds - 1: every live channel has
 * applied it. The first of them wakes the loader to tell the source. */
static void note_synced(mfd_dest *d, uint32_t rounds)
{
	uint32_t cur = __atomic_load_n(&d->synced, __ATOMIC_RELAXED);
	while (cur < rounds)
		if (__atomic_compare_exchange_n(&d->synced, &cur, rounds, false,
						__ATOMIC_RELEASE,
						__ATOMIC_RELAXED)) {
			__atomic_store_n(&d->synced_ns, mfd__now_ns(),
					 __ATOMIC_RELEASE);
			uint64_t one = 1;
			if (write(d->wake_fd, &one, sizeof(one)) < 0)
				mfd__warn("eventfd: %s", strerror(errno));
			return;
		}
}

/* Loader thread, MFD_FEAT_ROUND_COST: the barrier to this answer (a later
 * round's barrier may have passed meanwhile: then from that one), and the
 * END work the barrier does not include: the devices' arcs out of
 * RESUMING (declared by the devices, else the slowest arc timed; recorded
 * with 4 simulated devices: 1.5 to 3.3 ms, each waiting for its DMA burst
 * in flight). */
static void round_cost(mfd_dest *d, struct mfd__round_answer *r)
{
	uint64_t t = __atomic_load_n(&d->synced_ns, __ATOMIC_ACQUIRE);
	uint64_t now = mfd__now_ns();
	r->cost_ns = now > t ? now - t : 0;
	if (r->cost_ns > MFD_MAX_ROUND_COST_NS)
		r->cost_ns = MFD_MAX_ROUND_COST_NS;
	uint64_t us =
		d->dl.set.n ? mfd__devset_stop_cost(&d->dl.set) / 1000 : 0;
	r->end_us = us < UINT32_MAX ? (uint32_t)us : UINT32_MAX;
}

/* Loader thread: CHAN_LOST to the source for each channel lost since. */
static int tell_lost(mfd_dest *d)
{
	int ret = 0;
	for (unsigned i = 0; i < d->n && !ret; i++) {
		struct recv_worker *w = &d->w[i];
		pthread_mutex_lock(&d->lock);
		bool lost = w->lost;
		pthread_mutex_unlock(&d->lock);
		if (!lost || w->told)
			continue;
		uint8_t msg[MFD_CHAN_LOST_SIZE];
		struct mfd__chan_lost m = { .channel = (uint16_t)i,
					    .round = w->applied };
		mfd__chan_lost_encode(&m, msg);
		ret = mfd__ctl_send(d->main, MFD_CTL_CHAN_LOST, msg,
				    sizeof(msg));
		w->told = true;
	}
	/* Then the rounds applied since (after the CHAN_LOST of a channel
	 * whose loss completed the barrier): the source waits for the final
	 * one before DONE. */
	uint32_t synced = __atomic_load_n(&d->synced, __ATOMIC_ACQUIRE);
	if (!ret && synced > d->synced_told) {
		uint8_t msg[MFD_ROUND_SIZE];
		struct mfd__round_answer r = { .round = synced - 1 };
		if (d->features & MFD_FEAT_ROUND_COST)
			round_cost(d, &r);
		mfd__round_answer_encode(&r, msg);
		ret = mfd__ctl_send(d->main, MFD_CTL_ROUND, msg, sizeof(msg));
		d->synced_told = synced;
	}
	return ret;
}

/* Loader thread: the source dropped a channel; its worker leaves it. */
static int source_lost(mfd_dest *d, const uint8_t *payload)
{
	struct mfd__chan_lost m;
	int ret = mfd__chan_lost_decode(payload, d->n, &m);
	if (!ret && !(d->features & MFD_FEAT_DEGRADE))
		ret = MFD_EUNEXPECTED;
	if (ret)
		return ret;
	struct recv_worker *w = &d->w[m.channel];
	w->src_lost = true;
	__atomic_store_n(&w->kill, true, __ATOMIC_RELEASE);
	pthread_mutex_lock(&d->lock);
	if (!w->lost && w->chan)
		w->chan->ops->shutdown(w->chan, SHUT_RDWR);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/* After END: both sides dropped the same channels. */
static int lost_agree(mfd_dest *d)
{
	for (unsigned i = 0; i < d->n; i++) {
		if (d->w[i].lost == d->w[i].src_lost)
			continue;
		mfd__err("channel %u: %s", i,
			 d->w[i].lost ? "lost here, not dropped by the source"
				      : "dropped by the source, whole here");
		return MFD_EROUND;
	}
	return 0;
}
/* ---- end degraded channels ---- */

/* A worker's exit (or a failure) signalled the loader. */
static void wake_drain(mfd_dest *d)
{
	uint64_t v;
	if (read(d->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		mfd__warn("eventfd: %s", strerror(errno));
}

/*
 * Up to 100 ms for the main channel to become readable, the wake fd
 * drained: 1 readable, 0 not yet, or the session's first error (cancel,
 * a worker's failure) or -errno of poll.
 */
static int poll_main(mfd_dest *d)
{
	struct pollfd pfd[2] = { { .fd = d->main->fd, .events = POLLIN },
				 { .fd = d->wake_fd, .events = POLLIN } };
	int n = poll(pfd, 2, 100);
	if (n < 0 && errno != EINTR)
		return -errno;
	int err = mfd__session_check(&d->ss);
	if (err)
		return err;
	if (n > 0 && pfd[1].revents)
		wake_drain(d);
	return n > 0 && pfd[0].revents ? 1 : 0;
}

static int setup_matches(mfd_dest *d, const struct mfd__setup *su, char *why,
			 size_t len)
{
	if (su->nblocks != d->ss.nblocks) {
		snprintf(why, len, "source has %u RAM blocks, destination %u",
			 su->nblocks, d->ss.nblocks);
		return MFD_ESETUP;
	}
	for (unsigned i = 0; i < su->nblocks; i++) {
		const struct mfd__block_desc *a = &su->blocks[i],
					     *b = &d->ss.descs[i];
		if (strcmp(a->name, b->name) || a->size != b->size ||
		    a->page_size != b->page_size) {
			snprintf(why, len,
				 "block %u: source '%s' %llu bytes/%u, "
				 "destination '%s' %llu bytes/%u",
				 i, a->name, (unsigned long long)a->size,
				 a->page_size, b->name,
				 (unsigned long long)b->size, b->page_size);
			return MFD_ESETUP;
		}
	}
	return 0;
}

/* A decoded SETUP against this destination's own settings and blocks:
 * 0, or the code with why filled. */
static int setup_acceptable(mfd_dest *d, const struct mfd__setup *su, char *why,
			    size_t len)
{
	if (su->features != d->features)
		return MFD_EFEATURE;
	if (!(d->features & MFD_FEAT_COMMIT)) {
		/* Without COMMIT a break after LOADED could run the guest
		 * on both sides. */
		snprintf(why, len,
			 "the source has no two-phase handover (COMMIT "
			 "feature)");
		return MFD_EFEATURE;
	}
	if ((d->features & MFD_FEAT_VERIFY) &&
	    !(d->features & MFD_FEAT_VERIFY_CHUNKS)) {
		snprintf(why, len,
			 "the source's verify sends flat block digests (an "
			 "older build without the VERIFY_CHUNKS feature)");
		return MFD_EFEATURE;
	}
	if (su->nchannels != d->n) {
		snprintf(why, len,
			 "SETUP says %u channels, the handshake said %u",
			 su->nchannels, d->n);
		return MFD_EROLE;
	}
	if (su->zstd_window_log > MFD_ZSTD_WINDOW_LOG_DEFAULT &&
	    su->zstd_window_log > d->ss.cfg.zstd_long) {
		/* The window is memory this side allocates per channel: only
		 * as much as its own config allows. */
		snprintf(why, len,
			 "the source compresses with zstd-long=%u, this "
			 "destination allows windows up to 2^%u (set zstd-long "
			 "here too)",
			 su->zstd_window_log,
			 d->ss.cfg.zstd_long > MFD_ZSTD_WINDOW_LOG_DEFAULT
				 ? d->ss.cfg.zstd_long
				 : MFD_ZSTD_WINDOW_LOG_DEFAULT);
		return MFD_ESETUP;
	}
	if ((d->features & MFD_FEAT_POSTCOPY) && !d->hooks.postcopy_run) {
		snprintf(why, len,
			 "post-copy asked, and no postcopy_run hook here");
		return MFD_EFEATURE;
	}
	if (d->features & MFD_FEAT_POSTCOPY) {
		struct mfd__uffd_missing u;
		int ret = mfd__uffd_missing_open(&u);
		mfd__uffd_missing_close(&u);
		if (ret) {
			snprintf(why, len,
				 "post-copy asked, and userfaultfd (MISSING) "
				 "is not available here: %s",
				 mfd_strerror(ret));
			return MFD_EFEATURE;
		}
	}
	if (d->dl.set.n && !(d->features & MFD_FEAT_DEVICES)) {
		/* Refused here, not with an ERROR after SETUP_OK. */
		snprintf(why, len,
			 "%u devices registered here, the session has no "
			 "DEVICES feature",
			 d->dl.set.n);
		return MFD_EDEVICE;
	}
	return setup_matches(d, su, why, len);
}

static bool channel_taken(void *ctx, uint16_t idx)
{
	mfd_dest *d = ctx;
	return d->w[idx].chan != NULL;
}

/* Accepts connections until a valid main hello arrives (strangers are
 * refused and logged), then reads SETUP and answers. */
/* The session the main channel opened: its id, features and channels. */
static void take_main(mfd_dest *d, struct mfd__chan *c,
		      const struct mfd__hello *h)
{
	memcpy(d->session, h->session, 16);
	d->features = h->features;
	/* The source chooses the channel count (1..MFD_MAX_CHANNELS, checked
	 * by the decoder); the destination follows. Atomic: read by
	 * mfd_dest_get_stats() from any thread. */
	STAT_SET(d->n, h->nchannels);
	pthread_mutex_lock(&d->lock);
	d->main = c;
	pthread_mutex_unlock(&d->lock);
}

static int accept_main(mfd_dest *d)
{
	struct mfd__chan *c;
	struct mfd__hello h;
	struct mfd__admit_want want = {
		.role = MFD_ROLE_MAIN,
		.key = &d->ss.key,
		.refuse = (d->ss.cfg.degraded_channels ? 0 : MFD_FEAT_DEGRADE) |
			  (d->ss.cfg.resume_timeout_ms ? 0 : MFD_FEAT_RESUME)
	};
	/* An incoming migration may be awaited for a long time. */
	int ret = mfd__admitq_take(&d->aq, UINT64_MAX, &want, &c, &h);
	if (ret)
		return ret;
	take_main(d, c, &h);

	struct mfd__ctl_hdr ch;
	uint8_t *payload;
	if ((ret = mfd__ctl_recv(c, &ch, &payload)))
		return ret;
	struct mfd__setup su;
	struct mfd__block_desc *descs = calloc(MFD_MAX_BLOCKS, sizeof(*descs));
	char why[512] = "";
	if (!descs)
		ret = -ENOMEM;
	else if (ch.type != MFD_CTL_SETUP)
		ret = ch.type == MFD_CTL_ERROR
			      ? mfd__ctl_peer_error(payload, ch.length,
						    "source")
			      : MFD_EUNEXPECTED;
	else if ((ret = mfd__setup_decode(payload, ch.length, &su, descs)))
		snprintf(why, sizeof(why), "malformed SETUP");
	else
		ret = setup_acceptable(d, &su, why, sizeof(why));
	free(payload);
	if (!ret) {
		d->lim.nblocks = d->ss.nblocks;
		d->lim.blocks = d->ss.descs;
		d->lim.packet_pages = su.packet_pages;
		d->lim.features = d->features;
		d->zstd_window_log = su.zstd_window_log;
		d->nlanes = su.postcopy_lanes;
		d->nw = d->n + d->nlanes;
	}
	free(descs);
	if (ret) {
		mfd__err("setup refused: %s%s%s", mfd_strerror(ret),
			 why[0] ? ": " : "", why);
		/* A source's own ERROR is not answered; a transport failure
		 * leaves nothing to tell. */
		if (ret != MFD_EREMOTE && !mfd__is_transport_error(ret))
			mfd__ctl_send_error(c, ret, "destination: %s%s%s",
					    mfd_strerror(ret),
					    why[0] ? ": " : "", why);
		/* Told (or nothing to tell): one ERROR per session. */
		d->told = true;
		return ret;
	}
	return mfd__ctl_send(c, MFD_CTL_SETUP_OK, NULL, 0);
}

static bool lane_taken(void *ctx, uint16_t idx)
{
	mfd_dest *d = ctx;
	return idx >= d->nlanes || d->w[d->n + idx].chan != NULL;
}

/* The data channels, then the urgent lanes (protocol 10.1). */
static int accept_data(mfd_dest *d)
{
	unsigned accepted = 0;
	uint64_t deadline =
		mfd__now_ns() + d->ss.cfg.connect_timeout_ms * 1000000;
	struct mfd__admit_want want = { .role = MFD_ROLE_DATA,
					.key = &d->ss.key,
					.session = d->session,
					.nchannels = (uint16_t)d->n,
					.features = d->features,
					.taken = channel_taken,
					.ctx = d };
	while (accepted < d->nw) {
		if (accepted == d->n) {
			want.role = MFD_ROLE_URGENT;
			want.taken = lane_taken;
		}
		uint64_t now = mfd__now_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		struct mfd__chan *c;
		struct mfd__hello h;
		int ret = mfd__admitq_take(
			&d->aq, (deadline - now) / 1000000 + 1, &want, &c, &h);
		if (ret)
			return ret;
		if ((ret = c->ops->set_timeout(c, d->ss.cfg.io_timeout_ms))) {
			mfd__warn("refused data connection from %s: %s",
				  c->peer, mfd_strerror(ret));
			c->ops->close(c);
			continue;
		}
		/* Read only by its worker, never polled: with TLS, many
		 * records per read(2). */
		mfd__tls_bulk_receive(c);
		pthread_mutex_lock(&d->lock);
		d->w[(want.role == MFD_ROLE_URGENT ? d->n : 0) + h.channel]
			.chan = c;
		pthread_mutex_unlock(&d->lock);
		accepted++;
	}
	return 0;
}

/* The data channels, admitted and registered in channel order (as the
 * source does); *reg_ns: the registrations' time. */
static int accept_registered(mfd_dest *d, uint64_t *reg_ns)
{
	int ret = accept_data(d);
	for (unsigned i = 0; !ret && i < d->n; i++)
		ret = mfd__chan_register_memory(d->w[i].chan, d->ss.blocks,
						d->ss.nblocks, reg_ns);
	return ret;
}

/* ---- post-copy: DISCARD and SWITCH on main (protocol 10.3) ---- */

/* Until every data channel has passed the barrier of round p - 1, at most
 * io-timeout. */
static int wait_applied(mfd_dest *d, uint32_t p)
{
	uint64_t deadline = mfd__deadline_ms(d->ss.cfg.io_timeout_ms);
	while (__atomic_load_n(&d->applied, __ATOMIC_ACQUIRE) < p) {
		int err = mfd__session_check(&d->ss);
		if (err)
			return err;
		if (mfd__now_ns() > deadline) {
			mfd__err("SWITCH(%u): the data channels did not end "
				 "round %u within io-timeout",
				 p, p - 1);
			return MFD_EBARRIER;
		}
		struct timespec ts = { 0, 200000 };
		nanosleep(&ts, NULL);
	}
	return 0;
}

/*
 * A DISCARD (before SWITCH; the source sends most while the guest still
 * runs there): checked whole, then applied once every page of the rounds
 * so far is in place (a data channel may still be placing the stale copy
 * of round p - 1), the prefault helpers stopped first (they could
 * populate a dropped page again).
 */
static int on_discard(mfd_dest *d, const uint8_t *payload, uint32_t len)
{
	uint32_t n;
	if (!(d->features & MFD_FEAT_POSTCOPY) ||
	    __atomic_load_n(&d->pc_round, __ATOMIC_ACQUIRE) !=
		    MFD_ROUND_UNKNOWN ||
	    !d->last_round)
		return MFD_EUNEXPECTED;
	int ret = mfd__discard_check(payload, len, &d->lim, &n);
	if (!ret)
		ret = wait_applied(d, d->last_round);
	if (ret)
		return ret;
	mfd__prefault_stop(&d->pf);
	/* Pre-copy is over (round p - 1 in place, nothing of round p
	 * comes): guest memory is registered and every page not received
	 * dropped now, the first time, while the guest still runs on the
	 * source, not inside the downtime at SWITCH. From here nothing fills
	 * a dropped page but a placement. */
	uint64_t t0 = mfd__now_ns();
	bool first = !d->pc.prepared;
	ret = mfd__pc_dst_prepare(&d->pc);
	uint64_t t1 = mfd__now_ns();
	if (!ret)
		ret = mfd__pc_dst_discard(&d->pc, payload, len, &d->lim);
	if (first)
		mfd__dbg("first DISCARD (%u ranges): registration and drops "
			 "%.1f ms, then %.1f ms",
			 n, (double)(t1 - t0) / 1e6,
			 (double)(mfd__now_ns() - t1) / 1e6);
	if (!ret && mfd__test_dest_discard)
		mfd__test_dest_discard(d->main);
	/* The source stops its guest once the early ones are applied. */
	return ret ? ret : mfd__ctl_send(d->main, MFD_CTL_DISCARDED, NULL, 0);
}

/*
 * SWITCH(p): once every page of round p - 1 and all device state is in,
 * the stale pages are dropped, guest memory is registered with
 * userfaultfd and the guest runs here (postcopy_run). Downtime ends here.
 */
static int on_switch(mfd_dest *d, const uint8_t *payload, uint32_t len)
{
	struct mfd__switch sw;
	uint64_t t0 = mfd__now_ns();
	if (!(d->features & MFD_FEAT_POSTCOPY) ||
	    __atomic_load_n(&d->pc_round, __ATOMIC_ACQUIRE) !=
		    MFD_ROUND_UNKNOWN)
		return MFD_EUNEXPECTED;
	if (len != MFD_SWITCH_SIZE)
		return MFD_ELENGTH;
	int ret = mfd__switch_decode(payload, &sw);
	if (ret)
		return ret;
	if (sw.round != d->last_round || !d->last_round)
		return MFD_EROUND;
	if ((ret = wait_applied(d, sw.round)))
		return ret;
	uint64_t t1 = mfd__now_ns();
	if (d->dl.set.n && (ret = mfd__devload_finish(&d->dl)))
		return ret;
	/* Every page never received must be missing for userfaultfd, or
	 * UFFDIO_COPY would refuse it (EEXIST) and the guest keep what is
	 * there. Two writers populate such pages: the prefault helpers, and
	 * khugepaged, which collapses a huge page over the holes of one
	 * partly received (max_ptes_none) and fills them with zeros; pages
	 * go unreceived when mfd_source_start_postcopy() ends round 0
	 * early. So: helpers stopped, memory registered (an armed range is
	 * not collapsed over its holes), then whatever is not received
	 * dropped, before the fault thread and the guest run. The first
	 * DISCARD did both already when there was one (on_discard). */
	if (d->ss.cfg.dest_prefault == MFD__PREFAULT_AHEAD)
		mfd__prefault_stop(&d->pf);
	if (!ret)
		ret = mfd__pc_dst_prepare(&d->pc);
	uint64_t t2 = mfd__now_ns();
	if (!ret)
		ret = mfd__pc_dst_switch(&d->pc);
	mfd__dbg("SWITCH(%u), %llu pages to come: round %u in place after "
		 "%.1f ms, devices, registration and drops %.1f ms, fault "
		 "thread %.1f ms",
		 sw.round, (unsigned long long)sw.pages, sw.round - 1,
		 (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6,
		 (double)(mfd__now_ns() - t2) / 1e6);
	if (!ret)
		ret = start_range(d, d->n, d->nw);
	if (ret) {
		mfd__err("post-copy switch: %s", mfd_strerror(ret));
		return ret;
	}
	STAT_SET(d->ss.st.postcopy_round, sw.round);
	d->t_switch = t0;
	__atomic_store_n(&d->pc_round, sw.round, __ATOMIC_RELEASE);
	STAT_SET(d->ss.st.phase, MFD_PHASE_POSTCOPY);
	if (d->hooks.postcopy_run(d->hooks.opaque) < 0) {
		mfd__err("postcopy_run hook failed");
		return MFD_EHOOK;
	}
	STAT_SET(d->ss.st.downtime_ns, mfd__now_ns() - t0);
	mfd__info("post-copy: the guest runs here from round %u, %llu pages "
		  "to come",
		  sw.round, (unsigned long long)sw.pages);
	return 0;
}
/* ---- end post-copy main ---- */

/* Reads the main channel until END; returns 0 with *end filled. */
static int main_loop(mfd_dest *d, struct mfd__end *end,
		     uint8_t (*digests)[MFD_DIGEST_SIZE])
{
	uint64_t all_done_at = 0;
	for (;;) {
		struct mfd__ctl_hdr h;
		uint8_t *payload;
		/*
		 * Main may be quiet for as long as a round lasts, but once
		 * every channel has sent DONE the source sends END at once:
		 * a main channel that stays silent (stalled, or its source
		 * gone without a FIN) then fails the load within io-timeout
		 * instead of holding the destination forever.
		 */
		int ready = poll_main(d);
		if (__atomic_load_n(&d->rs_broken, __ATOMIC_ACQUIRE))
			return pause_reason(d); /* resumable pre-copy */
		if (ready >= 0 &&
		    (d->features & (MFD_FEAT_DEGRADE | MFD_FEAT_ROUND_COST))) {
			int err = tell_lost(d);
			if (err)
				return err;
		}
		if (ready < 0)
			return ready;
		if (ready == 0) {
			pthread_mutex_lock(&d->lock);
			unsigned ended = d->nlost;
			pthread_mutex_unlock(&d->lock);
			ended += __atomic_load_n(&d->ndone, __ATOMIC_ACQUIRE);
			if (ended < d->n)
				continue;
			if (!all_done_at)
				all_done_at = mfd__now_ns();
			if (mfd__now_ns() - all_done_at >
			    d->ss.cfg.io_timeout_ms * 1000000ULL) {
				mfd__err("no END on the main channel within "
					 "io-timeout after the last DONE");
				return -ETIMEDOUT;
			}
			continue;
		}
		/* A message has started: the rest must follow within the
		 * io-timeout set on the channel. */
		int ret = mfd__ctl_recv(d->main, &h, &payload);
		if (ret)
			return mfd__session_check(&d->ss)
				       ? mfd__session_check(&d->ss)
				       : ret;
		switch (h.type) {
		case MFD_CTL_ROUND: {
			struct mfd__round r;
			ret = mfd__round_decode(payload, &r);
			if (!ret)
				STAT_SET(d->ss.st.round, r.round);
			if (!ret)
				d->last_round = r.round + 1;
			if (!ret)
				mfd__devload_round(&d->dl);
			break;
		}
		case MFD_CTL_DISCARD: /* post-copy, before SWITCH */
			ret = on_discard(d, payload, h.length);
			break;
		case MFD_CTL_SWITCH:
			ret = on_switch(d, payload, h.length);
			break;
		case MFD_CTL_CHAN_LOST: /* degraded channels */
			ret = source_lost(d, payload);
			break;
		case MFD_CTL_DEVICE_DATA: /* device state, `main` mode */
			ret = mfd__devload_main(&d->dl, payload, h.length);
			break;
		case MFD_CTL_END:
			ret = mfd__end_decode(payload, h.length, end, digests);
			if (!ret && end->nblocks != d->ss.nblocks)
				ret = MFD_EBLOCK;
			/* Announces the final round: a later SYNC or an early
			 * DONE now fails where it is read. */
			if (!ret)
				__atomic_store_n(&d->final_round,
						 end->final_round,
						 __ATOMIC_RELEASE);
			if (!ret &&
			    !end->digests != !(d->features & MFD_FEAT_VERIFY))
				ret = MFD_EFEATURE;
			free(payload);
			return ret ? ret : 1;
		case MFD_CTL_ERROR:
			ret = mfd__ctl_peer_error(payload, h.length, "source");
			mfd__session_fail_peer(&d->ss, ret);
			break;
		default: /* a known type, not allowed here */
			ret = MFD_EUNEXPECTED;
			break;
		}
		free(payload);
		if (ret)
			return ret;
	}
}

void (*mfd__test_dest_request)(struct mfd__page_range *r);
void (*mfd__test_dest_pc_arrived)(unsigned block, unsigned n, int placed);
void (*mfd__test_dest_discard)(struct mfd__chan *main);
void (*mfd__test_dest_placed)(unsigned block, uint8_t *host,
			      const uint64_t *offsets, uint32_t count);
void (*mfd__test_dest_handover)(struct mfd__chan *main, int step);

/*
 * After END: waits until every worker has ended (at its DONE or an error).
 * Each worker's own waits are bounded (io-timeout on its channel, at the
 * barrier and for buffer room); this bound holds even so: no packet and no
 * device byte for twice io-timeout is MFD_EDRAIN.
 */
static int wait_workers(mfd_dest *d)
{
	uint64_t seen = UINT64_MAX, since = mfd__now_ns();
	uint64_t limit = 2 * d->ss.cfg.io_timeout_ms * 1000000ULL;
	for (;;) {
		unsigned running = 0;
		for (unsigned i = 0; i < d->nw; i++)
			running += d->w[i].started &&
				   !__atomic_load_n(&d->w[i].exited,
						    __ATOMIC_ACQUIRE);
		if (!running)
			return 0;
		if (mfd__session_check(&d->ss))
			return mfd__session_check(&d->ss);
		uint64_t now = mfd__now_ns();
		uint64_t progress =
			STAT_GET(d->rx_packets) + STAT_GET(d->dl.bytes);
		if (progress != seen) {
			seen = progress;
			since = now;
		} else if (now - since > limit) {
			mfd__err("%u data channel(s) did not end within "
				 "io-timeout after END",
				 running);
			return MFD_EDRAIN;
		}
		struct pollfd pfd = { .fd = d->wake_fd, .events = POLLIN };
		if (poll(&pfd, 1, 100) > 0)
			wake_drain(d);
	}
}

static void pause_join(mfd_dest *d);

static int finish_load(mfd_dest *d)
{
	struct mfd__end end;
	uint8_t(*digests)[MFD_DIGEST_SIZE] =
		calloc(MFD_MAX_BLOCKS, MFD_DIGEST_SIZE);
	if (!digests)
		return -ENOMEM;
	int ret = main_loop(d, &end, digests);
	if (ret == 1) {
		ret = wait_workers(d);
		/* postcopy-paused after END: a connection broke before its
		 * DONE (the workers ended at its shutdown). */
		if (!ret)
			ret = __atomic_load_n(&d->rs_broken, __ATOMIC_ACQUIRE);
	}
	if (ret < 0 && pause_absorb(d, ret)) { /* resumable pre-copy */
		pause_join(d);
		free(digests);
		return LOAD_PAUSED;
	}
	/* Every worker has ended at DONE or an error, or ends now that
	 * dest_fail shuts its channel down and aborts its waits. */
	for (unsigned i = 0; i < d->nw; i++) {
		if (ret)
			dest_fail(d, ret);
		if (d->w[i].started)
			pthread_join(d->w[i].thread, NULL);
		d->w[i].started = false;
	}
	mfd__prefault_stop(&d->pf); /* nothing more lands */
	if (!ret)
		ret = mfd__session_check(&d->ss);
	STAT_SET(d->ss.st.transfer_ns,
		 mfd__now_ns() - d->ss.t_start - d->ss.st.setup_ns);
	if (!ret)
		ret = lost_agree(d);
	/* The channels that live: every one at DONE after the final round,
	 * and everything they carried received whole (with degraded
	 * channels, the live ones' own counts: END counts those). */
	bool degrade = d->features & (MFD_FEAT_DEGRADE | MFD_FEAT_RESUME);
	uint64_t pages = 0, packets = 0;
	for (unsigned i = 0; !ret && i < d->nw; i++) { /* lanes too */
		if (d->w[i].lost)
			continue;
		if (i < d->n &&
		    (!d->w[i].g.done || d->w[i].g.round != end.final_round + 1))
			ret = MFD_EROUND;
		pages += d->w[i].pages;
		packets += d->w[i].packets;
	}
	if (!degrade) {
		pages = STAT_GET(d->ss.st.pages);
		packets = STAT_GET(d->ss.st.packets);
	}
	bool switched = __atomic_load_n(&d->pc_round, __ATOMIC_ACQUIRE) !=
			MFD_ROUND_UNKNOWN;
	for (unsigned i = d->n; !ret && switched && i < d->nw; i++)
		if (!d->w[i].g.done)
			ret = MFD_EROUND;
	if (!ret && switched && !mfd__pc_dst_complete(&d->pc)) {
		mfd__err(
			"post-copy: END, and %llu of %llu pages are not here",
			(unsigned long long)(d->pc.total -
					     __atomic_load_n(&d->pc.present,
							     __ATOMIC_ACQUIRE)),
			(unsigned long long)d->pc.total);
		ret = MFD_ECOUNT;
	}
	if (!ret && switched) {
		/* Every page is here: the guest runs on unregistered memory
		 * from now on. */
		ret = __atomic_load_n(&d->pc.err, __ATOMIC_ACQUIRE);
		mfd__pc_dst_stop(&d->pc);
		STAT_SET(d->ss.st.postcopy_ns, mfd__now_ns() - d->t_switch);
	}
	if (!ret &&
	    (end.total_pages != pages || end.total_packets != packets)) {
		mfd__err("END announces %llu pages in %llu packets, received "
			 "%llu in %llu",
			 (unsigned long long)end.total_pages,
			 (unsigned long long)end.total_packets,
			 (unsigned long long)pages,
			 (unsigned long long)packets);
		ret = MFD_ECOUNT;
	}
	if (!ret && end.digests) {
		/* Every page recorded its digest where it was placed: only
		 * the final round's were hashed inside the downtime, and
		 * their chunks at the final round's barrier. */
		uint64_t t0 = mfd__now_ns();
		uint8_t(*mine)[MFD_DIGEST_SIZE] =
			calloc(d->ss.nblocks, MFD_DIGEST_SIZE);
		if (mine) {
			mfd__session_chunks_update(&d->ss);
			mfd__session_wire_digests(&d->ss, mine);
		} else
			ret = -ENOMEM;
		for (unsigned i = 0; i < d->ss.nblocks && !ret; i++) {
			if (memcmp(mine[i], end.digests[i], MFD_DIGEST_SIZE)) {
				mfd__err("block '%s': digest mismatch",
					 d->ss.blocks[i].name);
				ret = MFD_EVERIFY;
			}
		}
		free(mine);
		/* With the final round's chunks, rehashed at its barrier. */
		STAT_SET(d->ss.st.verify_ns, mfd__now_ns() - t0 + d->chunks_ns);
	}
	free(digests);
	/* Every device's LAST chunk applied, devices in STOP (validated),
	 * before LOADED. */
	if (!ret && !switched) /* post-copy: done at SWITCH */
		ret = mfd__devload_finish(&d->dl);
	return ret;
}

/*
 * Closes after the peer does: a close with unread bytes in the socket makes
 * TCP send a reset, which can destroy the ERROR message just sent before
 * the source reads it.
 */
static void drain_and_close(struct mfd__chan *c, uint64_t timeout_ms)
{
	c->ops->shutdown(c, SHUT_WR);
	c->ops->set_timeout(c, 200);
	uint8_t byte;
	uint64_t deadline = mfd__deadline_ms(timeout_ms);
	while (mfd__now_ns() < deadline) {
		int ret = c->ops->recv(c, &byte, 1);
		if (ret && ret != -ETIMEDOUT)
			break;
	}
	c->ops->close(c);
}

/* After SETUP: the received-maps and, with zstd, one decompression
 * context and payload buffer per channel, all allocated once. */
static int alloc_load_state(mfd_dest *d, struct recv_worker *w)
{
	for (unsigned i = 0; i < d->ss.nblocks; i++) {
		d->recvd[i] = calloc((d->ss.blocks[i].npages + 63) / 64,
				     sizeof(uint64_t));
		if (!d->recvd[i])
			return -ENOMEM;
	}
	if ((d->features & MFD_FEAT_VERIFY) &&
	    mfd__session_digests_alloc(&d->ss))
		return -ENOMEM;
	if ((d->features & MFD_FEAT_RESUME) &&
	    mfd__rs_dst_init(&d->rs, d->ss.blocks, d->ss.nblocks))
		return -ENOMEM;
	if (d->features & MFD_FEAT_POSTCOPY) {
		int ret = mfd__pc_dst_init(&d->pc, d->ss.blocks, d->ss.nblocks,
					   d->nlanes, send_request, d);
		d->pc.rt_prio = d->ss.cfg.postcopy_urgent_priority;
		d->pc.rt_count = &d->ss.st.urgent_rt_threads;
		pthread_mutex_lock(&d->lock);
		d->pc_up = ret == 0;
		pthread_mutex_unlock(&d->lock);
		if (ret)
			return ret;
		uint64_t psize = 0;
		for (unsigned i = 0; i < d->ss.nblocks; i++)
			if (d->ss.blocks[i].page_size > psize)
				psize = d->ss.blocks[i].page_size;
		for (unsigned i = 0; i < d->nw; i++)
			if (!(w[i].stage = malloc(psize * d->lim.packet_pages)))
				return -ENOMEM;
	}
	if (!(d->features & MFD_FEAT_ZSTD))
		return 0;
	for (unsigned i = 0; i < d->nw; i++) {
		/* The codec's buffer, mfd__codec_bound() of its input, is
		 * the largest compressed payload wire.c accepts. */
		int ret = mfd__codec_zstd.setup(&w[i].codec,
						mfd__zstd_max_raw(&d->lim), 1,
						(int)d->zstd_window_log);
		if (ret)
			return ret;
		w[i].codec.ops = &mfd__codec_zstd;
	}
	return 0;
}

/* After SETUP: the load state, DEVICES, then the data channels, admitted
 * and registered in channel order (as the source does). */
static int setup_channels(mfd_dest *d)
{
	int ret;
	struct recv_worker *w = calloc(d->nw, sizeof(*w));
	for (unsigned i = 0; w && i < d->nw; i++) {
		w[i].d = d;
		w[i].idx = i;
		w[i].urgent = i >= d->n;
		if (w[i].urgent)
			mfd__grammar_init_urgent(&w[i].g);
		else
			mfd__grammar_init(&w[i].g);
	}
	ret = w ? alloc_load_state(d, w) : -ENOMEM;
	/* DEVICES follows SETUP, before the data channels. */
	if (!ret)
		ret = mfd__devload_setup(&d->dl, &d->ss.cfg, d->features,
					 d->main);
	d->barrier.n = d->n;
	d->barrier.timeout_ms = d->ss.cfg.io_timeout_ms;
	d->barrier.progress = &d->rx_packets;
	if (d->features & MFD_FEAT_VERIFY) {
		d->barrier.complete = round_placed;
		d->barrier.complete_arg = d;
	}
	pthread_mutex_lock(&d->lock);
	d->w = w;
	pthread_mutex_unlock(&d->lock);
	uint64_t reg_ns = 0;
	if (!ret)
		ret = accept_registered(d, &reg_ns);
	STAT_SET(d->ss.st.register_ns, reg_ns);
	if (!ret && d->ss.cfg.dest_prefault == MFD__PREFAULT_AHEAD)
		ret = mfd__prefault_start(&d->pf, d->ss.blocks, d->ss.nblocks,
					  PREFAULT_WINDOW, PREFAULT_THREADS,
					  &d->ss.st.cpu_ns);
	return ret;
}

/* The main channel and SETUP, then the data channels. */
static int setup_load(mfd_dest *d)
{
	int ret = mfd__admitq_init(&d->aq, &d->lst, d->ss.tls,
				   d->ss.cfg.max_pending,
				   d->ss.cfg.connect_timeout_ms, &d->ss.cancel);
	if (!ret)
		ret = accept_main(d);
	if (!ret)
		ret = setup_channels(d);
	return ret;
}

/* One receive worker per data channel, pre-copy begins. The urgent
 * lanes' workers start at SWITCH: nothing comes on a lane before. */
static int start_workers(mfd_dest *d)
{
	STAT_SET(d->ss.st.phase, MFD_PHASE_PRECOPY);
	d->main->ops->set_timeout(d->main, d->ss.cfg.io_timeout_ms);
	return start_range(d, 0, d->n);
}

/* ---- resumable pre-copy (multifd/resume.h, docs/protocol.md 7.8) ---- */

/*
 * Any thread: a transport break in pre-copy (before END) pauses the load
 * instead of failing it: every connection is shut down, every wait woken,
 * and the loader waits for the source's RESUME. true: paused (now or
 * already).
 */
static bool pause_absorb(mfd_dest *d, int ret)
{
	if (__atomic_load_n(&d->rs_broken, __ATOMIC_ACQUIRE))
		return !mfd__session_check(&d->ss);
	if (!(d->features & MFD_FEAT_RESUME) || !d->rs.nblocks ||
	    mfd__session_check(&d->ss) || !mfd__is_transport_error(ret))
		return false;
	/* Before the post-copy switch (pre-copy, or its DISCARD exchange):
	 * after a DONE or END the source is in switchover, it never
	 * pauses. After the switch until LOADED (postcopy-paused, protocol
	 * 10.5; an END read is sent again). */
	if (__atomic_load_n(&d->pc_round, __ATOMIC_ACQUIRE) ==
		    MFD_ROUND_UNKNOWN &&
	    (__atomic_load_n(&d->ndone, __ATOMIC_ACQUIRE) != 0 ||
	     __atomic_load_n(&d->final_round, __ATOMIC_ACQUIRE) !=
		     MFD_ROUND_UNKNOWN))
		return false;
	int none = 0;
	if (!__atomic_compare_exchange_n(&d->rs_broken, &none, ret, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return true;
	__atomic_store_n(&d->req_paused, true, __ATOMIC_RELEASE);
	mfd__barrier_abort(&d->barrier);
	pthread_mutex_lock(&d->lock);
	for (unsigned i = 0; d->w && i < d->nw; i++)
		if (d->w[i].chan)
			d->w[i].chan->ops->shutdown(d->w[i].chan, SHUT_RDWR);
	pthread_mutex_unlock(&d->lock);
	/* Main stays whole for the loader: the source's ERROR may be on its
	 * way (pause_reason). */
	uint64_t one = 1;
	if (write(d->wake_fd, &one, sizeof(one)) < 0)
		mfd__warn("eventfd: %s", strerror(errno));
	return true;
}

/*
 * Loader, a data channel broke and paused the load: a source that failed
 * (its own check, a cancel) closes its connections too and says why on
 * main; up to 2 s for that ERROR, which fails the load instead. Anything
 * else on main (a ROUND, its close) pauses.
 */
static int pause_reason(mfd_dest *d)
{
	int cause = __atomic_load_n(&d->rs_broken, __ATOMIC_ACQUIRE);
	struct pollfd pfd = { .fd = d->main->fd, .events = POLLIN };
	struct mfd__ctl_hdr h;
	uint8_t *payload;
	if (poll(&pfd, 1, 2000) <= 0 || mfd__ctl_recv(d->main, &h, &payload))
		return cause;
	int ret = cause;
	if (h.type == MFD_CTL_ERROR) {
		ret = mfd__ctl_peer_error(payload, h.length, "source");
		mfd__session_fail_peer(&d->ss, ret);
	}
	free(payload);
	return ret;
}

/* resume_accept, under req_lock: a page asked for and not here. */
static int resend_request(void *ctx, unsigned lane,
			  const struct mfd__page_range *r)
{
	return send_request_locked(ctx, lane, r);
}

/* Loader: the workers joined (a packet cut in the middle may have
 * written part of its pages: a zero page sent again must clear them),
 * every connection closed. */
static void pause_join(mfd_dest *d)
{
	for (unsigned i = 0; i < d->nw; i++) {
		struct recv_worker *w = &d->w[i];
		if (w->started)
			pthread_join(w->thread, NULL);
		w->started = false;
		const struct mfd__ramblock *rb =
			&d->ss.blocks[w->inflight_block];
		for (uint32_t k = 0; k < w->inflight; k++) {
			uint64_t pg = w->offsets[k] >> rb->page_shift;
			__atomic_fetch_or(&d->recvd[w->inflight_block][pg >> 6],
					  1ULL << (pg & 63), __ATOMIC_RELAXED);
		}
	}
	/* The fault thread sends on the lanes under req_lock. */
	pthread_mutex_lock(&d->req_lock);
	pthread_mutex_lock(&d->lock);
	for (unsigned i = 0; i < d->nw; i++) {
		if (d->w[i].chan)
			d->w[i].chan->ops->close(d->w[i].chan);
		d->w[i].chan = NULL;
	}
	pthread_mutex_unlock(&d->req_lock);
	if (d->main)
		d->main->ops->close(d->main);
	d->main = NULL;
	pthread_mutex_unlock(&d->lock);
}

/* A RESUME connection was admitted: RECEIVED, the data channels, new
 * workers from round applied on. On failure everything it opened is
 * closed and the load stays paused. */
static int resume_accept(mfd_dest *d, struct mfd__chan *c)
{
	uint32_t applied = __atomic_load_n(&d->applied, __ATOMIC_ACQUIRE);
	uint32_t p = __atomic_load_n(&d->pc_round, __ATOMIC_ACQUIRE);
	bool pc = p != MFD_ROUND_UNKNOWN;
	pthread_mutex_lock(&d->lock);
	d->main = c;
	pthread_mutex_unlock(&d->lock);
	int ret = c->ops->set_timeout(c, d->ss.cfg.io_timeout_ms);
	/* Post-copy: every page in place, whatever its round (10.5). */
	if (!ret)
		ret = pc ? mfd__rs_dst_send_held(c, d->pc.rx, d->ss.nblocks)
			 : mfd__rs_dst_send(&d->rs, c, d->ss.blocks, applied);
	for (unsigned i = 0; i < d->nw; i++) {
		struct recv_worker *w = &d->w[i];
		if (w->urgent)
			mfd__grammar_init_urgent(&w->g);
		else
			mfd__grammar_init(&w->g);
		w->g.round = pc ? p : applied;
		w->g.postcopy_round = pc ? p : MFD_ROUND_UNKNOWN;
		w->lost = w->kill = w->told = w->src_lost = false;
		w->exited = false;
		w->inflight = 0;
		w->pages = w->packets = 0;
	}
	d->nlost = 0;
	__atomic_store_n(&d->ndone, 0, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < d->nlanes; i++)
		__atomic_store_n(&d->lane_done[i], false, __ATOMIC_RELAXED);
	mfd__barrier_destroy(&d->barrier);
	mfd__barrier_init(&d->barrier, d->n);
	d->barrier.timeout_ms = d->ss.cfg.io_timeout_ms;
	d->barrier.progress = &d->rx_packets;
	if (d->features & MFD_FEAT_VERIFY) {
		d->barrier.complete = round_placed;
		d->barrier.complete_arg = d;
	}
	uint64_t reg_ns = 0;
	if (!ret)
		ret = accept_registered(d, &reg_ns);
	if (ret) {
		pause_join(d); /* no worker started: closes what was opened */
		return ret;
	}
	__atomic_store_n(&d->rs_broken, 0, __ATOMIC_RELEASE);
	STAT_ADD(d->ss.st.resumes, 1);
	if (!pc) { /* no fault thread yet: no request to send again */
		__atomic_store_n(&d->req_paused, false, __ATOMIC_RELEASE);
		mfd__info("resumed from %s at round %u", c->peer, applied);
		return start_workers(d);
	}
	mfd__info("post-copy resumed from %s", c->peer);
	STAT_SET(d->ss.st.phase, MFD_PHASE_POSTCOPY);
	if ((ret = start_range(d, 0, d->nw)))
		return ret;
	/* The requests the break left unanswered, and those made while
	 * paused, go out before any new one (10.5). */
	pthread_mutex_lock(&d->req_lock);
	__atomic_store_n(&d->req_paused, false, __ATOMIC_RELEASE);
	ret = mfd__rs_dst_pc_outstanding(&d->pc, resend_request, d);
	pthread_mutex_unlock(&d->req_lock);
	/* The workers run: a lane that broke again pauses again (the main
	 * loop sees it), anything else fails the load. */
	return ret && pause_absorb(d, ret) ? 0 : ret;
}

/*
 * Loader, after a break in pre-copy: paused, listening for the source's
 * RESUME (same session, authenticated) for resume-timeout; strangers and
 * wrong sessions are refused and the wait goes on. 0: resumed; else the
 * load fails (with the break's cause when the time ran out).
 */
static int pause_load(mfd_dest *d)
{
	int cause = __atomic_load_n(&d->rs_broken, __ATOMIC_ACQUIRE);
	bool pc = __atomic_load_n(&d->pc_round, __ATOMIC_ACQUIRE) !=
		  MFD_ROUND_UNKNOWN;
	/* Paused in a switch's DISCARD exchange: guest memory registered,
	 * discarded pages dropped. Pre-copy goes on after the resume and
	 * its pages must land as ever: unregistered until the next switch
	 * (which registers again and drops what is not received). */
	if (!pc && d->pc_up)
		mfd__pc_dst_stop(&d->pc);
	STAT_SET(d->ss.st.phase,
		 pc ? MFD_PHASE_POSTCOPY_PAUSED : MFD_PHASE_PAUSED);
	if (pc)
		mfd__warn("post-copy paused: %s; the guest runs, its faults "
			  "wait; waiting %llu ms for the source's resume",
			  mfd_strerror(cause),
			  (unsigned long long)d->ss.cfg.resume_timeout_ms);
	else
		mfd__warn("incoming pre-copy paused after round %d: %s; "
			  "waiting %llu ms for the source's resume",
			  (int)__atomic_load_n(&d->applied, __ATOMIC_ACQUIRE) -
				  1,
			  mfd_strerror(cause),
			  (unsigned long long)d->ss.cfg.resume_timeout_ms);
	if (d->hooks.paused)
		d->hooks.paused(d->hooks.opaque, cause);
	int ret = mfd__admitq_init(&d->aq, &d->lst, d->ss.tls,
				   d->ss.cfg.max_pending,
				   d->ss.cfg.connect_timeout_ms, &d->ss.cancel);
	uint64_t deadline = mfd__deadline_ms(d->ss.cfg.resume_timeout_ms);
	struct mfd__admit_want want = { .role = MFD_ROLE_RESUME,
					.key = &d->ss.key,
					.session = d->session,
					.nchannels = (uint16_t)d->n,
					.features = d->features };
	while (!ret) {
		uint64_t now = mfd__now_ns();
		struct mfd__chan *c;
		struct mfd__hello h;
		if (now >= deadline) {
			ret = -ETIMEDOUT;
			break;
		}
		ret = mfd__admitq_take(&d->aq, (deadline - now) / 1000000 + 1,
				       &want, &c, &h);
		if (ret == -ETIMEDOUT) {
			ret = 0; /* the deadline decides */
			continue;
		}
		char peer[sizeof(c->peer)];
		if (!ret)
			snprintf(peer, sizeof(peer), "%s", c->peer);
		if (!ret && (ret = resume_accept(d, c))) {
			mfd__warn("resume from %s: %s; still paused", peer,
				  mfd_strerror(ret));
			ret = mfd__session_check(&d->ss);
			continue;
		}
		break;
	}
	mfd__admitq_destroy(&d->aq);
	if (ret == -ETIMEDOUT && !mfd__session_check(&d->ss))
		ret = mfd__session_fail_why(
			&d->ss, cause,
			pc ? "the connections broke after the post-copy "
			     "switch (%s) and the source did not resume "
			     "within resume-timeout (%llu ms)"
			   : "the connections broke in pre-copy (%s) and the "
			     "source did not resume within resume-timeout "
			     "(%llu ms)",
			mfd_strerror(cause),
			(unsigned long long)d->ss.cfg.resume_timeout_ms);
	return ret;
}
/* ---- end resumable pre-copy ---- */

/* After a failure: workers and device loaders joined, the source told
 * (once), the main channel drained and closed, the hypervisor told.
 * Returns the first cause. */
static int fail_load(mfd_dest *d, int ret)
{
	dest_fail(d, ret);
	ret = mfd__session_check(&d->ss);
	/* Post-copy: the fault thread sends on the lanes closed below. */
	if (d->pc_up)
		mfd__pc_dst_halt(&d->pc);
	for (unsigned i = 0; d->w && i < d->nw; i++)
		if (d->w[i].started)
			pthread_join(d->w[i].thread, NULL);
	mfd__prefault_stop(&d->pf);
	/* Device loaders joined, devices to STOP, never RUNNING. */
	mfd__devload_failed(&d->dl, ret);
	if (d->main && !d->told && ret != MFD_EREMOTE) {
		d->main->ops->set_timeout(d->main,
					  d->ss.cfg.connect_timeout_ms);
		/* The reason in full (e.g. which device count differs). */
		const char *why = mfd__session_error_text(&d->ss);
		mfd__ctl_send_error(d->main, ret, "destination: %s",
				    why[0] ? why : mfd_strerror(ret));
		d->told = true;
	}
	/* Protocol 7.4: close after the source does, within
	 * close-timeout. */
	if (d->main) {
		drain_and_close(d->main, d->ss.cfg.close_timeout_ms);
		d->main = NULL;
	}
	mfd__err("incoming migration failed: %s", mfd_strerror(ret));
	if (__atomic_load_n(&d->pc_round, __ATOMIC_ACQUIRE) !=
	    MFD_ROUND_UNKNOWN) {
		/* Post-copy: the guest runs here with memory missing; its
		 * threads that fault stay blocked (the registration stays
		 * until mfd_dest_free() or the next start). */
		mfd__err("post-copy: the guest's memory is incomplete: stop "
			 "the guest");
		ret = MFD_ELOSTGUEST;
	}
	if (d->hooks.failed)
		d->hooks.failed(d->hooks.opaque, ret);
	return ret;
}

/* Channels closed, codecs and received-maps freed. */
static void free_load(mfd_dest *d)
{
	pthread_mutex_lock(&d->lock);
	for (unsigned i = 0; d->w && i < d->nw; i++) {
		if (d->w[i].chan)
			d->w[i].chan->ops->close(d->w[i].chan);
		if (d->w[i].codec.ops)
			d->w[i].codec.ops->teardown(&d->w[i].codec);
		free(d->w[i].stage);
	}
	for (unsigned i = 0; i < d->ss.nblocks; i++) {
		free(d->recvd[i]);
		d->recvd[i] = NULL;
	}
	mfd__rs_dst_free(&d->rs);
	free(d->w);
	d->w = NULL;
	if (d->main)
		d->main->ops->close(d->main);
	d->main = NULL;
	pthread_mutex_unlock(&d->lock);
}

static void announce_start(mfd_dest *d)
{
	mfd_announce_params p;

	(void)mfd_announce_get_params(&d->ss.cfg, &p);
	int err = mfd__announcer_start(&d->an, &p, d->hooks.announce,
				       d->hooks.opaque, &d->ss.st.cpu_ns);
	if (err) /* the migration succeeded; the announcement did not start */
		mfd__warn("announce: thread: %s", mfd_strerror(err));
}

int mfd_dest_set_announce(mfd_dest *d, const char *ifname,
			  const uint8_t (*macs)[6], unsigned nmacs)
{
	if (!d)
		return -EINVAL;
	if (d->ss.running)
		return MFD_ESTATE;
	return mfd__announcer_set(&d->an, ifname, macs, nmacs);
}

int mfd_dest_announce_wait(mfd_dest *d)
{
	if (!d)
		return -EINVAL;
	if (d->ss.running)
		return MFD_ESTATE;
	return mfd__announcer_join(&d->an, false);
}

static void set_handover(mfd_dest *d, uint32_t *field)
{
	pthread_mutex_lock(&d->lock);
	*field = 1;
	pthread_mutex_unlock(&d->lock);
}

/* After LOADED: the source's COMMIT (0), its ERROR (it resumed: the
 * guest must not run here), or a break, io-timeout or cancel. */
static int wait_commit(mfd_dest *d)
{
	uint64_t deadline = mfd__deadline_ms(d->ss.cfg.io_timeout_ms);
	for (;;) {
		int ready = poll_main(d);
		if (ready < 0)
			return ready;
		if (ready > 0)
			break;
		if (mfd__now_ns() > deadline) {
			mfd__err("no COMMIT on the main channel within "
				 "io-timeout after LOADED");
			return -ETIMEDOUT;
		}
	}
	struct mfd__ctl_hdr h;
	uint8_t *payload;
	int ret = mfd__ctl_recv(d->main, &h, &payload);
	if (ret)
		return ret;
	if (h.type == MFD_CTL_ERROR)
		ret = mfd__ctl_peer_error(payload, h.length, "source");
	else if (h.type != MFD_CTL_COMMIT)
		ret = MFD_EUNEXPECTED;
	free(payload);
	return ret;
}

/* Everything in place: the guest runs here (loaded hook), then the
 * announcement. */
static int run_guest(mfd_dest *d)
{
	if (d->hooks.loaded && d->hooks.loaded(d->hooks.opaque) < 0)
		return MFD_EHOOK;
	/* On a thread of its own: nothing here waits for the schedule. */
	announce_start(d);
	return 0;
}

/*
 * Post-copy's end (protocol 10.3 step 7): the guest runs here since
 * SWITCH and every page is in place, so COMMIT decides nothing: it tells
 * that the source has ended (its copy may go), COMMITTED acknowledges it.
 * Without COMMIT the outcome is the same, with a warning.
 */
static int postcopy_commit(mfd_dest *d, int ret)
{
	if (ret) {
		mfd__warn("post-copy: no COMMIT after LOADED (%s); the guest "
			  "runs here with all its memory",
			  mfd_strerror(ret));
		announce_start(d);
		return 0;
	}
	set_handover(d, &d->ho.commit);
	announce_start(d);
	if (mfd__ctl_send(d->main, MFD_CTL_COMMITTED, NULL, 0))
		mfd__warn("COMMITTED not sent; the guest runs here");
	else
		set_handover(d, &d->ho.committed);
	return 0;
}

/*
 * LOADED, then the source's COMMIT, then the guest runs and COMMITTED
 * goes back (docs/protocol.md 7.6). Once LOADED has left, a failure that
 * does not prove the source resumed (its ERROR) is MFD_EINDOUBT: the
 * guest neither runs nor is discarded by this side's own guess.
 */
static int handover(mfd_dest *d)
{
	if (mfd__test_dest_handover)
		mfd__test_dest_handover(d->main, 0);
	/* A LOADED that did not leave whole cannot be read by the source,
	 * which then never commits: failing here is safe. */
	int ret = mfd__ctl_send(d->main, MFD_CTL_LOADED, NULL, 0);
	if (ret)
		return ret;
	set_handover(d, &d->ho.loaded);
	if (mfd__test_dest_handover)
		mfd__test_dest_handover(d->main, 1);
	ret = wait_commit(d);
	if (__atomic_load_n(&d->pc_round, __ATOMIC_ACQUIRE) !=
	    MFD_ROUND_UNKNOWN)
		return postcopy_commit(d, ret);
	if (!ret) {
		set_handover(d, &d->ho.commit);
		if ((ret = run_guest(d)))
			return ret;
		if (mfd__ctl_send(d->main, MFD_CTL_COMMITTED, NULL, 0))
			mfd__warn("COMMITTED not sent: the source will be "
				  "in doubt; the guest runs here");
		else
			set_handover(d, &d->ho.committed);
		return 0;
	}
	/* The source's ERROR (it resumed) or the embedder's cancel decide:
	 * the guest is discarded. */
	if (ret == MFD_EREMOTE || ret == -ECANCELED)
		return ret;
	pthread_mutex_lock(&d->lock);
	d->ho.in_doubt = 1;
	d->ho.cause = ret;
	pthread_mutex_unlock(&d->lock);
	mfd__session_fail_why(&d->ss, MFD_EINDOUBT,
			      "handover in doubt: LOADED sent, no COMMIT "
			      "(%s): the guest stays paused until "
			      "mfd_dest_run() or mfd_dest_discard()",
			      mfd_strerror(ret));
	return MFD_EINDOUBT;
}

static void *loader_main(void *arg)
{
	mfd_dest *d = arg;
	int ret = setup_load(d);
	mfd__admitq_destroy(&d->aq);
	/* Resumable pre-copy: a resume comes on the same listener. */
	if (ret || !(d->features & MFD_FEAT_RESUME))
		mfd__listener_close(&d->lst);
	STAT_SET(d->ss.st.setup_ns, mfd__now_ns() - d->ss.t_start);
	if (!ret)
		ret = start_workers(d);
	while (!ret && (ret = finish_load(d)) == LOAD_PAUSED)
		ret = pause_load(d); /* resumed: pre-copy goes on */
	mfd__listener_close(&d->lst);
	if (!ret)
		ret = handover(d);
	if (ret && ret != MFD_EINDOUBT)
		ret = fail_load(d, ret);
	free_load(d);
	if (ret == MFD_EINDOUBT && d->hooks.in_doubt) {
		mfd_handover ho;
		pthread_mutex_lock(&d->lock);
		ho = d->ho;
		pthread_mutex_unlock(&d->lock);
		d->hooks.in_doubt(d->hooks.opaque, &ho);
	}
	mfd__session_finish(&d->ss, ret);
	return NULL;
}

/* file:PATH (multifd/filemig.h): the same session, hooks and devices; the
 * file engine runs instead of the listener and the loader. */
static void *file_main(void *arg)
{
	mfd_dest *d = arg;
	const struct mfd__file_lazy lazy = { &d->pc, &d->pc_up, &d->lock };
	int ret = mfd__file_load(&d->ss, &d->hooks, &d->dl.set, &d->dl.bytes,
				 mfd__file_uri_path(d->lst.uri), &lazy);
	mfd__session_finish(&d->ss, ret);
	return NULL;
}

int mfd_dest_start(mfd_dest *d, const char *uri)
{
	if (!d || !uri)
		return -EINVAL;
	if (d->ss.running || STAT_GET(d->ss.st.phase) != MFD_PHASE_NONE)
		return MFD_ESTATE;
	if (d->ss.nblocks == 0)
		return -ENOENT;
	/* An announcement of the last migration still due is obsolete. */
	(void)mfd__announcer_join(&d->an, true);
	pthread_mutex_lock(&d->lock);
	if (d->pc_up) /* the last load's post-copy state */
		mfd__pc_dst_destroy(&d->pc);
	d->pc_up = false;
	pthread_mutex_unlock(&d->lock);
	__atomic_store_n(&d->pc_round, MFD_ROUND_UNKNOWN, __ATOMIC_RELAXED);
	__atomic_store_n(&d->applied, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&d->rs_broken, 0, __ATOMIC_RELAXED);
	memset(d->lane_done, 0, sizeof(d->lane_done));
	d->last_round = 0;
	d->nlanes = 0;
	mfd__session_reset(&d->ss); /* after a start that failed */
	mfd__log_forget();
	const struct mfd__chan_opts co = mfd__config_chan_opts(&d->ss.cfg);
	const char *file = mfd__file_uri_path(uri);
	if (file && (!file[0] || strlen(uri) >= sizeof(d->lst.uri)))
		return mfd__session_fail(&d->ss, MFD_EURI);
	if (file) /* get_uri reports it; no listener */
		snprintf(d->lst.uri, sizeof(d->lst.uri), "%s", uri);
	int ret = file ? 0 : mfd__session_prepare(&d->ss, true, NULL);
	if (!ret && !file &&
	    (ret = mfd__listen(&co, uri, MFD_MAX_CHANNELS + 8, &d->lst)))
		mfd__err("listen on %s: %s", uri, mfd_strerror(ret));
	if (ret)
		return mfd__session_fail(&d->ss, ret);
	STAT_SET(d->ss.st.phase, MFD_PHASE_SETUP);
	ret = mfd__session_spawn(&d->ss, file ? file_main : loader_main, d);
	if (ret) {
		mfd__listener_close(&d->lst);
		STAT_SET(d->ss.st.phase, MFD_PHASE_NONE);
	}
	return ret;
}

int mfd_dest_get_uri(mfd_dest *d, char *buf, size_t len)
{
	if (!d || !buf)
		return -EINVAL;
	if (STAT_GET(d->ss.st.phase) == MFD_PHASE_NONE)
		return MFD_ESTATE;
	if ((size_t)snprintf(buf, len, "%s", d->lst.uri) >= len)
		return -ENOSPC;
	return 0;
}

int mfd_dest_wait(mfd_dest *d)
{
	if (!d)
		return -EINVAL;
	return mfd__session_join(&d->ss);
}

int mfd_dest_cancel(mfd_dest *d)
{
	if (!d)
		return -EINVAL;
	if (mfd__session_cancel(&d->ss))
		dest_fail(d, -ECANCELED);
	return 0;
}

int mfd_dest_get_stats(mfd_dest *d, mfd_stats *st, size_t size)
{
	if (!d || !st)
		return -EINVAL;
	mfd_stats v = { 0 };
	mfd__session_snapshot(&d->ss, &v);
	v.channels = STAT_GET(d->n);
	v.cpu_ns += STAT_GET(d->dl.cpu_ns);
	v.device_bytes = STAT_GET(d->dl.bytes);
	v.device_downtime_ns = STAT_GET(d->dl.down_ns);
	v.device_buffer_peak = STAT_GET(d->dl.peak);
	v.device_buffer_waits = STAT_GET(d->dl.waits);
	pthread_mutex_lock(&d->lock);
	if (d->pc_up) {
		v.faults = STAT_GET(d->pc.faults);
		v.page_requests = STAT_GET(d->pc.requests);
		v.blocktime_ns = STAT_GET(d->pc.blocktime_ns);
		v.latency_p50_ns = mfd__lathist_quantile(&d->pc.latency, 0.5);
		v.latency_p99_ns = mfd__lathist_quantile(&d->pc.latency, 0.99);
		v.latency_max_ns = __atomic_load_n(&d->pc.latency.max_ns,
						   __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&d->lock);
	memset(st, 0, size);
	memcpy(st, &v, size < sizeof(v) ? size : sizeof(v));
	return 0;
}

const char *mfd_dest_error_text(mfd_dest *d)
{
	return d ? mfd__session_error_text(&d->ss) : "";
}

static void dest_settled(mfd_dest *d)
{
	pthread_mutex_lock(&d->lock);
	d->ho.in_doubt = 0;
	pthread_mutex_unlock(&d->lock);
}

int mfd_dest_run(mfd_dest *d)
{
	if (!d)
		return -EINVAL;
	if (d->ss.running || STAT_GET(d->ss.st.phase) != MFD_PHASE_INDOUBT)
		return MFD_ESTATE;
	mfd__info("in-doubt handover: the guest runs here");
	int ret = run_guest(d);
	if (ret)
		mfd__err("loaded hook failed after the in-doubt handover");
	mfd__session_resolve(&d->ss, ret);
	dest_settled(d);
	return ret;
}

int mfd_dest_discard(mfd_dest *d)
{
	if (!d)
		return -EINVAL;
	int ret = mfd__session_resolve(&d->ss, MFD_EINDOUBT);
	if (ret)
		return ret;
	dest_settled(d);
	mfd__info("in-doubt handover: discarded, the guest never runs here");
	if (d->hooks.failed)
		d->hooks.failed(d->hooks.opaque, MFD_EINDOUBT);
	return 0;
}

int mfd_dest_get_handover(mfd_dest *d, mfd_handover *h, size_t size)
{
	if (!d || !h)
		return -EINVAL;
	memset(h, 0, size);
	pthread_mutex_lock(&d->lock);
	memcpy(h, &d->ho, size < sizeof(d->ho) ? size : sizeof(d->ho));
	pthread_mutex_unlock(&d->lock);
	return 0;
}
