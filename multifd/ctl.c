/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "multifd/ctl.h"

int mfd__ctl_send(struct mfd__chan *c, uint16_t type, const void *payload,
		  uint32_t len)
{
	uint8_t hdr[MFD_CTL_HDR_SIZE];
	struct mfd_ctl_hdr h = { .magic = MFD_MAGIC_CTL,
				 .type = type,
				 .length = len };
	mfd__ctl_hdr_encode(&h, hdr);
	struct iovec iov[2] = { { hdr, sizeof(hdr) },
				{ (void *)payload, len } };
	return c->ops->sendv(c, iov, len ? 2 : 1);
}

int mfd__ctl_recv(struct mfd__chan *c, struct mfd_ctl_hdr *h, uint8_t **payload)
{
	uint8_t hdr[MFD_CTL_HDR_SIZE];
	*payload = NULL;
	int ret = c->ops->recv(c, hdr, sizeof(hdr));
	if (ret)
		return ret;
	ret = mfd__ctl_hdr_decode(hdr, h);
	if (ret)
		return ret;
	if (!h->length)
		return 0;
	/* Bounded by MFD_MAX_CTL_PAYLOAD in the decoder. */
	uint8_t *buf = malloc(h->length);
	if (!buf)
		return -ENOMEM;
	ret = c->ops->recv(c, buf, h->length);
	if (ret == -ECONNRESET)
		ret = MFD_ETRUNCATED;
	if (ret) {
		free(buf);
		return ret;
	}
	*payload = buf;
	return 0;
}

void mfd__ctl_send_error(struct mfd__chan *c, int code, const char *fmt, ...)
{
	struct mfd_error_msg m = { .code = code < 0 ? code : MFD_EREMOTE };
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m.text, sizeof(m.text), fmt, ap);
	va_end(ap);
	uint8_t buf[8 + MFD_MAX_ERROR_TEXT];
	int len = mfd__error_encode(&m, buf, sizeof(buf));
	if (len > 0)
		mfd__ctl_send(c, MFD_CTL_ERROR, buf, (uint32_t)len);
}

/* One of this library's codes (MFD_ERRNO_MAP), whatever their range. */
static bool known_code(int code)
{
	switch (code) {
#define KNOWN(name, num, text) case -(num):
		MFD_ERRNO_MAP(KNOWN)
#undef KNOWN
		return true;
	default:
		return false;
	}
}

int mfd__ctl_peer_error(const uint8_t *payload, uint32_t len, const char *who)
{
	struct mfd_error_msg m;
	int ret = mfd__error_decode(payload, len, &m);
	if (ret)
		return ret;
	mfd__err("%s reported: %s (%s)", who, m.text, mfd_strerror(m.code));
	/* Keep the peer's cause when it is one we know, so the caller sees
	 * why (e.g. MFD_EOFFSET); anything else is just "remote error". */
	if (known_code(m.code))
		return m.code;
	if (m.code == -ECANCELED || m.code == -ETIMEDOUT)
		return m.code;
	return MFD_EREMOTE;
}

int mfd__hello_send(struct mfd__chan *c, const struct mfd_hello *h)
{
	uint8_t buf[MFD_HELLO_SIZE];
	mfd__hello_encode(h, buf);
	return mfd__chan_send(c, buf, sizeof(buf));
}

int mfd__hello_recv(struct mfd__chan *c, struct mfd_hello *h)
{
	uint8_t buf[MFD_HELLO_SIZE];
	int ret = c->ops->recv(c, buf, sizeof(buf));
	if (ret)
		return ret;
	return mfd__hello_decode(buf, h);
}

static void reply_bytes(int error, uint64_t features,
			uint8_t buf[MFD_HELLO_REPLY_SIZE])
{
	struct mfd_hello_reply r = { .magic = MFD_MAGIC_HELLO,
				     .version = MFD_PROTO_VERSION,
				     .status = error ? 1 : 0,
				     .error = error,
				     .features = features };
	mfd__hello_reply_encode(&r, buf);
}

int mfd__hello_reply_send(struct mfd__chan *c, int error, uint64_t features)
{
	uint8_t buf[MFD_HELLO_REPLY_SIZE];
	reply_bytes(error, features, buf);
	return mfd__chan_send(c, buf, sizeof(buf));
}

int mfd__hello_reply_recv(struct mfd__chan *c, uint64_t *features)
{
	uint8_t buf[MFD_HELLO_REPLY_SIZE];
	struct mfd_hello_reply r;
	int ret = c->ops->recv(c, buf, sizeof(buf));
	if (!ret)
		ret = mfd__hello_reply_decode(buf, &r);
	if (ret)
		return ret;
	if (r.status) {
		mfd__err("destination refused the connection: %s",
			 mfd_strerror(r.error));
		return r.error < 0 ? r.error : MFD_EREMOTE;
	}
	*features = r.features;
	return 0;
}

static int auth_send(struct mfd__chan *c, const struct mfd_auth_msg *m)
{
	uint8_t buf[MFD_AUTH_MSG_SIZE];
	mfd__auth_msg_encode(m, buf);
	return mfd__chan_send(c, buf, sizeof(buf));
}

static int auth_recv(struct mfd__chan *c, uint16_t type, struct mfd_auth_msg *m)
{
	uint8_t buf[MFD_AUTH_MSG_SIZE];
	int ret = c->ops->recv(c, buf, sizeof(buf));
	if (ret == -ECONNRESET)
		ret = MFD_ETRUNCATED; /* the handshake had started */
	return ret ? ret : mfd__auth_msg_decode(buf, type, m);
}

/*
 * The transcript both MACs cover is rebuilt from the decoded hello and the
 * accepting reply: both encodings are canonical (a decoder accepts only
 * bytes its encoder produces), so both sides hash the same bytes.
 */
int mfd__handshake_source(struct mfd__chan *c, const struct mfd_hello *h,
			  const struct mfd__key *key, uint64_t *features)
{
	uint8_t hello[MFD_HELLO_SIZE], reply[MFD_HELLO_REPLY_SIZE];
	mfd__hello_encode(h, hello);
	int ret = mfd__chan_send(c, hello, sizeof(hello));
	if (!ret)
		ret = mfd__hello_reply_recv(c, features);
	if (ret || !(h->features & MFD_FEAT_AUTH))
		return ret;
	if (*features != h->features)
		return MFD_EFEATURE;

	struct mfd_auth_msg ch,
		resp = { .magic = MFD_MAGIC_AUTH, .type = MFD_AUTH_RESPONSE },
		conf;
	uint8_t mac[MFD_AUTH_MAC_SIZE];
	reply_bytes(0, *features, reply);
	if ((ret = auth_recv(c, MFD_AUTH_CHALLENGE, &ch)) ||
	    (ret = mfd__random_bytes(resp.nonce, sizeof(resp.nonce))) ||
	    (ret = mfd__auth_mac(key, MFD_AUTH_SOURCE, hello, reply, ch.nonce,
				 resp.nonce, NULL, 0, resp.mac)) ||
	    (ret = auth_send(c, &resp)) ||
	    (ret = auth_recv(c, MFD_AUTH_CONFIRM, &conf)))
		goto out;
	if (conf.error) {
		mfd__err("destination %s refused authentication: %s", c->peer,
			 mfd_strerror(conf.error));
		ret = conf.error;
		goto out;
	}
	if ((ret = mfd__auth_mac(key, MFD_AUTH_DEST, hello, reply, ch.nonce,
				 resp.nonce, NULL, 0, mac)))
		goto out;
	/* A peer that accepted us without knowing the key is an impostor. */
	if ((ret = mfd__auth_mac_check(mac, conf.mac)))
		mfd__err("destination %s did not prove the key: refused",
			 c->peer);
out:
	OPENSSL_cleanse(mac, sizeof(mac));
	return ret;
}

int mfd__auth_dest(struct mfd__chan *c, const struct mfd__key *key,
		   const struct mfd_hello *h)
{
	uint8_t hello[MFD_HELLO_SIZE], reply[MFD_HELLO_REPLY_SIZE];
	uint8_t mac[MFD_AUTH_MAC_SIZE];
	struct mfd_auth_msg ch = { .magic = MFD_MAGIC_AUTH,
				   .type = MFD_AUTH_CHALLENGE },
			    resp,
			    conf = { .magic = MFD_MAGIC_AUTH,
				     .type = MFD_AUTH_CONFIRM };
	mfd__hello_encode(h, hello);
	reply_bytes(0, h->features, reply);
	/* A fresh nonce per connection: a recorded RESPONSE answers another
	 * challenge and fails. */
	int ret = mfd__random_bytes(ch.nonce, sizeof(ch.nonce));
	if (!ret)
		ret = auth_send(c, &ch);
	if (!ret)
		ret = auth_recv(c, MFD_AUTH_RESPONSE, &resp);
	if (!ret)
		ret = mfd__auth_mac(key, MFD_AUTH_SOURCE, hello, reply,
				    ch.nonce, resp.nonce, NULL, 0, mac);
	if (ret)
		goto out;
	if (mfd__auth_mac_check(mac, resp.mac)) {
		/* Wrong key, a replayed response, or a hello of another
		 * session or channel than the one the MAC was made for. */
		conf.error = MFD_EAUTH;
		auth_send(c, &conf);
		ret = MFD_EAUTH;
		goto out;
	}
	ret = mfd__auth_mac(key, MFD_AUTH_DEST, hello, reply, ch.nonce,
			    resp.nonce, NULL, 0, conf.mac);
	if (!ret)
		ret = auth_send(c, &conf);
out:
	OPENSSL_cleanse(mac, sizeof(mac));
	OPENSSL_cleanse(conf.mac, sizeof(conf.mac));
	return ret;
}
