/* SPDX-License-Identifier: MIT */
/*
 * mfd-wpcost: where the uffd-wp tracker's cost to a writer goes (issue 18),
 * with timers, on the tracker's own kernel interface (ramblock/
 * tracker_uffd.c): the time of a 4 KiB write untracked, its first write
 * after write-protection (the async write-protect fault), on transparent
 * huge pages and on 4 KiB pages, beside what the migration thread pays:
 * UFFDIO_WRITEPROTECT of the whole area and each PAGEMAP_SCAN that finds
 * and re-protects the written pages.
 *
 *   mfd-wpcost [MiB (default 256)] [stride in pages (default 1)]
 *
 * Exit 77 where the kernel lacks async write-protect or PAGEMAP_SCAN.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "multifd/compat/linux.h"

#define PG   4096ULL
#define HUGE (2ULL << 20)

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

struct area {
	uint8_t *p;
	uint64_t size, stride;
	int uffd, pagemap;
};

/* One pass of writers: a whole page every stride pages. */
static void writes(const struct area *a, const char *what)
{
	uint64_t t0 = now_ns(), n = 0;
	for (uint64_t off = 0; off < a->size; off += a->stride * PG, n++)
		memset(a->p + off, (int)n, PG);
	double ns = (double)(now_ns() - t0);
	printf("  %-36s %7.3f us a write (%llu writes, %.1f ms)\n", what,
	       ns / 1e3 / (double)n, (unsigned long long)n, ns / 1e6);
}

/* The tracker's sync: the written pages, write-protected again. */
static int scan(const struct area *a, const char *what)
{
	static struct page_region vec[4096];
	struct pm_scan_arg s = {
		.size = sizeof(s),
		.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
		.start = (uintptr_t)a->p,
		.end = (uintptr_t)a->p + a->size,
		.vec = (uintptr_t)vec,
		.vec_len = 4096,
		.category_mask = PAGE_IS_WRITTEN,
		.return_mask = PAGE_IS_WRITTEN,
	};
	uint64_t t0 = now_ns(), ranges = 0, pages = 0;
	for (;;) {
		int n = ioctl(a->pagemap, PAGEMAP_SCAN, &s);
		if (n < 0)
			return -1;
		ranges += (uint64_t)n;
		for (int k = 0; k < n; k++)
			pages += (vec[k].end - vec[k].start) / PG;
		if (s.walk_end >= s.end)
			break;
		s.start = s.walk_end;
	}
	printf("  %-36s %7.3f ms (%llu ranges, %llu pages)\n", what,
	       (double)(now_ns() - t0) / 1e6, (unsigned long long)ranges,
	       (unsigned long long)pages);
	return 0;
}

static int protect(struct area *a)
{
	a->uffd =
		(int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_WP_ASYNC |
					      UFFD_FEATURE_WP_UNPOPULATED };
	struct uffdio_range r = { (uintptr_t)a->p, a->size };
	struct uffdio_register reg = { .range = r,
				       .mode = UFFDIO_REGISTER_MODE_WP };
	struct uffdio_writeprotect wp = { .range = r,
					  .mode = UFFDIO_WRITEPROTECT_MODE_WP };
	if (a->uffd < 0 || ioctl(a->uffd, UFFDIO_API, &api) ||
	    ioctl(a->uffd, UFFDIO_REGISTER, &reg))
		return -1;
	uint64_t t0 = now_ns();
	if (ioctl(a->uffd, UFFDIO_WRITEPROTECT, &wp))
		return -1;
	printf("  %-36s %7.3f ms\n", "UFFDIO_WRITEPROTECT, whole area",
	       (double)(now_ns() - t0) / 1e6);
	a->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	return a->pagemap < 0 ? -1 : 0;
}

static int run(uint64_t size, uint64_t stride, bool huge)
{
	struct area a = { .size = size, .stride = stride, .uffd = -1 };
	uint8_t *m = mmap(NULL, size + HUGE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return -1;
	a.p = (uint8_t *)(((uintptr_t)m + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
	madvise(a.p, size, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	memset(a.p, 1, size);
	printf("%s pages, a write every %llu page(s):\n",
	       huge ? "transparent huge" : "4 KiB", (unsigned long long)stride);
	writes(&a, "untracked, resident");
	int ret = protect(&a);
	for (int round = 0; !ret && round < 3; round++) {
		char what[64];
		snprintf(what, sizeof(what), "round %d: first writes (faults)",
			 round);
		writes(&a, what);
		ret = scan(&a, "PAGEMAP_SCAN + re-protect");
	}
	if (!ret) {
		ret = scan(&a, "PAGEMAP_SCAN, nothing written");
		writes(&a, "round 3: first writes (faults)");
		writes(&a, "round 3: again (no faults)");
	}
	if (a.pagemap >= 0)
		close(a.pagemap);
	if (a.uffd >= 0)
		close(a.uffd);
	munmap(m, size + HUGE);
	return ret;
}

int main(int argc, char **argv)
{
	uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 0) : 256;
	uint64_t stride = argc > 2 ? strtoull(argv[2], NULL, 0) : 1;
	if (!mib || !stride || mib > (1ULL << 20)) {
		fprintf(stderr, "usage: mfd-wpcost [MiB] [stride]\n");
		return 2;
	}
	if (run(mib << 20, stride, true) || run(mib << 20, stride, false)) {
		perror("mfd-wpcost: async write-protect or PAGEMAP_SCAN");
		return 77;
	}
	return 0;
}
