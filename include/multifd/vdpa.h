/* SPDX-License-Identifier: MIT */
/*
 * Adapter from a vhost-vdpa virtio-net device (/dev/vhost-vdpa-N) to
 * mfd_device_ops (docs/vdpa.md). A vDPA device's state is defined by the
 * virtio specification, not by its vendor, so the adapter reads it through
 * the vhost-vdpa ioctls and sends it in a documented format
 * (docs/protocol.md, "vDPA device state"): the negotiated features, each
 * virtqueue's indices, the device config and the control-queue state.
 *
 * The three roles:
 *  - data plane: save() hands out the state captured when the device
 *    stopped; load() collects the bytes, parsed and checked as a whole
 *    when the device leaves RESUMING;
 *  - control plane: RUNNING -> STOP suspends the device (VHOST_VDPA_SUSPEND
 *    where the backend offers VHOST_BACKEND_F_SUSPEND, Linux 6.1; else a
 *    reset, as QEMU did before suspend, after which each ring resumes at
 *    its used index) and reads its state; STOP -> RUNNING resumes it
 * (VHOST_VDPA_RESUME with VHOST_BACKEND_F_RESUME, Linux 6.3; else a full
 * restart from the state read). On the destination, RESUMING -> STOP programs
 * features and rings; STOP -> RUNNING (the hypervisor's call, once the
 * migration has loaded) sets DRIVER_OK, replays the control commands, enables
 * the data queues. DRIVER_OK is never set before the state is loaded.
 *  - error rollback: a failed migration moves the source device back to
 *    RUNNING (resume); reset() restarts it from its last state.
 *
 * What the hypervisor provides (the adapter cannot read these from the
 * kernel): the guest memory as the device sees it (add_region), each
 * ring's addresses (set_vring), the features the guest negotiated
 * (set_features), every control command the device acknowledged (ctrl:
 * from its shadow control virtqueue) and, while the device runs, every
 * range the device wrote (log_write: from a shadow virtqueue or the
 * device's own dirty log). The adapter reports the logged ranges and
 * every used ring through dma_dirty at each dirty sync.
 *
 * Threading: log_write() may be called from any thread at any time; the
 * other calls follow the device API's rule (one at a time).
 */
#ifndef MULTIFD_VDPA_H
#define MULTIFD_VDPA_H

#include <stddef.h>
#include <stdint.h>

#include "multifd/device.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mfd_vdpa_sys {
	void *ctx;
	/* Return -1 with errno set on failure, as ioctl(2) does. */
	int (*ioctl)(void *ctx, int fd, unsigned long req, void *arg);
	/*
	 * Sends one command on the device's control virtqueue (through the
	 * hypervisor's shadow control queue) and waits for its ack: 0 for
	 * VIRTIO_NET_OK, else a negative errno. Needed on the destination
	 * when the state holds control commands (NULL: such a state is
	 * refused with -EOPNOTSUPP).
	 */
	int (*ctrl)(void *ctx, int fd, uint8_t cls, uint8_t cmd,
		    const void *data, size_t len);
} mfd_vdpa_sys;

/* One virtqueue as the hypervisor set it up (IOVAs as the device sees
 * them; fds < 0: not set). */
typedef struct mfd_vdpa_vring {
	uint16_t num;
	uint64_t desc, avail, used;
	int kick_fd, call_fd;
} mfd_vdpa_vring;

typedef struct mfd_vdpa_dev mfd_vdpa_dev;

/*
 * Wraps fd, a vhost-vdpa device fd the hypervisor owns (it stays the
 * caller's). backend_features: what the hypervisor set with
 * VHOST_SET_BACKEND_FEATURES; suspend and resume are used only when both
 * the device offers them and they are set. sys NULL: the real ioctl and
 * no control queue. -EOPNOTSUPP (and a message) when the device is not
 * virtio-net, else 0 or the ioctl's error.
 */
MFD_API int mfd_vdpa_dev_new(mfd_vdpa_dev **out, int fd,
			     uint64_t backend_features,
			     const mfd_vdpa_sys *sys);
MFD_API void mfd_vdpa_dev_free(mfd_vdpa_dev *dev);
/* The ops to register (opaque = dev). */
MFD_API const mfd_device_ops *mfd_vdpa_dev_ops(const mfd_vdpa_dev *dev);

/* Guest memory [iova, iova+len) at host (up to 16 regions, page aligned,
 * not overlapping), before the migration. -EINVAL, -ENOSPC, -ENOMEM. */
MFD_API int mfd_vdpa_dev_add_region(mfd_vdpa_dev *dev, uint64_t iova,
				    void *host, uint64_t len);
/* Ring idx as set up (VHOST_SET_VRING_NUM/ADDR, kick, call). -EINVAL for
 * idx beyond the device's queues or a ring size it does not take. */
MFD_API int mfd_vdpa_dev_set_vring(mfd_vdpa_dev *dev, unsigned idx,
				   const mfd_vdpa_vring *vr);
/* The features the guest's driver negotiated (VHOST_SET_FEATURES).
 * -EINVAL when the device does not offer them all. */
MFD_API int mfd_vdpa_dev_set_features(mfd_vdpa_dev *dev, uint64_t features);
/* Source: a control command the device acknowledged. -EINVAL (and a
 * message) for one the state format does not carry. */
MFD_API int mfd_vdpa_dev_ctrl(mfd_vdpa_dev *dev, uint8_t cls, uint8_t cmd,
			      const void *data, size_t len);
/* Source, any thread: the device wrote [iova, iova+len). Ranges outside
 * the regions are counted (stats) and ignored. */
MFD_API void mfd_vdpa_dev_log_write(mfd_vdpa_dev *dev, uint64_t iova,
				    uint64_t len);

typedef struct mfd_vdpa_stats {
	uint64_t state_bytes;	  /* of the last state saved or loaded */
	uint64_t load_ns;	  /* destination: parse + program, last load */
	uint64_t start_ns;	  /* STOP -> RUNNING, last time */
	uint64_t dirty_pages;	  /* reported through dma_dirty */
	uint64_t unmapped_writes; /* log_write outside every region */
	unsigned suspends, resumes, restarts;
} mfd_vdpa_stats;
MFD_API void mfd_vdpa_dev_get_stats(const mfd_vdpa_dev *dev,
				    mfd_vdpa_stats *st);

/*
 * Opens a vhost-vdpa device node (e.g. /dev/vhost-vdpa-0) read-write.
 * -ENODEV with a message naming the cause when it does not exist (no
 * vhost_vdpa module, or no vDPA device created with `vdpa dev add`),
 * else 0 or -errno of open().
 */
MFD_API int mfd_vdpa_open(const char *path, int *fd);

#ifdef __cplusplus
}
#endif

#endif /* MULTIFD_VDPA_H */
