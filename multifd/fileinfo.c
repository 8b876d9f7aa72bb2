/* SPDX-License-Identifier: MIT */
/* mfd_file_info_read(): what an image holds, for tools (multifd.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "multifd/common/le.h"
#include "multifd/fileimg.h"
#include "multifd/multifd.h"

/* len bytes at off into a new buffer; -ENODATA past the end. */
static int read_at(int fd, uint64_t off, uint64_t len, uint8_t **out)
{
	uint8_t *p = *out = malloc(len ? len : 1);
	if (!p)
		return -ENOMEM;
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ENODATA;
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

static int blocks_of(int fd, const struct mfd__fimg_hdr *h,
		     const struct mfd__fimg_end *e, mfd_file_info *fi,
		     char *why, size_t whylen)
{
	for (uint32_t i = 0; i < h->nblocks; i++) {
		const struct mfd__fimg_block *b = &h->blocks[i];
		mfd_file_block *o = &fi->blocks[i];
		snprintf(o->name, sizeof(o->name), "%s", b->name);
		o->size = b->size;
		o->page_size = b->page_size;
		o->bitmap_off = b->bitmap_off;
		o->pages_off = b->pages_off;
		if (!e)
			continue;
		memcpy(o->digest, e->blocks[i].ram, sizeof(o->digest));
		uint64_t npages = b->size / b->page_size;
		uint64_t len = mfd__fimg_bitmap_len(npages);
		uint8_t *buf;
		int ret = read_at(fd, b->bitmap_off, len, &buf);
		if (!ret)
			ret = mfd__fimg_bitmap_check(buf, npages, &o->present,
						     why, whylen);
		if (!ret)
			o->bitmap_ok = mfd__fimg_digest64(buf, len) ==
					       e->blocks[i].bitmap &&
				       o->present == e->blocks[i].present;
		free(buf);
		if (ret)
			return ret == -ENODATA ? MFD_ETRUNCATED : ret;
	}
	return 0;
}

/* The decoded header and end record: large, so on the heap. */
struct decoded {
	struct mfd__fimg_hdr h;
	struct mfd__fimg_end e;
};

static int info(int fd, mfd_file_info *fi, struct decoded *d, char *why,
		size_t whylen)
{
	struct mfd__fimg_hdr *h = &d->h;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	fi->file_size = (uint64_t)st.st_size;
	fi->allocated = (uint64_t)st.st_blocks * 512;
	uint64_t len = mfd__fimg_header_len(MFD__FIMG_MAX_BLOCKS);
	if (len > fi->file_size)
		len = fi->file_size;
	uint8_t *buf;
	int ret = read_at(fd, 0, len, &buf);
	if (!ret)
		ret = mfd__fimg_header_decode(buf, len, fi->file_size, h, why,
					      whylen);
	free(buf);
	if (ret)
		return ret;
	fi->version = h->version;
	fi->nblocks = h->nblocks;
	fi->header_len = h->header_len;
	fi->dev_off = h->dev_off;
	fi->end_off = h->end_off;
	fi->complete = h->end_off != 0;
	if (!(fi->blocks = calloc(h->nblocks, sizeof(*fi->blocks))))
		return -ENOMEM;
	if (!fi->complete)
		return blocks_of(fd, h, NULL, fi, why, whylen);
	uint64_t elen = mfd__fimg_end_len(h->nblocks);
	if ((ret = read_at(fd, h->end_off, elen, &buf)) == 0)
		ret = mfd__fimg_end_decode(buf, elen, h, &d->e, why, whylen);
	free(buf);
	if (ret)
		return ret == -ENODATA ? MFD_ETRUNCATED : ret;
	fi->ndevices = d->e.ndevices;
	fi->dev_len = d->e.dev_len;
	return blocks_of(fd, h, &d->e, fi, why, whylen);
}

int mfd_file_info_read(const char *path, mfd_file_info **out, char *why,
		       size_t whylen)
{
	if (!path || !out)
		return -EINVAL;
	*out = NULL;
	if (why && whylen)
		why[0] = 0;
	mfd_file_info *fi = calloc(1, sizeof(*fi));
	struct decoded *d = malloc(sizeof(*d));
	if (!fi || !d) {
		free(fi);
		free(d);
		return -ENOMEM;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int ret = fd < 0 ? -errno : info(fd, fi, d, why, whylen);
	if (fd >= 0)
		close(fd);
	free(d);
	if (ret) {
		mfd_file_info_free(fi);
		return ret;
	}
	*out = fi;
	return 0;
}

void mfd_file_info_free(mfd_file_info *fi)
{
	if (!fi)
		return;
	free(fi->blocks);
	free(fi);
}
