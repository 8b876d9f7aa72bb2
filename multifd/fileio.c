/* SPDX-License-Identifier: MIT */
/* File I/O of the file writers and readers (fileio.h). */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "multifd/fileio.h"

int mfd__fio_all(int fd, bool wr, uint8_t *p, uint64_t len, uint64_t off)
{
	while (len) {
		ssize_t n = wr ? pwrite(fd, p, len, (off_t)off)
			       : pread(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return wr ? -EIO : -ENODATA;
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
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
	if (io->ring_on) {
		(void)mfd__fio_drain(io);
		io_uring_queue_exit(&io->ring);
	}
	io->ring_on = false;
}

/* The ring's requests [from, queued) never reached the kernel: done with
 * syscalls. */
static int do_plain(struct mfd__fio *io, unsigned from)
{
	int ret = 0;
	for (unsigned i = from; i < io->queued && !ret; i++)
		ret = mfd__fio_all(io->req[i].fd, io->req[i].wr, io->req[i].p,
				   io->req[i].len, io->req[i].off);
	return ret;
}

int mfd__fio_drain(struct mfd__fio *io)
{
	if (!io->ring_on || !io->queued)
		return 0;
	int ret = 0;
	unsigned sent = 0;
	bool broken = false;
	while (sent < io->queued) {
		int sub = io_uring_submit(&io->ring);
		if (sub == -EINTR || sub == -EAGAIN)
			continue;
		if (sub <= 0) {
			/* The ring refuses: the rest the plain way, and no
			 * ring from now on (its unsubmitted entries go with
			 * it). */
			ret = do_plain(io, sent);
			broken = true;
			break;
		}
		sent += (unsigned)sub;
	}
	for (unsigned left = sent; left;) {
		struct io_uring_cqe *cqe;
		int w = io_uring_wait_cqe(&io->ring, &cqe);
		if (w == -EINTR)
			continue;
		if (w < 0) {
			ret = ret ? ret : w;
			broken = true;
			break;
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
		uint64_t done = (uint64_t)res;
		if (done < io->req[i].len)
			ret = mfd__fio_all(io->req[i].fd, io->req[i].wr,
					   io->req[i].p + done,
					   io->req[i].len - done,
					   io->req[i].off + done);
	}
	io->queued = 0;
	if (broken) {
		io_uring_queue_exit(&io->ring);
		io->ring_on = false;
	}
	return ret;
}

int mfd__fio_rw(struct mfd__fio *io, int fd, bool wr, uint8_t *p, uint64_t len,
		uint64_t off)
{
	/* Over 1 GiB (runs of huge pages) does not fit an sqe's length. */
	if (!io->ring_on || len > (1ULL << 30))
		return mfd__fio_all(fd, wr, p, len, off);
	int ret;
	if (io->queued == MFD__FIO_DEPTH && (ret = mfd__fio_drain(io)))
		return ret;
	if (!io->ring_on) /* the drain gave it up */
		return mfd__fio_all(fd, wr, p, len, off);
	struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);
	if (!sqe) /* cannot happen: the ring is drained when full */
		return mfd__fio_all(fd, wr, p, len, off);
	unsigned i = io->queued++;
	io->req[i].fd = fd;
	io->req[i].wr = wr;
	io->req[i].p = p;
	io->req[i].len = len;
	io->req[i].off = off;
	if (wr)
		io_uring_prep_write(sqe, fd, p, (unsigned)len, off);
	else
		io_uring_prep_read(sqe, fd, p, (unsigned)len, off);
	io_uring_sqe_set_data64(sqe, i);
	return 0;
}
