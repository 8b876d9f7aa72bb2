/* SPDX-License-Identifier: MIT */
/* Clocks, in nanoseconds. */
#ifndef MULTIFD_COMMON_CLOCK_H
#define MULTIFD_COMMON_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC: every deadline and duration of the library. */
uint64_t mfd__now_ns(void);
/* CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID). */
uint64_t mfd__thread_cpu_ns(void);

#endif /* MULTIFD_COMMON_CLOCK_H */
