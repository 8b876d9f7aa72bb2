/* SPDX-License-Identifier: MIT */
/* XXH3 page and block digests for AVX-512 (this file is compiled with
 * -mavx512f; digest.c calls it only where the CPU has AVX-512F). */
#define DIGEST_ISA avx512
#include "multifd/common/digest_impl.h"
