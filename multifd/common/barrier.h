/* SPDX-License-Identifier: MIT */
/* An abortable barrier (the destination's per-round sync). */
#ifndef MULTIFD_COMMON_BARRIER_H
#define MULTIFD_COMMON_BARRIER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct mfd__barrier {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	unsigned n, waiting;
	uint64_t generation;
	bool aborted;
};
int mfd__barrier_init(struct mfd__barrier *b, unsigned n);
void mfd__barrier_destroy(struct mfd__barrier *b);
/* 0 once all n arrived; -ECANCELED when aborted (now or while waiting). */
int mfd__barrier_wait(struct mfd__barrier *b);
/* Wakes every waiter with -ECANCELED; later waits fail at once. */
void mfd__barrier_abort(struct mfd__barrier *b);

#endif /* MULTIFD_COMMON_BARRIER_H */
