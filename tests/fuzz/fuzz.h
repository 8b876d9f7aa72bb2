/* SPDX-License-Identifier: MIT */
/*
 * Fuzz targets: each file defines LLVMFuzzerTestOneInput over one parser of
 * untrusted bytes, built from the engine's real sources. With -DMFD_FUZZ=ON
 * (clang) they link against libFuzzer; in every build regress.c replays the
 * seed corpus through the same function as an ordinary test.
 *
 * A target returns 0; it aborts (FUZZ_ASSERT) when a decoder accepts
 * something that breaks the invariant the destination relies on.
 */
#ifndef MFD_FUZZ_H
#define MFD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                      \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: invariant broken: %s\n",       \
				__FILE__, __LINE__, #cond);                    \
			abort();                                               \
		}                                                              \
	} while (0)

#endif
