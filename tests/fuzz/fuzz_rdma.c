/* SPDX-License-Identifier: MIT */
/*
 * One received RDMA channel message (multifd/channels/rdma_wire.h): byte 0
 * is how many credits the receiver can still take back (mod 17), the rest
 * is the message as it landed in a receive buffer, header first. A REGIONS
 * message's table is decoded too.
 */
#include <string.h>

#include "fuzz.h"
#include "multifd/multifd.h"
#include "multifd/channels/rdma_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned max_credits = data[0] % (MFD__RDMA_RECV_SLOTS + 1);
	const uint8_t *msg = data + 1;
	size_t len = size - 1;
	struct mfd__rdma_hdr h;
	if (mfd__rdma_hdr_decode(msg, len, max_credits, &h))
		return 0;
	FUZZ_ASSERT(len >= MFD__RDMA_HDR_SIZE && len <= MFD__RDMA_SLOT_SIZE);
	FUZZ_ASSERT(h.len == len - MFD__RDMA_HDR_SIZE);
	FUZZ_ASSERT(h.credits <= max_credits);
	FUZZ_ASSERT(h.type >= MFD__RDMA_CREDIT && h.type <= MFD__RDMA_FENCE);
	if (h.type == MFD__RDMA_CREDIT || h.type == MFD__RDMA_FENCE)
		FUZZ_ASSERT(h.len == 0);
	/* Accepted bytes are canonical: re-encoding gives them back. */
	uint8_t again[MFD__RDMA_HDR_SIZE];
	mfd__rdma_hdr_encode(&h, again);
	FUZZ_ASSERT(memcmp(again, msg, sizeof(again)) == 0);
	if (h.type != MFD__RDMA_REGIONS)
		return 0;

	struct mfd__rdma_region r[MFD__RDMA_MAX_REGIONS];
	unsigned n = 0;
	const uint8_t *p = msg + MFD__RDMA_HDR_SIZE;
	if (mfd__rdma_regions_decode(p, h.len, r, MFD__RDMA_MAX_REGIONS, &n))
		return 0;
	FUZZ_ASSERT(n <= MFD__RDMA_MAX_REGIONS);
	FUZZ_ASSERT((size_t)n * MFD__RDMA_REGION_SIZE == h.len);
	static uint8_t table[MFD__RDMA_MAX_REGIONS * MFD__RDMA_REGION_SIZE];
	for (unsigned i = 0; i < n; i++)
		FUZZ_ASSERT(r[i].addr + r[i].len >= r[i].addr);
	mfd__rdma_regions_encode(r, n, table);
	FUZZ_ASSERT(memcmp(table, p, h.len) == 0);
	return 0;
}
