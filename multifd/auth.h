/* SPDX-License-Identifier: MIT */
/*
 * Pre-shared-key authentication of every connection: a mutual HMAC-SHA256
 * challenge-response that runs after the hello and its reply when both sides
 * negotiated MFD_FEAT_AUTH (docs/protocol.md section 4.3).
 *
 * The message codec and the MAC are pure functions (fuzzed); the exchange
 * itself runs over a channel in ctl.c. A TLS layer, when it comes, sits
 * under the channel: the exchange is unchanged, and a channel binding (the
 * TLS exporter value) can be appended to the transcript.
 */
#ifndef MULTIFD_AUTH_H
#define MULTIFD_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "multifd/wire.h"

#define MFD_MAGIC_AUTH	    0x4144464dU /* "MFDA" */
#define MFD_AUTH_MSG_SIZE   80
#define MFD_AUTH_NONCE_SIZE 32
#define MFD_AUTH_MAC_SIZE   32 /* HMAC-SHA256 */
#define MFD_AUTH_KEY_MIN    32
#define MFD_AUTH_KEY_MAX    128
/* Largest key file read: a 128-byte key as hex, with room for spaces. */
#define MFD_AUTH_KEYFILE_MAX 1024

enum mfd__auth_type {
	MFD_AUTH_CHALLENGE = 1, /* dst->src: the destination's nonce */
	MFD_AUTH_RESPONSE = 2,	/* src->dst: the source's nonce and MAC */
	MFD_AUTH_CONFIRM = 3, /* dst->src: verdict and the destination's MAC */
};

struct mfd__auth_msg {
	uint32_t magic; /* MFD_MAGIC_AUTH */
	uint16_t type;	/* enum mfd__auth_type */
	uint16_t reserved;
	int32_t error; /* CONFIRM: 0 accepted, < 0 refused; else 0 */
	uint32_t reserved2;
	uint8_t nonce[MFD_AUTH_NONCE_SIZE]; /* CHALLENGE, RESPONSE; else 0 */
	uint8_t mac[MFD_AUTH_MAC_SIZE]; /* RESPONSE, accepted CONFIRM; else 0 */
};

struct mfd__key {
	uint8_t bytes[MFD_AUTH_KEY_MAX];
	size_t len; /* 0: no key configured */
};

void mfd__auth_msg_encode(const struct mfd__auth_msg *m,
			  uint8_t out[MFD_AUTH_MSG_SIZE]);
/*
 * Decodes and checks one message of the expected type: magic
 * (MFD_EBADMAGIC), type (MFD_ETYPE), reserved fields and the fields that
 * must be zero for the type (MFD_EFLAGS), error of a CONFIRM: 0, or < 0 and
 * not INT32_MIN (MFD_EFLAGS).
 */
int mfd__auth_msg_decode(const uint8_t in[MFD_AUTH_MSG_SIZE], uint16_t type,
			 struct mfd__auth_msg *m);

/* Which side's MAC: each side proves itself with its own label, so a MAC
 * can never be reflected back to the side that made it. */
enum mfd__auth_side { MFD_AUTH_SOURCE = 0, MFD_AUTH_DEST = 1 };

/*
 * mac = HMAC-SHA256(key, label(side) || hello || hello_reply || nonce_d ||
 * nonce_s || binding). hello and reply are the encoded bytes of this
 * connection (they carry session, role, channel, channel count, features);
 * binding is empty (len 0) over plain TCP. 0 or -EIO.
 */
int mfd__auth_mac(const struct mfd__key *key, int side,
		  const uint8_t hello[MFD_HELLO_SIZE],
		  const uint8_t reply[MFD_HELLO_REPLY_SIZE],
		  const uint8_t nonce_d[MFD_AUTH_NONCE_SIZE],
		  const uint8_t nonce_s[MFD_AUTH_NONCE_SIZE],
		  const uint8_t *binding, size_t binding_len,
		  uint8_t mac[MFD_AUTH_MAC_SIZE]);
/* Constant-time: 0 when equal, MFD_EAUTH otherwise. */
int mfd__auth_mac_check(const uint8_t a[MFD_AUTH_MAC_SIZE],
			const uint8_t b[MFD_AUTH_MAC_SIZE]);

/*
 * Parses the contents of a key file (docs/security.md): 64 to 256 hex digits
 * (32 to 128 bytes), optionally followed by white space; or, when the
 * contents are not that, 32 to 128 raw bytes used as they are. MFD_ECONFIG
 * with a reason in why otherwise.
 */
int mfd__auth_key_parse(const uint8_t *buf, size_t len, struct mfd__key *key,
			char *why, size_t whylen);
/*
 * Reads and parses path. Refuses (MFD_ECONFIG, logged) a file that others
 * may read or write, one that is not a regular file, or a bad key. An empty
 * path leaves key->len 0 (authentication off).
 */
int mfd__auth_key_load(const char *path, struct mfd__key *key);
/* Wipes the key from memory. */
void mfd__auth_key_clear(struct mfd__key *key);

#endif /* MULTIFD_AUTH_H */
