/* SPDX-License-Identifier: MIT */
/*
 * The authentication exchange as a destination and a source parse it: the
 * input is read as a CHALLENGE, a RESPONSE and a CONFIRM (80 bytes each, as
 * far as it goes); an accepted RESPONSE's MAC is checked against a fixed
 * key, as the destination does. The whole input is also parsed as a key
 * file.
 */
#include <string.h>

#include "fuzz.h"
#include "multifd/auth.h"
#include "multifd/multifd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t order[3] = { MFD_AUTH_CHALLENGE,
					   MFD_AUTH_RESPONSE,
					   MFD_AUTH_CONFIRM };
	struct mfd__key key;
	char why[160];
	if (mfd__auth_key_parse(data, size, &key, why, sizeof(why)) == 0)
		FUZZ_ASSERT(key.len >= MFD_AUTH_KEY_MIN &&
			    key.len <= MFD_AUTH_KEY_MAX);

	memset(key.bytes, 0x42, MFD_AUTH_KEY_MIN);
	key.len = MFD_AUTH_KEY_MIN;
	uint8_t hello[MFD_HELLO_SIZE] = { 0 },
		reply[MFD_HELLO_REPLY_SIZE] = { 0 };
	uint8_t nonce_d[MFD_AUTH_NONCE_SIZE] = { 0 };
	for (int i = 0; i < 3 && size >= MFD_AUTH_MSG_SIZE; i++) {
		struct mfd__auth_msg m;
		uint8_t again[MFD_AUTH_MSG_SIZE];
		uint8_t mac[MFD_AUTH_MAC_SIZE];
		int ret = mfd__auth_msg_decode(data, order[i], &m);
		if (ret == 0) {
			mfd__auth_msg_encode(&m, again);
			FUZZ_ASSERT(memcmp(again, data, sizeof(again)) == 0);
			if (m.type == MFD_AUTH_CONFIRM)
				FUZZ_ASSERT(m.error <= 0);
			if (m.type == MFD_AUTH_RESPONSE) {
				FUZZ_ASSERT(mfd__auth_mac(&key, MFD_AUTH_SOURCE,
							  hello, reply, nonce_d,
							  m.nonce, NULL, 0,
							  mac) == 0);
				(void)mfd__auth_mac_check(mac, m.mac);
			}
		}
		data += MFD_AUTH_MSG_SIZE;
		size -= MFD_AUTH_MSG_SIZE;
	}
	return 0;
}
