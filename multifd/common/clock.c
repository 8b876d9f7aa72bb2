/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

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

int mfd__gettid(void)
{
	return (int)syscall(SYS_gettid);
}

int mfd__thread_sched(int tid, uint64_t *cpu_ns, uint64_t *wait_ns)
{
	char path[64], buf[96];
	*cpu_ns = *wait_ns = 0;
	snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", tid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	int err = n < 0 ? -errno : 0;
	close(fd);
	if (err)
		return err;
	buf[n] = 0;
	char *end;
	uint64_t cpu = strtoull(buf, &end, 10);
	if (end == buf)
		return -EINVAL;
	char *p = end;
	uint64_t wait = strtoull(p, &end, 10);
	if (end == p)
		return -EINVAL;
	*cpu_ns = cpu;
	*wait_ns = wait;
	return 0;
}

/* The kernel's struct sched_attr (include/uapi/linux/sched/types.h),
 * version 1; glibc 2.36 has no wrapper. */
struct short_slice_attr {
	uint32_t size;
	uint32_t sched_policy;
	uint64_t sched_flags;
	int32_t sched_nice;
	uint32_t sched_priority;
	uint64_t sched_runtime, sched_deadline, sched_period;
	uint32_t sched_util_min, sched_util_max;
};

/* 100 us: the shortest slice the kernel accepts for the fair class. */
#define SHORT_SLICE_NS 100000ULL

int mfd__thread_short_slice(void)
{
#ifdef SYS_sched_setattr
	struct short_slice_attr a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	if (syscall(SYS_sched_getattr, 0, &a, sizeof(a), 0))
		return -errno;
	if (a.sched_policy != 0 /* SCHED_OTHER */)
		return 0; /* the embedder chose a policy: keep it */
	a.size = sizeof(a);
	a.sched_flags = 0;
	a.sched_runtime = SHORT_SLICE_NS;
	if (syscall(SYS_sched_setattr, 0, &a, 0))
		return -errno;
	return 0;
#else
	return -ENOSYS;
#endif
}

int mfd__thread_urgent(unsigned rt_prio, uint32_t *count)
{
	struct sched_param sp;
	int policy;

	if (rt_prio && !pthread_getschedparam(pthread_self(), &policy, &sp) &&
	    policy == SCHED_OTHER) {
		sp.sched_priority = (int)rt_prio;
		if (!pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp)) {
			__atomic_fetch_add(count, 1, __ATOMIC_RELAXED);
			return 1;
		}
	}
	(void)mfd__thread_short_slice();
	return 0;
}

void mfd__thread_urgent_end(int rt)
{
	struct sched_param sp = { .sched_priority = 0 };

	if (rt)
		(void)pthread_setschedparam(pthread_self(), SCHED_OTHER, &sp);
}

int mfd__thread_lower(int tid, int nice)
{
	errno = 0;
	int cur = getpriority(PRIO_PROCESS, (id_t)tid);
	if (cur == -1 && errno)
		return -errno;
	if (cur >= nice)
		return 0;
	return setpriority(PRIO_PROCESS, (id_t)tid, nice) ? -errno : 0;
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
