/* SPDX-License-Identifier: MIT */
/* Adapter from a vhost-vdpa virtio-net device fd to mfd_device_ops. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "devstate/vdpa_compat.h"
#include "devstate/vdpa_state.h"
#include "multifd/common/clock.h"
#include "multifd/common/le.h"
#include "multifd/common/log.h"
#include "multifd/multifd.h"
#include "multifd/vdpa.h"

#define MAX_REGIONS 16
#define LOG_PAGE    4096ULL
#define BIT(n)	    (1ULL << (n))
/* virtio_net_config up to mtu: mac[6], status, max_virtqueue_pairs, mtu */
#define NET_CONFIG_LEN 12

struct region {
	uint64_t iova, len;
	uint8_t *host;
	uint64_t *log; /* one bit per LOG_PAGE, atomic */
};

struct mfd_vdpa_dev {
	int fd;
	mfd_vdpa_sys sys;
	mfd_device_ops ops;
	int state;
	uint64_t dev_features, backend;
	uint64_t features; /* the guest's (set_features) */
	unsigned nvqs_dev; /* queues the device has */
	uint16_t max_ring;
	mfd_vdpa_vring *vr; /* nvqs_dev of them; num 0: not set up */
	struct region regions[MAX_REGIONS];
	unsigned nregions;
	struct mfd__vdpa_ctrl ctrl; /* source: what the guest set */
	struct mfd__vdpa_state st;  /* captured (source) or loaded */
	bool have_state, suspended, was_reset, loaded;
	int32_t *used_seen; /* per ring: used->idx at the last dma_dirty */
	uint8_t buf[MFD_VDPA_STATE_MAX];
	size_t buf_len, pos;
	mfd_vdpa_stats stats;
};

static int sys_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
	(void)ctx;
	return ioctl(fd, req, arg);
}

static int xioctl(struct mfd_vdpa_dev *d, unsigned long req, void *arg)
{
	if (d->sys.ioctl(d->sys.ctx, d->fd, req, arg) < 0)
		return errno ? -errno : -EIO;
	return 0;
}

static int get_status(struct mfd_vdpa_dev *d, uint8_t *s)
{
	return xioctl(d, VHOST_VDPA_GET_STATUS, s);
}

static int set_status(struct mfd_vdpa_dev *d, uint8_t s)
{
	int ret = xioctl(d, VHOST_VDPA_SET_STATUS, &s);
	if (ret)
		mfd__err("vdpa: VHOST_VDPA_SET_STATUS 0x%x: %s", s,
			 mfd_strerror(ret));
	return ret;
}

static int vring_ioctl(struct mfd_vdpa_dev *d, unsigned long req, unsigned idx,
		       unsigned num)
{
	struct vhost_vring_state vs = { .index = idx, .num = num };
	return xioctl(d, req, &vs);
}

/* Host address of [iova, iova+len) when one region holds it all. */
static uint8_t *translate(struct mfd_vdpa_dev *d, uint64_t iova, uint64_t len)
{
	for (unsigned i = 0; i < d->nregions; i++) {
		struct region *r = &d->regions[i];
		if (iova >= r->iova && len <= r->len &&
		    iova - r->iova <= r->len - len)
			return r->host + (iova - r->iova);
	}
	return NULL;
}

/* The used ring's idx field of ring i, read from guest memory. */
static int used_idx(struct mfd_vdpa_dev *d, unsigned i, uint16_t *idx)
{
	const uint8_t *p = translate(d, d->vr[i].used + 2, 2);
	if (!p) {
		mfd__err("vdpa: the used ring of queue %u is outside the "
			 "guest memory given to the adapter",
			 i);
		return -EFAULT;
	}
	uint16_t v;
	__atomic_load((const uint16_t *)(const void *)p, &v, __ATOMIC_ACQUIRE);
	*idx = mfd__get_le16((const uint8_t *)&v);
	return 0;
}

static int read_config(struct mfd_vdpa_dev *d, uint8_t *cfg)
{
	uint64_t raw[(sizeof(struct vhost_vdpa_config) + NET_CONFIG_LEN) / 8 +
		     1];
	struct vhost_vdpa_config *c = (struct vhost_vdpa_config *)raw;
	memset(raw, 0, sizeof(raw));
	c->off = 0;
	c->len = NET_CONFIG_LEN;
	int ret = xioctl(d, VHOST_VDPA_GET_CONFIG, c);
	if (ret) {
		mfd__err("vdpa: VHOST_VDPA_GET_CONFIG: %s", mfd_strerror(ret));
		return ret;
	}
	memcpy(cfg, c->buf, NET_CONFIG_LEN);
	return 0;
}

/* Reads the stopped device's state into d->st and encodes it in d->buf,
 * checked by the parser the destination uses. After a reset the device
 * has no indices to give: each ring resumes at its used index. */
static int capture(struct mfd_vdpa_dev *d, bool after_reset)
{
	struct mfd__vdpa_state *s = &d->st;
	uint8_t cfg[NET_CONFIG_LEN];
	const char *why;
	int ret = read_config(d, cfg);
	if (ret)
		return ret;
	memset(s, 0, sizeof(*s));
	s->features = d->features;
	memcpy(s->mac, cfg, 6);
	if (s->features & BIT(VIRTIO_NET_F_STATUS))
		s->status = mfd__get_le16(cfg + 6);
	if (s->features & BIT(VIRTIO_NET_F_MQ))
		s->max_vq_pairs = mfd__get_le16(cfg + 8);
	if (s->features & BIT(VIRTIO_NET_F_MTU))
		s->mtu = mfd__get_le16(cfg + 10);
	for (unsigned i = 0; i < d->nvqs_dev; i++) {
		if (!d->vr[i].num)
			continue;
		if (s->nvqs == MFD_VDPA_MAX_VQS)
			return -E2BIG;
		struct mfd__vdpa_vq *q = &s->vq[s->nvqs++];
		q->index = (uint16_t)i;
		q->num = d->vr[i].num;
		if ((ret = used_idx(d, i, &q->used_idx)))
			return ret;
		q->last_avail = q->used_idx;
		struct vhost_vring_state vs = { .index = i };
		if (after_reset)
			continue;
		if ((ret = xioctl(d, VHOST_GET_VRING_BASE, &vs))) {
			mfd__err("vdpa: VHOST_GET_VRING_BASE %u: %s", i,
				 mfd_strerror(ret));
			return ret;
		}
		q->last_avail = (uint16_t)vs.num;
	}
	s->ctrl = d->ctrl;
	d->buf_len = mfd__vdpa_state_encode(s, d->buf, sizeof(d->buf));
	struct mfd__vdpa_state check;
	ret = mfd__vdpa_state_parse(d->buf, d->buf_len, &check, &why);
	if (ret) {
		mfd__err("vdpa: the state read from the device is not valid: "
			 "%s",
			 why);
		return -EINVAL;
	}
	d->stats.state_bytes = d->buf_len;
	d->have_state = true;
	return 0;
}

/* Features and rings of s, up to FEATURES_OK; the device is reset first. */
static int program(struct mfd_vdpa_dev *d, const struct mfd__vdpa_state *s)
{
	uint8_t st = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
	uint64_t f = s->features;
	int ret;
	if ((ret = set_status(d, 0)) || (ret = set_status(d, st)))
		return ret;
	if ((ret = xioctl(d, VHOST_SET_FEATURES, &f))) {
		mfd__err("vdpa: VHOST_SET_FEATURES: %s", mfd_strerror(ret));
		return ret;
	}
	st |= VIRTIO_CONFIG_S_FEATURES_OK;
	if ((ret = set_status(d, st)) || (ret = get_status(d, &st)))
		return ret;
	if (!(st & VIRTIO_CONFIG_S_FEATURES_OK)) {
		mfd__err("vdpa: the device refused the features 0x%llx",
			 (unsigned long long)f);
		return -EINVAL;
	}
	for (unsigned i = 0; i < s->nvqs; i++) {
		unsigned q = s->vq[i].index;
		const mfd_vdpa_vring *vr = &d->vr[q];
		struct vhost_vring_addr a = { .index = q,
					      .desc_user_addr = vr->desc,
					      .used_user_addr = vr->used,
					      .avail_user_addr = vr->avail };
		/* Rewind to the used index: a buffer the device had taken
		 * but not returned is offered again (for split rings the
		 * guest sees only what is in the used ring). */
		if ((ret = vring_ioctl(d, VHOST_SET_VRING_NUM, q, vr->num)) ||
		    (ret = xioctl(d, VHOST_SET_VRING_ADDR, &a)) ||
		    (ret = vring_ioctl(d, VHOST_SET_VRING_BASE, q,
				       s->vq[i].used_idx))) {
			mfd__err("vdpa: setting up ring %u: %s", q,
				 mfd_strerror(ret));
			return ret;
		}
		struct vhost_vring_file kick = { q, vr->kick_fd },
					call = { q, vr->call_fd };
		if ((vr->kick_fd >= 0 &&
		     (ret = xioctl(d, VHOST_SET_VRING_KICK, &kick))) ||
		    (vr->call_fd >= 0 &&
		     (ret = xioctl(d, VHOST_SET_VRING_CALL, &call))))
			return ret;
	}
	return 0;
}

static int enable(struct mfd_vdpa_dev *d, const struct mfd__vdpa_state *s,
		  bool cvq)
{
	unsigned c = mfd__vdpa_cvq_index(s->features, s->max_vq_pairs);
	bool has_cvq = s->features & BIT(VIRTIO_NET_F_CTRL_VQ);
	for (unsigned i = 0; i < s->nvqs; i++) {
		if ((has_cvq && s->vq[i].index == c) != cvq)
			continue;
		int ret = vring_ioctl(d, VHOST_VDPA_SET_VRING_ENABLE,
				      s->vq[i].index, 1);
		if (ret) {
			mfd__err("vdpa: enabling ring %u: %s", s->vq[i].index,
				 mfd_strerror(ret));
			return ret;
		}
	}
	return 0;
}

/* After program(): DRIVER_OK, the control commands, the data queues. */
static int start_driver(struct mfd_vdpa_dev *d)
{
	const struct mfd__vdpa_state *s = &d->st;
	uint8_t st;
	uint8_t payload[8 + 2 * 6 * MFD_VDPA_MAX_MACS];
	int ret;
	if (s->ctrl.norder && !d->sys.ctrl) {
		mfd__err("vdpa: the state holds control commands and the "
			 "hypervisor gave no control queue to replay them");
		return -EOPNOTSUPP;
	}
	if ((ret = enable(d, s, true)) || (ret = get_status(d, &st)) ||
	    (ret = set_status(d, st | VIRTIO_CONFIG_S_DRIVER_OK)))
		return ret;
	for (unsigned i = 0; i < s->ctrl.norder; i++) {
		uint16_t k = s->ctrl.order[i];
		size_t len = mfd__vdpa_ctrl_payload(&s->ctrl, k, payload);
		ret = d->sys.ctrl(d->sys.ctx, d->fd, (uint8_t)(k >> 8),
				  (uint8_t)k, payload, len);
		if (ret) {
			mfd__err("vdpa: the device refused control command "
				 "%u.%u: %s",
				 k >> 8, k & 0xff, mfd_strerror(ret));
			return ret;
		}
	}
	return enable(d, s, false);
}

static int restart(struct mfd_vdpa_dev *d)
{
	int ret = program(d, &d->st);
	if (!ret)
		ret = start_driver(d);
	if (!ret) {
		d->stats.restarts++;
		d->suspended = d->was_reset = false;
	}
	return ret;
}

/* RUNNING -> STOP */
static int stop(struct mfd_vdpa_dev *d)
{
	uint8_t st;
	int ret = get_status(d, &st);
	d->have_state = false;
	if (ret)
		return ret;
	if (!(st & VIRTIO_CONFIG_S_DRIVER_OK))
		return 0; /* not started (a destination): nothing runs */
	if (d->backend & BIT(VHOST_BACKEND_F_SUSPEND)) {
		if ((ret = xioctl(d, VHOST_VDPA_SUSPEND, NULL))) {
			mfd__err("vdpa: VHOST_VDPA_SUSPEND: %s",
				 mfd_strerror(ret));
			return ret;
		}
		d->suspended = true;
		d->stats.suspends++;
		ret = capture(d, false);
		if (ret && (d->backend & BIT(VHOST_BACKEND_F_RESUME)) &&
		    !xioctl(d, VHOST_VDPA_RESUME, NULL))
			d->suspended = false;
		return ret;
	}
	/* No suspend: reset, which stops it (what QEMU did before
	 * VHOST_VDPA_SUSPEND existed), then read what is left: the config,
	 * and the used rings in guest memory, final now. Buffers it had
	 * taken but not returned are offered again from the used index. */
	if ((ret = set_status(d, 0)))
		return ret;
	d->was_reset = true;
	return capture(d, true);
}

/* STOP -> RUNNING */
static int run(struct mfd_vdpa_dev *d)
{
	uint64_t t0 = mfd__now_ns();
	int ret = 0;
	if (d->loaded) {
		ret = start_driver(d);
		if (!ret)
			d->loaded = false;
	} else if (d->suspended && (d->backend & BIT(VHOST_BACKEND_F_RESUME))) {
		ret = xioctl(d, VHOST_VDPA_RESUME, NULL);
		if (ret) {
			mfd__err("vdpa: VHOST_VDPA_RESUME: %s",
				 mfd_strerror(ret));
		} else {
			d->suspended = false;
			d->stats.resumes++;
		}
	} else if (d->suspended || d->was_reset) {
		ret = restart(d);
	}
	d->stats.start_ns = mfd__now_ns() - t0;
	return ret;
}

/* RESUMING -> STOP: the whole state is here; check it, program it. */
static int load_finish(struct mfd_vdpa_dev *d)
{
	uint64_t t0 = mfd__now_ns();
	struct mfd__vdpa_state *s = &d->st;
	const char *why;
	uint8_t cfg[NET_CONFIG_LEN];
	int ret = mfd__vdpa_state_parse(d->buf, d->buf_len, s, &why);
	if (ret) {
		mfd__err("vdpa: device state refused: %s", why);
		return ret;
	}
	if (s->features & ~d->dev_features) {
		mfd__err("vdpa: the destination device lacks features 0x%llx",
			 (unsigned long long)(s->features & ~d->dev_features));
		return -EINVAL;
	}
	if ((ret = read_config(d, cfg)))
		return ret;
	if ((s->features & BIT(VIRTIO_NET_F_MQ)) &&
	    mfd__get_le16(cfg + 8) < s->max_vq_pairs) {
		mfd__err("vdpa: the destination device has %u queue pairs, "
			 "the source %u",
			 mfd__get_le16(cfg + 8), s->max_vq_pairs);
		return -EINVAL;
	}
	if ((s->features & BIT(VIRTIO_NET_F_MTU)) &&
	    mfd__get_le16(cfg + 10) != s->mtu) {
		mfd__err("vdpa: mtu %u on the destination, %u on the source",
			 mfd__get_le16(cfg + 10), s->mtu);
		return -EINVAL;
	}
	if (!(s->ctrl.has & MFD_VDPA_HAS_MAC) && memcmp(cfg, s->mac, 6)) {
		mfd__err("vdpa: the destination device has another MAC "
			 "address (provision it with the source's)");
		return -EINVAL;
	}
	for (unsigned i = 0; i < s->nvqs; i++) {
		unsigned q = s->vq[i].index;
		uint16_t used;
		if (q >= d->nvqs_dev || d->vr[q].num != s->vq[i].num) {
			mfd__err("vdpa: ring %u (%u entries) is not set up "
				 "alike on the destination",
				 q, s->vq[i].num);
			return -EINVAL;
		}
		if ((ret = used_idx(d, q, &used)))
			return ret;
		if (used != s->vq[i].used_idx) {
			mfd__err("vdpa: the used ring of queue %u holds index "
				 "%u, the device state %u: not all of the "
				 "device's writes reached guest memory",
				 q, used, s->vq[i].used_idx);
			return -EINVAL;
		}
	}
	if ((ret = program(d, s)))
		return ret;
	d->features = s->features;
	d->have_state = d->loaded = true;
	d->stats.state_bytes = d->buf_len;
	d->stats.load_ns = mfd__now_ns() - t0;
	return 0;
}

static int vdpa_set_state(void *opaque, int to)
{
	struct mfd_vdpa_dev *d = opaque;
	int from = d->state, ret;
	if (!mfd_dev_arc_valid(from, to, d->ops.caps))
		return -EINVAL;
	if (from == MFD_DEV_RUNNING && to == MFD_DEV_STOP)
		ret = stop(d);
	else if (from == MFD_DEV_STOP && to == MFD_DEV_RUNNING)
		ret = run(d);
	else if (from == MFD_DEV_STOP && to == MFD_DEV_STOP_COPY)
		ret = d->have_state ? 0 : -ENODATA;
	else if (from == MFD_DEV_STOP && to == MFD_DEV_RESUMING)
		ret = set_status(d, 0);
	else if (from == MFD_DEV_RESUMING && to == MFD_DEV_STOP)
		ret = load_finish(d);
	else if (from == MFD_DEV_STOP_COPY && to == MFD_DEV_STOP)
		ret = 0;
	else
		ret = -EINVAL;
	if (ret == -ENODATA)
		mfd__err("vdpa: the device was not running (no DRIVER_OK): "
			 "no state to send");
	if (ret) {
		/* A failed stop leaves it running; anything else that
		 * touched the device leaves it to a reset. */
		if (!(from == MFD_DEV_RUNNING && !d->suspended &&
		      !d->was_reset) &&
		    !(from == MFD_DEV_STOP && to == MFD_DEV_STOP_COPY))
			d->state = MFD_DEV_ERROR;
		return ret;
	}
	d->state = to;
	d->pos = 0;
	if (to == MFD_DEV_RESUMING) {
		d->buf_len = 0;
		d->have_state = d->loaded = false;
	}
	return 0;
}

static int vdpa_get_state(void *opaque, int *state)
{
	*state = ((struct mfd_vdpa_dev *)opaque)->state;
	return 0;
}

/* ERROR -> RUNNING: from the last state read or loaded, else a reset
 * device (the guest's driver must start it again). */
static int vdpa_reset(void *opaque)
{
	struct mfd_vdpa_dev *d = opaque;
	int ret = d->have_state ? restart(d) : set_status(d, 0);
	if (ret)
		return ret;
	d->loaded = false;
	d->state = MFD_DEV_RUNNING;
	return 0;
}

static ssize_t vdpa_save(void *opaque, void *buf, size_t len)
{
	struct mfd_vdpa_dev *d = opaque;
	if (d->state != MFD_DEV_STOP_COPY)
		return -EINVAL;
	size_t n = d->buf_len - d->pos < len ? d->buf_len - d->pos : len;
	memcpy(buf, d->buf + d->pos, n);
	d->pos += n;
	return (ssize_t)n;
}

static int vdpa_load(void *opaque, const void *buf, size_t len)
{
	struct mfd_vdpa_dev *d = opaque;
	if (d->state != MFD_DEV_RESUMING)
		return -EINVAL;
	if (len > sizeof(d->buf) - d->buf_len) {
		mfd__err("vdpa: more device state than a valid one holds "
			 "(%zu bytes)",
			 sizeof(d->buf));
		return -EMSGSIZE;
	}
	memcpy(d->buf + d->buf_len, buf, len);
	d->buf_len += len;
	return 0;
}

static int mark_range(struct mfd_vdpa_dev *d, uint64_t iova, uint64_t len,
		      int (*mark)(void *ctx, void *host, uint64_t len),
		      void *ctx)
{
	uint8_t *h = translate(d, iova, len);
	return h ? mark(ctx, h, len) : 0;
}

static int vdpa_dma_dirty(void *opaque,
			  int (*mark)(void *ctx, void *host, uint64_t len),
			  void *ctx)
{
	struct mfd_vdpa_dev *d = opaque;
	int ret;
	for (unsigned i = 0; i < d->nregions; i++) {
		struct region *r = &d->regions[i];
		uint64_t pages = (r->len + LOG_PAGE - 1) / LOG_PAGE;
		for (uint64_t w = 0; w < (pages + 63) / 64; w++) {
			uint64_t bits = __atomic_exchange_n(&r->log[w], 0,
							    __ATOMIC_ACQ_REL);
			while (bits) {
				uint64_t pg = w * 64 +
					      (uint64_t)__builtin_ctzll(bits);
				bits &= bits - 1;
				uint64_t off = pg * LOG_PAGE;
				uint64_t n = r->len - off < LOG_PAGE
						     ? r->len - off
						     : LOG_PAGE;
				if ((ret = mark(ctx, r->host + off, n)))
					return ret;
				d->stats.dirty_pages++;
			}
		}
	}
	/* The used rings: the device writes one with every buffer it
	 * returns, whatever the hypervisor logs; its idx moves each time. */
	for (unsigned i = 0; i < d->nvqs_dev; i++) {
		uint16_t idx;
		if (!d->vr[i].num || !translate(d, d->vr[i].used + 2, 2) ||
		    used_idx(d, i, &idx) || d->used_seen[i] == idx)
			continue;
		d->used_seen[i] = idx;
		if ((ret = mark_range(d, d->vr[i].used, 6 + 8ULL * d->vr[i].num,
				      mark, ctx)))
			return ret;
	}
	return 0;
}

void mfd_vdpa_dev_log_write(mfd_vdpa_dev *d, uint64_t iova, uint64_t len)
{
	bool hit = false;
	if (!len)
		return;
	for (unsigned i = 0; i < d->nregions; i++) {
		struct region *r = &d->regions[i];
		if (iova >= r->iova + r->len || iova + len <= r->iova)
			continue;
		uint64_t a = iova > r->iova ? iova - r->iova : 0;
		uint64_t b = iova + len - r->iova;
		if (b > r->len)
			b = r->len;
		for (uint64_t pg = a / LOG_PAGE; pg <= (b - 1) / LOG_PAGE; pg++)
			__atomic_fetch_or(&r->log[pg / 64], 1ULL << (pg % 64),
					  __ATOMIC_RELEASE);
		hit = true;
	}
	if (!hit)
		__atomic_fetch_add(&d->stats.unmapped_writes, 1,
				   __ATOMIC_RELAXED);
}

int mfd_vdpa_dev_add_region(mfd_vdpa_dev *d, uint64_t iova, void *host,
			    uint64_t len)
{
	if (!d || !host || !len || (iova | len) % LOG_PAGE || iova + len < iova)
		return -EINVAL;
	if (d->nregions == MAX_REGIONS)
		return -ENOSPC;
	for (unsigned i = 0; i < d->nregions; i++)
		if (iova < d->regions[i].iova + d->regions[i].len &&
		    d->regions[i].iova < iova + len)
			return -EINVAL;
	struct region *r = &d->regions[d->nregions];
	r->log = calloc((len / LOG_PAGE + 63) / 64, 8);
	if (!r->log)
		return -ENOMEM;
	r->iova = iova;
	r->len = len;
	r->host = host;
	d->nregions++;
	return 0;
}

int mfd_vdpa_dev_set_vring(mfd_vdpa_dev *d, unsigned idx,
			   const mfd_vdpa_vring *vr)
{
	if (!d || !vr || idx >= d->nvqs_dev || !vr->num ||
	    (vr->num & (vr->num - 1)) || vr->num > d->max_ring)
		return -EINVAL;
	d->vr[idx] = *vr;
	return 0;
}

int mfd_vdpa_dev_set_features(mfd_vdpa_dev *d, uint64_t features)
{
	if (!d || (features & ~d->dev_features))
		return -EINVAL;
	d->features = features;
	return 0;
}

int mfd_vdpa_dev_ctrl(mfd_vdpa_dev *d, uint8_t cls, uint8_t cmd,
		      const void *data, size_t len)
{
	const char *why;
	uint8_t cfg[NET_CONFIG_LEN];
	if (!d || (!data && len))
		return -EINVAL;
	int ret = read_config(d, cfg);
	if (ret)
		return ret;
	ret = mfd__vdpa_ctrl_apply(&d->ctrl, d->features,
				   mfd__get_le16(cfg + 8), cls, cmd, data, len,
				   &why);
	if (ret)
		mfd__err("vdpa: control command %u.%u: %s", cls, cmd, why);
	return ret;
}

void mfd_vdpa_dev_get_stats(const mfd_vdpa_dev *d, mfd_vdpa_stats *st)
{
	*st = d->stats;
	st->unmapped_writes =
		__atomic_load_n(&d->stats.unmapped_writes, __ATOMIC_RELAXED);
}

int mfd_vdpa_dev_new(mfd_vdpa_dev **out, int fd, uint64_t backend_features,
		     const mfd_vdpa_sys *sys)
{
	if (!out || fd < 0)
		return -EINVAL;
	struct mfd_vdpa_dev *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->fd = fd;
	d->sys = sys ? *sys : (mfd_vdpa_sys){ NULL, sys_ioctl, NULL };
	uint32_t id = 0, nvqs = 0;
	uint64_t offered = 0;
	int ret = xioctl(d, VHOST_VDPA_GET_DEVICE_ID, &id);
	if (ret == -ENOTTY || ret == -EINVAL || (!ret && id != VIRTIO_ID_NET)) {
		if (ret)
			mfd__err("vdpa: not a vhost-vdpa device fd "
				 "(VHOST_VDPA_GET_DEVICE_ID: %s)",
				 mfd_strerror(ret));
		else
			mfd__err("vdpa: virtio device id %u is not "
				 "virtio-net",
				 id);
		ret = -EOPNOTSUPP;
	}
	if (!ret)
		ret = xioctl(d, VHOST_GET_FEATURES, &d->dev_features);
	if (!ret)
		ret = xioctl(d, VHOST_GET_BACKEND_FEATURES, &offered);
	/* Older kernels lack the count: every index the format allows. */
	if (!ret &&
	    (ret = xioctl(d, VHOST_VDPA_GET_VQS_COUNT, &nvqs)) == -ENOTTY) {
		nvqs = MFD_VDPA_MAX_VQ_INDEX;
		ret = 0;
	}
	if (!ret)
		ret = xioctl(d, VHOST_VDPA_GET_VRING_NUM, &d->max_ring);
	if (!ret && (!nvqs || nvqs > MFD_VDPA_MAX_VQ_INDEX))
		ret = -EOPNOTSUPP;
	if (!ret && (!(d->vr = calloc(nvqs, sizeof(*d->vr))) ||
		     !(d->used_seen = malloc(nvqs * sizeof(int32_t)))))
		ret = -ENOMEM;
	if (ret) {
		free(d->vr);
		free(d);
		return ret;
	}
	d->nvqs_dev = nvqs;
	d->backend = offered & backend_features;
	d->state = MFD_DEV_RUNNING;
	for (unsigned i = 0; i < nvqs; i++)
		d->used_seen[i] = -1;
	d->ops = (mfd_device_ops){
		.caps = MFD_DEV_CAP_STOP_COPY,
		.set_state = vdpa_set_state,
		.get_state = vdpa_get_state,
		.reset = vdpa_reset,
		.save = vdpa_save,
		.load = vdpa_load,
		.dma_dirty = vdpa_dma_dirty,
	};
	*out = d;
	return 0;
}

void mfd_vdpa_dev_free(mfd_vdpa_dev *d)
{
	if (!d)
		return;
	for (unsigned i = 0; i < d->nregions; i++)
		free(d->regions[i].log);
	free(d->vr);
	free(d->used_seen);
	free(d);
}

const mfd_device_ops *mfd_vdpa_dev_ops(const mfd_vdpa_dev *d)
{
	return &d->ops;
}

int mfd_vdpa_open(const char *path, int *fd)
{
	if (!path || !fd)
		return -EINVAL;
	int f = open(path, O_RDWR | O_CLOEXEC);
	if (f < 0) {
		int e = errno;
		if (e == ENOENT) {
			mfd__err("vdpa: %s does not exist: no vhost-vdpa "
				 "device on this host (load vhost_vdpa and "
				 "create one with `vdpa dev add`)",
				 path);
			return -ENODEV;
		}
		mfd__err("vdpa: cannot open %s: %s", path, strerror(e));
		return -e;
	}
	*fd = f;
	return 0;
}
