/* SPDX-License-Identifier: MIT */
/* Control messages on the main channel: a 16-byte header, then the payload
 * decoder its type selects (SETUP, ROUND, END, ERROR), on the bytes that
 * follow, cut to the header's length as the receiver does. */
#include <string.h>

#include "fuzz.h"
#include "multifd/multifd.h"
#include "multifd/wire.h"
#include "multifd/devwire.h"

static struct mfd_block_desc blocks[MFD_MAX_BLOCKS];
static uint8_t digests[MFD_MAX_BLOCKS][MFD_DIGEST_SIZE];
static uint8_t again[MFD_MAX_CTL_PAYLOAD];

static void setup(const uint8_t *p, size_t len)
{
	struct mfd_setup s;
	if (mfd__setup_decode(p, len, &s, blocks))
		return;
	FUZZ_ASSERT(s.nblocks >= 1 && s.nblocks <= MFD_MAX_BLOCKS);
	FUZZ_ASSERT(s.packet_pages >= 1 &&
		    s.packet_pages <= MFD_MAX_PACKET_PAGES);
	for (uint32_t i = 0; i < s.nblocks; i++) {
		uint32_t ps = blocks[i].page_size;
		FUZZ_ASSERT(ps >= MFD_MIN_PAGE_SIZE && !(ps & (ps - 1)));
		FUZZ_ASSERT(blocks[i].size && blocks[i].size % ps == 0);
		size_t n = strlen(blocks[i].name);
		FUZZ_ASSERT(n >= 1 && n <= MFD_MAX_NAME);
	}
	s.blocks = blocks;
	FUZZ_ASSERT(mfd__setup_size(&s) == len);
	int n = mfd__setup_encode(&s, again, sizeof(again));
	FUZZ_ASSERT(n == (int)len && memcmp(again, p, len) == 0);
}

static void end(const uint8_t *p, size_t len)
{
	struct mfd_end e;
	if (mfd__end_decode(p, len, &e, digests))
		return;
	FUZZ_ASSERT(e.nblocks >= 1 && e.nblocks <= MFD_MAX_BLOCKS);
	FUZZ_ASSERT(len == mfd__end_size(e.nblocks, e.digests != NULL));
	int n = mfd__end_encode(&e, again, sizeof(again));
	FUZZ_ASSERT(n == (int)len && memcmp(again, p, len) == 0);
}

static void error(const uint8_t *p, size_t len)
{
	struct mfd_error_msg m;
	if (mfd__error_decode(p, len, &m))
		return;
	FUZZ_ASSERT(m.code < 0);
	size_t n = strlen(m.text);
	FUZZ_ASSERT(n <= MFD_MAX_ERROR_TEXT);
	for (size_t i = 0; i < n; i++)
		FUZZ_ASSERT(m.text[i] >= 0x20 && m.text[i] < 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mfd_ctl_hdr h;
	if (size < MFD_CTL_HDR_SIZE || mfd__ctl_hdr_decode(data, &h))
		return 0;
	FUZZ_ASSERT(h.length <= MFD_MAX_CTL_PAYLOAD);
	data += MFD_CTL_HDR_SIZE;
	size -= MFD_CTL_HDR_SIZE;
	/* The receiver reads exactly h.length bytes; a shorter input is a
	 * truncated connection, which never reaches a decoder. */
	if (size < h.length)
		return 0;
	/* Decoders get a heap copy of exactly length bytes, as from
	 * mfd__ctl_recv(), so ASan sees any read past it. */
	uint8_t *p = malloc(h.length ? h.length : 1);
	if (!p)
		return 0;
	memcpy(p, data, h.length);
	switch (h.type) {
	case MFD_CTL_SETUP:
		setup(p, h.length);
		break;
	case MFD_CTL_ROUND: {
		struct mfd_round r;
		FUZZ_ASSERT(h.length == MFD_ROUND_SIZE);
		(void)mfd__round_decode(p, &r);
		break;
	}
	case MFD_CTL_END:
		end(p, h.length);
		break;
	case MFD_CTL_ERROR:
		error(p, h.length);
		break;
	case MFD_CTL_DEVICES: {
		static char names[MFD_MAX_DEVICES_WIRE][MFD_MAX_DEV_NAME_WIRE + 1];
		struct mfd_devices d;
		(void)mfd__devices_decode(p, h.length, &d, names);
		break;
	}
	case MFD_CTL_DEVICE_DATA: {
		/* Limits from the input's first bytes, as SETUP would set. */
		struct mfd_dev_limits lim = {
			.ndevices = h.length ? p[0] : 0,
			.chunk_max = h.length > 1 ? (uint32_t)p[1] << 12 : 0};
		struct mfd_devdata m;
		if (!mfd__devdata_decode(p, h.length, &lim, &m))
			FUZZ_ASSERT(m.data >= p && m.len <= h.length &&
				    m.data + m.len <= p + h.length);
		break;
	}
	default:
		FUZZ_ASSERT(h.length == 0);
		break;
	}
	free(p);
	return 0;
}
