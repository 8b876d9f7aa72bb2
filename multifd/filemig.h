/* SPDX-License-Identifier: MIT */
/*
 * Migration to a file and back (docs/architecture.md, "File migration";
 * the image is docs/protocol.md 11). The source engine's parts are reused
 * (session, blocks, dirty tracker, scanner, device set, hooks); what is
 * left of a channel is a writer thread whose "send" is a pwritev at the
 * page's fixed offset, and on the destination a reader whose "receive" is
 * a preadv straight into guest memory. There is no peer: no handshake, no
 * return path, no two-phase handover.
 *
 * Both runs are called on the migration (loader) thread, which owns the
 * session; they spawn and join their own writers or readers.
 */
#ifndef MULTIFD_FILEMIG_H
#define MULTIFD_FILEMIG_H

#include <pthread.h>
#include <stdbool.h>

#include "devstate/devstate.h"
#include "multifd/multifd.h"
#include "multifd/postcopy_dst.h"
#include "multifd/session.h"

/* The path of a "file:PATH" URI, or NULL for any other URI. */
const char *mfd__file_uri_path(const char *uri);

/*
 * Source: saves the guest to path: pre-copy rounds overwriting pages in
 * place while the guest runs, the stop hook, the final round, the device
 * state, bitmaps and end record, fsync. On failure the devices go back to
 * RUNNING and the resume hook is called if the stop hook was; the file is
 * left incomplete (no end record: a restore refuses it). On success the
 * guest stays stopped, as after a migration. 0 or the error (its reason
 * recorded in the session). *dev_bytes (atomic) counts the device state
 * written.
 */
int mfd__file_save(struct mfd__session *ss, const mfd_source_hooks *hooks,
		   struct mfd__devset *devs, uint64_t *dev_bytes,
		   const char *path);

/* Lazy restore (lazy-restore = on): where the post-copy state lives (the
 * destination's, kept after the load for its measures and, after a
 * failure, its registration), and up, set under lock once it is
 * initialised. */
struct mfd__file_lazy {
	struct mfd__pc_dst *pc;
	bool *up;
	pthread_mutex_t *lock;
};

/*
 * Destination: checks the image at path against the registered blocks and
 * devices, reads the pages present with the channels' readers in parallel
 * into guest memory, checks every digest, loads the device state, then
 * calls the loaded hook (the failed hook on any error). 0 or the error;
 * *dev_bytes (atomic) counts the device state loaded.
 */
int mfd__file_load(struct mfd__session *ss, const mfd_dest_hooks *hooks,
		   struct mfd__devset *devs, uint64_t *dev_bytes,
		   const char *path, const struct mfd__file_lazy *lazy);

#endif /* MULTIFD_FILEMIG_H */
