/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "multifd/common/barrier.h"

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
