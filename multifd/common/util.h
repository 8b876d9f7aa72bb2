/* SPDX-License-Identifier: MIT */
/* Small helpers of every layer. */
#ifndef MULTIFD_COMMON_UTIL_H
#define MULTIFD_COMMON_UTIL_H

#include <stdint.h>

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

#endif /* MULTIFD_COMMON_UTIL_H */
