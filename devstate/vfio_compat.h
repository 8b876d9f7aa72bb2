/* SPDX-License-Identifier: MIT */
/*
 * What older linux/vfio.h (Debian 12: Linux 6.1 headers) lacks of the VFIO
 * migration v2 uAPI: the PRE_COPY states and MIG_DATA_SIZE (Linux 6.2). Values
 * are the kernel's; each is defined only where the system header has none.
 */
#ifndef DEVSTATE_VFIO_COMPAT_H
#define DEVSTATE_VFIO_COMPAT_H

#include <linux/types.h>
#include <linux/vfio.h>

#ifndef VFIO_MIGRATION_PRE_COPY
#define VFIO_MIGRATION_PRE_COPY	       (1 << 2)
#define VFIO_DEVICE_STATE_PRE_COPY     6
#define VFIO_DEVICE_STATE_PRE_COPY_P2P 7
#endif

#ifndef VFIO_MIG_GET_PRECOPY_INFO
struct vfio_precopy_info {
	__u32 argsz;
	__u32 flags;
	__aligned_u64 initial_bytes;
	__aligned_u64 dirty_bytes;
};
#define VFIO_MIG_GET_PRECOPY_INFO _IO(VFIO_TYPE, VFIO_BASE + 21)
#endif

/* Linux 6.2 as well: the stop-copy size estimate. */
#ifndef VFIO_DEVICE_FEATURE_MIG_DATA_SIZE
struct vfio_device_feature_mig_data_size {
	__aligned_u64 stop_copy_length;
};
#define VFIO_DEVICE_FEATURE_MIG_DATA_SIZE 9
#endif

#endif /* DEVSTATE_VFIO_COMPAT_H */
