/* SPDX-License-Identifier: MIT */
/* Destination side of device state: see devload.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "multifd/ctl.h"
#include "multifd/devload.h"

struct mfd__devloader {
	struct mfd__devload *dl;
	unsigned idx;
	pthread_t thread;
	bool started;
};

void mfd__devload_init(struct mfd__devload *dl, pthread_mutex_t *lock,
		       void (*fail)(void *ctx, int err), void *ctx)
{
	memset(dl, 0, sizeof(*dl));
	mfd__devset_init(&dl->set, false);
	dl->lock = lock;
	dl->fail = fail;
	dl->fail_ctx = ctx;
}

/* The load state of one migration; loaders must have been joined. */
static void release(struct mfd__devload *dl)
{
	if (dl->r) {
		struct mfd__reorder_stats st;
		mfd__reorder_get_stats(dl->r, &st);
		__atomic_store_n(&dl->peak, st.peak_bytes, __ATOMIC_RELAXED);
		__atomic_store_n(&dl->waits, st.waits, __ATOMIC_RELAXED);
	}
	pthread_mutex_lock(dl->lock);
	struct mfd__reorder *r = dl->r;
	dl->r = NULL;
	pthread_mutex_unlock(dl->lock);
	mfd__reorder_free(r);
	free(dl->ld);
	free(dl->next);
	free(dl->nrecv);
	free(dl->last_seq);
	free(dl->have_last);
	dl->ld = NULL;
	dl->next = dl->nrecv = dl->last_seq = NULL;
	dl->have_last = NULL;
}

void mfd__devload_destroy(struct mfd__devload *dl)
{
	release(dl);
	mfd__devset_destroy(&dl->set);
}

/* After a load of len bytes of device i returned ret. */
static int loaded(struct mfd__devload *dl, unsigned i, int ret, uint64_t len)
{
	if (ret) {
		mfd__err("device %s: loading its state failed: %s",
			 dl->set.devs[i].name, mfd_strerror(ret));
		return MFD_EDEVICE;
	}
	__atomic_fetch_add(&dl->bytes, len, __ATOMIC_RELAXED);
	return 0;
}

static int apply(struct mfd__devload *dl, unsigned i, const void *buf,
		 uint32_t len)
{
	struct mfd__dev *d = &dl->set.devs[i];
	if (!len)
		return 0;
	return loaded(dl, i, d->ops.load(d->opaque, buf, len), len);
}

/* A chunk received in place: its segments, in stream order. */
static int apply_placed(struct mfd__devload *dl, unsigned i,
			const struct mfd__rchunk *c)
{
	struct mfd__dev *d = &dl->set.devs[i];
	const struct mfd_dev_seg *seg = (const void *)c->data;
	uint64_t len = 0;
	for (uint32_t k = 0; k < c->nseg; k++)
		len += seg[k].len;
	return loaded(dl, i, d->ops.load_segs(d->opaque, seg, (int)c->nseg),
		      len);
}

static void *loader_main(void *arg)
{
	struct mfd__devloader *ld = arg;
	struct mfd__devload *dl = ld->dl;
	for (;;) {
		struct mfd__rchunk *c;
		int ret = mfd__reorder_next(dl->r, ld->idx, &c);
		if (ret == 1)
			break;
		if (!ret) {
			ret = c->placed ? apply_placed(dl, ld->idx, c)
					: apply(dl, ld->idx, c->data, c->len);
			mfd__reorder_release(dl->r, c);
		}
		if (ret) {
			if (ret != -ECANCELED)
				dl->fail(dl->fail_ctx, ret);
			break;
		}
	}
	__atomic_fetch_add(&dl->cpu_ns, mfd__thread_cpu_ns(), __ATOMIC_RELAXED);
	return NULL;
}

static int check_devices(struct mfd__devload *dl, const uint8_t *payload,
			 uint32_t len)
{
	char(*names)[MFD_MAX_DEV_NAME_WIRE + 1] =
		calloc(MFD_MAX_DEVICES_WIRE, sizeof(*names));
	if (!names)
		return -ENOMEM;
	struct mfd__devices dv;
	int ret = mfd__devices_decode(payload, len, &dv, names);
	if (ret) {
		mfd__err("malformed DEVICES: %s", mfd_strerror(ret));
	} else if (dv.ndevices != dl->set.n) {
		mfd__err("source has %u devices, destination %u", dv.ndevices,
			 dl->set.n);
		ret = MFD_EDEVICE;
	}
	for (unsigned i = 0; !ret && i < dv.ndevices; i++) {
		if (strcmp(names[i], dl->set.devs[i].name)) {
			mfd__err("device %u: source '%s', destination '%s'", i,
				 names[i], dl->set.devs[i].name);
			ret = MFD_EDEVICE;
		}
	}
	if (!ret) {
		dl->transfer = dv.transfer;
		dl->lim.ndevices = dv.ndevices;
		dl->lim.chunk_max = dv.chunk_max;
	}
	free(names);
	return ret;
}

int mfd__devload_setup(struct mfd__devload *dl, const struct mfd_config *cfg,
		       uint64_t features, struct mfd__chan *main)
{
	if (!(features & MFD_FEAT_DEVICES)) {
		if (!dl->set.n)
			return 0;
		mfd__err("%u devices registered but the source sends no "
			 "device state",
			 dl->set.n);
		return MFD_EDEVICE;
	}
	struct mfd__ctl_hdr h;
	uint8_t *payload;
	int ret = mfd__ctl_recv(main, &h, &payload);
	if (ret)
		return ret;
	if (h.type == MFD_CTL_ERROR)
		ret = mfd__ctl_peer_error(payload, h.length, "source");
	else if (h.type != MFD_CTL_DEVICES)
		ret = MFD_EUNEXPECTED;
	else
		ret = check_devices(dl, payload, h.length);
	free(payload);
	if (ret)
		return ret;

	unsigned n = dl->set.n;
	dl->next = calloc(n, sizeof(*dl->next));
	dl->nrecv = calloc(n, sizeof(*dl->nrecv));
	dl->last_seq = calloc(n, sizeof(*dl->last_seq));
	dl->have_last = calloc(n, sizeof(*dl->have_last));
	if (!dl->next || !dl->nrecv || !dl->last_seq || !dl->have_last)
		return -ENOMEM;
	__atomic_store_n(&dl->bytes, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&dl->down_ns, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&dl->t_round, mfd__now_ns(), __ATOMIC_RELAXED);
	/* Control plane: the devices wait for their state in RESUMING. */
	dl->active = true;
	if ((ret = mfd__devset_vm_event(&dl->set, MFD_VM_BEFORE_LOAD))) {
		mfd__err("devices: to RESUMING: %s", mfd_strerror(ret));
		return ret;
	}
	if (dl->transfer != MFD_DEV_XFER_MULTIFD)
		return 0;

	uint64_t max = cfg->device_buffer_max;
	if (max < 2ULL * dl->lim.chunk_max) {
		mfd__warn("device-buffer-max %llu raised to twice the "
			  "source's chunk size, %llu",
			  (unsigned long long)max, 2ULL * dl->lim.chunk_max);
		max = 2ULL * dl->lim.chunk_max;
	}
	struct mfd__reorder *r;
	if ((ret = mfd__reorder_new(&r, n, max, dl->lim.chunk_max,
				    MFD_DEV_SEQ_WINDOW)))
		return ret;
	mfd__reorder_set_timeout(r, cfg->io_timeout_ms);
	pthread_mutex_lock(dl->lock);
	dl->r = r;
	pthread_mutex_unlock(dl->lock);
	/* Placed bytes go straight into the state memory of a device that
	 * takes them (load_segs); asked now, in RESUMING, before any
	 * receiver runs. */
	for (unsigned i = 0; i < n; i++) {
		struct mfd__dev *d = &dl->set.devs[i];
		uint8_t *base;
		uint64_t size;
		d->mem_asked = false;
		if (d->ops.load_segs &&
		    (ret = mfd__dev_state_mem(d, &base, &size)) < 0) {
			mfd__err("device %s: state memory: %s", d->name,
				 mfd_strerror(ret));
			return MFD_EDEVICE;
		}
	}
	dl->ld = calloc(n, sizeof(*dl->ld));
	if (!dl->ld)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		dl->ld[i].dl = dl;
		dl->ld[i].idx = i;
		ret = -pthread_create(&dl->ld[i].thread, NULL, loader_main,
				      &dl->ld[i]);
		if (ret)
			return ret;
		dl->ld[i].started = true;
	}
	return 0;
}

static int recv_err(int ret)
{
	return ret == -ECONNRESET ? MFD_ETRUNCATED : ret;
}

/*
 * A PLACED chunk: reads and checks its placement table, then reserves room
 * and receives the bytes. In place when the device takes placed bytes and
 * every chunk before the fence is applied: placed segments straight into
 * the state memory, inline ones and the segment list into the chunk. Else
 * the whole stream part into the chunk, for load().
 */
static int recv_placed(struct mfd__devload *dl, struct mfd__chan *c,
		       const struct mfd__pkt_hdr *h, bool last,
		       struct mfd__rchunk **out)
{
	struct mfd__dev *d = &dl->set.devs[h->block];
	uint8_t tab[MFD_DEVPLACE_MAX_HDR];
	struct mfd__devplace p;
	int ret = c->ops->recv(c, tab, MFD_DEVPLACE_FIXED);
	if (ret)
		return recv_err(ret);
	size_t tsz = 0;
	if (!(ret = mfd__devplace_decode_fixed(tab, h->count, h->payload_len,
					       &p))) {
		tsz = mfd__devplace_size(p.nseg);
		if ((ret = c->ops->recv(c, tab + MFD_DEVPLACE_FIXED,
					tsz - MFD_DEVPLACE_FIXED)))
			return recv_err(ret);
		/* Placed bytes are checked against the device's state
		 * memory whenever it has one, received in place or not. */
		ret = mfd__devplace_decode_segs(
			tab + MFD_DEVPLACE_FIXED, h->payload_len,
			dl->lim.chunk_max, d->mem ? d->mem_size : UINT64_MAX,
			&p);
	}
	if (ret) {
		mfd__err("device %s: chunk %u: bad placement table: %s",
			 d->name, h->count, mfd_strerror(ret));
		return ret;
	}
	uint32_t data = h->payload_len - (uint32_t)tsz, inl = 0;
	for (uint32_t k = 0; k < p.nseg; k++)
		if (p.seg[k].flags & MFD_DEVSEG_INLINE)
			inl += p.seg[k].len;
	uint64_t held = p.nseg * sizeof(struct mfd_dev_seg) + inl;
	bool direct = d->mem && d->ops.load_segs && held <= dl->lim.chunk_max &&
		      mfd__reorder_applied(dl->r, h->block) >= p.fence;
	struct mfd__rchunk *rc;
	if ((ret = mfd__reorder_reserve(dl->r, h->block, h->count,
					direct ? (uint32_t)held : data, last,
					&rc)))
		return ret;
	if (!direct) {
		ret = c->ops->recv(c, rc->data, data);
	} else {
		struct iovec iov[MFD_DEVPLACE_MAX_SEGS];
		struct mfd_dev_seg *seg = (void *)rc->data;
		uint8_t *in = rc->data + p.nseg * sizeof(*seg);
		for (uint32_t k = 0; k < p.nseg; k++) {
			bool il = p.seg[k].flags & MFD_DEVSEG_INLINE;
			uint8_t *to = il ? in : d->mem + p.seg[k].mem_off;
			seg[k] = (struct mfd_dev_seg){ il ? to : NULL,
						       p.seg[k].mem_off,
						       p.seg[k].len };
			iov[k] = (struct iovec){ to, p.seg[k].len };
			in += il ? p.seg[k].len : 0;
		}
		rc->placed = true;
		rc->nseg = p.nseg;
		ret = c->ops->recvv(c, iov, (int)p.nseg);
	}
	if (ret) {
		mfd__reorder_drop(dl->r, rc);
		return recv_err(ret);
	}
	*out = rc;
	return 0;
}

int mfd__devload_pkt(struct mfd__devload *dl, struct mfd__chan *c,
		     const struct mfd__pkt_hdr *h)
{
	if (!dl->active || dl->transfer != MFD_DEV_XFER_MULTIFD)
		return MFD_EUNEXPECTED;
	int ret = mfd__devpkt_validate(h, &dl->lim);
	if (ret)
		return ret;
	bool last = h->zero_count & MFD_DEVCHUNK_LAST;
	struct mfd__rchunk *rc;
	if (h->zero_count & MFD_DEVCHUNK_PLACED) {
		if ((ret = recv_placed(dl, c, h, last, &rc)))
			return ret;
	} else {
		/* Validated before anything is read: device, window,
		 * duplicates, nothing after LAST. May wait for room
		 * (back-pressure). */
		if ((ret = mfd__reorder_reserve(dl->r, h->block, h->count,
						h->payload_len, last, &rc)))
			return ret;
		if (h->payload_len &&
		    (ret = c->ops->recv(c, rc->data, h->payload_len))) {
			mfd__reorder_drop(dl->r, rc);
			return recv_err(ret);
		}
	}
	if (last) {
		dl->last_seq[h->block] = h->count;
		__atomic_store_n(&dl->have_last[h->block], 1, __ATOMIC_RELEASE);
	}
	__atomic_fetch_add(&dl->nrecv[h->block], 1, __ATOMIC_RELEASE);
	mfd__reorder_commit(dl->r, rc);
	return 0;
}

int mfd__devload_main(struct mfd__devload *dl, const uint8_t *payload,
		      uint32_t len)
{
	if (!dl->active || dl->transfer != MFD_DEV_XFER_MAIN)
		return MFD_EUNEXPECTED;
	struct mfd__devdata m;
	int ret = mfd__devdata_decode(payload, len, &dl->lim, &m);
	if (ret)
		return ret;
	if (dl->have_last[m.device] || m.seq != dl->next[m.device]) {
		mfd__err("device %u: chunk %u out of order (next %u%s)",
			 m.device, m.seq, dl->next[m.device],
			 dl->have_last[m.device] ? ", after LAST" : "");
		return MFD_EROUND;
	}
	if ((ret = apply(dl, m.device, m.data, m.len)))
		return ret;
	dl->next[m.device]++;
	if (m.flags & MFD_DEVCHUNK_LAST)
		dl->have_last[m.device] = 1;
	return 0;
}

void mfd__devload_round(struct mfd__devload *dl)
{
	__atomic_store_n(&dl->t_round, mfd__now_ns(), __ATOMIC_RELAXED);
}

static void join_loaders(struct mfd__devload *dl)
{
	for (unsigned i = 0; dl->ld && i < dl->set.n; i++) {
		if (dl->ld[i].started)
			pthread_join(dl->ld[i].thread, NULL);
		dl->ld[i].started = false;
	}
}

int mfd__devload_finish(struct mfd__devload *dl)
{
	int ret = 0;
	if (!dl->active)
		return 0;
	/* Every chunk that will come has come: a device without its LAST
	 * chunk, or with a gap before it, can never complete. */
	for (unsigned i = 0; i < dl->set.n && !ret; i++) {
		bool have =
			__atomic_load_n(&dl->have_last[i], __ATOMIC_ACQUIRE);
		if (dl->transfer == MFD_DEV_XFER_MULTIFD && have)
			have = __atomic_load_n(&dl->nrecv[i],
					       __ATOMIC_ACQUIRE) ==
			       dl->last_seq[i] + 1;
		if (!have) {
			mfd__err("device %s: state incomplete at END",
				 dl->set.devs[i].name);
			ret = MFD_EDEVICE;
		}
	}
	if (ret) {
		pthread_mutex_lock(dl->lock);
		mfd__devload_abort(dl, ret);
		pthread_mutex_unlock(dl->lock);
	}
	join_loaders(dl);
	for (unsigned i = 0; !ret && dl->r && i < dl->set.n; i++)
		if (!mfd__reorder_dev_done(dl->r, i))
			ret = MFD_EDEVICE; /* its loader failed */
	if (ret)
		return ret;
	/* Control plane: leaving RESUMING validates what was written. */
	if ((ret = mfd__devset_vm_event(&dl->set, MFD_VM_AFTER_LOAD))) {
		mfd__err("devices: to STOP (validation): %s",
			 mfd_strerror(ret));
		return MFD_EDEVICE;
	}
	uint64_t t0 = __atomic_load_n(&dl->t_round, __ATOMIC_RELAXED);
	__atomic_store_n(&dl->down_ns, mfd__now_ns() - t0, __ATOMIC_RELAXED);
	dl->active = false;
	release(dl);
	return 0;
}

void mfd__devload_abort(struct mfd__devload *dl, int err)
{
	if (dl->r)
		mfd__reorder_abort(dl->r, err);
}

void mfd__devload_failed(struct mfd__devload *dl, int err)
{
	pthread_mutex_lock(dl->lock);
	mfd__devload_abort(dl, err);
	pthread_mutex_unlock(dl->lock);
	join_loaders(dl);
	if (dl->active) {
		int ret = mfd__devset_notify(&dl->set, MFD_MIG_FAILED);
		if (ret)
			mfd__err("devices: failed notifier: %s",
				 mfd_strerror(ret));
	}
	dl->active = false;
	release(dl);
}
