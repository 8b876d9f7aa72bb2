/* SPDX-License-Identifier: MIT */
/* Guest RAM blocks: validation, bitmaps, dirty marking. */
#include <errno.h>
#include <string.h>

#include "ramblock/ramblock.h"

#define MIN_PAGE_SIZE 4096U
#define MAX_PAGE_SIZE (1U << 30)

int mfd__ramblock_init(struct mfd__ramblock *rb, const char *name, void *host,
		       uint64_t size, uint32_t page_size)
{
	size_t namelen;
	int ret;

	if (!rb)
		return -EINVAL;
	/* Zeroed first, so that destroy is safe after a failed init. */
	memset(rb, 0, sizeof(*rb));
	if (!name || !host)
		return -EINVAL;
	namelen = strnlen(name, sizeof(rb->name));
	if (namelen == 0 || namelen >= sizeof(rb->name))
		return -EINVAL;
	if (page_size < MIN_PAGE_SIZE || page_size > MAX_PAGE_SIZE ||
	    (page_size & (page_size - 1)))
		return -EINVAL;
	if (size == 0 || (size & (page_size - 1)))
		return -EINVAL;

	memcpy(rb->name, name, namelen);
	rb->host = host;
	rb->size = size;
	rb->page_size = page_size;
	rb->page_shift = (uint32_t)__builtin_ctz(page_size);
	rb->npages = size >> rb->page_shift;

	ret = mfd__bitmap_init(&rb->dirty, rb->npages);
	if (ret)
		goto fail;
	ret = mfd__bitmap_init(&rb->log, rb->npages);
	if (ret)
		goto fail;
	return 0;
fail:
	mfd__ramblock_destroy(rb);
	return ret;
}

void mfd__ramblock_destroy(struct mfd__ramblock *rb)
{
	if (!rb)
		return;
	mfd__bitmap_destroy(&rb->dirty);
	mfd__bitmap_destroy(&rb->log);
	memset(rb, 0, sizeof(*rb));
}

int mfd__ramblock_mark_dirty(struct mfd__ramblock *rb, uint64_t offset,
			     uint64_t len)
{
	uint64_t first, last;

	if (!len)
		return 0;
	/* Written so that offset + len cannot wrap. */
	if (offset >= rb->size || len > rb->size - offset)
		return -ERANGE;
	first = offset >> rb->page_shift;
	last = (offset + len - 1) >> rb->page_shift;
	mfd__bitmap_set_range_atomic(&rb->log, first, last - first + 1);
	return 0;
}
