/* SPDX-License-Identifier: MIT */
/* The two-block image header that fuzz_fileimg decodes end records
 * against and gen_corpus encodes its seeds with: one definition, so the
 * seeds always fit the target. */
#ifndef MFD_FUZZ_FILEIMG_TWO_H
#define MFD_FUZZ_FILEIMG_TWO_H

#include <string.h>

#include "multifd/fileimg.h"

static inline void fimg_two_blocks(struct mfd__fimg_hdr *h)
{
	memset(h, 0, sizeof(*h));
	h->nblocks = 2;
	strcpy(h->blocks[0].name, "pc.ram");
	h->blocks[0].size = 64 << 20;
	h->blocks[0].page_size = 4096;
	strcpy(h->blocks[1].name, "vram");
	h->blocks[1].size = 8 << 20;
	h->blocks[1].page_size = 65536;
	mfd__fimg_layout(h);
}

#endif
