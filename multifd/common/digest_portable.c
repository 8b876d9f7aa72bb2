/* SPDX-License-Identifier: MIT */
/* XXH3 page and block digests for the compiler's baseline: SSE2 on
 * x86-64, NEON on arm64, scalar elsewhere. Every CPU runs them. */
#define DIGEST_ISA portable
#include "multifd/common/digest_impl.h"
