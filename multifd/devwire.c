/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "multifd/devwire.h"
#include "multifd/multifd.h"

#define DEVICES_FIXED 16
#define NAME_HDR      4

size_t mfd__devices_size(const struct mfd__devices *d)
{
	size_t n = DEVICES_FIXED;
	for (uint32_t i = 0; i < d->ndevices; i++)
		n += NAME_HDR + strnlen(d->names[i], MFD_MAX_DEV_NAME_WIRE + 1);
	return n;
}

int mfd__devices_encode(const struct mfd__devices *d, uint8_t *out, size_t cap)
{
	if (d->ndevices < 1 || d->ndevices > MFD_MAX_DEVICES_WIRE ||
	    (d->transfer != MFD_DEV_XFER_MAIN &&
	     d->transfer != MFD_DEV_XFER_MULTIFD) ||
	    d->chunk_max < MFD_DEV_CHUNK_MIN ||
	    d->chunk_max > MFD_DEV_CHUNK_MAX)
		return -EINVAL;
	size_t need = mfd__devices_size(d);
	if (need > cap || need > MFD_MAX_CTL_PAYLOAD)
		return -ENOSPC;
	mfd__put_le32(out + 0, d->ndevices);
	mfd__put_le32(out + 4, d->transfer);
	mfd__put_le32(out + 8, d->chunk_max);
	mfd__put_le32(out + 12, 0);
	uint8_t *p = out + DEVICES_FIXED;
	for (uint32_t i = 0; i < d->ndevices; i++) {
		size_t l = strnlen(d->names[i], MFD_MAX_DEV_NAME_WIRE + 1);
		if (l < 1 || l > MFD_MAX_DEV_NAME_WIRE)
			return -EINVAL;
		mfd__put_le16(p, (uint16_t)l);
		mfd__put_le16(p + 2, 0);
		memcpy(p + NAME_HDR, d->names[i], l);
		p += NAME_HDR + l;
	}
	return (int)need;
}

int mfd__devices_decode(const uint8_t *in, size_t len, struct mfd__devices *d,
			char (*names)[MFD_MAX_DEV_NAME_WIRE + 1])
{
	if (len < DEVICES_FIXED)
		return MFD_ELENGTH;
	d->ndevices = mfd__get_le32(in + 0);
	d->transfer = mfd__get_le32(in + 4);
	d->chunk_max = mfd__get_le32(in + 8);
	d->names = names;
	if (mfd__get_le32(in + 12) != 0)
		return MFD_EFLAGS;
	if (d->ndevices < 1 || d->ndevices > MFD_MAX_DEVICES_WIRE)
		return MFD_EDEVICE;
	if (d->transfer != MFD_DEV_XFER_MAIN &&
	    d->transfer != MFD_DEV_XFER_MULTIFD)
		return MFD_EDEVICE;
	if (d->chunk_max < MFD_DEV_CHUNK_MIN ||
	    d->chunk_max > MFD_DEV_CHUNK_MAX)
		return MFD_EDEVICE;
	size_t pos = DEVICES_FIXED;
	for (uint32_t i = 0; i < d->ndevices; i++) {
		if (len - pos < NAME_HDR)
			return MFD_ELENGTH;
		uint16_t l = mfd__get_le16(in + pos);
		if (mfd__get_le16(in + pos + 2) != 0)
			return MFD_EFLAGS;
		pos += NAME_HDR;
		if (l < 1 || l > MFD_MAX_DEV_NAME_WIRE)
			return MFD_EDEVICE;
		if (len - pos < l)
			return MFD_ELENGTH;
		if (memchr(in + pos, 0, l))
			return MFD_EDEVICE;
		memcpy(names[i], in + pos, l);
		names[i][l] = 0;
		pos += l;
		for (uint32_t j = 0; j < i; j++)
			if (!strcmp(names[j], names[i]))
				return MFD_EDEVICE;
	}
	return pos == len ? 0 : MFD_ELENGTH;
}

static int check_chunk(uint32_t device, uint32_t flags, uint64_t len,
		       const struct mfd__dev_limits *lim, uint32_t known)
{
	if (device >= lim->ndevices)
		return MFD_EDEVICE;
	if (flags & ~known)
		return MFD_EFLAGS;
	uint64_t max = lim->chunk_max;
	if (flags & MFD_DEVCHUNK_PLACED)
		max += MFD_DEVPLACE_MAX_HDR;
	if (len > max || (len == 0 && !(flags & MFD_DEVCHUNK_LAST)))
		return MFD_ELENGTH;
	return 0;
}

int mfd__devplace_encode(const struct mfd__devplace *p, uint8_t *out)
{
	if (p->nseg < 1 || p->nseg > MFD_DEVPLACE_MAX_SEGS)
		return -EINVAL;
	mfd__put_le32(out + 0, p->nseg);
	mfd__put_le32(out + 4, p->fence);
	uint8_t *e = out + MFD_DEVPLACE_FIXED;
	for (uint32_t i = 0; i < p->nseg; i++, e += MFD_DEVPLACE_ENTRY) {
		const struct mfd__devseg *s = &p->seg[i];
		if (!s->len || (s->flags & ~MFD_DEVSEG_INLINE) ||
		    ((s->flags & MFD_DEVSEG_INLINE) && s->mem_off))
			return -EINVAL;
		mfd__put_le64(e + 0, s->mem_off);
		mfd__put_le32(e + 8, s->len);
		mfd__put_le32(e + 12, s->flags);
	}
	return (int)mfd__devplace_size(p->nseg);
}

int mfd__devplace_decode_fixed(const uint8_t in[MFD_DEVPLACE_FIXED],
			       uint32_t seq, uint32_t payload_len,
			       struct mfd__devplace *p)
{
	p->nseg = mfd__get_le32(in + 0);
	p->fence = mfd__get_le32(in + 4);
	if (p->nseg < 1 || p->nseg > MFD_DEVPLACE_MAX_SEGS)
		return MFD_ECOUNT;
	if (p->fence > seq)
		return MFD_EROUND;
	if (payload_len < mfd__devplace_size(p->nseg))
		return MFD_ELENGTH;
	return 0;
}

int mfd__devplace_decode_segs(const uint8_t *in, uint32_t payload_len,
			      uint32_t chunk_max, uint64_t mem_size,
			      struct mfd__devplace *p)
{
	uint64_t data = payload_len - mfd__devplace_size(p->nseg), sum = 0;
	for (uint32_t i = 0; i < p->nseg; i++, in += MFD_DEVPLACE_ENTRY) {
		struct mfd__devseg *s = &p->seg[i];
		s->mem_off = mfd__get_le64(in + 0);
		s->len = mfd__get_le32(in + 8);
		s->flags = mfd__get_le32(in + 12);
		if (s->flags & ~MFD_DEVSEG_INLINE)
			return MFD_EFLAGS;
		if (!s->len)
			return MFD_ELENGTH;
		sum += s->len;
		if (s->flags & MFD_DEVSEG_INLINE) {
			if (s->mem_off)
				return MFD_EOFFSET;
		} else if (mem_size != UINT64_MAX &&
			   (s->mem_off > mem_size ||
			    s->len > mem_size - s->mem_off)) {
			return MFD_EOFFSET;
		}
	}
	if (sum != data || sum > chunk_max)
		return MFD_ELENGTH;
	return 0;
}

int mfd__devpkt_validate(const struct mfd__pkt_hdr *h,
			 const struct mfd__dev_limits *lim)
{
	if (h->type != MFD_PKT_DEVICE)
		return MFD_ETYPE;
	if (h->round != 0)
		return MFD_EROUND;
	return check_chunk(h->block, h->zero_count, h->payload_len, lim,
			   MFD_DEVCHUNK_KNOWN);
}

void mfd__devdata_prefix_encode(const struct mfd__devdata *m,
				uint8_t out[MFD_DEVDATA_PREFIX])
{
	mfd__put_le32(out + 0, m->device);
	mfd__put_le32(out + 4, m->seq);
	mfd__put_le32(out + 8, m->flags);
	mfd__put_le32(out + 12, 0);
}

int mfd__devdata_decode(const uint8_t *in, size_t len,
			const struct mfd__dev_limits *lim,
			struct mfd__devdata *m)
{
	if (len < MFD_DEVDATA_PREFIX)
		return MFD_ELENGTH;
	m->device = mfd__get_le32(in + 0);
	m->seq = mfd__get_le32(in + 4);
	m->flags = mfd__get_le32(in + 8);
	if (mfd__get_le32(in + 12) != 0)
		return MFD_EFLAGS;
	m->data = in + MFD_DEVDATA_PREFIX;
	m->len = (uint32_t)(len - MFD_DEVDATA_PREFIX);
	return check_chunk(m->device, m->flags, m->len, lim, MFD_DEVCHUNK_LAST);
}
