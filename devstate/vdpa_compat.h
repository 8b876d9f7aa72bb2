/* SPDX-License-Identifier: MIT */
/*
 * What older linux/vhost.h lacks of the vhost-vdpa uAPI the vDPA adapter
 * uses: suspend (the ioctl and VHOST_BACKEND_F_SUSPEND, already in the
 * Linux 6.1 headers of Debian 12) and resume (the ioctl and
 * VHOST_BACKEND_F_RESUME, Linux 6.3: missing there). Values are the
 * kernel's ABI; each is defined only where the system header has none. Whether
 * the running kernel and the parent driver offer them is read at run time
 * (VHOST_GET_BACKEND_FEATURES).
 */
#ifndef DEVSTATE_VDPA_COMPAT_H
#define DEVSTATE_VDPA_COMPAT_H

#include <linux/types.h>
#include <linux/vhost.h>
#include <linux/vhost_types.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>

#ifndef VHOST_BACKEND_F_SUSPEND
#define VHOST_BACKEND_F_SUSPEND 0x4
#endif
#ifndef VHOST_BACKEND_F_RESUME
#define VHOST_BACKEND_F_RESUME 0x5
#endif
#ifndef VHOST_VDPA_SUSPEND
#define VHOST_VDPA_SUSPEND _IO(VHOST_VIRTIO, 0x7D)
#endif
#ifndef VHOST_VDPA_RESUME
#define VHOST_VDPA_RESUME _IO(VHOST_VIRTIO, 0x7E)
#endif
#ifndef VIRTIO_ID_NET
#define VIRTIO_ID_NET 1
#endif

#endif /* DEVSTATE_VDPA_COMPAT_H */
