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

#endif /* MULTIFD_COMMON_UTIL_H */
