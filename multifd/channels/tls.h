/* SPDX-License-Identifier: MIT */
/*
 * TLS 1.3 (OpenSSL) as a wrapper around an established channel: after the
 * TCP connection is up, the handshake runs on it and the channel is
 * replaced by one whose ops encrypt and decrypt. Everything after it, the
 * multifd hello included, is protected.
 *
 * Threads: a TLS context (struct mfd__tls) is shared read-only by every
 * channel of one side. A TLS channel keeps the channel rules of channel.h:
 * one thread sends while another receives (the source's main channel), and
 * shutdown() from any thread wakes both. The SSL object is guarded by a
 * per-channel mutex held only for non-blocking OpenSSL calls; waiting
 * happens in poll(2) outside it.
 */
#ifndef MULTIFD_CHANNELS_TLS_H
#define MULTIFD_CHANNELS_TLS_H

#include <stdbool.h>
#include <stdint.h>

#include "multifd/channels/channel.h"
#include "multifd/channels/opts.h"

struct mfd__tls;

/*
 * Builds the context of one side from o: *out = NULL when tls=off.
 * Certificates, keys and the PSK file are read now, so a bad path or a key
 * that does not match its certificate fails here with MFD_ECONFIG and a
 * logged reason. uri_host is the host of the destination URI (source
 * only): the destination's certificate must carry it, unless tls-hostname
 * names another.
 */
int mfd__tls_new(const struct mfd__chan_opts *o, bool server,
		 const char *uri_host, struct mfd__tls **out);
void mfd__tls_free(struct mfd__tls *t);

/*
 * Runs the handshake on *c within timeout_ms. On success *c is the TLS
 * channel (it owns the old one). On failure the connection is closed,
 * *c = NULL and the reason is logged: MFD_ETLS for a handshake or trust
 * failure (wrong CA, certificate for another host, missing client
 * certificate, wrong PSK, a peer without TLS), else the transport error.
 * With t == NULL both return 0 and leave *c alone.
 *
 * The server answers a plaintext multifd hello with a plaintext refusal
 * (MFD_ETLS), so a source without TLS learns why.
 */
/*
 * Server, as a connection is accepted: wraps *c so that its first_ready op
 * waits for the whole first TLS record instead of a hello (no I/O here).
 * mfd__tls_wrap_server() takes the wrapped channel. 0, or -ENOMEM with the
 * connection closed and *c = NULL. With t == NULL: 0, *c left alone.
 */
int mfd__tls_expect(struct mfd__tls *t, struct mfd__chan **c);
int mfd__tls_wrap_client(struct mfd__tls *t, struct mfd__chan **c,
			 uint64_t timeout_ms);
int mfd__tls_wrap_server(struct mfd__tls *t, struct mfd__chan **c,
			 uint64_t timeout_ms);

/*
 * For a channel that is only read with blocking recv()/recvv() from now on,
 * never polled for the start of a message (the destination's data
 * channels): OpenSSL may read ahead as many records as the socket holds,
 * up to its buffer, in one read(2) instead of two per record. No effect on
 * other channels. A channel whose fd is polled must not use it: a message
 * read ahead into OpenSSL's buffer would not make the fd readable.
 */
void mfd__tls_bulk_receive(struct mfd__chan *c);

/* Whether the channel's TLS records are built by the kernel (kTLS). */
bool mfd__tls_ktls_send(const struct mfd__chan *c);

#endif /* MULTIFD_CHANNELS_TLS_H */
