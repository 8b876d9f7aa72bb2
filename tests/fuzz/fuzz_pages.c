/* SPDX-License-Identifier: MIT */
/*
 * A PAGES packet as the destination handles it: header decode, validation
 * against the negotiated limits, offsets decode. The limits come from the
 * input too, so block sizes, page sizes and packet_pages vary:
 *
 *   u8 nblocks-1 (mod 4), per block: u8 page shift (12 + x mod 19),
 *   u32 pages in the block (0 taken as 1), then u16 packet_pages-1 (mod
 *   1024), then the 32-byte packet header, then the offsets.
 *
 * After an accepted packet, every page it names must lie inside its block
 * and be named once, exactly as recv_pages() relies on.
 */
#include <string.h>

#include "fuzz.h"
#include "multifd/multifd.h"
#include "multifd/wire.h"

#define NBLK 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mfd__block_desc blocks[NBLK];
	struct mfd__wire_limits lim = { .blocks = blocks };
	if (size < 1)
		return 0;
	lim.nblocks = (data[0] % NBLK) + 1u;
	data++, size--;
	for (uint32_t i = 0; i < lim.nblocks; i++) {
		if (size < 5)
			return 0;
		blocks[i].page_size = 1u << (12 + data[0] % 19);
		uint32_t pages = mfd__get_le32(data + 1);
		blocks[i].size =
			(uint64_t)(pages ? pages : 1) * blocks[i].page_size;
		blocks[i].name[0] = 0;
		data += 5, size -= 5;
	}
	if (size < 2 + MFD_PKT_HDR_SIZE)
		return 0;
	lim.packet_pages = mfd__get_le16(data) % MFD_MAX_PACKET_PAGES + 1u;
	data += 2, size -= 2;

	struct mfd__pkt_hdr h;
	int ret = mfd__pkt_decode(data, &h);
	data += MFD_PKT_HDR_SIZE, size -= MFD_PKT_HDR_SIZE;
	if (ret || h.type != MFD_PKT_PAGES)
		return 0;
	if (mfd__pkt_validate(&h, &lim))
		return 0;
	const struct mfd__block_desc *b = &blocks[h.block];
	size_t olen = mfd__pkt_offsets_size(&h);
	FUZZ_ASSERT(olen <= MFD_MAX_PACKET_PAGES * sizeof(uint64_t));
	FUZZ_ASSERT((uint64_t)h.payload_len ==
		    (uint64_t)h.count * b->page_size);
	if (size < olen)
		return 0; /* a truncated connection */
	/* Exactly olen bytes on the heap, as the receiver's buffer holds. */
	uint64_t *off = malloc(olen);
	if (!off)
		return 0;
	memcpy(off, data, olen);
	if (mfd__pkt_offsets_decode(&h, off, &lim) == 0) {
		uint32_t n = h.count + h.zero_count;
		uint64_t payload = 0;
		for (uint32_t i = 0; i < n; i++) {
			FUZZ_ASSERT(off[i] % b->page_size == 0);
			FUZZ_ASSERT(off[i] + b->page_size <= b->size);
			if (i < h.count)
				payload += b->page_size;
		}
		FUZZ_ASSERT(payload == h.payload_len);
		/* No page twice: small packets checked pairwise. */
		for (uint32_t i = 0; n <= 64 && i < n; i++)
			for (uint32_t j = i + 1; j < n; j++)
				FUZZ_ASSERT(off[i] != off[j]);
	}
	free(off);
	return 0;
}
