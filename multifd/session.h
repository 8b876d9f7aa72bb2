/* SPDX-License-Identifier: MIT */
/*
 * What the source and the destination share: the configuration, the
 * registered RAM blocks, the key and TLS context, the migration thread,
 * the first error with its reason, cancel, and the statistics.
 *
 * Threads: the hypervisor's control thread calls init, add_block, prepare,
 * reset, spawn and join; the migration thread and its helpers call fail,
 * check and finish; cancel, snapshot and error_text may come from any
 * thread.
 */
#ifndef MULTIFD_SESSION_H
#define MULTIFD_SESSION_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "multifd/auth.h"
#include "multifd/common/digest.h"
#include "multifd/internal.h"
#include "multifd/stats.h"

struct mfd__tls;

#define MFD__REASON_MAX 1024

struct mfd__session {
	struct mfd_config cfg;
	struct mfd__ramblock blocks[MFD_MAX_BLOCKS];
	struct mfd__block_desc descs[MFD_MAX_BLOCKS]; /* as SETUP says them */
	unsigned nblocks;
	uint64_t ram_bytes;
	struct mfd__key key;  /* loaded at start; len 0: no authentication */
	struct mfd__tls *tls; /* NULL without TLS */

	pthread_t thread;
	bool running; /* migration thread started and not yet joined */
	int result;   /* what the migration thread ended with */
	int error;    /* first cause, atomic */
	int cancel;   /* atomic */
	/* The first cause's text: written once by the thread that recorded
	 * the cause, then published by reason_set (release). */
	int reason_set;
	char reason[MFD__REASON_MAX];
	/* The peer's own explanation of a failure first seen as a broken
	 * connection (mfd__session_fail_peer): written once, then published
	 * by peer_set (release); check and error_text prefer it. */
	int peer_error;
	int peer_set;
	char peer_reason[MFD__REASON_MAX];

	struct mfd__stats st;
	uint64_t t_start;

	/* With verify: each block's page digests (common/digest.h), one per
	 * page, written by whichever worker sends (source) or places
	 * (destination) the page, rounds apart (the round's end orders
	 * them); read after the last worker is done. NULL without verify. */
	uint64_t *pdig[MFD_MAX_BLOCKS];
	uint64_t pdig_zero[MFD_MAX_BLOCKS]; /* the digest of a zero page */
	/* The wire's block digest (protocol 5.5) is made of chunk digests,
	 * one per MFD_DIGEST_CHUNK_PAGES page digests (cdig), kept up to
	 * date between rounds: a page digest recorded marks its chunk in
	 * cdirty (atomic bits, one per chunk), and
	 * mfd__session_chunks_update() rehashes only the marked chunks, at
	 * each round's end, when no worker records. So the downtime hashes
	 * only the chunks of the final round's pages. */
	uint64_t *cdig[MFD_MAX_BLOCKS];
	uint64_t *cdirty[MFD_MAX_BLOCKS];
};

/* cfg NULL: the defaults. */
void mfd__session_init(struct mfd__session *ss, const mfd_config *cfg);
void mfd__session_destroy(struct mfd__session *ss);
/* mfd_*_add_block(): 0, -EINVAL, -ENOSPC, -EEXIST or MFD_ESTATE. */
int mfd__session_add_block(struct mfd__session *ss, const char *name,
			   void *host, uint64_t size, uint32_t page_size);
/* At start: the auth key and the TLS context (server side, or a client
 * checking host). 0 or the error, logged. */
int mfd__session_prepare(struct mfd__session *ss, bool server,
			 const char *host);
/* A new migration: no error, no cancel, counters 0. */
void mfd__session_reset(struct mfd__session *ss);

/*
 * Records err as the first cause unless one is recorded; returns the first
 * cause. The call that records it also keeps its reason: the last error
 * line the calling thread logged (the failure it detected, said in full),
 * else mfd_strerror(err). Any thread.
 */
int mfd__session_fail(struct mfd__session *ss, int err);
/* The same with the reason given (and logged at error level). */
int mfd__session_fail_why(struct mfd__session *ss, int err, const char *fmt,
			  ...) __attribute__((format(printf, 3, 4)));
/*
 * The peer's ERROR message (err from mfd__ctl_peer_error, reason the line
 * it logged): recorded as mfd__session_fail() does; when the first cause
 * is one the peer may explain (mfd__peer_may_explain: a broken or refused
 * connection, usually the effect of the failure the peer reports, e.g. a
 * channel reset while its ERROR was on the way), the peer's cause and
 * reason are what mfd__session_check() and mfd__session_error_text()
 * report from then on. Any thread.
 */
int mfd__session_fail_peer(struct mfd__session *ss, int err);
/* The first cause (-ECANCELED once cancelled), or 0; the peer's cause in
 * its place, see mfd__session_fail_peer(). Any thread. */
int mfd__session_check(struct mfd__session *ss);
/* Marks the migration cancelled; false when none runs (nothing to do):
 * not started, paused, in doubt or ended (the post-copy phases run).
 * The caller then wakes what its threads wait on. Any thread. */
bool mfd__session_cancel(struct mfd__session *ss);
/* The first cause's reason; "" without one. Any thread. */
const char *mfd__session_error_text(struct mfd__session *ss);

/* Starts the clock and the migration thread: 0 or -errno. */
int mfd__session_spawn(struct mfd__session *ss, void *(*fn)(void *), void *arg);
/* mfd_*_wait(): joins the migration thread; its result (MFD_ESTATE when
 * none ever ran). */
int mfd__session_join(struct mfd__session *ss);
/* The migration thread's last act: result, CPU time, total time, phase. */
void mfd__session_finish(struct mfd__session *ss, int ret);
/* Verify: the page digests, every page's that of a zero page (the
 * destination's memory starts zero; the source sends every page in round
 * 0). 0 or -ENOMEM. */
int mfd__session_digests_alloc(struct mfd__session *ss);
void mfd__session_digests_free(struct mfd__session *ss);
/* The block digests over all page digests at once (XXH3-128 of the page
 * digests: the file image's, protocol 11.5). */
void mfd__session_digests(struct mfd__session *ss,
			  uint8_t (*out)[MFD__DIGEST_SIZE]);
/* Rehashes the chunks marked since the last call (cdig, cdirty). Only
 * while no thread records a page digest: the caller is ordered after
 * every recording so far (a pool round's end, a barrier's last arrival,
 * workers joined). */
void mfd__session_chunks_update(struct mfd__session *ss);
/* The wire's block digests (protocol 5.5: XXH3-128 of the chunk
 * digests), after mfd__session_chunks_update(); same rule. */
void mfd__session_wire_digests(struct mfd__session *ss,
			       uint8_t (*out)[MFD__DIGEST_SIZE]);
/* Records one page's digest (block b, offset off), or a zero page's,
 * and marks its chunk. */
static inline void mfd__session_page_digest(struct mfd__session *ss, unsigned b,
					    uint64_t off, bool zero)
{
	const struct mfd__ramblock *rb = &ss->blocks[b];
	uint64_t pg = off >> rb->page_shift;
	ss->pdig[b][pg] =
		zero ? ss->pdig_zero[b]
		     : mfd__page_digest(rb->host + off, rb->page_size);
	/* A chunk is marked once per round: the load keeps the cache
	 * line shared between the workers until then. */
	uint64_t c = pg / MFD_DIGEST_CHUNK_PAGES, bit = 1ULL << (c & 63);
	uint64_t *w = &ss->cdirty[b][c >> 6];
	if (!(__atomic_load_n(w, __ATOMIC_RELAXED) & bit))
		__atomic_fetch_or(w, bit, __ATOMIC_RELAXED);
}
/* An in-doubt session (MFD_PHASE_INDOUBT) decided by the embedder: 0
 * completes it (error cleared), anything else fails it with err. The
 * migration thread has ended: the caller's thread owns the session.
 * MFD_ESTATE when the session is not in doubt. */
int mfd__session_resolve(struct mfd__session *ss, int err);
/* The counters and what the session knows (error, RAM, time so far). */
void mfd__session_snapshot(struct mfd__session *ss, mfd_stats *v);

/*
 * The connection broke or the peer went silent: the write would fail or
 * hang, so nothing is told to the peer over it (destination), and the
 * peer's own reason is likely on its way (source). Both sides use this
 * one test.
 */
bool mfd__is_transport_error(int err);
/* A transport error, or a connection refused (the peer closed its
 * listener after a failure): an effect the peer may explain in its ERROR
 * (mfd__session_fail_peer). */
bool mfd__peer_may_explain(int err);

#endif /* MULTIFD_SESSION_H */
