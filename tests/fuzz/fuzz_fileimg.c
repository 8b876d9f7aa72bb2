/* SPDX-License-Identifier: MIT */
/*
 * The file image's parsers (protocol section 11, multifd/fileimg.h): what
 * a restore reads from a file it did not write. Input: u8 selector, then:
 *
 *   selector % 4 == 0: a header (fixed part and block table); with
 *     selector bit 4 the harness first re-seals its checksum (when the
 *     header length field fits the input), so the fields behind it are
 *     reached; bits 5-7 add (n * 1 MiB) to the file size it claims;
 *   selector % 4 == 1: a bitmap: u32 npages (1..2^18 after a modulo),
 *     then its bytes (zero-filled to the bitmap's length);
 *   selector % 4 == 2: an end record of a fixed two-block header (bit 4:
 *     re-sealed, as above);
 *   selector % 4 == 3: a device record, the room being the input.
 *
 * An accepted header lays out like mfd__fimg_layout (areas aligned,
 * disjoint, in order, inside the claimed file) and re-encodes to the same
 * bytes; an accepted bitmap has no bit past npages and counts its bits;
 * an accepted end record re-encodes to the same bytes and keeps the
 * device state before itself; an accepted device record fits its room.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "fileimg_two.h"
#include "multifd/common/le.h"
#include "multifd/fileimg.h"
#include "multifd/multifd.h"

static uint8_t buf[1 << 17], again[1 << 17];

static void header(const uint8_t *p, size_t n, uint8_t sel)
{
	if (n > sizeof(buf))
		n = sizeof(buf);
	memcpy(buf, p, n);
	if ((sel & 0x10) && n >= MFD__FIMG_FIXED &&
	    mfd__get_le64(buf + 16) <= n && mfd__get_le64(buf + 16) >= 64)
		mfd__fimg_header_set_end(buf, mfd__get_le64(buf + 32));
	uint64_t fsize = n + (uint64_t)(sel >> 5) * (1ULL << 20);
	static struct mfd__fimg_hdr h, l;
	if (mfd__fimg_header_decode(buf, n, fsize, &h, NULL, 0))
		return;
	FUZZ_ASSERT(h.nblocks >= 1 && h.nblocks <= MFD__FIMG_MAX_BLOCKS);
	l = h;
	mfd__fimg_layout(&l);
	uint64_t prev = h.header_len;
	for (uint32_t i = 0; i < h.nblocks; i++) {
		const struct mfd__fimg_block *b = &h.blocks[i];
		FUZZ_ASSERT(b->bitmap_off == l.blocks[i].bitmap_off);
		FUZZ_ASSERT(b->pages_off == l.blocks[i].pages_off);
		FUZZ_ASSERT(b->bitmap_off % MFD__FIMG_META_ALIGN == 0);
		FUZZ_ASSERT(b->pages_off % MFD__FIMG_ALIGN == 0);
		FUZZ_ASSERT(b->bitmap_off >= h.header_len);
		FUZZ_ASSERT(b->size && b->size % b->page_size == 0);
		FUZZ_ASSERT(b->pages_off >= prev);
		prev = b->pages_off + b->size;
	}
	FUZZ_ASSERT(h.dev_off >= prev);
	FUZZ_ASSERT(!h.end_off ||
		    (h.end_off >= h.dev_off &&
		     h.end_off + mfd__fimg_end_len(h.nblocks) <= fsize));
	mfd__fimg_header_encode(&h, again);
	mfd__fimg_header_set_end(again, h.end_off);
	FUZZ_ASSERT(memcmp(again, buf, h.header_len) == 0);
}

static void bitmap(const uint8_t *p, size_t n)
{
	if (n < 4)
		return;
	uint64_t npages = mfd__get_le32(p) % (1U << 18) + 1;
	uint64_t len = mfd__fimg_bitmap_len(npages);
	memset(buf, 0, len);
	memcpy(buf, p + 4, n - 4 < len ? n - 4 : len);
	uint64_t present = 0, count = 0;
	if (mfd__fimg_bitmap_check(buf, npages, &present, NULL, 0))
		return;
	for (uint64_t i = 0; i < len * 8; i++) {
		bool set = buf[i / 8] >> (i % 8) & 1;
		FUZZ_ASSERT(!set || i < npages);
		count += set;
	}
	FUZZ_ASSERT(count == present);
}

static void end_record(const uint8_t *p, size_t n, uint8_t sel)
{
	static struct mfd__fimg_hdr h;
	static struct mfd__fimg_end e;
	fimg_two_blocks(&h);
	h.end_off = h.dev_off + (4 << 20);
	uint64_t len = mfd__fimg_end_len(2);
	memset(buf, 0, len);
	memcpy(buf, p, n < len ? n : len);
	if (sel & 0x10)
		mfd__fimg_end_seal(buf, 2);
	if (mfd__fimg_end_decode(buf, n < len ? n : len, &h, &e, NULL, 0))
		return;
	FUZZ_ASSERT(e.nblocks == 2);
	FUZZ_ASSERT(h.dev_off + e.dev_len <= h.end_off);
	for (int i = 0; i < 2; i++)
		FUZZ_ASSERT(e.blocks[i].present <=
			    h.blocks[i].size / h.blocks[i].page_size);
	mfd__fimg_end_encode(&e, again);
	FUZZ_ASSERT(memcmp(again, buf, len) == 0);
}

static void device(const uint8_t *p, size_t n)
{
	struct mfd__fimg_dev d;
	if (mfd__fimg_dev_decode(p, n, &d, NULL, 0))
		return;
	FUZZ_ASSERT(mfd__fimg_dev_span(d.len) <= n);
	FUZZ_ASSERT(d.name[0] && strlen(d.name) < sizeof(d.name));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t sel = data[0];
	switch (sel % 4) {
	case 0:
		header(data + 1, size - 1, sel);
		break;
	case 1:
		bitmap(data + 1, size - 1);
		break;
	case 2:
		end_record(data + 1, size - 1, sel);
		break;
	default:
		device(data + 1, size - 1);
	}
	return 0;
}
