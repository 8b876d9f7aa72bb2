/* SPDX-License-Identifier: MIT */
/* multifd-bench file-info FILE: what a saved image holds (fileinfo.h). */
#include <inttypes.h>
#include <stdio.h>

#include <multifd/multifd.h>

#include "fileinfo.h"
#include "harness.h"

static void hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

int file_info_run(const char *path)
{
	mfd_file_info *fi;
	char why[1024], dig[33];
	int err = mfd_file_info_read(path, &fi, why, sizeof(why));

	if (err) {
		fprintf(stderr, "%s: %s: %s%s%s\n", prog_name, path,
			mfd_strerror(err), why[0] ? ": " : "", why);
		return 1;
	}
	printf("file %s\n", path);
	printf("  version %" PRIu32 ", %s\n", fi->version,
	       fi->complete ? "complete" : "INCOMPLETE (the save never ended)");
	printf("  size %" PRIu64 " bytes, %" PRIu64 " allocated\n",
	       fi->file_size, fi->allocated);
	printf("  header %" PRIu64 " bytes; device state %" PRIu64
	       " bytes of %" PRIu32 " devices at %" PRIu64
	       "; end record at %" PRIu64 "\n",
	       fi->header_len, fi->dev_len, fi->ndevices, fi->dev_off,
	       fi->end_off);
	for (uint32_t i = 0; i < fi->nblocks; i++) {
		const mfd_file_block *b = &fi->blocks[i];
		uint64_t npages = b->size / b->page_size;

		hex(b->digest, sizeof(b->digest), dig);
		printf("  block %" PRIu32 " %s: %" PRIu64
		       " bytes, pages of %" PRIu32 ", pages at %" PRIu64
		       ", bitmap at %" PRIu64 "\n",
		       i, b->name, b->size, b->page_size, b->pages_off,
		       b->bitmap_off);
		if (fi->complete)
			printf("    %" PRIu64 " of %" PRIu64
			       " pages present (%" PRIu64
			       " holes), bitmap %s, digest %s\n",
			       b->present, npages, npages - b->present,
			       b->bitmap_ok ? "ok" : "CORRUPT", dig);
	}
	err = !fi->complete;
	for (uint32_t i = 0; i < fi->nblocks; i++)
		err |= fi->complete && !fi->blocks[i].bitmap_ok;
	mfd_file_info_free(fi);
	return err;
}
