/* SPDX-License-Identifier: MIT */
/*
 * The file writers' and readers' I/O (multifd/filemig.c): each transfer at
 * its own file offset, with pwrite/pread, or with io-engine = uring queued
 * on the worker's own ring and submitted in batches (one io_uring_enter
 * for many runs of pages instead of one syscall each). One per worker
 * thread, never shared.
 */
#ifndef MULTIFD_FILEIO_H
#define MULTIFD_FILEIO_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#define MFD__FIO_DEPTH 64

/*
 * The ring's requests live in req[], used as a circle with free-running
 * counters: [head, sent) are in the kernel, [sent, tail) queued and not yet
 * submitted; slot = counter % MFD__FIO_DEPTH. Nothing more than that is
 * ever outstanding, so the ring (MFD__FIO_DEPTH entries) never overflows.
 */
struct mfd__fio {
	bool ring_on;
	struct io_uring ring;
	unsigned head, sent, tail;
	struct {
		int fd;
		bool wr;
		unsigned cnt;	   /* iovecs at iov */
		struct iovec *iov; /* &one, or the caller's (mfd__fio_rwv) */
		struct iovec one;
		uint64_t off;
	} req[MFD__FIO_DEPTH];
};

/* pwrite or pread all of len at off, retrying short transfers: 0, -errno,
 * -ENODATA for a read past the end, -EIO for a write without progress. */
int mfd__fio_all(int fd, bool wr, uint8_t *p, uint64_t len, uint64_t off);
/* The same for cnt iovecs (pwritev/preadv, IOV_MAX at a time); advances
 * iov in place as bytes move. */
int mfd__fio_allv(int fd, bool wr, struct iovec *iov, unsigned cnt,
		  uint64_t off);

/*
 * Whether a ring pays for fd's reads: false on tmpfs, where io_uring has
 * no non-blocking read (buffered or O_DIRECT) and hands each one to its
 * io-wq worker thread (iou-wrk), so every batch costs a hand-off between
 * threads on top of the same copy; pread in the reader's own thread does
 * the copy without it (docs/benchmarks.md, "tmpfs direct I/O, second
 * try"). Writes are punted there too, but a direct-io writer's punted
 * write runs beside its next batch's preparation, and it keeps its ring.
 * True elsewhere, and when fstatfs fails.
 */
bool mfd__fio_ring_pays(int fd);
/* uring: try a ring (falls back to syscalls, false, when the kernel has
 * none). */
bool mfd__fio_init(struct mfd__fio *io, bool uring);
void mfd__fio_exit(struct mfd__fio *io);
/* Moves len bytes between p and the file at off: done when it returns
 * (syscalls), or queued until mfd__fio_drain() (ring; when every slot is
 * taken, what is in the kernel is reaped first, then, if still full, all
 * is drained). 0, -errno, -ENODATA for a read past the end of the file,
 * -EIO for a write that makes no progress; an error may also be an
 * earlier transfer's, reaped to make room. */
int mfd__fio_rw(struct mfd__fio *io, int fd, bool wr, uint8_t *p, uint64_t len,
		uint64_t off);
/* The same for cnt iovecs (writev/readv on the ring): iov[0 .. cnt) must
 * stay until the transfer is reaped (mfd__fio_reap() or _drain()) and may
 * be changed by it. */
int mfd__fio_rwv(struct mfd__fio *io, int fd, bool wr, struct iovec *iov,
		 unsigned cnt, uint64_t off);
/* Hands what is queued to the kernel without waiting for it (nothing to do
 * without a ring): the caller prepares the next transfers while the device
 * works on these. 0 or the error of a transfer done with syscalls because
 * the ring refused it. */
int mfd__fio_submit(struct mfd__fio *io);
/* Waits for every submitted transfer (short ones finished with syscalls);
 * what is queued and not submitted stays queued. The first error. */
int mfd__fio_reap(struct mfd__fio *io);
/* Every queued transfer done: submit, then reap. The first error. */
int mfd__fio_drain(struct mfd__fio *io);

#endif /* MULTIFD_FILEIO_H */
