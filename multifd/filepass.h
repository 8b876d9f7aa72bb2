/* SPDX-License-Identifier: MIT */
/*
 * What the file migration's parts share (multifd/filemig.c: save, restore
 * and the writers' and readers' passes; multifd/filelazy.c: the lazy
 * restore). Private to them; the engine's entry points are filemig.h.
 */
#ifndef MULTIFD_FILEPASS_H
#define MULTIFD_FILEPASS_H

#include <stdbool.h>
#include <stdint.h>

#include "devstate/devstate.h"
#include "multifd/fileimg.h"
#include "multifd/fileio.h"
#include "multifd/filemig.h"
#include "multifd/postcopy_dst.h"
#include "multifd/session.h"

/* One unit of work for a writer or a reader: up to packet-pages pages of
 * one block (the scanner's batch). */
struct mfd__fbatch {
	uint32_t block, n;
	uint64_t *offsets;
};

/* What the writers or readers of one pass share. */
struct mfd__fpass {
	struct mfd__session *ss;
	int fd;			     /* pages: O_DIRECT with direct-io */
	int mfd;		     /* metadata and hole punching */
	struct mfd__bitmap *present; /* per block: page in the page area */
	const struct mfd__fimg_hdr *h;
	const char *path;
	bool uring; /* io-engine = uring: each worker's own ring */
	struct mfd__fbatch *b;
	uint64_t nb;
	uint64_t next; /* atomic: the next batch to take */
	uint64_t bytes;
	/* Lazy restore: pages go through a staging buffer and userfaultfd
	 * placement instead of straight into guest memory. */
	struct mfd__pc_dst *pc;
	/* Save: zeros_len bytes that read as zero, the source of the zero
	 * pages written as data (never written: the kernel's zero page). */
	uint8_t *zeros;
	uint64_t zeros_len;
};

/* The batches of one pass, from the scanner over the dirty bitmaps (save)
 * or every page in order (load). */
struct mfd__fbatches {
	struct mfd__fbatch *b;
	uint64_t *offs; /* one array for all batches */
	uint64_t n, cap, noffs;
};

/* What a save and a restore both hold. */
struct mfd__fside {
	struct mfd__session *ss;
	struct mfd__devset *devs;
	uint64_t *dev_bytes;
	const char *path;
	struct mfd__fimg_hdr h;
	struct mfd__bitmap present[MFD_MAX_BLOCKS]; /* pages in the file */
	struct mfd__fbatches bs;
	int fd, dfd; /* dfd: the pages (O_DIRECT with direct-io) */
};

/* A restore. */
struct mfd__fload {
	struct mfd__fside c;
	const mfd_dest_hooks *hooks;
	const struct mfd__file_lazy *lazy; /* NULL: not lazy */
	bool ran;			   /* lazy: the guest runs */
	struct mfd__fimg_end e;
	uint64_t size;
	char why[768]; /* two block names and numbers fit */
};

/* The largest page size of the session's blocks (4 KiB at least). */
uint64_t mfd__file_largest_page(const struct mfd__session *ss);
/* Records err (a negative errno) for what failed on path, with its text
 * and name; the session's first error. */
int mfd__file_fail_errno(struct mfd__session *ss, int err, const char *what,
			 const char *path);
/* Arrays for a full pass over the session's blocks. 0 or -ENOMEM. */
int mfd__fbatches_alloc(struct mfd__fbatches *bs, struct mfd__session *ss);
/* Runs the pass's batches on `channels` threads and joins them. */
int mfd__fpass_run(struct mfd__fpass *p, bool save);
/* The restore's reading pass over every page present. */
struct mfd__fpass mfd__fload_read_pass(struct mfd__fload *f);
/* The device state, checked against its digest, loaded in order. */
int mfd__fload_devices(struct mfd__fload *f);

/* Lazy restore (filelazy.c). A reader's own buffers. */
struct mfd__flazy_buf {
	uint8_t *stage; /* a batch's pages before placement */
	uint64_t *runs; /* (first page, count) per run */
};
int mfd__flazy_buf_init(struct mfd__flazy_buf *lz, struct mfd__session *ss);
void mfd__flazy_buf_free(struct mfd__flazy_buf *lz);
/* A background reader's batch: claimed, read, digested, placed. */
int mfd__flazy_batch(struct mfd__fpass *p, struct mfd__fio *io,
		     const struct mfd__fbatch *bt, struct mfd__flazy_buf *lz);
/* The lazy restore, once the image's metadata is checked: the guest runs
 * at once, pages come on fault and from the readers. 0 or the error. */
int mfd__flazy_run(struct mfd__fload *f);

#endif /* MULTIFD_FILEPASS_H */
