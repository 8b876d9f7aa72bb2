/* SPDX-License-Identifier: MIT */
/* Version, error texts, logging, clocks, digests, the sync barrier. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
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

static int log_level = -1;

void mfd__log(int level, const char *fmt, ...)
{
	int lvl = __atomic_load_n(&log_level, __ATOMIC_RELAXED);
	if (lvl < 0) {
		const char *env = getenv("MFD_LOG");
		lvl = env ? atoi(env) : MFD_LOG_WARN;
		__atomic_store_n(&log_level, lvl, __ATOMIC_RELAXED);
	}
	if (level > lvl)
		return;
	static const char *const tags[] = {"error", "warning", "info",
					   "debug"};
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One write per line so lines of concurrent threads do not mix. */
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

void mfd__digest(const void *data, uint64_t len, uint8_t out[MFD_DIGEST_SIZE])
{
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, XXH3_128bits(data, (size_t)len));
	memcpy(out, c.digest, MFD_DIGEST_SIZE);
}

int mfd__barrier_init(struct mfd__barrier *b, unsigned n)
{
	memset(b, 0, sizeof(*b));
	b->n = n;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cv, NULL);
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
	if (b->aborted) {
		ret = -ECANCELED;
	} else if (++b->waiting == b->n) {
		b->waiting = 0;
		b->generation++;
		pthread_cond_broadcast(&b->cv);
	} else {
		uint64_t gen = b->generation;
		while (gen == b->generation && !b->aborted)
			pthread_cond_wait(&b->cv, &b->lock);
		if (gen == b->generation)
			ret = -ECANCELED;
	}
	pthread_mutex_unlock(&b->lock);
	return ret;
}

void mfd__barrier_abort(struct mfd__barrier *b)
{
	pthread_mutex_lock(&b->lock);
	b->aborted = true;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->lock);
}
