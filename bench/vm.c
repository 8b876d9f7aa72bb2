/* SPDX-License-Identifier: MIT */
/*
 * The simulated VM: RAM mappings, block layout and memory images.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vm.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define HUGE_SIZE (2ULL << 20)
/* Random images are generated in chunks with independent PRNG streams so
 * that any number of threads produces the same bytes. */
#define RANDOM_CHUNK	 (1ULL << 20)
#define MAX_FILL_THREADS 16

/* Directories whose regular files make the "real contents" of mix:
 * binaries (top level only) and text (walked recursively; a file counts as
 * text when its first 4 KiB hold no NUL byte, which also leaves out
 * compressed files). The two lists are interleaved file by file so that
 * the file half of the image is binaries and text alike, as in a guest. */
static const char *const corpus_dirs[] = {
	"/usr/bin",
	"/usr/lib/x86_64-linux-gnu",
};
static const char *const text_dirs[] = {
	"/usr/include",
	"/usr/share",
};

/* ------------------------------------------------------------------ */
/* PRNG: splitmix64 to seed, xoshiro256** to generate                 */
/* ------------------------------------------------------------------ */

static inline uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline uint64_t splitmix64(uint64_t *x)
{
	*x += 0x9e3779b97f4a7c15ULL;
	return mix64(*x);
}

struct xoshiro {
	uint64_t s[4];
};

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static inline uint64_t xoshiro_next(struct xoshiro *x)
{
	uint64_t *s = x->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* Streams of one seed: domain separates uses (random chunks, mix pages). */
enum { DOMAIN_RANDOM = 1, DOMAIN_MIX_KIND = 2, DOMAIN_MIX_PAGE = 3 };

static uint64_t stream_key(uint64_t seed, uint64_t domain, uint64_t index)
{
	return mix64(seed ^ mix64(domain * 0x632be59bd9b4e019ULL + index));
}

static void xoshiro_seed(struct xoshiro *x, uint64_t key)
{
	for (int i = 0; i < 4; i++)
		x->s[i] = splitmix64(&key);
}

static void fill_random(uint8_t *p, size_t len, uint64_t key)
{
	struct xoshiro x;
	uint64_t *w = (uint64_t *)p; /* page aligned */

	xoshiro_seed(&x, key);
	for (size_t i = 0; i < len / 8; i++)
		w[i] = xoshiro_next(&x);
}

/* ------------------------------------------------------------------ */
/* Images                                                             */
/* ------------------------------------------------------------------ */

int vm_image_parse(const char *s, struct vm_image *img)
{
	if (!s || !*s)
		return -EINVAL;
	img->path = NULL;
	if (!strcmp(s, "random")) {
		img->kind = VM_IMAGE_RANDOM;
	} else if (!strcmp(s, "zero")) {
		img->kind = VM_IMAGE_ZERO;
	} else if (!strcmp(s, "mix")) {
		img->kind = VM_IMAGE_MIX;
	} else {
		img->kind = VM_IMAGE_FILE;
		img->path = s;
	}
	return 0;
}

const char *vm_image_name(const struct vm_image *img)
{
	switch (img->kind) {
	case VM_IMAGE_RANDOM:
		return "random";
	case VM_IMAGE_ZERO:
		return "zero";
	case VM_IMAGE_MIX:
		return "mix";
	case VM_IMAGE_FILE:
		return img->path;
	}
	return "?";
}

/* mix: ~25% zero, ~25% random, ~50% file pages, chosen per page. */
enum page_kind { PAGE_ZERO, PAGE_RANDOM, PAGE_FILE };

static enum page_kind mix_page_kind(uint64_t seed, uint64_t page)
{
	switch (stream_key(seed, DOMAIN_MIX_KIND, page) & 3) {
	case 0:
		return PAGE_ZERO;
	case 1:
		return PAGE_RANDOM;
	default:
		return PAGE_FILE;
	}
}

struct fill_job {
	struct vm *vm;
	const struct vm_image *img;
	uint64_t first, end; /* chunk or page range of this thread */
	pthread_t thread;
};

static void *fill_thread(void *arg)
{
	struct fill_job *j = arg;
	struct vm *vm = j->vm;
	uint64_t seed = j->img->seed;
	uint32_t ps = vm->page_size;

	switch (j->img->kind) {
	case VM_IMAGE_RANDOM:
		for (uint64_t c = j->first; c < j->end; c++) {
			uint64_t off = c * RANDOM_CHUNK;
			uint64_t len = vm->ram_bytes - off;

			if (len > RANDOM_CHUNK)
				len = RANDOM_CHUNK;
			fill_random(vm->src + off, len,
				    stream_key(seed, DOMAIN_RANDOM, c));
		}
		break;
	case VM_IMAGE_ZERO:
		/* Fresh memory is zero; writing makes it resident like a
		 * booted guest's RAM. */
		memset(vm->src + j->first, 0, j->end - j->first);
		break;
	case VM_IMAGE_MIX:
		for (uint64_t pg = j->first; pg < j->end; pg++) {
			uint8_t *p = vm->src + pg * ps;

			switch (mix_page_kind(seed, pg)) {
			case PAGE_ZERO:
				memset(p, 0, ps);
				break;
			case PAGE_RANDOM:
				fill_random(
					p, ps,
					stream_key(seed, DOMAIN_MIX_PAGE, pg));
				break;
			case PAGE_FILE:
				break; /* the corpus reader's */
			}
		}
		break;
	case VM_IMAGE_FILE:
		break;
	}
	return NULL;
}

/* Runs fill_thread over [0, n) split into threads contiguous ranges,
 * rounded to multiples of align; calls also() in the calling thread
 * meanwhile. */
static int fill_parallel(struct vm *vm, const struct vm_image *img, uint64_t n,
			 uint64_t align, unsigned threads,
			 int (*also)(struct vm *, const struct vm_image *))
{
	struct fill_job jobs[MAX_FILL_THREADS];
	unsigned started = 0;
	int ret = 0;

	if (threads < 1)
		threads = 1;
	if (threads > MAX_FILL_THREADS)
		threads = MAX_FILL_THREADS;
	for (unsigned t = 0; t < threads; t++) {
		uint64_t a = n * t / threads / align * align;
		uint64_t b = t + 1 == threads
				     ? n
				     : n * (t + 1) / threads / align * align;

		jobs[t] = (struct fill_job){
			.vm = vm, .img = img, .first = a, .end = b
		};
	}
	/* The last range runs here unless also() needs this thread. */
	for (unsigned t = 0; t < threads; t++) {
		if (t + 1 == threads && !also)
			break;
		int err = pthread_create(&jobs[t].thread, NULL, fill_thread,
					 &jobs[t]);
		if (err) {
			fprintf(stderr, "vm: pthread_create: %s\n",
				strerror(err));
			ret = -err;
			break;
		}
		started++;
	}
	if (!ret) {
		if (also)
			ret = also(vm, img);
		else
			fill_thread(&jobs[threads - 1]);
	}
	for (unsigned t = 0; t < started; t++)
		pthread_join(jobs[t].thread, NULL);
	return ret;
}

/* ------------------------------------------------------------------ */
/* The file corpus of mix: page-sized chunks of system files in order  */
/* ------------------------------------------------------------------ */

struct corpus {
	char **paths;
	size_t n, cap;
	size_t cur; /* index of the open file */
	int fd;
	uint8_t *buf;
	size_t buf_len, buf_pos;
};

#define CORPUS_BUF (1u << 20)

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int corpus_add(struct corpus *c, const char *path)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 256;
		char **p = realloc(c->paths, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		c->paths = p;
		c->cap = cap;
	}
	c->paths[c->n] = strdup(path);
	if (!c->paths[c->n])
		return -ENOMEM;
	c->n++;
	return 0;
}

static void corpus_close(struct corpus *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->paths[i]);
	free(c->paths);
	free(c->buf);
	if (c->fd >= 0)
		close(c->fd);
}

static struct corpus *text_corpus;
static size_t text_min_size;

static int text_visit(const char *path, const struct stat *st, int flag,
		      struct FTW *ftw)
{
	(void)ftw;
	if (flag != FTW_F || !S_ISREG(st->st_mode) ||
	    (size_t)st->st_size < text_min_size)
		return 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	uint8_t head[4096];
	ssize_t n = read(fd, head, sizeof(head));
	close(fd);
	if (n <= 0 || memchr(head, 0, (size_t)n))
		return 0;
	return corpus_add(text_corpus, path) ? -1 : 0;
}

/* Appends text files and interleaves them with the binaries already
 * listed: bin0, text0, bin1, text1, ... (the longer list's tail last). */
static int corpus_interleave_text(struct corpus *c, size_t min_size)
{
	struct corpus t;
	memset(&t, 0, sizeof(t));
	t.fd = -1;
	text_corpus = &t;
	text_min_size = min_size;
	for (size_t d = 0; d < sizeof(text_dirs) / sizeof(text_dirs[0]); d++)
		if (nftw(text_dirs[d], text_visit, 16, FTW_PHYS) < 0 &&
		    errno == ENOMEM)
			return -ENOMEM;
	if (!t.n) {
		corpus_close(&t);
		return 0;
	}
	qsort(t.paths, t.n, sizeof(*t.paths), cmp_str);
	char **all = malloc((c->n + t.n) * sizeof(*all));
	if (!all) {
		corpus_close(&t);
		return -ENOMEM;
	}
	size_t k = 0, i = 0, j = 0;
	while (i < c->n || j < t.n) {
		if (i < c->n)
			all[k++] = c->paths[i++];
		if (j < t.n)
			all[k++] = t.paths[j++];
	}
	free(c->paths);
	free(t.paths);
	c->paths = all;
	c->n = c->cap = k;
	return 0;
}

/* Lists the regular files (no symlinks, so nothing twice) of at least
 * min_size bytes that we may read, in sorted path order. */
static int corpus_open(struct corpus *c, size_t min_size)
{
	char path[4096];
	int ret;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	for (size_t d = 0; d < sizeof(corpus_dirs) / sizeof(corpus_dirs[0]);
	     d++) {
		DIR *dir = opendir(corpus_dirs[d]);
		struct dirent *de;

		if (!dir)
			continue;
		while ((de = readdir(dir))) {
			struct stat st;
			int n = snprintf(path, sizeof(path), "%s/%s",
					 corpus_dirs[d], de->d_name);

			if (n < 0 || (size_t)n >= sizeof(path))
				continue;
			if (lstat(path, &st) || !S_ISREG(st.st_mode) ||
			    (size_t)st.st_size < min_size || access(path, R_OK))
				continue;
			ret = corpus_add(c, path);
			if (ret) {
				closedir(dir);
				return ret;
			}
		}
		closedir(dir);
	}
	if (!c->n) {
		fprintf(stderr,
			"vm: mix image: no readable files in %s or %s\n",
			corpus_dirs[0], corpus_dirs[1]);
		return -ENOENT;
	}
	qsort(c->paths, c->n, sizeof(*c->paths), cmp_str);
	ret = corpus_interleave_text(c, min_size);
	if (ret)
		return ret;
	c->buf = malloc(CORPUS_BUF);
	if (!c->buf)
		return -ENOMEM;
	c->cur = c->n - 1; /* the first refill opens paths[0] */
	return 0;
}

/* Refills the buffer from the current file, moving on to the next file
 * (wrapping around) at its end. */
static int corpus_refill(struct corpus *c)
{
	size_t failures = 0;

	for (;;) {
		if (c->fd >= 0) {
			ssize_t n = read(c->fd, c->buf, CORPUS_BUF);

			if (n > 0) {
				c->buf_len = (size_t)n;
				c->buf_pos = 0;
				return 0;
			}
			if (n < 0 && errno == EINTR)
				continue;
			close(c->fd);
			c->fd = -1;
		}
		/* A whole lap without data: every file vanished or shrank. */
		if (++failures > c->n + 1) {
			fprintf(stderr, "vm: mix image: no file readable\n");
			return -EIO;
		}
		c->cur = (c->cur + 1) % c->n;
		c->fd = open(c->paths[c->cur], O_RDONLY | O_CLOEXEC);
	}
}

/* Copies the next page-sized chunk; a file's last partial chunk is
 * zero-padded, so a page never mixes two files. */
static int corpus_next_page(struct corpus *c, uint8_t *page, size_t ps)
{
	size_t got = 0;

	if (c->buf_pos == c->buf_len) {
		int ret = corpus_refill(c);

		if (ret)
			return ret;
	}
	while (got < ps) {
		size_t n = c->buf_len - c->buf_pos;

		if (n > ps - got)
			n = ps - got;
		memcpy(page + got, c->buf + c->buf_pos, n);
		got += n;
		c->buf_pos += n;
		if (got == ps)
			break;
		/* Chunk straddles a buffer boundary: read more of the same
		 * file, or pad at its end. */
		ssize_t r;

		do
			r = read(c->fd, c->buf, CORPUS_BUF);
		while (r < 0 && errno == EINTR);
		if (r <= 0) {
			memset(page + got, 0, ps - got);
			c->buf_pos = c->buf_len = 0;
			close(c->fd);
			c->fd = -1;
			break;
		}
		c->buf_len = (size_t)r;
		c->buf_pos = 0;
	}
	return 0;
}

static int fill_mix_files(struct vm *vm, const struct vm_image *img)
{
	struct corpus c;
	uint32_t ps = vm->page_size;
	uint64_t pages = vm->ram_bytes / ps;
	int ret = corpus_open(&c, ps);

	for (uint64_t pg = 0; !ret && pg < pages; pg++)
		if (mix_page_kind(img->seed, pg) == PAGE_FILE)
			ret = corpus_next_page(&c, vm->src + pg * ps, ps);
	corpus_close(&c);
	return ret;
}

static int fill_file(struct vm *vm, const char *path)
{
	uint64_t filled = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		int err = errno;

		fprintf(stderr, "vm: image %s: %s\n", path, strerror(err));
		return -err;
	}
	while (filled < vm->ram_bytes) {
		uint64_t want = vm->ram_bytes - filled;
		ssize_t n;

		if (want > (1u << 30))
			want = 1u << 30;
		n = read(fd, vm->src + filled, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = errno;

			fprintf(stderr, "vm: image %s: %s\n", path,
				strerror(err));
			close(fd);
			return -err;
		}
		if (n == 0)
			break;
		filled += (uint64_t)n;
	}
	close(fd);
	if (!filled) {
		fprintf(stderr, "vm: image %s is empty\n", path);
		return -EINVAL;
	}
	/* Repeat the file: [0, filled) has period = file size and filled
	 * stays a multiple of it while doubling. */
	while (filled < vm->ram_bytes) {
		uint64_t n = vm->ram_bytes - filled;

		if (n > filled)
			n = filled;
		memcpy(vm->src + filled, vm->src, n);
		filled += n;
	}
	return 0;
}

int vm_fill(struct vm *vm, const struct vm_image *img, unsigned threads)
{
	uint64_t pages = vm->ram_bytes / vm->page_size;

	switch (img->kind) {
	case VM_IMAGE_RANDOM:
		return fill_parallel(vm, img,
				     (vm->ram_bytes + RANDOM_CHUNK - 1) /
					     RANDOM_CHUNK,
				     1, threads, NULL);
	case VM_IMAGE_ZERO:
		return fill_parallel(vm, img, vm->ram_bytes, vm->page_size,
				     threads, NULL);
	case VM_IMAGE_MIX:
		/* Zero and random pages in threads, file pages (in order)
		 * in this one at the same time. */
		return fill_parallel(vm, img, pages, 1, threads,
				     fill_mix_files);
	case VM_IMAGE_FILE:
		return fill_file(vm, img->path);
	}
	return -EINVAL;
}

/* ------------------------------------------------------------------ */
/* RAM                                                                */
/* ------------------------------------------------------------------ */

/* An anonymous mapping of len bytes starting on a 2 MiB boundary, so that
 * transparent huge pages can back all of it. */
static uint8_t *map_ram(uint64_t len, bool *thp)
{
	size_t map_len = len + HUGE_SIZE;
	uint8_t *p = mmap(NULL, map_len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t *base, *end;

	if (p == MAP_FAILED)
		return NULL;
	base = (uint8_t *)(((uintptr_t)p + HUGE_SIZE - 1) & ~(HUGE_SIZE - 1));
	end = base + len;
	if (base > p)
		munmap(p, (size_t)(base - p));
	end = (uint8_t *)(((uintptr_t)end + 4095) & ~(uintptr_t)4095);
	if (end < p + map_len)
		munmap(end, (size_t)(p + map_len - end));
	*thp = madvise(base, len, MADV_HUGEPAGE) == 0;
	return base;
}

/*
 * Block sizes: weights nblocks, nblocks-1, ..., 1 so that blocks differ, in
 * units of 2 MiB when RAM allows it, else of pages; the last block takes the
 * remainder.
 */
static void layout_blocks(struct vm *vm)
{
	unsigned n = vm->nblocks;
	uint64_t wsum = (uint64_t)n * (n + 1) / 2;
	uint64_t gran = HUGE_SIZE;
	uint64_t off = 0;

	if (vm->ram_bytes / gran < wsum)
		gran = vm->page_size;
	uint64_t units = vm->ram_bytes / gran;
	bool weighted = units >= wsum;

	for (unsigned i = 0; i < n; i++) {
		struct vm_block *b = &vm->blocks[i];
		uint64_t u = weighted ? units * (n - i) / wsum : units / n;

		if (i == 0)
			snprintf(b->name, sizeof(b->name), "pc.ram");
		else
			snprintf(b->name, sizeof(b->name), "pc.ram.%u", i);
		b->offset = off;
		b->size = i + 1 == n ? vm->ram_bytes - off : u * gran;
		off += b->size;
	}
}

int vm_create(struct vm **out, uint64_t ram_bytes, unsigned nblocks,
	      uint32_t page_size)
{
	struct vm *vm;

	*out = NULL;
	if (!page_size || (page_size & (page_size - 1)) || !nblocks ||
	    ram_bytes % page_size || ram_bytes / page_size < nblocks) {
		fprintf(stderr,
			"vm: RAM of %llu bytes cannot make %u block(s) of "
			"%u-byte pages\n",
			(unsigned long long)ram_bytes, nblocks, page_size);
		return -EINVAL;
	}
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	vm->ram_bytes = ram_bytes;
	vm->page_size = page_size;
	vm->nblocks = nblocks;
	vm->blocks = calloc(nblocks, sizeof(*vm->blocks));
	if (!vm->blocks) {
		vm_destroy(vm);
		return -ENOMEM;
	}
	layout_blocks(vm);
	vm->src = map_ram(ram_bytes, &vm->src_thp);
	if (vm->src)
		vm->dst = map_ram(ram_bytes, &vm->dst_thp);
	if (!vm->src || !vm->dst) {
		int err = errno;

		fprintf(stderr, "vm: mmap of %llu bytes: %s\n",
			(unsigned long long)ram_bytes, strerror(err));
		vm_destroy(vm);
		return -err;
	}
	if (!vm->src_thp || !vm->dst_thp)
		fprintf(stderr, "vm: warning: MADV_HUGEPAGE refused, guest RAM "
				"uses 4 KiB pages\n");
	*out = vm;
	return 0;
}

int vm_dest_populate(struct vm *vm)
{
	if (madvise(vm->dst, vm->ram_bytes, MADV_POPULATE_WRITE) == 0)
		return 0;
	/* Older kernels: fault every 4 KiB page in by writing it. */
	for (uint64_t off = 0; off < vm->ram_bytes; off += 4096)
		((volatile uint8_t *)vm->dst)[off] = 0;
	return 0;
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	if (vm->src)
		munmap(vm->src, vm->ram_bytes);
	if (vm->dst)
		munmap(vm->dst, vm->ram_bytes);
	free(vm->blocks);
	free(vm);
}
