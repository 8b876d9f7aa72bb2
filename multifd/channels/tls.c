/* SPDX-License-Identifier: MIT */
/* TLS 1.3 channels: OpenSSL over an established TCP channel. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "multifd/multifd.h"
#include "multifd/channels/tls.h"
#include "multifd/common/clock.h"
#include "multifd/common/le.h"
#include "multifd/common/log.h"

/* Sends of iovecs shorter than this are gathered into full records, in a
 * stage of one record (it stays in cache between the copy and the
 * encryption); longer ones are encrypted straight from guest memory. */
#define DIRECT_MIN (16u << 10)
#define STAGE_SIZE (16u << 10)
/* OpenSSL's read buffer: with read-ahead (bulk receive), one read(2)
 * takes up to this much, many records at once. */
#define READ_BUF_LEN (256u << 10)
#define PSK_IDENTITY "multifd-tls13-psk"
#define PSK_FILE_MAX 4096

struct mfd__tls {
	SSL_CTX *ctx;
	bool server;
	int mode;	/* enum mfd__tls_mode */
	char host[256]; /* client: name the server must carry */
	bool host_is_ip;
	uint8_t psk[32];
	/* server: the answer to a plaintext hello (struct mfd__chan_opts) */
	uint32_t plain_magic, plain_hello_len, plain_reply_len;
	uint8_t plain_reply[MFD__CHAN_PLAIN_MAX];
};

struct tls_chan {
	struct mfd__chan c; /* first: what the engine holds */
	struct mfd__chan *inner;
	struct mfd__tls *t;
	SSL *ssl;
	pthread_mutex_t lock; /* SSL calls; never held while waiting */
	uint64_t timeout_ms;  /* atomic; 0 = none */
	bool ktls_send, ktls_recv;
	uint8_t *stage; /* sender's gather buffer (sending thread only) */
	size_t staged;
};

static const struct mfd__chan_ops tls_ops;

/* The oldest error in the thread's OpenSSL queue, as text; clears it. */
static void ssl_reason(char *buf, size_t len)
{
	unsigned long e, last = 0;
	while ((e = ERR_get_error()))
		if (!last)
			last = e;
	if (last) {
		const char *r = ERR_reason_error_string(last);
		if (r)
			snprintf(buf, len, "%s", r);
		else
			ERR_error_string_n(last, buf, len);
	} else {
		snprintf(buf, len, "connection closed during the handshake");
	}
}

/* ------------------------------------------------------------------ */
/* Context                                                            */
/* ------------------------------------------------------------------ */

static SSL_SESSION *psk_session(SSL *ssl, const uint8_t key[32])
{
	/* TLS_AES_128_GCM_SHA256: the PSK is bound to SHA-256. */
	static const unsigned char id[2] = { 0x13, 0x01 };
	const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, id);
	SSL_SESSION *s = cipher ? SSL_SESSION_new() : NULL;
	if (!s)
		return NULL;
	if (!SSL_SESSION_set1_master_key(s, key, 32) ||
	    !SSL_SESSION_set_cipher(s, cipher) ||
	    !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
		SSL_SESSION_free(s);
		return NULL;
	}
	return s;
}

static int psk_use_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id,
		      size_t *idlen, SSL_SESSION **sess)
{
	struct tls_chan *tc = SSL_get_app_data(ssl);
	*sess = NULL;
	/* After a HelloRetryRequest the hash is fixed: ours or nothing. */
	if (md && EVP_MD_get_type(md) != NID_sha256)
		return 1;
	SSL_SESSION *s = psk_session(ssl, tc->t->psk);
	if (!s)
		return 0;
	*sess = s;
	*id = (const unsigned char *)PSK_IDENTITY;
	*idlen = strlen(PSK_IDENTITY);
	return 1;
}

static int psk_find_cb(SSL *ssl, const unsigned char *id, size_t idlen,
		       SSL_SESSION **sess)
{
	struct tls_chan *tc = SSL_get_app_data(ssl);
	*sess = NULL;
	if (idlen != strlen(PSK_IDENTITY) ||
	    memcmp(id, PSK_IDENTITY, idlen) != 0)
		return 1; /* unknown identity: no PSK, the handshake fails */
	*sess = psk_session(ssl, tc->t->psk);
	return *sess ? 1 : 0;
}

static int read_psk(struct mfd__tls *t, const char *path)
{
	uint8_t buf[PSK_FILE_MAX + 1];
	FILE *f = fopen(path, "rb");
	if (!f) {
		mfd__err("tls-psk-file %s: %s", path, strerror(errno));
		return MFD_ECONFIG;
	}
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	/* Trailing whitespace is not part of the secret, so "echo KEY >f"
	 * and "printf KEY >f" agree. */
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
		     buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		n--;
	if (n < 16 || n > PSK_FILE_MAX) {
		mfd__err("tls-psk-file %s: %zu bytes; a key file holds 16 to "
			 "%u bytes",
			 path, n, PSK_FILE_MAX);
		OPENSSL_cleanse(buf, sizeof(buf));
		return MFD_ECONFIG;
	}
	unsigned int len = 0;
	int ok = EVP_Digest(buf, n, t->psk, &len, EVP_sha256(), NULL);
	OPENSSL_cleanse(buf, sizeof(buf));
	return ok && len == 32 ? 0 : -ENOMEM;
}

static int ctx_fail(const char *what, const char *path)
{
	char why[256];
	ssl_reason(why, sizeof(why));
	mfd__err("%s %s: %s", what, path, why);
	return MFD_ECONFIG;
}

static int readable(const char *what, const char *path)
{
	if (access(path, R_OK) == 0)
		return 0;
	mfd__err("%s %s: %s", what, path, strerror(errno));
	return MFD_ECONFIG;
}

static int load_cert(struct mfd__tls *t, const struct mfd__chan_opts *o)
{
	const char *key = o->tls_key[0] ? o->tls_key : o->tls_cert;
	if (readable("tls-cert", o->tls_cert) || readable("tls-key", key))
		return MFD_ECONFIG;
	if (SSL_CTX_use_certificate_chain_file(t->ctx, o->tls_cert) != 1)
		return ctx_fail("tls-cert", o->tls_cert);
	if (SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1)
		return ctx_fail("tls-key", key);
	if (SSL_CTX_check_private_key(t->ctx) != 1)
		return ctx_fail("tls-key does not match tls-cert", key);
	return 0;
}

static int load_ca(struct mfd__tls *t, const struct mfd__chan_opts *o)
{
	if (!o->tls_ca[0]) {
		if (SSL_CTX_set_default_verify_paths(t->ctx) != 1)
			return ctx_fail("tls-ca", "(system default)");
		return 0;
	}
	if (readable("tls-ca", o->tls_ca))
		return MFD_ECONFIG;
	if (SSL_CTX_load_verify_locations(t->ctx, o->tls_ca, NULL) != 1)
		return ctx_fail("tls-ca", o->tls_ca);
	return 0;
}

int mfd__tls_new(const struct mfd__chan_opts *o, bool server,
		 const char *uri_host, struct mfd__tls **out)
{
	*out = NULL;
	if (o->tls == MFD__TLS_OFF)
		return 0;
	struct mfd__tls *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->server = server;
	t->mode = (int)o->tls;
	if (o->plain_hello_len > MFD__CHAN_PLAIN_MAX ||
	    o->plain_reply_len > MFD__CHAN_PLAIN_MAX) {
		free(t);
		return -EINVAL;
	}
	t->plain_magic = o->plain_magic;
	t->plain_hello_len = o->plain_hello_len;
	t->plain_reply_len = o->plain_reply_len;
	memcpy(t->plain_reply, o->plain_reply, o->plain_reply_len);
	int ret = 0;
	t->ctx =
		SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!t->ctx) {
		mfd__tls_free(t);
		return -ENOMEM;
	}
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(t->ctx, TLS1_3_VERSION);
	/* AES-128-GCM first: the fastest with AES-NI, and what the PSK is
	 * bound to. */
	SSL_CTX_set_ciphersuites(t->ctx, "TLS_AES_128_GCM_SHA256:"
					 "TLS_AES_256_GCM_SHA384:"
					 "TLS_CHACHA20_POLY1305_SHA256");
	/* The kernel builds the records when it can (the tls module);
	 * checked per channel after the handshake. */
	SSL_CTX_set_options(t->ctx, SSL_OP_ENABLE_KTLS);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
					 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* Channels are never resumed. */
	SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_OFF);
	if (server)
		SSL_CTX_set_num_tickets(t->ctx, 0);

	if (t->mode == MFD__TLS_PSK) {
		if (!o->tls_psk_file[0]) {
			mfd__err("tls=psk needs tls-psk-file");
			ret = MFD_ECONFIG;
		} else {
			ret = read_psk(t, o->tls_psk_file);
		}
		if (!ret && server)
			SSL_CTX_set_psk_find_session_callback(t->ctx,
							      psk_find_cb);
		else if (!ret)
			SSL_CTX_set_psk_use_session_callback(t->ctx,
							     psk_use_cb);
	} else if (server) {
		if (!o->tls_cert[0]) {
			mfd__err("tls=cert on the destination needs tls-cert "
				 "(and tls-key)");
			ret = MFD_ECONFIG;
		}
		if (!ret)
			ret = load_cert(t, o);
		if (!ret && o->tls_verify_peer) {
			ret = load_ca(t, o);
			SSL_CTX_set_verify(
				t->ctx,
				SSL_VERIFY_PEER |
					SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
				NULL);
		}
	} else {
		ret = load_ca(t, o);
		if (!ret && o->tls_cert[0])
			ret = load_cert(t, o);
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
		const char *h = o->tls_hostname[0] ? o->tls_hostname
				: uri_host	   ? uri_host
						   : "";
		snprintf(t->host, sizeof(t->host), "%s", h);
		uint8_t addr[16];
		t->host_is_ip = inet_pton(AF_INET, h, addr) == 1 ||
				inet_pton(AF_INET6, h, addr) == 1;
		if (!ret && !h[0]) {
			mfd__err("tls=cert: no host name to check the "
				 "destination's certificate against");
			ret = MFD_ECONFIG;
		}
	}
	if (ret) {
		mfd__tls_free(t);
		return ret;
	}
	*out = t;
	return 0;
}

void mfd__tls_free(struct mfd__tls *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	OPENSSL_cleanse(t->psk, sizeof(t->psk));
	free(t);
}

/* ------------------------------------------------------------------ */
/* I/O                                                                */
/* ------------------------------------------------------------------ */

enum op { OP_READ, OP_WRITE, OP_HANDSHAKE };

#define TLS_EOF 1 /* internal: the peer closed */

static int wait_io(int fd, short events, uint64_t ms)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	for (;;) {
		int n = poll(&pfd, 1,
			     ms ? (ms > 3600000 ? 3600000 : (int)ms) : -1);
		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/*
 * One OpenSSL call at a time under the lock, the waits outside it: the
 * source's return path reads the main channel while the migration thread
 * writes it. 0, TLS_EOF, -errno, or MFD_ETLS with why filled.
 */
static int drive(struct tls_chan *tc, enum op op, void *buf, size_t len,
		 size_t *done, uint64_t ms, char *why, size_t whylen)
{
	for (;;) {
		pthread_mutex_lock(&tc->lock);
		ERR_clear_error();
		errno = 0;
		int r;
		switch (op) {
		case OP_READ:
			r = SSL_read_ex(tc->ssl, buf, len, done);
			break;
		case OP_WRITE:
			r = SSL_write_ex(tc->ssl, buf, len, done);
			break;
		default:
			r = SSL_do_handshake(tc->ssl);
			break;
		}
		int err = r > 0 ? SSL_ERROR_NONE : SSL_get_error(tc->ssl, r);
		int sys = errno;
		int ret = 0;
		short events = 0;
		switch (err) {
		case SSL_ERROR_NONE:
			break;
		case SSL_ERROR_WANT_READ:
			events = POLLIN;
			break;
		case SSL_ERROR_WANT_WRITE:
			events = POLLOUT;
			break;
		case SSL_ERROR_ZERO_RETURN:
			ret = TLS_EOF;
			break;
		case SSL_ERROR_SYSCALL:
			if (sys == EAGAIN || sys == EWOULDBLOCK)
				events = op == OP_WRITE ? POLLOUT : POLLIN;
			else if (sys == EINTR)
				ret = -EINTR;
			else
				ret = sys ? -sys : TLS_EOF;
			ERR_clear_error();
			break;
		default: {
			unsigned long e = ERR_peek_error();
			if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
			    ERR_GET_REASON(e) ==
				    SSL_R_UNEXPECTED_EOF_WHILE_READING) {
				ERR_clear_error();
				ret = TLS_EOF;
			} else {
				ssl_reason(why, whylen);
				ret = MFD_ETLS;
			}
			break;
		}
		}
		pthread_mutex_unlock(&tc->lock);
		if (ret == -EINTR)
			continue;
		if (ret || !events)
			return ret;
		if ((ret = wait_io(tc->c.fd, events, ms)))
			return ret;
	}
}

static uint64_t io_timeout(struct tls_chan *tc)
{
	return __atomic_load_n(&tc->timeout_ms, __ATOMIC_RELAXED);
}

static int data_error(struct tls_chan *tc, int ret, const char *why)
{
	/* An alert after the handshake is how TLS 1.3 tells a client its
	 * certificate was refused. */
	if (ret == MFD_ETLS)
		mfd__err("TLS with %s: %s%s", tc->c.peer, why,
			 strstr(why, "alert") ? " (the peer refused us)" : "");
	return ret;
}

static int write_all(struct tls_chan *tc, const uint8_t *p, size_t len)
{
	char why[256];
	while (len) {
		size_t n = 0;
		int ret = drive(tc, OP_WRITE, (void *)p, len, &n,
				io_timeout(tc), why, sizeof(why));
		if (ret == TLS_EOF)
			return -EPIPE;
		if (ret)
			return data_error(tc, ret, why);
		p += n;
		len -= n;
	}
	return 0;
}

static int flush_stage(struct tls_chan *tc)
{
	int ret = tc->staged ? write_all(tc, tc->stage, tc->staged) : 0;
	tc->staged = 0;
	return ret;
}

/* TCP_CORK on or off: while on, the kernel sends only full segments, so
 * the 16 KiB records of one large send leave as large packets (as one
 * sendmsg of plain TCP does); turning it off pushes the rest. */
static void cork(struct tls_chan *tc, int on)
{
	if (!tc->ktls_send)
		setsockopt(tc->c.fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
}

static int tls_sendv(struct mfd__chan *c, struct iovec *iov, int iovcnt)
{
	struct tls_chan *tc = (struct tls_chan *)c;
	int ret = 0;
	size_t total = 0;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	bool corked = total > STAGE_SIZE;
	if (corked)
		cork(tc, 1);
	for (int i = 0; i < iovcnt && !ret; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t len = iov[i].iov_len;
		/* Headers, offsets and scattered pages are gathered into
		 * full records; long runs of guest memory go straight to
		 * SSL_write, which encrypts from them without a copy. */
		if (len < DIRECT_MIN) {
			if (tc->staged + len > STAGE_SIZE)
				ret = flush_stage(tc);
			if (!ret) {
				memcpy(tc->stage + tc->staged, p, len);
				tc->staged += len;
			}
			continue;
		}
		ret = flush_stage(tc);
		if (!ret)
			ret = write_all(tc, p, len);
	}
	if (!ret)
		ret = flush_stage(tc);
	tc->staged = 0;
	if (corked)
		cork(tc, 0);
	return ret;
}

static int tls_recvv(struct mfd__chan *c, struct iovec *iov, int iovcnt)
{
	struct tls_chan *tc = (struct tls_chan *)c;
	bool started = false;
	char why[256];
	for (int i = 0; i < iovcnt; i++) {
		uint8_t *p = iov[i].iov_base;
		size_t len = iov[i].iov_len;
		while (len) {
			size_t n = 0;
			int ret = drive(tc, OP_READ, p, len, &n, io_timeout(tc),
					why, sizeof(why));
			if (ret == TLS_EOF)
				return started ? MFD_ETRUNCATED : -ECONNRESET;
			if (ret)
				return data_error(tc, ret, why);
			started = true;
			p += n;
			len -= n;
		}
	}
	return 0;
}

static int tls_recv(struct mfd__chan *c, void *buf, size_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	return tls_recvv(c, &iov, 1);
}

static int tls_set_timeout(struct mfd__chan *c, uint64_t ms)
{
	struct tls_chan *tc = (struct tls_chan *)c;
	__atomic_store_n(&tc->timeout_ms, ms, __ATOMIC_RELAXED);
	return 0;
}

static void tls_shutdown(struct mfd__chan *c, int how)
{
	struct tls_chan *tc = (struct tls_chan *)c;
	if (how == SHUT_WR) {
		/* "Nothing more will come": say it in TLS (close_notify)
		 * before the TCP FIN. Best effort, never waits. */
		pthread_mutex_lock(&tc->lock);
		if (!(SSL_get_shutdown(tc->ssl) & SSL_SENT_SHUTDOWN))
			SSL_shutdown(tc->ssl);
		ERR_clear_error();
		pthread_mutex_unlock(&tc->lock);
	}
	/* shutdown(2) on the socket wakes a poll of another thread; its
	 * next OpenSSL call then sees the end. */
	tc->inner->ops->shutdown(tc->inner, how);
}

static void tls_close(struct mfd__chan *c)
{
	struct tls_chan *tc = (struct tls_chan *)c;
	if (!tc)
		return;
	SSL_free(tc->ssl);
	if (tc->inner)
		tc->inner->ops->close(tc->inner);
	pthread_mutex_destroy(&tc->lock);
	free(tc->stage);
	free(tc);
}

static const struct mfd__chan_ops tls_ops = {
	.name = "tls",
	.sendv = tls_sendv,
	.recv = tls_recv,
	.recvv = tls_recvv,
	.set_timeout = tls_set_timeout,
	.shutdown = tls_shutdown,
	.close = tls_close,
	.unsent = mfd__sock_unsent, /* the TCP queue below the records */
	.rtt_ns = mfd__sock_rtt_ns,
	.pace = mfd__sock_pace,
};

void mfd__tls_bulk_receive(struct mfd__chan *c)
{
	if (!c || c->ops != &tls_ops)
		return;
	struct tls_chan *tc = (struct tls_chan *)c;
	pthread_mutex_lock(&tc->lock);
	SSL_set_read_ahead(tc->ssl, 1);
	pthread_mutex_unlock(&tc->lock);
}

bool mfd__tls_ktls_send(const struct mfd__chan *c)
{
	return c && c->ops == &tls_ops &&
	       ((const struct tls_chan *)c)->ktls_send;
}

/* ------------------------------------------------------------------ */
/* Socket BIO without SIGPIPE                                         */
/* ------------------------------------------------------------------ */

/*
 * OpenSSL's socket BIO writes with write(2): a peer that is gone would
 * raise SIGPIPE in the hypervisor. This BIO is the socket BIO with one
 * change, send(MSG_NOSIGNAL); everything else (and kTLS, whose control
 * records need the original write) stays OpenSSL's.
 */
static BIO_METHOD *nosig_method;
static int (*sock_write)(BIO *, const char *, int);

static int nosig_write(BIO *b, const char *in, int inl)
{
	if (BIO_get_ktls_send(b)) {
		/* Rare with kTLS (alerts, close_notify): hold SIGPIPE off in
		 * this thread and swallow one this write raised. */
		sigset_t pipe, old, pending;
		struct timespec zero = { 0, 0 };
		sigemptyset(&pipe);
		sigaddset(&pipe, SIGPIPE);
		pthread_sigmask(SIG_BLOCK, &pipe, &old);
		int r = sock_write(b, in, inl);
		int err = errno;
		sigpending(&pending);
		if (r < 0 && err == EPIPE && sigismember(&pending, SIGPIPE) &&
		    !sigismember(&old, SIGPIPE))
			sigtimedwait(&pipe, NULL, &zero);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		errno = err;
		return r;
	}
	int fd = -1;
	BIO_get_fd(b, &fd);
	errno = 0;
	int r = (int)send(fd, in, (size_t)(inl > 0 ? inl : 0), MSG_NOSIGNAL);
	BIO_clear_retry_flags(b);
	if (r <= 0 && BIO_sock_should_retry(r))
		BIO_set_retry_write(b);
	return r;
}

static void nosig_init(void)
{
	const BIO_METHOD *s = BIO_s_socket();
	BIO_METHOD *m = BIO_meth_new(BIO_TYPE_SOCKET, "multifd socket");
	if (!m)
		return;
	sock_write = BIO_meth_get_write(s);
	if (!sock_write || !BIO_meth_set_write(m, nosig_write) ||
	    !BIO_meth_set_read(m, BIO_meth_get_read(s)) ||
	    !BIO_meth_set_puts(m, BIO_meth_get_puts(s)) ||
	    !BIO_meth_set_ctrl(m, BIO_meth_get_ctrl(s)) ||
	    !BIO_meth_set_create(m, BIO_meth_get_create(s)) ||
	    !BIO_meth_set_destroy(m, BIO_meth_get_destroy(s))) {
		BIO_meth_free(m);
		return;
	}
	nosig_method = m;
}

static int set_socket_bio(SSL *ssl, int fd)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, nosig_init);
	BIO *b = nosig_method ? BIO_new(nosig_method) : NULL;
	if (!b)
		return -ENOMEM;
	BIO_set_fd(b, fd, BIO_NOCLOSE);
	SSL_set_bio(ssl, b, b);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Handshake                                                          */
/* ------------------------------------------------------------------ */

/* A plaintext multifd peer on a TLS listener: answer in its own language
 * (the engine's refusal, struct mfd__chan_opts) so that it reports
 * MFD_ETLS instead of a reset. */
static bool refuse_plaintext(const struct mfd__tls *t, struct mfd__chan *c,
			     uint64_t ms)
{
	uint8_t head[4];
	if (!t->plain_hello_len || wait_io(c->fd, POLLIN, ms))
		return false;
	ssize_t n = recv(c->fd, head, sizeof(head), MSG_PEEK | MSG_DONTWAIT);
	if (n != (ssize_t)sizeof(head) || mfd__get_le32(head) != t->plain_magic)
		return false;
	uint8_t hello[MFD__CHAN_PLAIN_MAX];
	c->ops->set_timeout(c, ms);
	if (c->ops->recv(c, hello, t->plain_hello_len))
		return true;
	mfd__chan_send(c, t->plain_reply, t->plain_reply_len);
	return true;
}

/* The server closes after the client: a close with the client's bytes
 * unread would reset the connection and could destroy our alert before
 * the client reads it. */
static void linger_close(struct mfd__chan *c)
{
	uint8_t buf[256];
	shutdown(c->fd, SHUT_WR);
	uint64_t deadline = mfd__now_ns() + 500000000ULL;
	for (;;) {
		uint64_t now = mfd__now_ns();
		if (now >= deadline ||
		    wait_io(c->fd, POLLIN, (deadline - now) / 1000000 + 1))
			break;
		ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			break;
	}
	c->ops->close(c);
}

static void verify_reason(struct tls_chan *tc, char *why, size_t len)
{
	long v = SSL_get_verify_result(tc->ssl);
	if (v == X509_V_OK)
		return;
	if (v == X509_V_ERR_HOSTNAME_MISMATCH ||
	    v == X509_V_ERR_IP_ADDRESS_MISMATCH)
		snprintf(why, len,
			 "certificate verify failed: %s (expected '%s')",
			 X509_verify_cert_error_string(v), tc->t->host);
	else
		snprintf(why, len, "certificate verify failed: %s",
			 X509_verify_cert_error_string(v));
}

static int wrap(struct mfd__tls *t, struct mfd__chan **cp, uint64_t ms)
{
	struct mfd__chan *inner = *cp;
	char why[320] = "";
	*cp = NULL;
	if (t->server && refuse_plaintext(t, inner, ms)) {
		mfd__err("refused connection from %s: TLS handshake failed: "
			 "the peer speaks multifd without TLS",
			 inner->peer);
		linger_close(inner);
		return MFD_ETLS;
	}
	struct tls_chan *tc = calloc(1, sizeof(*tc));
	if (!tc) {
		inner->ops->close(inner);
		return -ENOMEM;
	}
	tc->c.ops = &tls_ops;
	tc->c.fd = inner->fd;
	memcpy(tc->c.peer, inner->peer, sizeof(tc->c.peer));
	tc->inner = inner;
	tc->t = t;
	pthread_mutex_init(&tc->lock, NULL);
	tc->stage = malloc(STAGE_SIZE);
	tc->ssl = SSL_new(t->ctx);
	int ret = tc->stage && tc->ssl ? 0 : -ENOMEM;
	/* Before the buffer is allocated (by the handshake's first read):
	 * a larger buffer only matters with read-ahead. */
	if (!ret)
		SSL_set_default_read_buffer_len(tc->ssl, READ_BUF_LEN);
	if (!ret)
		ret = set_socket_bio(tc->ssl, inner->fd);
	if (!ret) {
		SSL_set_app_data(tc->ssl, tc);
		if (t->server) {
			SSL_set_accept_state(tc->ssl);
		} else {
			SSL_set_connect_state(tc->ssl);
			if (t->mode == MFD__TLS_CERT && t->host_is_ip) {
				X509_VERIFY_PARAM_set1_ip_asc(
					SSL_get0_param(tc->ssl), t->host);
			} else if (t->mode == MFD__TLS_CERT) {
				SSL_set1_host(tc->ssl, t->host);
				SSL_set_tlsext_host_name(tc->ssl, t->host);
			}
		}
		/* OpenSSL drives the socket itself from here, without
		 * blocking, so a reader and a writer can share it. */
		int fl = fcntl(inner->fd, F_GETFL);
		if (fl < 0 || fcntl(inner->fd, F_SETFL, fl | O_NONBLOCK) < 0)
			ret = -errno;
	}
	if (!ret) {
		ret = drive(tc, OP_HANDSHAKE, NULL, 0, NULL, ms, why,
			    sizeof(why));
		if (ret == TLS_EOF || ret == -ECONNRESET || ret == -EPIPE) {
			snprintf(why, sizeof(why),
				 "the peer closed the connection during the "
				 "handshake");
			ret = MFD_ETLS;
		} else if (ret == -ETIMEDOUT) {
			snprintf(why, sizeof(why),
				 "no handshake within %llu ms",
				 (unsigned long long)ms);
			ret = MFD_ETLS;
		}
		if (ret == MFD_ETLS)
			verify_reason(tc, why, sizeof(why));
	}
	if (ret) {
		if (ret == MFD_ETLS && t->server)
			mfd__err("refused connection from %s: TLS handshake "
				 "failed: %s",
				 inner->peer, why);
		else if (ret == MFD_ETLS)
			mfd__err("TLS handshake with %s failed: %s%s",
				 inner->peer, why,
				 strstr(why, "wrong version") ||
						 strstr(why, "packet length")
					 ? " (does the destination use TLS?)"
					 : "");
		SSL_free(tc->ssl);
		tc->ssl = NULL;
		tc->inner = NULL;
		if (t->server)
			linger_close(inner);
		else
			inner->ops->close(inner);
		tls_close(&tc->c);
		return ret;
	}
	tc->ktls_send = BIO_get_ktls_send(SSL_get_wbio(tc->ssl)) > 0;
	tc->ktls_recv = BIO_get_ktls_recv(SSL_get_rbio(tc->ssl)) > 0;
	mfd__info("TLS with %s: %s, %s, kTLS send %s, receive %s", tc->c.peer,
		  SSL_get_version(tc->ssl),
		  SSL_CIPHER_get_name(SSL_get_current_cipher(tc->ssl)),
		  tc->ktls_send ? "on" : "off", tc->ktls_recv ? "on" : "off");
	*cp = &tc->c;
	return 0;
}

int mfd__tls_wrap_client(struct mfd__tls *t, struct mfd__chan **c,
			 uint64_t timeout_ms)
{
	return t ? wrap(t, c, timeout_ms) : 0;
}

/*
 * A server connection before its handshake, held by the destination's
 * queue of pending connections: its first_ready waits for the whole first
 * TLS record (the ClientHello), not for a hello's bytes. Nothing else is
 * called on it before mfd__tls_wrap_server() unwraps it.
 */
#define TLS_RECORD_HDR 5
/* A TLS record: 2^14 bytes of plaintext plus the most expansion allowed. */
#define TLS_RECORD_MAX (TLS_RECORD_HDR + 16384 + 2048)

struct tls_expect {
	struct mfd__chan c;
	struct mfd__chan *inner;
	uint32_t need; /* 0: the record header is not read yet */
};

static int expect_first_ready(struct mfd__chan *c, uint32_t need, short revents)
{
	struct tls_expect *e = (struct tls_expect *)c;
	(void)need; /* the record's own length counts */
	if (e->need)
		return mfd__chan_first_ready(e->inner, e->need, revents);
	int ret = mfd__chan_first_ready(e->inner, TLS_RECORD_HDR, revents);
	if (ret <= 0)
		return ret;
	uint8_t h[TLS_RECORD_HDR];
	if (recv(e->inner->fd, h, sizeof(h), MSG_PEEK | MSG_DONTWAIT) !=
	    (ssize_t)sizeof(h))
		return -ECONNRESET;
	e->need = TLS_RECORD_HDR + ((uint32_t)h[3] << 8 | h[4]);
	/* Not a handshake record, or too long to wait for: the handshake
	 * refuses it at once, so the header is all it needs (also when
	 * asked again). */
	if (h[0] != 0x16 || e->need > TLS_RECORD_MAX)
		e->need = TLS_RECORD_HDR;
	return mfd__chan_first_ready(e->inner, e->need, revents);
}

static void expect_shutdown(struct mfd__chan *c, int how)
{
	struct tls_expect *e = (struct tls_expect *)c;
	e->inner->ops->shutdown(e->inner, how);
}

static void expect_close(struct mfd__chan *c)
{
	struct tls_expect *e = (struct tls_expect *)c;
	e->inner->ops->close(e->inner);
	free(e);
}

static const struct mfd__chan_ops expect_ops = {
	.name = "tls-accept",
	.shutdown = expect_shutdown,
	.close = expect_close,
	.first_ready = expect_first_ready,
};

int mfd__tls_expect(struct mfd__tls *t, struct mfd__chan **c)
{
	if (!t)
		return 0;
	struct tls_expect *e = calloc(1, sizeof(*e));
	if (!e) {
		(*c)->ops->close(*c);
		*c = NULL;
		return -ENOMEM;
	}
	e->c.ops = &expect_ops;
	e->c.fd = (*c)->fd;
	memcpy(e->c.peer, (*c)->peer, sizeof(e->c.peer));
	e->inner = *c;
	*c = &e->c;
	return 0;
}

int mfd__tls_wrap_server(struct mfd__tls *t, struct mfd__chan **c,
			 uint64_t timeout_ms)
{
	if (*c && (*c)->ops == &expect_ops) {
		struct tls_expect *e = (struct tls_expect *)*c;
		*c = e->inner;
		free(e);
	}
	return t ? wrap(t, c, timeout_ms) : 0;
}
