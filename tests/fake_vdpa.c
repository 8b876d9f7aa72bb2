/* SPDX-License-Identifier: MIT */
/* A fake vhost-vdpa virtio-net device (tests/fake_vdpa.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_ring.h>

#include "devstate/vdpa_compat.h"
#include "tests/fake_vdpa.h"

#define FAKE_FD 4242 /* never a real fd of ours */
#define MAX_VQS 16
#define CFG_LEN 12
#define HDR_LEN 12 /* struct virtio_net_hdr_mrg_rxbuf */
#define BIT(n)	(1ULL << (n))
#define RUNNING VIRTIO_CONFIG_S_DRIVER_OK

struct vq {
	uint16_t num, last_avail, used_idx;
	uint64_t desc, avail, used;
	bool enabled;
	int kick, call;
};

struct fake_vdpa {
	pthread_mutex_t lock;
	struct fake_vdpa_cfg cfg;
	uint8_t *mem;
	uint64_t mem_len;
	unsigned nvqs;
	uint8_t status;
	bool suspended, features_set;
	uint64_t features, backend_acked;
	struct vq vq[MAX_VQS];
	/* Net state: config MAC and what the control queue set. */
	uint8_t mac[6];
	uint16_t mq_pairs;
	uint64_t offloads;
	uint8_t rx[6];
	uint32_t n_uni, n_multi;
	uint8_t uni[64][6], multi[64][6];
	unsigned refused, packets;
	unsigned long last_refused;
	unsigned long fail_req;
	int fail_err;
	void (*write)(void *dst, const void *src, size_t n);
	void (*log)(void *ctx, uint64_t iova, uint64_t len);
	void *log_ctx;
};

static void plain_write(void *dst, const void *src, size_t n)
{
	memcpy(dst, src, n);
}

static void reset(struct fake_vdpa *f)
{
	f->status = 0;
	f->suspended = f->features_set = false;
	f->features = 0;
	for (unsigned i = 0; i < MAX_VQS; i++)
		f->vq[i] = (struct vq){ .kick = -1, .call = -1 };
	memcpy(f->mac, f->cfg.mac, 6);
	f->mq_pairs = 1;
	f->offloads = 0;
	memset(f->rx, 0, sizeof(f->rx));
	f->rx[VIRTIO_NET_CTRL_RX_PROMISC] = 1; /* the spec's default */
	f->n_uni = f->n_multi = 0;
}

struct fake_vdpa *fake_vdpa_new(const struct fake_vdpa_cfg *cfg, void *mem,
				uint64_t mem_len)
{
	struct fake_vdpa *f = calloc(1, sizeof(*f));
	if (!f || cfg->max_vq_pairs * 2u + 1 > MAX_VQS) {
		free(f);
		return NULL;
	}
	pthread_mutex_init(&f->lock, NULL);
	f->cfg = *cfg;
	f->mem = mem;
	f->mem_len = mem_len;
	f->nvqs = cfg->max_vq_pairs * 2u + 1;
	f->write = plain_write;
	reset(f);
	return f;
}

void fake_vdpa_free(struct fake_vdpa *f)
{
	if (!f)
		return;
	pthread_mutex_destroy(&f->lock);
	free(f);
}

int fake_vdpa_fd(const struct fake_vdpa *f)
{
	(void)f;
	return FAKE_FD;
}

void fake_vdpa_set_writer(struct fake_vdpa *f,
			  void (*write)(void *dst, const void *src, size_t n))
{
	f->write = write ? write : plain_write;
}

void fake_vdpa_set_log(struct fake_vdpa *f,
		       void (*log)(void *ctx, uint64_t iova, uint64_t len),
		       void *ctx)
{
	pthread_mutex_lock(&f->lock);
	f->log = log;
	f->log_ctx = ctx;
	pthread_mutex_unlock(&f->lock);
}

void fake_vdpa_fail(struct fake_vdpa *f, unsigned long req, int err)
{
	pthread_mutex_lock(&f->lock);
	f->fail_req = req;
	f->fail_err = err;
	pthread_mutex_unlock(&f->lock);
}

static int refuse(struct fake_vdpa *f, unsigned long req, int err)
{
	f->refused++;
	f->last_refused = req;
	errno = err;
	return -1;
}

static struct vq *vq_of(struct fake_vdpa *f, unsigned idx)
{
	return idx < f->nvqs ? &f->vq[idx] : NULL;
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static void config(struct fake_vdpa *f, uint8_t *c)
{
	memcpy(c, f->mac, 6);
	c[6] = VIRTIO_NET_S_LINK_UP;
	c[7] = 0;
	c[8] = (uint8_t)f->cfg.max_vq_pairs;
	c[9] = (uint8_t)(f->cfg.max_vq_pairs >> 8);
	c[10] = (uint8_t)f->cfg.mtu;
	c[11] = (uint8_t)(f->cfg.mtu >> 8);
}

/* The rules of the kernel's vhost_vdpa.c and of the parent drivers
 * (mlx5_vdpa refuses ring changes once the device runs). */
static int do_ioctl(struct fake_vdpa *f, unsigned long req, void *arg)
{
	bool running = f->status & RUNNING;
	struct vhost_vring_state *vs = arg;
	struct vq *q;
	switch (req) {
	case VHOST_VDPA_GET_DEVICE_ID:
		*(uint32_t *)arg = VIRTIO_ID_NET;
		return 0;
	case VHOST_GET_FEATURES:
		*(uint64_t *)arg = f->cfg.features;
		return 0;
	case VHOST_SET_FEATURES: {
		uint64_t v = *(uint64_t *)arg;
		if (f->status & VIRTIO_CONFIG_S_FEATURES_OK)
			return refuse(f, req, EBUSY);
		if (v & ~f->cfg.features)
			return refuse(f, req, EINVAL);
		f->features = v;
		f->features_set = true;
		return 0;
	}
	case VHOST_GET_BACKEND_FEATURES:
		*(uint64_t *)arg = f->cfg.backend_features;
		return 0;
	case VHOST_SET_BACKEND_FEATURES: {
		uint64_t v = *(uint64_t *)arg;
		if (v & ~f->cfg.backend_features)
			return refuse(f, req, EOPNOTSUPP);
		f->backend_acked = v;
		return 0;
	}
	case VHOST_VDPA_GET_VQS_COUNT:
		*(uint32_t *)arg = f->nvqs;
		return 0;
	case VHOST_VDPA_GET_VRING_NUM:
		*(uint16_t *)arg = f->cfg.max_ring;
		return 0;
	case VHOST_VDPA_GET_STATUS:
		*(uint8_t *)arg = f->status;
		return 0;
	case VHOST_VDPA_SET_STATUS: {
		uint8_t s = *(uint8_t *)arg;
		if (!s) {
			reset(f);
			return 0;
		}
		/* vhost_vdpa_set_status: no bit cleared without a reset. */
		if (f->status & ~s)
			return refuse(f, req, EINVAL);
		if ((s & VIRTIO_CONFIG_S_FEATURES_OK) && !f->features_set)
			return refuse(f, req, EINVAL);
		if ((s & RUNNING) && !(s & VIRTIO_CONFIG_S_FEATURES_OK))
			return refuse(f, req, EINVAL);
		f->status = s;
		return 0;
	}
	case VHOST_VDPA_GET_CONFIG: {
		struct vhost_vdpa_config *c = arg;
		uint8_t buf[CFG_LEN];
		if (c->off > CFG_LEN || c->len > CFG_LEN - c->off)
			return refuse(f, req, EINVAL);
		config(f, buf);
		memcpy(c->buf, buf + c->off, c->len);
		return 0;
	}
	case VHOST_VDPA_SET_CONFIG: /* read-only for a modern driver */
		return refuse(f, req, EPERM);
	case VHOST_SET_VRING_NUM:
	case VHOST_SET_VRING_BASE:
		if (!(q = vq_of(f, vs->index)))
			return refuse(f, req, ENOBUFS);
		if (running)
			return refuse(f, req, EBUSY);
		if (req == VHOST_SET_VRING_NUM) {
			if (!vs->num || vs->num > f->cfg.max_ring ||
			    (vs->num & (vs->num - 1)))
				return refuse(f, req, EINVAL);
			q->num = (uint16_t)vs->num;
		} else {
			if (vs->num > 0xffff)
				return refuse(f, req, EINVAL);
			q->last_avail = q->used_idx = (uint16_t)vs->num;
		}
		return 0;
	case VHOST_GET_VRING_BASE:
		if (!(q = vq_of(f, vs->index)))
			return refuse(f, req, ENOBUFS);
		vs->num = q->last_avail;
		return 0;
	case VHOST_SET_VRING_ADDR: {
		struct vhost_vring_addr *a = arg;
		if (!(q = vq_of(f, a->index)))
			return refuse(f, req, ENOBUFS);
		if (running)
			return refuse(f, req, EBUSY);
		q->desc = a->desc_user_addr;
		q->avail = a->avail_user_addr;
		q->used = a->used_user_addr;
		return 0;
	}
	case VHOST_SET_VRING_KICK:
	case VHOST_SET_VRING_CALL: {
		struct vhost_vring_file *fl = arg;
		if (!(q = vq_of(f, fl->index)))
			return refuse(f, req, ENOBUFS);
		*(req == VHOST_SET_VRING_KICK ? &q->kick : &q->call) = fl->fd;
		return 0;
	}
	case VHOST_VDPA_SET_VRING_ENABLE:
		if (!(q = vq_of(f, vs->index)))
			return refuse(f, req, ENOBUFS);
		if (vs->num && !q->num)
			return refuse(f, req, EINVAL); /* not set up */
		q->enabled = vs->num != 0;
		return 0;
	case VHOST_VDPA_SUSPEND:
		if (!(f->backend_acked & BIT(VHOST_BACKEND_F_SUSPEND)))
			return refuse(f, req, EOPNOTSUPP);
		if (running)
			f->suspended = true;
		return 0;
	case VHOST_VDPA_RESUME:
		if (!(f->backend_acked & BIT(VHOST_BACKEND_F_RESUME)))
			return refuse(f, req, EOPNOTSUPP);
		if (running)
			f->suspended = false;
		return 0;
	}
	errno = ENOTTY;
	return -1;
}

static int fake_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
	struct fake_vdpa *f = ctx;
	if (fd != FAKE_FD) {
		errno = EBADF;
		return -1;
	}
	pthread_mutex_lock(&f->lock);
	int ret;
	if (f->fail_req && f->fail_req == req) {
		f->fail_req = 0;
		errno = f->fail_err;
		ret = -1;
	} else {
		ret = do_ioctl(f, req, arg);
	}
	int e = errno;
	pthread_mutex_unlock(&f->lock);
	errno = e;
	return ret;
}

/* The device's own reading of a command (virtio 1.2, 5.1.6.5): NAK
 * (-EIO) for what it does not take. */
static int do_ctrl(struct fake_vdpa *f, uint8_t cls, uint8_t cmd,
		   const uint8_t *d, size_t len)
{
	unsigned cvq = f->features & BIT(VIRTIO_NET_F_MQ)
			       ? 2u * f->cfg.max_vq_pairs
			       : 2u;
	if (!(f->status & RUNNING) || f->suspended ||
	    !(f->features & BIT(VIRTIO_NET_F_CTRL_VQ)) || !f->vq[cvq].enabled)
		return -EIO;
	if (cls == VIRTIO_NET_CTRL_RX && cmd < 6 && len == 1 && d[0] <= 1 &&
	    (f->features & BIT(VIRTIO_NET_F_CTRL_RX))) {
		f->rx[cmd] = d[0];
		return 0;
	}
	if (cls == VIRTIO_NET_CTRL_MAC && cmd == VIRTIO_NET_CTRL_MAC_ADDR_SET &&
	    len == 6 && (f->features & BIT(VIRTIO_NET_F_CTRL_MAC_ADDR))) {
		memcpy(f->mac, d, 6);
		return 0;
	}
	if (cls == VIRTIO_NET_CTRL_MAC &&
	    cmd == VIRTIO_NET_CTRL_MAC_TABLE_SET && len >= 8) {
		uint32_t n = (uint32_t)le16(d) | (uint32_t)le16(d + 2) << 16;
		if (n > 64 || len < 8 + 6ull * n)
			return -EIO;
		const uint8_t *m = d + 4 + 6 * n;
		uint32_t k = (uint32_t)le16(m) | (uint32_t)le16(m + 2) << 16;
		if (k > 64 || len != 8 + 6ull * (n + k))
			return -EIO;
		f->n_uni = n;
		memcpy(f->uni, d + 4, 6ull * n);
		f->n_multi = k;
		memcpy(f->multi, m + 4, 6ull * k);
		return 0;
	}
	if (cls == VIRTIO_NET_CTRL_MQ &&
	    cmd == VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET && len == 2 &&
	    (f->features & BIT(VIRTIO_NET_F_MQ)) && le16(d) >= 1 &&
	    le16(d) <= f->cfg.max_vq_pairs) {
		f->mq_pairs = le16(d);
		return 0;
	}
	if (cls == VIRTIO_NET_CTRL_GUEST_OFFLOADS &&
	    cmd == VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET && len == 8 &&
	    (f->features & BIT(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS))) {
		memcpy(&f->offloads, d, 8);
		return 0;
	}
	return -EIO;
}

static int fake_ctrl(void *ctx, int fd, uint8_t cls, uint8_t cmd,
		     const void *data, size_t len)
{
	struct fake_vdpa *f = ctx;
	if (fd != FAKE_FD)
		return -EBADF;
	pthread_mutex_lock(&f->lock);
	int ret = do_ctrl(f, cls, cmd, data, len);
	pthread_mutex_unlock(&f->lock);
	return ret;
}

mfd_vdpa_sys fake_vdpa_sys(struct fake_vdpa *f)
{
	return (mfd_vdpa_sys){ f, fake_ioctl, fake_ctrl };
}

static uint8_t *at(struct fake_vdpa *f, uint64_t iova, uint64_t len)
{
	if (iova > f->mem_len || len > f->mem_len - iova)
		return NULL;
	return f->mem + iova;
}

/* Stores len bytes at iova, and reports the write. */
static void put(struct fake_vdpa *f, uint64_t iova, const void *src, size_t len)
{
	f->write(f->mem + iova, src, len);
	if (f->log)
		f->log(f->log_ctx, iova, len);
}

static int do_rx(struct fake_vdpa *f, unsigned qi, const void *pkt, size_t len)
{
	struct vq *q = vq_of(f, qi);
	if (!q || qi % 2 || qi >= 2u * f->cfg.max_vq_pairs)
		return -EINVAL;
	if (!(f->status & RUNNING) || f->suspended || !q->enabled)
		return -EAGAIN;
	const uint8_t *avail = at(f, q->avail, 4 + 2ull * q->num);
	uint8_t *used = at(f, q->used, 4 + 8ull * q->num);
	if (!avail || !used || !at(f, q->desc, 16ull * q->num))
		return -EINVAL;
	uint16_t aidx;
	__atomic_load((const uint16_t *)(const void *)(avail + 2), &aidx,
		      __ATOMIC_ACQUIRE);
	if (aidx == q->last_avail)
		return -ENOBUFS;
	uint16_t head = le16(avail + 4 + 2 * (q->last_avail % q->num));
	if (head >= q->num)
		return -EINVAL;
	const uint8_t *desc = f->mem + q->desc + 16ull * head;
	uint64_t addr;
	uint32_t blen;
	memcpy(&addr, desc, 8);
	memcpy(&blen, desc + 8, 4);
	if (!(le16(desc + 12) & VRING_DESC_F_WRITE) || blen < HDR_LEN ||
	    !at(f, addr, blen))
		return -EINVAL;
	uint8_t hdr[HDR_LEN] = { 0 };
	hdr[10] = 1; /* num_buffers */
	size_t n = len < blen - HDR_LEN ? len : blen - HDR_LEN;
	put(f, addr, hdr, HDR_LEN);
	put(f, addr + HDR_LEN, pkt, n);
	uint32_t elem[2] = { head, (uint32_t)(HDR_LEN + n) };
	put(f, q->used + 4 + 8ull * (q->used_idx % q->num), elem, 8);
	q->used_idx++;
	q->last_avail++;
	uint16_t ui = q->used_idx;
	__atomic_store((uint16_t *)(void *)(used + 2), &ui, __ATOMIC_RELEASE);
	if (f->log)
		f->log(f->log_ctx, q->used + 2, 2);
	f->packets++;
	return 0;
}

int fake_vdpa_rx(struct fake_vdpa *f, unsigned q, const void *pkt, size_t len)
{
	pthread_mutex_lock(&f->lock);
	int ret = do_rx(f, q, pkt, len);
	pthread_mutex_unlock(&f->lock);
	return ret;
}

void fake_vdpa_view(struct fake_vdpa *f, struct fake_vdpa_view *v)
{
	pthread_mutex_lock(&f->lock);
	memset(v, 0, sizeof(*v));
	v->status = f->status;
	v->suspended = f->suspended;
	v->features = f->features;
	v->backend_acked = f->backend_acked;
	memcpy(v->mac, f->mac, 6);
	v->mq_pairs = f->mq_pairs;
	v->offloads = f->offloads;
	memcpy(v->rx, f->rx, 6);
	v->n_uni = f->n_uni;
	v->n_multi = f->n_multi;
	memcpy(v->uni, f->uni, sizeof(v->uni));
	memcpy(v->multi, f->multi, sizeof(v->multi));
	for (unsigned i = 0; i < MAX_VQS; i++) {
		v->last_avail[i] = f->vq[i].last_avail;
		v->enabled[i] = f->vq[i].enabled;
	}
	v->refused = f->refused;
	v->last_refused = f->last_refused;
	v->packets = f->packets;
	pthread_mutex_unlock(&f->lock);
}

void fake_vdpa_guest_ring_init(void *mem, struct fake_vdpa_ring *r)
{
	uint8_t *m = mem;
	for (uint16_t i = 0; i < r->num; i++) {
		uint8_t *d = m + r->desc + 16ull * i;
		uint64_t addr = r->bufs + (uint64_t)i * r->buf_len;
		uint16_t flags = VRING_DESC_F_WRITE, next = 0;
		memcpy(d, &addr, 8);
		memcpy(d + 8, &r->buf_len, 4);
		memcpy(d + 12, &flags, 2);
		memcpy(d + 14, &next, 2);
		memcpy(m + r->avail + 4 + 2 * i, &i, 2);
	}
	memset(m + r->avail, 0, 2);
	memset(m + r->used, 0, 4);
	r->avail_idx = r->num;
	r->used_seen = 0;
	memcpy(m + r->avail + 2, &r->avail_idx, 2);
}

unsigned fake_vdpa_guest_recycle(void *mem, struct fake_vdpa_ring *r)
{
	uint8_t *m = mem;
	uint16_t uidx;
	unsigned n = 0;
	__atomic_load((uint16_t *)(void *)(m + r->used + 2), &uidx,
		      __ATOMIC_ACQUIRE);
	for (; r->used_seen != uidx; r->used_seen++, n++) {
		uint32_t id;
		memcpy(&id, m + r->used + 4 + 8 * (r->used_seen % r->num), 4);
		uint16_t head = (uint16_t)id;
		memcpy(m + r->avail + 4 + 2 * (r->avail_idx % r->num), &head,
		       2);
		r->avail_idx++;
	}
	__atomic_store((uint16_t *)(void *)(m + r->avail + 2), &r->avail_idx,
		       __ATOMIC_RELEASE);
	return n;
}

int fake_vdpa_guest_refill(struct fake_vdpa *f, struct fake_vdpa_ring *r,
			   void (*dirty)(void *ctx, uint64_t iova,
					 uint64_t len),
			   void *ctx)
{
	int n = -EAGAIN;
	pthread_mutex_lock(&f->lock);
	if ((f->status & RUNNING) && !f->suspended) {
		n = (int)fake_vdpa_guest_recycle(f->mem, r);
		if (n && dirty)
			dirty(ctx, r->avail, 4 + 2ull * r->num);
	}
	pthread_mutex_unlock(&f->lock);
	return n;
}

static int ioc(struct fake_vdpa *f, unsigned long req, void *arg)
{
	return fake_ioctl(f, FAKE_FD, req, arg) < 0 ? -errno : 0;
}

int fake_vdpa_guest_boot(struct fake_vdpa *f, struct fake_vdpa_ring *r,
			 unsigned n, uint64_t features)
{
	uint8_t st = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
	int ret;
	if ((ret = ioc(f, VHOST_VDPA_SET_STATUS, &st)) ||
	    (ret = ioc(f, VHOST_SET_FEATURES, &features)))
		return ret;
	st |= VIRTIO_CONFIG_S_FEATURES_OK;
	if ((ret = ioc(f, VHOST_VDPA_SET_STATUS, &st)))
		return ret;
	for (unsigned i = 0; i < n; i++) {
		fake_vdpa_guest_ring_init(f->mem, &r[i]);
		struct vhost_vring_addr a = { .index = i,
					      .desc_user_addr = r[i].desc,
					      .avail_user_addr = r[i].avail,
					      .used_user_addr = r[i].used };
		struct vhost_vring_state num = { i, r[i].num }, base = { i, 0 },
					 on = { i, 1 };
		if ((ret = ioc(f, VHOST_SET_VRING_NUM, &num)) ||
		    (ret = ioc(f, VHOST_SET_VRING_ADDR, &a)) ||
		    (ret = ioc(f, VHOST_SET_VRING_BASE, &base)) ||
		    (ret = ioc(f, VHOST_VDPA_SET_VRING_ENABLE, &on)))
			return ret;
	}
	st |= VIRTIO_CONFIG_S_DRIVER_OK;
	return ioc(f, VHOST_VDPA_SET_STATUS, &st);
}

uint64_t fake_vdpa_backend_suspend_resume(void)
{
	return BIT(VHOST_BACKEND_F_SUSPEND) | BIT(VHOST_BACKEND_F_RESUME);
}

mfd_vdpa_vring fake_vdpa_vring_of(const struct fake_vdpa_ring *r)
{
	return (mfd_vdpa_vring){ .num = r->num,
				 .desc = r->desc,
				 .avail = r->avail,
				 .used = r->used,
				 .kick_fd = -1,
				 .call_fd = -1 };
}
