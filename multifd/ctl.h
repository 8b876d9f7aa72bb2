/* SPDX-License-Identifier: MIT */
/* Handshake and control messages over a channel (both sides). */
#ifndef MULTIFD_CTL_H
#define MULTIFD_CTL_H

#include "multifd/channels/channel.h"
#include "multifd/auth.h"
#include "multifd/internal.h"

int mfd__ctl_send(struct mfd__chan *c, uint16_t type, const void *payload,
		  uint32_t len);
/* Reads one validated header and its payload into a malloc'ed buffer
 * (*payload, NULL when empty; the caller frees). */
int mfd__ctl_recv(struct mfd__chan *c, struct mfd_ctl_hdr *h,
		  uint8_t **payload);
/* Best effort: tells the peer why the migration ends. */
void mfd__ctl_send_error(struct mfd__chan *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Turns an ERROR payload into the peer's code (logged with its text). */
int mfd__ctl_peer_error(const uint8_t *payload, uint32_t len, const char *who);

int mfd__hello_send(struct mfd__chan *c, const struct mfd_hello *h);
int mfd__hello_recv(struct mfd__chan *c, struct mfd_hello *h);
int mfd__hello_reply_send(struct mfd__chan *c, int error, uint64_t features);
/* 0 when accepted; the refusal's reason otherwise. */
int mfd__hello_reply_recv(struct mfd__chan *c, uint64_t *features);

/*
 * The source's side of a connection's handshake: hello, hello reply and,
 * when h asks for MFD_FEAT_AUTH, the authentication exchange with key.
 * 0 when the destination accepted (*features: what it accepted); its
 * refusal's reason, MFD_EAUTH when the destination could not prove the key,
 * or a transport error.
 */
int mfd__handshake_source(struct mfd__chan *c, const struct mfd_hello *h,
			  const struct mfd__key *key, uint64_t *features);
/*
 * The destination's side of the authentication exchange, after it sent the
 * accepting hello reply for h: CHALLENGE, RESPONSE, CONFIRM. 0 when the
 * source proved the key; MFD_EAUTH (after a refusing CONFIRM) when not.
 */
int mfd__auth_dest(struct mfd__chan *c, const struct mfd__key *key,
		   const struct mfd_hello *h);

#endif /* MULTIFD_CTL_H */
