/* SPDX-License-Identifier: MIT */
/* The destination's post-copy state (postcopy_dst.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "multifd/multifd.h"
#include "multifd/postcopy_dst.h"
#include "multifd/stats.h"
#include "multifd/common/clock.h"
#include "multifd/common/log.h"

/* How often the fault thread looks at the stop flag. */
#define FAULT_POLL_MS 50

int mfd__pc_dst_init(struct mfd__pc_dst *pc, struct mfd__ramblock *blocks,
		     unsigned nblocks, unsigned lanes,
		     mfd__pc_request_fn request, void *ctx)
{
	memset(pc, 0, sizeof(*pc));
	pc->u.fd = -1;
	if (!nblocks || nblocks > MFD_MAX_BLOCKS || !lanes || !request)
		return -EINVAL;
	pc->blocks = blocks;
	pc->nblocks = nblocks;
	pc->lanes = lanes;
	pc->request = request;
	pc->ctx = ctx;
	for (unsigned b = 0; b < nblocks; b++) {
		uint64_t np = blocks[b].npages;
		pc->t_req[b] = calloc(np, sizeof(*pc->t_req[b]));
		pc->t_sum[b] = calloc(np, sizeof(*pc->t_sum[b]));
		pc->waiters[b] = calloc(np, sizeof(*pc->waiters[b]));
		if (mfd__bitmap_init(&pc->rx[b], np) ||
		    mfd__bitmap_init(&pc->asked[b], np) || !pc->t_req[b] ||
		    !pc->t_sum[b] || !pc->waiters[b]) {
			mfd__pc_dst_destroy(pc);
			return -ENOMEM;
		}
		pc->total += blocks[b].npages;
	}
	return 0;
}

void mfd__pc_dst_halt(struct mfd__pc_dst *pc)
{
	if (pc->fault_running) {
		__atomic_store_n(&pc->stop, true, __ATOMIC_RELEASE);
		pthread_join(pc->fault_thread, NULL);
		pc->fault_running = false;
	}
}

void mfd__pc_dst_stop(struct mfd__pc_dst *pc)
{
	mfd__pc_dst_halt(pc);
	for (unsigned b = 0; pc->registered && b < pc->nblocks; b++)
		mfd__uffd_missing_unregister(&pc->u, pc->blocks[b].host,
					     pc->blocks[b].size);
	pc->registered = false;
	pc->prepared = false;
	mfd__uffd_missing_close(&pc->u);
}

void mfd__pc_dst_destroy(struct mfd__pc_dst *pc)
{
	mfd__pc_dst_stop(pc);
	for (unsigned b = 0; b < pc->nblocks; b++) {
		mfd__bitmap_destroy(&pc->rx[b]);
		mfd__bitmap_destroy(&pc->asked[b]);
		free(pc->t_req[b]);
		free(pc->t_sum[b]);
		free(pc->waiters[b]);
	}
}

void mfd__pc_dst_received(struct mfd__pc_dst *pc, unsigned b, uint64_t offset)
{
	if (mfd__pc_mark(&pc->rx[b], offset >> pc->blocks[b].page_shift))
		__atomic_fetch_add(&pc->present, 1, __ATOMIC_RELAXED);
}

int mfd__pc_dst_discard(struct mfd__pc_dst *pc, const uint8_t *payload,
			size_t len, const struct mfd__wire_limits *lim)
{
	uint32_t n;
	int ret;

	if (pc->fault_running)
		return MFD_ESTATE;
	if ((ret = mfd__discard_check(payload, len, lim, &n)))
		return ret;
	struct mfd__drop *drop = malloc(sizeof(*drop));
	if (!drop)
		return -ENOMEM;
	mfd__drop_init(drop);
	for (uint32_t i = 0; i < n && !ret; i++) {
		struct mfd__page_range r;
		mfd__discard_get(payload, i, &r);
		struct mfd__ramblock *rb = &pc->blocks[r.block];
		if ((ret = mfd__drop_add(drop, rb->host + r.offset, r.length)))
			break;
		/* Before the switch only the loader thread clears bits, and
		 * nothing reads them: the drop may come after them. */
		uint64_t first = r.offset >> rb->page_shift;
		uint64_t last = first + (r.length >> rb->page_shift);
		for (uint64_t p = first; p < last; p++) {
			uint64_t bit = 1ULL << (p & 63);
			if (__atomic_fetch_and(&pc->rx[r.block].words[p >> 6],
					       ~bit, __ATOMIC_RELAXED) &
			    bit)
				__atomic_fetch_sub(&pc->present, 1,
						   __ATOMIC_RELAXED);
		}
	}
	int fret = mfd__drop_finish(drop);
	free(drop);
	return ret ? ret : fret;
}

/* Pages looked up in /proc/self/pagemap at a time (4 KiB of entries). */
#define MAP_CHUNK 512
#define PM_HOLDS  (1ULL << 63 | 1ULL << 62) /* present or swapped */

/* Drops pages [p, p + n) of block b that are not received and, by e[]
 * (their pagemap entries; NULL: unknown), hold something: one drop a
 * run. */
static int drop_chunk(struct mfd__pc_dst *pc, struct mfd__drop *drop,
		      unsigned b, uint64_t p, uint64_t n, const uint64_t *e)
{
	struct mfd__ramblock *rb = &pc->blocks[b];

	for (uint64_t i = 0; i < n;) {
		if (mfd__pc_received(&pc->rx[b], p + i) ||
		    (e && !(e[i] & PM_HOLDS))) {
			i++;
			continue;
		}
		uint64_t j = i + 1;
		while (j < n && !mfd__pc_received(&pc->rx[b], p + j) &&
		       (!e || (e[j] & PM_HOLDS)))
			j++;
		int ret = mfd__drop_add(drop,
					rb->host + ((p + i) << rb->page_shift),
					(j - i) << rb->page_shift);
		if (ret)
			return ret;
		i = j;
	}
	return 0;
}

/*
 * Every page not received is dropped if it holds something. A DISCARD
 * before the switch dropped most of them already, one page at a time
 * (some 190,000 single pages on a 2 GiB guest dirtying 4 times the
 * link): dropping each again cost one madvise apiece inside the downtime
 * (about 70 ms here). So /proc/self/pagemap, read 512 pages at a time
 * where any is not received, says which hold something (prefault
 * helpers, khugepaged's zeros, a swapped page); without it, or for pages
 * other than 4 KiB, every run is dropped.
 */
int mfd__pc_dst_drop_missing(struct mfd__pc_dst *pc)
{
	uint64_t e[MAP_CHUNK];
	int ret = 0;

	if (pc->fault_running)
		return MFD_ESTATE;
	struct mfd__drop *drop = malloc(sizeof(*drop));
	if (!drop)
		return -ENOMEM;
	mfd__drop_init(drop);
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	for (unsigned b = 0; b < pc->nblocks && !ret; b++) {
		struct mfd__ramblock *rb = &pc->blocks[b];
		for (uint64_t p = 0; p < rb->npages && !ret; p += MAP_CHUNK) {
			uint64_t n = rb->npages - p < MAP_CHUNK ? rb->npages - p
								: MAP_CHUNK;
			uint64_t i = 0;
			while (i < n && mfd__pc_received(&pc->rx[b], p + i))
				i++;
			if (i == n)
				continue; /* all here */
			const uint64_t *map = NULL;
			if (fd >= 0 && rb->page_shift == 12) {
				uint64_t vpn =
					(uint64_t)(uintptr_t)(rb->host +
							      (p << 12)) >>
					12;
				if (pread(fd, e, n * 8, (off_t)(vpn * 8)) ==
				    (ssize_t)(n * 8))
					map = e;
			}
			ret = drop_chunk(pc, drop, b, p, n, map);
		}
	}
	if (fd >= 0)
		close(fd);
	int fret = mfd__drop_finish(drop);
	free(drop);
	return ret ? ret : fret;
}

int mfd__pc_dst_prepare(struct mfd__pc_dst *pc)
{
	int ret;

	if (pc->prepared)
		return 0;
	if (pc->fault_running)
		return MFD_ESTATE;
	/* Registered first: a registered range is not collapsed over its
	 * holes by khugepaged, so a dropped page stays missing. */
	if ((ret = mfd__pc_dst_register(pc)) ||
	    (ret = mfd__pc_dst_drop_missing(pc)))
		return ret;
	pc->prepared = true;
	return 0;
}

/* The block holding addr, or -1. */
static int block_of(const struct mfd__pc_dst *pc, uint64_t addr)
{
	for (unsigned b = 0; b < pc->nblocks; b++) {
		uint64_t base = (uintptr_t)pc->blocks[b].host;
		if (addr >= base && addr - base < pc->blocks[b].size)
			return (int)b;
	}
	return -1;
}

/*
 * One fault (protocol 10.4): a page known to be zero is placed here; any
 * other page is requested once, on the lane its page number selects.
 */
static int on_fault(struct mfd__pc_dst *pc, uint64_t addr)
{
	int b = block_of(pc, addr);
	if (b < 0)
		return -EFAULT; /* not ours: the registration is wrong */
	struct mfd__ramblock *rb = &pc->blocks[b];
	uint64_t page = (addr - (uintptr_t)rb->host) >> rb->page_shift;
	uint64_t off = page << rb->page_shift;

	STAT_ADD(pc->faults, 1);
	if (mfd__pc_received(&pc->rx[b], page)) {
		/* In rx but not populated: a zero page of pre-copy that
		 * was never written, or one placed since the fault. */
		STAT_ADD(pc->local_zero, 1);
		int ret = mfd__uffd_place(&pc->u, rb->host + off, NULL,
					  rb->page_size);
		return ret < 0 ? ret : 0;
	}
	/* This thread waits until the page is placed. */
	uint64_t now = mfd__now_ns();
	__atomic_fetch_add(&pc->t_sum[b][page], now, __ATOMIC_RELAXED);
	__atomic_fetch_add(&pc->waiters[b][page], 1, __ATOMIC_RELEASE);
	if (!mfd__pc_mark(&pc->asked[b], page))
		return 0; /* asked already; its arrival wakes every waiter */
	__atomic_store_n(&pc->t_req[b][page], now, __ATOMIC_RELEASE);
	struct mfd__page_range r = { .block = (uint32_t)b,
				     .offset = off,
				     .length = rb->page_size };
	STAT_ADD(pc->requests, 1);
	return pc->request(pc->ctx, (unsigned)(page % pc->lanes), &r);
}

static void *fault_main(void *arg)
{
	struct mfd__pc_dst *pc = arg;
	uint64_t addr;

	/* A fault waits for this thread's wakeup: don't queue behind the
	 * busy threads of a full CPU. */
	int rt = mfd__thread_urgent(pc->rt_prio, pc->rt_count);
	while (!__atomic_load_n(&pc->stop, __ATOMIC_ACQUIRE)) {
		int ret = mfd__uffd_next_fault(&pc->u, &addr, FAULT_POLL_MS);
		if (ret > 0)
			ret = on_fault(pc, addr);
		if (ret < 0) {
			__atomic_store_n(&pc->err, ret, __ATOMIC_RELEASE);
			break;
		}
	}
	mfd__thread_urgent_end(rt);
	return NULL;
}

int mfd__pc_dst_register(struct mfd__pc_dst *pc)
{
	int ret;

	if (pc->registered)
		return 0;
	if ((ret = mfd__uffd_missing_open(&pc->u)))
		return ret;
	if (pc->u.user_only)
		mfd__warn(
			"post-copy: userfaultfd catches user-mode faults only "
			"(no CAP_SYS_PTRACE, /dev/userfaultfd or "
			"vm.unprivileged_userfaultfd): a kernel access to a "
			"page not here yet (KVM, vhost) fails instead of "
			"waiting");
	for (unsigned b = 0; b < pc->nblocks; b++) {
		ret = mfd__uffd_missing_register(&pc->u, pc->blocks[b].host,
						 pc->blocks[b].size);
		if (ret) {
			while (b-- > 0)
				mfd__uffd_missing_unregister(
					&pc->u, pc->blocks[b].host,
					pc->blocks[b].size);
			mfd__uffd_missing_close(&pc->u);
			return ret;
		}
	}
	pc->registered = true;
	return 0;
}

int mfd__pc_dst_switch(struct mfd__pc_dst *pc)
{
	int ret;

	if (pc->fault_running)
		return MFD_ESTATE;
	if ((ret = mfd__pc_dst_register(pc)))
		return ret;
	if ((ret = -pthread_create(&pc->fault_thread, NULL, fault_main, pc)))
		return ret;
	pc->fault_running = true;
	return 0;
}

/* Page `page` of block b is in place: its bit, and, for the one caller
 * that sets it, the measures of whoever waited for it. True for that
 * caller. */
static bool placed(struct mfd__pc_dst *pc, unsigned b, uint64_t page)
{
	if (!mfd__pc_mark(&pc->rx[b], page))
		return false;
	__atomic_fetch_add(&pc->present, 1, __ATOMIC_RELAXED);
	uint64_t w =
		__atomic_exchange_n(&pc->waiters[b][page], 0, __ATOMIC_ACQUIRE);
	uint64_t tr =
		__atomic_exchange_n(&pc->t_req[b][page], 0, __ATOMIC_ACQUIRE);
	if (w || tr) {
		uint64_t now = mfd__now_ns();
		uint64_t ts = __atomic_exchange_n(&pc->t_sum[b][page], 0,
						  __ATOMIC_ACQUIRE);
		if (tr)
			mfd__lathist_add(&pc->latency, now > tr ? now - tr : 0);
		if (w * now > ts)
			STAT_ADD(pc->blocktime_ns, w * now - ts);
	}
	return true;
}

int mfd__pc_dst_place_pages(struct mfd__pc_dst *pc, unsigned b,
			    const uint64_t *offsets, unsigned n,
			    const uint8_t *src)
{
	struct mfd__ramblock *rb = &pc->blocks[b];
	uint64_t ps = rb->page_size;
	int done = 0;

	if (!pc->registered)
		return MFD_ESTATE;
	for (unsigned i = 0; i < n;) {
		if (mfd__pc_received(&pc->rx[b],
				     offsets[i] >> rb->page_shift)) {
			i++;
			continue;
		}
		/* A run: contiguous pages, none known to be in place. One
		 * ioctl for it; a page populated meanwhile is skipped by
		 * the kernel (EEXIST) and by mfd__uffd_place's fallback. */
		unsigned j = i + 1;
		while (j < n && offsets[j] == offsets[j - 1] + ps &&
		       !mfd__pc_received(&pc->rx[b],
					 offsets[j] >> rb->page_shift))
			j++;
		int ret = mfd__uffd_place(&pc->u, rb->host + offsets[i],
					  src ? src + (uint64_t)i * ps : NULL,
					  (j - i) * ps);
		if (ret < 0)
			return ret;
		/* The bits after the pages, never before (10.4). */
		for (unsigned k = i; k < j; k++)
			done += placed(pc, b, offsets[k] >> rb->page_shift);
		i = j;
	}
	return done;
}

int mfd__pc_dst_place(struct mfd__pc_dst *pc, unsigned b, uint64_t offset,
		      const void *src)
{
	return mfd__pc_dst_place_pages(pc, b, &offset, 1, src);
}

void mfd__pc_dst_known_zero(struct mfd__pc_dst *pc, unsigned b,
			    const struct mfd__bitmap *have)
{
	struct mfd__bitmap *rx = &pc->rx[b];
	uint64_t np = pc->blocks[b].npages, n = 0;
	for (uint64_t w = 0; w < rx->nwords; w++) {
		uint64_t bits = ~have->words[w];
		if (w == rx->nwords - 1 && (np & 63))
			bits &= (1ULL << (np & 63)) - 1;
		uint64_t old = __atomic_fetch_or(&rx->words[w], bits,
						 __ATOMIC_RELEASE);
		n += (uint64_t)__builtin_popcountll(bits & ~old);
	}
	__atomic_fetch_add(&pc->present, n, __ATOMIC_RELAXED);
}

bool mfd__pc_dst_claim(struct mfd__pc_dst *pc, unsigned b, uint64_t page)
{
	return !mfd__pc_received(&pc->rx[b], page) &&
	       mfd__pc_mark(&pc->asked[b], page);
}

int mfd__pc_dst_place_run(struct mfd__pc_dst *pc, unsigned b, uint64_t first,
			  uint64_t n, const uint8_t *src)
{
	struct mfd__ramblock *rb = &pc->blocks[b];
	int done = 0;

	if (!pc->registered)
		return MFD_ESTATE;
	int ret = mfd__uffd_place(&pc->u, rb->host + (first << rb->page_shift),
				  src, n << rb->page_shift);
	if (ret < 0)
		return ret;
	bool populated = ret == 0;
	for (uint64_t k = first; k < first + n; k++)
		done += placed(pc, b, k);
	return populated ? -EEXIST : done;
}
