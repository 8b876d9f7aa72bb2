/* SPDX-License-Identifier: MIT */
/*
 * Lazy restore from a file (lazy-restore = on; docs/architecture.md, "File
 * migration"): the guest runs on the loaded device state at once, its
 * pages come from the file on fault (the post-copy fault path,
 * postcopy_dst.c, with the file as the source) while the readers
 * (filemig.c's pass) stream the rest.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "multifd/common/clock.h"
#include "multifd/common/log.h"
#include "multifd/compress/codec.h"
#include "multifd/filepass.h"

/* Pages a fault reads: the faulting one and the next ones of the file
 * not yet claimed (a guest that touches a page often touches the next). */
#define LAZY_AROUND 16

/* An embedder's cancel and a failure of the fault thread's own (its
 * userfaultfd) signal nothing here: lazy_wait looks for them this often. */
#define LAZY_CHECK_MS 50

/* The fault thread's side of a lazy restore (the request callback). */
struct flazy {
	struct mfd__fload *f;
	struct mfd__pc_dst *pc;
	uint8_t *stage; /* LAZY_AROUND pages of the largest page size */
	/* After the readers only lazy_fetch places pages: it signals done
	 * when its placement completes the guest, or when it fails (failed,
	 * before the fault thread records its error). */
	pthread_mutex_t lock;
	pthread_cond_t done;
	int failed;
};

/* A staging buffer of bytes, 4 KiB aligned for O_DIRECT. */
static uint8_t *stage_alloc(uint64_t bytes)
{
	void *p = NULL;
	return posix_memalign(&p, 4096, bytes) ? NULL : p;
}

int mfd__flazy_buf_init(struct mfd__flazy_buf *lz, struct mfd__session *ss)
{
	uint64_t pp = ss->cfg.packet_pages;
	lz->stage = stage_alloc(pp * mfd__file_largest_page(ss));
	lz->runs = calloc(2 * pp, sizeof(*lz->runs));
	return lz->stage && lz->runs ? 0 : -ENOMEM;
}

void mfd__flazy_buf_free(struct mfd__flazy_buf *lz)
{
	free(lz->stage);
	free(lz->runs);
	lz->stage = NULL;
	lz->runs = NULL;
}

/* Digests of n pages read into buf, then their placement (first page
 * `first` of block b). */
static int lazy_place(struct mfd__session *ss, struct mfd__pc_dst *pc,
		      unsigned b, uint64_t first, uint64_t n,
		      const uint8_t *buf)
{
	const struct mfd__ramblock *rb = &ss->blocks[b];
	for (uint64_t k = 0; k < n; k++)
		ss->pdig[b][first + k] = mfd__page_digest(
			buf + (k << rb->page_shift), rb->page_size);
	int ret = mfd__pc_dst_place_run(pc, b, first, n, buf);
	if (ret == -EEXIST)
		return mfd__session_fail_why(
			ss, MFD_EVERIFY,
			"lazy restore: block %s: a page at or after %llu was "
			"populated before its placement (guest memory not "
			"empty: shared memory with contents?); it keeps bytes "
			"that are not the image's",
			rb->name,
			(unsigned long long)(first << rb->page_shift));
	if (ret < 0)
		return mfd__session_fail_why(
			ss, ret, "lazy restore: block %s: placing pages: %s",
			rb->name, strerror(-ret));
	return 0;
}

static int lazy_read_failed(struct mfd__session *ss, int ret, const char *path,
			    const struct mfd__ramblock *rb, uint64_t page)
{
	if (ret == -ENODATA)
		return mfd__session_fail_why(
			ss, MFD_ETRUNCATED,
			"file %s: truncated: block %s's page %llu lies past "
			"its end",
			path, rb->name, (unsigned long long)page);
	return mfd__file_fail_errno(ss, ret, "read pages", path);
}

/*
 * A background reader: the batch's pages that are in the file and not
 * claimed yet (by a fault or another reader) are claimed, read run by run
 * into the staging buffer (one ring submission for the batch with
 * io-engine = uring), digested and placed. Each page is read and placed
 * by exactly one thread: its claimer.
 */
int mfd__flazy_batch(struct mfd__fpass *p, struct mfd__fio *io,
		     const struct mfd__fbatch *bt, struct mfd__flazy_buf *w)
{
	struct mfd__session *ss = p->ss;
	const struct mfd__ramblock *rb = &ss->blocks[bt->block];
	const struct mfd__bitmap *pr = &p->present[bt->block];
	uint64_t first = bt->offsets[0] >> rb->page_shift, read = 0;
	uint64_t end = first + bt->n, nr = 0;
	int ret = 0;
	for (uint64_t pg = first; pg < end && !ret;) {
		if (!mfd__bitmap_test(pr, pg) ||
		    !mfd__pc_dst_claim(p->pc, bt->block, pg)) {
			pg++;
			continue;
		}
		uint64_t n = 1;
		while (pg + n < end && mfd__bitmap_test(pr, pg + n) &&
		       mfd__pc_dst_claim(p->pc, bt->block, pg + n))
			n++;
		ret = mfd__fio_rw(io, p->fd, false,
				  w->stage + ((pg - first) << rb->page_shift),
				  n << rb->page_shift,
				  p->h->blocks[bt->block].pages_off +
					  (pg << rb->page_shift));
		w->runs[nr++] = pg;
		w->runs[nr++] = n;
		read += n;
		pg += n;
	}
	if (!ret)
		ret = mfd__fio_drain(io);
	if (ret)
		return lazy_read_failed(ss, ret, p->path, rb, first);
	for (uint64_t r = 0; r < nr && !ret; r += 2)
		ret = lazy_place(
			ss, p->pc, bt->block, w->runs[r], w->runs[r + 1],
			w->stage + ((w->runs[r] - first) << rb->page_shift));
	if (ret)
		return ret;
	STAT_ADD(ss->st.pages, read);
	STAT_ADD(ss->st.packets, 1);
	STAT_ADD(ss->st.wire_bytes, read * rb->page_size);
	return 0;
}

/*
 * The fault thread's request (mfd__pc_dst's request callback): page r of
 * the file, claimed by the fault, and up to LAZY_AROUND - 1 next pages
 * that are in the file and can be claimed, read with one pread and placed
 * at once. A hole never comes here: holes count as received, and a fault
 * on one is answered with a zero page by the fault thread itself.
 */
static int fetch(struct flazy *lz, const struct mfd__page_range *r)
{
	struct mfd__session *ss = lz->f->c.ss;
	unsigned b = r->block;
	const struct mfd__ramblock *rb = &ss->blocks[b];
	const struct mfd__bitmap *pr = &lz->f->c.present[b];
	uint64_t pg = r->offset >> rb->page_shift, n = 1;
	if (!mfd__bitmap_test(pr, pg)) /* not in the file: zero */
		return mfd__pc_dst_place_run(lz->pc, b, pg, 1, NULL) < 0 ? -EIO
									 : 0;
	while (n < LAZY_AROUND && pg + n < rb->npages &&
	       mfd__bitmap_test(pr, pg + n) &&
	       mfd__pc_dst_claim(lz->pc, b, pg + n))
		n++;
	int ret = mfd__fio_all(
		lz->f->c.dfd, false, lz->stage, n << rb->page_shift,
		lz->f->c.h.blocks[b].pages_off + (pg << rb->page_shift));
	if (ret)
		return lazy_read_failed(ss, ret, lz->f->c.path, rb, pg);
	if ((ret = lazy_place(ss, lz->pc, b, pg, n, lz->stage)))
		return ret;
	STAT_ADD(ss->st.pages, n);
	STAT_ADD(ss->st.wire_bytes, n * rb->page_size);
	return 0;
}

/* fetch(), then done signalled where lazy_wait has to know. */
static int lazy_fetch(void *ctx, unsigned lane, const struct mfd__page_range *r)
{
	struct flazy *lz = ctx;
	(void)lane;
	int ret = fetch(lz, r);
	if (ret || mfd__pc_dst_complete(lz->pc)) {
		pthread_mutex_lock(&lz->lock);
		if (ret && !lz->failed)
			lz->failed = ret;
		pthread_cond_broadcast(&lz->done);
		pthread_mutex_unlock(&lz->lock);
	}
	return ret;
}

/* After the readers: the pages faults claimed may still be on their way
 * (lazy_fetch signals their end). Bounded by io-timeout without
 * progress. */
static int lazy_wait(struct flazy *lz)
{
	struct mfd__session *ss = lz->f->c.ss;
	struct mfd__pc_dst *pc = lz->pc;
	uint64_t tmo = ss->cfg.io_timeout_ms * 1000000ULL;
	uint64_t last = 0, t_last = mfd__now_ns();
	int ret;
	pthread_mutex_lock(&lz->lock);
	for (;;) {
		if ((ret = lz->failed) ||
		    (ret = __atomic_load_n(&pc->err, __ATOMIC_ACQUIRE))) {
			ret = mfd__session_fail(ss, ret);
			break;
		}
		if ((ret = mfd__session_check(ss)) || mfd__pc_dst_complete(pc))
			break;
		uint64_t now = mfd__now_ns(),
			 have = __atomic_load_n(&pc->present, __ATOMIC_RELAXED);
		if (have != last) {
			last = have;
			t_last = now;
		} else if (now - t_last > tmo) {
			ret = mfd__session_fail_why(
				ss, -ETIMEDOUT,
				"lazy restore: %llu pages still missing after "
				"io-timeout",
				(unsigned long long)(pc->total - have));
			break;
		}
		uint64_t check = mfd__deadline_ms(LAZY_CHECK_MS);
		(void)mfd__cond_wait_until(
			&lz->done, &lz->lock,
			t_last + tmo < check ? t_last + tmo + 1 : check);
	}
	pthread_mutex_unlock(&lz->lock);
	return ret;
}

/* Every page placed: the block digests of what was read. A mismatch now
 * is a lost guest (it ran on those bytes). */
static int lazy_verify(struct mfd__fload *f)
{
	struct mfd__session *ss = f->c.ss;
	uint64_t t0 = mfd__now_ns();
	uint8_t(*dig)[MFD__DIGEST_SIZE] = calloc(ss->nblocks, sizeof(*dig));
	int ret = 0;
	if (!dig)
		return mfd__session_fail(ss, -ENOMEM);
	mfd__session_digests(ss, dig);
	for (unsigned i = 0; i < ss->nblocks && !ret; i++)
		if (memcmp(dig[i], f->e.blocks[i].ram, MFD__DIGEST_SIZE))
			ret = mfd__session_fail_why(
				ss, MFD_EVERIFY,
				"file %s: lost guest: block %s: RAM digest "
				"mismatch (page area corrupt) found after the "
				"guest ran on it",
				f->c.path, ss->blocks[i].name);
	free(dig);
	STAT_SET(ss->st.verify_ns, mfd__now_ns() - t0);
	return ret;
}

/*
 * Lazy restore (docs/architecture.md, "File migration"): header, layout,
 * end record and bitmaps are checked (load_run), the device state is
 * checked and loaded, every block is registered with userfaultfd and
 * emptied, the fault thread started, and the guest runs (loaded hook);
 * then the readers stream every page in address order while faults fetch
 * theirs, all placed through the post-copy state (postcopy_dst.c).
 */
static int lazy_run(struct mfd__fload *f, struct flazy *lz)
{
	struct mfd__session *ss = f->c.ss;
	struct mfd__pc_dst *pc = f->lazy->pc;
	int ret = mfd__fbatches_alloc(&f->c.bs, ss);
	if (!ret)
		ret = mfd__session_digests_alloc(ss);
	if (!ret && !(lz->stage = stage_alloc(LAZY_AROUND *
					      mfd__file_largest_page(ss))))
		ret = -ENOMEM;
	if (ret)
		return mfd__session_fail(ss, ret);
	ret = mfd__pc_dst_init(pc, ss->blocks, ss->nblocks, 1, lazy_fetch, lz);
	pthread_mutex_lock(f->lazy->lock);
	*f->lazy->up = ret == 0;
	pthread_mutex_unlock(f->lazy->lock);
	if (ret)
		ret = mfd__session_fail(ss, ret);
	STAT_SET(ss->st.setup_ns, mfd__now_ns() - ss->t_start);
	STAT_SET(ss->st.phase, MFD_PHASE_SWITCHOVER);
	if (!ret)
		ret = mfd__fload_devices(f);
	/* Registered before the pages go (khugepaged, postcopy_dst.h):
	 * then nothing but a placement fills them. Holes need no read. */
	if (!ret && (ret = mfd__pc_dst_register(pc)))
		ret = mfd__session_fail_why(ss, ret,
					    "lazy restore: userfaultfd: %s",
					    mfd_strerror(ret));
	for (unsigned i = 0; i < ss->nblocks && !ret; i++) {
		if ((ret = mfd__uffd_discard(ss->blocks[i].host,
					     ss->blocks[i].size)))
			ret = mfd__session_fail(ss, ret);
		mfd__pc_dst_known_zero(pc, i, &f->c.present[i]);
	}
	if (!ret && (ret = mfd__pc_dst_switch(pc)))
		ret = mfd__session_fail(ss, ret);
	if (!ret && f->hooks->loaded && f->hooks->loaded(f->hooks->opaque) < 0)
		ret = mfd__session_fail_why(ss, MFD_EHOOK,
					    "loaded hook failed");
	if (ret) {
		mfd__pc_dst_stop(pc); /* the guest never ran */
		return ret;
	}
	f->ran = true;
	STAT_SET(ss->st.downtime_ns, mfd__now_ns() - ss->t_start);
	STAT_SET(ss->st.phase, MFD_PHASE_POSTCOPY);
	struct mfd__fpass p = mfd__fload_read_pass(f);
	p.pc = pc;
	ret = mfd__fpass_run(&p, false);
	if (!ret)
		ret = lazy_wait(lz);
	STAT_SET(ss->st.transfer_ns, mfd__now_ns() - ss->t_start);
	if (ret) {
		/* Faulting threads stay blocked (the registration stays until
		 * mfd_dest_free() or the next start). */
		mfd__pc_dst_halt(pc);
		return ret;
	}
	mfd__pc_dst_stop(pc); /* joins the fault thread: its digests */
	return lazy_verify(f);
}

int mfd__flazy_run(struct mfd__fload *f)
{
	struct flazy lz = { .f = f, .pc = f->lazy->pc };
	pthread_mutex_init(&lz.lock, NULL);
	mfd__cond_init_mono(&lz.done);
	int ret = lazy_run(f, &lz);
	/* The fault thread is joined or halted: lazy_fetch runs no more. */
	pthread_cond_destroy(&lz.done);
	pthread_mutex_destroy(&lz.lock);
	free(lz.stage);
	return ret;
}
