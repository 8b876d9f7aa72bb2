/* SPDX-License-Identifier: MIT */
/*
 * userfaultfd, shared by the uffd-wp tracker (tracker_uffd.c) and post-copy
 * placement on the destination (docs/protocol.md 10.4).
 *
 * Post-copy (MISSING mode): guest memory is registered so that a read or
 * write of a page that is not populated stops the thread and queues a fault
 * event; the page is then populated atomically with UFFDIO_COPY (from a
 * staging buffer) or UFFDIO_ZEROPAGE, which also wakes the threads waiting
 * for it. The kernel never overwrites a populated page (EEXIST), so the
 * first placement wins and the guest's own later writes stay.
 *
 * A received bitmap, one bit per page of the block's page size, says which
 * pages are in place (or, for a zero page of pre-copy, known to be zero):
 * mfd__pc_place() skips those and sets the bit after a placement, so each
 * page lands once whichever lane brings it first. Any thread may place; the
 * bitmap's words are read and set atomically.
 */
#ifndef MULTIFD_RAMBLOCK_UFFD_H
#define MULTIFD_RAMBLOCK_UFFD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "ramblock/ramblock.h"

/* A userfaultfd (O_CLOEXEC | O_NONBLOCK); fd or -errno. kernel_faults:
 * first one that also catches the kernel's accesses (the syscall, else
 * /dev/userfaultfd), then user-mode faults only; else the other way
 * round. *user_only (may be NULL) says which was made. The UFFDIO_API
 * handshake is the caller's. */
int mfd__uffd_open(bool kernel_faults, bool *user_only);

struct mfd__uffd_missing {
	int fd;
	/* Only user-mode faults wait for a page (no privilege for more):
	 * the kernel's accesses to a missing page (KVM, vhost, read(2)
	 * into guest memory) fail instead (EFAULT). */
	bool user_only;
};

/* Opens a userfaultfd for MISSING mode: 0, -ENOTSUP (no userfaultfd, or no
 * MISSING support for anonymous memory), or -errno. */
int mfd__uffd_missing_open(struct mfd__uffd_missing *u);
void mfd__uffd_missing_close(struct mfd__uffd_missing *u);
/* Registers [addr, addr + len) (page-aligned) in MISSING mode; -ENOTSUP
 * when the range cannot be placed by UFFDIO_COPY and UFFDIO_ZEROPAGE. */
int mfd__uffd_missing_register(struct mfd__uffd_missing *u, void *addr,
			       uint64_t len);
int mfd__uffd_missing_unregister(struct mfd__uffd_missing *u, void *addr,
				 uint64_t len);

/* Populates [dst, dst + len) atomically with the bytes at src (UFFDIO_COPY),
 * or with zeros when src is NULL (UFFDIO_ZEROPAGE), and wakes the threads
 * waiting on it. 1 placed, 0 already populated (EEXIST: not an error, and
 * nothing was written), -errno. Retries the kernel's partial copies
 * (EAGAIN). With more than one page, 0 means some page was populated
 * already and the rest were placed one by one. */
int mfd__uffd_place(struct mfd__uffd_missing *u, void *dst, const void *src,
		    uint64_t len);

/* Waits at most timeout_ms (-1: no bound) for the next fault: 1 with its
 * address in *addr, 0 on timeout, -errno. Events other than page faults
 * are skipped. */
int mfd__uffd_next_fault(struct mfd__uffd_missing *u, uint64_t *addr,
			 int timeout_ms);
/* Wakes the threads waiting on [addr, addr + len). */
int mfd__uffd_wake(struct mfd__uffd_missing *u, void *addr, uint64_t len);

/* Drops the pages of [addr, addr + len) (MADV_DONTNEED; page-aligned), so
 * that they fault once registered. A DISCARD range, before registration. */
int mfd__uffd_discard(void *addr, uint64_t len);

/*
 * Many ranges dropped with few system calls: process_madvise() of the
 * calling process with MADV_DONTNEED (Linux 6.13 on), MFD_DROP_BATCH
 * ranges a call, one TLB flush for them; madvise() range by range where
 * the kernel refuses it. Measured on 2 GiB of huge-page-backed memory,
 * 188,547 scattered pages in 120,764 runs: 200-370 ms with one madvise a
 * run, 82-87 ms in 118 calls. mfd__drop_init, mfd__drop_add per range,
 * mfd__drop_finish (flushes, closes); one thread. 0 or -errno.
 */
#define MFD_DROP_BATCH 1024
struct mfd__drop {
	struct iovec v[MFD_DROP_BATCH];
	unsigned n;
	int pidfd; /* -1: madvise */
};
void mfd__drop_init(struct mfd__drop *d);
int mfd__drop_add(struct mfd__drop *d, void *addr, uint64_t len);
int mfd__drop_finish(struct mfd__drop *d);

/* The received bitmap of a block, read and set atomically. */
static inline bool mfd__pc_received(const struct mfd__bitmap *rx, uint64_t i)
{
	return (__atomic_load_n(&rx->words[i >> 6], __ATOMIC_ACQUIRE) >>
		(i & 63)) &
	       1;
}

/*
 * Places page i (page_size bytes at base + i * page_size) from src, or a
 * zero page when src is NULL, unless rx says it is in place; then sets its
 * bit. 1 placed now, 0 in place already (the bit, or EEXIST), -errno.
 * present, when not NULL, counts the bits set (atomically): exactly one
 * call per page adds to it, whichever of two racing placers that is.
 */
int mfd__pc_place(struct mfd__uffd_missing *u, struct mfd__bitmap *rx,
		  uint8_t *base, uint32_t page_size, uint64_t i,
		  const void *src, uint64_t *present);
/* Sets bit i of rx (atomic, release); true when it was clear. */
static inline bool mfd__pc_mark(struct mfd__bitmap *rx, uint64_t i)
{
	uint64_t bit = 1ULL << (i & 63);

	return !(__atomic_fetch_or(&rx->words[i >> 6], bit, __ATOMIC_RELEASE) &
		 bit);
}

#endif /* MULTIFD_RAMBLOCK_UFFD_H */
