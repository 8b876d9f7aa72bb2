/* SPDX-License-Identifier: MIT */
/* File I/O of the file writers and readers (fileio.h). */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "multifd/fileio.h"
#include "multifd/common/util.h"

int mfd__fio_all(int fd, bool wr, uint8_t *p, uint64_t len, uint64_t off)
{
	struct iovec one = { .iov_base = p, .iov_len = len };
	return mfd__fio_allv(fd, wr, &one, 1, off);
}

int mfd__fio_allv(int fd, bool wr, struct iovec *iov, unsigned cnt,
		  uint64_t off)
{
	while (cnt && !iov->iov_len) {
		iov++;
		cnt--;
	}
	while (cnt) {
		int c = cnt < IOV_MAX ? (int)cnt : IOV_MAX;
		ssize_t n = wr ? pwritev(fd, iov, c, (off_t)off)
			       : preadv(fd, iov, c, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return wr ? -EIO : -ENODATA;
		off += (uint64_t)n;
		size_t left = cnt;
		iov = mfd__iov_skip(iov, &left, (size_t)n);
		cnt = (unsigned)left;
	}
	return 0;
}

bool mfd__fio_ring_pays(int fd)
{
	struct statfs st;
	return fstatfs(fd, &st) < 0 || st.f_type != TMPFS_MAGIC;
}

bool mfd__fio_init(struct mfd__fio *io, bool uring)
{
	memset(io, 0, sizeof(*io));
	io->ring_on =
		uring && io_uring_queue_init(MFD__FIO_DEPTH, &io->ring, 0) == 0;
	return io->ring_on;
}

void mfd__fio_exit(struct mfd__fio *io)
{
	if (io->ring_on)
		(void)mfd__fio_drain(io);
	/* (A drain that broke the ring has let it go already.) */
	if (io->ring_on)
		io_uring_queue_exit(&io->ring);
	io->ring_on = false;
}

#define SLOT(c) ((c) % MFD__FIO_DEPTH)

/* Request c with syscalls. */
static int plain(struct mfd__fio *io, unsigned c)
{
	return mfd__fio_allv(io->req[SLOT(c)].fd, io->req[SLOT(c)].wr,
			     io->req[SLOT(c)].iov, io->req[SLOT(c)].cnt,
			     io->req[SLOT(c)].off);
}

/* The ring fails: what is queued is done with syscalls, and no ring from
 * now on (what it still holds in the kernel goes with it). */
static int ring_broken(struct mfd__fio *io)
{
	int ret = 0;
	for (unsigned c = io->sent; c != io->tail && !ret; c++)
		ret = plain(io, c);
	io->head = io->sent = io->tail = 0;
	io_uring_queue_exit(&io->ring);
	io->ring_on = false;
	return ret;
}

int mfd__fio_reap(struct mfd__fio *io)
{
	int ret = 0;
	/* Completions come in any order: count them, then free all. */
	for (unsigned left = io->ring_on ? io->sent - io->head : 0; left;) {
		struct io_uring_cqe *cqe;
		int w = io_uring_wait_cqe(&io->ring, &cqe);
		if (w == -EINTR)
			continue;
		if (w < 0) {
			(void)ring_broken(io);
			return ret ? ret : w;
		}
		uint64_t i = io_uring_cqe_get_data64(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&io->ring, cqe);
		left--;
		if (ret || i >= MFD__FIO_DEPTH)
			continue;
		if (res < 0) {
			ret = res;
			continue;
		}
		/* A short transfer: the rest with syscalls (which also tell
		 * the end of the file from a transient short read). */
		size_t cnt = io->req[i].cnt;
		struct iovec *rest =
			mfd__iov_skip(io->req[i].iov, &cnt, (size_t)res);
		if (cnt)
			ret = mfd__fio_allv(io->req[i].fd, io->req[i].wr, rest,
					    (unsigned)cnt,
					    io->req[i].off + (uint64_t)res);
	}
	io->head = io->sent;
	return ret;
}

int mfd__fio_submit(struct mfd__fio *io)
{
	while (io->ring_on && io->sent != io->tail) {
		int sub = io_uring_submit(&io->ring);
		if (sub == -EINTR || sub == -EAGAIN)
			continue;
		if (sub <= 0) {
			/* The ring refuses: what it took is reaped, the rest
			 * is done the plain way. */
			int ret = mfd__fio_reap(io), r = ring_broken(io);
			return ret ? ret : r;
		}
		io->sent += (unsigned)sub;
	}
	return 0;
}

int mfd__fio_drain(struct mfd__fio *io)
{
	int ret = mfd__fio_submit(io), r = mfd__fio_reap(io);
	return ret ? ret : r;
}

/* Queues req's transfer on the ring, or does it with syscalls when there
 * is none (any more). */
static int queue(struct mfd__fio *io, int fd, bool wr, struct iovec *iov,
		 unsigned cnt, uint64_t off, bool one)
{
	int ret;
	/* Every slot taken: the kernel's first, then, if all are queued,
	 * everything. */
	if (io->ring_on && io->tail - io->head == MFD__FIO_DEPTH &&
	    (ret = mfd__fio_reap(io)))
		return ret;
	if (io->ring_on && io->tail - io->head == MFD__FIO_DEPTH &&
	    (ret = mfd__fio_drain(io)))
		return ret;
	struct io_uring_sqe *sqe =
		io->ring_on ? io_uring_get_sqe(&io->ring) : NULL;
	/* No sqe cannot happen (no more are outstanding than the ring
	 * holds), but then the syscalls do it. */
	if (!sqe)
		return mfd__fio_allv(fd, wr, iov, cnt, off);
	unsigned i = SLOT(io->tail++);
	io->req[i].fd = fd;
	io->req[i].wr = wr;
	io->req[i].off = off;
	io->req[i].cnt = cnt;
	if (one) {
		io->req[i].one = iov[0];
		io->req[i].iov = &io->req[i].one;
		if (wr)
			io_uring_prep_write(sqe, fd, iov[0].iov_base,
					    (unsigned)iov[0].iov_len, off);
		else
			io_uring_prep_read(sqe, fd, iov[0].iov_base,
					   (unsigned)iov[0].iov_len, off);
	} else {
		io->req[i].iov = iov;
		if (wr)
			io_uring_prep_writev(sqe, fd, iov, cnt, off);
		else
			io_uring_prep_readv(sqe, fd, iov, cnt, off);
	}
	io_uring_sqe_set_data64(sqe, i);
	return 0;
}

int mfd__fio_rw(struct mfd__fio *io, int fd, bool wr, uint8_t *p, uint64_t len,
		uint64_t off)
{
	/* Over 1 GiB (runs of huge pages) does not fit an sqe's length. */
	if (!io->ring_on || len > (1ULL << 30))
		return mfd__fio_all(fd, wr, p, len, off);
	struct iovec one = { .iov_base = p, .iov_len = len };
	return queue(io, fd, wr, &one, 1, off, true);
}

int mfd__fio_rwv(struct mfd__fio *io, int fd, bool wr, struct iovec *iov,
		 unsigned cnt, uint64_t off)
{
	uint64_t len = 0;
	for (unsigned i = 0; i < cnt; i++)
		len += iov[i].iov_len;
	/* The kernel moves at most IOV_MAX iovecs and about 2 GiB a call;
	 * a short transfer is finished with syscalls, but larger ones go
	 * there from the start. */
	if (!io->ring_on || cnt > IOV_MAX || len > (1ULL << 30))
		return mfd__fio_allv(fd, wr, iov, cnt, off);
	return queue(io, fd, wr, iov, cnt, off, false);
}
