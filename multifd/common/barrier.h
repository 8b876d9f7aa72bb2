/* SPDX-License-Identifier: MIT */
/* An abortable, bounded barrier (the destination's per-round sync). */
#ifndef MULTIFD_COMMON_BARRIER_H
#define MULTIFD_COMMON_BARRIER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

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
	/* Optional: called by the last participant to arrive, before any
	 * is released, under the barrier's lock: the one moment of a round
	 * when no participant runs (not when a drop completes it). */
	void (*complete)(void *arg);
	void *complete_arg;
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
/* A participant that is gone for good while the others go on (a lost
 * channel): it no longer counts, and a barrier that waited only for it
 * completes. Called by that participant after its last write. */
void mfd__barrier_drop(struct mfd__barrier *b);
void mfd__barrier_abort(struct mfd__barrier *b);

#endif /* MULTIFD_COMMON_BARRIER_H */
