/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <linux/vhost.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "multifd/vdpa.h"
#include "tests/fake_vdpa.h"
#include "vdpa.h"

#define AREA   (4ULL << 20) /* guest memory per device */
#define NQ     3	    /* rx, tx, control */
#define PER_MS 8	    /* packets per device per ms */
#define BIT(n) (1ULL << (n))
#define FEATURES                                                               \
	(BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_NET_F_MAC) |                     \
	 BIT(VIRTIO_NET_F_STATUS) | BIT(VIRTIO_NET_F_MTU) |                    \
	 BIT(VIRTIO_NET_F_CTRL_VQ) | BIT(VIRTIO_NET_F_CTRL_RX) |               \
	 BIT(VIRTIO_NET_F_CTRL_MAC_ADDR))

struct side {
	struct fake_vdpa *f;
	mfd_vdpa_dev *dev;
	mfd_vdpa_sys sys;
	struct fake_vdpa_ring ring[NQ];
};

static struct {
	unsigned n, block;
	uint8_t *smem, *dmem;
	struct side *s, *d;
	mfd_source *src; /* for the guest's dirty pages, while it runs */
	pthread_t thread;
	bool running;
	int stop; /* atomic */
	uint64_t packets, drops;
	struct fake_vdpa_view *at_stop;
	bool started;
} V;

static void layout(struct fake_vdpa_ring *r)
{
	/* rx: 1024 buffers of 2 KiB from 1 MiB on; tx and control small. */
	static const uint16_t num[NQ] = { 1024, 256, 64 };
	static const uint64_t bufs[NQ] = { 1 << 20, 3 << 20, 0x380000 };
	for (unsigned i = 0; i < NQ; i++)
		r[i] = (struct fake_vdpa_ring){
			.desc = 0x10000 + 0x10000ull * i,
			.avail = 0x14000 + 0x10000ull * i,
			.used = 0x18000 + 0x10000ull * i,
			.bufs = bufs[i],
			.num = num[i],
			.buf_len = 2048
		};
}

static void log_write(void *ctx, uint64_t iova, uint64_t len)
{
	mfd_vdpa_dev_log_write(ctx, iova, len);
}

/* A guest write to device i's area (its avail ring). */
static void guest_dirty(void *ctx, uint64_t iova, uint64_t len)
{
	unsigned i = (unsigned)(uintptr_t)ctx;
	if (V.src)
		mfd_source_mark_dirty(V.src, V.block, i * AREA + iova, len);
}

static int side_new(struct side *sd, uint8_t *mem, unsigned i)
{
	struct fake_vdpa_cfg c = { .features = FEATURES,
				   .backend_features =
					   fake_vdpa_backend_suspend_resume(),
				   .max_vq_pairs = 1,
				   .mtu = 1500,
				   .max_ring = 1024,
				   .mac = { 0x52, 0x54, 0, 0, 0, (uint8_t)i } };
	uint64_t bf = c.backend_features;
	if (!(sd->f = fake_vdpa_new(&c, mem, AREA)))
		return -ENOMEM;
	sd->sys = fake_vdpa_sys(sd->f);
	if (sd->sys.ioctl(sd->sys.ctx, fake_vdpa_fd(sd->f),
			  VHOST_SET_BACKEND_FEATURES, &bf) < 0)
		return -errno;
	int err = mfd_vdpa_dev_new(&sd->dev, fake_vdpa_fd(sd->f), bf, &sd->sys);
	if (!err)
		err = mfd_vdpa_dev_add_region(sd->dev, 0, mem, AREA);
	layout(sd->ring);
	for (unsigned q = 0; !err && q < NQ; q++) {
		mfd_vdpa_vring vr = fake_vdpa_vring_of(&sd->ring[q]);
		err = mfd_vdpa_dev_set_vring(sd->dev, q, &vr);
	}
	return err;
}

/* The guest boots its driver and sets a MAC address and a filter. */
static int guest_setup(struct side *sd, unsigned i)
{
	uint8_t mac[6] = { 0x52, 0x54, 0, 0xbe, 0xef, (uint8_t)i }, off = 0;
	uint8_t table[4 + 6 + 4 + 6] = {
		1, 0, 0, 0, 0x52, 0x54, 0,    1, 1, 1,
		1, 0, 0, 0, 0x01, 0,	0x5e, 0, 0, 1
	};
	struct {
		uint8_t cls, cmd;
		const void *d;
		size_t len;
	} cmds[] = {
		{ VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, mac, 6 },
		{ VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &off, 1 },
		{ VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, table,
		  sizeof(table) },
	};
	int err = fake_vdpa_guest_boot(sd->f, sd->ring, NQ, FEATURES);
	if (!err)
		err = mfd_vdpa_dev_set_features(sd->dev, FEATURES);
	for (unsigned k = 0; !err && k < sizeof(cmds) / sizeof(cmds[0]); k++)
		if (!(err = sd->sys.ctrl(sd->sys.ctx, fake_vdpa_fd(sd->f),
					 cmds[k].cls, cmds[k].cmd, cmds[k].d,
					 cmds[k].len)))
			err = mfd_vdpa_dev_ctrl(sd->dev, cmds[k].cls,
						cmds[k].cmd, cmds[k].d,
						cmds[k].len);
	return err;
}

static void *traffic(void *arg)
{
	uint8_t pkt[1514];
	uint64_t k = 0;
	(void)arg;
	memset(pkt, 0xa5, sizeof(pkt));
	while (!__atomic_load_n(&V.stop, __ATOMIC_ACQUIRE)) {
		for (unsigned i = 0; i < V.n; i++) {
			struct side *sd = &V.s[i];
			for (unsigned p = 0; p < PER_MS; p++, k++) {
				memcpy(pkt, &k, sizeof(k));
				int r = fake_vdpa_rx(sd->f, 0, pkt,
						     64 + k % 1450);
				if (!r)
					__atomic_fetch_add(&V.packets, 1,
							   __ATOMIC_RELAXED);
				else if (r == -ENOBUFS)
					__atomic_fetch_add(&V.drops, 1,
							   __ATOMIC_RELAXED);
			}
			fake_vdpa_guest_refill(sd->f, &sd->ring[0], guest_dirty,
					       (void *)(uintptr_t)i);
		}
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

int bench_vdpa_attach(unsigned n, mfd_source *src, mfd_dest *dst,
		      unsigned block)
{
	int err;
	if (!n)
		return 0;
	V.n = n;
	V.block = block;
	V.s = calloc(n, sizeof(*V.s));
	V.d = calloc(n, sizeof(*V.d));
	V.at_stop = calloc(n, sizeof(*V.at_stop));
	V.smem = mmap(NULL, n * AREA, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	V.dmem = mmap(NULL, n * AREA, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!V.s || !V.d || !V.at_stop || V.smem == MAP_FAILED ||
	    V.dmem == MAP_FAILED) {
		V.smem = V.smem == MAP_FAILED ? NULL : V.smem;
		V.dmem = V.dmem == MAP_FAILED ? NULL : V.dmem;
		return -ENOMEM;
	}
	if ((err = mfd_source_add_block(src, "vdpa.ram", V.smem, n * AREA,
					4096)) ||
	    (err = mfd_dest_add_block(dst, "vdpa.ram", V.dmem, n * AREA, 4096)))
		return err;
	for (unsigned i = 0; i < n; i++) {
		char name[32];
		snprintf(name, sizeof(name), "vdpa%u", i);
		if ((err = side_new(&V.s[i], V.smem + i * AREA, i)) ||
		    (err = side_new(&V.d[i], V.dmem + i * AREA, i)))
			return err;
		fake_vdpa_set_log(V.s[i].f, log_write, V.s[i].dev);
		if ((err = guest_setup(&V.s[i], i)) ||
		    (err = mfd_source_add_device(src, name,
						 mfd_vdpa_dev_ops(V.s[i].dev),
						 V.s[i].dev)) ||
		    (err = mfd_dest_add_device(dst, name,
					       mfd_vdpa_dev_ops(V.d[i].dev),
					       V.d[i].dev)))
			return err;
	}
	V.src = src;
	if (pthread_create(&V.thread, NULL, traffic, NULL))
		return -EAGAIN;
	V.running = true;
	return 0;
}

void bench_vdpa_finish(bool ok)
{
	if (V.running) {
		__atomic_store_n(&V.stop, 1, __ATOMIC_RELEASE);
		pthread_join(V.thread, NULL);
		V.running = false;
	}
	V.src = NULL;
	for (unsigned i = 0; i < V.n; i++)
		fake_vdpa_view(V.s[i].f, &V.at_stop[i]);
	if (!ok)
		return;
	V.started = true;
	for (unsigned i = 0; i < V.n; i++) {
		const mfd_device_ops *ops = mfd_vdpa_dev_ops(V.d[i].dev);
		if (ops->set_state(V.d[i].dev, MFD_DEV_RUNNING))
			V.started = false;
	}
}

bool bench_vdpa_equal(void)
{
	if (!V.started || memcmp(V.smem, V.dmem, V.n * AREA))
		return false;
	for (unsigned i = 0; i < V.n; i++) {
		struct fake_vdpa_view d, *s = &V.at_stop[i];
		fake_vdpa_view(V.d[i].f, &d);
		if (!(d.status & VIRTIO_CONFIG_S_DRIVER_OK) ||
		    d.features != FEATURES || memcmp(d.mac, s->mac, 6) ||
		    d.n_uni != s->n_uni || d.n_multi != s->n_multi ||
		    memcmp(d.uni, s->uni, sizeof(d.uni)) ||
		    memcmp(d.multi, s->multi, sizeof(d.multi)) ||
		    memcmp(d.rx, s->rx, sizeof(d.rx)) ||
		    memcmp(d.last_avail, s->last_avail, NQ * 2))
			return false;
	}
	return true;
}

void bench_vdpa_report(struct report *r)
{
	uint64_t bytes = 0, load = 0, start = 0, dirty = 0;
	if (!V.n)
		return;
	for (unsigned i = 0; i < V.n; i++) {
		mfd_vdpa_stats s, d;
		mfd_vdpa_dev_get_stats(V.s[i].dev, &s);
		mfd_vdpa_dev_get_stats(V.d[i].dev, &d);
		bytes += d.state_bytes;
		load = d.load_ns > load ? d.load_ns : load;
		start = d.start_ns > start ? d.start_ns : start;
		dirty += s.dirty_pages;
	}
	report_u64(r, "vdpa_devices", V.n);
	report_u64(r, "vdpa_state_bytes", bytes / V.n);
	report_f64(r, "vdpa_load_us_max", (double)load / 1e3, 1);
	report_f64(r, "vdpa_start_us_max", (double)start / 1e3, 1);
	report_u64(r, "vdpa_packets", V.packets);
	report_u64(r, "vdpa_drops", V.drops);
	report_u64(r, "vdpa_dirty_pages", dirty);
	report_bool(r, "vdpa_equal", bench_vdpa_equal());
}

void bench_vdpa_free(void)
{
	bench_vdpa_finish(false);
	for (unsigned i = 0; i < V.n; i++) {
		mfd_vdpa_dev_free(V.s[i].dev);
		mfd_vdpa_dev_free(V.d[i].dev);
		fake_vdpa_free(V.s[i].f);
		fake_vdpa_free(V.d[i].f);
	}
	if (V.smem)
		munmap(V.smem, V.n * AREA);
	if (V.dmem)
		munmap(V.dmem, V.n * AREA);
	free(V.s);
	free(V.d);
	free(V.at_stop);
	memset(&V, 0, sizeof(V));
}
