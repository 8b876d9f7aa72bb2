/* SPDX-License-Identifier: MIT */
/*
 * Source channel pool: one send worker thread per data channel. The
 * migration thread fills a batch and hands it to the first idle worker by
 * swapping batch buffers (no copy of the offsets, no allocation per batch).
 * A worker owns its channel: packets of one channel go out in the order the
 * jobs were handed to it, which is what makes SYNC a round boundary.
 */
#ifndef MULTIFD_POOL_H
#define MULTIFD_POOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "multifd/channels/channel.h"
#include "multifd/compress/codec.h"
#include "multifd/degrade.h"
#include "multifd/internal.h"
#include "multifd/session.h"
#include "multifd/stats.h"

struct mfd__batch {
	uint32_t round;
	uint32_t block;
	uint32_t n;
	uint32_t flags; /* packet flags besides ZSTD: MFD_PKT_F_POSTCOPY */
	uint64_t offsets[MFD_MAX_PACKET_PAGES];
};

enum mfd__job {
	MFD__JOB_NONE = 0,
	MFD__JOB_PAGES,
	MFD__JOB_SYNC,
	MFD__JOB_DONE,
	MFD__JOB_DEVICE, /* device state: one DEVICE packet (devsave.c) */
};

/* Most pieces of device memory in one chunk (save_iov), plus the header. */
#define MFD__DEVCHUNK_IOV 63

/*
 * A device-state chunk handed to the pool; the pool frees it (free()).
 * The payload is data[] (copied by save()), or, with niov > 0, the len
 * bytes the iov entries point at in the device's memory (save_iov()).
 */
struct mfd__devchunk {
	uint32_t dev;
	uint32_t seq;
	uint32_t flags; /* MFD_DEVCHUNK_* */
	uint32_t len;
	uint32_t niov;
	/* [0]: the packet header; [1]: a placement table, if any */
	struct iovec iov[MFD__DEVCHUNK_IOV + 2];
	uint8_t data[];
};

struct mfd__pool;

/*
 * Each worker has a short queue of jobs, so that it never waits for the
 * migration thread between two packets: with a single slot every packet
 * cost two thread wake-ups, which bounded cheap packets (zero pages) by
 * scheduling latency rather than by work.
 */
#define MFD__POOL_QUEUE 8

struct mfd__job_slot {
	enum mfd__job job;
	uint32_t round;
	struct mfd__batch *batch;    /* PAGES only */
	struct mfd__devchunk *chunk; /* DEVICE only */
};

struct mfd__send_worker {
	struct mfd__pool *pool;
	unsigned idx;
	pthread_t thread;
	bool started;
	struct mfd__chan *chan;
	pthread_cond_t cv;
	/* Under pool->lock: jobs [head, head+len) of the ring; the head is
	 * the one being sent and leaves the ring when it has been. */
	struct mfd__job_slot q[MFD__POOL_QUEUE];
	unsigned head, len;
	/* Degraded channels, under pool->lock: the channel was lost and the
	 * worker has left it (its queue dropped, its pages in log); kill:
	 * the destination lost it, leave it. */
	bool dead, kill;
	bool sent_device; /* worker only: device state cannot be re-sent */
	int tid;	  /* the worker thread's, atomic: 0 until it runs */
	struct mfd__sentlog log; /* with degrade: pages taken per round */
	/* Atomic: PAGES packets and their pages sent on this channel, for
	 * END's totals over the channels that live. */
	uint64_t tot_pages, tot_packets;
	/* Worker thread only. */
	uint32_t seq;
	uint32_t round_packets;
	struct mfd__codec codec; /* ops NULL: pages go out uncompressed */
	struct iovec iov[MFD_MAX_PACKET_PAGES + 2];
	uint8_t hdr[MFD_PKT_HDR_SIZE];
	uint64_t zero_offs[MFD_MAX_PACKET_PAGES];
	uint64_t raw_offs[MFD_MAX_PACKET_PAGES]; /* incompressible, zero */
	uint8_t *pages[MFD_MAX_PACKET_PAGES];
};

/* How the workers encode pages. */
struct mfd__pool_codec {
	unsigned id;	       /* enum mfd__codec_id */
	int level;	       /* zstd level */
	int window_log;	       /* zstd-long, 0 = off */
	uint32_t packet_pages; /* negotiated: sizes the codec buffers */
};

struct mfd__pool {
	pthread_mutex_t lock;
	pthread_cond_t idle_cv;
	unsigned n;
	unsigned next; /* where the search for an idle worker starts */
	bool quit;
	int error;
	struct mfd__ramblock *blocks;
	struct mfd__send_worker *w;
	struct mfd__batch *batches; /* MFD__POOL_QUEUE per worker + 1 */
	struct mfd__batch **free;   /* empty batches, a stack */
	unsigned nfree;
	struct mfd__batch *first; /* the caller's first empty batch */
	struct mfd__stats *stats; /* wire_bytes, pages, ... cpu_ns */
	uint64_t last_sent_ns; /* when the last PAGES/SYNC went out, atomic */
	uint64_t last_dev_ns; /* when the last DEVICE packet went out, atomic */
	/* mfd__pool_submit_device's time waiting for room in the workers'
	 * queues (the link's back-pressure), under lock; its caller's. */
	uint64_t dev_full_ns;
	/* max-bandwidth: one token bucket for all workers, kept as a
	 * virtual clock (the time at which the bytes reserved so far may
	 * have left). Both atomic; rate 0 = unlimited. */
	uint64_t rate_bps;
	uint64_t bucket_ns;
	/* With verify: where each page sent records its page digest (set
	 * before the first batch; NULL without verify). */
	struct mfd__session *digests;
	/* Degraded channels (mfd__pool_degrade): a worker whose channel
	 * breaks leaves it while another lives; live and lost under lock.
	 * on_lost(lost_ctx) is called (no lock held) when one has left. */
	bool degrade;
	unsigned live;
	uint64_t lost; /* bit i: worker i is dead */
	void (*on_lost)(void *ctx);
	void *lost_ctx;
};

/* Bytes the workers' channels hold that have not left the host (the
 * channels' unsent op; 0 for those without). Any thread. */
uint64_t mfd__pool_unsent(struct mfd__pool *p);
/* Paces the live channels (their pace op) at bps in all, an even share
 * each; 0 lifts the cap. Channels without the op are left as they are.
 * Returns how many channels took it. Any thread. */
unsigned mfd__pool_pace(struct mfd__pool *p, uint64_t bps);
/* The workers' CPU time and run-queue wait so far, summed
 * (mfd__thread_sched); *nthreads: how many were read. */
void mfd__pool_sched(struct mfd__pool *p, uint64_t *cpu_ns, uint64_t *wait_ns,
		     unsigned *nthreads);

/* Jobs queued on the workers, the ones being sent included. Any thread. */
unsigned mfd__pool_queued(struct mfd__pool *p);

/* Takes back every PAGES job queued behind the one each worker is on:
 * undo(ctx, batch) for each (the batch is not sent), then the batch is
 * free again. Other jobs keep their order. Returns the pages taken back.
 * Migration thread (the only submitter). */
uint64_t mfd__pool_cancel_queued(struct mfd__pool *p,
				 void (*undo)(void *ctx,
					      const struct mfd__batch *b),
				 void *ctx);

/* Takes the channels (closed by mfd__pool_destroy). codec may be NULL (no
 * compression). */
int mfd__pool_start(struct mfd__pool *p, struct mfd__chan **chans, unsigned n,
		    struct mfd__ramblock *blocks, struct mfd__stats *stats,
		    const struct mfd__pool_codec *codec);
/* The caller's first empty batch. */
static inline struct mfd__batch *mfd__pool_batch(struct mfd__pool *p)
{
	return p->first;
}
/* Queues *batch on the least busy worker (an idle one if any) and gives
 * back an empty batch in *batch. Waits while every queue is full. 0 or the
 * pool's error. */
int mfd__pool_submit(struct mfd__pool *p, struct mfd__batch **batch);
/* Queues a device chunk (taken over, freed by the pool even on error) on
 * the least busy worker. 0 or the pool's error. */
int mfd__pool_submit_device(struct mfd__pool *p, struct mfd__devchunk *c);
/* Queues SYNC(round) on every channel, after everything handed before. */
int mfd__pool_sync(struct mfd__pool *p, uint32_t round);
/* Queues DONE on every channel and waits until all are sent. */
int mfd__pool_done(struct mfd__pool *p);
/* Limits what all workers together send to bps bytes/s (0 = no limit),
 * from the next packet on; a worker waiting for tokens stops waiting when
 * the limit is lifted. Any thread. */
void mfd__pool_set_rate(struct mfd__pool *p, uint64_t bps);
/* Fails the pool with err: wakes everyone, shuts the channels down. Any
 * thread. */
void mfd__pool_abort(struct mfd__pool *p, int err);
/* Degraded channels: from now on a worker whose channel breaks (or is
 * killed) leaves it while another worker lives, noting the pages it took
 * per round. Before the first batch. 0 or -ENOMEM. */
int mfd__pool_degrade(struct mfd__pool *p, unsigned nblocks,
		      void (*on_lost)(void *ctx), void *ctx);
/* Each worker notes the pages it takes per round (degrade.h), without
 * the rest of degraded channels (resume.c). Before the first batch. 0 or
 * -ENOMEM. */
int mfd__pool_sentlog(struct mfd__pool *p, unsigned nblocks);
/* Ends the workers (their channels shut down first, e.g. by
 * mfd__pool_abort) and notes the batches still queued in their logs: the
 * logs then hold every page handed to the pool. mfd__pool_destroy() still
 * frees. Migration thread. */
void mfd__pool_quiesce(struct mfd__pool *p);
/* The workers that have left their channel (bit i: worker i). Any
 * thread. */
uint64_t mfd__pool_lost(struct mfd__pool *p);
/* The peer lost channel i: the worker leaves it: 0; or, the last one,
 * the pool fails with err, returned. Any thread. */
int mfd__pool_kill(struct mfd__pool *p, unsigned i, int err);
/* PAGES pages and packets sent on the channels that live. */
void mfd__pool_totals(struct mfd__pool *p, uint64_t *pages, uint64_t *packets);
/* Joins workers, closes channels, frees. */
void mfd__pool_destroy(struct mfd__pool *p);

#endif /* MULTIFD_POOL_H */
