/* SPDX-License-Identifier: MIT */
/*
 * What the engine tells the channels. The engine fills this from its
 * config in one place (mfd__config_chan_opts(), multifd/config.c); the
 * channels never see the config, nor the engine's wire format.
 */
#ifndef MULTIFD_CHANNELS_OPTS_H
#define MULTIFD_CHANNELS_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mfd__io_engine {
	MFD__IO_SOCKETS = 0, /* blocking sendmsg/recvmsg */
	MFD__IO_URING = 1,   /* io_uring, one ring per channel direction */
};

enum mfd__tls_mode {
	MFD__TLS_OFF = 0,
	MFD__TLS_CERT,
	MFD__TLS_PSK,
};

/* Longest plaintext hello a TLS listener reads before it refuses it. */
#define MFD__CHAN_PLAIN_MAX 64

struct mfd__chan_opts {
	uint32_t io_engine; /* enum mfd__io_engine: what makes "tcp:" */

	/* TLS (tls.c). The texts are "" when unset, never NULL, and need
	 * to live only until mfd__tls_new() returns. */
	uint32_t tls;		  /* enum mfd__tls_mode */
	const char *tls_ca;	  /* CA bundle to verify the peer */
	const char *tls_cert;	  /* own certificate chain (PEM) */
	const char *tls_key;	  /* own private key (PEM); "" = in cert */
	const char *tls_psk_file; /* PSK mode: the key, hex */
	const char *tls_hostname; /* name the client checks; "" = URI host */
	bool tls_verify_peer;	  /* server requires a client certificate */

	/*
	 * A TLS server's answer to a peer that speaks the engine's protocol
	 * in plaintext: when the first 4 bytes (little-endian) are
	 * plain_magic, it reads plain_hello_len bytes and sends plain_reply,
	 * so that the peer learns why instead of seeing a reset. 0 bytes:
	 * no such answer.
	 */
	uint32_t plain_magic;
	uint32_t plain_hello_len; /* <= MFD__CHAN_PLAIN_MAX */
	uint32_t plain_reply_len; /* <= MFD__CHAN_PLAIN_MAX */
	uint8_t plain_reply[MFD__CHAN_PLAIN_MAX];
};

#endif /* MULTIFD_CHANNELS_OPTS_H */
