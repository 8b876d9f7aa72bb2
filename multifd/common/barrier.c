/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "multifd/multifd.h"
#include "multifd/common/barrier.h"
#include "multifd/common/clock.h"

int mfd__barrier_init(struct mfd__barrier *b, unsigned n)
{
	memset(b, 0, sizeof(*b));
	b->n = n;
	pthread_mutex_init(&b->lock, NULL);
	mfd__cond_init_mono(&b->cv);
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
	uint64_t end =
		b->timeout_ms ? mfd__deadline_ms(b->timeout_ms) : UINT64_MAX;
	if (b->aborted) {
		ret = -ECANCELED;
	} else if (b->left) {
		ret = MFD_EROUND;
	} else if (++b->waiting == b->n) {
		if (b->complete)
			b->complete(b->complete_arg);
		b->waiting = 0;
		b->generation++;
		pthread_cond_broadcast(&b->cv);
	} else {
		uint64_t gen = b->generation;
		uint64_t seen = b->progress ? __atomic_load_n(b->progress,
							      __ATOMIC_RELAXED)
					    : 0;
		/* The generation first: a barrier that completed is passed
		 * even if it was aborted or left right after. */
		while (gen == b->generation && !b->aborted && !b->left &&
		       !ret) {
			if (!mfd__cond_wait_until(&b->cv, &b->lock, end))
				continue;
			uint64_t now =
				b->progress ? __atomic_load_n(b->progress,
							      __ATOMIC_RELAXED)
					    : seen;
			if (now == seen) {
				ret = MFD_EBARRIER;
			} else { /* the others still receive: wait on */
				seen = now;
				end = mfd__deadline_ms(b->timeout_ms);
			}
		}
		if (gen != b->generation)
			ret = 0;
		else if (b->aborted)
			ret = -ECANCELED;
		else if (b->left)
			ret = MFD_EROUND;
		if (ret)
			b->waiting--;
	}
	pthread_mutex_unlock(&b->lock);
	return ret;
}

void mfd__barrier_leave(struct mfd__barrier *b)
{
	pthread_mutex_lock(&b->lock);
	b->left = true;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->lock);
}

void mfd__barrier_drop(struct mfd__barrier *b)
{
	pthread_mutex_lock(&b->lock);
	if (b->n)
		b->n--;
	if (b->waiting && b->waiting >= b->n) {
		b->waiting = 0;
		b->generation++;
		pthread_cond_broadcast(&b->cv);
	}
	pthread_mutex_unlock(&b->lock);
}

void mfd__barrier_abort(struct mfd__barrier *b)
{
	pthread_mutex_lock(&b->lock);
	b->aborted = true;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->lock);
}
