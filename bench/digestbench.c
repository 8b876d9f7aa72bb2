/* SPDX-License-Identifier: MIT */
/*
 * mfd-digestbench: what verify's digests cost on one core (docs/protocol.md
 * 5.5), per XXH3 build the CPU runs, against libxxhash's own XXH3_64bits
 * and XXH3_64bits_dispatch and a memcpy of the same pages (the memory
 * ceiling, as the kernel's copy into a socket reads them):
 * - ns per 4 KiB page digest, with the pages in L1 (a 32 KiB window),
 *   in L2 (512 KiB: one 128-page batch, as a worker sends or places it)
 *   and from DRAM (the whole buffer, each page read once);
 * - ms for one block digest over the page digests of the whole buffer
 *   (what END's digests cost each side inside the downtime);
 * - the two sides' order with the copy a socket makes, per page of the
 *   whole buffer in 128-page batches: the source hashes pages then copies
 *   them out (into a 512 KiB buffer, as into socket buffers), the
 *   destination copies them in then hashes them; hashing every 1, 8, 32
 *   or 128 pages of the batch, against the copy alone.
 * Best of the repetitions.
 *
 *   mfd-digestbench [MiB (default 1024)] [repetitions (default 5)]
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>
#if defined(__x86_64__) && __has_include(<xxh_x86dispatch.h>)
#define XXH_DISPATCH_DISABLE_REPLACE
#include <xxh_x86dispatch.h>
#define HAVE_LIB_DISPATCH 1
#endif

#include "multifd/common/digest.h"

#define PAGE 4096u

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static volatile uint64_t sink;
static uint8_t copy_to[512 << 10];

typedef uint64_t (*page_fn)(const void *p, uint64_t n);

static uint64_t lib_plain(const void *p, uint64_t n)
{
	return XXH3_64bits(p, (size_t)n);
}
#ifdef HAVE_LIB_DISPATCH
static uint64_t lib_dispatch(const void *p, uint64_t n)
{
	return XXH3_64bits_dispatch(p, (size_t)n);
}
#endif
static uint64_t mine(const void *p, uint64_t n)
{
	return mfd__page_digest(p, n);
}
static uint64_t copy_page(const void *p, uint64_t n)
{
	static size_t at;
	memcpy(copy_to + at, p, n);
	at = (at + n) % sizeof(copy_to);
	return copy_to[at];
}

/* ns per page: window bytes hashed over and over until total pages. */
static double per_page(page_fn f, const uint8_t *buf, size_t window,
		       size_t pages, int reps)
{
	double best = 1e9;
	for (int r = 0; r < reps; r++) {
		uint64_t acc = 0;
		double t0 = now_s();
		for (size_t done = 0; done < pages;)
			for (size_t o = 0; o < window && done < pages;
			     o += PAGE, done++)
				acc += f(buf + o, PAGE);
		double t = (now_s() - t0) / (double)pages * 1e9;
		sink = acc;
		if (t < best)
			best = t;
	}
	return best;
}

static void row(const char *name, page_fn f, const uint8_t *buf, size_t len,
		int reps, const uint64_t *pd)
{
	printf("%-14s %8.1f %8.1f %8.1f", name,
	       per_page(f, buf, 32 << 10, 65536, reps),
	       per_page(f, buf, 512 << 10, 65536, reps),
	       per_page(f, buf, len, len / PAGE, reps));
	if (pd) {
		double best = 1e9;
		uint8_t out[MFD__DIGEST_SIZE];
		for (int r = 0; r < reps; r++) {
			double t0 = now_s();
			mfd__digest_pages(pd, len / PAGE, out);
			double t = now_s() - t0;
			if (t < best)
				best = t;
		}
		printf(" %10.3f", best * 1e3);
	}
	printf("\n");
}

/* ns per page: the buffer in 128-page batches, each hashed k pages at a
 * time around copies of those k pages (k = 0: copies only); out: copy
 * out of the buffer after the hash (source), else into it before the
 * hash (destination). */
static double sides(const uint8_t *buf_c, size_t len, unsigned k, bool out,
		    int reps)
{
	uint8_t *buf = (uint8_t *)buf_c;
	size_t np = len / PAGE;
	double best = 1e9;
	for (int r = 0; r < reps; r++) {
		uint64_t acc = 0;
		double t0 = now_s();
		for (size_t b = 0; b + 128 <= np; b += 128)
			for (unsigned i = 0; i < 128; i += k ? k : 128) {
				unsigned n = k ? k : 128;
				uint8_t *pg = buf + (b + i) * PAGE;
				uint8_t *sk = copy_to + (size_t)i * PAGE;
				if (!out)
					memcpy(pg, sk, (size_t)n * PAGE);
				for (unsigned j = 0; k && j < n; j++)
					acc += mfd__page_digest(pg + j * PAGE,
								PAGE);
				if (out)
					memcpy(sk, pg, (size_t)n * PAGE);
			}
		double t = (now_s() - t0) / (double)np * 1e9;
		sink = acc;
		if (t < best)
			best = t;
	}
	return best;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
	int reps = argc > 2 ? atoi(argv[2]) : 5;
	size_t len = mib << 20;
	if (len < (1u << 20) || reps < 1) {
		fprintf(stderr, "usage: mfd-digestbench [MiB >= 1] [reps]\n");
		return 2;
	}
	uint8_t *buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t *pd = malloc(len / PAGE * sizeof(uint64_t));
	if (buf == MAP_FAILED || !pd) {
		perror("mmap");
		return 1;
	}
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = i * 0x9e3779b97f4a7c15ull;
		memcpy(buf + i, &v, 8);
	}
	for (size_t i = 0; i < len / PAGE; i++)
		pd[i] = XXH3_64bits(buf + i * PAGE, PAGE);
	printf("%zu MiB, 4 KiB pages, best of %d; ns per page from L1 / L2 / "
	       "DRAM; block digest of %zu page digests (ms)\n",
	       mib, reps, len / PAGE);
	printf("%-14s %8s %8s %8s %10s\n", "path", "L1", "L2", "DRAM",
	       "block ms");
	row("memcpy", copy_page, buf, len, reps, NULL);
	row("lib plain", lib_plain, buf, len, reps, NULL);
#ifdef HAVE_LIB_DISPATCH
	row("lib dispatch", lib_dispatch, buf, len, reps, NULL);
#endif
	for (int i = MFD__DIGEST_PORTABLE; i < MFD__DIGEST_NIMPL; i++) {
		if (mfd__digest_select((enum mfd__digest_impl)i))
			continue;
		char name[32];
		snprintf(name, sizeof(name), "mfd %s",
			 mfd__digest_name((enum mfd__digest_impl)i));
		row(name, mine, buf, len, reps, pd);
	}
	mfd__digest_select(MFD__DIGEST_AUTO);
	printf("in use: %s\n", mfd__digest_name(mfd__digest_current()));
	printf("with the copy, ns per page, 128-page batches: %-7s %8s %8s\n",
	       "hash", "source", "dest");
	static const unsigned ks[] = { 0, 1, 8, 32, 128 };
	for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++) {
		char name[24];
		if (ks[i])
			snprintf(name, sizeof(name), "every %u", ks[i]);
		else
			snprintf(name, sizeof(name), "none");
		printf("%-54s %8.1f %8.1f\n", name,
		       sides(buf, len, ks[i], true, reps),
		       sides(buf, len, ks[i], false, reps));
	}
	return 0;
}
