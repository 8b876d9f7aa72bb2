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
		       const struct mfd__dev_limits *lim)
{
	if (device >= lim->ndevices)
		return MFD_EDEVICE;
	if (flags & ~MFD_DEVCHUNK_KNOWN)
		return MFD_EFLAGS;
	if (len > lim->chunk_max || (len == 0 && !(flags & MFD_DEVCHUNK_LAST)))
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
	return check_chunk(h->block, h->zero_count, h->payload_len, lim);
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
	return check_chunk(m->device, m->flags, m->len, lim);
}
