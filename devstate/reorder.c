/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdint.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "devstate/reorder.h"
#include "multifd/multifd.h"
#include "multifd/common/clock.h"
#include "multifd/common/log.h"

struct rdev {
	struct mfd__rchunk *head; /* sorted by seq, reserved or ready */
	uint32_t next;		  /* seq the loader takes next */
	uint32_t applied;	  /* chunks released by the loader, atomic */
	uint32_t last_seq;	  /* valid when has_last */
	bool has_last;
	bool done;	   /* last chunk taken */
	pthread_cond_t cv; /* its loader waits here */
};

struct mfd__reorder {
	pthread_mutex_t lock;
	pthread_cond_t space; /* receivers wait here */
	unsigned ndevs;
	uint64_t max_bytes, used;
	uint32_t max_chunk, window;
	uint64_t timeout_ms; /* a receiver's wait for room; 0: none */
	uint64_t freed;	     /* bytes ever freed: the loaders' progress */
	int err;
	struct mfd__reorder_stats st;
	/* Spent chunks of max_chunk bytes kept for reuse, so the steady
	 * state neither allocates nor faults in fresh pages per chunk. */
	struct mfd__rchunk *spare;
	unsigned nspare, max_spare;
	struct rdev devs[];
};

int mfd__reorder_new(struct mfd__reorder **out, unsigned ndevs,
		     uint64_t max_bytes, uint32_t max_chunk, uint32_t window)
{
	if (!out || ndevs == 0 || max_chunk == 0 || window == 0 ||
	    max_bytes < 2ULL * max_chunk)
		return -EINVAL;
	struct mfd__reorder *r =
		calloc(1, sizeof(*r) + ndevs * sizeof(struct rdev));
	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->lock, NULL);
	mfd__cond_init_mono(&r->space);
	for (unsigned i = 0; i < ndevs; i++)
		pthread_cond_init(&r->devs[i].cv, NULL);
	r->ndevs = ndevs;
	r->max_bytes = max_bytes;
	r->max_chunk = max_chunk;
	r->window = window;
	/* As many full chunks as the bound can hold, and one per device
	 * for the reserve. */
	uint64_t ms = max_bytes / max_chunk + ndevs;
	r->max_spare = ms > 4096 ? 4096 : (unsigned)ms;
	*out = r;
	return 0;
}

void mfd__reorder_free(struct mfd__reorder *r)
{
	if (!r)
		return;
	for (unsigned i = 0; i < r->ndevs; i++) {
		struct mfd__rchunk *c = r->devs[i].head;
		while (c) {
			struct mfd__rchunk *n = c->next;
			free(c);
			c = n;
		}
		pthread_cond_destroy(&r->devs[i].cv);
	}
	while (r->spare) {
		struct mfd__rchunk *n = r->spare->next;
		free(r->spare);
		r->spare = n;
	}
	pthread_cond_destroy(&r->space);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

/* Under the lock: room for len bytes, a spare chunk when one is kept. */
static struct mfd__rchunk *chunk_get(struct mfd__reorder *r, uint32_t len)
{
	/* A short chunk gets its own size: held memory stays within twice
	 * the bound however small the chunks a peer sends. */
	bool full = len >= r->max_chunk / 2;
	struct mfd__rchunk *c = full ? r->spare : NULL;
	if (c) {
		r->spare = c->next;
		r->nspare--;
	} else {
		c = malloc(sizeof(*c) + (full ? r->max_chunk : len));
		if (!c)
			return NULL;
	}
	memset(c, 0, sizeof(*c));
	c->full = full;
	return c;
}

/* Under the lock: c is spent. */
static void chunk_put(struct mfd__reorder *r, struct mfd__rchunk *c)
{
	if (c->full && r->nspare < r->max_spare) {
		c->next = r->spare;
		r->spare = c;
		r->nspare++;
	} else {
		free(c);
	}
}

/* Checks a header against the device's window, under the lock. Returns the
 * insertion point through *pos. */
static int check(struct mfd__reorder *r, struct rdev *d, uint32_t dev,
		 uint32_t seq, bool last, struct mfd__rchunk ***pos)
{
	if (seq < d->next) {
		mfd__err("device %u: chunk %u already loaded (next is %u)", dev,
			 seq, d->next);
		return MFD_EROUND;
	}
	if ((uint64_t)seq >= (uint64_t)d->next + r->window) {
		mfd__err("device %u: chunk %u outside the window [%u, %llu)",
			 dev, seq, d->next,
			 (unsigned long long)d->next + r->window);
		return MFD_EROUND;
	}
	if (d->has_last &&
	    (seq > d->last_seq || (last && seq != d->last_seq))) {
		mfd__err("device %u: chunk %u after the last chunk %u", dev,
			 seq, d->last_seq);
		return MFD_EROUND;
	}
	struct mfd__rchunk **p = &d->head;
	while (*p && (*p)->seq < seq)
		p = &(*p)->next;
	if (*p && (*p)->seq == seq) {
		mfd__err("device %u: duplicate chunk %u", dev, seq);
		return MFD_EROUND;
	}
	if (last) {
		/* A chunk beyond a newly announced end is as bad. */
		struct mfd__rchunk *c = d->head;
		while (c && c->seq < seq)
			c = c->next;
		if (c) {
			mfd__err("device %u: chunk %u is after the last chunk "
				 "%u",
				 dev, c->seq, seq);
			return MFD_EROUND;
		}
	}
	*pos = p;
	return 0;
}

int mfd__reorder_reserve(struct mfd__reorder *r, uint32_t dev, uint32_t seq,
			 uint32_t len, bool last, struct mfd__rchunk **out)
{
	if (dev >= r->ndevs) {
		mfd__err("device chunk for device %u, only %u registered", dev,
			 r->ndevs);
		return MFD_EDEVICE;
	}
	if (len > r->max_chunk || (len == 0 && !last)) {
		mfd__err("device %u: chunk %u has length %u (max %u)", dev, seq,
			 len, r->max_chunk);
		return MFD_ELENGTH;
	}
	struct rdev *d = &r->devs[dev];
	struct mfd__rchunk *c = NULL;
	pthread_mutex_lock(&r->lock);
	uint64_t end =
		r->timeout_ms ? mfd__deadline_ms(r->timeout_ms) : UINT64_MAX;
	bool waited = false;
	int ret;
	for (;;) {
		struct mfd__rchunk **pos;
		ret = r->err;
		if (ret)
			break;
		ret = check(r, d, dev, seq, last, &pos);
		if (ret)
			break;
		/* The chunk its loader waits for may use the reserve. */
		uint64_t limit = seq == d->next ? r->max_bytes
						: r->max_bytes - r->max_chunk;
		if (r->used + len <= limit) {
			c = chunk_get(r, len);
			if (!c) {
				ret = -ENOMEM;
				break;
			}
			c->dev = dev;
			c->seq = seq;
			c->len = len;
			c->last = last;
			c->next = *pos;
			*pos = c;
			if (last) {
				d->has_last = true;
				d->last_seq = seq;
			}
			r->used += len;
			if (r->used > r->st.peak_bytes)
				r->st.peak_bytes = r->used;
			break;
		}
		if (!waited) {
			r->st.waits++;
			waited = true;
		}
		/* Room comes when a loader applies a chunk; a source that
		 * stops sending the chunk a loader needs leaves none. A
		 * loader that frees room, however slowly, extends the wait. */
		uint64_t freed = r->freed;
		if (mfd__cond_wait_until(&r->space, &r->lock, end) &&
		    r->freed == freed) {
			mfd__err("device %u: chunk %u found no room in the "
				 "reorder buffer (%llu of %llu bytes held) "
				 "within io-timeout",
				 dev, seq, (unsigned long long)r->used,
				 (unsigned long long)r->max_bytes);
			ret = MFD_EDEVBUFFER;
			break;
		}
		if (r->freed != freed && r->timeout_ms)
			end = mfd__deadline_ms(r->timeout_ms);
	}
	pthread_mutex_unlock(&r->lock);
	*out = c;
	return ret;
}

void mfd__reorder_commit(struct mfd__reorder *r, struct mfd__rchunk *c)
{
	pthread_mutex_lock(&r->lock);
	c->ready = true;
	if (c->seq == r->devs[c->dev].next)
		pthread_cond_signal(&r->devs[c->dev].cv);
	pthread_mutex_unlock(&r->lock);
}

static void unlink_chunk(struct rdev *d, struct mfd__rchunk *c)
{
	struct mfd__rchunk **p = &d->head;
	while (*p && *p != c)
		p = &(*p)->next;
	if (*p)
		*p = c->next;
}

void mfd__reorder_drop(struct mfd__reorder *r, struct mfd__rchunk *c)
{
	pthread_mutex_lock(&r->lock);
	struct rdev *d = &r->devs[c->dev];
	unlink_chunk(d, c);
	if (c->last && d->has_last && d->last_seq == c->seq)
		d->has_last = false;
	r->used -= c->len;
	r->freed += c->len + 1;
	chunk_put(r, c);
	pthread_cond_broadcast(&r->space);
	pthread_mutex_unlock(&r->lock);
}

int mfd__reorder_next(struct mfd__reorder *r, uint32_t dev,
		      struct mfd__rchunk **out)
{
	struct rdev *d = &r->devs[dev];
	int ret;
	pthread_mutex_lock(&r->lock);
	for (;;) {
		ret = r->err;
		if (ret)
			break;
		if (d->done) {
			ret = 1;
			break;
		}
		struct mfd__rchunk *c = d->head;
		if (c && c->seq == d->next && c->ready) {
			d->head = c->next;
			c->next = NULL;
			d->next++;
			if (c->last)
				d->done = true;
			r->st.chunks++;
			*out = c;
			/* The chunk now next may use the reserve. */
			pthread_cond_broadcast(&r->space);
			break;
		}
		pthread_cond_wait(&d->cv, &r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	return ret;
}

void mfd__reorder_release(struct mfd__reorder *r, struct mfd__rchunk *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&r->lock);
	/* In order: the loader releases each chunk before it takes the
	 * next. */
	__atomic_fetch_add(&r->devs[c->dev].applied, 1, __ATOMIC_RELEASE);
	r->used -= c->len;
	r->freed += c->len + 1;
	chunk_put(r, c);
	pthread_cond_broadcast(&r->space);
	pthread_mutex_unlock(&r->lock);
}

uint32_t mfd__reorder_applied(struct mfd__reorder *r, uint32_t dev)
{
	return dev < r->ndevs ? __atomic_load_n(&r->devs[dev].applied,
						__ATOMIC_ACQUIRE)
			      : 0;
}

void mfd__reorder_set_timeout(struct mfd__reorder *r, uint64_t timeout_ms)
{
	pthread_mutex_lock(&r->lock);
	r->timeout_ms = timeout_ms;
	pthread_mutex_unlock(&r->lock);
}

void mfd__reorder_abort(struct mfd__reorder *r, int err)
{
	pthread_mutex_lock(&r->lock);
	if (!r->err)
		r->err = err < 0 ? err : -ECANCELED;
	pthread_cond_broadcast(&r->space);
	for (unsigned i = 0; i < r->ndevs; i++)
		pthread_cond_broadcast(&r->devs[i].cv);
	pthread_mutex_unlock(&r->lock);
}

bool mfd__reorder_dev_done(struct mfd__reorder *r, uint32_t dev)
{
	pthread_mutex_lock(&r->lock);
	bool done = dev < r->ndevs && r->devs[dev].done;
	pthread_mutex_unlock(&r->lock);
	return done;
}

uint64_t mfd__reorder_bytes(struct mfd__reorder *r)
{
	pthread_mutex_lock(&r->lock);
	uint64_t u = r->used;
	pthread_mutex_unlock(&r->lock);
	return u;
}

void mfd__reorder_get_stats(struct mfd__reorder *r,
			    struct mfd__reorder_stats *st)
{
	pthread_mutex_lock(&r->lock);
	*st = r->st;
	pthread_mutex_unlock(&r->lock);
}
