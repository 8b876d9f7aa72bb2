/* SPDX-License-Identifier: MIT */
/* Guest writers of multifd-bench (see guest.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "guest.h"

#define SLICE_NS    10000000ULL /* QEMU's CPU_THROTTLE_TIMESLICE_NS */
#define CHUNK	    512		/* compute iterations between clock reads */
#define WRITE_BYTES 64		/* bytes stored per page write */

struct writer {
	struct guest *g;
	pthread_t th;
	unsigned idx;
	bool reader;  /* computes, never writes */
	int throttle; /* atomic percent: this vCPU alone (dirty-limit) */
	uint64_t rng;
	uint64_t seq_pos;
	/* Totals, read by other threads. */
	uint64_t work __attribute__((aligned(64)));
	uint64_t writes;
};

struct guest {
	struct guest_opts o;
	struct vm *vm;
	uint8_t *ram;	  /* atomic pointer: source, later destination */
	uint64_t *moved;  /* a bit per page written after guest_set_ram() */
	mfd_source *mark; /* atomic pointer */
	uint64_t npages, hot_pages;
	double pages_per_ns; /* per writer */
	uint64_t chunks;     /* compute chunks of one slice's job */
	int throttle;	     /* atomic percent */
	pthread_mutex_t lock;
	pthread_cond_t cv; /* wakes sleepers and parked writers */
	int paused;	   /* atomic flag, changed under lock */
	int quit;
	unsigned parked;
	unsigned nthreads; /* writers, then readers */
	struct writer *w;
};

static const char *const pattern_names[] = { "uniform", "hotset", "seq" };

int guest_pattern_parse(const char *s, enum guest_pattern *out)
{
	for (unsigned i = 0; i < 3; i++)
		if (!strcmp(s, pattern_names[i])) {
			*out = (enum guest_pattern)i;
			return 0;
		}
	return -EINVAL;
}

const char *guest_pattern_name(enum guest_pattern p)
{
	return pattern_names[p];
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Sleeps until deadline unless paused or quitting meanwhile. */
static void nap_until(struct guest *g, uint64_t deadline)
{
	struct timespec ts = { .tv_sec = (time_t)(deadline / 1000000000ULL),
			       .tv_nsec = (long)(deadline % 1000000000ULL) };
	pthread_mutex_lock(&g->lock);
	while (!g->paused && !g->quit && now_ns() < deadline)
		if (pthread_cond_timedwait(&g->cv, &g->lock, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&g->lock);
}

/* Parks while paused; false when quitting. */
static bool park_if_paused(struct guest *g)
{
	if (!__atomic_load_n(&g->paused, __ATOMIC_ACQUIRE))
		return true;
	pthread_mutex_lock(&g->lock);
	g->parked++;
	pthread_cond_broadcast(&g->cv);
	while (g->paused && !g->quit)
		pthread_cond_wait(&g->cv, &g->lock);
	g->parked--;
	bool go = !g->quit;
	pthread_mutex_unlock(&g->lock);
	return go;
}

static uint64_t pick_page(struct writer *w)
{
	struct guest *g = w->g;
	uint64_t r = rnd(&w->rng);
	if (g->o.own_ranges) {
		/* Writer idx owns stripe idx; the pattern within it. */
		uint64_t stripe = g->npages / g->o.writers;
		uint64_t hot = (uint64_t)((double)stripe * g->o.hot_fraction);
		uint64_t base = w->idx * stripe;
		if (!stripe)
			return 0;
		if (g->o.pattern == GUEST_SEQ)
			return base + w->seq_pos++ % stripe;
		if (g->o.pattern == GUEST_HOTSET && r % 10 < 9)
			return base +
			       (((r >> 8) % (hot ? hot : 1)) * 0x9e3779b1ULL) %
				       stripe;
		return base + (r >> 8) % stripe;
	}
	switch (g->o.pattern) {
	case GUEST_HOTSET:
		if (r % 10 < 9) {
			/* The hot pages are scattered over RAM (an odd
			 * multiplier permutes a power-of-two page count). */
			uint64_t h = (r >> 8) % g->hot_pages;
			return (h * 0x9e3779b1ULL) % g->npages;
		}
		return (r >> 8) % g->npages;
	case GUEST_SEQ: {
		uint64_t stripe = g->npages / g->o.writers;
		uint64_t pg =
			w->idx * stripe + w->seq_pos % (stripe ? stripe : 1);
		w->seq_pos++;
		return pg % g->npages;
	}
	default:
		return r % g->npages;
	}
}

static void write_page(struct writer *w, uint64_t pg)
{
	struct guest *g = w->g;
	uint8_t *ram = __atomic_load_n(&g->ram, __ATOMIC_ACQUIRE);
	uint64_t off =
		pg * g->vm->page_size +
		(rnd(&w->rng) % (g->vm->page_size / WRITE_BYTES)) * WRITE_BYTES;
	uint64_t v = rnd(&w->rng);
	for (unsigned i = 0; i < WRITE_BYTES / 8; i++)
		memcpy(ram + off + 8 * i, &v, 8), v += 0x9e37;
	if (ram != g->vm->src)
		__atomic_fetch_or(&g->moved[pg / 64], 1ULL << (pg % 64),
				  __ATOMIC_RELAXED);
	mfd_source *src = __atomic_load_n(&g->mark, __ATOMIC_ACQUIRE);
	if (!src)
		return;
	/* Report after writing, as a hardware dirty log would. */
	for (unsigned b = 0; b < g->vm->nblocks; b++) {
		const struct vm_block *blk = &g->vm->blocks[b];
		if (off >= blk->offset && off < blk->offset + blk->size) {
			mfd_source_mark_dirty(src, b, off - blk->offset,
					      WRITE_BYTES);
			break;
		}
	}
}

/* One slice's compute: CHUNK rounds of xorshift, the guest's own work. */
static uint64_t compute_chunk(uint64_t x)
{
	for (unsigned i = 0; i < CHUNK; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
	}
	return x;
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/*
 * Chunks that take busy_ns of CPU: measured in this thread's CPU time, so
 * a loaded machine that preempts the caller does not shrink the job.
 */
static uint64_t calibrate_chunks(uint64_t busy_ns)
{
	uint64_t x = 88172645463325252ULL, n = 0, c0 = thread_cpu_ns(), c;
	volatile uint64_t sink;

	do {
		x = compute_chunk(x);
		n++;
		c = thread_cpu_ns();
	} while (c - c0 < 20000000ULL); /* 20 ms of CPU */
	sink = x;
	(void)sink;
	n = n * busy_ns / (c - c0);
	return n ? n : 1;
}

/*
 * A writer's slice is a fixed job: g->chunks compute chunks (load_pct of
 * a 10 ms slice on an idle CPU) with the slice's writes spread among
 * them. The next slice starts 10 ms after this one or when the job is
 * done, whichever is later, then the throttle's sleep. So the guest's
 * work rate is its own progress: a write that blocks (a userfaultfd
 * fault, write protection), a throttle's sleep or a CPU it does not get
 * lowers it, and nothing raises it above the nominal rate. (The job
 * used to be "compute until load_pct of the slice has passed, and until
 * the writes are done": stalled writes then stretched the slice and
 * counted more compute, which made a throttled guest look faster.)
 */
static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct guest *g = w->g;
	double due = 0;
	volatile uint64_t sink = 0;
	uint64_t x = w->rng | 1;

	while (park_if_paused(g)) {
		if (__atomic_load_n(&g->quit, __ATOMIC_ACQUIRE))
			break;
		uint64_t t0 = now_ns(), work = 0, writes = 0;
		due += w->reader ? 0 : g->pages_per_ns * (double)SLICE_NS;
		uint64_t nw = (uint64_t)due;
		due -= (double)nw;
		uint64_t chunks = g->chunks;
		for (uint64_t c = 0; c < chunks || writes < nw; c++) {
			if (c < chunks) {
				x = compute_chunk(x);
				work += CHUNK;
			}
			/* Write k goes after chunk k * chunks / nw. */
			while (writes < nw &&
			       (c + 1 >= chunks || writes * chunks <= c * nw)) {
				write_page(w, pick_page(w));
				writes++;
				if (__atomic_load_n(&g->paused,
						    __ATOMIC_ACQUIRE))
					break;
			}
			if (__atomic_load_n(&g->paused, __ATOMIC_ACQUIRE))
				break;
		}
		sink = x;
		__atomic_fetch_add(&w->work, work, __ATOMIC_RELAXED);
		__atomic_fetch_add(&w->writes, writes, __ATOMIC_RELAXED);
		int pct = __atomic_load_n(&g->throttle, __ATOMIC_RELAXED);
		int own = __atomic_load_n(&w->throttle, __ATOMIC_RELAXED);
		if (own > pct)
			pct = own;
		uint64_t end = t0 + SLICE_NS, t = now_ns();
		if (end < t)
			end = t; /* the job overran its slice */
		/* QEMU's cpu-throttle: after each time slice the vCPU
		 * sleeps pct/(100-pct) of a slice. */
		if (pct > 0)
			end += SLICE_NS * (uint64_t)pct / (uint64_t)(100 - pct);
		nap_until(g, end);
	}
	(void)sink;
	return NULL;
}

int guest_start(struct guest **out, const struct guest_opts *o, struct vm *vm)
{
	struct guest *g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->o = *o;
	g->vm = vm;
	g->ram = vm->src;
	g->npages = vm->ram_bytes / vm->page_size;
	g->moved = calloc((g->npages + 63) / 64, sizeof(*g->moved));
	if (!g->moved) {
		free(g);
		return -ENOMEM;
	}
	g->hot_pages = (uint64_t)((double)g->npages * o->hot_fraction);
	if (!g->hot_pages)
		g->hot_pages = 1;
	g->chunks = calibrate_chunks(SLICE_NS * o->load_pct / 100);
	g->pages_per_ns = o->dirty_mbps * 1e6 / vm->page_size / 1e9 /
			  (o->writers ? o->writers : 1);
	pthread_mutex_init(&g->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&g->cv, &ca);
	pthread_condattr_destroy(&ca);
	unsigned n = o->writers + o->readers;
	g->w = calloc(n ? n : 1, sizeof(*g->w));
	if (!g->w) {
		free(g);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n; i++) {
		g->w[i] = (struct writer){ .g = g,
					   .idx = i,
					   .reader = i >= o->writers,
					   .rng = 77 + i };
		int err = pthread_create(&g->w[i].th, NULL, writer_main,
					 &g->w[i]);
		if (err) {
			guest_stop(g);
			return -err;
		}
		g->nthreads = i + 1;
	}
	*out = g;
	return 0;
}

void guest_set_marking(struct guest *g, mfd_source *src)
{
	if (g)
		__atomic_store_n(&g->mark, src, __ATOMIC_RELEASE);
}

bool guest_moved_wrote(const struct guest *g, uint64_t pg)
{
	return g && pg < g->npages &&
	       (__atomic_load_n(&g->moved[pg / 64], __ATOMIC_RELAXED) >>
		(pg % 64)) &
		       1;
}

void guest_set_ram(struct guest *g, uint8_t *ram)
{
	if (g)
		__atomic_store_n(&g->ram, ram, __ATOMIC_RELEASE);
}

void guest_pause(struct guest *g)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	__atomic_store_n(&g->paused, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&g->cv);
	while (g->parked < g->nthreads)
		pthread_cond_wait(&g->cv, &g->lock);
	pthread_mutex_unlock(&g->lock);
}

void guest_resume(struct guest *g)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	__atomic_store_n(&g->paused, 0, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->lock);
}

void guest_throttle(struct guest *g, int pct)
{
	if (g)
		__atomic_store_n(&g->throttle,
				 pct < 0    ? 0
				 : pct > 99 ? 99
					    : pct,
				 __ATOMIC_RELAXED);
}

void guest_throttle_vcpu(struct guest *g, unsigned vcpu, int pct)
{
	if (g && vcpu < g->nthreads)
		__atomic_store_n(&g->w[vcpu].throttle,
				 pct < 0    ? 0
				 : pct > 99 ? 99
					    : pct,
				 __ATOMIC_RELAXED);
}

bool guest_writer_range(const struct guest *g, unsigned i, uint64_t *off,
			uint64_t *len)
{
	if (!g || !g->o.own_ranges || i >= g->o.writers)
		return false;
	uint64_t stripe = g->npages / g->o.writers;
	*off = i * stripe * g->vm->page_size;
	*len = stripe * g->vm->page_size;
	return stripe > 0;
}

uint64_t guest_work(struct guest *g)
{
	uint64_t n = 0;
	for (unsigned i = 0; g && i < g->o.writers; i++)
		n += __atomic_load_n(&g->w[i].work, __ATOMIC_RELAXED);
	return n;
}

double guest_nominal_rate(const struct guest *g, bool readers)
{
	unsigned n;

	if (!g)
		return 0;
	n = readers ? g->nthreads - g->o.writers : g->o.writers;
	return (double)n * (double)g->chunks * CHUNK * 1e9 / (double)SLICE_NS;
}

double guest_span_rate(const struct guest_span *s)
{
	uint64_t ran, done;

	if (!s->stop_ns) { /* never stopped: it ran to the end */
		if (s->end_ns <= s->start_ns || s->work_end < s->work_start)
			return 0;
		return (double)(s->work_end - s->work_start) * 1e9 /
		       (double)(s->end_ns - s->start_ns);
	}
	if (s->stop_ns <= s->start_ns || s->work_stop < s->work_start)
		return 0;
	ran = s->stop_ns - s->start_ns;
	done = s->work_stop - s->work_start;
	if (s->run_ns) { /* post-copy: it ran on at the destination */
		if (s->end_ns < s->run_ns || s->run_ns < s->stop_ns ||
		    s->work_end < s->work_run)
			return 0;
		ran += s->end_ns - s->run_ns;
		done += s->work_end - s->work_run;
	}
	return (double)done * 1e9 / (double)ran;
}

uint64_t guest_reader_work(struct guest *g)
{
	uint64_t n = 0;
	for (unsigned i = g ? g->o.writers : 0; g && i < g->nthreads; i++)
		n += __atomic_load_n(&g->w[i].work, __ATOMIC_RELAXED);
	return n;
}

uint64_t guest_writes(struct guest *g)
{
	uint64_t n = 0;
	for (unsigned i = 0; g && i < g->o.writers; i++)
		n += __atomic_load_n(&g->w[i].writes, __ATOMIC_RELAXED);
	return n;
}

void guest_stop(struct guest *g)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	__atomic_store_n(&g->quit, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->lock);
	for (unsigned i = 0; i < g->nthreads; i++)
		pthread_join(g->w[i].th, NULL);
	pthread_mutex_destroy(&g->lock);
	pthread_cond_destroy(&g->cv);
	free(g->w);
	free(g->moved);
	free(g);
}
