/* SPDX-License-Identifier: MIT */
/*
 * The uffd-wp tracker: the kernel's own write tracking of the blocks'
 * memory, with no fault ever delivered to user space.
 *
 * start: a userfaultfd with UFFD_FEATURE_WP_ASYNC (and WP_UNPOPULATED, so
 *        that pages never touched yet are protected too), each block
 *        registered in write-protect mode and write-protected whole.
 * write: the kernel clears the page's protection on the first write and
 *        lets the writer go on (one minor fault per page per round). On a
 *        transparent huge page the kernel splits the huge mapping first,
 *        so tracking stays at 4 KiB (docs/architecture.md: THP).
 * sync:  PAGEMAP_SCAN over the block with PM_SCAN_WP_MATCHING: returns
 *        the ranges written since the last scan (PAGE_IS_WRITTEN) and
 *        write-protects them again, atomically per page table.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "multifd/compat/linux.h"
#include "ramblock/tracker.h"
#include "ramblock/uffd.h"

#define VEC_LEN	 4096 /* ranges per PAGEMAP_SCAN call */
#define FEATURES (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED)

/* A userfaultfd with the async write-protect API, or -errno. */
static int uffd_open_api(const char **why)
{
	int fd = mfd__uffd_open(false, NULL);
	if (fd < 0) {
		*why = "userfaultfd() not permitted or not available";
		return fd;
	}
	struct uffdio_api api = { .api = UFFD_API };
	/* Ask first what the kernel has: requesting an unknown feature
	 * fails the call, and the handshake can happen only once. */
	if (ioctl(fd, UFFDIO_API, &api)) {
		*why = "UFFDIO_API failed";
		close(fd);
		return -ENOTSUP;
	}
	if ((api.features & FEATURES) != FEATURES) {
		*why = "kernel lacks UFFD_FEATURE_WP_ASYNC (needs Linux 6.7)";
		close(fd);
		return -ENOTSUP;
	}
	close(fd);
	fd = mfd__uffd_open(false, NULL);
	if (fd < 0) {
		*why = "userfaultfd() failed";
		return fd;
	}
	api = (struct uffdio_api){ .api = UFFD_API, .features = FEATURES };
	if (ioctl(fd, UFFDIO_API, &api)) {
		*why = "UFFDIO_API with WP_ASYNC refused";
		close(fd);
		return -ENOTSUP;
	}
	return fd;
}

bool mfd__tracker_uffd_supported(const char **why)
{
	const char *w = NULL;
	int fd = uffd_open_api(&w);
	if (fd < 0) {
		if (why)
			*why = w;
		return false;
	}
	close(fd);
	/* PAGEMAP_SCAN (6.7): an empty scan is accepted where it exists. */
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pm < 0) {
		if (why)
			*why = "cannot open /proc/self/pagemap";
		return false;
	}
	long pg = sysconf(_SC_PAGESIZE);
	void *probe = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bool ok = false;
	if (probe != MAP_FAILED) {
		struct page_region r;
		struct pm_scan_arg a = {
			.size = sizeof(a),
			.start = (uint64_t)(uintptr_t)probe,
			.end = (uint64_t)(uintptr_t)probe + (uint64_t)pg,
			.vec = (uint64_t)(uintptr_t)&r,
			.vec_len = 1,
			.category_mask = PAGE_IS_WRITTEN,
			.return_mask = PAGE_IS_WRITTEN,
		};
		ok = ioctl(pm, PAGEMAP_SCAN, &a) >= 0;
		munmap(probe, (size_t)pg);
	}
	close(pm);
	if (!ok && why)
		*why = "kernel lacks the PAGEMAP_SCAN ioctl (needs Linux 6.7)";
	return ok;
}

static int uffd_start(struct mfd__tracker *t)
{
	const char *why;
	long pg = sysconf(_SC_PAGESIZE);
	for (unsigned i = 0; i < t->nblocks; i++)
		if (((uintptr_t)t->blocks[i].host | t->blocks[i].size) &
		    (uint64_t)(pg - 1))
			return -EINVAL; /* registration needs page alignment */
	t->uffd = uffd_open_api(&why);
	if (t->uffd < 0)
		return t->uffd;
	t->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (t->pagemap < 0)
		return -errno;
	t->vec_len = VEC_LEN;
	t->vec = calloc(VEC_LEN, sizeof(struct page_region));
	if (!t->vec)
		return -ENOMEM;
	for (unsigned i = 0; i < t->nblocks; i++) {
		struct mfd__ramblock *rb = &t->blocks[i];
		struct uffdio_range r = { .start = (uintptr_t)rb->host,
					  .len = rb->size };
		struct uffdio_register reg = {
			.range = r, .mode = UFFDIO_REGISTER_MODE_WP
		};
		if (ioctl(t->uffd, UFFDIO_REGISTER, &reg))
			return -errno;
		struct uffdio_writeprotect wp = {
			.range = r, .mode = UFFDIO_WRITEPROTECT_MODE_WP
		};
		if (ioctl(t->uffd, UFFDIO_WRITEPROTECT, &wp))
			return -errno;
	}
	return 0;
}

static int uffd_sync(struct mfd__tracker *t, unsigned i)
{
	struct mfd__ramblock *rb = &t->blocks[i];
	uint64_t base = (uintptr_t)rb->host, end = base + rb->size;
	struct page_region *vec = t->vec;
	struct pm_scan_arg a = {
		.size = sizeof(a),
		.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
		.start = base,
		.end = end,
		.vec = (uintptr_t)vec,
		.vec_len = t->vec_len,
		.category_mask = PAGE_IS_WRITTEN,
		.return_mask = PAGE_IS_WRITTEN,
	};
	for (;;) {
		int n = ioctl(t->pagemap, PAGEMAP_SCAN, &a);
		if (n < 0)
			return -errno;
		t->scans++;
		for (int k = 0; k < n; k++) {
			uint64_t first =
				(vec[k].start - base) >> rb->page_shift;
			uint64_t last =
				(vec[k].end - 1 - base) >> rb->page_shift;
			mfd__bitmap_set_range_atomic(&rb->dirty, first,
						     last - first + 1);
		}
		/* The walk stops early when the vector is full. */
		if (a.walk_end >= end)
			return 0;
		a.start = a.walk_end;
	}
}

static void uffd_stop(struct mfd__tracker *t)
{
	if (t->uffd >= 0) {
		for (unsigned i = 0; i < t->nblocks; i++) {
			struct uffdio_range r = {
				.start = (uintptr_t)t->blocks[i].host,
				.len = t->blocks[i].size
			};
			/* Unregistering also drops the write protection. */
			ioctl(t->uffd, UFFDIO_UNREGISTER, &r);
		}
		close(t->uffd);
	}
	if (t->pagemap >= 0)
		close(t->pagemap);
	free(t->vec);
	t->vec = NULL;
	t->uffd = -1;
	t->pagemap = -1;
}

const struct mfd__tracker_ops mfd__tracker_uffd_wp = {
	.name = "uffd-wp",
	.start = uffd_start,
	.sync = uffd_sync,
	.stop = uffd_stop,
};
