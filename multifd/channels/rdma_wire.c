/* SPDX-License-Identifier: MIT */
/* RDMA channel messages: encode and check (rdma_wire.h). */
#include "multifd/multifd.h"
#include "multifd/channels/rdma_wire.h"
#include "multifd/common/le.h"

void mfd__rdma_hdr_encode(const struct mfd__rdma_hdr *h, uint8_t *out)
{
	mfd__put_le32(out, MFD__RDMA_MAGIC);
	mfd__put_le16(out + 4, h->type);
	mfd__put_le16(out + 6, h->credits);
	mfd__put_le32(out + 8, h->len);
	mfd__put_le32(out + 12, 0);
}

int mfd__rdma_hdr_decode(const uint8_t *buf, size_t msg_len,
			 unsigned max_credits, struct mfd__rdma_hdr *h)
{
	if (msg_len < MFD__RDMA_HDR_SIZE || msg_len > MFD__RDMA_SLOT_SIZE)
		return MFD_ELENGTH;
	if (mfd__get_le32(buf) != MFD__RDMA_MAGIC)
		return MFD_EBADMAGIC;
	struct mfd__rdma_hdr d = { .type = mfd__get_le16(buf + 4),
				   .credits = mfd__get_le16(buf + 6),
				   .len = mfd__get_le32(buf + 8) };
	if (d.len != msg_len - MFD__RDMA_HDR_SIZE || mfd__get_le32(buf + 12))
		return MFD_ELENGTH;
	/* More credits than we have sends outstanding is a lying peer. */
	if (d.credits > max_credits)
		return MFD_ECOUNT;
	switch (d.type) {
	case MFD__RDMA_CREDIT:
	case MFD__RDMA_FENCE:
		if (d.len)
			return MFD_ELENGTH;
		break;
	case MFD__RDMA_REGIONS:
	case MFD__RDMA_DATA:
		break;
	default:
		return MFD_ETYPE;
	}
	*h = d;
	return 0;
}

void mfd__rdma_regions_encode(const struct mfd__rdma_region *r, unsigned n,
			      uint8_t *out)
{
	for (unsigned i = 0; i < n; i++, out += MFD__RDMA_REGION_SIZE) {
		mfd__put_le64(out, r[i].addr);
		mfd__put_le64(out + 8, r[i].len);
		mfd__put_le32(out + 16, r[i].rkey);
		mfd__put_le32(out + 20, 0);
	}
}

int mfd__rdma_regions_decode(const uint8_t *p, size_t len,
			     struct mfd__rdma_region *out, unsigned max,
			     unsigned *n)
{
	if (len % MFD__RDMA_REGION_SIZE || len / MFD__RDMA_REGION_SIZE > max)
		return MFD_ELENGTH;
	unsigned cnt = (unsigned)(len / MFD__RDMA_REGION_SIZE);
	for (unsigned i = 0; i < cnt; i++, p += MFD__RDMA_REGION_SIZE) {
		struct mfd__rdma_region r = { .addr = mfd__get_le64(p),
					      .len = mfd__get_le64(p + 8),
					      .rkey = mfd__get_le32(p + 16) };
		if (mfd__get_le32(p + 20) || r.addr + r.len < r.addr)
			return MFD_EFLAGS;
		out[i] = r;
	}
	*n = cnt;
	return 0;
}
