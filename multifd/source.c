/* SPDX-License-Identifier: MIT */
/*
 * Source side: setup, pre-copy rounds, switchover, completion.
 *
 * Threads: the migration thread runs the state machine and the scanner; one
 * send worker per data channel (pool.c); a return-path thread reads the
 * main channel for the destination's LOADED or ERROR.
 */
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "multifd/channels/tls.h"
#include "multifd/ctl.h"
#include "multifd/devsave.h"
#include "multifd/pool.h"
#include "ramblock/tracker.h"

struct mfd_source {
	struct mfd_config cfg;
	mfd_source_hooks hooks;
	struct mfd__ramblock blocks[MFD_MAX_BLOCKS];
	unsigned nblocks;
	char uri[256];
	struct mfd__key key;  /* loaded at start; len 0: no authentication */
	struct mfd__tls *tls; /* NULL without TLS */

	pthread_mutex_t lock; /* guards the fields below it up to stats */
	pthread_cond_t cv;    /* return path and cancel wake the thread */
	pthread_t thread;
	bool running; /* migration thread started and not yet joined */
	bool loaded;  /* destination answered LOADED */
	bool pool_up;
	bool rp_up;
	bool rp_done; /* the return path thread has ended */
	pthread_t rp_thread;
	struct mfd__chan *main;
	struct mfd__chan *opening; /* in its handshake: cancel shuts it */
	struct mfd__pool pool;

	int error;  /* first cause, atomic */
	int cancel; /* atomic */
	int result;
	bool stopped;		     /* migration thread only */
	struct mfd__tracker tracker; /* migration thread only */
	bool tracking;
	int throttle; /* percent applied through the hook */

	/* Round records, appended by the migration thread under lock. */
	mfd_round_stats *rounds;
	unsigned nrounds, cap_rounds;

	/* Statistics: written by the migration thread, read by anyone. */
	struct mfd__xfer_stats xfer;
	uint64_t register_ns;
	int phase;
	uint32_t round;
	uint64_t ram_bytes;
	uint64_t pending_bytes;
	uint64_t setup_ns, transfer_ns, total_ns, downtime_ns, verify_ns;
	uint64_t bandwidth_bps;
	uint64_t down_sync_ns, down_pages_ns, down_end_ns, down_ack_ns;
	uint64_t expected_downtime_ns, dirty_rate_bps;
	uint32_t throttle_pct, throttle_max_pct, forced;
	int tracker_kind;
	uint64_t t_start;

	struct mfd__devsave ds; /* device state: migration thread only */
};

#define STAT_SET(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELAXED)
#define STAT_GET(field)	   __atomic_load_n(&(field), __ATOMIC_RELAXED)

int mfd_source_new(mfd_source **out, const mfd_config *cfg,
		   const mfd_source_hooks *hooks)
{
	if (!out || !hooks || !hooks->stop || !hooks->resume)
		return -EINVAL;
	mfd_source *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	if (cfg)
		s->cfg = *cfg;
	else
		mfd__config_defaults(&s->cfg);
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
	if (s->running) {
		mfd_source_cancel(s);
		mfd_source_wait(s);
	}
	for (unsigned i = 0; i < s->nblocks; i++)
		mfd__ramblock_destroy(&s->blocks[i]);
	mfd__auth_key_clear(&s->key);
	mfd__tls_free(s->tls);
	mfd__devsave_destroy(&s->ds);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cv);
	free(s->rounds);
	free(s);
}

int mfd_source_add_block(mfd_source *s, const char *name, void *host,
			 uint64_t size, uint32_t page_size)
{
	if (!s || !name)
		return -EINVAL;
	if (s->running)
		return MFD_ESTATE;
	if (s->nblocks == MFD_MAX_BLOCKS)
		return -ENOSPC;
	for (unsigned i = 0; i < s->nblocks; i++)
		if (strcmp(s->blocks[i].name, name) == 0)
			return -EEXIST;
	int ret = mfd__ramblock_init(&s->blocks[s->nblocks], name, host, size,
				     page_size);
	if (ret)
		return ret;
	s->nblocks++;
	s->ram_bytes += size;
	return 0;
}

/* ---- device state (devsave.c) ---- */
int mfd_source_add_device(mfd_source *s, const char *name,
			  const mfd_device_ops *ops, void *opaque)
{
	if (!s || !name || !ops)
		return -EINVAL;
	if (s->running)
		return MFD_ESTATE;
	return mfd__devset_add(&s->ds.set, name, ops, opaque);
}
/* ---- end device state ---- */

int mfd_source_mark_dirty(mfd_source *s, unsigned block, uint64_t offset,
			  uint64_t len)
{
	if (!s || block >= s->nblocks)
		return -EINVAL;
	return mfd__ramblock_mark_dirty(&s->blocks[block], offset, len);
}

/* Any thread: record the cause and wake whatever the migration waits on. */
static void source_fail(mfd_source *s, int err)
{
	mfd__set_error(&s->error, err);
	pthread_mutex_lock(&s->lock);
	if (s->pool_up)
		mfd__pool_abort(&s->pool, err);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
}

static int check(mfd_source *s)
{
	if (__atomic_load_n(&s->cancel, __ATOMIC_ACQUIRE))
		mfd__set_error(&s->error, -ECANCELED);
	return mfd__get_error(&s->error);
}

static void return_path(mfd_source *s);

static void *return_path_main(void *arg)
{
	mfd_source *s = arg;
	return_path(s);
	__atomic_fetch_add(&s->xfer.cpu_ns, mfd__thread_cpu_ns(),
			   __ATOMIC_RELAXED);
	pthread_mutex_lock(&s->lock);
	s->rp_done = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static void return_path(mfd_source *s)
{
	for (;;) {
		struct mfd_ctl_hdr h;
		uint8_t *payload;
		int ret = mfd__ctl_recv(s->main, &h, &payload);
		if (ret) {
			pthread_mutex_lock(&s->lock);
			bool loaded = s->loaded;
			pthread_mutex_unlock(&s->lock);
			if (!loaded) {
				if (!mfd__get_error(&s->error))
					mfd__err("main channel: %s",
						 mfd_strerror(ret));
				source_fail(s, ret);
			}
			return;
		}
		if (h.type == MFD_CTL_LOADED) {
			pthread_mutex_lock(&s->lock);
			s->loaded = true;
			pthread_cond_broadcast(&s->cv);
			pthread_mutex_unlock(&s->lock);
		} else if (h.type == MFD_CTL_ERROR) {
			ret = mfd__ctl_peer_error(payload, h.length,
						  "destination");
			source_fail(s, ret);
		} else {
			mfd__err("main channel: unexpected message type %u",
				 h.type);
			source_fail(s, MFD_EUNEXPECTED);
		}
		free(payload);
		if (h.type != MFD_CTL_LOADED)
			return;
	}
}

static uint64_t features_wanted(const mfd_source *s)
{
	return (s->cfg.verify ? MFD_FEAT_VERIFY : 0) |
	       (s->cfg.compression == MFD__CODEC_ZSTD ? MFD_FEAT_ZSTD : 0) |
	       (s->key.len ? MFD_FEAT_AUTH : 0) |
	       (mfd__devsave_any(&s->ds) ? MFD_FEAT_DEVICES : 0);
}

static int open_channel(mfd_source *s, uint16_t role, uint16_t idx,
			const uint8_t session[16], struct mfd__chan **out)
{
	struct mfd__chan *c;
	const struct mfd__chan_opts co = mfd__config_chan_opts(&s->cfg);
	int ret = mfd__connect(&co, s->uri, s->cfg.connect_timeout_ms, &c);
	if (ret) {
		mfd__err("connect to %s: %s", s->uri, mfd_strerror(ret));
		return ret;
	}
	/* TLS, when configured, protects everything from the hello on. */
	ret = mfd__tls_wrap_client(s->tls, &c, s->cfg.connect_timeout_ms);
	if (ret)
		return ret;
	ret = c->ops->set_timeout(c, s->cfg.connect_timeout_ms);
	/* A destination that accepts but never answers would hold a cancel
	 * for connect-timeout: let mfd_source_cancel() shut the channel. */
	pthread_mutex_lock(&s->lock);
	s->opening = c;
	pthread_mutex_unlock(&s->lock);
	if (!ret)
		ret = check(s);
	struct mfd_hello h = { .magic = MFD_MAGIC_HELLO,
			       .version = MFD_PROTO_VERSION,
			       .role = role,
			       .channel = idx,
			       .nchannels = (uint16_t)s->cfg.channels,
			       .features = features_wanted(s) };
	memcpy(h.session, session, 16);
	uint64_t accepted = 0;
	if (!ret)
		ret = mfd__handshake_source(c, &h, &s->key, &accepted);
	if (!ret && accepted != h.features)
		ret = MFD_EFEATURE;
	pthread_mutex_lock(&s->lock);
	s->opening = NULL;
	pthread_mutex_unlock(&s->lock);
	if (ret && check(s))
		ret = check(s); /* the cancel, not the shut channel */
	if (ret) {
		c->ops->close(c);
		return ret;
	}
	*out = c;
	return 0;
}

static int do_setup(mfd_source *s)
{
	uint8_t session[16];
	int ret = mfd__random_bytes(session, sizeof(session));
	if (ret)
		return ret;
	struct mfd__chan *main;
	ret = open_channel(s, MFD_ROLE_MAIN, 0, session, &main);
	if (ret)
		return ret;
	pthread_mutex_lock(&s->lock);
	s->main = main;
	pthread_mutex_unlock(&s->lock);

	struct mfd_block_desc *descs = calloc(s->nblocks, sizeof(*descs));
	if (!descs)
		return -ENOMEM;
	for (unsigned i = 0; i < s->nblocks; i++) {
		snprintf(descs[i].name, sizeof(descs[i].name), "%s",
			 s->blocks[i].name);
		descs[i].size = s->blocks[i].size;
		descs[i].page_size = s->blocks[i].page_size;
	}
	struct mfd_setup su = { .nblocks = s->nblocks,
				.packet_pages = s->cfg.packet_pages,
				.nchannels = s->cfg.channels,
				.zstd_window_log =
					s->cfg.compression == MFD__CODEC_ZSTD
						? s->cfg.zstd_long
						: 0,
				.features = features_wanted(s),
				.blocks = descs };
	size_t len = mfd__setup_size(&su);
	uint8_t *buf = malloc(len);
	ret = buf ? mfd__setup_encode(&su, buf, len) : -ENOMEM;
	if (ret >= 0)
		ret = mfd__ctl_send(main, MFD_CTL_SETUP, buf, (uint32_t)ret);
	free(buf);
	free(descs);
	if (ret)
		return ret;

	struct mfd_ctl_hdr h;
	uint8_t *payload;
	ret = mfd__ctl_recv(main, &h, &payload);
	if (ret)
		return ret;
	if (h.type == MFD_CTL_ERROR)
		ret = mfd__ctl_peer_error(payload, h.length, "destination");
	else if (h.type != MFD_CTL_SETUP_OK)
		ret = MFD_EUNEXPECTED;
	free(payload);
	/* Device state: DEVICES, then the setup notifier (PRE_COPY). */
	if (!ret && mfd__devsave_any(&s->ds))
		ret = mfd__devsave_start(&s->ds, &s->cfg, main);
	if (ret)
		return ret;

	struct mfd__chan *chans[MFD_MAX_CHANNELS];
	unsigned n = 0;
	for (; n < s->cfg.channels && !(ret = check(s)); n++) {
		ret = open_channel(s, MFD_ROLE_DATA, (uint16_t)n, session,
				   &chans[n]);
		if (!ret)
			ret = chans[n]->ops->set_timeout(chans[n],
							 s->cfg.io_timeout_ms);
		if (ret)
			break;
	}
	/* In channel order, as the destination does. */
	uint64_t reg_ns = 0;
	for (unsigned i = 0; !ret && i < n; i++)
		ret = mfd__chan_register_memory(chans[i], s->blocks, s->nblocks,
						&reg_ns);
	STAT_SET(s->register_ns, reg_ns);
	if (ret) {
		while (n--)
			chans[n]->ops->close(chans[n]);
		return ret;
	}
	/* The return path waits as long as rounds last; stalls are caught on
	 * the data channels and by the bounded wait for LOADED. */
	main->ops->set_timeout(main, 0);

	pthread_mutex_lock(&s->lock);
	struct mfd__pool_codec codec = { .id = s->cfg.compression,
					 .level = (int)s->cfg.zstd_level,
					 .window_log = (int)s->cfg.zstd_long,
					 .packet_pages = s->cfg.packet_pages };
	ret = mfd__pool_start(&s->pool, chans, n, s->blocks, &s->xfer, &codec);
	s->pool_up = ret == 0 || s->pool.w;
	pthread_mutex_unlock(&s->lock);
	if (ret)
		return ret;
	if (pthread_create(&s->rp_thread, NULL, return_path_main, s))
		return -EAGAIN;
	s->rp_up = true;
	return 0;
}

/* Moves the dirty log (the hook's and mark_dirty's) into the migration
 * bitmaps; returns the dirty bytes now pending. */
static int dirty_sync(mfd_source *s, uint64_t *pending)
{
	uint64_t bytes = 0;
	/* Device DMA into guest RAM, logged like mark_dirty's pages; the
	 * devices' pre-copy bytes count as pending. */
	if (mfd__devsave_any(&s->ds)) {
		int ret = mfd__devsave_sync(&s->ds, s->blocks, s->nblocks,
					    &bytes);
		if (ret)
			return ret;
	}
	for (unsigned i = 0; i < s->nblocks; i++) {
		struct mfd__ramblock *rb = &s->blocks[i];
		if (s->hooks.sync_dirty) {
			int ret = s->hooks.sync_dirty(s->hooks.opaque, i,
						      rb->dirty.words,
						      rb->npages);
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
	STAT_SET(s->pending_bytes, bytes);
	return 0;
}

/* One pass of the scanner over the dirty bitmaps, then SYNC and ROUND. */
static int send_round(mfd_source *s, struct mfd__batch **batch, uint32_t round,
		      uint64_t *pages_out)
{
	struct mfd__scanner sc;
	unsigned blk, n;
	uint64_t pages = 0;
	int ret = 0;
	mfd__scanner_init(&sc, s->blocks, s->nblocks, s->cfg.packet_pages);
	while ((n = mfd__scanner_next(&sc, &blk, (*batch)->offsets))) {
		(*batch)->round = round;
		(*batch)->block = blk;
		(*batch)->n = n;
		if ((ret = mfd__pool_submit(&s->pool, batch)) ||
		    (ret = check(s)))
			return ret;
		pages += n;
		uint64_t bytes = (uint64_t)n * s->blocks[blk].page_size;
		uint64_t pend = STAT_GET(s->pending_bytes);
		STAT_SET(s->pending_bytes, pend > bytes ? pend - bytes : 0);
	}
	*pages_out = pages;
	if ((ret = mfd__pool_sync(&s->pool, round)))
		return ret;
	uint8_t msg[MFD_ROUND_SIZE];
	struct mfd_round r = { .round = round, .pages = pages };
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
	STAT_SET(s->throttle_pct, (uint32_t)pct);
	if ((uint32_t)pct > STAT_GET(s->throttle_max_pct))
		STAT_SET(s->throttle_max_pct, (uint32_t)pct);
	return 0;
}

static void add_round(mfd_source *s, const mfd_round_stats *r)
{
	pthread_mutex_lock(&s->lock);
	if (s->nrounds == s->cap_rounds) {
		unsigned cap = s->cap_rounds ? 2 * s->cap_rounds : 32;
		mfd_round_stats *n = realloc(s->rounds, cap * sizeof(*n));
		if (n) {
			s->rounds = n;
			s->cap_rounds = cap;
		}
	}
	if (s->nrounds < s->cap_rounds) /* else the record is dropped */
		s->rounds[s->nrounds++] = *r;
	pthread_mutex_unlock(&s->lock);
}

/* Auto-converge, with QEMU's rule: after two rounds in which the guest
 * dirtied more than throttle-trigger-threshold percent of what was sent,
 * throttle at cpu-throttle-initial, then step by cpu-throttle-increment
 * up to cpu-throttle-max. */
static int auto_converge(mfd_source *s, uint64_t dirtied, uint64_t sent,
			 unsigned *high)
{
	if (!s->cfg.auto_converge ||
	    (double)dirtied <= (double)sent * s->cfg.throttle_threshold / 100.0)
		return 0;
	if (++*high < 2)
		return 0;
	*high = 0;
	int pct = s->throttle ? s->throttle + (int)s->cfg.throttle_increment
			      : (int)s->cfg.throttle_initial;
	if (pct > (int)s->cfg.throttle_max)
		pct = (int)s->cfg.throttle_max;
	mfd__info("auto-converge: dirtied %llu bytes while sending %llu: "
		  "throttle %d%%",
		  (unsigned long long)dirtied, (unsigned long long)sent, pct);
	return set_throttle(s, pct);
}

static int do_precopy(mfd_source *s, struct mfd__batch **batch,
		      uint32_t *round_out)
{
	uint64_t pending = 0;
	uint32_t round = 0;
	unsigned high = 0;
	int ret;

	/* Tracking starts before round 0 reads a page: every later write is
	 * reported at a sync. */
	ret = mfd__tracker_start(&s->tracker, (int)s->cfg.dirty_tracker,
				 s->blocks, s->nblocks);
	if (ret)
		return ret;
	s->tracking = true;
	STAT_SET(s->tracker_kind, (int)s->tracker.kind);
	mfd__info("dirty tracker: %s", mfd__tracker_name(s->tracker.kind));
	mfd__pool_set_rate(&s->pool, s->cfg.max_bandwidth);

	/* Round 0 sends every page: forget what was logged before. */
	for (unsigned i = 0; i < s->nblocks; i++) {
		struct mfd__bitmap scratch = s->blocks[i].dirty;
		mfd__bitmap_harvest(&scratch, &s->blocks[i].log);
		mfd__bitmap_fill(&s->blocks[i].dirty);
		pending += s->blocks[i].size;
	}
	STAT_SET(s->pending_bytes, pending);
	STAT_SET(s->phase, MFD_PHASE_PRECOPY);

	uint64_t t_begin = mfd__now_ns(), t_sync = t_begin;
	for (;;) {
		STAT_SET(s->round, round);
		uint64_t t0 = mfd__now_ns();
		uint64_t b0 = STAT_GET(s->xfer.wire_bytes);
		uint64_t round_pages = 0;
		if (mfd__devsave_any(&s->ds) &&
		    (ret = mfd__devsave_round(&s->ds, &s->pool, s->main)))
			return ret;
		if ((ret = send_round(s, batch, round, &round_pages)))
			return ret;
		uint64_t dt = mfd__now_ns() - t0;
		uint64_t db = STAT_GET(s->xfer.wire_bytes) - b0;
		mfd_round_stats rec = { .round = round,
					.throttle_pct = (uint32_t)s->throttle,
					/* queued, not yet all sent: the
					 * workers keep a few batches */
					.pages = round_pages,
					.bytes = db,
					.ns = dt };
		/* A round too short to time says little: keep the last
		 * estimate rather than dividing by noise. */
		if (dt > 1000000 && db > 0)
			STAT_SET(s->bandwidth_bps,
				 (uint64_t)((double)db * 1e9 / (double)dt));
		if (dt)
			rec.bandwidth_bps =
				(uint64_t)((double)db * 1e9 / (double)dt);
		round++;
		if ((ret = dirty_sync(s, &pending)) || (ret = check(s)))
			return ret;
		uint64_t now = mfd__now_ns();
		uint64_t bw = STAT_GET(s->bandwidth_bps);
		double expected_ms =
			bw ? (double)pending * 1000.0 / (double)bw : 1e18;
		rec.dirty_pages = pending / s->blocks[0].page_size;
		rec.dirty_rate_bps =
			now > t_sync ? (uint64_t)((double)pending * 1e9 /
						  (double)(now - t_sync))
				     : 0;
		rec.expected_downtime_ns =
			bw ? (uint64_t)(expected_ms * 1e6) : UINT64_MAX;
		t_sync = now;
		add_round(s, &rec);
		STAT_SET(s->dirty_rate_bps, rec.dirty_rate_bps);
		STAT_SET(s->expected_downtime_ns, rec.expected_downtime_ns);
		mfd__dbg("round %u: %llu bytes pending, expected downtime "
			 "%.1f ms",
			 round, (unsigned long long)pending, expected_ms);
		if (pending == 0 ||
		    expected_ms <= (double)s->cfg.downtime_limit_ms)
			break;
		if ((ret = auto_converge(s, pending, db, &high)))
			return ret;
		const char *why = NULL;
		if (round >= s->cfg.max_rounds)
			why = "max-rounds";
		else if (s->cfg.precopy_timeout_ms &&
			 now - t_begin >= s->cfg.precopy_timeout_ms * 1000000)
			why = "precopy-timeout";
		if (why && s->cfg.timeout_policy == MFD__POLICY_CANCEL) {
			mfd__err("%s reached after %u rounds with %llu bytes "
				 "pending (expected downtime %.0f ms > %llu "
				 "ms): cancelling, the guest runs on here",
				 why, round, (unsigned long long)pending,
				 expected_ms,
				 (unsigned long long)s->cfg.downtime_limit_ms);
			return MFD_ENOCONVERGE;
		}
		if (why) {
			mfd__warn("%s reached after %u rounds with %llu bytes "
				  "pending (expected downtime %.0f ms): "
				  "switching over anyway",
				  why, round, (unsigned long long)pending,
				  expected_ms);
			STAT_SET(s->forced, 1);
			break;
		}
	}
	*round_out = round;
	return 0;
}

static int wait_loaded(mfd_source *s)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t ms = s->cfg.io_timeout_ms;
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	int ret = 0;
	pthread_mutex_lock(&s->lock);
	while (!s->loaded && !(ret = check(s))) {
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
			 (unsigned long long)s->cfg.io_timeout_ms);
	return ret;
}

static int do_switchover(mfd_source *s, struct mfd__batch **batch,
			 uint32_t round)
{
	uint64_t pending;
	int ret;

	/* The downtime runs at the link's full speed. */
	mfd__pool_set_rate(&s->pool, 0);
	STAT_SET(s->phase, MFD_PHASE_SWITCHOVER);
	uint64_t t_stop = mfd__now_ns();
	/* Devices: all to the P2P states before any is stopped. */
	if (mfd__devsave_any(&s->ds) &&
	    (ret = mfd__devsave_before_stop(&s->ds)))
		return ret;
	ret = s->hooks.stop(s->hooks.opaque);
	s->stopped = true; /* resume even when stop half-failed */
	if (ret < 0) {
		mfd__err("stop hook failed: %d", ret);
		return MFD_EHOOK;
	}
	/* STOP_COPY: their DMA has stopped, so the sync below has all. */
	if (mfd__devsave_any(&s->ds) && (ret = mfd__devsave_after_stop(&s->ds)))
		return ret;
	STAT_SET(s->round, round);
	if ((ret = dirty_sync(s, &pending)) || (ret = check(s)))
		return ret;
	uint64_t t_sync = mfd__now_ns();
	uint64_t b0 = STAT_GET(s->xfer.wire_bytes);
	uint64_t final_pages = 0;
	if ((ret = send_round(s, batch, round, &final_pages)))
		return ret;
	/* Device state after the RAM: DEVICE packets behind the pages on
	 * the channels, or DEVICE_DATA on the main channel before END. */
	if (mfd__devsave_any(&s->ds) &&
	    (ret = mfd__devsave_final(&s->ds, &s->pool, s->main)))
		return ret;

	/* The guest is stopped: its memory is final, so the digests can be
	 * computed while the workers push the last pages out. */
	uint8_t(*digests)[MFD_DIGEST_SIZE] = NULL;
	if (s->cfg.verify) {
		uint64_t t0 = mfd__now_ns();
		digests = calloc(s->nblocks, MFD_DIGEST_SIZE);
		if (!digests)
			return -ENOMEM;
		if ((ret = mfd__digest_blocks(s->blocks, s->nblocks, digests,
					      &s->xfer.cpu_ns))) {
			free(digests);
			return ret;
		}
		STAT_SET(s->verify_ns, mfd__now_ns() - t0);
	}
	ret = mfd__pool_done(&s->pool);
	if (!ret && mfd__devsave_any(&s->ds))
		mfd__devsave_sent(&s->ds, &s->pool);
	/* Until the last page left, not until the digests were ready. */
	uint64_t t_last =
		__atomic_load_n(&s->pool.last_sent_ns, __ATOMIC_RELAXED);
	if (t_last < t_sync)
		t_last = t_sync;
	STAT_SET(s->transfer_ns, t_last - s->t_start - s->setup_ns);
	mfd_round_stats rec = {
		.round = round,
		.pages = final_pages,
		.bytes = STAT_GET(s->xfer.wire_bytes) - b0,
		.ns = t_last - t_sync,
		.dirty_pages = pending / s->blocks[0].page_size,
	};
	if (rec.ns)
		rec.bandwidth_bps =
			(uint64_t)((double)rec.bytes * 1e9 / (double)rec.ns);
	add_round(s, &rec);
	if (!ret) {
		struct mfd_end e = { .final_round = round,
				     .nblocks = s->nblocks,
				     .total_pages = STAT_GET(s->xfer.pages),
				     .total_packets = STAT_GET(s->xfer.packets),
				     .digests = digests };
		size_t len = mfd__end_size(s->nblocks, digests != NULL);
		uint8_t *buf = malloc(len);
		ret = buf ? mfd__end_encode(&e, buf, len) : -ENOMEM;
		if (ret >= 0)
			ret = mfd__ctl_send(s->main, MFD_CTL_END, buf,
					    (uint32_t)ret);
		free(buf);
	}
	free(digests);
	uint64_t t_end = mfd__now_ns();
	if (!ret)
		ret = wait_loaded(s);
	if (!ret) {
		uint64_t t_loaded = mfd__now_ns();
		STAT_SET(s->down_sync_ns, t_sync - t_stop);
		STAT_SET(s->down_pages_ns, t_last - t_sync);
		STAT_SET(s->down_end_ns, t_end - t_last);
		STAT_SET(s->down_ack_ns, t_loaded - t_end);
		STAT_SET(s->downtime_ns, t_loaded - t_stop);
	}
	return ret;
}

static bool is_transport_error(int err)
{
	return err == -EPIPE || err == -ECONNRESET || err == MFD_ETRUNCATED ||
	       err == -ENOTCONN;
}

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

static void *migration_main(void *arg)
{
	mfd_source *s = arg;
	struct mfd__batch *batch = NULL;
	uint32_t round = 0;
	int ret = do_setup(s);
	STAT_SET(s->setup_ns, mfd__now_ns() - s->t_start);
	if (!ret)
		batch = mfd__pool_batch(&s->pool);
	if (!ret)
		ret = check(s);
	if (!ret)
		ret = do_precopy(s, &batch, &round);
	if (!ret)
		ret = do_switchover(s, &batch, round);

	if (ret) {
		/* A broken connection is usually the effect of a failure the
		 * destination is about to explain on the main channel: give
		 * its reason a moment to arrive, it is the one to report. */
		if (is_transport_error(ret) && s->rp_up)
			wait_return_path(s, 2000);
		/* The first recorded cause wins. */
		source_fail(s, ret);
		ret = mfd__get_error(&s->error);
		if (s->main) {
			/* Bounded: a stalled peer must not hold us here. */
			s->main->ops->set_timeout(s->main,
						  s->cfg.connect_timeout_ms);
			mfd__ctl_send_error(s->main, ret, "source: %s",
					    mfd_strerror(ret));
		}
		/* Untracked and unthrottled before the guest runs on. */
		if (s->tracking)
			mfd__tracker_stop(&s->tracker);
		s->tracking = false;
		if (s->throttle)
			set_throttle(s, 0);
		/* Failed notifier: devices back to RUNNING before the vCPUs. */
		mfd__devsave_end(&s->ds, false);
		if (s->stopped && s->hooks.resume(s->hooks.opaque) < 0)
			mfd__err("resume hook failed after a failed migration");
		mfd__err("migration failed: %s", mfd_strerror(ret));
	}
	/* After success: outside the downtime. */
	if (!ret)
		mfd__devsave_end(&s->ds, true);
	if (s->tracking)
		mfd__tracker_stop(&s->tracker);
	s->tracking = false;
	if (s->throttle)
		set_throttle(s, 0);
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
	if (s->main)
		s->main->ops->close(s->main);
	s->main = NULL;
	pthread_mutex_unlock(&s->lock);
	s->result = ret;
	__atomic_fetch_add(&s->xfer.cpu_ns, mfd__thread_cpu_ns(),
			   __ATOMIC_RELAXED);
	STAT_SET(s->total_ns, mfd__now_ns() - s->t_start);
	STAT_SET(s->phase, ret == 0	       ? MFD_PHASE_COMPLETED
			   : ret == -ECANCELED ? MFD_PHASE_CANCELLED
					       : MFD_PHASE_FAILED);
	return NULL;
}

int mfd_source_start(mfd_source *s, const char *uri)
{
	if (!s || !uri)
		return -EINVAL;
	if (s->running)
		return MFD_ESTATE;
	if (s->nblocks == 0)
		return -ENOENT;
	const struct mfd__chan_opts co = mfd__config_chan_opts(&s->cfg);
	int ret = mfd__transport_select(uri, &co, NULL);
	if (ret)
		return ret;
	/* Read the key now, so that a missing or unsafe key file fails the
	 * call instead of a migration thread. */
	if ((ret = mfd__auth_key_load(s->cfg.auth_key_file, &s->key)))
		return ret;
	snprintf(s->uri, sizeof(s->uri), "%s", uri);
	/* The host of the URI is the name the TLS peer's certificate must
	 * carry (unless tls-hostname says otherwise). */
	char host[256] = "", port[16];
	if (strncmp(uri, "tcp:", 4) == 0 &&
	    (ret = mfd__uri_split(uri, host, sizeof(host), port, sizeof(port))))
		return ret;
	mfd__tls_free(s->tls);
	if ((ret = mfd__tls_new(&co, false, host, &s->tls)))
		return ret;
	/* A new migration of the same VM may follow a failed one. */
	s->error = 0;
	s->cancel = 0;
	s->loaded = false;
	s->stopped = false;
	s->rp_up = false;
	s->rp_done = false;
	/* Statistics may be read from any thread at any time: reset them
	 * with the same atomic stores the migration thread uses. */
	uint64_t *xf = (uint64_t *)&s->xfer;
	for (size_t i = 0; i < sizeof(s->xfer) / sizeof(uint64_t); i++)
		STAT_SET(xf[i], 0);
	STAT_SET(s->round, 0);
	STAT_SET(s->setup_ns, 0);
	STAT_SET(s->transfer_ns, 0);
	STAT_SET(s->total_ns, 0);
	STAT_SET(s->register_ns, 0);
	STAT_SET(s->downtime_ns, 0);
	STAT_SET(s->verify_ns, 0);
	STAT_SET(s->bandwidth_bps, 0);
	STAT_SET(s->down_sync_ns, 0);
	STAT_SET(s->down_pages_ns, 0);
	STAT_SET(s->down_end_ns, 0);
	STAT_SET(s->down_ack_ns, 0);
	STAT_SET(s->expected_downtime_ns, 0);
	STAT_SET(s->dirty_rate_bps, 0);
	STAT_SET(s->throttle_pct, 0);
	STAT_SET(s->throttle_max_pct, 0);
	STAT_SET(s->forced, 0);
	STAT_SET(s->tracker_kind, 0);
	s->throttle = 0;
	pthread_mutex_lock(&s->lock);
	s->nrounds = 0;
	pthread_mutex_unlock(&s->lock);
	STAT_SET(s->pending_bytes, s->ram_bytes);
	STAT_SET(s->t_start, mfd__now_ns());
	STAT_SET(s->phase, MFD_PHASE_SETUP);
	ret = pthread_create(&s->thread, NULL, migration_main, s);
	if (ret) {
		STAT_SET(s->phase, MFD_PHASE_FAILED);
		return -ret;
	}
	s->running = true;
	return 0;
}

int mfd_source_wait(mfd_source *s)
{
	if (!s)
		return -EINVAL;
	if (!s->running)
		return s->phase == MFD_PHASE_NONE ? MFD_ESTATE : s->result;
	pthread_join(s->thread, NULL);
	s->running = false;
	return s->result;
}

int mfd_source_migrate(mfd_source *s, const char *uri)
{
	int ret = mfd_source_start(s, uri);
	return ret ? ret : mfd_source_wait(s);
}

int mfd_source_cancel(mfd_source *s)
{
	if (!s)
		return -EINVAL;
	int phase = STAT_GET(s->phase);
	if (phase == MFD_PHASE_NONE || phase >= MFD_PHASE_COMPLETED)
		return 0; /* nothing to cancel: no effect */
	__atomic_store_n(&s->cancel, 1, __ATOMIC_RELEASE);
	source_fail(s, -ECANCELED);
	pthread_mutex_lock(&s->lock);
	/* During setup the thread may wait on the main channel. */
	if (s->main && STAT_GET(s->phase) == MFD_PHASE_SETUP)
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
	mfd_stats v = {
		.phase = STAT_GET(s->phase),
		.error = mfd__get_error(&s->error),
		.round = STAT_GET(s->round),
		.channels = s->cfg.channels,
		.ram_bytes = s->ram_bytes,
		.wire_bytes = STAT_GET(s->xfer.wire_bytes),
		.pages = STAT_GET(s->xfer.pages),
		.packets = STAT_GET(s->xfer.packets),
		.pending_bytes = STAT_GET(s->pending_bytes),
		.zero_pages = STAT_GET(s->xfer.zero_pages),
		.raw_pages = STAT_GET(s->xfer.raw_pages),
		.compressed_bytes = STAT_GET(s->xfer.compressed_bytes),
		.compress_in_bytes = STAT_GET(s->xfer.compress_in_bytes),
		.compress_ns = STAT_GET(s->xfer.compress_ns),
		.setup_ns = STAT_GET(s->setup_ns),
		.transfer_ns = STAT_GET(s->transfer_ns),
		.total_ns = STAT_GET(s->total_ns),
		.downtime_ns = STAT_GET(s->downtime_ns),
		.verify_ns = STAT_GET(s->verify_ns),
		.bandwidth_bps = STAT_GET(s->bandwidth_bps),
		.cpu_ns = STAT_GET(s->xfer.cpu_ns),
		.down_sync_ns = STAT_GET(s->down_sync_ns),
		.down_pages_ns = STAT_GET(s->down_pages_ns),
		.down_end_ns = STAT_GET(s->down_end_ns),
		.down_ack_ns = STAT_GET(s->down_ack_ns),
		.expected_downtime_ns = STAT_GET(s->expected_downtime_ns),
		.dirty_rate_bps = STAT_GET(s->dirty_rate_bps),
		.throttle_pct = STAT_GET(s->throttle_pct),
		.throttle_max_pct = STAT_GET(s->throttle_max_pct),
		.tracker = STAT_GET(s->tracker_kind),
		.forced = STAT_GET(s->forced),
		.register_ns = STAT_GET(s->register_ns),
		.device_bytes = STAT_GET(s->ds.bytes),
		.device_downtime_ns = STAT_GET(s->ds.down_ns),
	};
	if (v.total_ns == 0 && v.phase != MFD_PHASE_NONE)
		v.total_ns = mfd__now_ns() - STAT_GET(s->t_start);
	memset(st, 0, size);
	memcpy(st, &v, size < sizeof(v) ? size : sizeof(v));
	return 0;
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
