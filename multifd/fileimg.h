/* SPDX-License-Identifier: MIT */
/*
 * The migration file image (docs/protocol.md 11, "File image"): a header
 * with the block table, per block a bitmap of the pages present and a page
 * area in which page N lies at a fixed offset, the device state, and an end
 * record with the digests.
 *
 * Pure codecs in the shape of wire.c: no I/O, no allocation, no globals.
 * Every decoder checks every field before the caller uses it, and says why
 * it refused in why (when non-NULL).
 */
#ifndef MULTIFD_FILEIMG_H
#define MULTIFD_FILEIMG_H

#include <stddef.h>
#include <stdint.h>

#include "multifd/common/digest.h"

#define MFD__FIMG_MAGIC	      "MFDIMAGE" /* 8 bytes, no terminator */
#define MFD__FIMG_END_MAGIC   "MFDEND\r\n"
#define MFD__FIMG_VERSION     1
#define MFD__FIMG_MAX_BLOCKS  256
#define MFD__FIMG_MAX_DEVICES 256
#define MFD__FIMG_ALIGN	      (1ULL << 20) /* page areas, device state */
#define MFD__FIMG_META_ALIGN  4096ULL	   /* header, bitmaps, end record */
#define MFD__FIMG_FIXED	      64	   /* header before the block table */
#define MFD__FIMG_ENTRY	      288	   /* one block of the block table */
#define MFD__FIMG_END_FIXED   48	   /* end record before its entries */
#define MFD__FIMG_END_ENTRY   32	   /* one block of the end record */
#define MFD__FIMG_DEV_REC     88 /* a device's record before its bytes */
#define MFD__FIMG_DEV_MAGIC   "MFDDEV\0\0"
#define MFD__FIMG_MAX_SIZE    (1ULL << 48) /* per block */

struct mfd__fimg_block {
	char name[256];	     /* 1..255 bytes, NUL-terminated */
	uint64_t size;	     /* bytes, a non-zero multiple of page_size */
	uint32_t page_size;  /* power of two, 4 KiB .. 1 GiB */
	uint64_t bitmap_off; /* the bitmap of present pages */
	uint64_t pages_off;  /* page N at pages_off + N * page_size */
};

struct mfd__fimg_hdr {
	uint32_t version;
	uint32_t nblocks;
	uint64_t header_len; /* fixed part and block table, padded */
	uint64_t dev_off;    /* device state records start here */
	uint64_t end_off;    /* the end record; 0: the save never ended */
	struct mfd__fimg_block blocks[MFD__FIMG_MAX_BLOCKS];
};

/* Per block, in the end record. */
struct mfd__fimg_digest {
	uint8_t ram[MFD__DIGEST_SIZE]; /* block digest (common/digest.h) */
	uint64_t bitmap;	       /* XXH3-64 of the bitmap's bytes */
	uint64_t present;	       /* bits set in the bitmap */
};

struct mfd__fimg_end {
	uint32_t nblocks;
	uint32_t ndevices;
	uint64_t dev_len;    /* bytes of device records from dev_off */
	uint64_t dev_digest; /* XXH3-64 of those bytes */
	struct mfd__fimg_digest blocks[MFD__FIMG_MAX_BLOCKS];
};

/* Bytes of a block's bitmap in the file (padded to 4 KiB). */
uint64_t mfd__fimg_bitmap_len(uint64_t npages);
/* Bytes of a header with nblocks blocks (padded to 4 KiB). */
uint64_t mfd__fimg_header_len(uint32_t nblocks);
/* Bytes of an end record of nblocks blocks (padded to 4 KiB). */
uint64_t mfd__fimg_end_len(uint32_t nblocks);

/*
 * Lays out h->blocks[0 .. h->nblocks) (names, sizes, page sizes set):
 * header, then each block's bitmap, then each block's page area aligned to
 * 1 MiB, then dev_off. Sets version, header_len, offsets; end_off 0.
 */
void mfd__fimg_layout(struct mfd__fimg_hdr *h);

/* Encodes h into buf (mfd__fimg_header_len(h->nblocks) bytes, padding
 * zeroed), checksum included. */
void mfd__fimg_header_encode(const struct mfd__fimg_hdr *h, uint8_t *buf);
/*
 * Decodes a header from the first len bytes of a file of file_size bytes.
 * 0, or: MFD_EBADMAGIC (not an image), MFD_EVERSION, MFD_ETRUNCATED (len
 * or the file too short for what the header says), MFD_EVERIFY (checksum),
 * MFD_EFLAGS (reserved bytes), MFD_EBLOCK (block count), MFD_ELENGTH (a
 * name, size or page size), MFD_EOFFSET (an area misaligned, overlapping
 * or out of order).
 */
int mfd__fimg_header_decode(const uint8_t *buf, size_t len, uint64_t file_size,
			    struct mfd__fimg_hdr *h, char *why, size_t whylen);
/* Sets end_off in an encoded header (and its checksum). */
void mfd__fimg_header_set_end(uint8_t *buf, uint64_t end_off);

/*
 * Checks a bitmap read from the file (mfd__fimg_bitmap_len bytes,
 * little-endian words) for npages pages: MFD_EFLAGS when a bit past the
 * block or in the padding is set. Counts the bits set into *present.
 */
int mfd__fimg_bitmap_check(const uint8_t *buf, uint64_t npages,
			   uint64_t *present, char *why, size_t whylen);
/* The digest of a bitmap's or the device state's bytes, as in the end
 * record (XXH3-64). */
uint64_t mfd__fimg_digest64(const uint8_t *buf, uint64_t len);

void mfd__fimg_end_encode(const struct mfd__fimg_end *e, uint8_t *buf);
/* Tests and fuzzing: recomputes the checksum of an end record of nblocks
 * blocks in buf (mfd__fimg_end_len(nblocks) bytes), as a writer who meant
 * its bytes would. */
void mfd__fimg_end_seal(uint8_t *buf, uint32_t nblocks);
/* Decodes an end record of len bytes against header h: MFD_EBADMAGIC,
 * MFD_ETRUNCATED, MFD_EVERIFY (its checksum), MFD_EFLAGS, MFD_EBLOCK
 * (block count differs), MFD_ELENGTH (device bytes past end_off). */
int mfd__fimg_end_decode(const uint8_t *buf, size_t len,
			 const struct mfd__fimg_hdr *h, struct mfd__fimg_end *e,
			 char *why, size_t whylen);

/* A device record: name, index and length of the bytes that follow it,
 * padded to 8 bytes. */
struct mfd__fimg_dev {
	char name[64];
	uint32_t index;
	uint64_t len;
};
void mfd__fimg_dev_encode(const struct mfd__fimg_dev *d, uint8_t *buf);
/* MFD_EBADMAGIC, MFD_EFLAGS, MFD_ELENGTH (name, or len over room). */
int mfd__fimg_dev_decode(const uint8_t *buf, uint64_t room,
			 struct mfd__fimg_dev *d, char *why, size_t whylen);
/* Bytes a record of len state bytes takes, header included. */
static inline uint64_t mfd__fimg_dev_span(uint64_t len)
{
	return MFD__FIMG_DEV_REC + ((len + 7) & ~7ULL);
}

#endif /* MULTIFD_FILEIMG_H */
