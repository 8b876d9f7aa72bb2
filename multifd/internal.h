/* SPDX-License-Identifier: MIT */
/* Internals shared by the engine's files (prefix mfd__). */
#ifndef MULTIFD_INTERNAL_H
#define MULTIFD_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "multifd/multifd.h"
#include "multifd/config.h"
#include "multifd/wire.h"
#include "ramblock/ramblock.h"

#define MFD_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

uint64_t mfd__now_ns(void);
/* CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID), ns. */
uint64_t mfd__thread_cpu_ns(void);

/* Logs through mfd_set_log()'s sink (default: stderr when level <=
 * $MFD_LOG, warnings by default). An error-level line is also kept as the
 * calling thread's last error (mfd__log_last_error()), whatever the level
 * of the sink. */
void mfd__log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The last error-level line this thread logged since the last
 * mfd__log_forget(), or NULL. */
const char *mfd__log_last_error(void);
void mfd__log_forget(void);
#define mfd__err(...)  mfd__log(MFD_LOG_ERROR, __VA_ARGS__)
#define mfd__warn(...) mfd__log(MFD_LOG_WARN, __VA_ARGS__)
#define mfd__info(...) mfd__log(MFD_LOG_INFO, __VA_ARGS__)
#define mfd__dbg(...)  mfd__log(MFD_LOG_DEBUG, __VA_ARGS__)

/*
 * iovecs for n pages of size psize at host + offsets[i] (offsets already
 * validated), contiguous pages coalesced into one iovec so that a fully
 * dirty region costs one. Returns the number of iovecs written.
 */
static inline int mfd__pages_iov(uint8_t *host, const uint64_t *offsets,
				 uint32_t n, uint64_t psize, struct iovec *iov)
{
	int iovcnt = 0;
	uint8_t *prev_end = NULL;
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *page = host + offsets[i];
		if (page == prev_end) {
			iov[iovcnt - 1].iov_len += psize;
		} else {
			iov[iovcnt].iov_base = page;
			iov[iovcnt].iov_len = psize;
			iovcnt++;
		}
		prev_end = page + psize;
	}
	return iovcnt;
}

/* Fills buf from the kernel's CSPRNG; 0 or -errno. */
int mfd__random_bytes(void *buf, size_t len);

/* Digests of every block, as docs/protocol.md defines them, computed on
 * all online CPUs. 0 or -ENOMEM. The CPU time of the helper threads it
 * starts (not the caller's own) is added to *cpu_ns (atomically). */
#define MFD_DIGEST_CHUNK (16ULL << 20)
int mfd__digest_blocks(const struct mfd__ramblock *blocks, unsigned n,
		       uint8_t (*out)[MFD_DIGEST_SIZE], uint64_t *cpu_ns);

/*
 * Test hook (tests/test_verify.c), NULL in production: the destination
 * calls it once per migration, after every receive worker has ended and
 * before it compares the digests, with each block's memory, so that a test
 * can change a placed page. Not exported (the library is built with
 * -fvisibility=hidden); it costs one load and branch per migration.
 */
extern void (*mfd__test_dest_placed)(unsigned block, uint8_t *host,
				     uint64_t size);

/*
 * Condition variables on CLOCK_MONOTONIC, and a wait until an absolute
 * mfd__now_ns() deadline: 0 when signalled (or spuriously woken), ETIMEDOUT
 * once the deadline has passed.
 */
void mfd__cond_init_mono(pthread_cond_t *cv);
int mfd__cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *lock,
			 uint64_t deadline_ns);
/* now + ms, saturating. */
uint64_t mfd__deadline_ms(uint64_t ms);

/*
 * Abortable barrier for the destination's per-round sync. Every wait is
 * bounded: by timeout_ms without progress (0: none, for tests only), by an
 * abort, and by a participant leaving for good (its channel ended), after
 * which no barrier can ever be complete again. Progress is *progress (an
 * atomic counter of what the participants still on their way receive;
 * NULL: none): a slow round is not a stalled one.
 */
struct mfd__barrier {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	unsigned n, waiting;
	uint64_t generation;
	uint64_t timeout_ms;
	const uint64_t *progress;
	bool aborted;
	bool left; /* a participant will never wait again */
};
int mfd__barrier_init(struct mfd__barrier *b, unsigned n);
void mfd__barrier_destroy(struct mfd__barrier *b);
/* 0 once all n arrived; -ECANCELED when aborted (now or while waiting);
 * MFD_EROUND when a participant has left (mfd__barrier_leave), since the
 * round can then never be complete; MFD_EBARRIER when timeout_ms passed
 * with no progress. */
int mfd__barrier_wait(struct mfd__barrier *b);
/* A participant that will never wait again (its channel ended). */
void mfd__barrier_leave(struct mfd__barrier *b);
void mfd__barrier_abort(struct mfd__barrier *b);

/*
 * The guest writes its memory while send workers read it: by design (a page
 * written during its send is dirty again and goes out in a later round).
 * Under ThreadSanitizer the workers' reads of guest pages are therefore not
 * tracked; everything else still is.
 */
#if defined(__SANITIZE_THREAD__)
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
#define MFD_GUEST_READS_BEGIN() AnnotateIgnoreReadsBegin(__FILE__, __LINE__)
#define MFD_GUEST_READS_END()	AnnotateIgnoreReadsEnd(__FILE__, __LINE__)
#else
#define MFD_GUEST_READS_BEGIN() ((void)0)
#define MFD_GUEST_READS_END()	((void)0)
#endif

#endif /* MULTIFD_INTERNAL_H */
