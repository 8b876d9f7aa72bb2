/* SPDX-License-Identifier: MIT */
/*
 * A fake vhost-vdpa virtio-net device for tests and the bench (there is no
 * vdpa_sim module on the machines this is built on). It answers the
 * vhost-vdpa ioctls the adapter uses through mfd_vdpa_sys, refusing them
 * in the wrong order as the kernel and the parent drivers do, keeps its
 * queues, config and control-queue state, and receives packets as a NIC
 * would: into the guest's rx buffers, then the used ring, in guest memory
 * given at creation (IOVA 0 is its first byte). Every write it makes is
 * reported to a log callback, as a hypervisor's shadow virtqueue (or the
 * device's own dirty log) would see it.
 *
 * Thread-safe: packets may arrive on one thread while the migration
 * drives the ioctls on another.
 */
#ifndef TESTS_FAKE_VDPA_H
#define TESTS_FAKE_VDPA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multifd/vdpa.h"

struct fake_vdpa_cfg {
	uint64_t features;	   /* offered (VHOST_GET_FEATURES) */
	uint64_t backend_features; /* offered: 1 << VHOST_BACKEND_F_* */
	uint8_t mac[6];
	uint16_t max_vq_pairs; /* queues: 2 * pairs + the control queue */
	uint16_t mtu;
	uint16_t max_ring; /* VHOST_VDPA_GET_VRING_NUM */
};

struct fake_vdpa;

struct fake_vdpa *fake_vdpa_new(const struct fake_vdpa_cfg *cfg, void *mem,
				uint64_t mem_len);
void fake_vdpa_free(struct fake_vdpa *f);
/* The fd number the fake answers to, and its system-call table. */
int fake_vdpa_fd(const struct fake_vdpa *f);
mfd_vdpa_sys fake_vdpa_sys(struct fake_vdpa *f);
/* How the device stores into guest memory (default memcpy; tests pass
 * tvm_guest_write), and where each write is reported. */
void fake_vdpa_set_writer(struct fake_vdpa *f,
			  void (*write)(void *dst, const void *src, size_t n));
void fake_vdpa_set_log(struct fake_vdpa *f,
		       void (*log)(void *ctx, uint64_t iova, uint64_t len),
		       void *ctx);
/* Fails the next ioctl req with err (0: no fault). */
void fake_vdpa_fail(struct fake_vdpa *f, unsigned long req, int err);

/*
 * A packet arrives for rx queue q (even index): written behind a
 * virtio_net_hdr into the next available buffer, then the used ring.
 * 0; -EAGAIN while the device does not run (no DRIVER_OK, suspended, the
 * queue disabled); -ENOBUFS without a posted buffer; -EINVAL for a bad
 * queue or ring.
 */
int fake_vdpa_rx(struct fake_vdpa *f, unsigned q, const void *pkt, size_t len);

/* What the device holds, for checks. */
struct fake_vdpa_view {
	uint8_t status;
	bool suspended;
	uint64_t features, backend_acked;
	uint8_t mac[6];
	uint16_t mq_pairs;
	uint64_t offloads;
	uint8_t rx[6];
	uint32_t n_uni, n_multi;
	uint8_t uni[64][6], multi[64][6];
	uint16_t last_avail[16];
	bool enabled[16];
	unsigned refused;	    /* ioctls refused for their order */
	unsigned long last_refused; /* the last one's request */
	unsigned packets;
};
void fake_vdpa_view(struct fake_vdpa *f, struct fake_vdpa_view *v);

/* The guest's side of one split ring: layout in guest memory (IOVAs), and
 * num receive buffers of buf_len bytes from bufs on. */
struct fake_vdpa_ring {
	uint64_t desc, avail, used, bufs;
	uint16_t num;
	uint32_t buf_len;
	uint16_t avail_idx, used_seen; /* the driver's own counters */
};
/* Writes the descriptors and posts every buffer (the driver's setup). */
void fake_vdpa_guest_ring_init(void *mem, struct fake_vdpa_ring *r);
/* Takes what the device returned and posts those buffers again; returns
 * how many. */
unsigned fake_vdpa_guest_recycle(void *mem, struct fake_vdpa_ring *r);
/* The same while the device runs, under its lock, the avail ring's
 * write reported to dirty (IOVA range): a guest's driver that stops when
 * the device does. The buffers posted again, or -EAGAIN once the device
 * is stopped or suspended. */
int fake_vdpa_guest_refill(struct fake_vdpa *f, struct fake_vdpa_ring *r,
			   void (*dirty)(void *ctx, uint64_t iova,
					 uint64_t len),
			   void *ctx);
/* The guest's driver starts the device, as a hypervisor relays it
 * (ACKNOWLEDGE, DRIVER, features, FEATURES_OK, rings 0..n-1 set up from
 * base 0 and enabled, DRIVER_OK), after fake_vdpa_guest_ring_init() of
 * each. 0 or the first refused ioctl's -errno. */
int fake_vdpa_guest_boot(struct fake_vdpa *f, struct fake_vdpa_ring *r,
			 unsigned n, uint64_t features);
/* VHOST_BACKEND_F_SUSPEND and _RESUME as feature bits. */
uint64_t fake_vdpa_backend_suspend_resume(void);
/* Ring i's addresses for mfd_vdpa_dev_set_vring(). */
mfd_vdpa_vring fake_vdpa_vring_of(const struct fake_vdpa_ring *r);

#endif /* TESTS_FAKE_VDPA_H */
