/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "multifd/common/clock.h"
#include "ramblock/prefault.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define UNIT	  (2ULL << 20)
#define SMALL_PG  4096ULL
#define IDLE_WAIT 200000L /* ns between looks at the front */

/* The unit that contains position pos: its block and [off, end) in it. */
static unsigned unit_of(const struct mfd__prefault *pf, uint64_t pos,
			uint64_t *off, uint64_t *end)
{
	unsigned b = 0;
	while (b + 1 < pf->nblocks && pos >= pf->base[b + 1])
		b++;
	const struct mfd__ramblock *rb = &pf->blocks[b];
	uint64_t unit = rb->page_size > UNIT ? rb->page_size : UNIT;
	/* Units aligned in the address space (huge pages, and no page split
	 * between two units of a block that starts inside a page). */
	*off = pos - pf->base[b];
	uintptr_t a = (uintptr_t)rb->host + *off;
	*end = *off + (unit - (a & (unit - 1)));
	if (*end > rb->size)
		*end = rb->size;
	return b;
}

/* Populates whole 4 KiB pages of [host + off, host + end) only. */
static void populate(struct mfd__prefault *pf, const struct mfd__ramblock *rb,
		     uint64_t off, uint64_t end)
{
	uintptr_t a = (uintptr_t)rb->host + off, z = (uintptr_t)rb->host + end;
	a = (a + SMALL_PG - 1) & ~(uintptr_t)(SMALL_PG - 1);
	z &= ~(uintptr_t)(SMALL_PG - 1);
	if (z <= a)
		return;
	uint64_t t = mfd__now_ns();
	if (madvise((void *)a, z - a, MADV_POPULATE_WRITE) != 0) {
		if (errno != EINVAL) {
			/* Out of memory or not writable: the receive path
			 * will say so; prefaulting is only a head start. */
			__atomic_store_n(&pf->stop, true, __ATOMIC_RELAXED);
			return;
		}
		/* Kernels before 5.14: a write fault per page. Receivers
		 * may be writing the same pages: an atomic add of 0 changes
		 * nothing they wrote. */
		for (uintptr_t p = a; p < z; p += SMALL_PG)
			__atomic_fetch_add((volatile uint8_t *)p, 0,
					   __ATOMIC_RELAXED);
	}
	__atomic_fetch_add(&pf->ns, mfd__now_ns() - t, __ATOMIC_RELAXED);
	__atomic_fetch_add(&pf->bytes, z - a, __ATOMIC_RELAXED);
}

static void *helper(void *arg)
{
	struct mfd__prefault *pf = arg;
	while (!__atomic_load_n(&pf->stop, __ATOMIC_RELAXED)) {
		uint64_t pos = __atomic_load_n(&pf->cursor, __ATOMIC_RELAXED);
		if (pos >= pf->total)
			break;
		uint64_t front = __atomic_load_n(&pf->front, __ATOMIC_RELAXED);
		if (pos >= front + pf->window) {
			struct timespec ts = { 0, IDLE_WAIT };
			nanosleep(&ts, NULL);
			continue;
		}
		uint64_t off, end;
		unsigned b = unit_of(pf, pos, &off, &end);
		uint64_t next = pf->base[b] + end;
		if (!__atomic_compare_exchange_n(&pf->cursor, &pos, next, false,
						 __ATOMIC_RELAXED,
						 __ATOMIC_RELAXED))
			continue; /* another helper took it */
		/* Behind the front too: pages the receivers touched cost
		 * only a look; those they have not are due soon. */
		populate(pf, &pf->blocks[b], off, end);
	}
	__atomic_fetch_add(pf->cpu_ns, mfd__thread_cpu_ns(), __ATOMIC_RELAXED);
	return NULL;
}

int mfd__prefault_start(struct mfd__prefault *pf,
			const struct mfd__ramblock *blocks, unsigned nblocks,
			uint64_t window, unsigned nthreads, uint64_t *cpu_ns)
{
	memset(pf, 0, sizeof(*pf));
	if (!blocks || !nblocks || !window || !nthreads ||
	    nthreads > MFD__PREFAULT_THREADS_MAX || !cpu_ns)
		return -EINVAL;
	pf->base = calloc(nblocks, sizeof(*pf->base));
	if (!pf->base)
		return -ENOMEM;
	pf->blocks = blocks;
	pf->nblocks = nblocks;
	pf->window = window;
	pf->cpu_ns = cpu_ns;
	for (unsigned i = 0; i < nblocks; i++) {
		pf->base[i] = pf->total;
		pf->total += blocks[i].size;
	}
	for (unsigned i = 0; i < nthreads; i++) {
		int ret = -pthread_create(&pf->threads[i], NULL, helper, pf);
		if (ret) {
			mfd__prefault_stop(pf);
			return ret;
		}
		pf->nthreads = i + 1;
	}
	return 0;
}

void mfd__prefault_stop(struct mfd__prefault *pf)
{
	__atomic_store_n(&pf->stop, true, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < pf->nthreads; i++)
		pthread_join(pf->threads[i], NULL);
	pf->nthreads = 0;
	free(pf->base);
	pf->base = NULL;
}
