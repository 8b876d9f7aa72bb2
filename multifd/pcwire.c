/* SPDX-License-Identifier: MIT */
/*
 * Post-copy codec (protocol section 10). Pure functions: no I/O, no
 * allocation, no global state; sums of wire values in 64 bits are checked
 * against a bound before they are formed, so no check wraps around.
 */
#include <errno.h>
#include <limits.h>

#include "multifd/multifd.h"
#include "multifd/pcwire.h"

void mfd__range_encode(const struct mfd__page_range *r,
		       uint8_t out[MFD_RANGE_SIZE])
{
	mfd__put_le32(out + 0, r->block);
	mfd__put_le32(out + 4, 0);
	mfd__put_le64(out + 8, r->offset);
	mfd__put_le64(out + 16, r->length);
}

int mfd__range_decode(const uint8_t in[MFD_RANGE_SIZE],
		      const struct mfd__wire_limits *lim,
		      struct mfd__page_range *r)
{
	const struct mfd__block_desc *b;
	uint64_t mask;

	r->block = mfd__get_le32(in + 0);
	r->offset = mfd__get_le64(in + 8);
	r->length = mfd__get_le64(in + 16);

	if (r->block >= lim->nblocks)
		return MFD_EBLOCK;
	if (mfd__get_le32(in + 4) != 0)
		return MFD_EFLAGS;
	b = &lim->blocks[r->block];
	mask = (uint64_t)b->page_size - 1;
	if ((r->offset & mask) != 0 || r->offset >= b->size)
		return MFD_EOFFSET;
	/* offset < size, so size - offset does not wrap. */
	if (r->length == 0 || (r->length & mask) != 0 ||
	    r->length > b->size - r->offset)
		return MFD_ELENGTH;
	return 0;
}

int mfd__page_req_decode(const uint8_t in[MFD_RANGE_SIZE],
			 const struct mfd__wire_limits *lim,
			 struct mfd__page_range *r)
{
	int ret = mfd__range_decode(in, lim, r);

	if (ret)
		return ret;
	/* page_size <= 2^30 and packet_pages <= 1024: no overflow. */
	if (r->length >
	    (uint64_t)lim->packet_pages * lim->blocks[r->block].page_size)
		return MFD_ELENGTH;
	return 0;
}

void mfd__switch_encode(const struct mfd__switch *sw,
			uint8_t out[MFD_SWITCH_SIZE])
{
	mfd__put_le32(out + 0, sw->round);
	mfd__put_le32(out + 4, 0);
	mfd__put_le64(out + 8, sw->pages);
}

int mfd__switch_decode(const uint8_t in[MFD_SWITCH_SIZE],
		       struct mfd__switch *sw)
{
	sw->round = mfd__get_le32(in + 0);
	sw->pages = mfd__get_le64(in + 8);
	if (mfd__get_le32(in + 4) != 0)
		return MFD_EFLAGS;
	return sw->round >= 1 ? 0 : MFD_EROUND;
}

int mfd__discard_encode(const struct mfd__page_range *r, uint32_t n,
			uint8_t *out, size_t cap)
{
	size_t need = mfd__discard_size(n);

	if (n < 1 || n > MFD_DISCARD_MAX_RANGES)
		return -EINVAL;
	if (need > cap)
		return -ENOSPC;
	mfd__put_le32(out + 0, n);
	mfd__put_le32(out + 4, 0);
	for (uint32_t i = 0; i < n; i++)
		mfd__range_encode(&r[i], out + MFD_DISCARD_FIXED +
						 (size_t)i * MFD_RANGE_SIZE);
	return (int)need;
}

int mfd__discard_check(const uint8_t *in, size_t len,
		       const struct mfd__wire_limits *lim, uint32_t *count)
{
	struct mfd__page_range prev = { 0 }, r;
	uint32_t n;
	int ret;

	*count = 0;
	if (len < MFD_DISCARD_FIXED)
		return MFD_ELENGTH;
	n = mfd__get_le32(in + 0);
	if (n < 1 || n > MFD_DISCARD_MAX_RANGES || len != mfd__discard_size(n))
		return MFD_ELENGTH;
	if (mfd__get_le32(in + 4) != 0)
		return MFD_EFLAGS;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *p =
			in + MFD_DISCARD_FIXED + (size_t)i * MFD_RANGE_SIZE;

		if ((ret = mfd__range_decode(p, lim, &r)))
			return ret;
		/* prev ends within its block (checked), so no wrap. */
		if (i > 0 && (r.block < prev.block ||
			      (r.block == prev.block &&
			       r.offset < prev.offset + prev.length)))
			return MFD_EOFFSET;
		prev = r;
	}
	*count = n;
	return 0;
}

void mfd__discard_get(const uint8_t *in, uint32_t i, struct mfd__page_range *r)
{
	const uint8_t *p = in + MFD_DISCARD_FIXED + (size_t)i * MFD_RANGE_SIZE;

	r->block = mfd__get_le32(p + 0);
	r->offset = mfd__get_le64(p + 8);
	r->length = mfd__get_le64(p + 16);
}
