/* SPDX-License-Identifier: MIT */
/*
 * embed: a minimal hypervisor stand-in that migrates itself with
 * libmultifd, through the public API only.
 *
 * The "guest" is one anonymous RAM mapping and two writer threads (the
 * vCPUs) that keep writing pages and report each write with
 * mfd_source_mark_dirty(), as a hypervisor's dirty log would. The stop
 * hook really parks the writers (and waits until they are parked); the
 * resume hook lets them run again. Source and destination live in this one
 * process and talk over loopback TCP; at the end the destination's RAM
 * must equal the source's byte for byte.
 *
 * Build against an installed libmultifd:
 *   cc -O2 -o embed examples/embed.c $(pkg-config --cflags --libs multifd)
 * -lpthread Exit status 0 when the destination's memory is identical.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <multifd/multifd.h>

#define RAM_SIZE (64u << 20)
#define PAGE	 4096u
#define WRITERS	 2

struct guest {
	uint8_t *ram;
	mfd_source *src; /* where writes are reported */
	pthread_t vcpu[WRITERS];
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool park; /* stop hook asked the vCPUs to park */
	bool quit;
	unsigned parked;
	unsigned long writes;
	unsigned stops, resumes;
};

/* One guest write of one page, then the dirty report. Not inlined: TSan
 * runs of the tests suppress this function's race with the migration's
 * reads (tests/tsan.supp), which is by design. */
static __attribute__((noinline)) void write_page(struct guest *g, uint64_t page,
						 uint64_t value)
{
	uint64_t *p = (uint64_t *)(g->ram + page * PAGE);

	for (unsigned i = 0; i < PAGE / sizeof(*p); i += 64)
		p[i] = value + i;
	mfd_source_mark_dirty(g->src, 0, page * PAGE, PAGE);
}

static void *vcpu(void *arg)
{
	struct guest *g = arg;
	uint64_t x = (uint64_t)(uintptr_t)&x | 1; /* per-thread seed */
	struct timespec pause = { 0, 200000 };	  /* ~5000 writes/s */

	for (;;) {
		pthread_mutex_lock(&g->lock);
		if (g->park && !g->quit) {
			g->parked++;
			pthread_cond_broadcast(&g->cond);
			while (g->park && !g->quit)
				pthread_cond_wait(&g->cond, &g->lock);
			g->parked--;
		}
		if (g->quit) {
			pthread_mutex_unlock(&g->lock);
			return NULL;
		}
		g->writes++;
		pthread_mutex_unlock(&g->lock);
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		write_page(g, x % (RAM_SIZE / PAGE), x);
		nanosleep(&pause, NULL);
	}
}

/* Called by the library before the final pass: no guest write may happen
 * after this returns. */
static int stop_vcpus(void *opaque)
{
	struct guest *g = opaque;

	pthread_mutex_lock(&g->lock);
	g->park = true;
	g->stops++;
	while (g->parked < WRITERS)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
	return 0;
}

static int resume_vcpus(void *opaque)
{
	struct guest *g = opaque;

	pthread_mutex_lock(&g->lock);
	g->park = false;
	g->resumes++;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
	return 0;
}

static int loaded(void *opaque)
{
	(void)opaque;
	printf("embed: destination loaded\n");
	return 0;
}

static void *map_ram(void)
{
	void *p = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("embed: mmap");
		exit(1);
	}
	madvise(p, RAM_SIZE, MADV_HUGEPAGE);
	return p;
}

static int check(int err, const char *what)
{
	if (err)
		fprintf(stderr, "embed: %s: %s\n", what, mfd_strerror(err));
	return err;
}

int main(void)
{
	struct guest g = { .lock = PTHREAD_MUTEX_INITIALIZER,
			   .cond = PTHREAD_COND_INITIALIZER };
	mfd_source_hooks sh = { .opaque = &g,
				.stop = stop_vcpus,
				.resume = resume_vcpus };
	mfd_dest_hooks dh = { .loaded = loaded };
	mfd_config *cfg;
	mfd_source *src = NULL;
	mfd_dest *dst = NULL;
	uint8_t *dst_ram;
	char uri[128], why[256];
	mfd_stats st;
	int err, ret = 1;

	printf("embed: libmultifd %d (built against %d)\n", mfd_version(),
	       MFD_VERSION_NUMBER);
	g.ram = map_ram();
	dst_ram = map_ram();
	for (uint64_t i = 0; i < RAM_SIZE; i += 8)
		*(uint64_t *)(g.ram + i) = i * 0x9E3779B97F4A7C15ull;

	if (check(mfd_config_new(&cfg), "config"))
		return 1;
	if (mfd_config_set_err(cfg, "channels", "2", why, sizeof(why)) ||
	    mfd_config_set_err(cfg, "verify", "on", why, sizeof(why)) ||
	    mfd_config_set_err(cfg, "downtime-limit", "50ms", why,
			       sizeof(why))) {
		fprintf(stderr, "embed: %s\n", why);
		return 1;
	}

	if (check(mfd_dest_new(&dst, cfg, &dh), "mfd_dest_new") ||
	    check(mfd_dest_add_block(dst, "pc.ram", dst_ram, RAM_SIZE, PAGE),
		  "mfd_dest_add_block") ||
	    check(mfd_dest_start(dst, "tcp:127.0.0.1:0"), "mfd_dest_start") ||
	    check(mfd_dest_get_uri(dst, uri, sizeof(uri)), "mfd_dest_get_uri"))
		goto out;
	if (check(mfd_source_new(&src, cfg, &sh), "mfd_source_new") ||
	    check(mfd_source_add_block(src, "pc.ram", g.ram, RAM_SIZE, PAGE),
		  "mfd_source_add_block"))
		goto out;

	/* The guest runs from here on, writing while it migrates. */
	g.src = src;
	for (int i = 0; i < WRITERS; i++)
		if (pthread_create(&g.vcpu[i], NULL, vcpu, &g)) {
			fprintf(stderr, "embed: pthread_create failed\n");
			exit(1);
		}

	err = mfd_source_migrate(src, uri);
	if (err)
		mfd_dest_cancel(dst);
	err = check(err, "source") | check(mfd_dest_wait(dst), "destination");

	pthread_mutex_lock(&g.lock);
	g.quit = true;
	pthread_cond_broadcast(&g.cond);
	pthread_mutex_unlock(&g.lock);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(g.vcpu[i], NULL);
	if (err)
		goto out;

	mfd_source_get_stats(src, &st, sizeof(st));
	printf("embed: %lu guest writes, %u rounds, %llu pages sent, "
	       "downtime %.1f ms, stop hooks %u, resume hooks %u\n",
	       g.writes, st.round + 1, (unsigned long long)st.pages,
	       (double)st.downtime_ns / 1e6, g.stops, g.resumes);
	if (memcmp(g.ram, dst_ram, RAM_SIZE)) {
		fprintf(stderr, "embed: destination memory DIFFERS\n");
		goto out;
	}
	if (g.stops != 1 || g.resumes != 0) {
		fprintf(stderr, "embed: unexpected hook calls\n");
		goto out;
	}
	printf("embed: destination memory identical (%u MiB)\n",
	       RAM_SIZE >> 20);
	ret = 0;
out:
	mfd_source_free(src);
	mfd_dest_free(dst);
	mfd_config_free(cfg);
	munmap(g.ram, RAM_SIZE);
	munmap(dst_ram, RAM_SIZE);
	return ret;
}
