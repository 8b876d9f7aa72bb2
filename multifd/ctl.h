/* SPDX-License-Identifier: MIT */
/* Control messages over a channel (both sides); the handshake is admit.h. */
#ifndef MULTIFD_CTL_H
#define MULTIFD_CTL_H

#include "multifd/channels/channel.h"
#include "multifd/auth.h"
#include "multifd/internal.h"

int mfd__ctl_send(struct mfd__chan *c, uint16_t type, const void *payload,
		  uint32_t len);
/* Reads one validated header and its payload into a malloc'ed buffer
 * (*payload, NULL when empty; the caller frees). */
int mfd__ctl_recv(struct mfd__chan *c, struct mfd__ctl_hdr *h,
		  uint8_t **payload);
/* Best effort: tells the peer why the migration ends. */
void mfd__ctl_send_error(struct mfd__chan *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Turns an ERROR payload into the peer's code (logged with its text). */
int mfd__ctl_peer_error(const uint8_t *payload, uint32_t len, const char *who);

#endif /* MULTIFD_CTL_H */
