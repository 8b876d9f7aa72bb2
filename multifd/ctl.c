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
	struct mfd__ctl_hdr h = { .magic = MFD_MAGIC_CTL,
				  .type = type,
				  .length = len };
	mfd__ctl_hdr_encode(&h, hdr);
	struct iovec iov[2] = { { hdr, sizeof(hdr) },
				{ (void *)payload, len } };
	return c->ops->sendv(c, iov, len ? 2 : 1);
}

int mfd__ctl_recv(struct mfd__chan *c, struct mfd__ctl_hdr *h,
		  uint8_t **payload)
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
	struct mfd__error_msg m = { .code = code < 0 ? code : MFD_EREMOTE };
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
	struct mfd__error_msg m;
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
