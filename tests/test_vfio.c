/* SPDX-License-Identifier: MIT */
/* The VFIO adapter's control logic against a fake kernel: a fake ioctl
 * layer and memfd data fds, driven through the engine's device set. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "devstate/devstate.h"
#include "devstate/vfio_compat.h"
#include "multifd/vfio.h"

#define DEVFD 1000 /* never a real fd of ours: the fake answers it */

struct fake {
	int state;
	uint64_t migflags;
	bool no_migration;
	bool enomsg;	  /* PRE_COPY end reads as ENOMSG, not 0 */
	size_t max_read;  /* a driver's most bytes per read (0: no limit) */
	unsigned reads;	  /* read calls */
	int fail_read_at; /* read N (1-based) fails with EIO (0: never) */
	int fail_state;	  /* SET into this state fails with EIO */
	int data_fd;
	const uint8_t *image;
	size_t len, pre_len;
	unsigned opened, closed;
	unsigned sets;
	uint64_t stop_copy_length; /* MIG_DATA_SIZE's answer */
	bool no_data_size;	   /* an older kernel: ENOTTY */
};

static bool saving(int s)
{
	return s == MFD_DEV_PRE_COPY || s == MFD_DEV_PRE_COPY_P2P ||
	       s == MFD_DEV_STOP_COPY;
}

static int new_data_fd(struct fake *f, bool with_image)
{
	int fd = memfd_create("fake-vfio-data", MFD_CLOEXEC);
	assert_true(fd >= 0);
	if (with_image) {
		assert_int_equal(write(fd, f->image, f->len), (ssize_t)f->len);
		assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	}
	f->opened++;
	f->data_fd = fd;
	return fd;
}

static int fake_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
	struct fake *f = ctx;
	if (fd == DEVFD && req == VFIO_DEVICE_RESET) {
		f->state = MFD_DEV_RUNNING;
		return 0;
	}
	if (fd == DEVFD && req == VFIO_DEVICE_FEATURE) {
		struct vfio_device_feature *h = arg;
		uint32_t feat = h->flags & VFIO_DEVICE_FEATURE_MASK;
		if (feat == VFIO_DEVICE_FEATURE_MIGRATION) {
			assert_true(h->flags & VFIO_DEVICE_FEATURE_GET);
			if (f->no_migration) {
				errno = ENOTTY;
				return -1;
			}
			struct vfio_device_feature_migration m = {
				f->migflags
			};
			assert_true(h->argsz >= sizeof(*h) + sizeof(m));
			memcpy(h->data, &m, sizeof(m));
			return 0;
		}
		if (feat == VFIO_DEVICE_FEATURE_MIG_DATA_SIZE) {
			struct vfio_device_feature_mig_data_size sz = {
				f->stop_copy_length
			};
			assert_int_equal(h->flags,
					 VFIO_DEVICE_FEATURE_GET | feat);
			assert_true(h->argsz >= sizeof(*h) + sizeof(sz));
			if (f->no_data_size) {
				errno = ENOTTY;
				return -1;
			}
			memcpy(h->data, &sz, sizeof(sz));
			return 0;
		}
		assert_int_equal(feat, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE);
		struct vfio_device_feature_mig_state st;
		assert_true(h->argsz >= sizeof(*h) + sizeof(st));
		memcpy(&st, h->data, sizeof(st));
		if (h->flags & VFIO_DEVICE_FEATURE_GET) {
			st.device_state = (uint32_t)f->state;
			st.data_fd = -1;
			memcpy(h->data, &st, sizeof(st));
			return 0;
		}
		assert_true(h->flags & VFIO_DEVICE_FEATURE_SET);
		int to = (int)st.device_state, from = f->state;
		f->sets++;
		/* The adapter must only ask for single arcs. */
		assert_true(mfd_dev_arc_valid(from, to, (uint32_t)f->migflags));
		if (to == f->fail_state) {
			f->state = MFD_DEV_ERROR;
			errno = EIO;
			return -1;
		}
		st.data_fd = -1;
		if (saving(to) && !saving(from))
			st.data_fd = new_data_fd(f, true);
		if (to == MFD_DEV_RESUMING)
			st.data_fd = new_data_fd(f, false);
		if (from == MFD_DEV_RESUMING) {
			/* Validate what was written. */
			uint8_t *got = malloc(f->len + 1);
			ssize_t n = pread(f->data_fd, got, f->len + 1, 0);
			bool ok = n == (ssize_t)f->len &&
				  !memcmp(got, f->image, f->len);
			free(got);
			if (!ok) {
				f->state = MFD_DEV_ERROR;
				errno = EINVAL;
				return -1;
			}
		}
		f->state = to;
		memcpy(h->data, &st, sizeof(st));
		return 0;
	}
	if (fd == f->data_fd && req == VFIO_MIG_GET_PRECOPY_INFO) {
		struct vfio_precopy_info *info = arg;
		assert_int_equal(info->argsz, sizeof(*info));
		if (f->state != MFD_DEV_PRE_COPY &&
		    f->state != MFD_DEV_PRE_COPY_P2P) {
			errno = EINVAL;
			return -1;
		}
		off_t pos = lseek(fd, 0, SEEK_CUR);
		info->initial_bytes =
			(size_t)pos < f->pre_len ? f->pre_len - (size_t)pos : 0;
		info->dirty_bytes = 0;
		return 0;
	}
	errno = ENOTTY;
	return -1;
}

static ssize_t fake_read(void *ctx, int fd, void *buf, size_t len)
{
	struct fake *f = ctx;
	assert_int_equal(fd, f->data_fd);
	if (++f->reads == (unsigned)f->fail_read_at) {
		errno = EIO;
		return -1;
	}
	if (f->max_read && len > f->max_read)
		len = f->max_read;
	if (f->state == MFD_DEV_PRE_COPY || f->state == MFD_DEV_PRE_COPY_P2P) {
		size_t pos = (size_t)lseek(fd, 0, SEEK_CUR);
		if (pos >= f->pre_len) {
			if (f->enomsg) {
				errno = ENOMSG;
				return -1;
			}
			return 0;
		}
		if (len > f->pre_len - pos)
			len = f->pre_len - pos;
	}
	return read(fd, buf, len);
}

static ssize_t fake_write(void *ctx, int fd, const void *buf, size_t len)
{
	struct fake *f = ctx;
	assert_int_equal(fd, f->data_fd);
	assert_int_equal(f->state, MFD_DEV_RESUMING);
	if (len > 3000) /* short writes: the adapter must loop */
		len = 3000;
	return write(fd, buf, len);
}

static int fake_close(void *ctx, int fd)
{
	struct fake *f = ctx;
	f->closed++;
	if (fd == f->data_fd)
		f->data_fd = -1;
	return close(fd);
}

static uint8_t *image(size_t len)
{
	uint8_t *p = malloc(len);
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 131 + (i >> 9));
	return p;
}

static mfd_vfio_sys sys_of(struct fake *f)
{
	return (mfd_vfio_sys){ f, fake_ioctl, fake_read, fake_write,
			       fake_close };
}

/* A device with all capabilities, image as its state, 70000 bytes of it
 * readable in PRE_COPY. */
static struct fake source_fake(const uint8_t *img, size_t len, bool enomsg)
{
	return (struct fake){ .state = MFD_DEV_RUNNING,
			      .migflags = VFIO_MIGRATION_STOP_COPY |
					  VFIO_MIGRATION_P2P |
					  VFIO_MIGRATION_PRE_COPY,
			      .enomsg = enomsg,
			      .data_fd = -1,
			      .image = img,
			      .len = len,
			      .pre_len = 70000 };
}

static void source_flow(bool enomsg)
{
	const size_t len = 200000;
	uint8_t *img = image(len), *out = malloc(len + 10);
	struct fake f = source_fake(img, len, enomsg);
	mfd_vfio_sys sys = sys_of(&f);
	mfd_vfio_dev *v;
	assert_int_equal(mfd_vfio_dev_new(&v, DEVFD, &sys), 0);
	const mfd_device_ops *ops = mfd_vfio_dev_ops(v);
	assert_int_equal(ops->caps, MFD_DEV_CAP_ALL);

	struct mfd__devset set;
	mfd__devset_init(&set, true);
	assert_int_equal(mfd__devset_add(&set, "vf0", ops, v), 0);
	assert_int_equal(mfd__devset_notify(&set, MFD_MIG_SETUP), 0);
	assert_int_equal(f.state, MFD_DEV_PRE_COPY);
	assert_int_equal(f.opened, 1);
	uint64_t pend;
	assert_int_equal(mfd__devset_precopy_pending(&set, &pend), 0);
	assert_int_equal(pend, 70000);

	size_t n = 0;
	ssize_t r;
	while ((r = ops->save(v, out + n, 4096)) > 0)
		n += (size_t)r;
	assert_int_equal(r, 0); /* ENOMSG reads as "nothing for now" */
	assert_int_equal(n, 70000);
	assert_int_equal(mfd__devset_precopy_pending(&set, &pend), 0);
	assert_int_equal(pend, 0);

	assert_int_equal(mfd__devset_vm_event(&set, MFD_VM_BEFORE_STOP), 0);
	assert_int_equal(f.state, MFD_DEV_PRE_COPY_P2P);
	assert_int_equal(mfd__devset_vm_event(&set, MFD_VM_AFTER_STOP), 0);
	assert_int_equal(f.state, MFD_DEV_STOP_COPY);
	/* The same session goes on: no new fd. */
	assert_int_equal(f.opened, 1);
	assert_int_equal(f.closed, 0);
	while ((r = ops->save(v, out + n, 5000)) > 0)
		n += (size_t)r;
	assert_int_equal(r, 0);
	assert_int_equal(n, len);
	assert_memory_equal(out, img, len);
	assert_int_equal(mfd__devset_notify(&set, MFD_MIG_COMPLETED), 0);
	assert_int_equal(f.state, MFD_DEV_STOP);
	assert_int_equal(f.closed, 1); /* STOP_COPY -> STOP ends it */
	mfd__devset_destroy(&set);
	mfd_vfio_dev_free(v);
	free(img);
	free(out);
}

static void test_source_eof(void **state)
{
	source_flow(false);
}
static void test_source_enomsg(void **state)
{
	source_flow(true);
}

/* A driver that returns at most 4 KiB per read: save() still fills the
 * whole chunk (the packet), stops at the pre-copy end, and reports a read
 * error after the bytes read before it. */
static void test_source_short_reads(void **state)
{
	const size_t len = 300000, chunk = 65536;
	uint8_t *img = image(len), *out = malloc(len);
	struct fake f = source_fake(img, len, true);
	f.max_read = 4096;
	mfd_vfio_sys sys = sys_of(&f);
	mfd_vfio_dev *v;
	assert_int_equal(mfd_vfio_dev_new(&v, DEVFD, &sys), 0);
	const mfd_device_ops *ops = mfd_vfio_dev_ops(v);
	struct mfd__devset set;
	mfd__devset_init(&set, true);
	assert_int_equal(mfd__devset_add(&set, "vf0", ops, v), 0);
	assert_int_equal(mfd__devset_notify(&set, MFD_MIG_SETUP), 0);
	/* Pre-copy: a full chunk, then the 70000 - 65536 left, then 0. */
	assert_int_equal(ops->save(v, out, chunk), (ssize_t)chunk);
	assert_int_equal(f.reads, 16);
	assert_int_equal(ops->save(v, out + chunk, chunk), 70000 - chunk);
	assert_int_equal(ops->save(v, out + 70000, chunk), 0);
	assert_int_equal(mfd__devset_vm_event(&set, MFD_VM_BEFORE_STOP), 0);
	assert_int_equal(mfd__devset_vm_event(&set, MFD_VM_AFTER_STOP), 0);
	size_t n = 70000;
	assert_int_equal(ops->save(v, out + n, chunk), (ssize_t)chunk);
	n += chunk;
	/* The 6th read of the next chunk fails: the 5 reads before it are
	 * returned, the error comes with the call after. */
	f.fail_read_at = (int)f.reads + 6;
	assert_int_equal(ops->save(v, out + n, chunk), 5 * 4096);
	n += 5 * 4096;
	assert_int_equal(ops->save(v, out + n, chunk), -EIO);
	assert_memory_equal(out, img, n);
	/* Then on: the read error was reported once. */
	ssize_t r;
	while ((r = ops->save(v, out + n, chunk)) > 0) {
		assert_true(r == (ssize_t)chunk || n + (size_t)r == len);
		n += (size_t)r;
	}
	assert_int_equal(r, 0);
	assert_int_equal(n, len);
	assert_memory_equal(out, img, len);
	assert_int_equal(mfd__devset_notify(&set, MFD_MIG_COMPLETED), 0);
	mfd__devset_destroy(&set);
	mfd_vfio_dev_free(v);
	free(img);
	free(out);
}

static void dest_flow(bool corrupt)
{
	const size_t len = 100000;
	uint8_t *img = image(len), *in = image(len);
	if (corrupt)
		in[len / 2] ^= 0x40;
	struct fake f = { .state = MFD_DEV_RUNNING,
			  .migflags =
				  VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P,
			  .data_fd = -1,
			  .image = img,
			  .len = len };
	mfd_vfio_sys sys = sys_of(&f);
	mfd_vfio_dev *v;
	assert_int_equal(mfd_vfio_dev_new(&v, DEVFD, &sys), 0);
	const mfd_device_ops *ops = mfd_vfio_dev_ops(v);
	assert_null(ops->get_precopy_info);
	struct mfd__devset set;
	mfd__devset_init(&set, false);
	assert_int_equal(mfd__devset_add(&set, "vf0", ops, v), 0);
	assert_int_equal(mfd__devset_vm_event(&set, MFD_VM_BEFORE_LOAD), 0);
	assert_int_equal(f.state, MFD_DEV_RESUMING);
	for (size_t off = 0; off < len; off += 7000)
		assert_int_equal(ops->load(v, in + off,
					   len - off < 7000 ? len - off : 7000),
				 0);
	int ret = mfd__devset_vm_event(&set, MFD_VM_AFTER_LOAD);
	if (corrupt) {
		assert_int_equal(ret, -EINVAL);
		/* The library asked the device where it is now. */
		assert_int_equal(set.devs[0].state, MFD_DEV_ERROR);
	} else {
		assert_int_equal(ret, 0);
		assert_int_equal(f.state, MFD_DEV_STOP);
		assert_int_equal(f.closed, 1);
	}
	mfd__devset_destroy(&set);
	mfd_vfio_dev_free(v);
	assert_int_equal(f.opened, f.closed);
	free(img);
	free(in);
}

static void test_dest_ok(void **state)
{
	dest_flow(false);
}
static void test_dest_corrupt(void **state)
{
	dest_flow(true);
}

static void test_failure_rollback(void **state)
{
	const size_t len = 1000;
	uint8_t *img = image(len);
	struct fake f = { .state = MFD_DEV_RUNNING,
			  .migflags = VFIO_MIGRATION_STOP_COPY |
				      VFIO_MIGRATION_P2P |
				      VFIO_MIGRATION_PRE_COPY,
			  .fail_state = MFD_DEV_STOP_COPY,
			  .data_fd = -1,
			  .image = img,
			  .len = len };
	mfd_vfio_sys sys = sys_of(&f);
	mfd_vfio_dev *v;
	assert_int_equal(mfd_vfio_dev_new(&v, DEVFD, &sys), 0);
	struct mfd__devset set;
	mfd__devset_init(&set, true);
	assert_int_equal(mfd__devset_add(&set, "vf0", mfd_vfio_dev_ops(v), v),
			 0);
	assert_int_equal(mfd__devset_notify(&set, MFD_MIG_SETUP), 0);
	assert_int_equal(mfd__devset_vm_event(&set, MFD_VM_BEFORE_STOP), 0);
	assert_int_equal(mfd__devset_vm_event(&set, MFD_VM_AFTER_STOP), -EIO);
	assert_int_equal(set.devs[0].state, MFD_DEV_ERROR);
	assert_int_equal(mfd__devset_notify(&set, MFD_MIG_FAILED), 0);
	assert_int_equal(f.state, MFD_DEV_RUNNING); /* through a reset */
	mfd__devset_destroy(&set);
	mfd_vfio_dev_free(v);
	assert_int_equal(f.opened, f.closed);
	free(img);
}

static void test_no_migration(void **state)
{
	struct fake f = { .state = MFD_DEV_RUNNING,
			  .no_migration = true,
			  .data_fd = -1 };
	mfd_vfio_sys sys = sys_of(&f);
	mfd_vfio_dev *v = NULL;
	assert_int_equal(mfd_vfio_dev_new(&v, DEVFD, &sys), -EOPNOTSUPP);
	assert_null(v);
	f.no_migration = false;
	f.migflags = VFIO_MIGRATION_P2P; /* no STOP_COPY: not v2 */
	assert_int_equal(mfd_vfio_dev_new(&v, DEVFD, &sys), -EOPNOTSUPP);
	/* The real system calls on a non-VFIO fd: not supported either. */
	int fd = memfd_create("not-vfio", MFD_CLOEXEC);
	assert_int_equal(mfd_vfio_dev_new(&v, fd, NULL), -EOPNOTSUPP);
	close(fd);
}

static void test_open_without_vfio(void **state)
{
	struct stat st;
	int fd = -1;
	if (stat("/dev/vfio", &st) == 0) {
		printf("/dev/vfio exists here: the missing-VFIO error is not "
		       "testable on this host\n");
		assert_int_not_equal(mfd_vfio_open("/nonexistent/vfio0", &fd),
				     0);
		return;
	}
	assert_int_equal(mfd_vfio_open("/dev/vfio/devices/vfio0", &fd),
			 -ENODEV);
	assert_int_equal(fd, -1);
}

/* get_stop_copy_size: FEATURE GET | MIG_DATA_SIZE, the kernel's number as
 * is; on a kernel without it the op fails, and the device set counts the
 * device as 0 bytes rather than failing. */
static void test_stop_copy_size(void **state)
{
	(void)state;
	struct fake f = { .state = MFD_DEV_RUNNING,
			  .migflags = VFIO_MIGRATION_STOP_COPY,
			  .data_fd = -1,
			  .stop_copy_length = 123456789012ULL };
	mfd_vfio_sys sys = sys_of(&f);
	mfd_vfio_dev *v;
	assert_int_equal(mfd_vfio_dev_new(&v, DEVFD, &sys), 0);
	const mfd_device_ops *ops = mfd_vfio_dev_ops(v);
	assert_non_null(ops->get_stop_copy_size);
	uint64_t n = 0;
	assert_int_equal(ops->get_stop_copy_size(v, &n), 0);
	assert_int_equal(n, 123456789012ULL);
	struct mfd__devset set;
	mfd__devset_init(&set, true);
	assert_int_equal(mfd__devset_add(&set, "vf0", ops, v), 0);
	assert_int_equal(mfd__devset_stop_copy_size(&set), 123456789012ULL);
	f.no_data_size = true;
	n = 7;
	assert_int_equal(ops->get_stop_copy_size(v, &n), -ENOTTY);
	assert_int_equal(n, 7);
	assert_int_equal(mfd__devset_stop_copy_size(&set), 0);
	mfd__devset_destroy(&set);
	mfd_vfio_dev_free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_source_eof),
		cmocka_unit_test(test_stop_copy_size),
		cmocka_unit_test(test_source_enomsg),
		cmocka_unit_test(test_source_short_reads),
		cmocka_unit_test(test_dest_ok),
		cmocka_unit_test(test_dest_corrupt),
		cmocka_unit_test(test_failure_rollback),
		cmocka_unit_test(test_no_migration),
		cmocka_unit_test(test_open_without_vfio),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
