/* SPDX-License-Identifier: MIT */
/*
 * Migration to a file and back (file:PATH, docs/protocol.md 11): round
 * trips paused and live, holes for zero pages, every corruption refused
 * with its reason, a full disk and a file system without O_DIRECT.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "devstate/simdev.h"
#include "multifd/common/le.h"
#include "multifd/fileimg.h"
#include "multifd/fileio.h"
#include "multifd/multifd.h"
#include "testvm.h"

#define MiB  (1ULL << 20)
#define PAGE 4096ULL

static uint64_t seed;
static mfd_stats last_dest_stats; /* of the last restore_kv() */
static char dir[256];
static const char *engine; /* io-engine: sockets (pwrite/pread) or uring */

/* A guest: two blocks (4 KiB and 64 KiB pages), a simulated device. */
struct guest {
	uint8_t *ram[2];
	uint64_t size[2];
	uint32_t page[2];
	struct mfd_simdev *dev;
	/* hook records */
	int stopped, resumed, loaded, failed, failed_err;
	/* live writer: writes block 0 through alias, a second mapping of
	 * the same memory (as a vCPU writes through its own page tables):
	 * the library reads ram[0] concurrently by design, and TSan, which
	 * tracks addresses, sees no race it would report with a lost stack */
	uint8_t *alias;
	pthread_t writer;
	int run_writer, park, parked;
	uint64_t writes, writes_at_stop;
	uint64_t rng;
	mfd_source *src;
	int (*sync_dirty)(void *opaque, unsigned block, uint64_t *bitmap,
			  uint64_t npages); /* the source's hook, if set */
	int syncs;
	/* Lazy restore: called by the loaded hook (the guest runs). */
	void (*on_loaded)(struct guest *g);
	void *lazy; /* struct lazy_guest */
};

static const char *const names[2] = { "pc.ram", "vga.vram" };

static void guest_init(struct guest *g, bool fill, bool with_dev)
{
	memset(g, 0, sizeof(*g));
	g->size[0] = 24 * MiB + 12 * PAGE; /* not a whole bitmap page */
	g->size[1] = 4 * MiB;
	g->page[0] = PAGE;
	g->page[1] = 65536;
	for (int b = 0; b < 2; b++) {
		g->ram[b] = tvm_map(g->size[b]);
		if (fill)
			tvm_fill_random(g->ram[b], g->size[b], seed + b);
	}
	if (fill) {
		/* Zero pages: a 2 MiB run, and every 7th page of the rest. */
		memset(g->ram[0] + 4 * MiB, 0, 2 * MiB);
		for (uint64_t off = 8 * MiB; off < g->size[0]; off += 7 * PAGE)
			memset(g->ram[0] + off, 0, PAGE);
		memset(g->ram[1] + MiB, 0, 65536);
	}
	if (with_dev) {
		struct mfd_simdev_cfg c = { .state_size = 3 * MiB + 8,
					    .unit_size = 4096,
					    .seed = seed };
		assert_int_equal(mfd_simdev_new(&g->dev, &c), 0);
		if (fill)
			mfd_simdev_touch(g->dev, 100);
	}
}

/* Block 0 moves to shared memory mapped twice: ram[0] and alias. */
static void guest_make_alias(struct guest *g)
{
	int fd = memfd_create("guest", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)g->size[0]), 0);
	uint8_t *a = mmap(NULL, g->size[0], PROT_READ | PROT_WRITE, MAP_SHARED,
			  fd, 0);
	uint8_t *b = mmap(NULL, g->size[0], PROT_READ | PROT_WRITE, MAP_SHARED,
			  fd, 0);
	close(fd);
	assert_true(a != MAP_FAILED && b != MAP_FAILED);
	memcpy(a, g->ram[0], g->size[0]);
	tvm_unmap(g->ram[0], g->size[0]);
	g->ram[0] = a;
	g->alias = b;
}

static void guest_free(struct guest *g)
{
	if (g->alias)
		munmap(g->alias, g->size[0]);
	for (int b = 0; b < 2; b++)
		tvm_unmap(g->ram[b], g->size[b]);
	mfd_simdev_free(g->dev);
}

static void *writer_main(void *arg)
{
	struct guest *g = arg;
	while (__atomic_load_n(&g->run_writer, __ATOMIC_ACQUIRE)) {
		if (__atomic_load_n(&g->park, __ATOMIC_ACQUIRE)) {
			__atomic_store_n(&g->parked, 1, __ATOMIC_RELEASE);
			struct timespec ts = { 0, 100000 };
			nanosleep(&ts, NULL);
			continue;
		}
		__atomic_store_n(&g->parked, 0, __ATOMIC_RELEASE);
		uint64_t r = tvm_rand(&g->rng);
		uint64_t pg = (r >> 8) % (g->size[0] / PAGE);
		uint8_t *p = g->alias + pg * PAGE;
		/* Some pages become zero: their earlier copy must turn into
		 * a hole again. */
		if ((r & 7) == 0)
			tvm_guest_write_zero(p, PAGE);
		else
			tvm_guest_write(p + (r & 0xff) * 8, &r, sizeof(r));
		mfd_source_mark_dirty(g->src, 0, pg * PAGE, PAGE);
		__atomic_fetch_add(&g->writes, 1, __ATOMIC_RELAXED);
		if ((g->writes & 63) == 0) {
			struct timespec ts = { 0, 50000 };
			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

static int hook_stop(void *opaque)
{
	struct guest *g = opaque;
	g->stopped++;
	__atomic_store_n(&g->park, 1, __ATOMIC_RELEASE);
	if (g->run_writer)
		while (!__atomic_load_n(&g->parked, __ATOMIC_ACQUIRE))
			sched_yield();
	g->writes_at_stop = __atomic_load_n(&g->writes, __ATOMIC_RELAXED);
	return 0;
}

static int hook_resume(void *opaque)
{
	struct guest *g = opaque;
	g->resumed++;
	__atomic_store_n(&g->park, 0, __ATOMIC_RELEASE);
	return 0;
}

static int hook_loaded(void *opaque)
{
	struct guest *g = opaque;
	g->loaded++;
	if (g->on_loaded)
		g->on_loaded(g);
	return 0;
}

static void hook_failed(void *opaque, int err)
{
	struct guest *g = opaque;
	g->failed++;
	g->failed_err = err;
}

static mfd_config *config(const char *const *kv)
{
	mfd_config *cfg;
	assert_int_equal(mfd_config_new(&cfg), 0);
	assert_int_equal(mfd_config_set(cfg, "channels", "3"), 0);
	assert_int_equal(mfd_config_set(cfg, "io-engine", engine), 0);
	for (; kv && kv[0]; kv += 2)
		assert_int_equal(mfd_config_set(cfg, kv[0], kv[1]), 0);
	return cfg;
}

static void file_uri(char *uri, size_t len, const char *path)
{
	snprintf(uri, len, "file:%s", path);
}

/* Saves g to path; returns what mfd_source_wait() returned and the error
 * text in why. live: the writer runs until the stop hook. */
static int save(struct guest *g, const char *path, const char *const *kv,
		bool live, char *why, size_t whylen)
{
	if (live && !g->alias)
		guest_make_alias(g);
	mfd_config *cfg = config(kv);
	mfd_source_hooks h = { .opaque = g,
			       .stop = hook_stop,
			       .resume = hook_resume,
			       .sync_dirty = g->sync_dirty };
	mfd_source *s;
	assert_int_equal(mfd_source_new(&s, cfg, &h), 0);
	for (int b = 0; b < 2; b++)
		assert_int_equal(mfd_source_add_block(s, names[b], g->ram[b],
						      g->size[b], g->page[b]),
				 0);
	if (g->dev)
		assert_int_equal(mfd_source_add_device(s, "simdev",
						       mfd_simdev_ops(g->dev),
						       g->dev),
				 0);
	g->src = s;
	if (live) {
		g->rng = seed | 1;
		g->run_writer = 1;
		assert_int_equal(
			pthread_create(&g->writer, NULL, writer_main, g), 0);
		/* The guest runs before the save starts. */
		while (__atomic_load_n(&g->writes, __ATOMIC_RELAXED) < 1000)
			sched_yield();
	}
	char uri[300];
	file_uri(uri, sizeof(uri), path);
	int ret = mfd_source_migrate(s, uri);
	snprintf(why, whylen, "%s", mfd_source_error_text(s));
	mfd_stats st;
	assert_int_equal(mfd_source_get_stats(s, &st, sizeof(st)), 0);
	if (!ret) {
		assert_int_equal(st.phase, MFD_PHASE_COMPLETED);
		assert_true(st.pages >= st.ram_bytes / PAGE / 16);
	}
	if (live && !ret)
		assert_true(st.round >=
			    1); /* pre-copy rounds, then the final */
	if (live && ret) {
		/* A failed save: the guest keeps running. */
		uint64_t w = __atomic_load_n(&g->writes, __ATOMIC_RELAXED);
		while (__atomic_load_n(&g->writes, __ATOMIC_RELAXED) < w + 100)
			sched_yield();
	}
	if (live) {
		__atomic_store_n(&g->park, 1, __ATOMIC_RELEASE);
		__atomic_store_n(&g->run_writer, 0, __ATOMIC_RELEASE);
		pthread_join(g->writer, NULL);
	}
	mfd_source_free(s);
	mfd_config_free(cfg);
	g->src = NULL;
	return ret;
}

/* Restores path into the fresh guest g (same blocks); the wait's result,
 * the error text in why. */
static int restore_kv(struct guest *g, const char *path, const char *const *kv,
		      char *why, size_t whylen)
{
	mfd_config *cfg = config(kv);
	mfd_dest_hooks h = { .opaque = g,
			     .loaded = hook_loaded,
			     .failed = hook_failed };
	mfd_dest *d;
	assert_int_equal(mfd_dest_new(&d, cfg, &h), 0);
	for (int b = 0; b < 2; b++)
		assert_int_equal(mfd_dest_add_block(d, names[b], g->ram[b],
						    g->size[b], g->page[b]),
				 0);
	if (g->dev)
		assert_int_equal(mfd_dest_add_device(d, "simdev",
						     mfd_simdev_ops(g->dev),
						     g->dev),
				 0);
	char uri[300], got[300];
	file_uri(uri, sizeof(uri), path);
	int ret = mfd_dest_start(d, uri);
	if (!ret) {
		assert_int_equal(mfd_dest_get_uri(d, got, sizeof(got)), 0);
		assert_string_equal(got, uri);
		ret = mfd_dest_wait(d);
	}
	snprintf(why, whylen, "%s", mfd_dest_error_text(d));
	mfd_stats st;
	assert_int_equal(mfd_dest_get_stats(d, &st, sizeof(st)), 0);
	assert_int_equal(st.phase,
			 ret ? MFD_PHASE_FAILED : MFD_PHASE_COMPLETED);
	last_dest_stats = st;
	mfd_dest_free(d);
	mfd_config_free(cfg);
	return ret;
}

static int restore_into(struct guest *g, const char *path, char *why,
			size_t whylen)
{
	return restore_kv(g, path, NULL, why, whylen);
}

static void assert_same(struct guest *a, struct guest *b)
{
	for (int i = 0; i < 2; i++)
		assert_memory_equal(a->ram[i], b->ram[i], a->size[i]);
	if (a->dev) {
		assert_true(mfd_simdev_digest(a->dev) ==
			    mfd_simdev_digest(b->dev));
		assert_int_equal(mfd_simdev_check(b->dev), 0);
	}
}

static void path_of(char *path, size_t len, const char *name)
{
	snprintf(path, len, "%s/%s", dir, name);
}

/* Save and restore in directory d: the same guest comes back. */
static void roundtrip_in(const char *d, const char *const *kv, bool live)
{
	struct guest g, r;
	char path[400], why[1024];
	snprintf(path, sizeof(path), "%s/%s", d,
		 live ? "live.img" : "paused.img");
	guest_init(&g, true, true);
	assert_int_equal(save(&g, path, kv, live, why, sizeof(why)), 0);
	assert_int_equal(g.stopped, 1);
	assert_int_equal(g.resumed, 0);
	if (live) /* the guest wrote while the file was being written */
		assert_true(g.writes_at_stop > 1000);
	guest_init(&r, false, true);
	assert_int_equal(restore_kv(&r, path, kv, why, sizeof(why)), 0);
	assert_int_equal(r.loaded, 1);
	assert_int_equal(r.failed, 0);
	/* The file holds the guest as it was at the stop (the writer has
	 * been parked since). */
	assert_same(&g, &r);
	/* Bounded: the page areas never grow, whatever was rewritten. */
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	uint64_t ram = g.size[0] + g.size[1];
	assert_true((uint64_t)st.st_size <= ram + 4 * MiB + 3 * MiB + 8192);
	guest_free(&g);
	guest_free(&r);
	unlink(path);
}

static void roundtrip(const char *const *kv, bool live)
{
	roundtrip_in(dir, kv, live);
}

static void test_roundtrip_paused(void **state)
{
	(void)state;
	roundtrip(NULL, false);
}

static void test_roundtrip_one_channel(void **state)
{
	(void)state;
	const char *const kv[] = { "channels", "1", "packet-pages", "7", NULL };
	roundtrip(kv, false);
}

static void test_roundtrip_live(void **state)
{
	(void)state;
	/* Several rounds: a downtime limit no round meets, then max-rounds. */
	const char *const kv[] = { "max-rounds", "5", "downtime-limit", "1",
				   NULL };
	roundtrip(kv, true);
}

static void read_hdr(int fd, struct mfd__fimg_hdr *h, struct mfd__fimg_end *e);

/* Bytes of g's zero pages in runs of at least min pages: the holes the
 * rule leaves. */
static uint64_t hole_bytes_of(const struct guest *g, uint64_t min)
{
	uint64_t bytes = 0;
	for (int b = 0; b < 2; b++) {
		uint64_t ps = g->page[b], n = g->size[b] / ps, run = 0;
		for (uint64_t pg = 0; pg <= n; pg++) {
			bool z = false;
			if (pg < n) {
				z = true;
				for (uint64_t k = 0; k < ps && z; k++)
					z = g->ram[b][pg * ps + k] == 0;
			}
			if (z) {
				run++;
				continue;
			}
			if (run >= min)
				bytes += run * ps;
			run = 0;
		}
	}
	return bytes;
}

/* A run of zero pages of a block: in the file a hole, or data (zeros). */
struct zrun {
	int block;
	uint64_t first, n; /* pages */
};

/* Round 0's end (the first dirty sync of block 0): pages that were
 * written as data become zero and dirty, so the final round must punch
 * the long run out and rewrite the short one as zeros. */
static const struct zrun rezeroed[] = { { 0, 300, 20 }, { 0, 700, 15 } };

static int hook_sync_zero(void *opaque, unsigned block, uint64_t *bitmap,
			  uint64_t npages)
{
	struct guest *g = opaque;
	(void)npages;
	if (block != 0 || g->syncs++)
		return 0;
	for (size_t i = 0; i < sizeof(rezeroed) / sizeof(rezeroed[0]); i++) {
		const struct zrun *z = &rezeroed[i];
		memset(g->ram[0] + z->first * PAGE, 0, z->n * PAGE);
		for (uint64_t pg = z->first; pg < z->first + z->n; pg++)
			bitmap[pg / 64] |= 1ULL << (pg % 64);
	}
	return 0;
}

/*
 * Zero pages in runs of at least file-hole-min are holes (SEEK_HOLE finds
 * them, exactly the run), shorter runs are data that reads back as zeros;
 * the restore is byte-identical either way. Batches of 64 pages, so runs
 * lie inside one batch and across two (a run is measured in memory, not
 * per batch); some runs become zero only after round 0 (punched, or
 * rewritten as zeros). Block 0, pages: the 2 MiB run at 4 MiB (512), one
 * page of every 7 past 8 MiB (1), and the runs below; block 1 (64 KiB
 * pages): page 16 (1).
 */
static void zero_holes(const char *min)
{
	static const struct zrun runs[] = {
		{ 0, 1024, 512 }, { 0, 100, 16 }, /* inside a batch */
		{ 0, 200, 15 },	  { 0, 440, 16 }, /* across 448 */
		{ 0, 632, 15 },			  /* across 640 */
		{ 0, 300, 20 },	  { 0, 700, 15 }, /* rezeroed */
		{ 0, 2048, 1 },	  { 0, 2055, 1 }, { 1, 16, 1 },
	};
	const char *const kv[] = { "packet-pages", "64", "file-hole-min", min,
				   NULL };
	uint64_t hole_min = strtoull(min, NULL, 10);
	struct guest g, r;
	char path[300], why[1024];
	path_of(path, sizeof(path), "holes.img");
	guest_init(&g, true, false);
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++)
		if (runs[i].first < 1024 && runs[i].first != 300 &&
		    runs[i].first != 700)
			memset(g.ram[0] + runs[i].first * PAGE, 0,
			       runs[i].n * PAGE);
	g.sync_dirty = hook_sync_zero;
	assert_int_equal(save(&g, path, kv, false, why, sizeof(why)), 0);
	assert_int_equal(g.syncs, 2); /* after round 0, at the stop */
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct mfd__fimg_hdr h;
	read_hdr(fd, &h, NULL);
	static uint8_t buf[2 * MiB];
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		const struct zrun *z = &runs[i];
		uint64_t ps = g.page[z->block];
		off_t off =
			(off_t)(h.blocks[z->block].pages_off + z->first * ps);
		off_t end = off + (off_t)(z->n * ps);
		print_message("block %d pages %" PRIu64 "+%" PRIu64 "\n",
			      z->block, z->first, z->n);
		/* The pages around every run are data (random). */
		assert_int_equal(lseek(fd, off - (off_t)ps, SEEK_DATA),
				 off - (off_t)ps);
		if (z->n >= hole_min) {
			assert_int_equal(lseek(fd, off - (off_t)ps, SEEK_HOLE),
					 off);
			assert_int_equal(lseek(fd, off, SEEK_DATA), end);
			continue;
		}
		assert_int_equal(lseek(fd, off - (off_t)ps, SEEK_HOLE) >= end,
				 true);
		assert_int_equal(pread(fd, buf, (size_t)(end - off), off),
				 end - off);
		for (off_t k = 0; k < end - off; k++)
			assert_int_equal(buf[k], 0);
	}
	/* Allocated: all but the holes (and the padding of the page
	 * areas), with the metadata. */
	uint64_t hole_bytes = hole_bytes_of(&g, hole_min);
	assert_true(hole_bytes >= 2 * MiB + 36 * PAGE);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 <=
		    g.size[0] + g.size[1] - hole_bytes + 64 * 1024);
	close(fd);
	guest_init(&r, false, false);
	assert_int_equal(restore_kv(&r, path, kv, why, sizeof(why)), 0);
	assert_same(&g, &r);
	/* The restore read every page that is data, zeros included. */
	assert_int_equal(last_dest_stats.wire_bytes,
			 g.size[0] + g.size[1] - hole_bytes);
	guest_free(&g);
	guest_free(&r);
	unlink(path);
}

static void test_zero_holes(void **state)
{
	(void)state;
	zero_holes("16"); /* the default */
}

/* 1: every zero page is a hole (the rule before file-hole-min). */
static void test_zero_holes_every_page(void **state)
{
	(void)state;
	zero_holes("1");
}

/* ---- corruption: a good image, damaged one way at a time ---- */

static char good[300];

static void copy_file(const char *from, const char *to)
{
	int in = open(from, O_RDONLY), out;
	assert_true(in >= 0);
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(out >= 0);
	struct stat st;
	assert_int_equal(fstat(in, &st), 0);
	assert_int_equal(ftruncate(out, st.st_size), 0);
	/* Data only: the holes stay holes. */
	off_t pos = 0;
	static uint8_t buf[1 << 20];
	while ((pos = lseek(in, pos, SEEK_DATA)) >= 0) {
		off_t end = lseek(in, pos, SEEK_HOLE);
		while (pos < end) {
			size_t n = (size_t)(end - pos) < sizeof(buf)
					   ? (size_t)(end - pos)
					   : sizeof(buf);
			assert_int_equal(pread(in, buf, n, pos), (ssize_t)n);
			assert_int_equal(pwrite(out, buf, n, pos), (ssize_t)n);
			pos += (off_t)n;
		}
	}
	close(in);
	close(out);
}

static void read_hdr(int fd, struct mfd__fimg_hdr *h, struct mfd__fimg_end *e)
{
	uint8_t buf[8192];
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(pread(fd, buf, 4096, 0), 4096);
	assert_int_equal(mfd__fimg_header_decode(
				 buf, 4096, (uint64_t)st.st_size, h, NULL, 0),
			 0);
	if (!e)
		return;
	uint64_t elen = mfd__fimg_end_len(h->nblocks);
	assert_int_equal(pread(fd, buf, elen, (off_t)h->end_off),
			 (ssize_t)elen);
	assert_int_equal(mfd__fimg_end_decode(buf, elen, h, e, NULL, 0), 0);
}

static void flip(int fd, uint64_t off, uint8_t mask)
{
	uint8_t b;
	assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
	b ^= mask;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
}

enum damage {
	D_MAGIC,
	D_VERSION,
	D_HEADER_BYTE,
	D_INCOMPLETE,
	D_TRUNC_END,
	D_TRUNC_PAGES,
	D_BITMAP_BIT,
	D_BITMAP_PAST,
	D_PAGE_BYTE,
	D_END_BYTE,
	D_END_MAGIC,
	D_DIGEST_RESIGNED,
	D_DEVICE_BYTE,
};

static void damage(const char *path, enum damage how)
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	struct mfd__fimg_hdr h;
	struct mfd__fimg_end e;
	read_hdr(fd, &h, &e);
	uint8_t buf[8192];
	uint64_t elen = mfd__fimg_end_len(h.nblocks);
	switch (how) {
	case D_MAGIC:
		flip(fd, 0, 0x20);
		break;
	case D_VERSION:
		flip(fd, 8, 0x02);
		break;
	case D_HEADER_BYTE: /* the block's size */
		flip(fd, MFD__FIMG_FIXED + 256 + 2, 0x01);
		break;
	case D_INCOMPLETE: /* a save that never wrote its end */
		assert_int_equal(pread(fd, buf, h.header_len, 0),
				 (ssize_t)h.header_len);
		mfd__fimg_header_set_end(buf, 0);
		assert_int_equal(pwrite(fd, buf, h.header_len, 0),
				 (ssize_t)h.header_len);
		break;
	case D_TRUNC_END:
		assert_int_equal(ftruncate(fd, (off_t)(h.end_off + 100)), 0);
		break;
	case D_TRUNC_PAGES:
		assert_int_equal(
			ftruncate(fd, (off_t)(h.blocks[0].pages_off + MiB)), 0);
		break;
	case D_BITMAP_BIT: /* page 0 said absent */
		flip(fd, h.blocks[0].bitmap_off, 0x01);
		break;
	case D_BITMAP_PAST: { /* a bit past block 0's pages */
		uint64_t npages = h.blocks[0].size / PAGE;
		flip(fd, h.blocks[0].bitmap_off + npages / 8 + 8, 0x10);
		break;
	}
	case D_PAGE_BYTE:
		flip(fd, h.blocks[1].pages_off + 3 * 65536 + 77, 0x40);
		break;
	case D_END_BYTE:
		flip(fd, h.end_off + MFD__FIMG_END_FIXED + 3, 0x01);
		break;
	case D_END_MAGIC:
		flip(fd, h.end_off + 1, 0x01);
		break;
	case D_DIGEST_RESIGNED: /* a well-formed end record, wrong digest */
		e.blocks[0].ram[5] ^= 1;
		mfd__fimg_end_encode(&e, buf);
		assert_int_equal(pwrite(fd, buf, elen, (off_t)h.end_off),
				 (ssize_t)elen);
		break;
	case D_DEVICE_BYTE:
		flip(fd, h.dev_off + MFD__FIMG_DEV_REC + 1000, 0x08);
		break;
	}
	close(fd);
}

/* A copy of the good image with damage how, restored with the config
 * kv (NULL: eager): refused with err and reason in the error text; the
 * loaded hook called `loaded` times (a lazy restore that finds a bad page
 * after the guest ran has called it), the failed hook once with err. */
static void refused_with(const char *const *kv, enum damage how, int err,
			 const char *reason, int loaded)
{
	char path[300], why[1024];
	path_of(path, sizeof(path), "bad.img");
	copy_file(good, path);
	damage(path, how);
	struct guest r;
	guest_init(&r, false, true);
	int ret = restore_kv(&r, path, kv, why, sizeof(why));
	if (ret != err || !strstr(why, reason))
		fail_msg("%sdamage %d: got %d (%s), want %d with \"%s\"",
			 kv ? "lazy, " : "", how, ret, why, err, reason);
	assert_int_equal(r.loaded, loaded);
	assert_int_equal(r.failed, 1);
	assert_int_equal(r.failed_err, err);
	guest_free(&r);
	unlink(path);
}

static void expect_refused(enum damage how, int err, const char *reason)
{
	refused_with(NULL, how, err, reason, 0);
}

static int corrupt_setup(void **state)
{
	(void)state;
	struct guest g;
	char why[1024];
	path_of(good, sizeof(good), "good.img");
	guest_init(&g, true, true);
	int ret = save(&g, good, NULL, false, why, sizeof(why));
	guest_free(&g);
	return ret;
}

static int corrupt_teardown(void **state)
{
	(void)state;
	unlink(good);
	return 0;
}

static void test_corrupt_header(void **state)
{
	(void)state;
	expect_refused(D_MAGIC, MFD_EBADMAGIC, "header: bad magic");
	expect_refused(D_VERSION, MFD_EVERSION, "image version 3");
	expect_refused(D_HEADER_BYTE, MFD_EVERIFY, "header: checksum");
	expect_refused(D_INCOMPLETE, MFD_ETRUNCATED, "did not complete");
}

static void test_corrupt_truncated(void **state)
{
	(void)state;
	expect_refused(D_TRUNC_END, MFD_ETRUNCATED, "the end record ends at");
	expect_refused(D_TRUNC_PAGES, MFD_ETRUNCATED, "the end record ends at");
}

static void test_corrupt_bitmap(void **state)
{
	(void)state;
	expect_refused(D_BITMAP_BIT, MFD_EVERIFY, "bitmap digest mismatch");
	expect_refused(D_BITMAP_PAST, MFD_EFLAGS, "past the block");
}

static void test_corrupt_pages(void **state)
{
	(void)state;
	expect_refused(D_PAGE_BYTE, MFD_EVERIFY,
		       "block vga.vram: RAM digest mismatch");
}

static void test_corrupt_digests(void **state)
{
	(void)state;
	expect_refused(D_END_BYTE, MFD_EVERIFY, "end record: checksum");
	expect_refused(D_END_MAGIC, MFD_EBADMAGIC, "end record: bad magic");
	expect_refused(D_DIGEST_RESIGNED, MFD_EVERIFY,
		       "block pc.ram: RAM digest mismatch");
	expect_refused(D_DEVICE_BYTE, MFD_EVERIFY,
		       "device state digest mismatch");
}

/* The image of other blocks or devices than the destination's. */
static void test_other_layout(void **state)
{
	(void)state;
	char why[1024];
	struct guest r;
	guest_init(&r, false, false); /* no device */
	assert_int_equal(restore_into(&r, good, why, sizeof(why)), MFD_EDEVICE);
	assert_non_null(strstr(why, "1 devices in the file, 0 registered"));
	guest_free(&r);
	guest_init(&r, false, true);
	r.size[1] /= 2; /* registers 2 MiB of the 4 */
	assert_int_equal(restore_into(&r, good, why, sizeof(why)), MFD_ESETUP);
	assert_non_null(strstr(why, "another layout: block 1"));
	r.size[1] *= 2;
	assert_int_equal(r.loaded, 0);
	guest_free(&r);
	/* Not an image at all, and a missing file. */
	char path[300];
	path_of(path, sizeof(path), "text.img");
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("not an image\n", f);
	fclose(f);
	guest_init(&r, false, true);
	assert_int_equal(restore_into(&r, path, why, sizeof(why)),
			 MFD_ETRUNCATED);
	unlink(path);
	assert_int_equal(restore_into(&r, path, why, sizeof(why)), -ENOENT);
	guest_free(&r);
}

/* mfd_file_info_read(): what file-info prints. */
static void test_file_info(void **state)
{
	(void)state;
	mfd_file_info *fi;
	char why[256], path[300];
	assert_int_equal(mfd_file_info_read(good, &fi, why, sizeof(why)), 0);
	assert_int_equal(fi->nblocks, 2);
	assert_int_equal(fi->ndevices, 1);
	assert_true(fi->complete);
	assert_string_equal(fi->blocks[1].name, "vga.vram");
	assert_int_equal(fi->blocks[1].page_size, 65536);
	/* vga.vram: 64 pages, one of them zero, but alone: data (a run
	 * shorter than file-hole-min). */
	assert_int_equal(fi->blocks[1].present, 64);
	assert_true(fi->blocks[0].bitmap_ok && fi->blocks[1].bitmap_ok);
	assert_true(fi->allocated < fi->file_size);
	mfd_file_info_free(fi);
	path_of(path, sizeof(path), "bad.img");
	copy_file(good, path);
	damage(path, D_BITMAP_BIT);
	assert_int_equal(mfd_file_info_read(path, &fi, why, sizeof(why)), 0);
	assert_false(fi->blocks[0].bitmap_ok);
	assert_true(fi->blocks[1].bitmap_ok);
	mfd_file_info_free(fi);
	damage(path, D_MAGIC);
	assert_int_equal(mfd_file_info_read(path, &fi, why, sizeof(why)),
			 MFD_EBADMAGIC);
	assert_null(fi);
	assert_non_null(strstr(why, "bad magic"));
	unlink(path);
}

static void test_bad_uri(void **state)
{
	(void)state;
	mfd_config *cfg = config(NULL);
	struct guest g;
	guest_init(&g, false, false);
	mfd_source_hooks sh = { .opaque = &g,
				.stop = hook_stop,
				.resume = hook_resume };
	mfd_source *s;
	assert_int_equal(mfd_source_new(&s, cfg, &sh), 0);
	assert_int_equal(
		mfd_source_add_block(s, "a", g.ram[0], g.size[0], PAGE), 0);
	assert_int_equal(mfd_source_start(s, "file:"), MFD_EURI);
	mfd_source_free(s);
	mfd_dest_hooks dh = { .opaque = &g };
	mfd_dest *d;
	assert_int_equal(mfd_dest_new(&d, cfg, &dh), 0);
	assert_int_equal(mfd_dest_add_block(d, "a", g.ram[0], g.size[0], PAGE),
			 0);
	assert_int_equal(mfd_dest_start(d, "file:"), MFD_EURI);
	mfd_dest_free(d);
	mfd_config_free(cfg);
	guest_free(&g);
}

/* ---- the codec (pure) ---- */

static void layout2(struct mfd__fimg_hdr *h)
{
	memset(h, 0, sizeof(*h));
	h->nblocks = 2;
	strcpy(h->blocks[0].name, "pc.ram");
	h->blocks[0].size = 24 * MiB + 12 * PAGE;
	h->blocks[0].page_size = PAGE;
	strcpy(h->blocks[1].name, "vga.vram");
	h->blocks[1].size = 4 * MiB;
	h->blocks[1].page_size = 65536;
	mfd__fimg_layout(h);
}

/* The layout: header, bitmaps, page areas at 1 MiB boundaries, page N of
 * a block at a fixed offset; the header round-trips. */
static void test_codec_layout(void **state)
{
	(void)state;
	static struct mfd__fimg_hdr h, d;
	layout2(&h);
	assert_int_equal(h.header_len, 4096);
	assert_int_equal(h.blocks[0].bitmap_off, 4096);
	assert_int_equal(h.blocks[1].bitmap_off, 8192);
	assert_int_equal(h.blocks[0].pages_off, MiB);
	/* 24 MiB + 48 KiB rounds up to 25 MiB. */
	assert_int_equal(h.blocks[1].pages_off, MiB + 25 * MiB);
	assert_int_equal(h.dev_off, 30 * MiB);
	uint8_t buf[4096];
	mfd__fimg_header_encode(&h, buf);
	mfd__fimg_header_set_end(buf, h.dev_off + 8192);
	assert_int_equal(mfd__fimg_header_decode(buf, sizeof(buf),
						 h.dev_off + 8192 + 4096, &d,
						 NULL, 0),
			 0);
	assert_int_equal(d.end_off, h.dev_off + 8192);
	assert_string_equal(d.blocks[1].name, "vga.vram");
	assert_int_equal(d.blocks[1].pages_off, h.blocks[1].pages_off);
	/* One byte short of the end record: truncated. */
	char why[256];
	assert_int_equal(mfd__fimg_header_decode(buf, sizeof(buf),
						 h.dev_off + 8192 + 4095, &d,
						 why, sizeof(why)),
			 MFD_ETRUNCATED);
}

/* Any single flipped bit anywhere in the header is refused. */
static void test_codec_header_flips(void **state)
{
	(void)state;
	static struct mfd__fimg_hdr h, d;
	layout2(&h);
	uint8_t buf[4096];
	mfd__fimg_header_encode(&h, buf);
	for (size_t i = 0; i < sizeof(buf); i++) {
		uint8_t mask = (uint8_t)(1u << (i % 8));
		buf[i] ^= mask;
		int ret = mfd__fimg_header_decode(buf, sizeof(buf), 1ULL << 40,
						  &d, NULL, 0);
		if (ret == 0)
			fail_msg("byte %zu flipped: accepted", i);
		buf[i] ^= mask;
	}
	assert_int_equal(mfd__fimg_header_decode(buf, sizeof(buf), 1ULL << 40,
						 &d, NULL, 0),
			 0);
}

/* Bits past the block in the bitmap's padding are refused. */
static void test_codec_bitmap(void **state)
{
	(void)state;
	uint8_t buf[4096] = { 0 };
	uint64_t present;
	assert_int_equal(mfd__fimg_bitmap_len(100), 4096);
	assert_int_equal(mfd__fimg_bitmap_len(4096 * 8 + 1), 8192);
	buf[0] = 0x81;
	buf[12] = 0x0f; /* pages 96..99: the last ones */
	assert_int_equal(mfd__fimg_bitmap_check(buf, 100, &present, NULL, 0),
			 0);
	assert_int_equal(present, 6);
	buf[12] = 0x10; /* page 100 */
	assert_int_equal(mfd__fimg_bitmap_check(buf, 100, &present, NULL, 0),
			 MFD_EFLAGS);
	buf[12] = 0;
	buf[4095] = 0x80;
	assert_int_equal(mfd__fimg_bitmap_check(buf, 100, &present, NULL, 0),
			 MFD_EFLAGS);
}

/* The bitmap and device-state digests are XXH3-64 (docs/protocol.md
 * 11.5) from whichever per-ISA build runs: each one equals libxxhash's on
 * lengths that take each of XXH3's paths (0, short, mid, long, ragged). */
static void test_codec_digest64(void **state)
{
	(void)state;
	static uint8_t buf[(64 << 10) + 3];
	const uint64_t lens[] = { 0, 1, 17, 129, 240, 4096, sizeof(buf) };
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 131 + (i >> 9));
	unsigned ran = 0;
	for (int impl = MFD__DIGEST_PORTABLE; impl < MFD__DIGEST_NIMPL;
	     impl++) {
		if (!mfd__digest_supported((enum mfd__digest_impl)impl))
			continue;
		assert_int_equal(
			mfd__digest_select((enum mfd__digest_impl)impl), 0);
		for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++)
			assert_true(mfd__fimg_digest64(buf, lens[k]) ==
				    XXH3_64bits(buf, (size_t)lens[k]));
		ran++;
	}
	assert_int_equal(mfd__digest_select(MFD__DIGEST_AUTO), 0);
	assert_true(ran >= 1);
}

/* The hypervisor cancels at the first dirty sync, from the migration
 * thread's own hook (mfd_source_cancel() may come from any thread). */
static int hook_sync_cancel(void *opaque, unsigned block, uint64_t *bitmap,
			    uint64_t npages)
{
	struct guest *g = opaque;
	(void)block;
	(void)bitmap;
	(void)npages;
	if (g->syncs++ == 0)
		assert_int_equal(mfd_source_cancel(g->src), 0);
	return 0;
}

/* A cancelled live save: -ECANCELED, the guest runs on (resumed if it
 * was stopped), and the file it left is refused as incomplete. */
static void test_cancel_live(void **state)
{
	(void)state;
	struct guest g, r;
	char path[300], why[1024];
	path_of(path, sizeof(path), "cancel.img");
	guest_init(&g, true, true);
	g.sync_dirty = hook_sync_cancel;
	assert_int_equal(save(&g, path, NULL, true, why, sizeof(why)),
			 -ECANCELED);
	assert_true(g.syncs >= 1);
	assert_int_equal(g.resumed, g.stopped);
	assert_int_equal(mfd_simdev_state(g.dev), MFD_DEV_RUNNING);
	guest_init(&r, false, true);
	assert_int_equal(restore_into(&r, path, why, sizeof(why)),
			 MFD_ETRUNCATED);
	assert_non_null(strstr(why, "did not complete"));
	assert_int_equal(r.loaded, 0);
	guest_free(&g);
	guest_free(&r);
	unlink(path);
}

/* ---- lazy restore: the guest runs before its pages are here ---- */

static const char *const lazy_kv[] = { "lazy-restore", "on", NULL };

/* Pages of block 0 the destination guest's writer owns: every 8th. */
#define OWNED(pg) ((pg) % 8 == 0)
#define READERS	  2

/* Guest threads on the destination, started by the loaded hook: readers
 * that copy pages from the top of memory down (the streaming readers go
 * up, so they fault) and compare each with the saved guest's page; a
 * writer that rewrites its own pages whole. */
struct lazy_guest {
	struct guest *g, *saved;
	pthread_t t[READERS + 1];
	int stop;
	uint64_t reads, torn, passes;
	uint32_t *iter; /* per page of block 0: the writer's last, 0 */
};

static void lazy_pattern(uint8_t *buf, uint64_t pg, uint32_t it)
{
	for (uint64_t i = 0; i < PAGE; i += 8) {
		uint64_t v = pg << 32 | it;
		memcpy(buf + i, &v, 8);
	}
}

static void *lazy_reader(void *arg)
{
	struct lazy_guest *lg = arg;
	static __thread uint8_t buf[65536];
	while (!__atomic_load_n(&lg->stop, __ATOMIC_ACQUIRE)) {
		for (int b = 1; b >= 0; b--) {
			uint64_t ps = lg->g->page[b];
			for (uint64_t pg = lg->g->size[b] / ps; pg-- > 0;) {
				if (b == 0 && OWNED(pg))
					continue;
				/* One copy of the whole page, as a vCPU
				 * reads it: placed whole or not at all. */
				memcpy(buf, lg->g->ram[b] + pg * ps, ps);
				if (memcmp(buf, lg->saved->ram[b] + pg * ps,
					   ps))
					__atomic_fetch_add(&lg->torn, 1,
							   __ATOMIC_RELAXED);
				__atomic_fetch_add(&lg->reads, 1,
						   __ATOMIC_RELEASE);
			}
		}
		__atomic_fetch_add(&lg->passes, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void *lazy_writer(void *arg)
{
	struct lazy_guest *lg = arg;
	uint8_t buf[PAGE];
	for (uint32_t it = 1; !__atomic_load_n(&lg->stop, __ATOMIC_ACQUIRE);
	     it++)
		for (uint64_t pg = lg->g->size[0] / PAGE; pg-- > 0;) {
			if (!OWNED(pg) || (pg / 8 + it) % 5)
				continue; /* a fifth of them per pass */
			lazy_pattern(buf, pg, it);
			tvm_guest_write(lg->g->ram[0] + pg * PAGE, buf, PAGE);
			lg->iter[pg] = it;
		}
	return NULL;
}

static void lazy_start(struct guest *g)
{
	struct lazy_guest *lg = g->lazy;
	for (int i = 0; i < READERS; i++)
		assert_int_equal(
			pthread_create(&lg->t[i], NULL, lazy_reader, lg), 0);
	assert_int_equal(pthread_create(&lg->t[READERS], NULL, lazy_writer, lg),
			 0);
	/* The first read went through a fault: nothing streams before the
	 * hook returns. */
	while (!__atomic_load_n(&lg->reads, __ATOMIC_ACQUIRE))
		sched_yield();
}

/* Saves a guest (paused or live), restores it lazily (with guest
 * threads running from the loaded hook when threads), and checks the
 * memory against the saved guest, except what the writer wrote. */
static void lazy_roundtrip(const char *const *kv, bool live, bool threads)
{
	struct guest g, r;
	struct lazy_guest lg = { 0 };
	char path[300], why[1024];
	path_of(path, sizeof(path), "lazy.img");
	guest_init(&g, true, true);
	assert_int_equal(save(&g, path, NULL, live, why, sizeof(why)), 0);
	guest_init(&r, false, true);
	if (threads) {
		lg.g = &r;
		lg.saved = &g;
		lg.iter = calloc(r.size[0] / PAGE, sizeof(*lg.iter));
		assert_non_null(lg.iter);
		r.lazy = &lg;
		r.on_loaded = lazy_start;
	}
	int ret = restore_kv(&r, path, kv, why, sizeof(why));
	if (ret)
		fail_msg("lazy restore: %d (%s)", ret, why);
	assert_int_equal(r.loaded, 1);
	assert_int_equal(r.failed, 0);
	mfd_stats st = last_dest_stats;
	/* Every page in the file read exactly once (by a fault or by a
	 * streaming reader, never both), holes never. */
	mfd_file_info *fi;
	assert_int_equal(mfd_file_info_read(path, &fi, why, sizeof(why)), 0);
	assert_int_equal(st.pages,
			 fi->blocks[0].present + fi->blocks[1].present);
	mfd_file_info_free(fi);
	if (threads) {
		/* The guest ran on: a whole pass on memory that is all here. */
		uint64_t passes = __atomic_load_n(&lg.passes, __ATOMIC_RELAXED);
		while (__atomic_load_n(&lg.passes, __ATOMIC_RELAXED) <
		       passes + 2)
			sched_yield();
		__atomic_store_n(&lg.stop, 1, __ATOMIC_RELEASE);
		for (int i = 0; i <= READERS; i++)
			pthread_join(lg.t[i], NULL);
		assert_int_equal(lg.torn, 0);
		assert_true(lg.reads > 0);
		/* The fault path ran: at least the first read's fault. */
		assert_true(st.faults >= 1);
		assert_true(st.page_requests >= 1);
		printf("# lazy: %" PRIu64 " reads, %" PRIu64 " faults, %" PRIu64
		       " requests, blocktime %.3f ms\n",
		       lg.reads, st.faults, st.page_requests,
		       (double)st.blocktime_ns / 1e6);
		uint8_t buf[PAGE];
		for (uint64_t pg = 0; pg < r.size[0] / PAGE; pg++) {
			const uint8_t *want = g.ram[0] + pg * PAGE;
			if (OWNED(pg) && lg.iter[pg]) {
				lazy_pattern(buf, pg, lg.iter[pg]);
				want = buf;
			}
			if (memcmp(r.ram[0] + pg * PAGE, want, PAGE))
				fail_msg("block 0 page %" PRIu64
					 " differs (writer iteration %u)",
					 pg, lg.iter[pg]);
		}
		assert_memory_equal(r.ram[1], g.ram[1], r.size[1]);
		assert_true(mfd_simdev_digest(g.dev) ==
			    mfd_simdev_digest(r.dev));
		free(lg.iter);
	} else {
		assert_same(&g, &r);
	}
	/* The guest ran before the pages were all read. */
	assert_true(st.downtime_ns <= st.total_ns);
	guest_free(&g);
	guest_free(&r);
	unlink(path);
}

static void test_lazy_paused(void **state)
{
	(void)state;
	lazy_roundtrip(lazy_kv, false, false);
	const char *const kv[] = { "lazy-restore", "on", "direct-io", "on",
				   NULL };
	lazy_roundtrip(kv, false, false);
}

static void test_lazy_live_threads(void **state)
{
	(void)state;
	lazy_roundtrip(lazy_kv, true, true);
	/* One slow reader: more of the pages come by fault. */
	const char *const kv[] = { "lazy-restore", "on", "channels", "1",
				   "packet-pages", "4",	 NULL };
	lazy_roundtrip(kv, true, true);
}

/* A damaged image, lazily: what the metadata checks find is refused
 * before the guest runs; a corrupt page area is found only once every
 * page is read, after the guest ran: a lost guest, reported as such. */
static void lazy_refused(enum damage how, int err, const char *reason,
			 int loaded)
{
	refused_with(lazy_kv, how, err, reason, loaded);
}

static void test_lazy_corrupt(void **state)
{
	(void)state;
	lazy_refused(D_INCOMPLETE, MFD_ETRUNCATED, "did not complete", 0);
	lazy_refused(D_TRUNC_PAGES, MFD_ETRUNCATED, "the end record ends at",
		     0);
	lazy_refused(D_BITMAP_BIT, MFD_EVERIFY, "bitmap digest mismatch", 0);
	lazy_refused(D_DEVICE_BYTE, MFD_EVERIFY, "device state digest mismatch",
		     0);
	lazy_refused(D_PAGE_BYTE, MFD_ELOSTGUEST,
		     "lost guest: block vga.vram: RAM digest mismatch", 1);
	lazy_refused(D_DIGEST_RESIGNED, MFD_ELOSTGUEST,
		     "lost guest: block pc.ram: RAM digest mismatch", 1);
}

/* Lazy restore into memory that is not empty (shared memory whose pages
 * exist already: emptying the mapping does not drop them): the first
 * placement finds a page populated, and the load says so instead of
 * letting the guest keep bytes that are not the image's. */
static void test_lazy_not_empty(void **state)
{
	(void)state;
	struct guest g, r;
	char path[300], why[1024];
	path_of(path, sizeof(path), "lazy-shared.img");
	guest_init(&g, true, true);
	assert_int_equal(save(&g, path, NULL, false, why, sizeof(why)), 0);
	guest_init(&r, false, true);
	guest_make_alias(&r); /* block 0: a memfd mapped twice */
	memset(r.alias, 0xaa, r.size[0]);
	int ret = restore_kv(&r, path, lazy_kv, why, sizeof(why));
	if (ret != MFD_ELOSTGUEST && strstr(why, "userfaultfd")) {
		printf("# skipped: no userfaultfd MISSING for shared memory "
		       "here (%s)\n",
		       why);
	} else {
		if (ret != MFD_ELOSTGUEST ||
		    !strstr(why, "populated before its placement"))
			fail_msg("got %d (%s)", ret, why);
		assert_int_equal(r.failed_err, MFD_ELOSTGUEST);
	}
	guest_free(&g);
	guest_free(&r);
	unlink(path);
}

/* ---- file systems of our own: a private mount namespace (root) ---- */

static int private_mount(const char *type, const char *opts, char *mnt,
			 size_t len)
{
	static int ns = -1;
	if (ns < 0)
		ns = geteuid() == 0 && unshare(CLONE_NEWNS) == 0 &&
		     mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
	if (!ns)
		return -EPERM;
	snprintf(mnt, len, "%s/mnt-%s", dir, type);
	if (mkdir(mnt, 0700) && errno != EEXIST)
		return -errno;
	return mount("none", mnt, type, 0, opts) ? -errno : 0;
}

/* A full disk during a save, paused and live, with and without direct
 * I/O: the save fails with ENOSPC and says so, the guest never stops (or
 * is resumed) and keeps running, its devices run again, its memory is as
 * it was and writable, and the file it left is refused as incomplete. */
static void full_disk(const char *mnt, const char *direct, bool live)
{
	char path[400], why[1024];
	const char *const kv[] = { "direct-io", direct, NULL };
	snprintf(path, sizeof(path), "%s/full.img", mnt);
	struct guest g, r;
	guest_init(&g, true, true);
	uint8_t *before[2];
	for (int b = 0; b < 2; b++) {
		before[b] = malloc(g.size[b]);
		assert_non_null(before[b]);
		memcpy(before[b], g.ram[b], g.size[b]);
	}
	int ret = save(&g, path, kv, live, why, sizeof(why));
	if (ret != -ENOSPC || !strstr(why, "No space left on device (ENOSPC)"))
		fail_msg("direct-io %s, live %d: got %d (%s), want ENOSPC",
			 direct, live, ret, why);
	assert_int_equal(g.resumed, g.stopped);
	assert_int_equal(mfd_simdev_state(g.dev), MFD_DEV_RUNNING);
	/* The library only read the guest: a paused guest's memory is
	 * unchanged (a live one's writer ran on, and save() saw it). */
	if (!live)
		for (int b = 0; b < 2; b++)
			assert_memory_equal(g.ram[b], before[b], g.size[b]);
	for (int b = 0; b < 2; b++) {
		uint8_t *p = (live && b == 0 ? g.alias : g.ram[b]) + PAGE * 3;
		memset(p, 0xa5, PAGE);
		assert_int_equal(g.ram[b][PAGE * 3 + 17], 0xa5);
		free(before[b]);
	}
	guest_init(&r, false, true);
	assert_int_equal(restore_kv(&r, path, kv, why, sizeof(why)),
			 MFD_ETRUNCATED);
	assert_non_null(strstr(why, "did not complete"));
	assert_int_equal(r.loaded, 0);
	assert_int_equal(r.failed, 1);
	guest_free(&g);
	guest_free(&r);
	unlink(path);
}

static void test_full_disk(void **state)
{
	(void)state;
	char mnt[300];
	if (private_mount("tmpfs", "size=8m", mnt, sizeof(mnt))) {
		printf("# skipped: needs root for a private small tmpfs\n");
		skip();
	}
	/* tmpfs has O_DIRECT since Linux 6.6; where it has not, the direct
	 * runs are left out (test_direct_io covers the refusal). */
	int probe = open(mnt, O_RDONLY | O_DIRECTORY);
	assert_true(probe >= 0);
	close(probe);
	char p[400];
	snprintf(p, sizeof(p), "%s/probe", mnt);
	int fd = open(p, O_RDWR | O_CREAT | O_DIRECT, 0600);
	bool direct = fd >= 0;
	if (fd >= 0)
		close(fd);
	unlink(p);
	if (!direct)
		printf("# tmpfs without O_DIRECT here: direct-io on left "
		       "out\n");
	for (int live = 0; live < 2; live++) {
		full_disk(mnt, "off", live);
		if (direct)
			full_disk(mnt, "on", live);
	}
	umount(mnt);
	rmdir(mnt);
}

/* direct-io on a file system without O_DIRECT (ramfs): a clear error. On
 * one with it (tmpfs since Linux 6.6, the disk) the round trip holds. */
static void test_direct_io(void **state)
{
	(void)state;
	char mnt[300], path[400], why[1024];
	const char *const kv[] = { "direct-io", "on", NULL };
	roundtrip(kv, false); /* on the disk */
	if (private_mount("ramfs", NULL, mnt, sizeof(mnt))) {
		printf("# skipped: needs root for a private ramfs\n");
		skip();
	}
	snprintf(path, sizeof(path), "%s/direct.img", mnt);
	struct guest g;
	guest_init(&g, true, false);
	assert_int_equal(save(&g, path, kv, false, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "does not support O_DIRECT"));
	assert_int_equal(g.stopped, 0);
	/* The same for a restore: saved without O_DIRECT, restored with. */
	assert_int_equal(save(&g, path, NULL, false, why, sizeof(why)), 0);
	struct guest r;
	guest_init(&r, false, false);
	assert_int_equal(restore_kv(&r, path, kv, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "does not support O_DIRECT"));
	assert_int_equal(r.loaded, 0);
	assert_int_equal(restore_into(&r, path, why, sizeof(why)), 0);
	assert_same(&g, &r);
	guest_free(&r);
	guest_free(&g);
	unlink(path);
	umount(mnt);
	rmdir(mnt);
}

/* On tmpfs the readers use pread whatever the engine (io_uring would hand
 * each read to its worker thread there: mfd__fio_ring_pays); elsewhere
 * the ring. Round trips on tmpfs, direct I/O on and off, paused and live,
 * come back byte-identical. */
static void test_tmpfs_plain_io(void **state)
{
	(void)state;
	char mnt[300], path[400];
	struct statfs st;
	snprintf(path, sizeof(path), "%s/pays.img", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(fstatfs(fd, &st), 0);
	assert_int_equal(mfd__fio_ring_pays(fd), st.f_type != TMPFS_MAGIC);
	close(fd);
	unlink(path);
	if (private_mount("tmpfs", "size=96m", mnt, sizeof(mnt))) {
		printf("# skipped: needs root for a private tmpfs\n");
		skip();
	}
	snprintf(path, sizeof(path), "%s/pays.img", mnt);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_false(mfd__fio_ring_pays(fd));
	int dfd = open(path, O_RDONLY | O_DIRECT);
	if (dfd >= 0) { /* tmpfs has O_DIRECT since Linux 6.6 */
		assert_false(mfd__fio_ring_pays(dfd));
		close(dfd);
	}
	close(fd);
	unlink(path);
	const char *const direct[] = { "direct-io", "on", NULL };
	roundtrip_in(mnt, NULL, false);
	roundtrip_in(mnt, NULL, true);
	if (dfd >= 0) {
		roundtrip_in(mnt, direct, false);
		roundtrip_in(mnt, direct, true);
	}
	umount(mnt);
	rmdir(mnt);
}

/* The file I/O's queue (multifd/fileio.h) on this run's engine: a queued
 * write reaches the file when submitted and reaped, not before (on a
 * ring); one submitted batch is reaped while the next stays queued; more
 * writes than the ring has slots all land; a failed write's error comes
 * back from the reap (ring) or the queueing call (syscalls). */
static void fill(uint8_t *p, size_t len, uint8_t v)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(v + i * 7);
}

static void test_fio_queue(void **state)
{
	(void)state;
	char path[300];
	snprintf(path, sizeof(path), "%s/fio.img", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	enum { N = MFD__FIO_DEPTH + 9 };
	static uint8_t buf[N][PAGE], got[PAGE];
	for (int i = 0; i < N; i++)
		fill(buf[i], PAGE, (uint8_t)(i + 1));
	struct mfd__fio io;
	bool ring = mfd__fio_init(&io, !strcmp(engine, "uring"));
	assert_int_equal(ring, !strcmp(engine, "uring"));
	/* Batch A (page 0) in the kernel, batch B (page 1) queued. */
	assert_int_equal(mfd__fio_rw(&io, fd, true, buf[0], PAGE, 0), 0);
	assert_int_equal(mfd__fio_submit(&io), 0);
	struct iovec iov[2] = { { buf[1], PAGE / 2 },
				{ buf[1] + PAGE / 2, PAGE / 2 } };
	assert_int_equal(mfd__fio_rwv(&io, fd, true, iov, 2, PAGE), 0);
	assert_int_equal(mfd__fio_reap(&io), 0);
	assert_int_equal(pread(fd, got, PAGE, 0), PAGE);
	assert_memory_equal(got, buf[0], PAGE);
	/* B: on a ring not written until submitted; with syscalls at once. */
	ssize_t n = pread(fd, got, PAGE, PAGE);
	if (ring)
		assert_int_equal(n, 0);
	else
		assert_memory_equal(got, buf[1], PAGE);
	assert_int_equal(mfd__fio_submit(&io), 0);
	/* More than the ring's slots, with B in the kernel: all land. */
	for (int i = 2; i < N; i++)
		assert_int_equal(mfd__fio_rw(&io, fd, true, buf[i], PAGE,
					     (uint64_t)i * PAGE),
				 0);
	assert_int_equal(mfd__fio_drain(&io), 0);
	for (int i = 0; i < N; i++) {
		assert_int_equal(pread(fd, got, PAGE, (off_t)(i * PAGE)), PAGE);
		assert_memory_equal(got, buf[i], PAGE);
	}
	/* A write to a descriptor open for reading fails with EBADF. */
	int ro = open(path, O_RDONLY);
	assert_true(ro >= 0);
	int ret = mfd__fio_rw(&io, ro, true, buf[0], PAGE, 0);
	if (ring) {
		assert_int_equal(ret, 0);
		assert_int_equal(mfd__fio_submit(&io), 0);
		ret = mfd__fio_reap(&io);
	}
	assert_int_equal(ret, -EBADF);
	/* And the queue works on after it. */
	assert_int_equal(mfd__fio_rw(&io, fd, true, buf[2], PAGE, 0), 0);
	assert_int_equal(mfd__fio_drain(&io), 0);
	assert_int_equal(pread(fd, got, PAGE, 0), PAGE);
	assert_memory_equal(got, buf[2], PAGE);
	mfd__fio_exit(&io);
	close(ro);
	close(fd);
	unlink(path);
}

int main(void)
{
	engine = tvm_io_engine("test_file");
	seed = tvm_seed("test_file");
	const char *t = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/mfd-file-XXXXXX", t && *t ? t : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_codec_layout),
		cmocka_unit_test(test_codec_header_flips),
		cmocka_unit_test(test_codec_bitmap),
		cmocka_unit_test(test_codec_digest64),
		cmocka_unit_test(test_fio_queue),
		cmocka_unit_test(test_roundtrip_paused),
		cmocka_unit_test(test_roundtrip_one_channel),
		cmocka_unit_test(test_roundtrip_live),
		cmocka_unit_test(test_zero_holes),
		cmocka_unit_test(test_zero_holes_every_page),
		cmocka_unit_test_setup_teardown(
			test_corrupt_header, corrupt_setup, corrupt_teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_truncated,
						corrupt_setup,
						corrupt_teardown),
		cmocka_unit_test_setup_teardown(
			test_corrupt_bitmap, corrupt_setup, corrupt_teardown),
		cmocka_unit_test_setup_teardown(
			test_corrupt_pages, corrupt_setup, corrupt_teardown),
		cmocka_unit_test_setup_teardown(
			test_corrupt_digests, corrupt_setup, corrupt_teardown),
		cmocka_unit_test_setup_teardown(
			test_other_layout, corrupt_setup, corrupt_teardown),
		cmocka_unit_test_setup_teardown(test_file_info, corrupt_setup,
						corrupt_teardown),
		cmocka_unit_test(test_bad_uri),
		cmocka_unit_test(test_cancel_live),
		cmocka_unit_test(test_full_disk),
		cmocka_unit_test(test_direct_io),
		cmocka_unit_test(test_tmpfs_plain_io),
		cmocka_unit_test(test_lazy_paused),
		cmocka_unit_test(test_lazy_live_threads),
		cmocka_unit_test(test_lazy_not_empty),
		cmocka_unit_test_setup_teardown(
			test_lazy_corrupt, corrupt_setup, corrupt_teardown),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	rmdir(dir);
	return ret;
}
