/* SPDX-License-Identifier: MIT */
/*
 * Dirty trackers: where the pages written since the last dirty sync come
 * from. One small ops table, one backend per file:
 *  - manual (tracker.c): the hypervisor reports writes with
 *    mfd_source_mark_dirty() (the block's atomic log) or hands its own
 *    bitmap through the sync_dirty hook (called by the source itself);
 *  - uffd-wp (tracker_uffd.c): the kernel tracks writes to the block's
 *    memory. The blocks are registered with a userfaultfd in asynchronous
 *    write-protect mode (UFFD_FEATURE_WP_ASYNC: a write to a protected page
 *    is resolved by the kernel, no fault reaches us) and every sync reads
 *    and re-protects the written ranges in one PAGEMAP_SCAN ioctl.
 * The log of mfd_source_mark_dirty() is harvested with either tracker.
 *
 * Ordering: a write that completes before a sync is reported by that sync;
 * a write that races with it is reported by that one or the next. Never
 * lost, at most sent twice.
 *
 * All calls are made by the migration thread.
 */
#ifndef MULTIFD_TRACKER_H
#define MULTIFD_TRACKER_H

#include <stdbool.h>
#include <stdint.h>

#include "ramblock/ramblock.h"

enum mfd__tracker_kind {
	MFD__TRACKER_MANUAL = 0,
	MFD__TRACKER_UFFD_WP = 1,
};

struct mfd__tracker;

struct mfd__tracker_ops {
	const char *name;
	/* Begin tracking every block: later writes will be reported. */
	int (*start)(struct mfd__tracker *t);
	/* OR the pages of block i written since the last sync (or start)
	 * into blocks[i].dirty. */
	int (*sync)(struct mfd__tracker *t, unsigned i);
	/* Stop tracking; the memory is left as it was. */
	void (*stop)(struct mfd__tracker *t);
};

struct mfd__tracker {
	const struct mfd__tracker_ops *ops;
	enum mfd__tracker_kind kind; /* the one actually running */
	struct mfd__ramblock *blocks;
	unsigned nblocks;
	/* uffd-wp */
	int uffd;
	int pagemap;
	void *vec; /* struct page_region[vec_len] */
	uint64_t vec_len;
	uint64_t scans; /* PAGEMAP_SCAN calls, for the curious */
};

extern const struct mfd__tracker_ops mfd__tracker_manual;
extern const struct mfd__tracker_ops mfd__tracker_uffd_wp;

/* Name of a kind ("manual", "uffd-wp"). */
const char *mfd__tracker_name(int kind);

/*
 * Starts a tracker of kind over blocks. When the kernel cannot do uffd-wp
 * (too old, userfaultfd not permitted, memory not page aligned), logs why
 * and falls back to manual: t->kind says which one runs. 0 or -errno.
 */
int mfd__tracker_start(struct mfd__tracker *t, int kind,
		       struct mfd__ramblock *blocks, unsigned nblocks);
/* Kernel-reported writes and the mark_dirty log of block i into its dirty
 * bitmap; returns the number of dirty pages of the block, or -errno. */
int64_t mfd__tracker_sync(struct mfd__tracker *t, unsigned i);
/* Accepts a tracker never started (zeroed) or already stopped. */
void mfd__tracker_stop(struct mfd__tracker *t);

/* Whether this kernel and process can run uffd-wp; when not, why (static
 * text) in *why. */
bool mfd__tracker_uffd_supported(const char **why);

#endif /* MULTIFD_TRACKER_H */
