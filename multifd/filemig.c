/* SPDX-License-Identifier: MIT */
/* Migration to a file and back (multifd/filemig.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "multifd/common/clock.h"
#include "multifd/common/le.h"
#include "multifd/common/log.h"
#include "multifd/compress/codec.h"
#include "multifd/fileimg.h"
#include "multifd/fileio.h"
#include "multifd/filemig.h"
#include "multifd/filepass.h"
#include "multifd/postcopy_dst.h"
#include "ramblock/tracker.h"

const char *mfd__file_uri_path(const char *uri)
{
	return uri && strncmp(uri, "file:", 5) == 0 ? uri + 5 : NULL;
}

uint64_t mfd__file_largest_page(const struct mfd__session *ss)
{
	uint64_t ps = 4096;
	for (unsigned i = 0; i < ss->nblocks; i++)
		if (ss->blocks[i].page_size > ps)
			ps = ss->blocks[i].page_size;
	return ps;
}

int mfd__file_fail_errno(struct mfd__session *ss, int err, const char *what,
			 const char *path)
{
	const char *name = strerrorname_np(-err);
	return mfd__session_fail_why(ss, err, "file %s: %s: %s (%s)", path,
				     what, strerror(-err), name ? name : "?");
}

/* The save writer's own scratch for one batch (packet-pages entries). */
struct fsave_scratch {
	bool *zero;	       /* per page of the batch: all bytes zero */
	bool *hole;	       /* per page: left (or made) a hole */
	struct iovec *iov;     /* the batch's writes, until they are reaped */
	struct iovec *iovs[2]; /* iov: one batch prepared, one written */
};

/* A batch whose writes are queued: what its completion counts. */
struct fsaved {
	const struct mfd__fbatch *bt;
	uint64_t zeros, holes;
};

/* Whether page pg of block rb is zero in guest memory (within the block). */
static bool mem_zero(const struct mfd__ramblock *rb, uint64_t pg)
{
	return mfd__buffer_is_zero(rb->host + (pg << rb->page_shift),
				   rb->page_size);
}

/*
 * Marks the zero pages of the batch that become holes: those in a run of
 * consecutive zero pages at least file-hole-min long. A run is measured in
 * guest memory, past the batch's first and last page where needed, so the
 * rule does not depend on where batches start (on a running guest the
 * pages outside the batch may change meanwhile: that only changes which
 * of two correct encodings, hole or zeros as data, a page gets).
 */
static void mark_holes(const struct mfd__ramblock *rb,
		       const struct mfd__fbatch *bt, uint64_t min,
		       const bool *zero, bool *hole)
{
	for (uint32_t i = 0; i < bt->n;) {
		if (!zero[i]) {
			hole[i++] = false;
			continue;
		}
		uint64_t first = bt->offsets[i] >> rb->page_shift;
		uint32_t j = i + 1;
		while (j < bt->n && zero[j] &&
		       bt->offsets[j] >> rb->page_shift == first + (j - i))
			j++;
		uint64_t len = j - i, last = first + len - 1;
		/* Past the run's ends only when the neighbour is not in the
		 * batch (a neighbour in the batch is non-zero: the run is
		 * maximal there). */
		bool before = i == 0 ||
			      bt->offsets[i - 1] >> rb->page_shift != first - 1;
		bool after = j == bt->n ||
			     bt->offsets[j] >> rb->page_shift != last + 1;
		for (uint64_t pg = first; before && len < min && pg-- > 0;)
			if (mem_zero(rb, pg))
				len++;
			else
				break;
		for (uint64_t pg = last + 1;
		     after && len < min && pg < rb->npages; pg++)
			if (mem_zero(rb, pg))
				len++;
			else
				break;
		for (; i < j; i++)
			hole[i] = len >= min;
	}
}

/* Queues the file-contiguous pages gathered in iov[0 .. cnt) (first page
 * first of block b). */
static int write_iov(struct mfd__fpass *p, struct mfd__fio *io, unsigned b,
		     uint64_t first, struct iovec *iov, unsigned cnt)
{
	const struct mfd__ramblock *rb = &p->ss->blocks[b];
	return cnt ? mfd__fio_rwv(io, p->fd, true, iov, cnt,
				  p->h->blocks[b].pages_off +
					  (first << rb->page_shift))
		   : 0;
}

/* A hole for pages [first, first + n) of block b, where any of them was
 * written in an earlier round (was_present): punched out. */
static int punch(struct mfd__fpass *p, unsigned b, uint64_t first, uint64_t n)
{
	const struct mfd__ramblock *rb = &p->ss->blocks[b];
	if (fallocate(p->mfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(p->h->blocks[b].pages_off +
			      (first << rb->page_shift)),
		      (off_t)(n << rb->page_shift)) < 0)
		return -errno;
	return 0;
}

/* 0, or the failure of the pages' writes, recorded with its reason. */
static int written(struct mfd__fpass *p, int ret)
{
	return ret ? mfd__file_fail_errno(p->ss, ret, "write pages", p->path)
		   : 0;
}

/*
 * One batch, its writes queued (save_done once they are done). Zero pages in
 * runs of at least file-hole-min stay holes (punched if a page was written in
 * an earlier round); every other page, zero or not, is data: each run of
 * consecutive pages of the file goes out with one pwritev (one ring entry),
 * straight from guest memory, the zero pages from the shared zero buffer. A
 * scanner batch of round 0 is consecutive pages, so it is one write: few large
 * extents, where a hole per zero page made about 130,000 of 12 KiB for a 2 GiB
 * mix image on ext4 (docs/benchmarks.md). The page digests are taken here, as
 * the network workers take them where they send.
 */
static int save_batch(struct mfd__fpass *p, struct mfd__fio *io,
		      const struct mfd__fbatch *bt, struct fsave_scratch *sc,
		      struct fsaved *out)
{
	struct mfd__session *ss = p->ss;
	const struct mfd__ramblock *rb = &ss->blocks[bt->block];
	struct mfd__bitmap *pr = &p->present[bt->block];
	uint64_t zeros = 0, holes = 0;
	for (uint32_t i = 0; i < bt->n; i++) {
		uint64_t pg = bt->offsets[i] >> rb->page_shift;
		const uint8_t *page = rb->host + bt->offsets[i];
		sc->zero[i] = mfd__buffer_is_zero(page, rb->page_size);
		ss->pdig[bt->block][pg] =
			sc->zero[i] ? ss->pdig_zero[bt->block]
				    : mfd__page_digest(page, rb->page_size);
		zeros += sc->zero[i];
	}
	mark_holes(rb, bt, ss->cfg.file_hole_min, sc->zero, sc->hole);
	/* A run: pages consecutive in the file, all holes or all data. */
	uint64_t run = 0, run_n = 0;
	unsigned iov0 = 0, niov = 0;
	bool run_hole = false, was = false;
	int ret = 0;
	for (uint32_t i = 0; i <= bt->n && !ret; i++) {
		uint64_t pg = i < bt->n ? bt->offsets[i] >> rb->page_shift : 0;
		if (run_n && (i == bt->n || pg != run + run_n ||
			      sc->hole[i] != run_hole)) {
			if (!run_hole)
				ret = write_iov(p, io, bt->block, run,
						sc->iov + iov0, niov - iov0);
			else if (was)
				ret = punch(p, bt->block, run, run_n);
			iov0 = niov;
			run_n = 0;
		}
		if (i == bt->n || ret)
			break;
		uint64_t bit = 1ULL << (pg & 63);
		if (!run_n) {
			run = pg;
			run_hole = sc->hole[i];
			was = false;
		}
		run_n++;
		if (run_hole) {
			uint64_t old = __atomic_fetch_and(
				&pr->words[pg >> 6], ~bit, __ATOMIC_RELAXED);
			was |= (old & bit) != 0;
			holes++;
			continue;
		}
		mfd__bitmap_set_atomic(pr, pg);
		uint8_t *src =
			sc->zero[i] ? p->zeros : rb->host + bt->offsets[i];
		struct iovec *last = niov > iov0 ? &sc->iov[niov - 1] : NULL;
		/* Guest pages next to each other in memory, or zero pages
		 * while the zero buffer lasts, share one iovec. */
		if (last &&
		    (sc->zero[i] ? last->iov_base == p->zeros &&
					   last->iov_len + rb->page_size <=
						   p->zeros_len
				 : (uint8_t *)last->iov_base + last->iov_len ==
					   src))
			last->iov_len += rb->page_size;
		else
			sc->iov[niov++] =
				(struct iovec){ .iov_base = src,
						.iov_len = rb->page_size };
	}
	*out = (struct fsaved){ .bt = bt, .zeros = zeros, .holes = holes };
	return written(p, ret);
}

/* A batch's writes are done: counted, and, buffered, its writeback
 * started. */
static void save_done(struct mfd__fpass *p, const struct fsaved *d)
{
	struct mfd__session *ss = p->ss;
	const struct mfd__fbatch *bt = d->bt;
	const struct mfd__ramblock *rb = &ss->blocks[bt->block];
	/* Buffered: start the batch's writeback now, in this writer, so the
	 * disk works while the rounds run. Left to the end's fdatasync, the
	 * whole image's writeback fell into the downtime: 1.9-3.0 s for a
	 * 2 GiB mix image on this machine's disk, 4-21 ms with this
	 * (docs/benchmarks.md). A hint: its failure changes nothing, the
	 * fdatasync at the end still decides. */
	if (!ss->cfg.direct_io && bt->n) {
		uint64_t a = bt->offsets[0], z = bt->offsets[bt->n - 1];
		(void)sync_file_range(
			p->fd, (off_t)(p->h->blocks[bt->block].pages_off + a),
			(off_t)(z - a + rb->page_size), SYNC_FILE_RANGE_WRITE);
	}
	STAT_ADD(ss->st.pages, bt->n);
	STAT_ADD(ss->st.zero_pages, d->zeros);
	STAT_ADD(ss->st.packets, 1);
	STAT_ADD(ss->st.wire_bytes, (bt->n - d->holes) * rb->page_size);
}

/* Reads the present pages of one batch into guest memory, takes their
 * digests; absent pages keep the zero page's digest (the destination's
 * memory starts zero, as for a network migration). */
static int load_batch(struct mfd__fpass *p, struct mfd__fio *io,
		      const struct mfd__fbatch *bt)
{
	struct mfd__session *ss = p->ss;
	const struct mfd__ramblock *rb = &ss->blocks[bt->block];
	const struct mfd__bitmap *pr = &p->present[bt->block];
	uint64_t first = bt->offsets[0] >> rb->page_shift, present = 0;
	uint64_t end = first + bt->n;
	int ret = 0;
	/* A batch here is n consecutive pages from offsets[0]: one read per
	 * run of present pages, then (the reads done) their digests. */
	for (uint64_t pg = first; pg < end && !ret;) {
		if (!mfd__bitmap_test(pr, pg)) {
			pg++;
			continue;
		}
		uint64_t n = 1;
		while (pg + n < end && mfd__bitmap_test(pr, pg + n))
			n++;
		uint64_t off = pg << rb->page_shift;
		ret = mfd__fio_rw(io, p->fd, false, rb->host + off,
				  n << rb->page_shift,
				  p->h->blocks[bt->block].pages_off + off);
		present += n;
		pg += n;
	}
	if (!ret)
		ret = mfd__fio_drain(io);
	for (uint64_t pg = first; pg < end && !ret; pg++)
		if (mfd__bitmap_test(pr, pg))
			ss->pdig[bt->block][pg] = mfd__page_digest(
				rb->host + (pg << rb->page_shift),
				rb->page_size);
	if (ret == -ENODATA)
		return mfd__session_fail_why(
			ss, MFD_ETRUNCATED,
			"file %s refused: truncated: block %s's pages at %llu "
			"lie past its end",
			p->path, rb->name, (unsigned long long)bt->offsets[0]);
	if (ret)
		return mfd__file_fail_errno(ss, ret, "read pages", p->path);
	STAT_ADD(ss->st.pages, bt->n);
	STAT_ADD(ss->st.zero_pages, bt->n - present);
	STAT_ADD(ss->st.packets, 1);
	STAT_ADD(ss->st.wire_bytes, present * rb->page_size);
	return 0;
}

struct fworker {
	struct mfd__fpass *p;
	bool save;
	int ret;
	pthread_t t;
	struct mfd__flazy_buf lz; /* lazy restore */
	struct fsave_scratch sc;  /* save */
};

static int save_scratch(struct mfd__fpass *p, struct fworker *w)
{
	uint64_t pp = p->ss->cfg.packet_pages;
	w->sc.zero = calloc(pp, sizeof(*w->sc.zero));
	w->sc.hole = calloc(pp, sizeof(*w->sc.hole));
	for (int k = 0; k < 2; k++)
		w->sc.iovs[k] = calloc(pp, sizeof(*w->sc.iov));
	return w->sc.zero && w->sc.hole && w->sc.iovs[0] && w->sc.iovs[1]
		       ? 0
		       : -ENOMEM;
}

/* The pass's next batch for this worker, or NULL at the end (or once the
 * session failed: *ret). */
static const struct mfd__fbatch *next_batch(struct mfd__fpass *p, int *ret)
{
	uint64_t i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
	if (i >= p->nb || (*ret = mfd__session_check(p->ss)))
		return NULL;
	return &p->b[i];
}

/*
 * A save writer's batches. With direct I/O the device waits for this
 * thread between batches (no page cache takes the writes): so one batch
 * is in the device while the next is prepared (zero pages, digests,
 * holes, its writes queued), and it is submitted as soon as the one before
 * is done. One batch in the device at a time, as fio's psync writes of
 * one block at a time (bench/scripts/file_fio.sh), but the device no
 * longer idles while the writer computes. Without a ring (io-engine =
 * sockets) the writes are done as they are queued: nothing overlaps
 * there without a second thread. Buffered, each batch is written, then
 * its writeback started (save_done).
 */
static int save_loop(struct mfd__fpass *p, struct mfd__fio *io,
		     struct fworker *w)
{
	bool overlap = p->ss->cfg.direct_io;
	struct fsaved prev = { 0 }, cur;
	const struct mfd__fbatch *bt;
	int ret = 0;
	for (unsigned k = 0; !ret && (bt = next_batch(p, &ret)); k ^= 1) {
		w->sc.iov = w->sc.iovs[k];
		if ((ret = save_batch(p, io, bt, &w->sc, &cur)))
			break;
		if (!overlap) {
			if (!(ret = written(p, mfd__fio_drain(io))))
				save_done(p, &cur);
			continue;
		}
		if (!(ret = written(p, mfd__fio_reap(io))) && prev.bt)
			save_done(p, &prev);
		prev = cur;
		if (!ret)
			ret = written(p, mfd__fio_submit(io));
	}
	if (!ret && prev.bt && !(ret = written(p, mfd__fio_reap(io))))
		save_done(p, &prev);
	return ret;
}

static void *worker_main(void *arg)
{
	struct fworker *w = arg;
	struct mfd__fpass *p = w->p;
	struct mfd__fio *io = malloc(sizeof(*io));
	int ret = io ? 0 : -ENOMEM;
	if (io && !mfd__fio_init(io, p->uring) && p->uring)
		mfd__warn("io-engine uring: no io_uring for file I/O here; "
			  "pwrite/pread instead");
	if (io && p->pc)
		ret = mfd__flazy_buf_init(&w->lz, p->ss);
	if (io && w->save)
		ret = save_scratch(p, w);
	const struct mfd__fbatch *bt;
	if (io && !ret && w->save)
		ret = save_loop(p, io, w);
	while (io && !ret && !w->save && (bt = next_batch(p, &ret)))
		ret = p->pc ? mfd__flazy_batch(p, io, bt, &w->lz)
			    : load_batch(p, io, bt);
	if (io)
		mfd__fio_exit(io);
	free(io);
	mfd__flazy_buf_free(&w->lz);
	free(w->sc.zero);
	free(w->sc.hole);
	free(w->sc.iovs[0]);
	free(w->sc.iovs[1]);
	/* The first failing worker stops the others at their next batch. */
	if (ret && ret != -ECANCELED)
		mfd__session_fail(p->ss, ret);
	w->ret = ret;
	STAT_ADD(p->ss->st.cpu_ns, mfd__thread_cpu_ns());
	return NULL;
}

/* Runs the pass's batches on `channels` threads and joins them. */
int mfd__fpass_run(struct mfd__fpass *p, bool save)
{
	struct fworker w[MFD_MAX_CHANNELS];
	unsigned n = p->ss->cfg.channels, started = 0;
	int ret = 0;
	p->next = 0;
	if (n > MFD_MAX_CHANNELS)
		n = MFD_MAX_CHANNELS;
	for (unsigned i = 0; i < n; i++) {
		w[i] = (struct fworker){ .p = p, .save = save };
		if (pthread_create(&w[i].t, NULL, worker_main, &w[i])) {
			ret = mfd__session_fail(p->ss, -EAGAIN);
			break;
		}
		started++;
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(w[i].t, NULL);
	return ret ? ret : mfd__session_check(p->ss);
}

int mfd__fbatches_alloc(struct mfd__fbatches *bs, struct mfd__session *ss)
{
	uint64_t pages = 0, nb = 0, pp = ss->cfg.packet_pages;
	for (unsigned i = 0; i < ss->nblocks; i++) {
		pages += ss->blocks[i].npages;
		nb += (ss->blocks[i].npages + pp - 1) / pp;
	}
	bs->b = calloc(nb, sizeof(*bs->b));
	bs->offs = calloc(pages, sizeof(uint64_t));
	bs->cap = nb;
	bs->noffs = pages;
	return bs->b && bs->offs ? 0 : -ENOMEM;
}

static void batches_free(struct mfd__fbatches *bs)
{
	free(bs->b);
	free(bs->offs);
}

/* Scans the dirty bitmaps (clearing them) into batches; the pages. */
static uint64_t batches_scan(struct mfd__fbatches *bs, struct mfd__session *ss)
{
	struct mfd__scanner sc;
	unsigned blk, n;
	uint64_t used = 0;
	mfd__scanner_init(&sc, ss->blocks, ss->nblocks, ss->cfg.packet_pages);
	bs->n = 0;
	/* Per block at most ceil(npages / packet-pages) batches and npages
	 * offsets: the arrays hold a full pass. */
	while ((n = mfd__scanner_next(&sc, &blk, bs->offs + used))) {
		bs->b[bs->n++] = (struct mfd__fbatch){
			.block = blk, .n = n, .offsets = bs->offs + used
		};
		used += n;
	}
	return used;
}

static void fside_init(struct mfd__fside *c, struct mfd__session *ss,
		       struct mfd__devset *devs, uint64_t *dev_bytes,
		       const char *path)
{
	c->ss = ss;
	c->devs = devs;
	c->dev_bytes = dev_bytes;
	c->path = path;
	c->fd = c->dfd = -1;
}

static void fside_close(struct mfd__fside *c)
{
	if (c->dfd >= 0 && c->dfd != c->fd)
		close(c->dfd);
	if (c->fd >= 0)
		close(c->fd);
	for (unsigned i = 0; i < MFD_MAX_BLOCKS; i++)
		mfd__bitmap_destroy(&c->present[i]);
	batches_free(&c->bs);
	mfd__session_digests_free(c->ss);
}

/* ------------------------------------------------------------------ */
/* Save                                                               */
/* ------------------------------------------------------------------ */

/* The zero buffer's bytes at least: zero pages in a row share an iovec. */
#define ZEROS_MIN (1ULL << 20)

struct fsave {
	struct mfd__fside c;
	const mfd_source_hooks *hooks;
	uint8_t *hdr; /* encoded header */
	struct mfd__fpass pass;
	struct mfd__tracker tracker;
	bool tracking, stopped;
};

/* direct-io: a second descriptor of path with O_DIRECT for the pages
 * (flags O_RDONLY or O_WRONLY); *dfd = fd without it. The pages move
 * straight between it and guest memory: no bounce buffer. */
static int open_direct(struct mfd__session *ss, const char *path, int flags,
		       int fd, int *dfd)
{
	*dfd = fd;
	if (!ss->cfg.direct_io)
		return 0;
	for (unsigned i = 0; i < ss->nblocks; i++)
		if ((uintptr_t)ss->blocks[i].host % 4096)
			return mfd__session_fail_why(
				ss, MFD_ECONFIG,
				"direct-io: block %s is not 4 KiB aligned in "
				"memory (O_DIRECT moves pages straight to and "
				"from it)",
				ss->blocks[i].name);
	*dfd = open(path, flags | O_DIRECT | O_CLOEXEC);
	if (*dfd < 0 && errno == EINVAL)
		return mfd__session_fail_why(
			ss, -EINVAL,
			"file %s: direct-io = on, but its file system does not "
			"support O_DIRECT (tmpfs before Linux 6.6, for one); "
			"set direct-io = off",
			path);
	if (*dfd < 0)
		return mfd__file_fail_errno(ss, -errno, "open with O_DIRECT",
					    path);
	return 0;
}

static int open_save(struct fsave *f)
{
	f->c.fd = open(f->c.path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (f->c.fd < 0)
		return mfd__file_fail_errno(f->c.ss, -errno, "open", f->c.path);
	return open_direct(f->c.ss, f->c.path, O_WRONLY, f->c.fd, &f->c.dfd);
}

static int save_setup(struct fsave *f)
{
	struct mfd__session *ss = f->c.ss;
	int ret = open_save(f);
	if (ret)
		return ret;
	f->c.h.nblocks = ss->nblocks;
	for (unsigned i = 0; i < ss->nblocks; i++) {
		struct mfd__fimg_block *b = &f->c.h.blocks[i];
		snprintf(b->name, sizeof(b->name), "%s", ss->blocks[i].name);
		b->size = ss->blocks[i].size;
		b->page_size = ss->blocks[i].page_size;
		if ((ret = mfd__bitmap_init(&f->c.present[i],
					    ss->blocks[i].npages)))
			return ret;
	}
	mfd__fimg_layout(&f->c.h);
	if (!(f->hdr = calloc(1, f->c.h.header_len)) ||
	    (ret = mfd__fbatches_alloc(&f->c.bs, ss)) ||
	    (ret = mfd__session_digests_alloc(ss)))
		return ret ? ret : -ENOMEM;
	mfd__fimg_header_encode(&f->c.h, f->hdr);
	/* Zero pages written as data come from here: an anonymous mapping
	 * never written reads as the kernel's zero page and takes no
	 * memory, whatever the page size. */
	f->pass.zeros_len = mfd__file_largest_page(ss) > ZEROS_MIN
				    ? mfd__file_largest_page(ss)
				    : ZEROS_MIN;
	f->pass.zeros =
		mmap(NULL, f->pass.zeros_len, PROT_READ,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (f->pass.zeros == MAP_FAILED) {
		f->pass.zeros = NULL;
		return -ENOMEM;
	}
	/* The file has its final size from the start: pages land inside it
	 * and never move it. */
	if (ftruncate(f->c.fd, (off_t)f->c.h.dev_off) < 0)
		return mfd__file_fail_errno(ss, -errno, "ftruncate", f->c.path);
	if ((ret = mfd__fio_all(f->c.fd, true, f->hdr, f->c.h.header_len, 0)))
		return mfd__file_fail_errno(ss, ret, "write header", f->c.path);
	f->pass = (struct mfd__fpass){ .ss = ss,
				       .fd = f->c.dfd,
				       .mfd = f->c.fd,
				       .present = f->c.present,
				       .h = &f->c.h,
				       .path = f->c.path,
				       .uring = ss->cfg.io_engine ==
						MFD__IO_URING,
				       .zeros = f->pass.zeros,
				       .zeros_len = f->pass.zeros_len };
	return 0;
}

/* Dirty log into the bitmaps (as the network source's dirty sync). */
static int save_sync(struct fsave *f, uint64_t *pending)
{
	struct mfd__session *ss = f->c.ss;
	uint64_t bytes = 0;
	for (unsigned i = 0; i < ss->nblocks; i++) {
		struct mfd__ramblock *rb = &ss->blocks[i];
		if (f->hooks->sync_dirty &&
		    f->hooks->sync_dirty(f->hooks->opaque, i, rb->dirty.words,
					 rb->npages) < 0)
			return mfd__session_fail_why(ss, MFD_EHOOK,
						     "sync_dirty hook failed");
		if (rb->npages & 63)
			rb->dirty.words[rb->dirty.nwords - 1] &=
				(1ULL << (rb->npages & 63)) - 1;
		int64_t n = mfd__tracker_sync(&f->tracker, i);
		if (n < 0)
			return mfd__session_fail(ss, (int)n);
		bytes += (uint64_t)n * rb->page_size;
	}
	*pending = bytes;
	STAT_SET(ss->st.pending_bytes, bytes);
	return 0;
}

static int save_round(struct fsave *f, uint32_t round, uint64_t *bytes_out)
{
	STAT_SET(f->c.ss->st.round, round);
	batches_scan(&f->c.bs, f->c.ss);
	f->pass.b = f->c.bs.b;
	f->pass.nb = f->c.bs.n;
	uint64_t before = STAT_GET(f->c.ss->st.wire_bytes);
	int ret = mfd__fpass_run(&f->pass, true);
	*bytes_out = STAT_GET(f->c.ss->st.wire_bytes) - before;
	return ret;
}

/* Pre-copy: rounds while the guest runs, until what is dirty would be
 * written within downtime-limit at the last round's rate, or max-rounds. */
static int save_precopy(struct fsave *f, uint32_t *round)
{
	struct mfd__session *ss = f->c.ss;
	int ret = mfd__tracker_start(&f->tracker, (int)ss->cfg.dirty_tracker,
				     ss->blocks, ss->nblocks);
	if (ret)
		return mfd__session_fail(ss, ret);
	f->tracking = true;
	STAT_SET(ss->st.tracker, (int)f->tracker.kind);
	for (unsigned i = 0; i < ss->nblocks; i++) {
		struct mfd__bitmap scratch = ss->blocks[i].dirty;
		mfd__bitmap_harvest(&scratch, &ss->blocks[i].log);
		mfd__bitmap_fill(&ss->blocks[i].dirty);
	}
	STAT_SET(ss->st.phase, MFD_PHASE_PRECOPY);
	STAT_SET(ss->st.setup_ns, mfd__now_ns() - ss->t_start);
	for (;; (*round)++) {
		uint64_t t0 = mfd__now_ns(), bytes, pending;
		if ((ret = save_round(f, *round, &bytes)) ||
		    (ret = save_sync(f, &pending)))
			return ret;
		uint64_t ns = mfd__now_ns() - t0 + 1;
		uint64_t bps = (uint64_t)((double)bytes * 1e9 / (double)ns);
		STAT_SET(ss->st.bandwidth_bps, bps);
		double expect_ms =
			bps ? (double)pending * 1e3 / (double)bps : 0;
		if (expect_ms <= (double)ss->cfg.downtime_limit_ms ||
		    *round + 1 >= ss->cfg.max_rounds)
			return 0;
	}
}

static int save_stop(struct fsave *f)
{
	int ret = f->c.devs->n
			  ? mfd__devset_vm_event(f->c.devs, MFD_VM_BEFORE_STOP)
			  : 0;
	if (ret)
		return mfd__session_fail(f->c.ss, ret);
	ret = f->hooks->stop(f->hooks->opaque);
	f->stopped = true; /* resume even when stop half-failed */
	if (ret < 0)
		return mfd__session_fail_why(f->c.ss, MFD_EHOOK,
					     "stop hook failed: %d", ret);
	ret = f->c.devs->n ? mfd__devset_vm_event(f->c.devs, MFD_VM_AFTER_STOP)
			   : 0;
	return ret ? mfd__session_fail(f->c.ss, ret) : 0;
}

/* Grows *buf (capacity *cap) to hold at least need bytes. */
static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap : 1 << 20;
	while (ncap < need)
		ncap *= 2;
	uint8_t *nb = realloc(*buf, ncap);
	if (!nb)
		return -ENOMEM;
	*buf = nb;
	*cap = ncap;
	return 0;
}

/* Every device's whole state, read in STOP_COPY, as one record each, in
 * one buffer: written with one pwrite and digested for the end record. */
static int save_devices(struct fsave *f, uint64_t *len, uint64_t *digest)
{
	size_t cap = 0, used = 0;
	uint8_t *buf = NULL;
	int ret = 0;
	for (unsigned i = 0; i < f->c.devs->n && !ret; i++) {
		struct mfd__dev *d = &f->c.devs->devs[i];
		size_t rec = used;
		used += MFD__FIMG_DEV_REC;
		for (;;) {
			if ((ret = reserve(&buf, &cap, used + 65536)))
				break;
			ssize_t n =
				d->ops.save(d->opaque, buf + used, cap - used);
			if (n < 0 || (size_t)n > cap - used) {
				ret = mfd__session_fail_why(
					f->c.ss, MFD_EDEVICE,
					"device %s: save failed: %zd", d->name,
					n);
				break;
			}
			if (n == 0)
				break;
			used += (size_t)n;
		}
		if (ret)
			break;
		struct mfd__fimg_dev dr = {
			.index = i, .len = used - rec - MFD__FIMG_DEV_REC
		};
		snprintf(dr.name, sizeof(dr.name), "%s", d->name);
		mfd__fimg_dev_encode(&dr, buf + rec);
		size_t end = rec + mfd__fimg_dev_span(dr.len);
		memset(buf + used, 0, end - used); /* reserve left room */
		used = end;
	}
	if (!ret) {
		*len = used;
		*digest = mfd__fimg_digest64(buf, used);
		if ((ret = mfd__fio_all(f->c.fd, true, buf, used,
					f->c.h.dev_off)))
			ret = mfd__file_fail_errno(
				f->c.ss, ret, "write device state", f->c.path);
	}
	free(buf);
	STAT_SET(*f->c.dev_bytes, used);
	return ret;
}

/* Bitmaps, end record with the digests, then the header's end_off: an
 * image is complete only once that last write is on disk. */
static int save_end(struct fsave *f, uint64_t dev_len, uint64_t dev_digest)
{
	struct mfd__session *ss = f->c.ss;
	struct mfd__fimg_end e = { .nblocks = f->c.h.nblocks,
				   .ndevices = f->c.devs->n,
				   .dev_len = dev_len,
				   .dev_digest = dev_digest };
	uint8_t(*dig)[MFD__DIGEST_SIZE] = calloc(ss->nblocks, sizeof(*dig));
	int ret = dig ? 0 : -ENOMEM;
	if (!ret)
		mfd__session_digests(ss, dig);
	for (unsigned i = 0; i < ss->nblocks && !ret; i++) {
		struct mfd__bitmap *pr = &f->c.present[i];
		uint64_t len = mfd__fimg_bitmap_len(ss->blocks[i].npages);
		uint8_t *buf = calloc(1, len);
		if (!buf) {
			ret = -ENOMEM;
			break;
		}
		for (uint64_t w = 0; w < pr->nwords; w++)
			mfd__put_le64(buf + w * 8, pr->words[w]);
		memcpy(e.blocks[i].ram, dig[i], MFD__DIGEST_SIZE);
		e.blocks[i].bitmap = mfd__fimg_digest64(buf, len);
		e.blocks[i].present = mfd__bitmap_count(pr);
		ret = mfd__fio_all(f->c.fd, true, buf, len,
				   f->c.h.blocks[i].bitmap_off);
		free(buf);
	}
	free(dig);
	uint64_t end_off =
		(f->c.h.dev_off + dev_len + MFD__FIMG_META_ALIGN - 1) &
		~(MFD__FIMG_META_ALIGN - 1);
	uint64_t elen = mfd__fimg_end_len(f->c.h.nblocks);
	uint8_t *buf = ret ? NULL : calloc(1, elen);
	if (!ret && !buf)
		ret = -ENOMEM;
	if (!ret) {
		mfd__fimg_end_encode(&e, buf);
		ret = mfd__fio_all(f->c.fd, true, buf, elen, end_off);
	}
	free(buf);
	if (!ret && fdatasync(f->c.fd) < 0)
		ret = -errno;
	if (!ret) {
		mfd__fimg_header_set_end(f->hdr, end_off);
		ret = mfd__fio_all(f->c.fd, true, f->hdr, f->c.h.header_len, 0);
	}
	if (!ret && fdatasync(f->c.fd) < 0)
		ret = -errno;
	return ret ? mfd__file_fail_errno(ss, ret, "write end record",
					  f->c.path)
		   : 0;
}

static int save_run(struct fsave *f)
{
	struct mfd__session *ss = f->c.ss;
	uint32_t round = 0;
	uint64_t bytes, pending, dev_len = 0;
	uint64_t dev_digest = mfd__fimg_digest64(NULL, 0);
	int ret = save_setup(f);
	if (!ret)
		ret = save_precopy(f, &round);
	if (!ret) {
		STAT_SET(ss->st.phase, MFD_PHASE_SWITCHOVER);
		ret = save_stop(f);
	}
	uint64_t t_stop = mfd__now_ns();
	if (!ret)
		ret = save_sync(f, &pending);
	if (!ret)
		ret = save_round(f, ++round, &bytes);
	STAT_SET(ss->st.down_pages_ns, mfd__now_ns() - t_stop);
	STAT_SET(ss->st.transfer_ns, mfd__now_ns() - ss->t_start);
	if (!ret && f->c.devs->n)
		ret = save_devices(f, &dev_len, &dev_digest);
	if (!ret)
		ret = save_end(f, dev_len, dev_digest);
	STAT_SET(ss->st.downtime_ns, mfd__now_ns() - t_stop);
	return ret;
}

int mfd__file_save(struct mfd__session *ss, const mfd_source_hooks *hooks,
		   struct mfd__devset *devs, uint64_t *dev_bytes,
		   const char *path)
{
	struct fsave *f = calloc(1, sizeof(*f));
	if (!f)
		return mfd__session_fail(ss, -ENOMEM);
	fside_init(&f->c, ss, devs, dev_bytes, path);
	f->hooks = hooks;
	int ret = save_run(f);
	if (f->tracking)
		mfd__tracker_stop(&f->tracker);
	if (ret) {
		ret = mfd__session_fail(ss, ret);
		/* Failed notifier: devices back to RUNNING before the vCPUs;
		 * the guest runs on here. */
		if (devs->n)
			mfd__devset_notify(devs, MFD_MIG_FAILED);
		if (f->stopped && hooks->resume(hooks->opaque) < 0)
			mfd__err("resume hook failed after a failed save");
		mfd__err("save to %s failed: %s", path, mfd_strerror(ret));
	} else if (devs->n) {
		mfd__devset_notify(devs, MFD_MIG_COMPLETED);
	}
	fside_close(&f->c);
	if (f->pass.zeros)
		munmap(f->pass.zeros, f->pass.zeros_len);
	free(f->hdr);
	free(f);
	return ret;
}

/* ------------------------------------------------------------------ */
/* Load                                                               */
/* ------------------------------------------------------------------ */

static int refused(struct mfd__fload *f, int err)
{
	return mfd__session_fail_why(f->c.ss, err, "file %s refused: %s",
				     f->c.path, f->why);
}

/* Reads len bytes at off into a new buffer (*out, freed by the caller). */
static int read_meta(struct mfd__fload *f, uint64_t off, uint64_t len,
		     uint8_t **out)
{
	*out = malloc(len ? len : 1);
	if (!*out)
		return -ENOMEM;
	int ret = mfd__fio_all(f->c.fd, false, *out, len, off);
	if (ret == -ENODATA) {
		snprintf(f->why, sizeof(f->why),
			 "truncated: %llu bytes at %llu, the file has %llu",
			 (unsigned long long)len, (unsigned long long)off,
			 (unsigned long long)f->size);
		return refused(f, MFD_ETRUNCATED);
	}
	return ret ? mfd__file_fail_errno(f->c.ss, ret, "read", f->c.path) : 0;
}

static int load_header(struct mfd__fload *f)
{
	struct mfd__session *ss = f->c.ss;
	uint64_t len = mfd__fimg_header_len(MFD__FIMG_MAX_BLOCKS);
	if (len > f->size)
		len = f->size;
	uint8_t *buf;
	int ret = read_meta(f, 0, len, &buf);
	if (!ret && (ret = mfd__fimg_header_decode(buf, len, f->size, &f->c.h,
						   f->why, sizeof(f->why))))
		ret = refused(f, ret);
	free(buf);
	if (ret)
		return ret;
	if (f->c.h.nblocks != ss->nblocks) {
		snprintf(f->why, sizeof(f->why),
			 "another layout: %u blocks in the file, %u registered",
			 f->c.h.nblocks, ss->nblocks);
		return refused(f, MFD_ESETUP);
	}
	for (unsigned i = 0; i < ss->nblocks; i++) {
		const struct mfd__fimg_block *b = &f->c.h.blocks[i];
		const struct mfd__ramblock *rb = &ss->blocks[i];
		if (strcmp(b->name, rb->name) || b->size != rb->size ||
		    b->page_size != rb->page_size) {
			snprintf(f->why, sizeof(f->why),
				 "another layout: block %u is %s of %llu bytes "
				 "(pages of %u) in the file, %s of %llu (%u) "
				 "registered",
				 i, b->name, (unsigned long long)b->size,
				 b->page_size, rb->name,
				 (unsigned long long)rb->size, rb->page_size);
			return refused(f, MFD_ESETUP);
		}
	}
	if (!f->c.h.end_off) {
		snprintf(f->why, sizeof(f->why),
			 "the save did not complete (no end record)");
		return refused(f, MFD_ETRUNCATED);
	}
	uint64_t elen = mfd__fimg_end_len(f->c.h.nblocks);
	if ((ret = read_meta(f, f->c.h.end_off, elen, &buf)))
		return ret;
	if ((ret = mfd__fimg_end_decode(buf, elen, &f->c.h, &f->e, f->why,
					sizeof(f->why))))
		ret = refused(f, ret);
	free(buf);
	if (!ret && f->e.ndevices != f->c.devs->n) {
		snprintf(f->why, sizeof(f->why),
			 "another layout: %u devices in the file, %u "
			 "registered",
			 f->e.ndevices, f->c.devs->n);
		ret = refused(f, MFD_EDEVICE);
	}
	return ret;
}

static int load_bitmaps(struct mfd__fload *f)
{
	for (unsigned i = 0; i < f->c.h.nblocks; i++) {
		const struct mfd__ramblock *rb = &f->c.ss->blocks[i];
		uint64_t len = mfd__fimg_bitmap_len(rb->npages), present;
		uint8_t *buf;
		int ret = read_meta(f, f->c.h.blocks[i].bitmap_off, len, &buf);
		if (ret)
			return ret;
		if ((ret = mfd__fimg_bitmap_check(buf, rb->npages, &present,
						  f->why, sizeof(f->why))))
			;
		else if (mfd__fimg_digest64(buf, len) !=
				 f->e.blocks[i].bitmap ||
			 present != f->e.blocks[i].present) {
			snprintf(f->why, sizeof(f->why),
				 "block %s: bitmap digest mismatch (bitmap "
				 "corrupt)",
				 rb->name);
			ret = MFD_EVERIFY;
		} else if (!(ret = mfd__bitmap_init(&f->c.present[i],
						    rb->npages))) {
			for (uint64_t w = 0; w < f->c.present[i].nwords; w++)
				f->c.present[i].words[w] =
					mfd__get_le64(buf + w * 8);
		}
		free(buf);
		if (ret)
			return ret == -ENOMEM ? ret : refused(f, ret);
	}
	return 0;
}

/* Every page, in batches of packet-pages consecutive pages. */
static void batches_all(struct mfd__fbatches *bs, struct mfd__session *ss)
{
	uint64_t used = 0, pp = ss->cfg.packet_pages;
	bs->n = 0;
	for (unsigned i = 0; i < ss->nblocks; i++) {
		const struct mfd__ramblock *rb = &ss->blocks[i];
		for (uint64_t pg = 0; pg < rb->npages; pg += pp) {
			uint64_t n =
				rb->npages - pg < pp ? rb->npages - pg : pp;
			bs->b[bs->n++] = (struct mfd__fbatch){
				.block = i,
				.n = (uint32_t)n,
				.offsets = bs->offs + used,
			};
			bs->offs[used] = pg << rb->page_shift;
			used += n;
		}
	}
}

/* The restore's reading pass over every page present: all batches,
 * the image's descriptors and bitmaps. */
struct mfd__fpass mfd__fload_read_pass(struct mfd__fload *f)
{
	struct mfd__session *ss = f->c.ss;
	batches_all(&f->c.bs, ss);
	return (struct mfd__fpass){ .ss = ss,
				    .fd = f->c.dfd,
				    .mfd = f->c.fd,
				    .present = f->c.present,
				    .h = &f->c.h,
				    .path = f->c.path,
				    /* Reads on tmpfs: pread in the reader's
				     * own thread (mfd__fio_ring_pays). */
				    .uring = ss->cfg.io_engine ==
						     MFD__IO_URING &&
					     mfd__fio_ring_pays(f->c.dfd),
				    .b = f->c.bs.b,
				    .nb = f->c.bs.n };
}

static int load_pages(struct mfd__fload *f)
{
	struct mfd__session *ss = f->c.ss;
	int ret = mfd__fbatches_alloc(&f->c.bs, ss);
	if (!ret)
		ret = mfd__session_digests_alloc(ss);
	if (ret)
		return mfd__session_fail(ss, ret);
	struct mfd__fpass p = mfd__fload_read_pass(f);
	ret = mfd__fpass_run(&p, false);
	if (ret)
		return ret;
	uint64_t t0 = mfd__now_ns();
	uint8_t(*dig)[MFD__DIGEST_SIZE] = calloc(ss->nblocks, sizeof(*dig));
	if (!dig)
		return mfd__session_fail(ss, -ENOMEM);
	mfd__session_digests(ss, dig);
	for (unsigned i = 0; i < ss->nblocks && !ret; i++)
		if (memcmp(dig[i], f->e.blocks[i].ram, MFD__DIGEST_SIZE)) {
			snprintf(f->why, sizeof(f->why),
				 "block %s: RAM digest mismatch (page area "
				 "corrupt)",
				 ss->blocks[i].name);
			ret = refused(f, MFD_EVERIFY);
		}
	free(dig);
	STAT_SET(ss->st.verify_ns, mfd__now_ns() - t0);
	return ret;
}

/* The device state, checked against its digest before any device sees a
 * byte; then the records, in order, to their devices (RESUMING, then
 * STOP). */
int mfd__fload_devices(struct mfd__fload *f)
{
	if (!f->c.devs->n)
		return 0;
	uint8_t *buf;
	uint64_t len = f->e.dev_len, off = 0;
	int ret = read_meta(f, f->c.h.dev_off, len, &buf);
	if (ret)
		return ret;
	if (mfd__fimg_digest64(buf, len) != f->e.dev_digest) {
		snprintf(f->why, sizeof(f->why),
			 "device state digest mismatch (device state corrupt)");
		ret = refused(f, MFD_EVERIFY);
	}
	if (!ret && (ret = mfd__devset_vm_event(f->c.devs, MFD_VM_BEFORE_LOAD)))
		ret = mfd__session_fail(f->c.ss, ret);
	for (unsigned i = 0; i < f->c.devs->n && !ret; i++) {
		struct mfd__dev *d = &f->c.devs->devs[i];
		struct mfd__fimg_dev dr;
		if ((ret = mfd__fimg_dev_decode(buf + off, len - off, &dr,
						f->why, sizeof(f->why)))) {
			ret = refused(f, ret);
			break;
		}
		if (dr.index != i || strcmp(dr.name, d->name)) {
			snprintf(f->why, sizeof(f->why),
				 "another layout: device %u is %s in the file, "
				 "%s registered",
				 dr.index, dr.name, d->name);
			ret = refused(f, MFD_EDEVICE);
			break;
		}
		if (dr.len &&
		    (ret = d->ops.load(d->opaque, buf + off + MFD__FIMG_DEV_REC,
				       dr.len)) < 0) {
			ret = mfd__session_fail_why(
				f->c.ss, MFD_EDEVICE,
				"device %s: load failed: %d", d->name, ret);
			break;
		}
		ret = 0;
		STAT_ADD(*f->c.dev_bytes, dr.len);
		off += mfd__fimg_dev_span(dr.len);
	}
	free(buf);
	if (!ret && (ret = mfd__devset_vm_event(f->c.devs, MFD_VM_AFTER_LOAD)))
		ret = mfd__session_fail(f->c.ss, ret);
	return ret;
}

static int load_run(struct mfd__fload *f)
{
	struct mfd__session *ss = f->c.ss;
	f->c.fd = open(f->c.path, O_RDONLY | O_CLOEXEC);
	if (f->c.fd < 0)
		return mfd__file_fail_errno(ss, -errno, "open", f->c.path);
	struct stat st;
	if (fstat(f->c.fd, &st) < 0)
		return mfd__file_fail_errno(ss, -errno, "stat", f->c.path);
	f->size = (uint64_t)st.st_size;
	int ret = load_header(f);
	if (!ret)
		ret = open_direct(ss, f->c.path, O_RDONLY, f->c.fd, &f->c.dfd);
	/* Buffered: the readers read the page areas front to back, so the
	 * kernel may read ahead twice as far (a hint; 2 GiB mix image, cold,
	 * on ext4: 1,877-2,628 MB/s with it against 1,377-2,463 without,
	 * docs/benchmarks.md). */
	if (!ret && !ss->cfg.direct_io)
		(void)posix_fadvise(f->c.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	if (!ret)
		ret = load_bitmaps(f);
	if (!ret && f->lazy)
		return mfd__flazy_run(f);
	STAT_SET(ss->st.setup_ns, mfd__now_ns() - ss->t_start);
	STAT_SET(ss->st.phase, MFD_PHASE_PRECOPY);
	if (!ret)
		ret = load_pages(f);
	STAT_SET(ss->st.transfer_ns, mfd__now_ns() - ss->t_start);
	if (!ret) {
		STAT_SET(ss->st.phase, MFD_PHASE_SWITCHOVER);
		ret = mfd__fload_devices(f);
	}
	/* Everything is in place and verified: the guest may run. */
	if (!ret && f->hooks->loaded && f->hooks->loaded(f->hooks->opaque) < 0)
		ret = mfd__session_fail_why(ss, MFD_EHOOK,
					    "loaded hook failed");
	return ret;
}

int mfd__file_load(struct mfd__session *ss, const mfd_dest_hooks *hooks,
		   struct mfd__devset *devs, uint64_t *dev_bytes,
		   const char *path, const struct mfd__file_lazy *lazy)
{
	struct mfd__fload *f = calloc(1, sizeof(*f));
	if (!f)
		return mfd__session_fail(ss, -ENOMEM);
	fside_init(&f->c, ss, devs, dev_bytes, path);
	f->hooks = hooks;
	f->lazy = ss->cfg.lazy_restore ? lazy : NULL;
	int ret = load_run(f);
	if (ret) {
		ret = mfd__session_fail(ss, ret);
		if (f->ran) {
			/* The guest ran on memory that is incomplete or not
			 * what was saved: as after a failed post-copy. */
			mfd__err("lazy restore: the guest's memory is "
				 "incomplete or corrupt: stop the guest");
			ret = MFD_ELOSTGUEST;
		}
		if (devs->n)
			mfd__devset_notify(devs, MFD_MIG_FAILED);
		if (hooks->failed)
			hooks->failed(hooks->opaque, ret);
	}
	fside_close(&f->c);
	free(f);
	return ret;
}
