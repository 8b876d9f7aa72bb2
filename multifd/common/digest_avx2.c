/* SPDX-License-Identifier: MIT */
/* XXH3 page and block digests for AVX2 (this file is compiled with
 * -mavx2; digest.c calls it only where the CPU has AVX2). */
#define DIGEST_ISA avx2
#include "multifd/common/digest_impl.h"
