/* SPDX-License-Identifier: MIT */
/* Small helpers of every layer. */
#ifndef MULTIFD_COMMON_UTIL_H
#define MULTIFD_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define MFD_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* A range of memory: a RAM block as the layers below the engine see it. */
struct mfd__mem {
	uint8_t *host;
	uint64_t size;
};

/* The value of a hexadecimal digit, -1 for any other character. */
static inline int mfd__hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Skips n bytes of iov[0 .. *cnt) after a partial transfer: returns the
 * first iovec not fully moved (trimmed), *cnt the ones left. */
static inline struct iovec *mfd__iov_skip(struct iovec *iov, size_t *cnt,
					  size_t n)
{
	while (*cnt && n >= iov->iov_len) {
		n -= iov->iov_len;
		iov++;
		(*cnt)--;
	}
	if (*cnt) {
		iov->iov_base = (uint8_t *)iov->iov_base + n;
		iov->iov_len -= n;
	}
	return iov;
}

#endif /* MULTIFD_COMMON_UTIL_H */
