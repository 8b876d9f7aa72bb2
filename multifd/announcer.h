/* SPDX-License-Identifier: MIT */
/*
 * The announcement rounds on their own thread (include/multifd/announce.h):
 * the destination starts it after the guest runs and never waits for it on
 * its return path.
 */
#ifndef MULTIFD_ANNOUNCER_H
#define MULTIFD_ANNOUNCER_H

#include <net/if.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "multifd/announce.h"

struct mfd__announcer {
	pthread_mutex_t lock;
	pthread_cond_t cv; /* CLOCK_MONOTONIC: stop wakes the sleeper */
	bool stop;	   /* under lock */
	pthread_t thread;
	bool started; /* thread to join */
	int result;
	/* What to announce: the hook when set, else frames for macs. */
	mfd_announce_params p;
	int (*hook)(void *opaque, unsigned round);
	void *opaque;
	char ifname[IF_NAMESIZE];
	uint8_t (*macs)[6];
	unsigned nmacs;
	uint64_t *cpu_ns; /* atomically += the thread's CPU time at its end */
};

void mfd__announcer_init(struct mfd__announcer *a);
/* Checks and copies the list (nmacs 0 clears it). */
int mfd__announcer_set(struct mfd__announcer *a, const char *ifname,
		       const uint8_t (*macs)[6], unsigned nmacs);
/* Starts the rounds unless there is nothing to announce (then 0). */
int mfd__announcer_start(struct mfd__announcer *a, const mfd_announce_params *p,
			 int (*hook)(void *opaque, unsigned round),
			 void *opaque, uint64_t *cpu_ns);
/* Joins the thread; its result. stop: ends the rounds still due first and
 * forgets the result (the next join without a new start returns 0). */
int mfd__announcer_join(struct mfd__announcer *a, bool stop);
/* Joins with stop, frees the list. */
void mfd__announcer_destroy(struct mfd__announcer *a);

#endif /* MULTIFD_ANNOUNCER_H */
