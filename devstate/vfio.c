/* SPDX-License-Identifier: MIT */
/* Adapter from a VFIO migration v2 device fd to mfd_device_ops. */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devstate/vfio_compat.h"
#include "multifd/multifd.h"
#include "multifd/common/log.h"
#include "multifd/vfio.h"

/* Our state numbers are VFIO's; make the compiler check it. */
_Static_assert((int)MFD_DEV_STOP == (int)VFIO_DEVICE_STATE_STOP,
	       "state numbers");
_Static_assert((int)MFD_DEV_RUNNING == (int)VFIO_DEVICE_STATE_RUNNING,
	       "state numbers");
_Static_assert((int)MFD_DEV_STOP_COPY == (int)VFIO_DEVICE_STATE_STOP_COPY,
	       "numbers");
_Static_assert((int)MFD_DEV_RESUMING == (int)VFIO_DEVICE_STATE_RESUMING,
	       "numbers");
_Static_assert((int)MFD_DEV_RUNNING_P2P == (int)VFIO_DEVICE_STATE_RUNNING_P2P,
	       "num");
_Static_assert((int)MFD_DEV_PRE_COPY == (int)VFIO_DEVICE_STATE_PRE_COPY,
	       "numbers");
_Static_assert((int)MFD_DEV_PRE_COPY_P2P == (int)VFIO_DEVICE_STATE_PRE_COPY_P2P,
	       "n");
_Static_assert(MFD_DEV_CAP_STOP_COPY == VFIO_MIGRATION_STOP_COPY, "caps");
_Static_assert(MFD_DEV_CAP_P2P == VFIO_MIGRATION_P2P, "caps");
_Static_assert(MFD_DEV_CAP_PRE_COPY == VFIO_MIGRATION_PRE_COPY, "caps");

struct mfd_vfio_dev {
	int fd;
	int data_fd; /* -1 outside a data session */
	int state;
	int save_err; /* a read error to report on the next save() */
	mfd_vfio_sys sys;
	mfd_device_ops ops;
};

static int sys_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
	return ioctl(fd, req, arg);
}
static ssize_t sys_read(void *ctx, int fd, void *buf, size_t len)
{
	return read(fd, buf, len);
}
static ssize_t sys_write(void *ctx, int fd, const void *buf, size_t len)
{
	return write(fd, buf, len);
}
static int sys_close(void *ctx, int fd)
{
	return close(fd);
}

/* FEATURE with a payload of len bytes; 0 or -errno. */
static int feature(struct mfd_vfio_dev *d, uint32_t flags, void *payload,
		   size_t len)
{
	uint64_t buf[8];
	struct vfio_device_feature *f = (struct vfio_device_feature *)buf;
	if (sizeof(*f) + len > sizeof(buf))
		return -EINVAL;
	memset(buf, 0, sizeof(buf));
	f->argsz = (uint32_t)(sizeof(*f) + len);
	f->flags = flags;
	memcpy(f->data, payload, len);
	if (d->sys.ioctl(d->sys.ctx, d->fd, VFIO_DEVICE_FEATURE, f) < 0)
		return errno ? -errno : -EIO;
	memcpy(payload, f->data, len);
	return 0;
}

static void close_data(struct mfd_vfio_dev *d)
{
	if (d->data_fd >= 0)
		d->sys.close(d->sys.ctx, d->data_fd);
	d->data_fd = -1;
	d->save_err = 0;
}

static bool saving(int s)
{
	return s == MFD_DEV_PRE_COPY || s == MFD_DEV_PRE_COPY_P2P ||
	       s == MFD_DEV_STOP_COPY;
}

static int vfio_set_state(void *opaque, int new_state)
{
	struct mfd_vfio_dev *d = opaque;
	struct vfio_device_feature_mig_state st = { .device_state =
							    (uint32_t)new_state,
						    .data_fd = -1 };
	int ret = feature(d,
			  VFIO_DEVICE_FEATURE_SET |
				  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
			  &st, sizeof(st));
	if (ret)
		return ret;
	int from = d->state;
	d->state = new_state;
	/* A session ends when the device leaves the saving group or
	 * RESUMING; an arc that starts one hands us a new data fd. */
	bool ends = (saving(from) && !saving(new_state)) ||
		    from == MFD_DEV_RESUMING;
	if (ends || st.data_fd >= 0)
		close_data(d);
	if (st.data_fd >= 0)
		d->data_fd = st.data_fd;
	if ((saving(new_state) || new_state == MFD_DEV_RESUMING) &&
	    d->data_fd < 0) {
		mfd__err("vfio: %s entered without a data fd",
			 mfd_dev_state_name(new_state));
		return -EIO;
	}
	return 0;
}

static int vfio_get_state(void *opaque, int *state)
{
	struct mfd_vfio_dev *d = opaque;
	struct vfio_device_feature_mig_state st = { .data_fd = -1 };
	int ret = feature(d,
			  VFIO_DEVICE_FEATURE_GET |
				  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
			  &st, sizeof(st));
	if (ret)
		return ret;
	*state = (int)st.device_state;
	d->state = *state;
	if (!saving(*state) && *state != MFD_DEV_RESUMING)
		close_data(d);
	return 0;
}

static int vfio_reset(void *opaque)
{
	struct mfd_vfio_dev *d = opaque;
	if (d->sys.ioctl(d->sys.ctx, d->fd, VFIO_DEVICE_RESET, NULL) < 0)
		return errno ? -errno : -EIO;
	close_data(d);
	d->state = MFD_DEV_RUNNING;
	return 0;
}

static int vfio_precopy_info(void *opaque, uint64_t *initial, uint64_t *dirty)
{
	struct mfd_vfio_dev *d = opaque;
	struct vfio_precopy_info info = { .argsz = sizeof(info) };
	if (d->data_fd < 0)
		return -EBADF;
	if (d->sys.ioctl(d->sys.ctx, d->data_fd, VFIO_MIG_GET_PRECOPY_INFO,
			 &info) < 0)
		return errno ? -errno : -EIO;
	*initial = info.initial_bytes;
	*dirty = info.dirty_bytes;
	return 0;
}

static int vfio_stop_copy_size(void *opaque, uint64_t *bytes)
{
	struct mfd_vfio_dev *d = opaque;
	struct vfio_device_feature_mig_data_size sz = { 0 };
	int ret = feature(
		d, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
		&sz, sizeof(sz));
	if (!ret)
		*bytes = sz.stop_copy_length;
	return ret;
}

/*
 * Fills buf: drivers return at most their internal buffer per read (often a
 * page or a few), so one read per call would make a chunk of each read.
 * Reads go straight into the caller's buffer (the packet's payload), each
 * asking for all the room that is left, until it is full or the phase has
 * nothing more. An error after some bytes is returned by the next call,
 * since the bytes read are gone from the fd.
 */
static ssize_t vfio_save(void *opaque, void *buf, size_t len)
{
	struct mfd_vfio_dev *d = opaque;
	uint8_t *p = buf;
	size_t done = 0;
	if (d->data_fd < 0)
		return -EBADF;
	if (d->save_err) {
		int e = d->save_err;
		d->save_err = 0;
		return e;
	}
	while (done < len) {
		ssize_t n = d->sys.read(d->sys.ctx, d->data_fd, p + done,
					len - done);
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n == 0)
			break;
		if (errno == EINTR)
			continue;
		/* PRE_COPY: no more data for now (some drivers say so this
		 * way instead of a temporary end of stream). */
		if (errno == ENOMSG && d->state != MFD_DEV_STOP_COPY)
			break;
		int e = errno ? -errno : -EIO;
		if (!done)
			return e;
		d->save_err = e;
		break;
	}
	return (ssize_t)done;
}

static int vfio_load(void *opaque, const void *buf, size_t len)
{
	struct mfd_vfio_dev *d = opaque;
	const uint8_t *p = buf;
	if (d->data_fd < 0)
		return -EBADF;
	while (len) {
		ssize_t n = d->sys.write(d->sys.ctx, d->data_fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno ? -errno : -EIO;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int mfd_vfio_dev_new(mfd_vfio_dev **out, int device_fd, const mfd_vfio_sys *sys)
{
	if (!out || device_fd < 0)
		return -EINVAL;
	struct mfd_vfio_dev *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->fd = device_fd;
	d->data_fd = -1;
	if (sys)
		d->sys = *sys;
	else
		d->sys = (mfd_vfio_sys){ NULL, sys_ioctl, sys_read, sys_write,
					 sys_close };
	struct vfio_device_feature_migration mig = { 0 };
	int ret = feature(
		d, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION,
		&mig, sizeof(mig));
	if (ret == -ENOTTY || ret == -EINVAL || ret == -EOPNOTSUPP ||
	    (!ret && !(mig.flags & VFIO_MIGRATION_STOP_COPY))) {
		mfd__err("vfio: the device does not support migration v2 "
			 "(VFIO_DEVICE_FEATURE_MIGRATION: %s)",
			 ret ? mfd_strerror(ret) : "no STOP_COPY");
		free(d);
		return -EOPNOTSUPP;
	}
	if (ret) {
		free(d);
		return ret;
	}
	int state;
	ret = vfio_get_state(d, &state);
	if (ret) {
		free(d);
		return ret;
	}
	d->ops = (mfd_device_ops){
		.caps = (uint32_t)mig.flags & MFD_DEV_CAP_ALL,
		.set_state = vfio_set_state,
		.get_state = vfio_get_state,
		.reset = vfio_reset,
		.get_precopy_info = (mig.flags & VFIO_MIGRATION_PRE_COPY)
					    ? vfio_precopy_info
					    : NULL,
		.save = vfio_save,
		.load = vfio_load,
		.get_stop_copy_size = vfio_stop_copy_size,
	};
	*out = d;
	return 0;
}

void mfd_vfio_dev_free(mfd_vfio_dev *d)
{
	if (!d)
		return;
	close_data(d);
	free(d);
}

const mfd_device_ops *mfd_vfio_dev_ops(const mfd_vfio_dev *d)
{
	return &d->ops;
}

int mfd_vfio_open(const char *path, int *fd)
{
	struct stat st;
	if (!path || !fd)
		return -EINVAL;
	if (stat("/dev/vfio", &st) != 0) {
		mfd__err("vfio: /dev/vfio does not exist: no VFIO driver on "
			 "this host (load vfio-pci and bind the device to it)");
		return -ENODEV;
	}
	int f = open(path, O_RDWR | O_CLOEXEC);
	if (f < 0) {
		int e = errno;
		mfd__err("vfio: cannot open %s: %s", path, strerror(e));
		return -e;
	}
	*fd = f;
	return 0;
}
