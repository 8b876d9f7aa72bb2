/* SPDX-License-Identifier: MIT */
/* Source send workers: header + offsets + pages straight from guest RAM. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "multifd/common/le.h"
#include "multifd/pool.h"

/*
 * Verify on a byte stream (MFD__VERIFY_PIECE): the packet in w->iov goes
 * out in pieces, and the pages of each piece are hashed right after the
 * kernel copied them. offs (n pages with contents first) is encoded.
 */
static int send_hashed(struct mfd__send_worker *w, unsigned block,
		       const uint64_t *offs, uint32_t n, int iovcnt)
{
	uint64_t psize = w->pool->blocks[block].page_size;
	uint32_t per = mfd__verify_piece_pages(psize);
	struct mfd__iov_cursor cur = { w->iov, iovcnt, 0 };
	struct iovec piece[MFD__VERIFY_PIECE_IOV];
	/* The header and the offsets go with the first piece. */
	size_t left = w->iov[0].iov_len + w->iov[1].iov_len;
	for (uint32_t i = 0; i < n; i += per) {
		uint32_t k = n - i < per ? n - i : per;
		left += k * psize;
		while (left) {
			size_t took;
			int cnt = mfd__iov_cut(&cur, left, piece,
					       MFD__VERIFY_PIECE_IOV, &took);
			int ret = w->chan->ops->sendv(w->chan, piece, cnt);
			if (ret)
				return ret;
			left -= took;
		}
		for (uint32_t j = i; j < i + k; j++)
			mfd__session_page_digest(
				w->pool->digests, block,
				mfd__get_le64((const uint8_t *)&offs[j]),
				false);
	}
	return 0;
}

/*
 * Sends one PAGES packet of batch b's block: n pages with payload at
 * offs[0..n), then nz zero pages at offs[n..n+nz); compressed with the
 * worker's codec when zstd is set. offs is encoded in place.
 */
static int emit_pages(struct mfd__send_worker *w, const struct mfd__batch *b,
		      uint64_t *offs, uint32_t n, uint32_t nz, bool zstd)
{
	struct mfd__ramblock *rb = &w->pool->blocks[b->block];
	uint64_t psize = rb->page_size;
	struct mfd__pkt_hdr h = {
		.magic = MFD_MAGIC_PKT,
		.type = MFD_PKT_PAGES,
		.round = b->round,
		.block = b->block,
		.count = n,
		.zero_count = nz,
		.payload_len = (uint32_t)(n * psize),
		.seq = w->seq,
		.flags = (uint16_t)b->flags,
	};
	int iovcnt = 2;
	uint64_t cpu = 0;
	if (zstd) {
		uint64_t t0 = mfd__thread_cpu_ns();
		for (uint32_t i = 0; i < n; i++)
			w->pages[i] = rb->host + offs[i];
		size_t zlen;
		int ret = w->codec.ops->compress(&w->codec, w->pages, n, psize,
						 &zlen);
		if (ret)
			return ret;
		cpu = mfd__thread_cpu_ns() - t0;
		h.flags |= MFD_PKT_F_ZSTD;
		h.payload_len = (uint32_t)zlen;
		w->iov[2].iov_base = w->codec.out;
		w->iov[2].iov_len = zlen;
		iovcnt = 3;
	} else {
		/* The payload's iovecs point into guest memory; contiguous
		 * pages are coalesced so that a fully dirty region costs one
		 * iovec. */
		iovcnt += mfd__pages_iov(rb->host, offs, n, psize,
					 w->iov + iovcnt);
	}
	/* Verify: the digest of each page as it goes out (offs is still in
	 * host order here). A page written since is dirty again and its
	 * next copy records its digest again. On a byte stream the pages
	 * with contents are hashed piece by piece as they are sent. */
	bool pieces =
		w->pool->digests && !zstd && n && !w->chan->ops->send_pages;
	if (w->pool->digests) {
		for (uint32_t i = 0; i < n && !pieces; i++)
			mfd__session_page_digest(w->pool->digests, b->block,
						 offs[i], false);
		for (uint32_t i = n; i < n + nz; i++)
			mfd__session_page_digest(w->pool->digests, b->block,
						 offs[i], true);
	}
	mfd__pkt_encode(&h, w->hdr);
	mfd__pkt_offsets_encode(offs, n + nz);
	w->iov[0].iov_base = w->hdr;
	w->iov[0].iov_len = MFD_PKT_HDR_SIZE;
	w->iov[1].iov_base = offs;
	w->iov[1].iov_len = (n + nz) * sizeof(uint64_t);
	int ret = zstd	   ? w->chan->ops->sendv(w->chan, w->iov, iovcnt)
		  : pieces ? send_hashed(w, b->block, offs, n, iovcnt)
			   : mfd__chan_send_pages(w->chan, b->block, w->iov,
						  iovcnt);
	if (ret)
		return ret;
	w->seq++;
	w->round_packets++;
	__atomic_fetch_add(&w->tot_pages, n + nz, __ATOMIC_RELAXED);
	__atomic_fetch_add(&w->tot_packets, 1, __ATOMIC_RELAXED);
	uint64_t bytes =
		MFD_PKT_HDR_SIZE + (n + nz) * sizeof(uint64_t) + h.payload_len;
	struct mfd__stats *st = w->pool->stats;
	__atomic_fetch_add(&st->wire_bytes, bytes, __ATOMIC_RELAXED);
	__atomic_fetch_add(&st->pages, n + nz, __ATOMIC_RELAXED);
	__atomic_fetch_add(&st->packets, 1, __ATOMIC_RELAXED);
	if (nz)
		__atomic_fetch_add(&st->zero_pages, nz, __ATOMIC_RELAXED);
	if (zstd) {
		__atomic_fetch_add(&st->compressed_bytes, h.payload_len,
				   __ATOMIC_RELAXED);
		__atomic_fetch_add(&st->compress_in_bytes, n * psize,
				   __ATOMIC_RELAXED);
		__atomic_fetch_add(&st->compress_ns, cpu, __ATOMIC_RELAXED);
	} else if (w->codec.ops && n)
		__atomic_fetch_add(&st->raw_pages, n, __ATOMIC_RELAXED);
	return 0;
}

static int send_pages(struct mfd__send_worker *w, struct mfd__batch *b)
{
	struct mfd__ramblock *rb = &w->pool->blocks[b->block];
	uint64_t psize = rb->page_size;
	/* Compressed packets hold at most the codec's input (packet-pages
	 * x 4 KiB): a batch of large pages is compressed in several packets,
	 * and pages larger than that (1 GiB) go out uncompressed. The stream
	 * only ever holds what was sent. */
	bool zstd = w->codec.ops && psize <= w->codec.max_in;
	uint32_t per = zstd ? (uint32_t)(w->codec.max_in / psize) : b->n;

	/* Zero pages travel as offsets only, after the others; every list
	 * keeps the batch's ascending order. A page written after this test
	 * is dirty again and goes out in a later round. With compression,
	 * pages that look incompressible (random, already compressed) skip
	 * the codec: they would come out as large as they went in, cost
	 * its CPU and push useful history out of its window. */
	uint32_t n = 0, nz = 0, nraw = 0;
	for (uint32_t i = 0; i < b->n; i++) {
		uint64_t off = b->offsets[i];
		const uint8_t *pg = rb->host + off;
		if (mfd__buffer_is_zero(pg, psize))
			w->zero_offs[nz++] = off;
		else if (zstd && mfd__page_looks_incompressible(pg, psize))
			w->raw_offs[nraw++] = off;
		else
			b->offsets[n++] = off;
	}
	if (!nraw && n && n <= per) {
		/* The usual case: one packet. */
		memcpy(b->offsets + n, w->zero_offs, nz * sizeof(uint64_t));
		return emit_pages(w, b, b->offsets, n, nz, zstd);
	}
	/* Uncompressed pages and the zero pages in one packet, the others
	 * compressed in as many as they need. */
	int ret = 0;
	if (nraw || nz) {
		memcpy(w->raw_offs + nraw, w->zero_offs, nz * sizeof(uint64_t));
		ret = emit_pages(w, b, w->raw_offs, nraw, nz, false);
	}
	for (uint32_t i = 0; !ret && i < n; i += per)
		ret = emit_pages(w, b, b->offsets + i,
				 n - i < per ? n - i : per, 0, zstd);
	return ret;
}

static int send_marker(struct mfd__send_worker *w, uint16_t type,
		       uint32_t round)
{
	struct mfd__pkt_hdr h = {
		.magic = MFD_MAGIC_PKT,
		.type = type,
		.round = round,
		.count = type == MFD_PKT_SYNC ? w->round_packets : 0,
		.seq = w->seq,
	};
	mfd__pkt_encode(&h, w->hdr);
	int ret = mfd__chan_send(w->chan, w->hdr, MFD_PKT_HDR_SIZE);
	if (!ret && type == MFD_PKT_SYNC && w->chan->ops->round_fence)
		ret = w->chan->ops->round_fence(w->chan);
	if (ret)
		return ret;
	w->seq++;
	w->round_packets = 0;
	__atomic_fetch_add(&w->pool->stats->wire_bytes, MFD_PKT_HDR_SIZE,
			   __ATOMIC_RELAXED);
	return 0;
}

/* ---- device state (devsave.c): one chunk per DEVICE packet ---- */
static int send_device(struct mfd__send_worker *w, struct mfd__devchunk *c)
{
	struct mfd__pkt_hdr h = {
		.magic = MFD_MAGIC_PKT,
		.type = MFD_PKT_DEVICE,
		.round = 0,
		.block = c->dev,
		.count = c->seq,
		.zero_count = c->flags,
		.payload_len = c->len,
		.seq = w->seq,
	};
	mfd__pkt_encode(&h, w->hdr);
	c->iov[0] = (struct iovec){ w->hdr, MFD_PKT_HDR_SIZE };
	int n = 1 + (int)c->niov;
	if (!c->niov && c->len) {
		c->iov[1] = (struct iovec){ c->data, c->len };
		n = 2;
	}
	w->sent_device = true; /* even a part of it: not re-sendable */
	int ret = w->chan->ops->sendv(w->chan, c->iov, n);
	if (ret)
		return ret;
	w->seq++; /* DEVICE packets are not counted in SYNC */
	__atomic_fetch_add(&w->pool->stats->wire_bytes,
			   MFD_PKT_HDR_SIZE + c->len, __ATOMIC_RELAXED);
	__atomic_store_n(&w->pool->last_dev_ns, mfd__now_ns(),
			 __ATOMIC_RELAXED);
	return 0;
}
/* ---- end device state ---- */

/* Burst the bucket may save up while the channels are idle. */
#define RATE_BURST_NS 5000000ULL

void mfd__pool_set_rate(struct mfd__pool *p, uint64_t bps)
{
	__atomic_store_n(&p->bucket_ns, mfd__now_ns(), __ATOMIC_RELAXED);
	__atomic_store_n(&p->rate_bps, bps, __ATOMIC_RELEASE);
}

/* Takes bytes' worth of tokens, sleeping until the virtual clock allows
 * them out. Lock-free: each packet reserves its slot with one CAS. */
static void rate_wait(struct mfd__pool *p, uint64_t bytes)
{
	uint64_t rate = __atomic_load_n(&p->rate_bps, __ATOMIC_ACQUIRE);
	if (!rate)
		return;
	uint64_t cost = (uint64_t)((double)bytes * 1e9 / (double)rate);
	uint64_t now = mfd__now_ns();
	uint64_t cur = __atomic_load_n(&p->bucket_ns, __ATOMIC_RELAXED), next;
	do {
		uint64_t start =
			cur + RATE_BURST_NS < now ? now - RATE_BURST_NS : cur;
		next = start + cost;
	} while (!__atomic_compare_exchange_n(&p->bucket_ns, &cur, next, false,
					      __ATOMIC_RELAXED,
					      __ATOMIC_RELAXED));
	/* Sleep in short steps: the limit is lifted at switchover and an
	 * aborted pool must not wait out its reservation. */
	while ((now = mfd__now_ns()) < next &&
	       __atomic_load_n(&p->rate_bps, __ATOMIC_ACQUIRE) &&
	       !__atomic_load_n(&p->error, __ATOMIC_RELAXED)) {
		uint64_t ns = next - now;
		if (ns > 2000000)
			ns = 2000000;
		struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)ns };
		nanosleep(&ts, NULL);
	}
}

/*
 * Under p->lock, after w's channel failed with err: with degraded channels
 * on, a transport failure (or a kill), another worker alive and nothing
 * on this channel that cannot be sent again (device state, DONE), the
 * worker leaves its channel: every batch it still holds goes into its log
 * (with those it sent, they go back to the dirty set once the destination
 * has said what it applied) and back to the free list. Returns true with
 * the lock released, the worker to end; false: the pool must fail.
 */
static bool leave(struct mfd__send_worker *w, int err)
{
	struct mfd__pool *p = w->pool;
	if (!p->degrade || p->error || p->live < 2 || w->sent_device ||
	    !(w->kill || mfd__is_transport_error(err)))
		return false;
	for (unsigned k = 0; k < w->len; k++) {
		const struct mfd__job_slot *js =
			&w->q[(w->head + k) % MFD__POOL_QUEUE];
		if (js->job == MFD__JOB_DONE || js->job == MFD__JOB_DEVICE)
			return false;
	}
	for (unsigned k = 0; k < w->len; k++) {
		struct mfd__job_slot *js =
			&w->q[(w->head + k) % MFD__POOL_QUEUE];
		if (js->job != MFD__JOB_PAGES)
			continue;
		mfd__sentlog_note(&w->log, &p->blocks[js->batch->block],
				  js->batch->block, js->batch->round,
				  js->batch->offsets, js->batch->n);
		p->free[p->nfree++] = js->batch;
	}
	w->len = 0;
	__atomic_store_n(&w->dead, true, __ATOMIC_RELAXED);
	p->live--;
	p->lost |= 1ULL << w->idx;
	w->chan->ops->shutdown(w->chan, SHUT_RDWR);
	pthread_cond_broadcast(&p->idle_cv);
	unsigned live = p->live; /* read under the lock: others leave too */
	pthread_mutex_unlock(&p->lock);
	mfd__warn("channel %u (%s) lost: %s; %u channel(s) go on", w->idx,
		  w->chan->peer, mfd_strerror(err), live);
	if (p->on_lost)
		p->on_lost(p->lost_ctx);
	return true;
}

static void *worker_main(void *arg)
{
	struct mfd__send_worker *w = arg;
	struct mfd__pool *p = w->pool;

	__atomic_store_n(&w->tid, mfd__gettid(), __ATOMIC_RELEASE);
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (w->len == 0 && !p->quit && !w->kill)
			pthread_cond_wait(&w->cv, &p->lock);
		if (p->quit)
			break;
		if (w->kill) {
			if (leave(w, -ECONNRESET))
				break;	 /* the lock is released */
			w->kill = false; /* it cannot leave: the pool fails */
			pthread_mutex_unlock(&p->lock);
			mfd__pool_abort(p, -ECONNRESET);
			pthread_mutex_lock(&p->lock);
			continue;
		}
		struct mfd__job_slot js = w->q[w->head];
		pthread_mutex_unlock(&p->lock);

		int ret;
		if (js.job == MFD__JOB_PAGES && w->log.bits)
			mfd__sentlog_note(&w->log, &p->blocks[js.batch->block],
					  js.batch->block, js.batch->round,
					  js.batch->offsets, js.batch->n);
		if (js.job == MFD__JOB_PAGES) {
			/* max-bandwidth: the packet's size before any zero
			 * detection or compression, as a bound. */
			rate_wait(p, MFD_PKT_HDR_SIZE +
					     (uint64_t)js.batch->n *
						     (sizeof(uint64_t) +
						      p->blocks[js.batch->block]
							      .page_size));
			MFD_GUEST_READS_BEGIN();
			ret = send_pages(w, js.batch);
			MFD_GUEST_READS_END();
		} else if (js.job == MFD__JOB_DEVICE) {
			rate_wait(p, MFD_PKT_HDR_SIZE + js.chunk->len);
			ret = send_device(w, js.chunk);
			free(js.chunk);
		} else
			ret = send_marker(w,
					  js.job == MFD__JOB_SYNC
						  ? MFD_PKT_SYNC
						  : MFD_PKT_DONE,
					  js.round);
		if (!ret && js.job != MFD__JOB_DONE &&
		    js.job != MFD__JOB_DEVICE)
			__atomic_store_n(&p->last_sent_ns, mfd__now_ns(),
					 __ATOMIC_RELAXED);
		pthread_mutex_lock(&p->lock);
		if (ret && leave(w, ret))
			break; /* the lock is released */
		if (ret) {
			pthread_mutex_unlock(&p->lock);
			mfd__err("channel %u (%s): send failed: %s", w->idx,
				 w->chan->peer, mfd_strerror(ret));
			mfd__pool_abort(p, ret);
			pthread_mutex_lock(&p->lock);
		}

		w->head = (w->head + 1) % MFD__POOL_QUEUE;
		w->len--;
		if (js.job == MFD__JOB_PAGES)
			p->free[p->nfree++] = js.batch;
		/* Waiters on idle_cv wait for a full queue to have room or
		 * for an empty one: waking them at half and at empty lets
		 * the scanner refill half a queue per wake-up instead of one
		 * job (abort wakes them itself). */
		if (w->len == 0 || w->len == MFD__POOL_QUEUE / 2)
			pthread_cond_broadcast(&p->idle_cv);
	}
	if (!w->dead)
		pthread_mutex_unlock(&p->lock);
	__atomic_fetch_add(&p->stats->cpu_ns, mfd__thread_cpu_ns(),
			   __ATOMIC_RELAXED);
	return NULL;
}

int mfd__pool_start(struct mfd__pool *p, struct mfd__chan **chans, unsigned n,
		    struct mfd__ramblock *blocks, struct mfd__stats *stats,
		    const struct mfd__pool_codec *codec)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->idle_cv, NULL);
	p->n = n;
	p->live = n;
	p->blocks = blocks;
	p->stats = stats;
	p->w = calloc(n, sizeof(*p->w));
	unsigned nb = n * MFD__POOL_QUEUE + 1;
	p->batches = calloc(nb, sizeof(*p->batches));
	p->free = calloc(nb, sizeof(*p->free));
	if (!p->w || !p->batches || !p->free) {
		for (unsigned i = 0; i < n; i++)
			chans[i]->ops->close(chans[i]);
		free(p->w);
		free(p->batches);
		free(p->free);
		p->w = NULL;
		p->n = 0;
		return -ENOMEM;
	}
	p->first = &p->batches[0];
	for (unsigned i = 1; i < nb; i++)
		p->free[p->nfree++] = &p->batches[i];
	for (unsigned i = 0; i < n; i++) {
		struct mfd__send_worker *w = &p->w[i];
		w->pool = p;
		w->idx = i;
		w->chan = chans[i];
		pthread_cond_init(&w->cv, NULL);
	}
	/* One codec per worker, buffers sized once for the largest packet
	 * it compresses. */
	for (unsigned i = 0; codec && codec->id != MFD__CODEC_NONE && i < n;
	     i++) {
		const struct mfd__codec_ops *ops = mfd__codec_ops_of(codec->id);
		int ret = ops ? ops->setup(&p->w[i].codec,
					   (size_t)codec->packet_pages *
						   MFD_MIN_PAGE_SIZE,
					   codec->level, codec->window_log)
			      : -EINVAL;
		if (ret) {
			while (i--)
				p->w[i].codec.ops->teardown(&p->w[i].codec);
			for (unsigned k = 0; k < n; k++) {
				chans[k]->ops->close(chans[k]);
				pthread_cond_destroy(&p->w[k].cv);
			}
			free(p->w);
			free(p->batches);
			free(p->free);
			p->w = NULL;
			p->n = 0;
			return ret;
		}
		p->w[i].codec.ops = ops;
	}
	for (unsigned i = 0; i < n; i++) {
		int ret = pthread_create(&p->w[i].thread, NULL, worker_main,
					 &p->w[i]);
		if (ret) {
			mfd__pool_abort(p, -ret);
			return -ret;
		}
		p->w[i].started = true;
	}
	return 0;
}

/* Under p->lock: queue a job on w, which has room. */
static void push(struct mfd__send_worker *w, enum mfd__job job, uint32_t round,
		 struct mfd__batch *b)
{
	w->q[(w->head + w->len) % MFD__POOL_QUEUE] = (struct mfd__job_slot){
		.job = job, .round = round, .batch = b
	};
	if (w->len++ == 0)
		pthread_cond_signal(&w->cv);
}

/* Under p->lock: the least busy worker with room (an idle one first;
 * among equals the search starts after the last one used), or NULL. */
static struct mfd__send_worker *least_busy(struct mfd__pool *p)
{
	struct mfd__send_worker *w = NULL;
	for (unsigned k = 0; k < p->n; k++) {
		struct mfd__send_worker *c = &p->w[(p->next + k) % p->n];
		if (!c->dead && c->len < MFD__POOL_QUEUE &&
		    (!w || c->len < w->len))
			w = c;
	}
	return w;
}

int mfd__pool_submit_device(struct mfd__pool *p, struct mfd__devchunk *c)
{
	int ret;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		if ((ret = p->error)) {
			free(c);
			break;
		}
		struct mfd__send_worker *w = least_busy(p);
		if (w) {
			p->next = w->idx + 1;
			w->q[(w->head + w->len) % MFD__POOL_QUEUE] =
				(struct mfd__job_slot){ .job = MFD__JOB_DEVICE,
							.chunk = c };
			if (w->len++ == 0)
				pthread_cond_signal(&w->cv);
			break;
		}
		uint64_t t = mfd__now_ns();
		pthread_cond_wait(&p->idle_cv, &p->lock);
		p->dev_full_ns += mfd__now_ns() - t;
	}
	pthread_mutex_unlock(&p->lock);
	return ret;
}

int mfd__pool_submit(struct mfd__pool *p, struct mfd__batch **batch)
{
	int ret;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		if ((ret = p->error))
			break;
		/* The least busy worker, an idle one first; among equals the
		 * search starts after the last one used, to spread load. */
		struct mfd__send_worker *w = least_busy(p);
		if (w) {
			p->next = w->idx + 1;
			push(w, MFD__JOB_PAGES, (*batch)->round, *batch);
			/* Batches in flight are at most n * QUEUE, so one of
			 * the n * QUEUE + 1 is always free here. */
			*batch = p->free[--p->nfree];
			break;
		}
		pthread_cond_wait(&p->idle_cv, &p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return ret;
}

/* Queues job on every worker, behind what each already has. */
static int broadcast(struct mfd__pool *p, enum mfd__job job, uint32_t round,
		     bool wait_all)
{
	int ret = 0;
	pthread_mutex_lock(&p->lock);
	/* A worker that left its channel (degraded) is skipped, also when it
	 * leaves while this waits. */
	for (unsigned i = 0; i < p->n && !ret; i++) {
		while (p->w[i].len == MFD__POOL_QUEUE && !p->error &&
		       !p->w[i].dead)
			pthread_cond_wait(&p->idle_cv, &p->lock);
		if (!(ret = p->error) && !p->w[i].dead)
			push(&p->w[i], job, round, NULL);
	}
	for (unsigned i = 0; wait_all && i < p->n && !ret; i++) {
		while (p->w[i].len && !p->error && !p->w[i].dead)
			pthread_cond_wait(&p->idle_cv, &p->lock);
		ret = p->error;
	}
	pthread_mutex_unlock(&p->lock);
	return ret;
}

int mfd__pool_sync(struct mfd__pool *p, uint32_t round)
{
	/* A round ends when every channel has sent its SYNC, so that the
	 * round's time and bandwidth are those of pages on the wire, not
	 * of pages queued (the queues hold n * MFD__POOL_QUEUE packets,
	 * all of a small guest's RAM), and the dirty sync that follows
	 * finds what the guest wrote while they really went out. With a
	 * round fence (one-sided pages) this is also what keeps the next
	 * round's pages from overtaking. */
	return broadcast(p, MFD__JOB_SYNC, round, true);
}

int mfd__pool_done(struct mfd__pool *p)
{
	return broadcast(p, MFD__JOB_DONE, 0, true);
}

void mfd__pool_abort(struct mfd__pool *p, int err)
{
	pthread_mutex_lock(&p->lock);
	if (!p->error) {
		__atomic_store_n(&p->error, err ? err : -ECANCELED,
				 __ATOMIC_RELAXED);
		/* Unblock workers stuck in send(); the channels stay
		 * allocated until destroy. */
		for (unsigned i = 0; i < p->n; i++)
			p->w[i].chan->ops->shutdown(p->w[i].chan, SHUT_RDWR);
	}
	pthread_cond_broadcast(&p->idle_cv);
	pthread_mutex_unlock(&p->lock);
}

void mfd__pool_destroy(struct mfd__pool *p)
{
	if (!p->w)
		return;
	mfd__pool_quiesce(p); /* the workers joined */
	for (unsigned i = 0; i < p->n; i++) {
		/* Device chunks still queued (a failed migration). */
		for (unsigned k = 0; k < p->w[i].len; k++) {
			struct mfd__job_slot *js =
				&p->w[i].q[(p->w[i].head + k) %
					   MFD__POOL_QUEUE];
			if (js->job == MFD__JOB_DEVICE)
				free(js->chunk);
		}
		p->w[i].chan->ops->close(p->w[i].chan);
		if (p->w[i].codec.ops)
			p->w[i].codec.ops->teardown(&p->w[i].codec);
		mfd__sentlog_free(&p->w[i].log);
		pthread_cond_destroy(&p->w[i].cv);
	}
	free(p->w);
	free(p->batches);
	free(p->free);
	p->w = NULL;
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->idle_cv);
}

uint64_t mfd__pool_unsent(struct mfd__pool *p)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < p->n; i++) {
		struct mfd__chan *c = p->w[i].chan;
		if (c && c->ops->unsent &&
		    !__atomic_load_n(&p->w[i].dead, __ATOMIC_RELAXED))
			n += c->ops->unsent(c);
	}
	return n;
}

unsigned mfd__pool_pace(struct mfd__pool *p, uint64_t bps)
{
	unsigned live = 0, took = 0;
	for (unsigned i = 0; i < p->n; i++)
		live += !__atomic_load_n(&p->w[i].dead, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < p->n && live; i++) {
		struct mfd__chan *c = p->w[i].chan;
		if (c && c->ops->pace &&
		    !__atomic_load_n(&p->w[i].dead, __ATOMIC_RELAXED) &&
		    !c->ops->pace(c, bps ? (bps + live - 1) / live : 0))
			took++;
	}
	return took;
}

void mfd__pool_sched(struct mfd__pool *p, uint64_t *cpu_ns, uint64_t *wait_ns,
		     unsigned *nthreads)
{
	*cpu_ns = *wait_ns = 0;
	*nthreads = 0;
	for (unsigned i = 0; i < p->n; i++) {
		int tid = __atomic_load_n(&p->w[i].tid, __ATOMIC_ACQUIRE);
		uint64_t cpu, wait;
		if (tid <= 0 || mfd__thread_sched(tid, &cpu, &wait))
			continue;
		*cpu_ns += cpu;
		*wait_ns += wait;
		++*nthreads;
	}
}

uint64_t mfd__pool_cancel_queued(struct mfd__pool *p,
				 void (*undo)(void *ctx,
					      const struct mfd__batch *b),
				 void *ctx)
{
	uint64_t pages = 0;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < p->n; i++) {
		struct mfd__send_worker *w = &p->w[i];
		if (w->dead || w->len < 2)
			continue;
		/* The head may be on the wire already: it stays. */
		unsigned keep = 1;
		for (unsigned k = 1; k < w->len; k++) {
			struct mfd__job_slot js =
				w->q[(w->head + k) % MFD__POOL_QUEUE];
			if (js.job == MFD__JOB_PAGES) {
				undo(ctx, js.batch);
				pages += js.batch->n;
				p->free[p->nfree++] = js.batch;
			} else {
				w->q[(w->head + keep++) % MFD__POOL_QUEUE] = js;
			}
		}
		w->len = keep;
	}
	pthread_cond_broadcast(&p->idle_cv);
	pthread_mutex_unlock(&p->lock);
	return pages;
}

unsigned mfd__pool_queued(struct mfd__pool *p)
{
	unsigned n = 0;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < p->n; i++)
		n += p->w[i].len;
	pthread_mutex_unlock(&p->lock);
	return n;
}

int mfd__pool_sentlog(struct mfd__pool *p, unsigned nblocks)
{
	pthread_mutex_lock(&p->lock);
	int ret = 0;
	for (unsigned i = 0; i < p->n && !ret; i++)
		if (!p->w[i].log.bits)
			ret = mfd__sentlog_init(&p->w[i].log, p->blocks,
						nblocks);
	pthread_mutex_unlock(&p->lock);
	return ret;
}

void mfd__pool_quiesce(struct mfd__pool *p)
{
	if (!p->w)
		return;
	pthread_mutex_lock(&p->lock);
	p->quit = true;
	for (unsigned i = 0; i < p->n; i++)
		pthread_cond_signal(&p->w[i].cv);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->n; i++) {
		struct mfd__send_worker *w = &p->w[i];
		if (w->started)
			pthread_join(w->thread, NULL);
		w->started = false;
		/* What it held and never sent was taken too. */
		for (unsigned k = 0; k < w->len && w->log.bits; k++) {
			const struct mfd__job_slot *js =
				&w->q[(w->head + k) % MFD__POOL_QUEUE];
			if (js->job == MFD__JOB_PAGES)
				mfd__sentlog_note(
					&w->log, &p->blocks[js->batch->block],
					js->batch->block, js->batch->round,
					js->batch->offsets, js->batch->n);
		}
	}
}

int mfd__pool_degrade(struct mfd__pool *p, unsigned nblocks,
		      void (*on_lost)(void *ctx), void *ctx)
{
	int ret = mfd__pool_sentlog(p, nblocks);
	pthread_mutex_lock(&p->lock);
	if (!ret) {
		p->on_lost = on_lost;
		p->lost_ctx = ctx;
		p->degrade = true;
	}
	pthread_mutex_unlock(&p->lock);
	return ret;
}

uint64_t mfd__pool_lost(struct mfd__pool *p)
{
	pthread_mutex_lock(&p->lock);
	uint64_t lost = p->lost;
	pthread_mutex_unlock(&p->lock);
	return lost;
}

int mfd__pool_kill(struct mfd__pool *p, unsigned i, int err)
{
	pthread_mutex_lock(&p->lock);
	bool last = !p->degrade || (p->live < 2 && !p->w[i].dead);
	if (!last && !p->w[i].dead && !p->w[i].kill) {
		/* An idle worker wakes; a sending one fails its send. */
		p->w[i].kill = true;
		p->w[i].chan->ops->shutdown(p->w[i].chan, SHUT_RDWR);
		pthread_cond_signal(&p->w[i].cv);
	}
	pthread_mutex_unlock(&p->lock);
	if (!last)
		return 0;
	mfd__pool_abort(p, err);
	return err;
}

void mfd__pool_totals(struct mfd__pool *p, uint64_t *pages, uint64_t *packets)
{
	*pages = *packets = 0;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < p->n; i++) {
		if (p->w[i].dead)
			continue;
		*pages += __atomic_load_n(&p->w[i].tot_pages, __ATOMIC_RELAXED);
		*packets +=
			__atomic_load_n(&p->w[i].tot_packets, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&p->lock);
}
