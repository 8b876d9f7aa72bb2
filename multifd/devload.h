/* SPDX-License-Identifier: MIT */
/*
 * Destination side of device state (docs/architecture.md, "Device state"):
 * the engine's hooks into dest.c. After SETUP the loader thread reads
 * DEVICES (mfd__devload_setup); DEVICE packets arrive in the receive
 * workers (mfd__devload_pkt, `multifd` mode: reorder buffer + one loader
 * thread per device), DEVICE_DATA in the main loop (mfd__devload_main,
 * `main` mode: loaded there, serially). After END, mfd__devload_finish()
 * waits for every device's LAST chunk and moves the devices to STOP.
 */
#ifndef MULTIFD_DEVLOAD_H
#define MULTIFD_DEVLOAD_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "devstate/devstate.h"
#include "devstate/reorder.h"
#include "multifd/channels/channel.h"
#include "multifd/config.h"
#include "multifd/devwire.h"

struct mfd__devloader;

struct mfd__devload {
	struct mfd__devset set;
	bool active; /* DEVICES accepted: devices left RUNNING */
	uint32_t transfer;
	struct mfd__dev_limits lim;
	struct mfd__reorder *r;	   /* multifd mode; set/cleared under *lock */
	pthread_mutex_t *lock;	   /* the destination's, guards r for abort */
	struct mfd__devloader *ld; /* multifd mode: one per device */
	uint32_t *next;		   /* main mode: next seq per device */
	uint32_t *nrecv;	   /* multifd: chunks received, atomic */
	uint32_t *last_seq;	   /* seq of the LAST chunk, when have_last */
	uint8_t *have_last;	   /* atomic */
	/* Called by a loader thread whose device failed. */
	void (*fail)(void *ctx, int err);
	void *fail_ctx;
	uint64_t bytes;	      /* applied, atomic */
	uint64_t t_round;     /* the last ROUND message, atomic */
	uint64_t down_ns;     /* atomic */
	uint64_t cpu_ns;      /* of the loader threads that ended, atomic */
	uint64_t peak, waits; /* reorder stats, atomic, set at the end */
};

void mfd__devload_init(struct mfd__devload *dl, pthread_mutex_t *lock,
		       void (*fail)(void *ctx, int err), void *ctx);
void mfd__devload_destroy(struct mfd__devload *dl);
/* After SETUP: reads and checks DEVICES when features has
 * MFD_FEAT_DEVICES, then devices to RESUMING and, in multifd mode, the
 * reorder buffer and loader threads. */
int mfd__devload_setup(struct mfd__devload *dl, const struct mfd_config *cfg,
		       uint64_t features, struct mfd__chan *main);
/* Receive worker: a DEVICE packet whose header was decoded. */
int mfd__devload_pkt(struct mfd__devload *dl, struct mfd__chan *c,
		     const struct mfd__pkt_hdr *h);
/* Main loop: a DEVICE_DATA payload; a ROUND message. */
int mfd__devload_main(struct mfd__devload *dl, const uint8_t *payload,
		      uint32_t len);
void mfd__devload_round(struct mfd__devload *dl);
/* After END and the receive workers ended. */
int mfd__devload_finish(struct mfd__devload *dl);
/* Any thread (with *lock held): wakes receivers and loaders with err. */
void mfd__devload_abort(struct mfd__devload *dl, int err);
/* Failure path, after the receive workers were joined: loaders joined,
 * devices to STOP (never RUNNING). Then frees the load state. */
void mfd__devload_failed(struct mfd__devload *dl, int err);

#endif /* MULTIFD_DEVLOAD_H */
