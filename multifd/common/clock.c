/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <time.h>

#include "multifd/common/clock.h"

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
