/* SPDX-License-Identifier: MIT */
/*
 * Wire format of post-copy (docs/protocol.md section 10), as pure functions
 * beside wire.h. Negotiated with MFD_FEAT_POSTCOPY.
 *
 *  DISCARD (control, src->dst on main, after the stop, before SWITCH):
 *    page ranges the destination holds stale pre-copy copies of; it drops
 *    them before it registers guest memory with userfaultfd.
 *  SWITCH (control, src->dst on main): the post-copy round begins; the
 *    destination runs the guest once every earlier round and all device
 *    state are in.
 *  PAGE_REQ (control, dst->src on an urgent lane): the pages a faulting
 *    guest thread waits for.
 *
 * Range checks (block, offset, length) are the same for DISCARD entries and
 * PAGE_REQ: one function, mfd__range_check().
 */
#ifndef MULTIFD_PCWIRE_H
#define MULTIFD_PCWIRE_H

#include <stddef.h>
#include <stdint.h>

#include "multifd/wire.h"

#define MFD_RANGE_SIZE	  24
#define MFD_SWITCH_SIZE	  16
#define MFD_DISCARD_FIXED 8
/* Ranges in one DISCARD: as many as fit a control payload. */
#define MFD_DISCARD_MAX_RANGES                                                 \
	((MFD_MAX_CTL_PAYLOAD - MFD_DISCARD_FIXED) / MFD_RANGE_SIZE)

/* Pages [offset, offset + length) of a block; bytes, page-aligned. */
struct mfd__page_range {
	uint32_t block;
	uint64_t offset;
	uint64_t length;
};

void mfd__range_encode(const struct mfd__page_range *r,
		       uint8_t out[MFD_RANGE_SIZE]);
/*
 * Decodes one range and checks it against the limits: block < nblocks
 * (MFD_EBLOCK), reserved zero (MFD_EFLAGS), offset a multiple of the
 * block's page size and < its size (MFD_EOFFSET), length at least one page,
 * a multiple of the page size and <= size - offset (MFD_ELENGTH). r is
 * filled in even when a check fails.
 */
int mfd__range_decode(const uint8_t in[MFD_RANGE_SIZE],
		      const struct mfd__wire_limits *lim,
		      struct mfd__page_range *r);

/* PAGE_REQ: one range, which must also be at most packet_pages pages
 * (MFD_ELENGTH): the source answers it with one PAGES packet. */
static inline void mfd__page_req_encode(const struct mfd__page_range *r,
					uint8_t out[MFD_RANGE_SIZE])
{
	mfd__range_encode(r, out);
}
int mfd__page_req_decode(const uint8_t in[MFD_RANGE_SIZE],
			 const struct mfd__wire_limits *lim,
			 struct mfd__page_range *r);

struct mfd__switch {
	uint32_t round; /* the post-copy round, >= 1 */
	uint64_t pages; /* pages the source sends after the switch */
};
void mfd__switch_encode(const struct mfd__switch *sw,
			uint8_t out[MFD_SWITCH_SIZE]);
/* Checks round >= 1 (MFD_EROUND) and reserved zero (MFD_EFLAGS). That it
 * follows the last ROUND is the engine's check. */
int mfd__switch_decode(const uint8_t in[MFD_SWITCH_SIZE],
		       struct mfd__switch *sw);

/* DISCARD: u32 count, u32 reserved, count ranges. */
static inline size_t mfd__discard_size(uint32_t count)
{
	return MFD_DISCARD_FIXED + (size_t)count * MFD_RANGE_SIZE;
}
/* Encodes n ranges (1..MFD_DISCARD_MAX_RANGES); returns bytes written, or
 * -EINVAL for a count out of range, -ENOSPC when cap is too small. */
int mfd__discard_encode(const struct mfd__page_range *r, uint32_t n,
			uint8_t *out, size_t cap);
/*
 * Checks a whole DISCARD payload of len bytes: count in
 * 1..MFD_DISCARD_MAX_RANGES and len exactly its size (MFD_ELENGTH),
 * reserved zero (MFD_EFLAGS), every range (mfd__range_decode), ranges in
 * increasing (block, offset) order without overlap (MFD_EOFFSET). On 0,
 * *count is the number of ranges, read with mfd__discard_get(). Nothing
 * is acted on before the whole list has passed.
 */
int mfd__discard_check(const uint8_t *in, size_t len,
		       const struct mfd__wire_limits *lim, uint32_t *count);
/* Range i (< count) of a payload that passed mfd__discard_check(). */
void mfd__discard_get(const uint8_t *in, uint32_t i, struct mfd__page_range *r);

#endif /* MULTIFD_PCWIRE_H */
