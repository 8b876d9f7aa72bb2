/* SPDX-License-Identifier: MIT */
/*
 * Pre-shared key, auth messages and their MAC (auth.h). The key file is the
 * only secret the library reads; it is wiped when the handle goes away.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "multifd/auth.h"
#include "multifd/internal.h"

static const char label_source[] = "multifd-auth-v1 source";
static const char label_dest[] = "multifd-auth-v1 destination";

void mfd__auth_msg_encode(const struct mfd__auth_msg *m,
			  uint8_t out[MFD_AUTH_MSG_SIZE])
{
	mfd__put_le32(out + 0, m->magic);
	mfd__put_le16(out + 4, m->type);
	mfd__put_le16(out + 6, m->reserved);
	mfd__put_le32(out + 8, (uint32_t)m->error);
	mfd__put_le32(out + 12, m->reserved2);
	memcpy(out + 16, m->nonce, MFD_AUTH_NONCE_SIZE);
	memcpy(out + 48, m->mac, MFD_AUTH_MAC_SIZE);
}

static int all_zero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;
	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

int mfd__auth_msg_decode(const uint8_t in[MFD_AUTH_MSG_SIZE], uint16_t type,
			 struct mfd__auth_msg *m)
{
	m->magic = mfd__get_le32(in + 0);
	m->type = mfd__get_le16(in + 4);
	m->reserved = mfd__get_le16(in + 6);
	m->error = (int32_t)mfd__get_le32(in + 8);
	m->reserved2 = mfd__get_le32(in + 12);
	memcpy(m->nonce, in + 16, MFD_AUTH_NONCE_SIZE);
	memcpy(m->mac, in + 48, MFD_AUTH_MAC_SIZE);

	if (m->magic != MFD_MAGIC_AUTH)
		return MFD_EBADMAGIC;
	if (m->type != type)
		return MFD_ETYPE;
	if (m->reserved || m->reserved2)
		return MFD_EFLAGS;
	switch (type) {
	case MFD_AUTH_CHALLENGE:
		if (m->error || !all_zero(m->mac, MFD_AUTH_MAC_SIZE))
			return MFD_EFLAGS;
		return 0;
	case MFD_AUTH_RESPONSE:
		return m->error ? MFD_EFLAGS : 0;
	case MFD_AUTH_CONFIRM:
		if (!all_zero(m->nonce, MFD_AUTH_NONCE_SIZE))
			return MFD_EFLAGS;
		if (m->error == 0)
			return 0;
		if (m->error > 0 || m->error == INT32_MIN ||
		    !all_zero(m->mac, MFD_AUTH_MAC_SIZE))
			return MFD_EFLAGS;
		return 0;
	default:
		return MFD_ETYPE;
	}
}

int mfd__auth_mac(const struct mfd__key *key, int side,
		  const uint8_t hello[MFD_HELLO_SIZE],
		  const uint8_t reply[MFD_HELLO_REPLY_SIZE],
		  const uint8_t nonce_d[MFD_AUTH_NONCE_SIZE],
		  const uint8_t nonce_s[MFD_AUTH_NONCE_SIZE],
		  const uint8_t *binding, size_t binding_len,
		  uint8_t mac[MFD_AUTH_MAC_SIZE])
{
	const char *label = side == MFD_AUTH_SOURCE ? label_source : label_dest;
	/* label (at most 27 bytes) + 40 + 24 + 32 + 32; binding appended. */
	uint8_t msg[32 + MFD_HELLO_SIZE + MFD_HELLO_REPLY_SIZE +
		    2 * MFD_AUTH_NONCE_SIZE + 64];
	size_t n = strlen(label);
	if (binding_len > 64 || !key->len)
		return -EINVAL;
	memcpy(msg, label, n);
	memcpy(msg + n, hello, MFD_HELLO_SIZE);
	n += MFD_HELLO_SIZE;
	memcpy(msg + n, reply, MFD_HELLO_REPLY_SIZE);
	n += MFD_HELLO_REPLY_SIZE;
	memcpy(msg + n, nonce_d, MFD_AUTH_NONCE_SIZE);
	n += MFD_AUTH_NONCE_SIZE;
	memcpy(msg + n, nonce_s, MFD_AUTH_NONCE_SIZE);
	n += MFD_AUTH_NONCE_SIZE;
	if (binding_len)
		memcpy(msg + n, binding, binding_len);
	n += binding_len;
	unsigned int outlen = 0;
	if (!HMAC(EVP_sha256(), key->bytes, (int)key->len, msg, n, mac,
		  &outlen) ||
	    outlen != MFD_AUTH_MAC_SIZE)
		return -EIO;
	return 0;
}

int mfd__auth_mac_check(const uint8_t a[MFD_AUTH_MAC_SIZE],
			const uint8_t b[MFD_AUTH_MAC_SIZE])
{
	return CRYPTO_memcmp(a, b, MFD_AUTH_MAC_SIZE) ? MFD_EAUTH : 0;
}

static int is_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int mfd__auth_key_parse(const uint8_t *buf, size_t len, struct mfd__key *key,
			char *why, size_t whylen)
{
	size_t n = len, i;
	key->len = 0;
	while (n && is_space(buf[n - 1]))
		n--;
	for (i = 0; i < n && mfd__hexval(buf[i]) >= 0; i++)
		;
	if (i == n && n >= 2 * MFD_AUTH_KEY_MIN && n <= 2 * MFD_AUTH_KEY_MAX &&
	    n % 2 == 0) {
		for (i = 0; i < n / 2; i++)
			key->bytes[i] = (uint8_t)(mfd__hexval(buf[2 * i]) << 4 |
						  mfd__hexval(buf[2 * i + 1]));
		key->len = n / 2;
		return 0;
	}
	/* Not a hex key: the bytes themselves, all of them. */
	if (len >= MFD_AUTH_KEY_MIN && len <= MFD_AUTH_KEY_MAX) {
		memcpy(key->bytes, buf, len);
		key->len = len;
		return 0;
	}
	snprintf(why, whylen,
		 "a key is %d to %d hex digits, or %d to %d raw bytes; the "
		 "file has %zu bytes",
		 2 * MFD_AUTH_KEY_MIN, 2 * MFD_AUTH_KEY_MAX, MFD_AUTH_KEY_MIN,
		 MFD_AUTH_KEY_MAX, len);
	return MFD_ECONFIG;
}

int mfd__auth_key_load(const char *path, struct mfd__key *key)
{
	key->len = 0;
	if (!path || !path[0])
		return 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		int err = -errno;
		mfd__err("auth-key-file %s: %s", path, strerror(errno));
		return err;
	}
	struct stat st;
	int ret = 0;
	char why[160] = "";
	if (fstat(fd, &st)) {
		ret = -errno;
		snprintf(why, sizeof(why), "%s", strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		ret = MFD_ECONFIG;
		snprintf(why, sizeof(why), "not a regular file");
	} else if (st.st_mode & (S_IROTH | S_IWOTH)) {
		/* A key others can read is no secret (ssh refuses such
		 * private keys for the same reason). */
		ret = MFD_ECONFIG;
		snprintf(why, sizeof(why),
			 "readable or writable by others (mode %03o); "
			 "chmod o-rwx it",
			 (unsigned)(st.st_mode & 0777));
	} else if (st.st_size > MFD_AUTH_KEYFILE_MAX) {
		ret = MFD_ECONFIG;
		snprintf(why, sizeof(why), "larger than %d bytes",
			 MFD_AUTH_KEYFILE_MAX);
	}
	uint8_t buf[MFD_AUTH_KEYFILE_MAX + 1];
	size_t len = 0;
	while (!ret && len < sizeof(buf)) {
		ssize_t r = read(fd, buf + len, sizeof(buf) - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			snprintf(why, sizeof(why), "%s", strerror(errno));
		}
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	if (!ret && len > MFD_AUTH_KEYFILE_MAX) {
		ret = MFD_ECONFIG;
		snprintf(why, sizeof(why), "larger than %d bytes",
			 MFD_AUTH_KEYFILE_MAX);
	}
	if (!ret)
		ret = mfd__auth_key_parse(buf, len, key, why, sizeof(why));
	OPENSSL_cleanse(buf, sizeof(buf));
	if (ret) {
		mfd__auth_key_clear(key);
		mfd__err("auth-key-file %s: %s", path, why);
	}
	return ret;
}

void mfd__auth_key_clear(struct mfd__key *key)
{
	OPENSSL_cleanse(key->bytes, sizeof(key->bytes));
	key->len = 0;
}
