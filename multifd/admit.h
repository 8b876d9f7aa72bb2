/* SPDX-License-Identifier: MIT */
/*
 * Admission of a connection (docs/protocol.md 4): both halves of the
 * handshake (hello, reply and, with MFD_FEAT_AUTH, the authentication
 * exchange), and the destination's queue of connections accepted but not
 * yet complete enough to handshake.
 *
 * Threads: the queue belongs to the destination's loader thread; the
 * handshake functions run on the thread that owns the channel.
 */
#ifndef MULTIFD_ADMIT_H
#define MULTIFD_ADMIT_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include "multifd/auth.h"
#include "multifd/channels/channel.h"
#include "multifd/internal.h"

struct mfd__tls;

int mfd__hello_send(struct mfd__chan *c, const struct mfd__hello *h);
int mfd__hello_recv(struct mfd__chan *c, struct mfd__hello *h);
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
int mfd__handshake_source(struct mfd__chan *c, const struct mfd__hello *h,
			  const struct mfd__key *key, uint64_t *features);
/*
 * The destination's side of the authentication exchange, after it sent the
 * accepting hello reply for h: CHALLENGE, RESPONSE, CONFIRM. 0 when the
 * source proved the key; MFD_EAUTH (after a refusing CONFIRM) when not.
 */
int mfd__auth_dest(struct mfd__chan *c, const struct mfd__key *key,
		   const struct mfd__hello *h);

/* What the destination admits. */
struct mfd__admit_want {
	uint16_t role; /* MFD_ROLE_MAIN, MFD_ROLE_DATA or MFD_ROLE_URGENT */
	const struct mfd__key *key; /* len 0: no authentication */
	/* Data channels and urgent lanes: the session the main channel
	 * opened. */
	const uint8_t *session; /* 16 bytes */
	uint16_t nchannels;
	uint64_t features;
	/* Offered features this side's config turns off (refused). */
	uint64_t refuse;
	/* Whether channel index idx is taken already (or, for a lane, not
	 * below SETUP's postcopy_lanes). */
	bool (*taken)(void *ctx, uint16_t idx);
	void *ctx;
};

/*
 * The destination's half of the handshake: the hello (into *h), its checks
 * against want, the reply and, with MFD_FEAT_AUTH, the authentication
 * exchange. 0 when the connection is admitted; else the reason, already
 * told to the peer where the connection still works.
 */
int mfd__handshake_dest(struct mfd__chan *c, const struct mfd__admit_want *want,
			struct mfd__hello *h);

/*
 * The destination's pending connections. Every accepted connection is held
 * here, polled with all others, until its first message is complete in the
 * kernel's buffer (the channel's first_ready op: the 40-byte hello, or the
 * whole first TLS record). Only then does the loader run its handshake, so
 * a stranger that connects and stays silent (or sends part of a message)
 * costs nothing but a slot: it is dropped at its own connect-timeout, and
 * the oldest is dropped when max-pending-connections are held, without
 * delaying anyone else.
 */
struct mfd__admit_pending;

struct mfd__admitq {
	struct mfd__listener *lst;
	struct mfd__tls *tls; /* NULL without TLS */
	const int *cancel;    /* atomic, checked at least every 100 ms */
	uint64_t timeout_ms;  /* connect-timeout: handshake and hello */
	unsigned max;	      /* max-pending-connections */
	struct mfd__admit_pending *pend; /* oldest first */
	struct pollfd *pfd; /* the listener and each pending connection */
	unsigned npend;
};

/* 0 or -ENOMEM. */
int mfd__admitq_init(struct mfd__admitq *q, struct mfd__listener *lst,
		     struct mfd__tls *tls, unsigned max, uint64_t timeout_ms,
		     const int *cancel);
/* Closes every pending connection and frees the queue. */
void mfd__admitq_destroy(struct mfd__admitq *q);
/*
 * The next connection admitted as want says, within timeout_ms
 * (UINT64_MAX: no limit): TLS handshake (when configured) and the
 * destination's half of the handshake done, the channel's timeout set to
 * connect-timeout. Refused connections are logged, closed and skipped.
 * 0, -ETIMEDOUT, -ECANCELED or the listener's error.
 */
int mfd__admitq_take(struct mfd__admitq *q, uint64_t timeout_ms,
		     const struct mfd__admit_want *want, struct mfd__chan **out,
		     struct mfd__hello *h);

#endif /* MULTIFD_ADMIT_H */
