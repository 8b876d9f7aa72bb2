/* SPDX-License-Identifier: MIT */
/* Clocks, in nanoseconds. */
#ifndef MULTIFD_COMMON_CLOCK_H
#define MULTIFD_COMMON_CLOCK_H

#include <pthread.h>
#include <stdint.h>

/* CLOCK_MONOTONIC: every deadline and duration of the library. */
uint64_t mfd__now_ns(void);
/* CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID). */
uint64_t mfd__thread_cpu_ns(void);
/* The calling thread's id (gettid). */
int mfd__gettid(void);
/*
 * The scheduler's account of thread tid of this process: its CPU time and
 * the time it spent runnable but waiting for a CPU (run_delay), from
 * /proc/self/task/<tid>/schedstat. 0, or -errno (no procfs, a thread that
 * has gone, a kernel without schedstats): the figures are then 0.
 */
int mfd__thread_sched(int tid, uint64_t *cpu_ns, uint64_t *wait_ns);

/*
 * Asks the scheduler to run the calling thread soon after it wakes: a
 * fair-class thread with a short slice (sched_setattr's sched_runtime,
 * honoured by EEVDF since Linux 6.12; ignored before), which preempts a
 * busy thread of the default slice at wakeup. No privilege needed, no
 * effect on priority or CPU share. For the threads on a post-copy page
 * request's path, which sleep most of the time. Best effort: 0 or
 * -errno, and the caller may ignore it.
 */
int mfd__thread_short_slice(void);

/*
 * The calling thread is on a post-copy page request's path: SCHED_FIFO
 * at priority rt_prio (1..99) where the process may set it (CAP_SYS_NICE,
 * or RLIMIT_RTPRIO), so that it runs as soon as it wakes whatever else
 * keeps the CPUs busy; else (rt_prio 0, or refused) the short slice
 * above. A thread whose policy the embedder chose (anything but
 * SCHED_OTHER, e.g. inherited) keeps it. 1 when the thread now runs
 * SCHED_FIFO (and *count, a statistic, went up by one, atomically), 0
 * otherwise. Such a thread must sleep between short pieces of work: it
 * preempts every fair-class thread on its CPU.
 */
int mfd__thread_urgent(unsigned rt_prio, uint32_t *count);

/* Back to SCHED_OTHER if mfd__thread_urgent() returned rt = 1: before the
 * thread does anything but its request work (failure paths, hooks). */
void mfd__thread_urgent_end(int rt);

/*
 * Lowers thread tid (0: the calling thread) to nice value `nice` if it
 * runs above it (setpriority on the thread; lowering needs no privilege,
 * and is not undone: a thread is never raised). For the post-copy data
 * channels' threads, so that the request path's threads get the CPU
 * first. 0 or -errno; the caller may ignore it.
 */
int mfd__thread_lower(int tid, int nice);

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

#endif /* MULTIFD_COMMON_CLOCK_H */
