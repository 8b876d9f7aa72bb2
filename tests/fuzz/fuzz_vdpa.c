/* SPDX-License-Identifier: MIT */
/*
 * The vDPA device state parser (mfd__vdpa_state_parse, docs/protocol.md
 * "vDPA device state"): what the destination's adapter reads before it
 * programs a device. Input: the state bytes as they arrive.
 *
 * An accepted state is within every bound the adapter relies on (queues,
 * MAC tables, commands, indices) and is canonical: encoding it again gives
 * the same bytes, so nothing of the input was skipped or misread. A
 * refused one names its reason.
 */
#include <errno.h>
#include <string.h>

#include "devstate/vdpa_state.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct mfd__vdpa_state s;
	static uint8_t out[MFD_VDPA_STATE_MAX];
	const char *why = NULL;
	int ret = mfd__vdpa_state_parse(data, size, &s, &why);
	if (ret) {
		FUZZ_ASSERT(ret == -EBADMSG || ret == -EPROTONOSUPPORT);
		FUZZ_ASSERT(why && *why);
		return 0;
	}
	FUZZ_ASSERT(s.nvqs >= 2 && s.nvqs <= MFD_VDPA_MAX_VQS);
	for (unsigned i = 0; i < s.nvqs; i++) {
		FUZZ_ASSERT(s.vq[i].index < MFD_VDPA_MAX_VQ_INDEX);
		FUZZ_ASSERT(s.vq[i].num && s.vq[i].num <= 32768);
		FUZZ_ASSERT(!i || s.vq[i].index > s.vq[i - 1].index);
	}
	FUZZ_ASSERT(s.ctrl.n_uni <= MFD_VDPA_MAX_MACS);
	FUZZ_ASSERT(s.ctrl.n_multi <= MFD_VDPA_MAX_MACS);
	FUZZ_ASSERT(s.ctrl.norder <= MFD_VDPA_MAX_CMDS);
	if (s.ctrl.has & MFD_VDPA_HAS_MQ)
		FUZZ_ASSERT(s.ctrl.mq_pairs >= 1 &&
			    s.ctrl.mq_pairs <= s.max_vq_pairs);
	FUZZ_ASSERT(mfd__vdpa_state_size(&s) == size);
	FUZZ_ASSERT(mfd__vdpa_state_encode(&s, out, sizeof(out)) == size);
	FUZZ_ASSERT(memcmp(out, data, size) == 0);
	return 0;
}
