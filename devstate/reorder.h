/* SPDX-License-Identifier: MIT */
/*
 * Destination reorder buffer for device state in the `multifd` transfer
 * mode. Chunks of each device are numbered from 0 by the source and spread
 * over the data channels, so they arrive out of order; receive workers put
 * them here, and one loader thread per device takes them strictly in order.
 *
 * Bound: the payload bytes held (reserved, filled or waiting) never exceed
 * max_bytes. A receiver whose chunk does not fit blocks, abortably, until a
 * loader frees space: back-pressure on its channel instead of growth.
 * Deadlock freedom: the last max_chunk bytes of the bound are kept for the
 * chunk each device's loader needs next, so the oldest chunk still in
 * flight can always get in (the source sends every device's chunks in
 * sequence order).
 *
 * Validation, before the payload is read: device index < ndevs
 * (MFD_EDEVICE); 0 < len <= max_chunk, or len 0 only on the last chunk
 * (MFD_ELENGTH); seq not yet loaded, not already received, below
 * next + window and not after the device's last chunk (MFD_EROUND).
 *
 * Thread-safe: any number of receivers and one loader per device.
 */
#ifndef DEVSTATE_REORDER_H
#define DEVSTATE_REORDER_H

#include <stdbool.h>
#include <stdint.h>

struct mfd__reorder;

struct mfd__rchunk {
	struct mfd__rchunk *next;
	uint32_t dev;
	uint32_t seq;
	uint32_t len;
	bool last;
	bool ready; /* committed by its receiver */
	bool full;  /* room for max_chunk bytes: kept for reuse when spent */
	/* Placed chunk received in place (devload.c): data holds nseg
	 * struct mfd_dev_seg, then the inline bytes; len is what is held. */
	bool placed;
	uint32_t nseg;
	/* Aligned: placed chunks keep their segments here. */
	_Alignas(16) uint8_t data[];
};

struct mfd__reorder_stats {
	uint64_t peak_bytes; /* highest bytes held */
	uint64_t waits;	     /* times a receiver blocked on the bound */
	uint64_t chunks;     /* chunks loaded */
};

#define MFD_DEV_SEQ_WINDOW 65536U

/* max_bytes >= 2 * max_chunk, else -EINVAL. */
int mfd__reorder_new(struct mfd__reorder **out, unsigned ndevs,
		     uint64_t max_bytes, uint32_t max_chunk, uint32_t window);
void mfd__reorder_free(struct mfd__reorder *r);

/*
 * Receiver: validate a chunk header and reserve room for its payload,
 * blocking while the bound is reached (at most the timeout set). On 0, *out
 * has len bytes of data to fill; then commit() (or drop() if the payload
 * could not be read). Returns a validation error, MFD_EDEVBUFFER, or the
 * abort error.
 */
int mfd__reorder_reserve(struct mfd__reorder *r, uint32_t dev, uint32_t seq,
			 uint32_t len, bool last, struct mfd__rchunk **out);
void mfd__reorder_commit(struct mfd__reorder *r, struct mfd__rchunk *c);
void mfd__reorder_drop(struct mfd__reorder *r, struct mfd__rchunk *c);

/*
 * Loader of dev: the next chunk in order (0 and *out), 1 when the last
 * chunk has been taken, or the abort error. release() frees the chunk once
 * it is applied.
 */
int mfd__reorder_next(struct mfd__reorder *r, uint32_t dev,
		      struct mfd__rchunk **out);
void mfd__reorder_release(struct mfd__reorder *r, struct mfd__rchunk *c);

/* Chunks of dev its loader has released (applied): chunks 0 .. n-1. */
uint32_t mfd__reorder_applied(struct mfd__reorder *r, uint32_t dev);

/* Bounds a receiver's wait for room: after timeout_ms in which no chunk was
 * released or dropped (the loaders' progress), reserve() returns
 * MFD_EDEVBUFFER (0, the default: no bound, tests only). */
void mfd__reorder_set_timeout(struct mfd__reorder *r, uint64_t timeout_ms);

/* Wakes every waiter with err (< 0); later calls return it. */
void mfd__reorder_abort(struct mfd__reorder *r, int err);
/* Whether dev's last chunk has been taken by its loader. */
bool mfd__reorder_dev_done(struct mfd__reorder *r, uint32_t dev);
uint64_t mfd__reorder_bytes(struct mfd__reorder *r);
void mfd__reorder_get_stats(struct mfd__reorder *r,
			    struct mfd__reorder_stats *st);

#endif /* DEVSTATE_REORDER_H */
