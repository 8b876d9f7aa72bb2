/* SPDX-License-Identifier: MIT */
/*
 * userfaultfd helpers (ramblock/uffd.h): opening one, and post-copy's
 * MISSING-mode registration, placement and fault reading.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "multifd/compat/linux.h"
#include "ramblock/uffd.h"

static int uffd_new(int flags)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | flags);
	if (fd < 0 && !flags) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW,
				   O_CLOEXEC | O_NONBLOCK);
			close(dev);
		}
	}
	return fd < 0 ? -errno : fd;
}

int mfd__uffd_open(bool kernel_faults, bool *user_only)
{
	/* User-mode-only faults are allowed to unprivileged users where the
	 * sysctl forbids the rest; kernel faults (KVM's, vhost's, a
	 * syscall's access to guest memory) need the privilege or
	 * /dev/userfaultfd. */
	int order[2] = { UFFD_USER_MODE_ONLY, 0 };
	if (kernel_faults) {
		order[0] = 0;
		order[1] = UFFD_USER_MODE_ONLY;
	}
	int fd = uffd_new(order[0]);
	int used = order[0];
	if (fd < 0) {
		fd = uffd_new(order[1]);
		used = order[1];
	}
	if (user_only)
		*user_only = fd >= 0 && used == UFFD_USER_MODE_ONLY;
	return fd;
}

int mfd__uffd_missing_open(struct mfd__uffd_missing *u)
{
	struct uffdio_api api = { .api = UFFD_API };
	/* The guest's memory is also touched by the kernel on its behalf
	 * (KVM's page faults, vhost): those must wait for the page too. */
	int fd = mfd__uffd_open(true, &u->user_only);

	u->fd = -1;
	if (fd < 0)
		return fd == -ENOSYS || fd == -EPERM ? -ENOTSUP : fd;
	/* MISSING mode on anonymous memory needs no feature bit. */
	if (ioctl(fd, UFFDIO_API, &api) ||
	    !(api.ioctls & (1ULL << _UFFDIO_REGISTER))) {
		close(fd);
		return -ENOTSUP;
	}
	u->fd = fd;
	return 0;
}

void mfd__uffd_missing_close(struct mfd__uffd_missing *u)
{
	if (u->fd >= 0)
		close(u->fd);
	u->fd = -1;
}

int mfd__uffd_missing_register(struct mfd__uffd_missing *u, void *addr,
			       uint64_t len)
{
	const uint64_t need =
		(1ULL << _UFFDIO_COPY) | (1ULL << _UFFDIO_ZEROPAGE);
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};

	if (ioctl(u->fd, UFFDIO_REGISTER, &reg))
		return -errno;
	if ((reg.ioctls & need) != need) {
		mfd__uffd_missing_unregister(u, addr, len);
		return -ENOTSUP;
	}
	return 0;
}

int mfd__uffd_missing_unregister(struct mfd__uffd_missing *u, void *addr,
				 uint64_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

	return ioctl(u->fd, UFFDIO_UNREGISTER, &r) ? -errno : 0;
}

/* One ioctl over [dst, dst + len), its partial progress retried: 1, 0 on
 * EEXIST at *done bytes, -errno. */
static int place_once(struct mfd__uffd_missing *u, uint8_t *dst,
		      const uint8_t *src, uint64_t len, uint64_t *done)
{
	*done = 0;
	while (*done < len) {
		int64_t got;
		int ret;

		if (src) {
			struct uffdio_copy c = {
				.dst = (uintptr_t)(dst + *done),
				.src = (uintptr_t)(src + *done),
				.len = len - *done,
			};
			ret = ioctl(u->fd, UFFDIO_COPY, &c);
			got = c.copy;
		} else {
			struct uffdio_zeropage z = {
				.range = { .start = (uintptr_t)(dst + *done),
					   .len = len - *done },
			};
			ret = ioctl(u->fd, UFFDIO_ZEROPAGE, &z);
			got = z.zeropage;
		}
		if (ret == 0) {
			*done = len;
			break;
		}
		int err = errno;
		if (got > 0)
			*done += (uint64_t)got;
		if (err == EEXIST)
			return 0;
		if (err != EAGAIN)
			return -err;
	}
	return 1;
}

int mfd__uffd_place(struct mfd__uffd_missing *u, void *dst, const void *src,
		    uint64_t len)
{
	const uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE);
	uint8_t *d = dst;
	const uint8_t *s = src;
	uint64_t done;
	int ret = place_once(u, d, s, len, &done);

	if (ret != 0)
		return ret;
	/* A populated page stopped the call: the one at done. Wake its
	 * waiters (a fault may have raced with its population) and place
	 * the rest page by page, skipping the populated ones. */
	for (uint64_t off = done; off < len; off += ps) {
		uint64_t one;
		int r = place_once(u, d + off, s ? s + off : NULL, ps, &one);
		if (r < 0)
			return r;
	}
	mfd__uffd_wake(u, d, len);
	return 0;
}

int mfd__uffd_next_fault(struct mfd__uffd_missing *u, uint64_t *addr,
			 int timeout_ms)
{
	for (;;) {
		struct pollfd p = { .fd = u->fd, .events = POLLIN };
		struct uffd_msg msg;
		int n = poll(&p, 1, timeout_ms);

		if (n < 0)
			return errno == EINTR ? 0 : -errno;
		if (n == 0)
			return 0;
		ssize_t got = read(u->fd, &msg, sizeof(msg));
		if (got < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue; /* another reader took it */
			return -errno;
		}
		if (got != (ssize_t)sizeof(msg))
			return -EIO;
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		*addr = msg.arg.pagefault.address;
		return 1;
	}
}

int mfd__uffd_wake(struct mfd__uffd_missing *u, void *addr, uint64_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

	return ioctl(u->fd, UFFDIO_WAKE, &r) ? -errno : 0;
}

int mfd__uffd_discard(void *addr, uint64_t len)
{
	return madvise(addr, len, MADV_DONTNEED) ? -errno : 0;
}

void mfd__drop_init(struct mfd__drop *d)
{
	d->n = 0;
#if defined(SYS_pidfd_open) && defined(SYS_process_madvise)
	d->pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
#else
	d->pidfd = -1;
#endif
}

static int drop_flush(struct mfd__drop *d)
{
	unsigned n = d->n;
	d->n = 0;
#if defined(SYS_process_madvise)
	if (d->pidfd >= 0 && n) {
		if (syscall(SYS_process_madvise, d->pidfd, d->v, (size_t)n,
			    MADV_DONTNEED, 0U) >= 0)
			return 0;
		/* Before 6.13 (EINVAL), or a partial failure: each range
		 * again with madvise, which says which one fails. */
		close(d->pidfd);
		d->pidfd = -1;
	}
#endif
	for (unsigned i = 0; i < n; i++) {
		int ret = mfd__uffd_discard(d->v[i].iov_base, d->v[i].iov_len);
		if (ret)
			return ret;
	}
	return 0;
}

int mfd__drop_add(struct mfd__drop *d, void *addr, uint64_t len)
{
	d->v[d->n++] = (struct iovec){ .iov_base = addr, .iov_len = len };
	return d->n == MFD_DROP_BATCH ? drop_flush(d) : 0;
}

int mfd__drop_finish(struct mfd__drop *d)
{
	int ret = drop_flush(d);
	if (d->pidfd >= 0)
		close(d->pidfd);
	d->pidfd = -1;
	return ret;
}

int mfd__pc_place(struct mfd__uffd_missing *u, struct mfd__bitmap *rx,
		  uint8_t *base, uint32_t page_size, uint64_t i,
		  const void *src, uint64_t *present)
{
	int ret;

	if (mfd__pc_received(rx, i))
		return 0;
	ret = mfd__uffd_place(u, base + i * page_size, src, page_size);
	if (ret < 0)
		return ret;
	/* After the placement, not before: a fault thread that sees the bit
	 * treats the page as present (10.4), so the bit must never be ahead
	 * of the memory. */
	if (mfd__pc_mark(rx, i) && present)
		__atomic_fetch_add(present, 1, __ATOMIC_RELAXED);
	return ret;
}
