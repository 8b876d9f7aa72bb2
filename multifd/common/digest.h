/* SPDX-License-Identifier: MIT */
/* Digests of memory ranges (docs/protocol.md, "block digest"). */
#ifndef MULTIFD_COMMON_DIGEST_H
#define MULTIFD_COMMON_DIGEST_H

#include <stdint.h>

#include "multifd/common/util.h"

#define MFD__DIGEST_SIZE 16	       /* XXH3-128, canonical bytes */
#define MFD_DIGEST_CHUNK (16ULL << 20) /* hashed apart, on all CPUs */

/* The digest of each of the n ranges into out[i], computed on all online
 * CPUs (up to 8). 0 or -ENOMEM. The CPU time of the helper threads it starts
 * (not the caller's own) is added to *cpu_ns (atomically; NULL: not). */
int mfd__digest_mem(const struct mfd__mem *r, unsigned n,
		    uint8_t (*out)[MFD__DIGEST_SIZE], uint64_t *cpu_ns);

#endif /* MULTIFD_COMMON_DIGEST_H */
