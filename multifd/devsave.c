/* SPDX-License-Identifier: MIT */
/* Source side of device state: see devsave.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "multifd/ctl.h"
#include "multifd/devsave.h"
#include "multifd/devwire.h"

/* Without precopy info, the most chunks a device sends per round. */
#define ROUND_CHUNKS_NOINFO 64

void mfd__devsave_init(struct mfd__devsave *ds)
{
	memset(ds, 0, sizeof(*ds));
	mfd__devset_init(&ds->set, true);
}

static void release(struct mfd__devsave *ds)
{
	free(ds->seq);
	free(ds->fence);
	free(ds->buf);
	ds->seq = ds->fence = NULL;
	ds->buf = NULL;
}

void mfd__devsave_destroy(struct mfd__devsave *ds)
{
	release(ds);
	mfd__devset_destroy(&ds->set);
}

int mfd__devsave_start(struct mfd__devsave *ds, const struct mfd_config *cfg,
		       struct mfd__chan *main)
{
	release(ds);
	ds->transfer = cfg->device_transfer == MFD__DEVXFER_MAIN
			       ? MFD_DEV_XFER_MAIN
			       : MFD_DEV_XFER_MULTIFD;
	ds->chunk = cfg->device_chunk_size;
	if (ds->chunk > MFD_DEV_CHUNK_MAX)
		ds->chunk = MFD_DEV_CHUNK_MAX;
	__atomic_store_n(&ds->bytes, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&ds->down_ns, 0, __ATOMIC_RELAXED);
	ds->t_sc = ds->t_sent = 0;
	ds->seq = calloc(ds->set.n, sizeof(*ds->seq));
	ds->fence = calloc(ds->set.n, sizeof(*ds->fence));
	for (unsigned i = 0; i < ds->set.n; i++)
		ds->set.devs[i].mem_asked = false;
	char(*names)[MFD_MAX_DEV_NAME_WIRE + 1] =
		calloc(ds->set.n, sizeof(*names));
	if (ds->transfer == MFD_DEV_XFER_MAIN)
		ds->buf = malloc(MFD_DEVDATA_PREFIX + ds->chunk);
	if (!ds->seq || !ds->fence || !names ||
	    (ds->transfer == MFD_DEV_XFER_MAIN && !ds->buf)) {
		free(names);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < ds->set.n; i++)
		memcpy(names[i], ds->set.devs[i].name, sizeof(names[i]));
	struct mfd__devices dv = { .ndevices = ds->set.n,
				   .transfer = ds->transfer,
				   .chunk_max = ds->chunk,
				   .names = names };
	size_t len = mfd__devices_size(&dv);
	uint8_t *msg = malloc(len);
	int ret = msg ? mfd__devices_encode(&dv, msg, len) : -ENOMEM;
	if (ret >= 0)
		ret = mfd__ctl_send(main, MFD_CTL_DEVICES, msg, (uint32_t)ret);
	free(msg);
	free(names);
	if (ret)
		return ret;
	/* From here on the failed notifier has devices to roll back. */
	ds->active = true;
	ret = mfd__devset_notify(&ds->set, MFD_MIG_SETUP);
	if (ret)
		mfd__err("devices: setup notifier (to PRE_COPY): %s",
			 mfd_strerror(ret));
	return ret;
}

static size_t iov_bytes(const struct iovec *iov, int n)
{
	size_t t = 0;
	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

/*
 * c->iov[2..2+cnt) holds what save_iov() described. Where some of it lies
 * in the device's state memory, puts a placement table in c->data and at
 * c->iov[1] and returns its size; else moves the entries to c->iov[1..] and
 * returns 0 (a plain chunk).
 */
static int place(struct mfd__devsave *ds, struct mfd__dev *d, unsigned i,
		 struct mfd__devchunk *c, int cnt)
{
	uint8_t *base;
	uint64_t size;
	int ret = mfd__dev_state_mem(d, &base, &size);
	if (ret < 0) {
		mfd__err("device %s: state memory: %s", d->name,
			 mfd_strerror(ret));
		return ret;
	}
	struct mfd__devplace p = { .nseg = (uint32_t)cnt,
				   .fence = ds->fence[i] };
	bool any = false;
	for (int k = 0; !ret && k < cnt; k++) { /* ret 1: no state memory */
		uintptr_t b = (uintptr_t)c->iov[2 + k].iov_base;
		size_t l = c->iov[2 + k].iov_len;
		uint64_t off = (uint64_t)(b - (uintptr_t)base);
		if (b >= (uintptr_t)base && l <= size && off <= size - l) {
			p.seg[k] = (struct mfd__devseg){ off, (uint32_t)l, 0 };
			any = true;
		} else {
			p.seg[k] = (struct mfd__devseg){ 0, (uint32_t)l,
							 MFD_DEVSEG_INLINE };
		}
	}
	if (!any) {
		memmove(c->iov + 1, c->iov + 2, (size_t)cnt * sizeof(*c->iov));
		return 0;
	}
	int t = mfd__devplace_encode(&p, c->data);
	if (t < 0)
		return -EIO; /* a segment of length 0 from save_iov() */
	c->iov[1] = (struct iovec){ c->data, (size_t)t };
	return t;
}

/*
 * Reads up to budget bytes (UINT64_MAX: until the device says the phase has
 * nothing more) of device i and sends them as chunks; with last, then sends
 * the LAST chunk.
 */
static int send_dev(struct mfd__devsave *ds, unsigned i, uint64_t budget,
		    bool last, struct mfd__pool *pool, struct mfd__chan *main,
		    unsigned max_chunks, bool *ended)
{
	struct mfd__dev *d = &ds->set.devs[i];
	uint64_t done = 0;
	*ended = false;
	for (unsigned k = 0; k < max_chunks; k++) {
		bool end = done >= budget;
		struct mfd__devchunk *c = NULL;
		uint8_t *data = NULL;
		/* Scatter-gather straight from the device's memory where it
		 * allows: the chunk is then only its description. */
		bool sg = ds->transfer == MFD_DEV_XFER_MULTIFD &&
			  d->ops.save_iov && d->state == MFD_DEV_STOP_COPY;
		if (ds->transfer == MFD_DEV_XFER_MULTIFD) {
			c = malloc(sizeof(*c) +
				   (sg ? MFD_DEVPLACE_MAX_HDR : ds->chunk));
			if (!c)
				return -ENOMEM;
			c->niov = 0;
			data = c->data;
		} else {
			data = ds->buf + MFD_DEVDATA_PREFIX;
		}
		ssize_t n = 0;
		int table = 0; /* bytes of a placement table */
		if (!end) {
			if (sg) {
				int cnt = MFD__DEVCHUNK_IOV;
				n = d->ops.save_iov(d->opaque, c->iov + 2, &cnt,
						    ds->chunk);
				if (n >= 0 &&
				    (cnt < 0 || cnt > MFD__DEVCHUNK_IOV ||
				     iov_bytes(c->iov + 2, cnt) != (size_t)n))
					n = -EIO;
				if (n > 0 &&
				    (table = place(ds, d, i, c, cnt)) < 0)
					n = table;
				if (n > 0)
					c->niov = (uint32_t)cnt + (table > 0);
			} else {
				n = d->ops.save(d->opaque, data, ds->chunk);
			}
			if (n < 0 || (size_t)n > ds->chunk) {
				free(c);
				mfd__err("device %s: reading its state failed: "
					 "%s",
					 d->name,
					 mfd_strerror(n < 0 ? (int)n : -EIO));
				return n < 0 ? (int)n : -EIO;
			}
			end = n == 0;
		}
		if (end && !last) {
			free(c);
			*ended = true;
			return 0;
		}
		uint32_t flags = end ? MFD_DEVCHUNK_LAST : 0;
		if (table > 0)
			flags |= MFD_DEVCHUNK_PLACED;
		else
			ds->fence[i] = ds->seq[i] + 1;
		int ret;
		if (c) {
			c->dev = i;
			c->seq = ds->seq[i];
			c->flags = flags;
			c->len = (uint32_t)n + (uint32_t)table;
			ret = mfd__pool_submit_device(pool, c);
		} else {
			struct mfd__devdata m = { .device = i,
						  .seq = ds->seq[i],
						  .flags = flags };
			mfd__devdata_prefix_encode(&m, ds->buf);
			ret = mfd__ctl_send(main, MFD_CTL_DEVICE_DATA, ds->buf,
					    MFD_DEVDATA_PREFIX + (uint32_t)n);
		}
		if (ret)
			return ret;
		__atomic_fetch_add(&ds->bytes, (uint64_t)n, __ATOMIC_RELAXED);
		ds->seq[i]++;
		done += (uint64_t)n;
		if (end) {
			*ended = true;
			return 0;
		}
	}
	return 0;
}

int mfd__devsave_round(struct mfd__devsave *ds, struct mfd__pool *pool,
		       struct mfd__chan *main)
{
	for (unsigned i = 0; i < ds->set.n; i++) {
		struct mfd__dev *d = &ds->set.devs[i];
		if (d->state != MFD_DEV_PRE_COPY)
			continue;
		/* What the device has now, not what it keeps producing
		 * while it runs: the next round takes the rest. */
		uint64_t budget = (uint64_t)ROUND_CHUNKS_NOINFO * ds->chunk;
		if (d->ops.get_precopy_info) {
			uint64_t init = 0, dirty = 0;
			int ret = d->ops.get_precopy_info(d->opaque, &init,
							  &dirty);
			if (ret) {
				mfd__err("device %s: precopy info: %s", d->name,
					 mfd_strerror(ret));
				return ret;
			}
			budget = init + dirty;
		}
		bool ended;
		int ret = budget ? send_dev(ds, i, budget, false, pool, main,
					    UINT32_MAX, &ended)
				 : 0;
		if (ret)
			return ret;
	}
	return 0;
}

struct dma_ctx {
	struct mfd__ramblock *blocks;
	unsigned n;
};

static int dma_mark(void *arg, void *host, uint64_t len)
{
	struct dma_ctx *ctx = arg;
	uint8_t *p = host;
	for (unsigned i = 0; i < ctx->n; i++) {
		struct mfd__ramblock *rb = &ctx->blocks[i];
		if (p >= rb->host && p < rb->host + rb->size)
			return mfd__ramblock_mark_dirty(
				rb, (uint64_t)(p - rb->host), len);
	}
	return -ERANGE;
}

int mfd__devsave_sync(struct mfd__devsave *ds, struct mfd__ramblock *blocks,
		      unsigned nblocks, uint64_t *pending)
{
	struct dma_ctx ctx = { .blocks = blocks, .n = nblocks };
	*pending = 0;
	for (unsigned i = 0; i < ds->set.n; i++) {
		struct mfd__dev *d = &ds->set.devs[i];
		if (!d->ops.dma_dirty)
			continue;
		int ret = d->ops.dma_dirty(d->opaque, dma_mark, &ctx);
		if (ret) {
			mfd__err("device %s: DMA dirty log: %s", d->name,
				 mfd_strerror(ret));
			return ret == -ERANGE ? MFD_EDEVICE : ret;
		}
	}
	for (unsigned i = 0; i < ds->set.n; i++)
		if (!ds->set.devs[i].ops.get_precopy_info &&
		    (ds->set.devs[i].state == MFD_DEV_PRE_COPY ||
		     ds->set.devs[i].state == MFD_DEV_PRE_COPY_P2P))
			return 0; /* no estimate without the info */
	int ret = mfd__devset_precopy_pending(&ds->set, pending);
	if (ret)
		mfd__err("devices: precopy info: %s", mfd_strerror(ret));
	return ret;
}

int mfd__devsave_before_stop(struct mfd__devsave *ds)
{
	int ret = mfd__devset_vm_event(&ds->set, MFD_VM_BEFORE_STOP);
	if (ret)
		mfd__err("devices: to the P2P states: %s", mfd_strerror(ret));
	return ret;
}

int mfd__devsave_after_stop(struct mfd__devsave *ds)
{
	int ret = mfd__devset_vm_event(&ds->set, MFD_VM_AFTER_STOP);
	ds->t_sc = mfd__now_ns();
	if (ret)
		mfd__err("devices: to STOP_COPY: %s", mfd_strerror(ret));
	return ret;
}

int mfd__devsave_final(struct mfd__devsave *ds, struct mfd__pool *pool,
		       struct mfd__chan *main)
{
	/* main: one device after the other, as the classic stream. multifd:
	 * one chunk of each device in turn, so that every device's loader on
	 * the destination has work from the start (each device's chunks still
	 * leave in sequence order, which the reorder buffer relies on). */
	bool multi = ds->transfer == MFD_DEV_XFER_MULTIFD;
	unsigned step = multi ? 1 : UINT32_MAX, left = ds->set.n;
	bool *ended = calloc(ds->set.n, sizeof(*ended));
	if (!ended)
		return -ENOMEM;
	int ret = 0;
	while (left && !ret) {
		for (unsigned i = 0; i < ds->set.n && !ret; i++) {
			if (ended[i])
				continue;
			ret = send_dev(ds, i, UINT64_MAX, true, pool, main,
				       step, &ended[i]);
			if (ended[i])
				left--;
		}
	}
	free(ended);
	ds->t_sent = mfd__now_ns();
	return ret;
}

uint64_t mfd__devsave_sent(struct mfd__devsave *ds, struct mfd__pool *pool)
{
	uint64_t t = ds->t_sent;
	if (ds->transfer == MFD_DEV_XFER_MULTIFD)
		t = __atomic_load_n(&pool->last_dev_ns, __ATOMIC_RELAXED);
	if (ds->t_sc && t > ds->t_sc)
		__atomic_store_n(&ds->down_ns, t - ds->t_sc, __ATOMIC_RELAXED);
	return t;
}

void mfd__devsave_end(struct mfd__devsave *ds, bool ok)
{
	if (!ds->active)
		return;
	ds->active = false;
	int ret = mfd__devset_notify(&ds->set,
				     ok ? MFD_MIG_COMPLETED : MFD_MIG_FAILED);
	if (ret)
		mfd__err("devices: %s notifier: %s",
			 ok ? "completed" : "failed", mfd_strerror(ret));
}
