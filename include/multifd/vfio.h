/* SPDX-License-Identifier: MIT */
/*
 * Adapter from a real VFIO device (Linux VFIO migration v2) to
 * mfd_device_ops: the hypervisor opens and sets up the device as usual
 * (group or iommufd cdev, DMA mappings) and hands the device fd here.
 *
 *  set_state  VFIO_DEVICE_FEATURE SET | MIG_DEVICE_STATE; keeps the data fd
 *             that an arc into PRE_COPY, STOP_COPY or RESUMING returns, and
 *             closes it when the arc ends the data session
 *  get_state  VFIO_DEVICE_FEATURE GET | MIG_DEVICE_STATE
 *  reset      VFIO_DEVICE_RESET
 *  save       read() on the data fd until the chunk is full (ENOMSG in
 *             PRE_COPY reads as the end for now)
 *  load       write() on the data fd, all of it
 *  get_precopy_info  VFIO_MIG_GET_PRECOPY_INFO on the data fd
 *  get_stop_copy_size  VFIO_DEVICE_FEATURE GET | MIG_DATA_SIZE (Linux 6.2;
 *             an older kernel's error makes the device count as 0 bytes)
 *
 * Capabilities come from VFIO_DEVICE_FEATURE GET | MIGRATION. DMA dirty
 * logging is not wired here (its report is in IOVA space, which only the
 * hypervisor can translate): report such pages with mfd_source_mark_dirty()
 * or the sync_dirty hook.
 *
 * The system calls go through a table a test can replace (sys = NULL: the
 * real ones). The device fd stays the caller's; the data fd is the
 * adapter's.
 */
#ifndef MULTIFD_VFIO_H
#define MULTIFD_VFIO_H

#include <stddef.h>
#include <sys/types.h>

#include "multifd/device.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mfd_vfio_sys {
	void *ctx;
	/* Return -1 with errno set on failure, as the system calls do. */
	int (*ioctl)(void *ctx, int fd, unsigned long req, void *arg);
	ssize_t (*read)(void *ctx, int fd, void *buf, size_t len);
	ssize_t (*write)(void *ctx, int fd, const void *buf, size_t len);
	int (*close)(void *ctx, int fd);
} mfd_vfio_sys;

typedef struct mfd_vfio_dev mfd_vfio_dev;

/*
 * Wraps device_fd. Fails with -EOPNOTSUPP (and a message) when the device
 * has no migration v2 support, or the ioctl's error.
 */
MFD_API int mfd_vfio_dev_new(mfd_vfio_dev **out, int device_fd,
			     const mfd_vfio_sys *sys);
MFD_API void mfd_vfio_dev_free(mfd_vfio_dev *dev);
/* The ops to register (opaque = dev). */
MFD_API const mfd_device_ops *mfd_vfio_dev_ops(const mfd_vfio_dev *dev);

/*
 * Opens a VFIO device node (e.g. /dev/vfio/devices/vfio0) read-write.
 * -ENODEV with a message naming the cause when /dev/vfio does not exist
 * (no VFIO driver loaded on this host), else 0 or -errno of open().
 */
MFD_API int mfd_vfio_open(const char *path, int *fd);

#ifdef __cplusplus
}
#endif

#endif /* MULTIFD_VFIO_H */
