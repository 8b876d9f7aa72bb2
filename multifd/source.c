/* SPDX-License-Identifier: MIT */
/*
 * Source side: setup, pre-copy rounds, switchover, completion.
 *
 * Threads: the migration thread runs the state machine and the scanner; one
 * send worker per data channel (pool.c); a return-path thread reads the
 * main channel for the destination's LOADED or ERROR, then ends: the
 * migration thread itself sends COMMIT and reads COMMITTED (handover()).
 */
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "multifd/channels/tls.h"
#include "multifd/converge.h"
#include "multifd/admit.h"
#include "multifd/ctl.h"
#include "multifd/devsave.h"
#include "multifd/filemig.h"
#include "multifd/pool.h"
#include "multifd/postcopy_lanes.h"
#include "multifd/resume.h"
#include "multifd/session.h"
#include "ramblock/tracker.h"

#define TAILS 16 /* round tails kept (struct round_tail) */

struct mfd_source {
	struct mfd__session ss; /* config, blocks, thread, error, stats */
	mfd_source_hooks hooks;
	char uri[256];

	pthread_mutex_t lock; /* guards the fields below it up to rounds */
	pthread_cond_t cv;    /* return path and cancel wake the thread */
	bool loaded;	      /* destination answered LOADED */
	mfd_handover ho;      /* what this side knows of the handover */
	bool pool_up;
	bool rp_up;
	bool rp_done; /* the return path thread has ended */
	pthread_t rp_thread;
	struct mfd__chan *main;
	struct mfd__chan *opening; /* in its handshake: cancel shuts it */
	struct mfd__pool pool;

	bool stopped;		     /* migration thread only */
	struct mfd__tracker tracker; /* migration thread only */
	bool tracking;
	int throttle; /* percent applied through the hook */
	/* Fixed switchover costs the estimate adds (migration thread). */
	uint64_t stop_ns; /* the stop hook's last call, kept across runs */
	/* Verify, predicted: one side's END digests (0: verify off), from
	 * the pass over the chunk digests and the rehash of one chunk. */
	uint64_t verify_ns;
	uint64_t verify_pass_ns, verify_chunk_ns, verify_chunks;
	uint64_t dev_stop_ns; /* the devices' arcs to STOP_COPY, predicted */

	/* Round records, appended by the migration thread under lock. */
	mfd_round_stats *rounds;
	unsigned nrounds, cap_rounds;
	/* Round tails, under lock, by round modulo TAILS: when the
	 * destination's ROUND for it came, with its own cost (return path;
	 * MFD_FEAT_DEGRADE or MFD_FEAT_ROUND_COST), and when the round's last
	 * packet was written (migration thread). */
	struct round_tail {
		uint32_t ack_round, sent_round;
		uint64_t ack_ns, dest_ns, end_ns, sent_ns;
	} tails[TAILS];

	struct mfd__devsave ds; /* device state: migration thread only */

	/* Degraded channels (MFD_FEAT_DEGRADE, protocol 7.7). told,
	 * settled: migration thread; the rest under lock. */
	struct {
		uint64_t told;	    /* CHAN_LOST sent for these channels */
		uint64_t settled;   /* their pages went back to the dirty set */
		uint64_t dest_lost; /* the destination's CHAN_LOST */
		uint32_t applied[MFD_MAX_CHANNELS]; /* its round, per channel */
		uint32_t synced; /* rounds the destination applied (ROUND) */
		bool end;	 /* END is on its way: nothing can be re-sent */
	} dg;

	/* Dirty-limit: who writes where (set before start), and the
	 * per-vCPU throttles in force (migration thread). */
	struct vcpu_range *vranges;
	unsigned nvranges, nvcpus; /* nvcpus: highest vcpu + 1 */
	uint32_t vcpu_pct[MFD_MAX_VCPUS];
	bool dirty_limit_on;

	/* ---- post-copy (postcopy_src.c, postcopy_lanes.c) ---- */
	struct mfd__pc_src pcs; /* with postcopy on, from round 0 */
	bool pcs_up;
	struct mfd__pc_lanes lanes; /* chans from setup, threads after SWITCH */
	struct mfd__wire_limits pc_lim;
	bool pc_request;    /* atomic: mfd_source_start_postcopy() was called */
	unsigned discards;  /* DISCARD messages sent (migration thread) */
	unsigned discarded; /* under lock: DISCARDED read (return path) */
	bool switched;	    /* atomic: SWITCH sent, the guest is the dest's */

	/* ---- resumable pre-copy (resume.c; protocol 7.8) ---- */
	struct {
		uint8_t session[16];  /* of the first connection */
		struct mfd__rs_src r; /* migration thread */
		int broken;	      /* atomic: the return path saw a break */
		/* Under lock: paused, waiting for mfd_source_resume(); its
		 * request (uri), and the outcome it waits for. */
		bool paused, request, answered;
		bool fatal; /* a resume failed after the old pool was freed */
		int result;
		char uri[256];
	} rs;
};

struct vcpu_range {
	unsigned vcpu, block;
	uint64_t first, npages; /* pages of the block */
};

#define MAX_VCPU_RANGES 4096

int mfd_source_new(mfd_source **out, const mfd_config *cfg,
		   const mfd_source_hooks *hooks)
{
	if (!out || !hooks || !hooks->stop || !hooks->resume)
		return -EINVAL;
	mfd_source *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	mfd__session_init(&s->ss, cfg);
	s->hooks = *hooks;
	mfd__devsave_init(&s->ds);
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	*out = s;
	return 0;
}

void mfd_source_free(mfd_source *s)
{
	if (!s)
		return;
	if (s->ss.running) {
		mfd_source_cancel(s);
		mfd_source_wait(s);
	}
	mfd__session_destroy(&s->ss);
	mfd__devsave_destroy(&s->ds);
	mfd__rs_src_free(&s->rs.r);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cv);
	free(s->rounds);
	free(s->vranges);
	free(s);
}

int mfd_source_add_block(mfd_source *s, const char *name, void *host,
			 uint64_t size, uint32_t page_size)
{
	if (!s)
		return -EINVAL;
	return mfd__session_add_block(&s->ss, name, host, size, page_size);
}

int mfd_source_set_vcpu_range(mfd_source *s, unsigned vcpu, unsigned block,
			      uint64_t offset, uint64_t len)
{
	if (!s || vcpu >= MFD_MAX_VCPUS || block >= s->ss.nblocks || !len)
		return -EINVAL;
	const struct mfd__ramblock *rb = &s->ss.blocks[block];
	if (offset > rb->size || len > rb->size - offset)
		return -EINVAL;
	if (s->ss.running)
		return MFD_ESTATE;
	if (s->nvranges == MAX_VCPU_RANGES)
		return -ENOSPC;
	struct vcpu_range *n =
		realloc(s->vranges, (s->nvranges + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	s->vranges = n;
	uint64_t first = offset / rb->page_size;
	n[s->nvranges++] = (struct vcpu_range){
		.vcpu = vcpu,
		.block = block,
		.first = first,
		.npages = (offset + len + rb->page_size - 1) / rb->page_size -
			  first,
	};
	if (vcpu + 1 > s->nvcpus)
		s->nvcpus = vcpu + 1;
	return 0;
}

/* ---- device state (devsave.c) ---- */
int mfd_source_add_device(mfd_source *s, const char *name,
			  const mfd_device_ops *ops, void *opaque)
{
	if (!s || !name || !ops)
		return -EINVAL;
	if (s->ss.running)
		return MFD_ESTATE;
	return mfd__devset_add(&s->ds.set, name, ops, opaque);
}
/* ---- end device state ---- */

int mfd_source_mark_dirty(mfd_source *s, unsigned block, uint64_t offset,
			  uint64_t len)
{
	if (!s || block >= s->ss.nblocks)
		return -EINVAL;
	return mfd__ramblock_mark_dirty(&s->ss.blocks[block], offset, len);
}

/* Any thread: record the cause and wake whatever the migration waits on. */
static void source_fail(mfd_source *s, int err)
{
	mfd__session_fail(&s->ss, err);
	pthread_mutex_lock(&s->lock);
	if (s->pool_up)
		mfd__pool_abort(&s->pool, err);
	if (s->lanes.n)
		mfd__pc_lanes_abort(&s->lanes);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
}

static void return_path(mfd_source *s);

static void *return_path_main(void *arg)
{
	mfd_source *s = arg;
	return_path(s);
	__atomic_fetch_add(&s->ss.st.cpu_ns, mfd__thread_cpu_ns(),
			   __ATOMIC_RELAXED);
	pthread_mutex_lock(&s->lock);
	s->rp_done = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static int dest_lost_channel(mfd_source *s, const uint8_t *payload);
static int dest_synced(mfd_source *s, const uint8_t *payload);
static bool resume_absorb(mfd_source *s, int ret);

/* LOADED (the handover goes on in the migration thread), or the failure;
 * before them, the destination's CHAN_LOST (degraded channels). */
static void return_path(mfd_source *s)
{
	struct mfd__ctl_hdr h;
	uint8_t *payload;
	int ret;
	for (;;) {
		ret = mfd__ctl_recv(s->main, &h, &payload);
		if (!ret && h.type == MFD_CTL_DISCARDED &&
		    __atomic_load_n(&s->pcs_up, __ATOMIC_ACQUIRE)) {
			/* Post-copy: one for each DISCARD applied. */
			free(payload);
			pthread_mutex_lock(&s->lock);
			s->discarded++;
			pthread_cond_broadcast(&s->cv);
			pthread_mutex_unlock(&s->lock);
			continue;
		}
		if (ret ||
		    (h.type != MFD_CTL_CHAN_LOST && h.type != MFD_CTL_ROUND))
			break;
		ret = h.type == MFD_CTL_ROUND ? dest_synced(s, payload)
					      : dest_lost_channel(s, payload);
		free(payload);
		/* The last channel lost: resumable pre-copy pauses. */
		if (ret && !resume_absorb(s, ret))
			source_fail(s, ret);
		if (ret)
			return;
	}
	/* Resumable pre-copy: a break pauses, the migration thread sees. */
	if (ret && resume_absorb(s, ret))
		return;
	if (ret) {
		if (!mfd__session_check(&s->ss))
			mfd__err("main channel: %s", mfd_strerror(ret));
		source_fail(s, ret);
		return;
	}
	if (h.type == MFD_CTL_LOADED) {
		pthread_mutex_lock(&s->lock);
		s->loaded = true;
		s->ho.loaded = 1;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->lock);
	} else if (h.type == MFD_CTL_ERROR) {
		ret = mfd__ctl_peer_error(payload, h.length, "destination");
		/* Its reason replaces a reset it caused. */
		mfd__session_fail_peer(&s->ss, ret);
		source_fail(s, ret);
	} else {
		mfd__err("main channel: unexpected message type %u", h.type);
		source_fail(s, MFD_EUNEXPECTED);
	}
	free(payload);
}

/* Degraded channels: asked for unless configured off, and only over the
 * stream transports: RDMA's one-sided writes land without the
 * destination's worker, which then cannot say when a lost channel wrote
 * its last page. */
static bool degrade_on(const mfd_source *s)
{
	const struct mfd__chan_opts co = mfd__config_chan_opts(&s->ss.cfg);
	const struct mfd__transport *tp;
	/* Pre-copy only: post-copy's channels carry the guest itself. */
	return s->ss.cfg.degraded_channels &&
	       s->ss.cfg.postcopy == MFD__POSTCOPY_OFF &&
	       !mfd__transport_select(s->uri, &co, &tp) &&
	       (!strcmp(tp->name, "tcp") || !strcmp(tp->name, "uring"));
}

/* Resumable pre-copy, and post-copy's paused state: asked for with
 * resume-timeout, over the stream transports (the destination's workers
 * must see every page placed), without devices (a device chunk cannot be
 * sent again). With post-copy on, also the switch's DISCARD exchange and
 * post-copy after the switch (resume_pausable). */
static bool resume_on(const mfd_source *s)
{
	const struct mfd__chan_opts co = mfd__config_chan_opts(&s->ss.cfg);
	const struct mfd__transport *tp;
	return s->ss.cfg.resume_timeout_ms && !mfd__devsave_any(&s->ds) &&
	       !mfd__transport_select(s->uri, &co, &tp) &&
	       (!strcmp(tp->name, "tcp") || !strcmp(tp->name, "uring"));
}

static uint64_t features_wanted(const mfd_source *s)
{
	return (s->ss.cfg.verify ? MFD_FEAT_VERIFY | MFD_FEAT_VERIFY_CHUNKS
				 : 0) |
	       (s->ss.cfg.compression == MFD__CODEC_ZSTD ? MFD_FEAT_ZSTD : 0) |
	       (s->ss.key.len ? MFD_FEAT_AUTH : 0) | MFD_FEAT_COMMIT |
	       (degrade_on(s) ? MFD_FEAT_DEGRADE : 0) |
	       (resume_on(s) ? MFD_FEAT_RESUME : 0) |
	       (mfd__devsave_any(&s->ds) ? MFD_FEAT_DEVICES : 0) |
	       (s->ss.cfg.postcopy != MFD__POSTCOPY_OFF ? MFD_FEAT_POSTCOPY
							: MFD_FEAT_ROUND_COST);
}

static int open_channel(mfd_source *s, uint16_t role, uint16_t idx,
			const uint8_t session[16], struct mfd__chan **out)
{
	struct mfd__chan *c;
	const struct mfd__chan_opts co = mfd__config_chan_opts(&s->ss.cfg);
	int ret = mfd__connect(&co, s->uri, s->ss.cfg.connect_timeout_ms, &c);
	if (ret) {
		mfd__err("connect to %s: %s", s->uri, mfd_strerror(ret));
		return ret;
	}
	/* TLS, when configured, protects everything from the hello on. */
	ret = mfd__tls_wrap_client(s->ss.tls, &c, s->ss.cfg.connect_timeout_ms);
	if (ret)
		return ret;
	ret = c->ops->set_timeout(c, s->ss.cfg.connect_timeout_ms);
	/* A destination that accepts but never answers would hold a cancel
	 * for connect-timeout: let mfd_source_cancel() shut the channel. */
	pthread_mutex_lock(&s->lock);
	s->opening = c;
	pthread_mutex_unlock(&s->lock);
	if (!ret)
		ret = mfd__session_check(&s->ss);
	struct mfd__hello h = { .magic = MFD_MAGIC_HELLO,
				.version = MFD_PROTO_VERSION,
				.role = role,
				.channel = idx,
				.nchannels = (uint16_t)s->ss.cfg.channels,
				.features = features_wanted(s) };
	memcpy(h.session, session, 16);
	uint64_t accepted = 0;
	if (!ret)
		ret = mfd__handshake_source(c, &h, &s->ss.key, &accepted);
	if (!ret && accepted != h.features)
		ret = MFD_EFEATURE;
	pthread_mutex_lock(&s->lock);
	s->opening = NULL;
	pthread_mutex_unlock(&s->lock);
	if (ret && mfd__session_check(&s->ss))
		ret = mfd__session_check(
			&s->ss); /* the cancel, not the shut channel */
	if (ret) {
		c->ops->close(c);
		return ret;
	}
	*out = c;
	return 0;
}

/* SETUP on the main channel and the destination's answer. */
static int send_setup(mfd_source *s, struct mfd__chan *main)
{
	struct mfd__setup su = {
		.nblocks = s->ss.nblocks,
		.packet_pages = s->ss.cfg.packet_pages,
		.nchannels = s->ss.cfg.channels,
		.zstd_window_log = s->ss.cfg.compression == MFD__CODEC_ZSTD
					   ? s->ss.cfg.zstd_long
					   : 0,
		.features = features_wanted(s),
		.postcopy_lanes = s->ss.cfg.postcopy != MFD__POSTCOPY_OFF
					  ? s->ss.cfg.postcopy_lanes
					  : 0,
		.blocks = s->ss.descs
	};
	size_t len = mfd__setup_size(&su);
	uint8_t *buf = malloc(len);
	int ret = buf ? mfd__setup_encode(&su, buf, len) : -ENOMEM;
	if (ret >= 0)
		ret = mfd__ctl_send(main, MFD_CTL_SETUP, buf, (uint32_t)ret);
	free(buf);
	if (ret)
		return ret;
	struct mfd__ctl_hdr h;
	uint8_t *payload;
	if ((ret = mfd__ctl_recv(main, &h, &payload)))
		return ret;
	if (h.type == MFD_CTL_ERROR)
		ret = mfd__ctl_peer_error(payload, h.length, "destination");
	else if (h.type != MFD_CTL_SETUP_OK)
		ret = MFD_EUNEXPECTED;
	free(payload);
	return ret;
}

/* The data channels, opened and registered in channel order (as the
 * destination accepts them): *n of them in chans, all closed on error. */
static int open_data(mfd_source *s, const uint8_t session[16],
		     struct mfd__chan **chans, unsigned *n)
{
	int ret = 0;
	unsigned k = 0;
	for (; k < s->ss.cfg.channels && !(ret = mfd__session_check(&s->ss));
	     k++) {
		ret = open_channel(s, MFD_ROLE_DATA, (uint16_t)k, session,
				   &chans[k]);
		if (!ret)
			ret = chans[k]->ops->set_timeout(
				chans[k], s->ss.cfg.io_timeout_ms);
		if (ret)
			break;
	}
	uint64_t reg_ns = 0;
	for (unsigned i = 0; !ret && i < k; i++)
		ret = mfd__chan_register_memory(chans[i], s->ss.blocks,
						s->ss.nblocks, &reg_ns);
	STAT_SET(s->ss.st.register_ns, reg_ns);
	if (ret)
		while (k--)
			chans[k]->ops->close(chans[k]);
	*n = ret ? 0 : k;
	return ret;
}

/* ---- degraded channels (multifd/degrade.h, docs/protocol.md 7.7) ---- */

static int send_round(mfd_source *s, struct mfd__batch **batch, uint32_t round,
		      uint64_t *pages_out);

/* Return path: the destination lost a channel; it says the last round
 * it applied there. 0, or why the migration fails. */
static int dest_lost_channel(mfd_source *s, const uint8_t *payload)
{
	struct mfd__chan_lost m;
	int ret = mfd__chan_lost_decode(payload, s->ss.cfg.channels, &m);
	if (!ret && !degrade_on(s))
		ret = MFD_EUNEXPECTED;
	if (ret)
		return ret;
	pthread_mutex_lock(&s->lock);
	bool late = s->dg.end;
	s->dg.dest_lost |= 1ULL << m.channel;
	s->dg.applied[m.channel] = m.round;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
	if (late) {
		/* Its last pages may be lost and DONE has gone out on the
		 * others: nothing can be re-sent any more. */
		mfd__err("data channel %u lost after the final round",
			 m.channel);
		return -ECONNRESET;
	}
	/* The last channel: the migration fails. */
	return mfd__pool_kill(&s->pool, m.channel, -ECONNRESET);
}

/* Return path: the destination applied round r on every channel that
 * lives (its barrier completed). */
static int dest_synced(mfd_source *s, const uint8_t *payload)
{
	struct mfd__round_answer r;
	bool cost = features_wanted(s) & MFD_FEAT_ROUND_COST;
	int ret = mfd__round_answer_decode(payload, cost, &r);
	if (!ret && ((!degrade_on(s) && !cost) || r.round == UINT32_MAX))
		ret = MFD_EUNEXPECTED;
	if (ret)
		return ret;
	uint64_t now = mfd__now_ns();
	pthread_mutex_lock(&s->lock);
	struct round_tail *t = &s->tails[r.round % TAILS];
	t->ack_round = r.round;
	t->ack_ns = now;
	t->dest_ns = r.cost_ns;
	t->end_ns = (uint64_t)r.end_us * 1000;
	if (r.round + 1 > s->dg.synced)
		s->dg.synced = r.round + 1;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/*
 * Migration thread, after a round's SYNC: channels lost since are told to
 * the destination (CHAN_LOST), and once it has answered for each (the
 * last round it applied there, within io-timeout) the pages their workers
 * took after that round go back to the dirty set. *pages: how many.
 */
static int degrade_settle(mfd_source *s, uint32_t round, uint64_t *pages)
{
	*pages = 0;
	if (!s->pool.degrade)
		return 0;
	pthread_mutex_lock(&s->lock);
	uint64_t want = s->dg.dest_lost;
	pthread_mutex_unlock(&s->lock);
	want |= mfd__pool_lost(&s->pool);
	want &= ~s->dg.settled;
	if (!want)
		return 0;
	int ret = 0;
	uint64_t deadline = mfd__deadline_ms(s->ss.cfg.io_timeout_ms);
	for (;;) {
		uint64_t lost = mfd__pool_lost(&s->pool);
		for (unsigned k = 0; k < s->ss.cfg.channels && !ret; k++) {
			if (!(lost & ~s->dg.told & (1ULL << k)))
				continue;
			uint8_t msg[MFD_CHAN_LOST_SIZE];
			struct mfd__chan_lost m = { .channel = (uint16_t)k,
						    .round = round };
			mfd__chan_lost_encode(&m, msg);
			ret = mfd__ctl_send(s->main, MFD_CTL_CHAN_LOST, msg,
					    sizeof(msg));
			s->dg.told |= 1ULL << k;
		}
		if (ret || (ret = mfd__session_check(&s->ss)) ||
		    (ret = __atomic_load_n(&s->rs.broken, __ATOMIC_ACQUIRE)))
			return ret; /* (broken: resumable pre-copy) */
		pthread_mutex_lock(&s->lock);
		uint64_t known = s->dg.dest_lost;
		/* The return path signals CHAN_LOST; a worker leaving its
		 * channel is looked for every 10 ms (the pool cannot take
		 * this lock: teardown holds it while it joins the workers). */
		if ((want & lost & known) != want) {
			uint64_t t = mfd__deadline_ms(10);
			mfd__cond_wait_until(&s->cv, &s->lock,
					     t < deadline ? t : deadline);
		}
		pthread_mutex_unlock(&s->lock);
		if ((want & lost & known) == want)
			break;
		if (mfd__now_ns() >= deadline) {
			mfd__err("no CHAN_LOST answer from the destination "
				 "within io-timeout");
			return -ETIMEDOUT;
		}
	}
	for (unsigned k = 0; k < s->ss.cfg.channels; k++) {
		if (!(want & (1ULL << k)))
			continue;
		pthread_mutex_lock(&s->lock);
		uint32_t applied = s->dg.applied[k];
		pthread_mutex_unlock(&s->lock);
		uint64_t n = mfd__sentlog_redirty(&s->pool.w[k].log, applied,
						  s->ss.blocks);
		mfd__warn("channel %u lost: %llu pages after round %d go "
			  "again on the others",
			  k, (unsigned long long)n,
			  applied == MFD_ROUND_NONE ? -1 : (int)applied);
		*pages += n;
		s->dg.settled |= 1ULL << k;
		STAT_ADD(s->ss.st.channels_lost, 1);
	}
	return 0;
}

/*
 * Switchover, after the final pass (round *round): until the destination
 * has applied the last round on every channel that lives, a channel may
 * still be lost with pages of it; each time one is, what it held goes
 * again as one more round. Then nothing sent can be missing, and DONE
 * and END follow. Bounded by io-timeout per round.
 */
static int degrade_final(mfd_source *s, struct mfd__batch **batch,
			 uint32_t *round, uint64_t *pages)
{
	if (!s->pool.degrade)
		return 0;
	uint64_t deadline = mfd__deadline_ms(s->ss.cfg.io_timeout_ms);
	for (;;) {
		uint64_t again, more;
		int ret = degrade_settle(s, *round, &again);
		if (ret)
			return ret;
		if (again) {
			STAT_SET(s->ss.st.round, *round + 1);
			if ((ret = send_round(s, batch, ++*round, &more)))
				return ret;
			*pages += more;
			deadline = mfd__deadline_ms(s->ss.cfg.io_timeout_ms);
			continue;
		}
		/* A worker leaving its channel is looked for every 10 ms (the
		 * pool cannot take this lock: teardown holds it while it
		 * joins the workers); the return path signals the rest. */
		uint64_t t = mfd__deadline_ms(10);
		pthread_mutex_lock(&s->lock);
		while (s->dg.synced <= *round &&
		       !(s->dg.dest_lost & ~s->dg.settled) &&
		       !(ret = mfd__session_check(&s->ss)) &&
		       !mfd__cond_wait_until(&s->cv, &s->lock,
					     t < deadline ? t : deadline))
			;
		bool done = s->dg.synced > *round &&
			    !(s->dg.dest_lost & ~s->dg.settled);
		pthread_mutex_unlock(&s->lock);
		if (ret)
			return ret;
		if (mfd__pool_lost(&s->pool) & ~s->dg.settled)
			continue; /* settled next time round */
		if (done)
			return 0;
		if (mfd__now_ns() >= deadline) {
			mfd__err("the destination did not apply round %u "
				 "within io-timeout",
				 *round);
			return -ETIMEDOUT;
		}
	}
}

/* Before END: from now on a lost channel fails the migration. */
static void degrade_close(mfd_source *s)
{
	uint64_t late = s->pool.degrade ? mfd__pool_lost(&s->pool) : 0;
	pthread_mutex_lock(&s->lock);
	s->dg.end = true;
	late = (late | s->dg.dest_lost) & ~s->dg.settled;
	pthread_mutex_unlock(&s->lock);
	if (late) {
		mfd__err("a data channel was lost after the final round");
		source_fail(s, -ECONNRESET);
	}
}
/* ---- end degraded channels ---- */

/* The send workers on the data channels, then the return path. */
static int start_workers(mfd_source *s, struct mfd__chan **chans, unsigned n)
{
	pthread_mutex_lock(&s->lock);
	struct mfd__pool_codec codec = { .id = s->ss.cfg.compression,
					 .level = (int)s->ss.cfg.zstd_level,
					 .window_log = (int)s->ss.cfg.zstd_long,
					 .packet_pages =
						 s->ss.cfg.packet_pages };
	int ret = mfd__pool_start(&s->pool, chans, n, s->ss.blocks, &s->ss.st,
				  &codec);
	s->pool_up = ret == 0 || s->pool.w;
	/* Before the first batch: the workers read it after a handoff. */
	s->pool.digests = s->ss.cfg.verify ? &s->ss : NULL;
	memset(&s->dg, 0, sizeof(s->dg));
	pthread_mutex_unlock(&s->lock);
	if (!ret && degrade_on(s))
		ret = mfd__pool_degrade(&s->pool, s->ss.nblocks, NULL, NULL);
	if (!ret && resume_on(s)) /* resume: what each worker took */
		ret = mfd__pool_sentlog(&s->pool, s->ss.nblocks);
	if (ret)
		return ret;
	if (pthread_create(&s->rp_thread, NULL, return_path_main, s))
		return -EAGAIN;
	s->rp_up = true;
	return 0;
}

/* Post-copy: the K urgent lanes, idle until the switch. */
static int open_lanes(mfd_source *s, const uint8_t session[16])
{
	int ret = 0;
	for (unsigned i = 0; !ret && i < s->ss.cfg.postcopy_lanes; i++) {
		struct mfd__chan *c;
		ret = open_channel(s, MFD_ROLE_URGENT, (uint16_t)i, session,
				   &c);
		if (!ret) {
			pthread_mutex_lock(&s->lock);
			/* seq and counts from 0: a new connection */
			s->lanes.lane[s->lanes.n++] =
				(struct mfd__pc_lane){ .chan = c };
			pthread_mutex_unlock(&s->lock);
			ret = c->ops->set_timeout(c, s->ss.cfg.io_timeout_ms);
		}
	}
	return ret;
}

static int do_setup(mfd_source *s)
{
	uint8_t session[16];
	int ret = mfd__random_bytes(session, sizeof(session));
	memcpy(s->rs.session, session, sizeof(session)); /* resume */
	if (!ret && s->ss.cfg.verify)
		ret = mfd__session_digests_alloc(&s->ss);
	if (ret)
		return ret;
	struct mfd__chan *main;
	ret = open_channel(s, MFD_ROLE_MAIN, 0, session, &main);
	if (ret)
		return ret;
	pthread_mutex_lock(&s->lock);
	s->main = main;
	pthread_mutex_unlock(&s->lock);
	ret = send_setup(s, main);
	/* Device state: DEVICES, then the setup notifier (PRE_COPY). */
	if (!ret && mfd__devsave_any(&s->ds))
		ret = mfd__devsave_start(&s->ds, &s->ss.cfg, main);
	struct mfd__chan *chans[MFD_MAX_CHANNELS];
	unsigned n;
	if (ret || (ret = open_data(s, session, chans, &n)))
		return ret;
	/* Post-copy: the urgent lanes after the data channels (10.1). */
	if (s->ss.cfg.postcopy != MFD__POSTCOPY_OFF &&
	    (ret = open_lanes(s, session))) {
		while (n--)
			chans[n]->ops->close(chans[n]);
		return ret;
	}
	/* The return path waits as long as rounds last; stalls are caught on
	 * the data channels and by the bounded wait for LOADED. */
	main->ops->set_timeout(main, 0);
	return start_workers(s, chans, n);
}

/* Moves the dirty log (the hook's and mark_dirty's) into the migration
 * bitmaps; returns the dirty bytes now pending. */
/* hook: ask the sync_dirty hook too (every sync but the second one of a
 * pre-copy round, which times the rest; *hook_ns, when not NULL: the
 * hook's calls took that long). */
static int dirty_sync_how(mfd_source *s, uint64_t *pending, bool hook,
			  uint64_t *hook_ns)
{
	uint64_t bytes = 0;
	/* Device DMA into guest RAM, logged like mark_dirty's pages; the
	 * devices' pre-copy bytes count as pending. */
	if (mfd__devsave_any(&s->ds)) {
		int ret = mfd__devsave_sync(&s->ds, s->ss.blocks, s->ss.nblocks,
					    &bytes);
		if (ret)
			return ret;
	}
	for (unsigned i = 0; i < s->ss.nblocks; i++) {
		struct mfd__ramblock *rb = &s->ss.blocks[i];
		if (s->hooks.sync_dirty && hook) {
			uint64_t t0 = hook_ns ? mfd__now_ns() : 0;
			int ret = s->hooks.sync_dirty(s->hooks.opaque, i,
						      rb->dirty.words,
						      rb->npages);
			if (hook_ns)
				*hook_ns += mfd__now_ns() - t0;
			if (ret < 0) {
				mfd__err("sync_dirty hook failed: %d", ret);
				return MFD_EHOOK;
			}
			/* A stray bit past the block would send memory that
			 * is not the block's. */
			if (rb->npages & 63)
				rb->dirty.words[rb->dirty.nwords - 1] &=
					(1ULL << (rb->npages & 63)) - 1;
		}
		int64_t n = mfd__tracker_sync(&s->tracker, i);
		if (n < 0) {
			mfd__err("dirty sync of block %s (%s tracker): %s",
				 rb->name, mfd__tracker_name(s->tracker.kind),
				 mfd_strerror((int)n));
			return (int)n;
		}
		bytes += (uint64_t)n * rb->page_size;
	}
	*pending = bytes;
	STAT_SET(s->ss.st.pending_bytes, bytes);
	return 0;
}

static int dirty_sync(mfd_source *s, uint64_t *pending)
{
	return dirty_sync_how(s, pending, true, NULL);
}

/* One pass of the scanner over the dirty bitmaps, then SYNC and ROUND. */
/* A batch taken back from the pool before it went out (post-copy
 * requested): dirty again, so whichever comes next (the switch or a final
 * pre-copy round) sends it. It stays noted as sent: the destination may
 * hold an older copy from an earlier round, and the switch's DISCARD
 * (dirty and sent) drops it; dropping a page never received is harmless.
 * Pool lock held. */
static void unqueue_batch(void *ctx, const struct mfd__batch *b)
{
	mfd_source *s = ctx;
	struct mfd__ramblock *rb = &s->ss.blocks[b->block];
	for (unsigned i = 0; i < b->n; i++)
		mfd__bitmap_set(&rb->dirty, b->offsets[i] >> rb->page_shift);
	STAT_ADD(s->ss.st.pending_bytes, (uint64_t)b->n * rb->page_size);
}

static int send_round(mfd_source *s, struct mfd__batch **batch, uint32_t round,
		      uint64_t *pages_out)
{
	struct mfd__scanner sc;
	unsigned blk, n;
	uint64_t pages = 0;
	int ret = 0;
	mfd__scanner_init(&sc, s->ss.blocks, s->ss.nblocks,
			  s->ss.cfg.packet_pages);
	while ((n = mfd__scanner_next(&sc, &blk, (*batch)->offsets))) {
		(*batch)->round = round;
		(*batch)->block = blk;
		(*batch)->n = n;
		(*batch)->flags = 0;
		if (s->pcs_up)
			mfd__pc_src_sent(&s->pcs, blk, (*batch)->offsets, n);
		if ((ret = mfd__pool_submit(&s->pool, batch)) ||
		    (ret = mfd__session_check(&s->ss)))
			return ret;
		pages += n;
		uint64_t bytes = (uint64_t)n * s->ss.blocks[blk].page_size;
		uint64_t pend = STAT_GET(s->ss.st.pending_bytes);
		STAT_SET(s->ss.st.pending_bytes,
			 pend > bytes ? pend - bytes : 0);
		/* mfd_source_start_postcopy(): the round ends here, not at
		 * its last page (QEMU's migrate-start-postcopy does not wait
		 * for a pass either). What it did not send stays dirty and
		 * unsent: after the switch it is the bulk channels' work. */
		if (s->pcs_up &&
		    __atomic_load_n(&s->pc_request, __ATOMIC_ACQUIRE))
			break;
	}
	/* With post-copy on, the queues drain under watch: a request while
	 * they do takes back what has not gone out (up to 8 packets a
	 * channel, the whole round on a small guest). */
	while (!ret && s->pcs_up && mfd__pool_queued(&s->pool) > s->pool.n) {
		if (__atomic_load_n(&s->pc_request, __ATOMIC_ACQUIRE)) {
			pages -= mfd__pool_cancel_queued(&s->pool,
							 unqueue_batch, s);
			mfd__info("post-copy requested: round %u ends after "
				  "%llu pages",
				  round, (unsigned long long)pages);
			break;
		}
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
		ret = mfd__session_check(&s->ss);
	}
	if (ret)
		return ret;
	*pages_out = pages;
	if ((ret = mfd__pool_sync(&s->pool, round)))
		return ret;
	uint8_t msg[MFD_ROUND_SIZE];
	struct mfd__round r = { .round = round, .pages = pages };
	mfd__round_encode(&r, msg);
	return mfd__ctl_send(s->main, MFD_CTL_ROUND, msg, sizeof(msg));
}

static int set_throttle(mfd_source *s, int pct)
{
	if (!s->hooks.throttle || pct == s->throttle)
		return 0;
	int ret = s->hooks.throttle(s->hooks.opaque, pct);
	if (ret < 0) {
		mfd__err("throttle hook (%d%%) failed: %d", pct, ret);
		return MFD_EHOOK;
	}
	s->throttle = pct;
	STAT_SET(s->ss.st.throttle_pct, (uint32_t)pct);
	if ((uint32_t)pct > STAT_GET(s->ss.st.throttle_max_pct))
		STAT_SET(s->ss.st.throttle_max_pct, (uint32_t)pct);
	return 0;
}

static int set_vcpu_throttle(mfd_source *s, unsigned vcpu, uint32_t pct)
{
	if (!s->hooks.throttle_vcpu || pct == s->vcpu_pct[vcpu])
		return 0;
	int ret = s->hooks.throttle_vcpu(s->hooks.opaque, vcpu, (int)pct);
	if (ret < 0) {
		mfd__err("throttle_vcpu hook (vCPU %u, %u%%) failed: %d", vcpu,
			 pct, ret);
		return MFD_EHOOK;
	}
	s->vcpu_pct[vcpu] = pct;
	uint32_t n = 0;
	for (unsigned v = 0; v < s->nvcpus; v++)
		n += s->vcpu_pct[v] > 0;
	STAT_SET(s->ss.st.vcpus_throttled, n);
	if (pct > STAT_GET(s->ss.st.vcpu_throttle_max_pct))
		STAT_SET(s->ss.st.vcpu_throttle_max_pct, pct);
	return 0;
}

/*
 * Dirty-limit after a dirty sync: each vCPU's dirty rate over the round
 * (the pages now dirty in its ranges, over the time since the sync
 * before), and the per-vCPU throttles (converge.c) through the hook.
 */
static int apply_dirty_limit(mfd_source *s, uint64_t round_ns)
{
	uint64_t bytes[MFD_MAX_VCPUS] = { 0 }, rate[MFD_MAX_VCPUS];
	uint32_t pct[MFD_MAX_VCPUS];
	if (!s->nvcpus || !s->hooks.throttle_vcpu || !round_ns)
		return 0;
	s->dirty_limit_on = true;
	for (unsigned i = 0; i < s->nvranges; i++) {
		const struct vcpu_range *r = &s->vranges[i];
		const struct mfd__ramblock *rb = &s->ss.blocks[r->block];
		bytes[r->vcpu] += mfd__bitmap_count_range(&rb->dirty, r->first,
							  r->npages) *
				  rb->page_size;
	}
	for (unsigned v = 0; v < s->nvcpus; v++)
		rate[v] = (uint64_t)((double)bytes[v] * 1e9 / (double)round_ns);
	mfd__dirty_limit(rate, s->vcpu_pct, s->nvcpus,
			 (uint64_t)s->ss.cfg.vcpu_dirty_limit * 1000000,
			 s->ss.cfg.throttle_max, pct);
	for (unsigned v = 0; v < s->nvcpus; v++) {
		if (pct[v] != s->vcpu_pct[v])
			mfd__info("dirty-limit: vCPU %u dirtied %.1f MB/s "
				  "(limit %u): throttle %u%%",
				  v, (double)rate[v] / 1e6,
				  s->ss.cfg.vcpu_dirty_limit, pct[v]);
		int ret = set_vcpu_throttle(s, v, pct[v]);
		if (ret)
			return ret;
	}
	return 0;
}

/* Under s->lock: appends r (dropped when there is no memory for it);
 * the record in place, or NULL. */
static mfd_round_stats *append_round(mfd_source *s, const mfd_round_stats *r)
{
	if (s->nrounds == s->cap_rounds) {
		unsigned cap = s->cap_rounds ? 2 * s->cap_rounds : 32;
		mfd_round_stats *n = realloc(s->rounds, cap * sizeof(*n));
		if (n) {
			s->rounds = n;
			s->cap_rounds = cap;
		}
	}
	if (s->nrounds == s->cap_rounds)
		return NULL;
	s->rounds[s->nrounds] = *r;
	return &s->rounds[s->nrounds++];
}

static void add_round(mfd_source *s, const mfd_round_stats *r)
{
	pthread_mutex_lock(&s->lock);
	append_round(s, r);
	pthread_mutex_unlock(&s->lock);
}

/* Under lock: the tails of the latest rounds whose answer has come. */
static void fill_tails(mfd_source *s)
{
	for (unsigned i = s->nrounds; i-- > 0 && i + TAILS > s->nrounds;) {
		mfd_round_stats *r = &s->rounds[i];
		const struct round_tail *t = &s->tails[r->round % TAILS];
		if (r->tail_ns || t->ack_round != r->round ||
		    t->sent_round != r->round || !t->ack_ns || !t->sent_ns)
			continue;
		r->tail_ns =
			t->ack_ns > t->sent_ns ? t->ack_ns - t->sent_ns : 1;
		r->dest_ns = t->dest_ns;
		r->dest_end_ns = t->end_ns;
	}
}

static uint64_t predict_verify_end(const mfd_source *s, uint64_t pages);

/* Records the pre-copy round that just ended and decides what follows
 * (converge.c), under the lock: readers see the record complete. */
static void end_round(mfd_source *s, mfd_round_stats *rec, uint64_t elapsed,
		      struct mfd__converge_out *out, const char **pc_why)
{
	struct mfd__converge_settings set;
	mfd__converge_settings_from(&set, &s->ss.cfg);
	pthread_mutex_lock(&s->lock);
	mfd_round_stats *r = append_round(s, rec);
	fill_tails(s);
	struct mfd__converge_in in = {
		.rounds = r ? s->rounds : rec,
		.nrounds = r ? s->nrounds : 1,
		.elapsed_ns = elapsed,
		.throttle = (uint32_t)s->throttle,
		.page_size = s->ss.blocks[0].page_size,
		.stop_ns = s->ss.cfg.stop_cost_ms
				   ? s->ss.cfg.stop_cost_ms * 1000000ULL
				   : s->stop_ns,
		/* The kernel's figure (the path's least round trip): a
		 * timed request would include the destination's own work. */
		.rtt_ns = s->main && s->main->ops->rtt_ns
				  ? s->main->ops->rtt_ns(s->main)
				  : 0,
		.verify_ns = predict_verify_end(s, rec->pages),
		.dev_stop_ns = s->dev_stop_ns,
		.dirty_limit_on = s->dirty_limit_on,
		.set = &set
	};
	mfd__converge_decide(&in, out);
	struct mfd__postcopy_policy pol = {
		.mode = s->ss.cfg.postcopy,
		.after_rounds = s->ss.cfg.postcopy_after_rounds
	};
	*pc_why = mfd__postcopy_decide(
		&pol, __atomic_load_n(&s->pc_request, __ATOMIC_ACQUIRE), &in,
		out);
	const uint64_t *part = out->est.part_ns;
	for (mfd_round_stats *w = rec; w; w = w == rec ? r : NULL) {
		w->expected_downtime_ns = out->expected_downtime_ns;
		w->expected_stop_ns = part[MFD_DOWN_STOP];
		w->expected_sync_ns = part[MFD_DOWN_SYNC];
		w->expected_ram_ns = part[MFD_DOWN_RAM];
		w->expected_device_ns = part[MFD_DOWN_DEVICE];
		w->expected_end_ns = part[MFD_DOWN_END];
		w->over_part = (uint32_t)out->est.over;
		w->expected_downtime_q_ns = out->est.total_q_ns;
	}
	pthread_mutex_unlock(&s->lock);
	STAT_SET(s->ss.st.expected_stop_ns, part[MFD_DOWN_STOP]);
	STAT_SET(s->ss.st.expected_sync_ns, part[MFD_DOWN_SYNC]);
	STAT_SET(s->ss.st.expected_ram_ns, part[MFD_DOWN_RAM]);
	STAT_SET(s->ss.st.expected_device_ns, part[MFD_DOWN_DEVICE]);
	STAT_SET(s->ss.st.expected_end_ns, part[MFD_DOWN_END]);
	STAT_SET(s->ss.st.over_part, (uint32_t)out->est.over);
	STAT_SET(s->ss.st.expected_downtime_q_ns, out->est.total_q_ns);
}

/*
 * With verify: what the end's digests will take on one side. The pages
 * are hashed where they are sent and placed (protocol 5.5), so the cost
 * of the final round's pages is part of the bandwidth the rounds measure;
 * the chunks of page digests are rehashed at each round's end, so the
 * end rehashes only the final round's chunks (64 page digests each) and
 * makes the block digests from the chunk digests, 8 bytes per 64 pages
 * (mfd__session_chunks_update, mfd__session_wire_digests). Measured once
 * at the start as CPU time: a pass over as many chunk digests as the
 * guest has (up to 2^20, scaled), and the rehash of one chunk (the mean
 * of 256). CPU time, not wall time: other load on the machine is not
 * seen (a lower bound then).
 */
static void predict_verify(mfd_source *s)
{
	s->verify_pass_ns = s->verify_chunk_ns = s->verify_chunks = 0;
	if (!s->ss.cfg.verify || !s->ss.ram_bytes)
		return;
	uint64_t chunks = 0;
	for (unsigned i = 0; i < s->ss.nblocks; i++)
		chunks +=
			(s->ss.blocks[i].npages + MFD_DIGEST_CHUNK_PAGES - 1) /
			MFD_DIGEST_CHUNK_PAGES;
	s->verify_chunks = chunks;
	uint64_t n = chunks < (1ULL << 20) ? chunks : 1ULL << 20;
	const uint64_t probe = 256;
	uint64_t len = n > probe * MFD_DIGEST_CHUNK_PAGES
			       ? n
			       : probe * MFD_DIGEST_CHUNK_PAGES;
	uint64_t *pd = malloc(len * sizeof(*pd));
	if (!pd)
		return;
	for (uint64_t i = 0; i < len; i++)
		pd[i] = i * 0x9e3779b97f4a7c15ULL;
	uint8_t d[MFD__DIGEST_SIZE];
	uint64_t t0 = mfd__thread_cpu_ns();
	mfd__digest_pages(pd, n, d);
	uint64_t t1 = mfd__thread_cpu_ns();
	uint64_t sum = 0;
	for (uint64_t c = 0; c < probe; c++)
		sum += mfd__digest_chunk(pd + c * MFD_DIGEST_CHUNK_PAGES,
					 MFD_DIGEST_CHUNK_PAGES);
	uint64_t t2 = mfd__thread_cpu_ns();
	pd[0] = sum; /* the loop is not dead code */
	free(pd);
	s->verify_pass_ns =
		(uint64_t)((double)(t1 - t0) * (double)chunks / (double)n);
	s->verify_chunk_ns = (t2 - t1) / probe;
	if (!s->verify_pass_ns)
		s->verify_pass_ns = 1; /* verify on: never "off" */
}

/* One side's END digests if the final round sends about as many pages as
 * the round that just ended: each of them may lie in a chunk of its own. */
static uint64_t predict_verify_end(const mfd_source *s, uint64_t pages)
{
	if (!s->verify_pass_ns)
		return 0;
	if (pages > s->verify_chunks)
		pages = s->verify_chunks;
	return s->verify_pass_ns + pages * s->verify_chunk_ns;
}

/* Tracking on, every page dirty for round 0, the bandwidth limit on. */
static int precopy_begin(mfd_source *s)
{
	/* Tracking starts before round 0 reads a page: every later write is
	 * reported at a sync. */
	int ret = mfd__tracker_start(&s->tracker, (int)s->ss.cfg.dirty_tracker,
				     s->ss.blocks, s->ss.nblocks);
	if (ret)
		return ret;
	s->tracking = true;
	STAT_SET(s->ss.st.tracker, (int)s->tracker.kind);
	mfd__info("dirty tracker: %s", mfd__tracker_name(s->tracker.kind));
	mfd__pool_set_rate(&s->pool, s->ss.cfg.max_bandwidth);

	/* Round 0 sends every page: forget what was logged before. */
	for (unsigned i = 0; i < s->ss.nblocks; i++) {
		struct mfd__bitmap scratch = s->ss.blocks[i].dirty;
		mfd__bitmap_harvest(&scratch, &s->ss.blocks[i].log);
		mfd__bitmap_fill(&s->ss.blocks[i].dirty);
	}
	STAT_SET(s->ss.st.pending_bytes, s->ss.ram_bytes);
	STAT_SET(s->ss.st.phase, MFD_PHASE_PRECOPY);
	predict_verify(s);
	if (s->ss.cfg.postcopy != MFD__POSTCOPY_OFF) {
		if ((ret = mfd__pc_src_init(&s->pcs, s->ss.blocks,
					    s->ss.nblocks)))
			return ret;
		__atomic_store_n(&s->pcs_up, true, __ATOMIC_RELEASE);
	}
	return 0;
}

/* Until the workers' queues are empty and the socket queues hold at most
 * 256 KiB a channel (the link stays busy meanwhile), or the deadline
 * (mfd__now_ns()) has passed: 0, or the session's error. *tail (NULL: not
 * wanted): what the socket queues held and when the last packet was
 * written, once the workers' queues were first seen empty. */
static int drain_queues(mfd_source *s, uint64_t deadline, uint64_t *tail_bytes,
			uint64_t *sent_ns)
{
	uint64_t slack = (uint64_t)s->pool.n << 18; /* 256 KiB a channel */
	bool seen = !tail_bytes;
	for (;;) {
		bool queued = mfd__pool_queued(&s->pool);
		uint64_t unsent = mfd__pool_unsent(&s->pool);
		if (!queued && !seen) {
			seen = true;
			*tail_bytes = unsent;
			*sent_ns = __atomic_load_n(&s->pool.last_sent_ns,
						   __ATOMIC_RELAXED);
		}
		if ((!queued && unsent <= slack) || mfd__now_ns() >= deadline)
			return 0;
		int ret = mfd__session_check(&s->ss);
		if (!ret) /* a break pauses (the pool was aborted) */
			ret = __atomic_load_n(&s->rs.broken, __ATOMIC_ACQUIRE);
		if (ret)
			return ret;
		struct timespec ts = { 0, 500000 };
		nanosleep(&ts, NULL);
	}
}

/* The scheduler's account of the migration thread and the workers. */
struct sched_mark {
	uint64_t cpu, wait;
	unsigned n;
};

static void sched_mark(mfd_source *s, struct sched_mark *m)
{
	uint64_t cpu, wait;
	mfd__pool_sched(&s->pool, &m->cpu, &m->wait, &m->n);
	if (!mfd__thread_sched(mfd__gettid(), &cpu, &wait)) {
		m->cpu += cpu;
		m->wait += wait;
		m->n++;
	}
}

/* Device state and pages of one round; its record (pages, bytes, time). */
static int precopy_round(mfd_source *s, struct mfd__batch **batch,
			 uint32_t round, mfd_round_stats *rec)
{
	STAT_SET(s->ss.st.round, round);
	uint64_t t0 = mfd__now_ns();
	uint64_t b0 = STAT_GET(s->ss.st.wire_bytes);
	uint64_t q0 = mfd__pool_unsent(&s->pool);
	uint64_t pages = 0;
	int ret;
	struct sched_mark d0;
	sched_mark(s, &d0);
	uint64_t c_dev = mfd__thread_cpu_ns(), f_dev = s->pool.dev_full_ns;
	if (mfd__devsave_any(&s->ds) &&
	    (ret = mfd__devsave_round(&s->ds, &s->pool, s->main)))
		return ret;
	/* The device phase apart: it goes at its own pace (one device
	 * after the other), not the pages' (issue 18). */
	uint64_t t_dev = mfd__now_ns() - t0;
	uint64_t b_dev = STAT_GET(s->ss.st.wire_bytes) - b0;
	c_dev = mfd__thread_cpu_ns() - c_dev;
	f_dev = s->pool.dev_full_ns - f_dev;
	struct sched_mark m0, m1;
	sched_mark(s, &m0);
	uint64_t again, tail = 0, sent = 0;
	/* The round ends when its pages have left, not when they were
	 * queued: near convergence a round of a few pages is queued in
	 * microseconds behind MBs in the queues (recorded on 1 Gbit/s: 7.6
	 * MB, 64 ms), the estimate's drain stays as large as it was, and
	 * the rounds spun to max-rounds. Waiting, the guest dirties what it
	 * would have dirtied in the next round anyway. */
	if ((ret = send_round(s, batch, round, &pages)))
		return ret;
	/* Verify: every worker has sent the round (its SYNC) and waits for
	 * the next: the chunks of the page digests it recorded are rehashed
	 * now, so that the end rehashes only the final round's. */
	if (s->ss.cfg.verify)
		mfd__session_chunks_update(&s->ss);
	if ((ret = degrade_settle(s, round, &again)) ||
	    (ret = drain_queues(s, mfd__deadline_ms(s->ss.cfg.io_timeout_ms),
				&tail, &sent)))
		return ret;
	pthread_mutex_lock(&s->lock);
	s->tails[round % TAILS].sent_round = round;
	s->tails[round % TAILS].sent_ns = sent;
	pthread_mutex_unlock(&s->lock);
	uint64_t dt = mfd__now_ns() - t0;
	sched_mark(s, &m1);
	/* What left the host: on a slow link a short round's bytes may sit
	 * in the socket queues when it ends, and would count as sent. */
	uint64_t q1 = mfd__pool_unsent(&s->pool);
	uint64_t db = STAT_GET(s->ss.st.wire_bytes) - b0 + q0;
	db = db > q1 ? db - q1 : 0;
	*rec = (mfd_round_stats){ .round = round,
				  .throttle_pct = (uint32_t)s->throttle,
				  /* queued, not yet all sent: the workers
				   * keep a few batches */
				  .pages = pages,
				  .bytes = db,
				  .ns = dt,
				  .unsent_bytes = q1,
				  .device_bytes = b_dev < db ? b_dev : db,
				  .device_ns = t_dev,
				  .page_cpu_ns = m1.cpu - m0.cpu,
				  .page_wait_ns = m1.wait - m0.wait,
				  .page_threads = m1.n,
				  .device_wait_ns = m0.wait - d0.wait,
				  .device_cpu_ns = c_dev,
				  .device_full_ns = f_dev,
				  .tail_bytes = tail };
	if (dt)
		rec->bandwidth_bps = (uint64_t)((double)db * 1e9 / (double)dt);
	return 0;
}

/* Applies the decision: the throttle, and the log and result of a
 * pre-copy that did not converge. 1: switch over; 0: go on. */
static int precopy_apply(mfd_source *s, const mfd_round_stats *rec,
			 const struct mfd__converge_out *out)
{
	double expected_ms = (double)out->expected_downtime_ns / 1e6;
	const uint64_t *part = out->est.part_ns;
	mfd__dbg("round %u: %llu bytes pending, expected downtime %.1f ms "
		 "(at downtime-quantile %.1f ms, margin x%.3f from %u rounds; "
		 "stop %.1f, sync %.1f, ram %.1f, device %.1f, end %.1f)%s%s",
		 rec->round + 1, (unsigned long long)rec->dirty_bytes,
		 expected_ms, (double)out->est.total_q_ns / 1e6,
		 out->est.margin, out->est.nerr,
		 (double)part[MFD_DOWN_STOP] / 1e6,
		 (double)part[MFD_DOWN_SYNC] / 1e6,
		 (double)part[MFD_DOWN_RAM] / 1e6,
		 (double)part[MFD_DOWN_DEVICE] / 1e6,
		 (double)part[MFD_DOWN_END] / 1e6,
		 out->est.over ? ": over the limit by its part " : "",
		 out->est.over ? mfd_down_part_name(out->est.over) : "");
	if (out->action == MFD__CONV_SWITCHOVER)
		return 1;
	if (out->action == MFD__CONV_THROTTLE)
		mfd__info("auto-converge: dirtied %llu bytes while sending "
			  "%llu: throttle %u%%",
			  (unsigned long long)rec->dirty_bytes,
			  (unsigned long long)rec->bytes, out->throttle);
	int ret = set_throttle(s, (int)out->throttle);
	if (ret)
		return ret;
	if (out->action == MFD__CONV_CANCEL) {
		mfd__err("%s reached after %u rounds with %llu bytes pending "
			 "(expected downtime %.0f ms > %llu ms, mostly %s): "
			 "cancelling, the guest runs on here",
			 out->reason, rec->round + 1,
			 (unsigned long long)rec->dirty_bytes, expected_ms,
			 (unsigned long long)s->ss.cfg.downtime_limit_ms,
			 mfd_down_part_name(out->est.over));
		return MFD_ENOCONVERGE;
	}
	if (out->action == MFD__CONV_FORCE) {
		mfd__warn("%s reached after %u rounds with %llu bytes pending "
			  "(expected downtime %.0f ms, mostly %s): switching "
			  "over anyway",
			  out->reason, rec->round + 1,
			  (unsigned long long)rec->dirty_bytes, expected_ms,
			  mfd_down_part_name(out->est.over));
		STAT_SET(s->ss.st.forced, 1);
		return 1;
	}
	return 0;
}

/* ---- resumable pre-copy (multifd/resume.h, docs/protocol.md 7.8) ---- */

#define PAUSE_EXPIRED 1 /* resume_pause: resume-timeout passed */

static void wait_return_path(mfd_source *s, unsigned ms);

/* Any thread: a break that pauses instead of failing: in pre-copy (with
 * post-copy on also in the switch's DISCARD exchange, the guest still
 * running here), or after the post-copy switch until LOADED is read
 * (protocol 10.5; the return path ends at LOADED). Not from the stop to
 * SWITCH (phase switchover): that fails, the guest resumed here. */
static bool resume_pausable(mfd_source *s, int ret)
{
	if (!resume_on(s) || mfd__session_check(&s->ss) ||
	    !(mfd__is_transport_error(ret) ||
	      __atomic_load_n(&s->rs.broken, __ATOMIC_ACQUIRE)))
		return false;
	int phase = STAT_GET(s->ss.st.phase);
	return phase == MFD_PHASE_PRECOPY ||
	       (s->ss.cfg.postcopy != MFD__POSTCOPY_OFF &&
		phase == MFD_PHASE_POSTCOPY);
}

/* Return path or a lane: main (or a lane) broke. The pool and the lanes
 * are failed so that the migration thread stops sending and pauses;
 * true: nothing else to do. */
static bool resume_absorb(mfd_source *s, int ret)
{
	if (__atomic_load_n(&s->rs.broken, __ATOMIC_ACQUIRE))
		return true; /* pausing: the migration thread shut main */
	if (!resume_pausable(s, ret))
		return false;
	int none = 0;
	__atomic_compare_exchange_n(&s->rs.broken, &none, ret, false,
				    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	pthread_mutex_lock(&s->lock);
	if (s->pool_up)
		mfd__pool_abort(&s->pool, ret);
	if (s->lanes.n)
		mfd__pc_lanes_abort(&s->lanes);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
	return true;
}

/* The broken connections ended: the return path joined, the workers
 * ended with what they took in their logs, main closed. The batch the
 * scanner filled last may not have reached a worker: dirty again. */
static void resume_stop(mfd_source *s, struct mfd__batch *batch, int cause)
{
	pthread_mutex_lock(&s->lock);
	if (s->main)
		s->main->ops->shutdown(s->main, SHUT_RDWR);
	if (s->pool_up)
		mfd__pool_abort(&s->pool, cause);
	pthread_mutex_unlock(&s->lock);
	if (s->rp_up)
		pthread_join(s->rp_thread, NULL);
	s->rp_up = false;
	mfd__pool_quiesce(&s->pool);
	/* Post-copy: the lanes too; what they and the bulk claimed is
	 * rebuilt from the destination's RECEIVED at the resume. */
	bool pc = __atomic_load_n(&s->switched, __ATOMIC_ACQUIRE);
	if (s->lanes.n) { /* opened again at the resume */
		pthread_mutex_lock(&s->lock);
		mfd__pc_lanes_abort(&s->lanes);
		pthread_mutex_unlock(&s->lock);
		mfd__pc_lanes_close(&s->lanes); /* joins: not under the lock */
	}
	for (uint32_t i = 0;
	     !pc && batch->block < s->ss.nblocks && i < batch->n; i++) {
		struct mfd__ramblock *rb = &s->ss.blocks[batch->block];
		mfd__bitmap_set(&rb->dirty,
				batch->offsets[i] >> rb->page_shift);
	}
	pthread_mutex_lock(&s->lock);
	if (s->main)
		s->main->ops->close(s->main);
	s->main = NULL;
	pthread_mutex_unlock(&s->lock);
}

/* The old workers' pages the destination may not hold go back to the
 * dirty set; *inflight: bytes taken after its round base. */
static uint64_t resume_redirty(mfd_source *s, uint32_t base, uint64_t *inflight)
{
	for (unsigned k = 0; k < s->pool.n; k++) {
		const struct mfd__send_worker *w = &s->pool.w[k];
		uint64_t bit = 1ULL << k;
		if (!w->dead) {
			mfd__rs_src_collect(&s->rs.r, &w->log, s->ss.blocks,
					    base);
		} else if (!(s->dg.settled & bit)) {
			/* Degraded, not yet settled: what it took after the
			 * round the destination applied there (all that it
			 * remembers if that is not known), received or not. */
			mfd__sentlog_redirty(&w->log,
					     s->dg.dest_lost & bit
						     ? s->dg.applied[k]
						     : MFD_ROUND_NONE,
					     s->ss.blocks);
		}
	}
	return mfd__rs_src_redirty(&s->rs.r, s->ss.blocks, inflight);
}

/* Post-copy configured, resumed before the switch (pre-copy goes on):
 * the DISCARDs of an interrupted switch may not all have been applied,
 * so every dirty page counts as held there again (a DISCARD of a page
 * not there costs nothing; the switch sends every dirty page), and the
 * count of DISCARDED starts over. */
static void pc_before_switch_resumed(mfd_source *s)
{
	for (unsigned b = 0; b < s->ss.nblocks; b++) {
		const struct mfd__bitmap *d = &s->ss.blocks[b].dirty;
		for (uint64_t w = 0; w < d->nwords; w++)
			s->pcs.sent[b].words[w] |= d->words[w];
	}
	pthread_mutex_lock(&s->lock);
	s->discards = s->discarded = 0;
	pthread_mutex_unlock(&s->lock);
}

/* One resume attempt to s->rs.uri: RESUME on main, the destination's
 * RECEIVED, the data channels (and after the post-copy switch the urgent
 * lanes), new workers. 0 with *round the next (post-copy: the same). */
static int resume_connect(mfd_source *s, struct mfd__batch **batch,
			  uint32_t *round)
{
	bool pc = __atomic_load_n(&s->switched, __ATOMIC_ACQUIRE);
	pthread_mutex_lock(&s->lock);
	snprintf(s->uri, sizeof(s->uri), "%s", s->rs.uri);
	pthread_mutex_unlock(&s->lock);
	struct mfd__chan *main, *chans[MFD_MAX_CHANNELS];
	unsigned n = 0;
	uint32_t base = MFD_ROUND_NONE;
	struct mfd__wire_limits lim = { .nblocks = s->ss.nblocks,
					.blocks = s->ss.descs };
	int ret = open_channel(s, MFD_ROLE_RESUME, 0, s->rs.session, &main);
	if (ret)
		return ret;
	mfd__rs_src_clear(&s->rs.r);
	ret = main->ops->set_timeout(main, s->ss.cfg.io_timeout_ms);
	if (!ret)
		ret = mfd__rs_src_recv(&s->rs.r, main, &lim, &base);
	if (!ret && pc && base != MFD_ROUND_NONE)
		ret = MFD_EROUND; /* post-copy: every page, any round */
	if (!ret)
		ret = open_data(s, s->rs.session, chans, &n);
	if (!ret && s->ss.cfg.postcopy != MFD__POSTCOPY_OFF &&
	    (ret = open_lanes(s, s->rs.session))) {
		while (n--)
			chans[n]->ops->close(chans[n]);
	}
	int64_t left = 0;
	uint64_t inflight, again = 0;
	if (!ret && pc &&
	    (left = mfd__rs_src_pc_todo(&s->rs.r, &s->pcs, &again)) < 0) {
		ret = (int)left;
		while (n--)
			chans[n]->ops->close(chans[n]);
	}
	if (!ret && pc) /* what the old lanes had is in todo again */
		mfd__pc_src_lanes_reset(&s->pcs);
	if (ret) {
		main->ops->close(main);
		mfd__pc_lanes_close(&s->lanes);
		return ret;
	}
	uint64_t psize = s->ss.blocks[0].page_size;
	if (pc) {
		/* inflight: what is still to send; again: what of it had
		 * gone (or was going) and did not arrive. */
		inflight = (uint64_t)left * psize;
		again *= psize;
	} else {
		again = resume_redirty(s, base, &inflight);
		if (s->ss.cfg.postcopy != MFD__POSTCOPY_OFF)
			pc_before_switch_resumed(s);
	}
	pthread_mutex_lock(&s->lock);
	mfd__pool_destroy(&s->pool);
	s->pool_up = false;
	s->main = main;
	s->rp_done = false;
	pthread_mutex_unlock(&s->lock);
	__atomic_store_n(&s->rs.broken, 0, __ATOMIC_RELEASE);
	main->ops->set_timeout(main, 0); /* as after setup */
	if ((ret = start_workers(s, chans, n))) {
		s->rs.fatal = true;
		return ret;
	}
	mfd__pool_set_rate(&s->pool, pc ? s->ss.cfg.max_postcopy_bandwidth
					: s->ss.cfg.max_bandwidth);
	*batch = mfd__pool_batch(&s->pool);
	if (!pc)
		*round = base == MFD_ROUND_NONE ? 0 : base + 1;
	STAT_ADD(s->ss.st.resumes, 1);
	STAT_ADD(s->ss.st.resume_bytes, again);
	STAT_ADD(s->ss.st.resume_inflight_bytes, inflight);
	STAT_SET(s->ss.st.phase, pc ? MFD_PHASE_POSTCOPY : MFD_PHASE_PRECOPY);
	mfd__info("%s resumed at round %u through %s: %llu of %llu bytes "
		  "%s go again",
		  pc ? "post-copy" : "pre-copy", *round, s->uri,
		  (unsigned long long)again, (unsigned long long)inflight,
		  pc ? "still to send" : "in flight");
	return 0;
}

/*
 * Migration thread, after a break in pre-copy (cause): paused until
 * mfd_source_resume() succeeds (0: pre-copy goes on at *round), the
 * embedder cancels, or resume-timeout passes (the migration fails with
 * the cause). The guest runs on, tracked; nothing is sent meanwhile.
 * After the post-copy switch the same, in postcopy-paused: the guest runs
 * on the destination (never here again), and the resume sends exactly
 * what it does not hold; an expired wait is a lost guest (the caller).
 */
static int resume_pause(mfd_source *s, struct mfd__batch **batch,
			uint32_t *round, int cause)
{
	/* A destination that failed closes the connections too, and says
	 * why on main: a moment for its ERROR (the return path ends on it,
	 * or on main's own break), which fails rather than pauses. */
	if (s->rp_up)
		wait_return_path(s, 2000);
	int err = mfd__session_check(&s->ss);
	if (err)
		return err;
	int none = 0;
	if (!__atomic_compare_exchange_n(&s->rs.broken, &none, cause, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		cause = none; /* the return path's */
	/* From the phase on, mfd_source_resume() is accepted (and waits
	 * for the loop below to take it). */
	bool pc = __atomic_load_n(&s->switched, __ATOMIC_ACQUIRE);
	pthread_mutex_lock(&s->lock);
	s->rs.paused = true;
	pthread_mutex_unlock(&s->lock);
	STAT_SET(s->ss.st.phase,
		 pc ? MFD_PHASE_POSTCOPY_PAUSED : MFD_PHASE_PAUSED);
	resume_stop(s, *batch, cause);
	int ret = s->rs.r.nblocks ? 0
				  : mfd__rs_src_init(&s->rs.r, s->ss.blocks,
						     s->ss.nblocks);
	if (pc)
		mfd__warn("post-copy paused: %s; mfd_source_resume() within "
			  "%llu ms goes on, the guest runs on the destination "
			  "meanwhile (its faults wait)",
			  mfd_strerror(cause),
			  (unsigned long long)s->ss.cfg.resume_timeout_ms);
	else
		mfd__warn("pre-copy paused in round %u: %s; "
			  "mfd_source_resume() within %llu ms goes on, the "
			  "guest runs here meanwhile",
			  *round ? *round - 1 : 0, mfd_strerror(cause),
			  (unsigned long long)s->ss.cfg.resume_timeout_ms);
	if (s->hooks.paused)
		s->hooks.paused(s->hooks.opaque, cause);
	uint64_t deadline = mfd__deadline_ms(s->ss.cfg.resume_timeout_ms);
	pthread_mutex_lock(&s->lock);
	while (!ret) {
		if ((ret = mfd__session_check(&s->ss)))
			break;
		if (s->rs.request) {
			pthread_mutex_unlock(&s->lock);
			ret = resume_connect(s, batch, round);
			if (ret)
				mfd__warn("resume through %s: %s; still paused",
					  s->rs.uri, mfd_strerror(ret));
			pthread_mutex_lock(&s->lock);
			s->rs.request = false;
			s->rs.answered = true;
			s->rs.result = ret;
			pthread_cond_broadcast(&s->cv);
			if (!ret || s->rs.fatal)
				break; /* resumed, or the old pool is gone */
			ret = 0; /* still paused: another attempt may come */
			continue;
		}
		if (mfd__cond_wait_until(&s->cv, &s->lock, deadline) ==
			    ETIMEDOUT &&
		    !s->rs.request) {
			ret = PAUSE_EXPIRED;
			break;
		}
	}
	s->rs.paused = false;
	if (s->rs.request) { /* too late: answered */
		s->rs.request = false;
		s->rs.answered = true;
		s->rs.result = MFD_ESTATE;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->lock);
	if (ret == PAUSE_EXPIRED)
		ret = mfd__session_fail_why(
			&s->ss, cause,
			pc ? "the connections broke after the post-copy switch "
			     "(%s) and no resume came within resume-timeout "
			     "(%llu ms): the guest is lost"
			   : "the connections broke in pre-copy (%s) and no "
			     "resume came within resume-timeout (%llu ms): the "
			     "guest runs on here",
			mfd_strerror(cause),
			(unsigned long long)s->ss.cfg.resume_timeout_ms);
	return ret;
}
/* ---- end resumable pre-copy ---- */

/* Rounds (from *round_io on, precopy_begin() done) until the decision is
 * to switch over; *round_io: the next. */
static int do_precopy(mfd_source *s, struct mfd__batch **batch,
		      uint32_t *round_io, bool *postcopy)
{
	int ret = 0;
	uint64_t t_begin = mfd__now_ns(), t_sync = t_begin;
	uint32_t round = *round_io;
	while (!ret) {
		mfd_round_stats rec;
		uint64_t pending, t0 = 0;
		uint64_t c0 = 0, t1 = 0, hook_ns = 0;
		/* A second sync right after the first: it finds what was
		 * written in between, as the sync at the stop will find
		 * what was written between the decision and the stop; its
		 * CPU time is that sync's cost (the first one's grows with
		 * the round's writes: recorded with uffd-wp, 5.4 ms of CPU
		 * after round 0 where the stop's took 0.75). The sync_dirty
		 * hook is asked once a round, as always: its time in the
		 * first sync stands for its part. */
		if ((ret = precopy_round(s, batch, round++, &rec)) ||
		    (t0 = mfd__now_ns(),
		     ret = dirty_sync_how(s, &pending, true, &hook_ns)) ||
		    (t1 = mfd__now_ns(), c0 = mfd__thread_cpu_ns(),
		     ret = dirty_sync_how(s, &pending, false, NULL)) ||
		    (ret = mfd__session_check(&s->ss))) {
			/* Resumable pre-copy: paused, then on, or failed. */
			if (resume_pausable(s, ret) &&
			    !(ret = resume_pause(s, batch, &round, ret)))
				continue;
			break;
		}
		uint64_t now = mfd__now_ns();
		rec.sync_ns = t1 - t0;
		rec.sync_cpu_ns = mfd__thread_cpu_ns() - c0 + hook_ns;
		if (mfd__devsave_any(&s->ds)) {
			rec.device_stop_bytes =
				mfd__devset_stop_copy_size(&s->ds.set);
			/* issue 18: the devices' stop, in the sync part */
			s->dev_stop_ns = mfd__devset_stop_cost(&s->ds.set);
		}
		rec.dirty_bytes = pending;
		rec.dirty_pages = pending / s->ss.blocks[0].page_size;
		uint64_t window = now - t_sync;
		rec.dirty_rate_bps = window ? (uint64_t)((double)pending * 1e9 /
							 (double)window)
					    : 0;
		t_sync = now;
		struct mfd__converge_out out;
		const char *pc_why = NULL;
		end_round(s, &rec, now - t_begin, &out, &pc_why);
		STAT_SET(s->ss.st.bandwidth_bps, out.bandwidth_bps);
		STAT_SET(s->ss.st.dirty_rate_bps, rec.dirty_rate_bps);
		STAT_SET(s->ss.st.expected_downtime_ns,
			 out.expected_downtime_ns);
		if (pc_why) {
			mfd__info("post-copy after round %u: %s", rec.round,
				  pc_why);
			*postcopy = true;
			break;
		}
		ret = precopy_apply(s, &rec, &out);
		if (!ret && out.dirty_limit)
			ret = apply_dirty_limit(s, window);
		/* Resumable pre-copy: main broke during the round (the
		 * return path saw it): pause before any switchover. */
		int broken = __atomic_load_n(&s->rs.broken, __ATOMIC_ACQUIRE);
		if (ret >= 0 && broken && resume_pausable(s, broken))
			ret = resume_pause(s, batch, &round, broken);
	}
	*round_io = round;
	return ret < 0 ? ret : 0;
}

static int wait_loaded(mfd_source *s)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t ms = s->ss.cfg.io_timeout_ms;
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	int ret = 0;
	pthread_mutex_lock(&s->lock);
	/* postcopy-paused: a break before LOADED (rs.broken) pauses. */
	while (!s->loaded && !(ret = mfd__session_check(&s->ss)) &&
	       !(ret = __atomic_load_n(&s->rs.broken, __ATOMIC_ACQUIRE))) {
		if (pthread_cond_timedwait(&s->cv, &s->lock, &ts) ==
		    ETIMEDOUT) {
			ret = s->loaded ? 0 : -ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	if (ret == -ETIMEDOUT)
		mfd__err("no answer from the destination after END within "
			 "io-timeout (%llu ms)",
			 (unsigned long long)s->ss.cfg.io_timeout_ms);
	return ret;
}

/* Devices to the P2P states, the stop hook, devices to STOP_COPY. */
static int stop_guest(mfd_source *s)
{
	int ret;
	/* Devices: all to the P2P states before any is stopped. */
	if (mfd__devsave_any(&s->ds) &&
	    (ret = mfd__devsave_before_stop(&s->ds)))
		return ret;
	uint64_t t0 = mfd__now_ns();
	ret = s->hooks.stop(s->hooks.opaque);
	s->stopped = true; /* resume even when stop half-failed */
	s->stop_ns = mfd__now_ns() - t0;
	STAT_SET(s->ss.st.down_stop_ns, s->stop_ns);
	if (ret < 0) {
		mfd__err("stop hook failed: %d", ret);
		return MFD_EHOOK;
	}
	/* STOP_COPY: their DMA has stopped, so the sync after has all. */
	if (mfd__devsave_any(&s->ds) && (ret = mfd__devsave_after_stop(&s->ds)))
		return ret;
	return 0;
}

/* With verify: the block digests of what was sent, from the page digests
 * the workers recorded (*out, freed by the caller); else *out = NULL.
 * chunks_ns: the rehash of the final round's chunks, done before.
 * Only the final round's pages were hashed inside the downtime (by the
 * workers, as they sent them), and only their chunks of page digests are
 * rehashed here; then one pass over 8 bytes per 64 pages. */
static int final_digests(mfd_source *s, uint64_t chunks_ns,
			 uint8_t (**out)[MFD_DIGEST_SIZE])
{
	*out = NULL;
	if (!s->ss.cfg.verify)
		return 0;
	uint64_t t0 = mfd__now_ns();
	uint8_t(*digests)[MFD_DIGEST_SIZE] =
		calloc(s->ss.nblocks, MFD_DIGEST_SIZE);
	if (!digests)
		return -ENOMEM;
	mfd__session_chunks_update(&s->ss);
	mfd__session_wire_digests(&s->ss, digests);
	/* With the final round's chunks, rehashed as it ended. */
	STAT_SET(s->ss.st.verify_ns, mfd__now_ns() - t0 + chunks_ns);
	*out = digests;
	return 0;
}

static int send_end(mfd_source *s, uint32_t round,
		    uint8_t (*digests)[MFD_DIGEST_SIZE])
{
	/* Totals of the channels that live (a lost one's are not known to
	 * have arrived; what they held was sent again). */
	struct mfd__end e = { .final_round = round,
			      .nblocks = s->ss.nblocks,
			      .total_pages = STAT_GET(s->ss.st.pages),
			      .total_packets = STAT_GET(s->ss.st.packets),
			      .digests = digests };
	if (degrade_on(s) || resume_on(s)) { /* since the last resume */
		mfd__pool_totals(&s->pool, &e.total_pages, &e.total_packets);
		for (unsigned i = 0; i < s->lanes.n; i++) { /* post-copy */
			e.total_pages += s->lanes.lane[i].pages;
			e.total_packets += s->lanes.lane[i].packets;
		}
	}
	size_t len = mfd__end_size(s->ss.nblocks, digests != NULL);
	uint8_t *buf = malloc(len);
	int ret = buf ? mfd__end_encode(&e, buf, len) : -ENOMEM;
	if (ret >= 0)
		ret = mfd__ctl_send(s->main, MFD_CTL_END, buf, (uint32_t)ret);
	free(buf);
	return ret;
}

/* The record of the final pass: from the sync after the stop to the last
 * page sent. */
/* sched: the workers' and the migration thread's account over the pass
 * (NULL: none), sync_cpu the CPU time of the sync before it. */
static void final_round(mfd_source *s, uint32_t round, uint64_t pages,
			uint64_t bytes, uint64_t ns, uint64_t dirty,
			const struct sched_mark *sched, uint64_t sync_cpu)
{
	mfd_round_stats rec = {
		.page_cpu_ns = sched ? sched->cpu : 0,
		.page_wait_ns = sched ? sched->wait : 0,
		.page_threads = sched ? sched->n : 0,
		.sync_cpu_ns = sync_cpu,
		.round = round,
		.pages = pages,
		.bytes = bytes,
		.ns = ns,
		.dirty_pages = dirty / s->ss.blocks[0].page_size,
		.dirty_bytes = dirty,
	};
	if (rec.ns)
		rec.bandwidth_bps =
			(uint64_t)((double)rec.bytes * 1e9 / (double)rec.ns);
	add_round(s, &rec);
}

/* Issue 18: the downtime measured in the estimate's parts, beside what
 * was expected; over downtime-limit, the part that broke the budget is
 * named (stats.overrun_part and a warning). */
static void downtime_parts(mfd_source *s)
{
	const struct mfd__stats *st = &s->ss.st;
	uint64_t m[MFD_DOWN_END + 1] = { 0 }, e[MFD_DOWN_END + 1] = { 0 };
	m[MFD_DOWN_STOP] = STAT_GET(st->down_stop_ns);
	m[MFD_DOWN_SYNC] = STAT_GET(st->down_sync_ns) - m[MFD_DOWN_STOP];
	m[MFD_DOWN_RAM] = STAT_GET(st->down_pages_ns);
	m[MFD_DOWN_DEVICE] = STAT_GET(st->down_device_ns);
	m[MFD_DOWN_END] = STAT_GET(st->down_end_ns) +
			  STAT_GET(st->down_ack_ns) - m[MFD_DOWN_DEVICE];
	e[MFD_DOWN_STOP] = STAT_GET(st->expected_stop_ns);
	e[MFD_DOWN_SYNC] = STAT_GET(st->expected_sync_ns);
	e[MFD_DOWN_RAM] = STAT_GET(st->expected_ram_ns);
	e[MFD_DOWN_DEVICE] = STAT_GET(st->expected_device_ns);
	e[MFD_DOWN_END] = STAT_GET(st->expected_end_ns);
	uint64_t limit = s->ss.cfg.downtime_limit_ms;
	int over = mfd__downtime_overrun(m, e, limit * 1000000ULL);
	STAT_SET(s->ss.st.overrun_part, (uint32_t)over);
	if (over == MFD_DOWN_NONE)
		return;
	mfd__warn(
		"downtime %.1f ms over downtime-limit %llu ms: %s took "
		"%.1f ms, %.1f expected (measured/expected ms: stop "
		"%.1f/%.1f, sync %.1f/%.1f, ram %.1f/%.1f, device "
		"%.1f/%.1f, end %.1f/%.1f)",
		(double)STAT_GET(st->downtime_ns) / 1e6,
		(unsigned long long)limit, mfd_down_part_name(over),
		(double)m[over] / 1e6, (double)e[over] / 1e6,
		(double)m[MFD_DOWN_STOP] / 1e6, (double)e[MFD_DOWN_STOP] / 1e6,
		(double)m[MFD_DOWN_SYNC] / 1e6, (double)e[MFD_DOWN_SYNC] / 1e6,
		(double)m[MFD_DOWN_RAM] / 1e6, (double)e[MFD_DOWN_RAM] / 1e6,
		(double)m[MFD_DOWN_DEVICE] / 1e6,
		(double)e[MFD_DOWN_DEVICE] / 1e6, (double)m[MFD_DOWN_END] / 1e6,
		(double)e[MFD_DOWN_END] / 1e6);
}

static int do_switchover(mfd_source *s, struct mfd__batch **batch,
			 uint32_t round)
{
	uint64_t pending, final_pages = 0;
	/* The downtime runs at the link's full speed. */
	mfd__pool_set_rate(&s->pool, 0);
	STAT_SET(s->ss.st.phase, MFD_PHASE_SWITCHOVER);
	uint64_t t_stop = mfd__now_ns();
	int ret = stop_guest(s);
	STAT_SET(s->ss.st.round, round);
	if (ret)
		return ret;
	/* What the guest wrote since the last sync, and nothing after. */
	uint64_t c0 = mfd__thread_cpu_ns();
	if ((ret = dirty_sync(s, &pending)) ||
	    (ret = mfd__session_check(&s->ss)))
		return ret;
	uint64_t t_sync = mfd__now_ns();
	uint64_t sync_cpu = mfd__thread_cpu_ns() - c0;
	struct sched_mark m0, m1;
	sched_mark(s, &m0);
	uint64_t b0 = STAT_GET(s->ss.st.wire_bytes);
	if ((ret = send_round(s, batch, round, &final_pages)))
		return ret;
	/* Verify: the final round's chunks of page digests, while the
	 * destination still reads and places the round's last pages. */
	uint64_t t_chunks = mfd__now_ns();
	if (s->ss.cfg.verify)
		mfd__session_chunks_update(&s->ss);
	t_chunks = mfd__now_ns() - t_chunks;
	/* Degraded channels: what a channel lost in the final round held
	 * goes again on the others, as one more round (the guest stays
	 * stopped). */
	if ((ret = degrade_final(s, batch, &round, &final_pages)))
		return ret;
	/* Device state after the RAM: DEVICE packets behind the pages on
	 * the channels, or DEVICE_DATA on the main channel before END. */
	if (mfd__devsave_any(&s->ds) &&
	    (ret = mfd__devsave_final(&s->ds, &s->pool, s->main)))
		return ret;
	ret = mfd__pool_done(&s->pool);
	uint64_t t_dev = 0;
	if (!ret && mfd__devsave_any(&s->ds))
		t_dev = mfd__devsave_sent(&s->ds, &s->pool);
	/* Every page has gone out and recorded its digest. */
	uint8_t(*digests)[MFD_DIGEST_SIZE] = NULL;
	if (!ret)
		ret = final_digests(s, t_chunks, &digests);
	/* Until the last page left, not until the digests were ready. */
	uint64_t t_last =
		__atomic_load_n(&s->pool.last_sent_ns, __ATOMIC_RELAXED);
	if (t_last < t_sync)
		t_last = t_sync;
	STAT_SET(s->ss.st.transfer_ns,
		 t_last - s->ss.t_start - s->ss.st.setup_ns);
	sched_mark(s, &m1);
	m1.cpu -= m0.cpu;
	m1.wait -= m0.wait;
	final_round(s, round, final_pages, STAT_GET(s->ss.st.wire_bytes) - b0,
		    t_last - t_sync, pending, &m1, sync_cpu);
	if (!ret)
		degrade_close(s);
	if (!ret)
		ret = mfd__session_check(&s->ss);
	if (!ret)
		ret = send_end(s, round, digests);
	free(digests);
	uint64_t t_end = mfd__now_ns();
	if (!ret)
		ret = wait_loaded(s);
	if (!ret) {
		uint64_t t_loaded = mfd__now_ns();
		STAT_SET(s->ss.st.down_sync_ns, t_sync - t_stop);
		STAT_SET(s->ss.st.down_pages_ns, t_last - t_sync);
		STAT_SET(s->ss.st.down_end_ns, t_end - t_last);
		STAT_SET(s->ss.st.down_ack_ns, t_loaded - t_end);
		STAT_SET(s->ss.st.downtime_ns, t_loaded - t_stop);
		/* The device state that left after the last page. */
		t_dev = t_dev > t_last ? (t_dev < t_end ? t_dev : t_end)
				       : t_last;
		STAT_SET(s->ss.st.down_device_ns, t_dev - t_last);
		downtime_parts(s);
	}
	return ret;
}

/* ---- post-copy (docs/protocol.md 10.3) ---- */
static void wait_return_path(mfd_source *s, unsigned ms);
static void untrack(mfd_source *s);

static int send_discard(void *ctx, const uint8_t *payload, size_t len)
{
	mfd_source *s = ctx;
	s->discards++;
	return mfd__ctl_send(s->main, MFD_CTL_DISCARD, payload, (uint32_t)len);
}

/* Until the destination has applied every DISCARD sent so far (its
 * DISCARDED), at most io-timeout: the guest still runs meanwhile. */
static int wait_discarded(mfd_source *s)
{
	uint64_t deadline = mfd__deadline_ms(s->ss.cfg.io_timeout_ms);
	struct timespec ts = { (time_t)(deadline / 1000000000ULL),
			       (long)(deadline % 1000000000ULL) };
	int ret = 0;
	pthread_mutex_lock(&s->lock);
	while (s->discarded < s->discards &&
	       !(ret = mfd__session_check(&s->ss)) &&
	       !(ret = __atomic_load_n(&s->rs.broken, __ATOMIC_ACQUIRE)))
		if (pthread_cond_timedwait(&s->cv, &s->lock, &ts) ==
		    ETIMEDOUT) {
			ret = s->discarded < s->discards ? -ETIMEDOUT : 0;
			break;
		}
	pthread_mutex_unlock(&s->lock);
	if (ret == -ETIMEDOUT)
		mfd__err("post-copy: the destination did not apply the "
			 "DISCARDs within io-timeout");
	return ret;
}

void (*mfd__test_pc_claimed)(unsigned block, const uint64_t *offsets,
			     unsigned n);
void (*mfd__test_pc_again)(unsigned block, const uint64_t *offsets, unsigned n);

static void lane_failed(void *ctx, int err)
{
	mfd_source *s = ctx;
	if (resume_absorb(s, err))
		return; /* postcopy-paused */
	if (!mfd__session_check(&s->ss))
		mfd__err("urgent lane: %s", mfd_strerror(err));
	source_fail(s, err);
}

/* The switch: the guest stops here for good; stale pages are discarded on
 * the destination, device state and SWITCH(p) follow; from then on the
 * destination runs the guest. */
/* Before the stop, the guest still running: until the last pre-copy
 * round has left the pool and (mostly) the sockets. Whatever is still in
 * flight at the stop delays SWITCH's effect on the destination, which
 * waits for the whole round p - 1: downtime. Pages the guest writes
 * meanwhile are dirty at the stop's sync like any others. */
static int drain_before_stop(mfd_source *s)
{
	return drain_queues(s, UINT64_MAX, NULL, NULL);
}

static int postcopy_switch(mfd_source *s, uint32_t round, uint64_t *t_stop)
{
	uint64_t pending;
	/* Guest running: what it dirtied since the last round and was sent
	 * before is dropped there now, outside the downtime. */
	uint64_t t0 = mfd__now_ns();
	int ret = dirty_sync(s, &pending);
	int64_t early =
		ret ? ret : mfd__pc_src_predrop(&s->pcs, send_discard, s);
	if (early < 0)
		return (int)early;
	uint64_t t1 = mfd__now_ns();
	if ((ret = wait_discarded(s)))
		return ret;
	uint64_t t2 = mfd__now_ns();
	if ((ret = drain_before_stop(s)))
		return ret;
	mfd__dbg("post-copy: early DISCARDs sent %.1f ms, applied %.1f ms, "
		 "drained %.1f ms",
		 (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6,
		 (double)(mfd__now_ns() - t2) / 1e6);
	mfd__pool_set_rate(&s->pool, 0);
	STAT_SET(s->ss.st.phase, MFD_PHASE_SWITCHOVER);
	*t_stop = mfd__now_ns();
	ret = stop_guest(s);
	STAT_SET(s->ss.st.round, round);
	if (ret || (ret = dirty_sync(s, &pending)) ||
	    (ret = mfd__session_check(&s->ss)))
		return ret;
	untrack(s); /* the guest never writes here again */
	int64_t left = mfd__pc_src_switch(&s->pcs, send_discard, s);
	if (left < 0)
		return (int)left;
	/* Device state, as one package on main before SWITCH (10.3). */
	if (mfd__devsave_any(&s->ds) &&
	    (ret = mfd__devsave_final(&s->ds, &s->pool, s->main)))
		return ret;
	uint8_t msg[MFD_SWITCH_SIZE];
	struct mfd__switch sw = { .round = round, .pages = (uint64_t)left };
	mfd__switch_encode(&sw, msg);
	/* From the first byte of SWITCH on, the guest is the destination's. */
	__atomic_store_n(&s->switched, true, __ATOMIC_RELEASE);
	if ((ret = mfd__ctl_send(s->main, MFD_CTL_SWITCH, msg, sizeof(msg))))
		return ret;
	uint64_t now = mfd__now_ns();
	STAT_SET(s->ss.st.downtime_ns, now - *t_stop);
	STAT_SET(s->ss.st.down_sync_ns, now - *t_stop);
	STAT_SET(s->ss.st.postcopy_round, round);
	STAT_SET(s->ss.st.pending_bytes,
		 (uint64_t)left * s->ss.blocks[0].page_size);
	STAT_SET(s->ss.st.phase, MFD_PHASE_POSTCOPY);
	mfd__info("post-copy: switched at round %u, %lld pages to send (%lld "
		  "dropped there before the stop, %llu hot)",
		  round, (long long)left, (long long)early,
		  (unsigned long long)s->pcs.hot_left);
	if (s->hooks.postcopy)
		s->hooks.postcopy(s->hooks.opaque);
	return 0;
}

/* Pages per bulk packet after the switch (256 KiB of 4 KiB pages): a
 * request for a page the bulk has claimed waits for its packet, so the
 * smaller, the shorter the tail (1 MiB packets: request p99 12 ms on the
 * paced 1 Gbit/s link; 256 KiB: 2.6-4.6 ms). */
#define PC_BULK_PAGES 64

/* Until at most one job per data channel is queued (or a failure). */
struct pc_pacer;
static void pace_update(mfd_source *s, struct pc_pacer *pp);

static int bulk_room(mfd_source *s, struct pc_pacer *pp)
{
	pace_update(s, pp);
	while (mfd__pool_queued(&s->pool) > s->pool.n) {
		pace_update(s, pp);
		int ret = mfd__session_check(&s->ss);
		if (!ret) /* postcopy-paused: the pool was aborted */
			ret = __atomic_load_n(&s->rs.broken, __ATOMIC_ACQUIRE);
		if (ret)
			return ret;
		struct timespec ts = { 0, 100000 };
		nanosleep(&ts, NULL);
	}
	return 0;
}

/*
 * After SWITCH the data channels and the urgent lanes share one link, and
 * the host's queue in front of it (a qdisc) is one FIFO: an answer waits
 * behind every data-channel byte queued there, and TCP small queues let
 * each socket keep two 64 KiB segments in it (272 KB for two channels,
 * 2.2 ms at 1 Gbit/s, measured with tc). So the data channels are paced
 * (mfd__pool_pace) at what the lanes leave of the link
 * (mfd__pc_bulk_pace, updated every PACE_EVERY_NS from the lanes' bytes):
 * the queue drains between segments. The link: max-postcopy-bandwidth,
 * else the bandwidth pre-copy measured, unless max-bandwidth is set
 * (pre-copy measured the limit, not the link: no pacing).
 */
struct pc_pacer {
	uint64_t link_bps; /* 0: not paced */
	uint64_t t_ns, lane_bytes, lane_bps, cur_bps;
};

#define PACE_EVERY_NS 10000000ULL

static void pace_set(mfd_source *s, struct pc_pacer *pp)
{
	uint64_t bps = mfd__pc_bulk_pace(pp->link_bps, pp->lane_bps);
	uint64_t d = bps > pp->cur_bps ? bps - pp->cur_bps : pp->cur_bps - bps;
	if (pp->cur_bps && d < pp->link_bps / 50)
		return; /* a setsockopt per channel saved */
	pp->cur_bps = bps;
	(void)mfd__pool_pace(&s->pool, bps);
}

static void pace_start(mfd_source *s, struct pc_pacer *pp)
{
	const struct mfd_config *c = &s->ss.cfg;
	memset(pp, 0, sizeof(*pp));
	if (!c->postcopy_pacing)
		return;
	pp->link_bps = c->max_postcopy_bandwidth;
	/* Pre-copy held to max-bandwidth measured the limit, not the
	 * link. */
	if (!pp->link_bps && !c->max_bandwidth)
		pp->link_bps = STAT_GET(s->ss.st.bandwidth_bps);
	if (!pp->link_bps)
		return;
	pp->t_ns = mfd__now_ns();
	pp->lane_bytes = STAT_GET(s->ss.st.lane_bytes);
	pace_set(s, pp);
}

/* The lanes' rate over the last PACE_EVERY_NS, smoothed by halves. */
static void pace_update(mfd_source *s, struct pc_pacer *pp)
{
	uint64_t now = mfd__now_ns();
	if (!pp->link_bps || now - pp->t_ns < PACE_EVERY_NS)
		return;
	uint64_t lb = STAT_GET(s->ss.st.lane_bytes);
	uint64_t rate = (uint64_t)((double)(lb - pp->lane_bytes) * 1e9 /
				   (double)(now - pp->t_ns));
	pp->lane_bps = (pp->lane_bps + rate) / 2;
	pp->lane_bytes = lb;
	pp->t_ns = now;
	pace_set(s, pp);
}

static void pace_stop(mfd_source *s, struct pc_pacer *pp)
{
	if (pp->link_bps)
		(void)mfd__pool_pace(&s->pool, 0);
}

/* postcopy-bulk-nice: the data channels' workers (threads that have run)
 * below the lanes. */
static void lower_bulk(mfd_source *s)
{
	int nice = (int)s->ss.cfg.postcopy_bulk_nice;
	for (unsigned i = 0; nice && i < s->pool.n; i++) {
		int tid = __atomic_load_n(&s->pool.w[i].tid, __ATOMIC_ACQUIRE);
		if (tid)
			(void)mfd__thread_lower(tid, nice);
	}
}

/* After SWITCH: the lanes answer requests, the data channels send every
 * page still to send in address order from near the last request; then
 * SYNC(p), DONE everywhere, END(p). */
static int postcopy_stream(mfd_source *s, struct mfd__batch **batch,
			   uint32_t round)
{
	uint64_t t0 = mfd__now_ns();
	s->pc_lim = (struct mfd__wire_limits){
		.nblocks = s->ss.nblocks,
		.packet_pages = s->ss.cfg.packet_pages,
		.blocks = s->ss.descs,
		.features = features_wanted(s),
	};
	s->lanes.pc = &s->pcs;
	s->lanes.blocks = s->ss.blocks;
	s->lanes.lim = &s->pc_lim;
	s->lanes.round = round;
	s->lanes.rt_prio = s->ss.cfg.postcopy_urgent_priority;
	s->lanes.st = &s->ss.st;
	s->lanes.fail = lane_failed;
	s->lanes.ctx = s;
	/* Again after a resume: new lanes, nothing finished or failed. */
	__atomic_store_n(&s->lanes.finish, false, __ATOMIC_RELAXED);
	__atomic_store_n(&s->lanes.err, 0, __ATOMIC_RELEASE);
	int ret = mfd__pc_lanes_start(&s->lanes);
	lower_bulk(s);
	mfd__pool_set_rate(&s->pool, s->ss.cfg.max_postcopy_bandwidth);
	struct pc_pacer pp;
	pace_start(s, &pp);
	unsigned n, blk;
	uint64_t pages = 0;
	/* The bulk claims a page when it queues it: a request for a page
	 * claimed and still queued waits for it behind the bulk. So the
	 * bulk claims little at a time and keeps at most one job per
	 * channel queued: what is not claimed yet, a lane can send at once. */
	unsigned per = s->ss.cfg.packet_pages < PC_BULK_PAGES
			       ? s->ss.cfg.packet_pages
			       : PC_BULK_PAGES;
	while (!ret && !(ret = bulk_room(s, &pp)) &&
	       (n = mfd__pc_src_claim_bulk(&s->pcs, per, &blk,
					   (*batch)->offsets))) {
		(*batch)->round = round;
		(*batch)->block = blk;
		(*batch)->n = n;
		(*batch)->flags = MFD_PKT_F_POSTCOPY;
		if (mfd__test_pc_claimed)
			mfd__test_pc_claimed(blk, (*batch)->offsets, n);
		if (!(ret = mfd__pool_submit(&s->pool, batch)))
			ret = mfd__session_check(&s->ss);
		pages += n;
		uint64_t left = mfd__pc_src_left(&s->pcs);
		STAT_SET(s->ss.st.pending_bytes,
			 left * s->ss.blocks[blk].page_size);
	}
	if (!ret)
		ret = mfd__pool_sync(&s->pool, round);
	pace_stop(s, &pp);
	/* Every page is claimed: what the lanes claimed goes out, then
	 * their DONE. */
	int lret = mfd__pc_lanes_finish(&s->lanes);
	if (!ret && lret)
		ret = mfd__session_check(&s->ss) ? mfd__session_check(&s->ss)
						 : lret;
	if (!ret)
		ret = mfd__pool_done(&s->pool);
	/* postcopy-paused: a lane or main broke meanwhile (a lane's own
	 * error is absorbed, not returned); the caller pauses. */
	if (!ret)
		ret = __atomic_load_n(&s->rs.broken, __ATOMIC_ACQUIRE);
	if (ret && resume_pausable(s, ret)) {
		resume_absorb(s, ret);
		mfd__pc_lanes_finish(&s->lanes); /* joins */
		return ret;
	}
	uint64_t t_last =
		__atomic_load_n(&s->pool.last_sent_ns, __ATOMIC_RELAXED);
	if (t_last < t0)
		t_last = t0;
	STAT_SET(s->ss.st.transfer_ns,
		 t_last - s->ss.t_start - s->ss.st.setup_ns);
	final_round(s, round, pages, 0, t_last - t0, 0, NULL, 0);
	if (!ret)
		ret = send_end(s, round, NULL);
	if (!ret)
		ret = wait_loaded(s);
	STAT_SET(s->ss.st.postcopy_ns, mfd__now_ns() - t0);
	STAT_SET(s->ss.st.pending_bytes, 0);
	return ret;
}

/* do_postcopy(): paused before the stop and resumed: pre-copy goes on. */
#define PRECOPY_AGAIN 3

static int do_postcopy(mfd_source *s, struct mfd__batch **batch,
		       uint32_t *round_io)
{
	uint64_t t_stop;
	uint32_t round = *round_io;
	int ret = postcopy_switch(s, round, &t_stop);
	/* A break in the DISCARD exchange, the guest still running here:
	 * paused as in pre-copy; resumed, pre-copy goes on and the switch
	 * comes again (protocol 10.5). */
	if (ret && !__atomic_load_n(&s->switched, __ATOMIC_ACQUIRE) &&
	    resume_pausable(s, ret))
		return (ret = resume_pause(s, batch, round_io, ret))
			       ? ret
			       : PRECOPY_AGAIN;
	/* postcopy-paused (protocol 10.5): after a resume the stream goes
	 * on with what the destination does not hold. */
	while (!ret && (ret = postcopy_stream(s, batch, round)) &&
	       resume_pausable(s, ret))
		ret = resume_pause(s, batch, &round, ret);
	return ret;
}

/* Records the failure (the first recorded cause wins), tells the
 * destination why on main (bounded: a stalled peer must not hold us
 * here) and stops dirty tracking. Returns the session's cause. */
static int fail_and_tell(mfd_source *s, int ret)
{
	source_fail(s, ret);
	ret = mfd__session_check(&s->ss);
	if (s->main) {
		s->main->ops->set_timeout(s->main,
					  s->ss.cfg.connect_timeout_ms);
		mfd__ctl_send_error(s->main, ret, "source: %s",
				    mfd_strerror(ret));
	}
	untrack(s);
	return ret;
}

/* A failure after SWITCH: the guest runs (or waits) on the destination
 * only; it is never resumed here. The cause stays the session's error. */
static int lost_guest(mfd_source *s, int ret)
{
	if (mfd__is_transport_error(ret) && s->rp_up)
		wait_return_path(s, 2000);
	ret = fail_and_tell(s, ret);
	mfd__devsave_end(&s->ds, true); /* never RUNNING here again */
	mfd__err("post-copy failed after the switch (%s): the guest is lost "
		 "to this side and incomplete on the destination",
		 mfd_strerror(ret));
	return MFD_ELOSTGUEST;
}
/* ---- end post-copy ---- */

static void wait_return_path(mfd_source *s, unsigned ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->lock);
	while (!s->rp_done &&
	       pthread_cond_timedwait(&s->cv, &s->lock, &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&s->lock);
}

static void set_handover(mfd_source *s, uint32_t *field)
{
	pthread_mutex_lock(&s->lock);
	*field = 1;
	pthread_mutex_unlock(&s->lock);
}

/* After COMMIT: the destination's answer within io-timeout. */
static int recv_committed(mfd_source *s)
{
	struct mfd__ctl_hdr h;
	uint8_t *payload;
	int ret = mfd__ctl_recv(s->main, &h, &payload);
	if (ret)
		return ret;
	if (h.type == MFD_CTL_ERROR)
		ret = mfd__ctl_peer_error(payload, h.length, "destination");
	else if (h.type != MFD_CTL_COMMITTED)
		ret = MFD_EUNEXPECTED;
	free(payload);
	return ret;
}

/*
 * LOADED was read: COMMIT, then COMMITTED. From the first byte of COMMIT
 * on, the source never resumes the guest on its own: any failure is
 * MFD_EINDOUBT (docs/protocol.md 7.6), never a resume.
 */
static int handover(mfd_source *s)
{
	/* The return path ends right after LOADED: main is ours. */
	wait_return_path(s, (unsigned)s->ss.cfg.io_timeout_ms);
	set_handover(s, &s->ho.commit);
	int ret = s->main->ops->set_timeout(s->main, s->ss.cfg.io_timeout_ms);
	if (!ret)
		ret = mfd__ctl_send(s->main, MFD_CTL_COMMIT, NULL, 0);
	if (!ret)
		ret = recv_committed(s);
	if (!ret) {
		set_handover(s, &s->ho.committed);
		return 0;
	}
	if (__atomic_load_n(&s->switched, __ATOMIC_ACQUIRE)) {
		/* Post-copy: the guest runs there already and LOADED said
		 * every page is in place; nothing is in doubt. */
		mfd__warn("post-copy: no COMMITTED (%s); the guest runs on "
			  "the destination with all its memory",
			  mfd_strerror(ret));
		return 0;
	}
	pthread_mutex_lock(&s->lock);
	s->ho.in_doubt = 1;
	s->ho.cause = ret;
	pthread_mutex_unlock(&s->lock);
	mfd__session_fail_why(&s->ss, MFD_EINDOUBT,
			      "handover in doubt: LOADED read, COMMIT sent, "
			      "no COMMITTED (%s): the guest stays stopped "
			      "until mfd_source_abandon() or "
			      "mfd_source_reclaim()",
			      mfd_strerror(ret));
	return MFD_EINDOUBT;
}

/*
 * In setup there is no return path yet: a destination that refused what
 * was sent without an answer (DEVICES) has sent ERROR on main and closed
 * the rest, so the data channels broke. Read that ERROR (or give up after
 * ms): its reason is the one to report.
 */
static void read_peer_reason(mfd_source *s, unsigned ms)
{
	struct mfd__ctl_hdr h;
	uint8_t *payload;
	s->main->ops->set_timeout(s->main, ms);
	if (mfd__ctl_recv(s->main, &h, &payload))
		return;
	if (h.type == MFD_CTL_ERROR)
		mfd__session_fail_peer(
			&s->ss,
			mfd__ctl_peer_error(payload, h.length, "destination"));
	free(payload);
}

/* Tracking and throttling end, whatever the outcome. */
static void untrack(mfd_source *s)
{
	if (s->tracking)
		mfd__tracker_stop(&s->tracker);
	s->tracking = false;
	if (s->throttle)
		set_throttle(s, 0);
	for (unsigned v = 0; v < s->nvcpus; v++)
		if (s->vcpu_pct[v])
			set_vcpu_throttle(s, v, 0);
	s->dirty_limit_on = false;
}

/* After a failure: the first cause, told to the destination; the guest
 * (untracked, unthrottled, devices running) runs on here. */
static int fail_migration(mfd_source *s, int ret)
{
	/* A broken connection is usually the effect of a failure the
	 * destination is about to explain on the main channel: give its
	 * reason a moment to arrive, it is the one to report. */
	if (mfd__is_transport_error(ret) && s->rp_up)
		wait_return_path(s, 2000);
	else if (mfd__peer_may_explain(ret) && s->main)
		read_peer_reason(s, 2000);
	ret = fail_and_tell(s, ret);
	/* Failed notifier: devices back to RUNNING before the vCPUs. */
	mfd__devsave_end(&s->ds, false);
	if (s->stopped && s->hooks.resume(s->hooks.opaque) < 0)
		mfd__err("resume hook failed after a failed migration");
	mfd__err("migration failed: %s", mfd_strerror(ret));
	return ret;
}

/* The return path, the workers and the main channel, ended and freed. */
static void teardown(mfd_source *s)
{
	pthread_mutex_lock(&s->lock);
	if (s->main)
		s->main->ops->shutdown(s->main, SHUT_RDWR);
	pthread_mutex_unlock(&s->lock);
	if (s->rp_up)
		pthread_join(s->rp_thread, NULL);
	pthread_mutex_lock(&s->lock);
	if (s->pool_up)
		mfd__pool_destroy(&s->pool);
	s->pool_up = false;
	pthread_mutex_unlock(&s->lock);
	mfd__pc_lanes_close(&s->lanes); /* joins: not under the lock */
	pthread_mutex_lock(&s->lock);
	if (s->main)
		s->main->ops->close(s->main);
	s->main = NULL;
	pthread_mutex_unlock(&s->lock);
}

static void *migration_main(void *arg)
{
	mfd_source *s = arg;
	struct mfd__batch *batch = NULL;
	uint32_t round = 0;
	int ret = do_setup(s);
	STAT_SET(s->ss.st.setup_ns, mfd__now_ns() - s->ss.t_start);
	if (!ret)
		batch = mfd__pool_batch(&s->pool);
	if (!ret)
		ret = mfd__session_check(&s->ss);
	bool postcopy = false;
	if (!ret)
		ret = precopy_begin(s);
	while (!ret && (ret = do_precopy(s, &batch, &round, &postcopy)) == 0 &&
	       postcopy &&
	       (ret = do_postcopy(s, &batch, &round)) == PRECOPY_AGAIN) {
		postcopy = false;
		ret = 0;
	}
	if (!ret && !postcopy)
		ret = do_switchover(s, &batch, round);
	if (!ret)
		ret = handover(s);
	if (ret && __atomic_load_n(&s->switched, __ATOMIC_ACQUIRE))
		ret = lost_guest(s, ret);
	else if (ret == MFD_EINDOUBT)
		; /* devices and vCPUs wait for the embedder's decision */
	else if (ret)
		ret = fail_migration(s, ret);
	else /* the completed notifier: outside the downtime */
		mfd__devsave_end(&s->ds, true);
	untrack(s);
	teardown(s);
	if (ret == MFD_EINDOUBT && s->hooks.in_doubt) {
		mfd_handover ho;
		pthread_mutex_lock(&s->lock);
		ho = s->ho;
		pthread_mutex_unlock(&s->lock);
		s->hooks.in_doubt(s->hooks.opaque, &ho);
	}
	if (s->pcs_up)
		mfd__pc_src_destroy(&s->pcs);
	__atomic_store_n(&s->pcs_up, false, __ATOMIC_RELEASE);
	mfd__session_finish(&s->ss, ret);
	return NULL;
}

/* file:PATH (multifd/filemig.h): the same session, hooks and devices; the
 * file engine runs instead of the network state machine. */
static void *file_main(void *arg)
{
	mfd_source *s = arg;
	int ret = mfd__file_save(&s->ss, &s->hooks, &s->ds.set, &s->ds.bytes,
				 mfd__file_uri_path(s->uri));
	mfd__session_finish(&s->ss, ret);
	return NULL;
}

/* Checks and loads what the migration needs before its thread starts. */
static int prepare(mfd_source *s, const char *uri)
{
	if (mfd__file_uri_path(uri)) {
		snprintf(s->uri, sizeof(s->uri), "%s", uri);
		return mfd__file_uri_path(uri)[0] &&
				       strlen(uri) < sizeof(s->uri)
			       ? 0
			       : MFD_EURI;
	}
	const struct mfd__chan_opts co = mfd__config_chan_opts(&s->ss.cfg);
	int ret = mfd__transport_select(uri, &co, NULL);
	if (ret)
		return ret;
	if (s->ss.cfg.postcopy != MFD__POSTCOPY_OFF &&
	    (s->ss.cfg.verify || s->ss.cfg.tls ||
	     (mfd__devsave_any(&s->ds) &&
	      s->ss.cfg.device_transfer != MFD__DEVXFER_MAIN) ||
	     strncmp(uri, "tcp:", 4) != 0)) {
		/* Verify: no moment where both sides' digests agree (10.1);
		 * TLS and RDMA: the lanes poll their socket; multifd device
		 * transfer: device state travels on main before SWITCH. */
		return mfd__session_fail_why(
			&s->ss, MFD_ECONFIG,
			"postcopy needs a tcp: URI, verify=off, tls=off and, "
			"with devices, device-transfer=main");
	}
	snprintf(s->uri, sizeof(s->uri), "%s", uri);
	/* The host of the URI is the name the TLS peer's certificate must
	 * carry (unless tls-hostname says otherwise). */
	char host[256] = "", port[16];
	if (strncmp(uri, "tcp:", 4) == 0 &&
	    (ret = mfd__uri_split(uri, host, sizeof(host), port, sizeof(port))))
		return ret;
	/* Key and TLS files now, so that a missing or unsafe one fails the
	 * call instead of a migration thread. */
	return mfd__session_prepare(&s->ss, false, host);
}

int mfd_source_start(mfd_source *s, const char *uri)
{
	if (!s || !uri)
		return -EINVAL;
	/* An in-doubt guest is decided first (abandon or reclaim). */
	if (s->ss.running || STAT_GET(s->ss.st.phase) == MFD_PHASE_INDOUBT)
		return MFD_ESTATE;
	if (s->ss.nblocks == 0)
		return -ENOENT;
	/* A new migration of the same VM may follow a failed one. Statistics
	 * may be read from any thread at any time: the reset uses the same
	 * atomic stores as the migration thread. */
	mfd__session_reset(&s->ss);
	mfd__log_forget();
	int ret = prepare(s, uri);
	if (ret)
		return mfd__session_fail(&s->ss, ret);
	s->loaded = false;
	pthread_mutex_lock(&s->lock);
	memset(&s->ho, 0, sizeof(s->ho));
	memset(s->tails, 0, sizeof(s->tails));
	pthread_mutex_unlock(&s->lock);
	s->stopped = false;
	s->rp_up = false;
	s->rp_done = false;
	s->throttle = 0;
	memset(s->vcpu_pct, 0, sizeof(s->vcpu_pct));
	s->dirty_limit_on = false;
	__atomic_store_n(&s->pc_request, false, __ATOMIC_RELAXED);
	s->discards = 0;
	s->discarded = 0;
	__atomic_store_n(&s->switched, false, __ATOMIC_RELAXED);
	__atomic_store_n(&s->rs.broken, 0, __ATOMIC_RELAXED);
	s->rs.fatal = false;
	memset(&s->lanes, 0, sizeof(s->lanes));
	pthread_mutex_lock(&s->lock);
	s->nrounds = 0;
	pthread_mutex_unlock(&s->lock);
	STAT_SET(s->ss.st.pending_bytes, s->ss.ram_bytes);
	STAT_SET(s->ss.st.phase, MFD_PHASE_SETUP);
	ret = mfd__session_spawn(
		&s->ss, mfd__file_uri_path(uri) ? file_main : migration_main,
		s);
	if (ret)
		STAT_SET(s->ss.st.phase, MFD_PHASE_FAILED);
	return ret;
}

int mfd_source_wait(mfd_source *s)
{
	if (!s)
		return -EINVAL;
	return mfd__session_join(&s->ss);
}

int mfd_source_migrate(mfd_source *s, const char *uri)
{
	int ret = mfd_source_start(s, uri);
	return ret ? ret : mfd_source_wait(s);
}

int mfd_source_resume(mfd_source *s, const char *uri)
{
	if (!s || !uri)
		return -EINVAL;
	if (strlen(uri) >= sizeof(s->rs.uri))
		return MFD_EURI;
	pthread_mutex_lock(&s->lock);
	int ret = !s->rs.paused ? MFD_ESTATE : s->rs.request ? -EBUSY : 0;
	if (!ret) {
		snprintf(s->rs.uri, sizeof(s->rs.uri), "%s", uri);
		s->rs.request = true;
		s->rs.answered = false;
		pthread_cond_broadcast(&s->cv);
		/* Bounded: the attempt's connections by connect-timeout,
		 * RECEIVED by io-timeout. */
		while (!s->rs.answered)
			pthread_cond_wait(&s->cv, &s->lock);
		ret = s->rs.result;
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int mfd_source_start_postcopy(mfd_source *s)
{
	if (!s)
		return -EINVAL;
	if (!s->ss.running || s->ss.cfg.postcopy == MFD__POSTCOPY_OFF)
		return MFD_ESTATE;
	__atomic_store_n(&s->pc_request, true, __ATOMIC_RELEASE);
	return 0;
}

int mfd_source_cancel(mfd_source *s)
{
	if (!s)
		return -EINVAL;
	/* After the post-copy switch the guest runs on the destination,
	 * which needs the rest of its pages: nothing to cancel. */
	int phase = STAT_GET(s->ss.st.phase);
	if (phase == MFD_PHASE_POSTCOPY || phase == MFD_PHASE_POSTCOPY_PAUSED)
		return MFD_ESTATE;
	if (!mfd__session_cancel(&s->ss))
		return 0; /* nothing to cancel: no effect */
	source_fail(s, -ECANCELED);
	pthread_mutex_lock(&s->lock);
	/* During setup the thread may wait on the main channel. */
	if (s->main && STAT_GET(s->ss.st.phase) == MFD_PHASE_SETUP)
		s->main->ops->shutdown(s->main, SHUT_RD);
	if (s->opening)
		s->opening->ops->shutdown(s->opening, SHUT_RDWR);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int mfd_source_get_stats(mfd_source *s, mfd_stats *st, size_t size)
{
	if (!s || !st)
		return -EINVAL;
	mfd_stats v = { 0 };
	mfd__session_snapshot(&s->ss, &v);
	v.channels = s->ss.cfg.channels;
	v.device_bytes = STAT_GET(s->ds.bytes);
	v.device_downtime_ns = STAT_GET(s->ds.down_ns);
	memset(st, 0, size);
	memcpy(st, &v, size < sizeof(v) ? size : sizeof(v));
	return 0;
}

const char *mfd_source_error_text(mfd_source *s)
{
	return s ? mfd__session_error_text(&s->ss) : "";
}

int mfd_source_get_round(mfd_source *s, unsigned i, mfd_round_stats *rec,
			 size_t size)
{
	if (!s || !rec)
		return -EINVAL;
	int ret = -ENOENT;
	pthread_mutex_lock(&s->lock);
	if (i < s->nrounds) {
		memset(rec, 0, size);
		memcpy(rec, &s->rounds[i],
		       size < sizeof(*rec) ? size : sizeof(*rec));
		ret = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

static void source_settled(mfd_source *s)
{
	pthread_mutex_lock(&s->lock);
	s->ho.in_doubt = 0;
	pthread_mutex_unlock(&s->lock);
}

int mfd_source_abandon(mfd_source *s)
{
	if (!s)
		return -EINVAL;
	int ret = mfd__session_resolve(&s->ss, 0);
	if (ret)
		return ret;
	source_settled(s);
	mfd__info("in-doubt handover: abandoned, the guest is the "
		  "destination's");
	mfd__devsave_end(&s->ds, true);
	return 0;
}

int mfd_source_reclaim(mfd_source *s)
{
	if (!s)
		return -EINVAL;
	int ret = mfd__session_resolve(&s->ss, MFD_EINDOUBT);
	if (ret)
		return ret;
	source_settled(s);
	mfd__info("in-doubt handover: reclaimed, the guest runs here again");
	/* As after a failed migration: devices first, then the vCPUs. */
	mfd__devsave_end(&s->ds, false);
	if (s->hooks.resume(s->hooks.opaque) < 0) {
		mfd__err("resume hook failed after reclaiming the guest");
		return MFD_EHOOK;
	}
	return 0;
}

int mfd_source_get_handover(mfd_source *s, mfd_handover *h, size_t size)
{
	if (!s || !h)
		return -EINVAL;
	memset(h, 0, size);
	pthread_mutex_lock(&s->lock);
	memcpy(h, &s->ho, size < sizeof(s->ho) ? size : sizeof(s->ho));
	pthread_mutex_unlock(&s->lock);
	return 0;
}
