/* SPDX-License-Identifier: MIT */
/* The file image codec (docs/protocol.md 11). */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "multifd/common/le.h"
#include "multifd/fileimg.h"
#include "multifd/multifd.h"

#define HDR_CSUM 56 /* header checksum field */
#define END_CSUM 40 /* end record checksum field */

__attribute__((format(printf, 4, 5))) static int
refuse(int err, char *why, size_t whylen, const char *fmt, ...)
{
	if (why && whylen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return err;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

uint64_t mfd__fimg_bitmap_len(uint64_t npages)
{
	return align_up((npages + 63) / 64 * 8, MFD__FIMG_META_ALIGN);
}

uint64_t mfd__fimg_header_len(uint32_t nblocks)
{
	return align_up(MFD__FIMG_FIXED + (uint64_t)nblocks * MFD__FIMG_ENTRY,
			MFD__FIMG_META_ALIGN);
}

uint64_t mfd__fimg_end_len(uint32_t nblocks)
{
	return align_up(MFD__FIMG_END_FIXED +
				(uint64_t)nblocks * MFD__FIMG_END_ENTRY,
			MFD__FIMG_META_ALIGN);
}

void mfd__fimg_layout(struct mfd__fimg_hdr *h)
{
	h->version = MFD__FIMG_VERSION;
	h->header_len = mfd__fimg_header_len(h->nblocks);
	h->end_off = 0;
	uint64_t off = h->header_len;
	for (uint32_t i = 0; i < h->nblocks; i++) {
		struct mfd__fimg_block *b = &h->blocks[i];
		b->bitmap_off = off;
		off += mfd__fimg_bitmap_len(b->size / b->page_size);
	}
	off = align_up(off, MFD__FIMG_ALIGN);
	for (uint32_t i = 0; i < h->nblocks; i++) {
		struct mfd__fimg_block *b = &h->blocks[i];
		b->pages_off = off;
		off = align_up(off + b->size, MFD__FIMG_ALIGN);
	}
	h->dev_off = off;
}

static uint64_t checksum(const uint8_t *buf, size_t len, size_t field)
{
	/* The checksum field counts as zero. */
	XXH3_state_t st;
	static const uint8_t zero[8];
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, buf, field);
	XXH3_64bits_update(&st, zero, sizeof(zero));
	XXH3_64bits_update(&st, buf + field + 8, len - field - 8);
	return XXH3_64bits_digest(&st);
}

void mfd__fimg_header_encode(const struct mfd__fimg_hdr *h, uint8_t *buf)
{
	uint64_t len = mfd__fimg_header_len(h->nblocks);
	memset(buf, 0, len);
	memcpy(buf, MFD__FIMG_MAGIC, 8);
	mfd__put_le32(buf + 8, h->version);
	mfd__put_le32(buf + 12, h->nblocks);
	mfd__put_le64(buf + 16, len);
	mfd__put_le64(buf + 24, h->dev_off);
	mfd__put_le64(buf + 32, h->end_off);
	for (uint32_t i = 0; i < h->nblocks; i++) {
		const struct mfd__fimg_block *b = &h->blocks[i];
		uint8_t *e =
			buf + MFD__FIMG_FIXED + (size_t)i * MFD__FIMG_ENTRY;
		memcpy(e, b->name, strnlen(b->name, 255));
		mfd__put_le64(e + 256, b->size);
		mfd__put_le32(e + 264, b->page_size);
		mfd__put_le64(e + 272, b->bitmap_off);
		mfd__put_le64(e + 280, b->pages_off);
	}
	mfd__put_le64(buf + HDR_CSUM, checksum(buf, len, HDR_CSUM));
}

void mfd__fimg_header_set_end(uint8_t *buf, uint64_t end_off)
{
	uint64_t len = mfd__get_le64(buf + 16);
	mfd__put_le64(buf + 32, end_off);
	mfd__put_le64(buf + HDR_CSUM, checksum(buf, len, HDR_CSUM));
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static int decode_block(const uint8_t *e, uint32_t i, struct mfd__fimg_block *b,
			char *why, size_t whylen)
{
	size_t nlen = strnlen((const char *)e, 256);
	if (nlen == 0 || nlen > 255)
		return refuse(MFD_ELENGTH, why, whylen,
			      "block %u: name empty or not terminated", i);
	if (!all_zero(e + nlen, 256 - nlen) || !all_zero(e + 268, 4))
		return refuse(MFD_EFLAGS, why, whylen,
			      "block %u: reserved bytes not zero", i);
	memcpy(b->name, e, nlen + 1);
	b->size = mfd__get_le64(e + 256);
	b->page_size = mfd__get_le32(e + 264);
	b->bitmap_off = mfd__get_le64(e + 272);
	b->pages_off = mfd__get_le64(e + 280);
	uint32_t ps = b->page_size;
	if (ps < 4096 || ps > (1U << 30) || (ps & (ps - 1)))
		return refuse(MFD_ELENGTH, why, whylen,
			      "block %u (%s): page size %u is not a power of "
			      "two in 4K..1G",
			      i, b->name, ps);
	if (b->size == 0 || b->size % ps || b->size > MFD__FIMG_MAX_SIZE)
		return refuse(MFD_ELENGTH, why, whylen,
			      "block %u (%s): size %llu is not a non-zero "
			      "multiple of the page size up to 256 TiB",
			      i, b->name, (unsigned long long)b->size);
	return 0;
}

int mfd__fimg_header_decode(const uint8_t *buf, size_t len, uint64_t file_size,
			    struct mfd__fimg_hdr *h, char *why, size_t whylen)
{
	if (len < MFD__FIMG_FIXED)
		return refuse(MFD_ETRUNCATED, why, whylen,
			      "header: %zu bytes, at least %d needed", len,
			      MFD__FIMG_FIXED);
	if (memcmp(buf, MFD__FIMG_MAGIC, 8))
		return refuse(MFD_EBADMAGIC, why, whylen,
			      "header: bad magic (not a multifd image)");
	h->version = mfd__get_le32(buf + 8);
	if (h->version != MFD__FIMG_VERSION)
		return refuse(MFD_EVERSION, why, whylen,
			      "header: image version %u, this library reads %u",
			      h->version, MFD__FIMG_VERSION);
	h->nblocks = mfd__get_le32(buf + 12);
	if (h->nblocks == 0 || h->nblocks > MFD__FIMG_MAX_BLOCKS)
		return refuse(MFD_EBLOCK, why, whylen,
			      "header: %u blocks, 1..%d allowed", h->nblocks,
			      MFD__FIMG_MAX_BLOCKS);
	h->header_len = mfd__get_le64(buf + 16);
	uint64_t want = mfd__fimg_header_len(h->nblocks);
	if (h->header_len != want)
		return refuse(MFD_ELENGTH, why, whylen,
			      "header: length %llu, %u blocks need %llu",
			      (unsigned long long)h->header_len, h->nblocks,
			      (unsigned long long)want);
	if (len < want || file_size < want)
		return refuse(MFD_ETRUNCATED, why, whylen,
			      "header: %llu bytes needed, %llu there",
			      (unsigned long long)want,
			      (unsigned long long)(len < file_size
							   ? len
							   : file_size));
	if (checksum(buf, want, HDR_CSUM) != mfd__get_le64(buf + HDR_CSUM))
		return refuse(MFD_EVERIFY, why, whylen,
			      "header: checksum mismatch (header corrupt)");
	if (!all_zero(buf + 40, 16) ||
	    !all_zero(buf + MFD__FIMG_FIXED +
			      (size_t)h->nblocks * MFD__FIMG_ENTRY,
		      want - MFD__FIMG_FIXED -
			      (size_t)h->nblocks * MFD__FIMG_ENTRY))
		return refuse(MFD_EFLAGS, why, whylen,
			      "header: reserved bytes not zero");
	h->dev_off = mfd__get_le64(buf + 24);
	h->end_off = mfd__get_le64(buf + 32);
	for (uint32_t i = 0; i < h->nblocks; i++) {
		int ret = decode_block(buf + MFD__FIMG_FIXED +
					       (size_t)i * MFD__FIMG_ENTRY,
				       i, &h->blocks[i], why, whylen);
		if (ret)
			return ret;
	}
	/* The layout is a function of the block table: every offset must be
	 * the one it gives, so no two areas can overlap. */
	struct mfd__fimg_hdr l = *h;
	mfd__fimg_layout(&l);
	for (uint32_t i = 0; i < h->nblocks; i++) {
		const struct mfd__fimg_block *b = &h->blocks[i],
					     *lb = &l.blocks[i];
		if (b->bitmap_off != lb->bitmap_off ||
		    b->pages_off != lb->pages_off)
			return refuse(
				MFD_EOFFSET, why, whylen,
				"block %u (%s): bitmap at %llu, pages at "
				"%llu; the layout puts them at %llu, %llu",
				i, b->name, (unsigned long long)b->bitmap_off,
				(unsigned long long)b->pages_off,
				(unsigned long long)lb->bitmap_off,
				(unsigned long long)lb->pages_off);
	}
	if (h->dev_off != l.dev_off)
		return refuse(
			MFD_EOFFSET, why, whylen,
			"header: device state at %llu, the layout puts it "
			"at %llu",
			(unsigned long long)h->dev_off,
			(unsigned long long)l.dev_off);
	if (h->end_off &&
	    (h->end_off < h->dev_off || h->end_off % MFD__FIMG_META_ALIGN ||
	     h->end_off > MFD__FIMG_MAX_SIZE * 512))
		return refuse(MFD_EOFFSET, why, whylen,
			      "header: end record at %llu, not a 4 KiB "
			      "boundary after the device state (%llu)",
			      (unsigned long long)h->end_off,
			      (unsigned long long)h->dev_off);
	if (h->end_off &&
	    file_size < h->end_off + mfd__fimg_end_len(h->nblocks))
		return refuse(
			MFD_ETRUNCATED, why, whylen,
			"file is %llu bytes, the end record ends at %llu",
			(unsigned long long)file_size,
			(unsigned long long)(h->end_off +
					     mfd__fimg_end_len(h->nblocks)));
	return 0;
}

int mfd__fimg_bitmap_check(const uint8_t *buf, uint64_t npages,
			   uint64_t *present, char *why, size_t whylen)
{
	uint64_t len = mfd__fimg_bitmap_len(npages), n = 0;
	for (uint64_t w = 0; w < len / 8; w++) {
		uint64_t v = mfd__get_le64(buf + w * 8);
		uint64_t first = w * 64;
		if (first + 64 > npages && v) {
			uint64_t keep =
				first >= npages
					? 0
					: (1ULL << (npages - first)) - 1;
			if (v & ~keep)
				return refuse(MFD_EFLAGS, why, whylen,
					      "bitmap: page bits set past the "
					      "block's %llu pages",
					      (unsigned long long)npages);
		}
		n += (uint64_t)__builtin_popcountll(v);
	}
	*present = n;
	return 0;
}

/* The page digest's XXH3-64 (any length): the per-ISA build picked at run
 * time (common/digest.c), not libxxhash's plain one. Device state can be
 * large; the bitmaps are 64 KiB per 2 GiB of 4 KiB pages. The header's and
 * end record's checksums (at most 80 KiB, hashed around their checksum
 * field) stay with libxxhash's streaming calls. */
uint64_t mfd__fimg_digest64(const uint8_t *buf, uint64_t len)
{
	return mfd__page_digest(buf, len);
}

void mfd__fimg_end_encode(const struct mfd__fimg_end *e, uint8_t *buf)
{
	uint64_t len = mfd__fimg_end_len(e->nblocks);
	memset(buf, 0, len);
	memcpy(buf, MFD__FIMG_END_MAGIC, 8);
	mfd__put_le32(buf + 8, e->nblocks);
	mfd__put_le32(buf + 12, e->ndevices);
	mfd__put_le64(buf + 16, e->dev_len);
	mfd__put_le64(buf + 24, e->dev_digest);
	for (uint32_t i = 0; i < e->nblocks; i++) {
		uint8_t *p = buf + MFD__FIMG_END_FIXED +
			     (size_t)i * MFD__FIMG_END_ENTRY;
		memcpy(p, e->blocks[i].ram, MFD__DIGEST_SIZE);
		mfd__put_le64(p + 16, e->blocks[i].bitmap);
		mfd__put_le64(p + 24, e->blocks[i].present);
	}
	mfd__put_le64(buf + END_CSUM, checksum(buf, len, END_CSUM));
}

void mfd__fimg_end_seal(uint8_t *buf, uint32_t nblocks)
{
	uint64_t len = mfd__fimg_end_len(nblocks);
	mfd__put_le64(buf + END_CSUM, checksum(buf, len, END_CSUM));
}

int mfd__fimg_end_decode(const uint8_t *buf, size_t len,
			 const struct mfd__fimg_hdr *h, struct mfd__fimg_end *e,
			 char *why, size_t whylen)
{
	uint64_t want = mfd__fimg_end_len(h->nblocks);
	if (len < want)
		return refuse(MFD_ETRUNCATED, why, whylen,
			      "end record: %zu bytes, %llu needed", len,
			      (unsigned long long)want);
	if (memcmp(buf, MFD__FIMG_END_MAGIC, 8))
		return refuse(MFD_EBADMAGIC, why, whylen,
			      "end record: bad magic at %llu",
			      (unsigned long long)h->end_off);
	if (checksum(buf, want, END_CSUM) != mfd__get_le64(buf + END_CSUM))
		return refuse(
			MFD_EVERIFY, why, whylen,
			"end record: checksum mismatch (digests corrupt)");
	e->nblocks = mfd__get_le32(buf + 8);
	e->ndevices = mfd__get_le32(buf + 12);
	e->dev_len = mfd__get_le64(buf + 16);
	e->dev_digest = mfd__get_le64(buf + 24);
	if (e->nblocks != h->nblocks)
		return refuse(MFD_EBLOCK, why, whylen,
			      "end record: %u blocks, the header %u",
			      e->nblocks, h->nblocks);
	if (!all_zero(buf + 32, 8) ||
	    !all_zero(buf + MFD__FIMG_END_FIXED +
			      (size_t)e->nblocks * MFD__FIMG_END_ENTRY,
		      want - MFD__FIMG_END_FIXED -
			      (size_t)e->nblocks * MFD__FIMG_END_ENTRY))
		return refuse(MFD_EFLAGS, why, whylen,
			      "end record: reserved bytes not zero");
	if (e->ndevices > MFD__FIMG_MAX_DEVICES ||
	    e->dev_len > h->end_off - h->dev_off)
		return refuse(MFD_ELENGTH, why, whylen,
			      "end record: %u devices, %llu bytes of device "
			      "state: past the end record",
			      e->ndevices, (unsigned long long)e->dev_len);
	for (uint32_t i = 0; i < e->nblocks; i++) {
		const uint8_t *p = buf + MFD__FIMG_END_FIXED +
				   (size_t)i * MFD__FIMG_END_ENTRY;
		struct mfd__fimg_digest *d = &e->blocks[i];
		memcpy(d->ram, p, MFD__DIGEST_SIZE);
		d->bitmap = mfd__get_le64(p + 16);
		d->present = mfd__get_le64(p + 24);
		uint64_t npages = h->blocks[i].size / h->blocks[i].page_size;
		if (d->present > npages)
			return refuse(MFD_ELENGTH, why, whylen,
				      "end record: block %u has %llu pages "
				      "present of %llu",
				      i, (unsigned long long)d->present,
				      (unsigned long long)npages);
	}
	return 0;
}

void mfd__fimg_dev_encode(const struct mfd__fimg_dev *d, uint8_t *buf)
{
	memset(buf, 0, MFD__FIMG_DEV_REC);
	memcpy(buf, MFD__FIMG_DEV_MAGIC, 8);
	mfd__put_le32(buf + 8, d->index);
	mfd__put_le64(buf + 16, d->len);
	memcpy(buf + 24, d->name, strnlen(d->name, 63));
}

int mfd__fimg_dev_decode(const uint8_t *buf, uint64_t room,
			 struct mfd__fimg_dev *d, char *why, size_t whylen)
{
	if (room < MFD__FIMG_DEV_REC)
		return refuse(MFD_ELENGTH, why, whylen,
			      "device record: %llu bytes left, %d needed",
			      (unsigned long long)room, MFD__FIMG_DEV_REC);
	if (memcmp(buf, MFD__FIMG_DEV_MAGIC, 8))
		return refuse(MFD_EBADMAGIC, why, whylen,
			      "device record: bad magic");
	size_t nlen = strnlen((const char *)buf + 24, 64);
	if (nlen == 0 || nlen > 63)
		return refuse(MFD_ELENGTH, why, whylen,
			      "device record: name empty or not terminated");
	if (!all_zero(buf + 12, 4) || !all_zero(buf + 24 + nlen, 64 - nlen))
		return refuse(MFD_EFLAGS, why, whylen,
			      "device record: reserved bytes not zero");
	memcpy(d->name, buf + 24, nlen + 1);
	d->index = mfd__get_le32(buf + 8);
	d->len = mfd__get_le64(buf + 16);
	if (d->len > room - MFD__FIMG_DEV_REC ||
	    mfd__fimg_dev_span(d->len) > room)
		return refuse(MFD_ELENGTH, why, whylen,
			      "device record %s: %llu bytes, %llu left",
			      d->name, (unsigned long long)d->len,
			      (unsigned long long)(room - MFD__FIMG_DEV_REC));
	return 0;
}
