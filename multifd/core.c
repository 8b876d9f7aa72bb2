/* SPDX-License-Identifier: MIT */
/* Version, error texts, logging, clocks, digests, the sync barrier. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "multifd/internal.h"

int mfd_version(void)
{
	return MFD_VERSION_NUMBER;
}

const char *mfd_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
#define XX(name, code, text)                                                   \
	case -(code):                                                          \
		return text;
		MFD_ERRNO_MAP(XX)
#undef XX
	default:
		break;
	}
	if (err < 0 && err > -4096)
		return strerror(-err); /* glibc: static text for known errnos */
	return "unknown error";
}

const char *mfd_phase_name(int phase)
{
	static const char *const names[] = {
		[MFD_PHASE_NONE] = "none",
		[MFD_PHASE_SETUP] = "setup",
		[MFD_PHASE_PRECOPY] = "precopy",
		[MFD_PHASE_SWITCHOVER] = "switchover",
		[MFD_PHASE_COMPLETED] = "completed",
		[MFD_PHASE_FAILED] = "failed",
		[MFD_PHASE_CANCELLED] = "cancelled",
	};
	if (phase < 0 || (size_t)phase >= MFD_ARRAY_SIZE(names))
		return "unknown";
	return names[phase];
}

uint64_t mfd__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t mfd__thread_cpu_ns(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts))
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/*
 * The log sink: mfd_set_log()'s callback, or stderr. Guarded by log_lock,
 * which is held only to copy the sink, never while a line is written.
 */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static mfd_log_fn log_fn;
static void *log_opaque;
static int log_level = -1; /* -1: not read from $MFD_LOG yet */

/* The calling thread's last error line (session.c keeps it as the reason
 * of a failure this thread records). */
static __thread char last_error[1024];

void mfd_set_log(mfd_log_fn fn, void *opaque, int level)
{
	pthread_mutex_lock(&log_lock);
	log_fn = fn;
	log_opaque = opaque;
	log_level = level;
	pthread_mutex_unlock(&log_lock);
}

const char *mfd__log_last_error(void)
{
	return last_error[0] ? last_error : NULL;
}

void mfd__log_forget(void)
{
	last_error[0] = 0;
}

void mfd__log(int level, const char *fmt, ...)
{
	pthread_mutex_lock(&log_lock);
	if (log_level < 0) {
		const char *env = getenv("MFD_LOG");
		log_level = env ? atoi(env) : MFD_LOG_WARN;
	}
	int lvl = log_level;
	mfd_log_fn fn = log_fn;
	void *opaque = log_opaque;
	pthread_mutex_unlock(&log_lock);
	if (level > lvl && level != MFD_LOG_ERROR)
		return;
	static const char *const tags[] = { "error", "warning", "info",
					    "debug" };
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (level == MFD_LOG_ERROR)
		snprintf(last_error, sizeof(last_error), "%s", line);
	if (level > lvl)
		return;
	if (fn)
		fn(opaque, level, line);
	else /* one write per line so lines of threads do not mix */
		fprintf(stderr, "multifd: %s: %s\n", tags[level & 3], line);
}

int mfd__random_bytes(void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = getrandom(p, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Block digest (docs/protocol.md): XXH3-128 of the concatenated canonical
 * XXH3-128 digests of the block's MFD_DIGEST_CHUNK-byte chunks (the last
 * one shorter). Chunks let every core hash at once: the digests sit inside
 * the downtime.
 */
struct digest_work {
	const struct mfd__ramblock *blocks;
	unsigned nblocks;
	uint8_t **chunk_digests; /* per block */
	uint64_t *first_chunk;	 /* global index of each block's chunk 0 */
	uint64_t total_chunks;
	uint64_t next;	 /* atomic */
	uint64_t cpu_ns; /* of the helper threads, atomic */
};

static uint64_t nchunks(uint64_t size)
{
	return (size + MFD_DIGEST_CHUNK - 1) / MFD_DIGEST_CHUNK;
}

static void digest_chunks(struct digest_work *dw)
{
	for (;;) {
		uint64_t k = __atomic_fetch_add(&dw->next, 1, __ATOMIC_RELAXED);
		if (k >= dw->total_chunks)
			return;
		unsigned b = 0;
		while (b + 1 < dw->nblocks && dw->first_chunk[b + 1] <= k)
			b++;
		uint64_t c = k - dw->first_chunk[b];
		uint64_t off = c * MFD_DIGEST_CHUNK;
		uint64_t len = dw->blocks[b].size - off;
		if (len > MFD_DIGEST_CHUNK)
			len = MFD_DIGEST_CHUNK;
		XXH128_canonical_t cd;
		XXH128_canonicalFromHash(
			&cd,
			XXH3_128bits(dw->blocks[b].host + off, (size_t)len));
		memcpy(dw->chunk_digests[b] + c * MFD_DIGEST_SIZE, cd.digest,
		       MFD_DIGEST_SIZE);
	}
}

/* A helper thread: its CPU time is counted, as every library thread's. */
static void *digest_thread(void *arg)
{
	struct digest_work *dw = arg;
	digest_chunks(dw);
	__atomic_fetch_add(&dw->cpu_ns, mfd__thread_cpu_ns(), __ATOMIC_RELAXED);
	return NULL;
}

int mfd__digest_blocks(const struct mfd__ramblock *blocks, unsigned n,
		       uint8_t (*out)[MFD_DIGEST_SIZE], uint64_t *cpu_ns)
{
	struct digest_work dw = { .blocks = blocks, .nblocks = n };
	int ret = -ENOMEM;
	dw.chunk_digests = calloc(n, sizeof(*dw.chunk_digests));
	dw.first_chunk = calloc(n, sizeof(*dw.first_chunk));
	if (!dw.chunk_digests || !dw.first_chunk)
		goto out;
	for (unsigned i = 0; i < n; i++) {
		dw.first_chunk[i] = dw.total_chunks;
		dw.total_chunks += nchunks(blocks[i].size);
		dw.chunk_digests[i] =
			malloc(nchunks(blocks[i].size) * MFD_DIGEST_SIZE);
		if (!dw.chunk_digests[i])
			goto out;
	}
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned nth = cpus < 1 ? 1 : cpus > 8 ? 8 : (unsigned)cpus;
	if (nth > dw.total_chunks)
		nth = (unsigned)dw.total_chunks;
	pthread_t th[8];
	unsigned started = 0;
	for (unsigned i = 1; i < nth; i++)
		if (pthread_create(&th[started], NULL, digest_thread, &dw) == 0)
			started++;
	digest_chunks(&dw);
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	if (cpu_ns)
		__atomic_fetch_add(cpu_ns, dw.cpu_ns, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < n; i++) {
		XXH128_canonical_t cd;
		XXH128_canonicalFromHash(&cd,
					 XXH3_128bits(dw.chunk_digests[i],
						      nchunks(blocks[i].size) *
							      MFD_DIGEST_SIZE));
		memcpy(out[i], cd.digest, MFD_DIGEST_SIZE);
	}
	ret = 0;
out:
	for (unsigned i = 0; dw.chunk_digests && i < n; i++)
		free(dw.chunk_digests[i]);
	free(dw.chunk_digests);
	free(dw.first_chunk);
	return ret;
}

void mfd__cond_init_mono(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
}

int mfd__cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *lock,
			 uint64_t deadline_ns)
{
	if (mfd__now_ns() >= deadline_ns)
		return ETIMEDOUT;
	struct timespec ts = { .tv_sec = (time_t)(deadline_ns / 1000000000),
			       .tv_nsec = (long)(deadline_ns % 1000000000) };
	int r = pthread_cond_timedwait(cv, lock, &ts);
	return r == ETIMEDOUT || mfd__now_ns() >= deadline_ns ? ETIMEDOUT : 0;
}

uint64_t mfd__deadline_ms(uint64_t ms)
{
	uint64_t now = mfd__now_ns();
	return ms > (UINT64_MAX - now) / 1000000 ? UINT64_MAX
						 : now + ms * 1000000;
}

int mfd__barrier_init(struct mfd__barrier *b, unsigned n)
{
	memset(b, 0, sizeof(*b));
	b->n = n;
	pthread_mutex_init(&b->lock, NULL);
	mfd__cond_init_mono(&b->cv);
	return 0;
}

void mfd__barrier_destroy(struct mfd__barrier *b)
{
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cv);
}

int mfd__barrier_wait(struct mfd__barrier *b)
{
	int ret = 0;
	pthread_mutex_lock(&b->lock);
	uint64_t end =
		b->timeout_ms ? mfd__deadline_ms(b->timeout_ms) : UINT64_MAX;
	if (b->aborted) {
		ret = -ECANCELED;
	} else if (b->left) {
		ret = MFD_EROUND;
	} else if (++b->waiting == b->n) {
		b->waiting = 0;
		b->generation++;
		pthread_cond_broadcast(&b->cv);
	} else {
		uint64_t gen = b->generation;
		uint64_t seen = b->progress ? __atomic_load_n(b->progress,
							      __ATOMIC_RELAXED)
					    : 0;
		/* The generation first: a barrier that completed is passed
		 * even if it was aborted or left right after. */
		while (gen == b->generation && !b->aborted && !b->left &&
		       !ret) {
			if (!mfd__cond_wait_until(&b->cv, &b->lock, end))
				continue;
			uint64_t now =
				b->progress ? __atomic_load_n(b->progress,
							      __ATOMIC_RELAXED)
					    : seen;
			if (now == seen) {
				ret = MFD_EBARRIER;
			} else { /* the others still receive: wait on */
				seen = now;
				end = mfd__deadline_ms(b->timeout_ms);
			}
		}
		if (gen != b->generation)
			ret = 0;
		else if (b->aborted)
			ret = -ECANCELED;
		else if (b->left)
			ret = MFD_EROUND;
		if (ret)
			b->waiting--;
	}
	pthread_mutex_unlock(&b->lock);
	return ret;
}

void mfd__barrier_leave(struct mfd__barrier *b)
{
	pthread_mutex_lock(&b->lock);
	b->left = true;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->lock);
}

void mfd__barrier_abort(struct mfd__barrier *b)
{
	pthread_mutex_lock(&b->lock);
	b->aborted = true;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->lock);
}
