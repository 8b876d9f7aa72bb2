/* SPDX-License-Identifier: MIT */
/*
 * Source side of device state (docs/architecture.md, "Device state"): the
 * engine's hooks into source.c. The migration thread calls every function
 * here; in the `multifd` transfer mode chunks leave through the send pool
 * as DEVICE packets, in the `main` mode as DEVICE_DATA on the main channel.
 */
#ifndef MULTIFD_DEVSAVE_H
#define MULTIFD_DEVSAVE_H

#include <stdbool.h>
#include <stdint.h>

#include "devstate/devstate.h"
#include "multifd/config.h"
#include "multifd/pool.h"

struct mfd__devsave {
	struct mfd__devset set;
	uint32_t transfer; /* enum mfd__dev_transfer (wire numbers) */
	uint32_t chunk;	   /* bytes per chunk */
	uint32_t *seq;	   /* per device: the next chunk number */
	uint32_t *fence;   /* per device: 1 + the last unplaced chunk's seq */
	uint8_t *buf;	   /* main mode: prefix + one chunk */
	bool active;	   /* devices left RUNNING for this migration */
	uint64_t bytes;	   /* device bytes handed to a channel, atomic */
	uint64_t t_sc;	   /* STOP_COPY entered */
	uint64_t t_sent;   /* main mode: the last DEVICE_DATA sent */
	uint64_t down_ns;  /* STOP_COPY until all device state sent, atomic */
};

void mfd__devsave_init(struct mfd__devsave *ds);
void mfd__devsave_destroy(struct mfd__devsave *ds);
static inline bool mfd__devsave_any(const struct mfd__devsave *ds)
{
	return ds->set.n > 0;
}
/* After SETUP_OK: sends DEVICES, then the setup notifier (PRE_COPY). */
int mfd__devsave_start(struct mfd__devsave *ds, const struct mfd_config *cfg,
		       struct mfd__chan *main);
/* During a round: the devices' pre-copy data available now. */
int mfd__devsave_round(struct mfd__devsave *ds, struct mfd__pool *pool,
		       struct mfd__chan *main);
/* At every dirty sync: DMA-written pages into the blocks' dirty logs, and
 * the devices' pending pre-copy bytes. */
int mfd__devsave_sync(struct mfd__devsave *ds, struct mfd__ramblock *blocks,
		      unsigned nblocks, uint64_t *pending);
/* Control plane around the stop hook. */
int mfd__devsave_before_stop(struct mfd__devsave *ds);
int mfd__devsave_after_stop(struct mfd__devsave *ds);
/* Switchover: the rest of every device's state and its LAST chunk. */
int mfd__devsave_final(struct mfd__devsave *ds, struct mfd__pool *pool,
		       struct mfd__chan *main);
/* After the pool is done: the device part of the downtime; returns when
 * the last device chunk left (mfd__now_ns() clock). */
uint64_t mfd__devsave_sent(struct mfd__devsave *ds, struct mfd__pool *pool);
/* Migration-state notifier at the end: COMPLETED, or FAILED (every device
 * back to RUNNING). */
void mfd__devsave_end(struct mfd__devsave *ds, bool ok);

#endif /* MULTIFD_DEVSAVE_H */
