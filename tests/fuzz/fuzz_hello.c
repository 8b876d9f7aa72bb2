/* SPDX-License-Identifier: MIT */
/* Hello (40 bytes) then hello reply (24 bytes): what a stranger sends first,
 * and what a source reads back. */
#include <string.h>

#include "fuzz.h"
#include "multifd/multifd.h"
#include "multifd/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size >= MFD_HELLO_SIZE) {
		struct mfd__hello h;
		uint8_t again[MFD_HELLO_SIZE];
		if (mfd__hello_decode(data, &h) == 0) {
			FUZZ_ASSERT(h.nchannels >= 1 &&
				    h.nchannels <= MFD_MAX_CHANNELS);
			/* An urgent lane's index is bounded by the lanes
			 * (protocol 10.1), any other by nchannels. */
			if (h.role == MFD_ROLE_URGENT)
				FUZZ_ASSERT((h.features & MFD_FEAT_POSTCOPY) &&
					    h.channel < MFD_MAX_URGENT_LANES);
			else
				FUZZ_ASSERT(h.channel < h.nchannels);
			FUZZ_ASSERT(!(h.features & ~MFD_FEATURES_KNOWN));
			FUZZ_ASSERT(!(h.features & MFD_FEAT_VERIFY) ||
				    !(h.features & MFD_FEAT_POSTCOPY));
			/* Accepted bytes are canonical: re-encoding gives
			 * them back. */
			mfd__hello_encode(&h, again);
			FUZZ_ASSERT(memcmp(again, data, MFD_HELLO_SIZE) == 0);
		}
		data += MFD_HELLO_SIZE;
		size -= MFD_HELLO_SIZE;
	}
	if (size >= MFD_HELLO_REPLY_SIZE) {
		struct mfd__hello_reply r;
		uint8_t again[MFD_HELLO_REPLY_SIZE];
		if (mfd__hello_reply_decode(data, &r) == 0) {
			/* A refusal can never read as success. */
			FUZZ_ASSERT(r.status == 0 ? r.error == 0 : r.error < 0);
			mfd__hello_reply_encode(&r, again);
			FUZZ_ASSERT(memcmp(again, data, MFD_HELLO_REPLY_SIZE) ==
				    0);
		}
	}
	return 0;
}
