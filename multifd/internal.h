/* SPDX-License-Identifier: MIT */
/* Internals shared by the engine's files (prefix mfd__). */
#ifndef MULTIFD_INTERNAL_H
#define MULTIFD_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "multifd/multifd.h"
#include "multifd/common/barrier.h"
#include "multifd/common/clock.h"
#include "multifd/common/digest.h"
#include "multifd/common/log.h"
#include "multifd/common/util.h"
#include "multifd/config.h"
#include "multifd/wire.h"
#include "ramblock/ramblock.h"

/*
 * iovecs for n pages of size psize at host + offsets[i] (offsets already
 * validated), contiguous pages coalesced into one iovec so that a fully
 * dirty region costs one. Returns the number of iovecs written.
 */
static inline int mfd__pages_iov(uint8_t *host, const uint64_t *offsets,
				 uint32_t n, uint64_t psize, struct iovec *iov)
{
	int iovcnt = 0;
	uint8_t *prev_end = NULL;
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *page = host + offsets[i];
		if (page == prev_end) {
			iov[iovcnt - 1].iov_len += psize;
		} else {
			iov[iovcnt].iov_base = page;
			iov[iovcnt].iov_len = psize;
			iovcnt++;
		}
		prev_end = page + psize;
	}
	return iovcnt;
}

/* Fills buf from the kernel's CSPRNG; 0 or -errno. */
int mfd__random_bytes(void *buf, size_t len);

/* Digests of every block, as docs/protocol.md defines them, computed from
 * the memory itself (one thread): the reference for the per-page digests
 * a migration keeps (mfd__session_digests). 0 or -EINVAL (more than
 * MFD_MAX_BLOCKS). */
int mfd__digest_blocks(const struct mfd__ramblock *blocks, unsigned n,
		       uint8_t (*out)[MFD_DIGEST_SIZE]);

/*
 * Verify on a byte stream: a PAGES packet's payload moves in pieces of
 * at most this many bytes (and at least one page), and each side takes
 * the page digests of a piece right after the kernel copied it, while
 * the pages are in this core's cache (256 KiB: a quarter of this
 * machine's L2), not after the whole packet, when its first pages have
 * gone back to memory.
 */
#define MFD__VERIFY_PIECE     (256u << 10)
#define MFD__VERIFY_PIECE_IOV 66 /* pieces of 4 KiB pages, + header */
static inline uint32_t mfd__verify_piece_pages(uint64_t page_size)
{
	return page_size < MFD__VERIFY_PIECE
		       ? (uint32_t)(MFD__VERIFY_PIECE / page_size)
		       : 1;
}

/*
 * Test hook (tests/test_verify.c), NULL in production: a receive worker
 * calls it for each PAGES packet (each piece of one, with verify on a
 * byte stream) right after the pages landed in guest memory and before
 * it takes their page digests, with the block's memory and the pages'
 * offsets (count pages with contents),
 * so that a test can change a placed page. Not exported (the library is
 * built with -fvisibility=hidden); it costs one load and branch per
 * packet.
 */
extern void (*mfd__test_dest_placed)(unsigned block, uint8_t *host,
				     const uint64_t *offsets, uint32_t count);
/* Tests only (NULL otherwise): sees, and may change, each post-copy page
 * request of the destination just before it is encoded (test_postcopy
 * sends a malformed one with it). */
struct mfd__page_range;
extern void (*mfd__test_dest_request)(struct mfd__page_range *r);
/* Tests only (NULL otherwise): the source's claims after the post-copy
 * switch, each page it is about to send once (an urgent lane's answer,
 * a bulk batch), so that a test counts how often a page went. */
extern void (*mfd__test_pc_claimed)(unsigned block, const uint64_t *offsets,
				    unsigned n);
/* Tests only: pages an urgent lane sends again in answer to a request,
 * claimed by a bulk batch before (its copy still on the way): the
 * destination may receive these twice. */
extern void (*mfd__test_pc_again)(unsigned block, const uint64_t *offsets,
				  unsigned n);
/* Tests only: a post-copy packet of n pages reached the destination, of
 * which `placed` were put in place (the rest were there already). */
extern void (*mfd__test_dest_pc_arrived)(unsigned block, unsigned n,
					 int placed);
/* Tests only: a DISCARD was applied, its DISCARDED not sent yet (main
 * is the destination's main channel: a test may break it there). */
struct mfd__chan;
extern void (*mfd__test_dest_discard)(struct mfd__chan *main);

/*
 * Test hook (tests/test_handover.c), NULL in production: the destination
 * calls it with its main channel just before it sends LOADED (step 0) and
 * just after (step 1), so that a test can cut the connection at exactly
 * that point of the handover.
 */
struct mfd__chan;
extern void (*mfd__test_dest_handover)(struct mfd__chan *main, int step);

/*
 * A channel's register_memory op (channels/channel.h) for the blocks, if
 * it has one: the engine's blocks as the channel's memory ranges.
 */
struct mfd__chan;
int mfd__chan_register_memory(struct mfd__chan *c,
			      const struct mfd__ramblock *blocks,
			      unsigned nblocks, uint64_t *reg_ns);

/*
 * The guest writes its memory while send workers read it: by design (a page
 * written during its send is dirty again and goes out in a later round).
 * Under ThreadSanitizer the workers' reads of guest pages are therefore not
 * tracked; everything else still is.
 */
#if defined(__SANITIZE_THREAD__)
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
#define MFD_GUEST_READS_BEGIN() AnnotateIgnoreReadsBegin(__FILE__, __LINE__)
#define MFD_GUEST_READS_END()	AnnotateIgnoreReadsEnd(__FILE__, __LINE__)
#else
#define MFD_GUEST_READS_BEGIN() ((void)0)
#define MFD_GUEST_READS_END()	((void)0)
#endif

#endif /* MULTIFD_INTERNAL_H */
