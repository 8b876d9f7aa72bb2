/* SPDX-License-Identifier: MIT */
/* Tracker selection and the manual tracker. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "multifd/common/log.h"
#include "ramblock/tracker.h"

static int manual_start(struct mfd__tracker *t)
{
	(void)t;
	return 0;
}

static int manual_sync(struct mfd__tracker *t, unsigned i)
{
	(void)t;
	(void)i;
	return 0; /* the log is harvested by mfd__tracker_sync() */
}

static void manual_stop(struct mfd__tracker *t)
{
	(void)t;
}

const struct mfd__tracker_ops mfd__tracker_manual = {
	.name = "manual",
	.start = manual_start,
	.sync = manual_sync,
	.stop = manual_stop,
};

const char *mfd__tracker_name(int kind)
{
	return kind == MFD__TRACKER_UFFD_WP ? "uffd-wp" : "manual";
}

int mfd__tracker_start(struct mfd__tracker *t, int kind,
		       struct mfd__ramblock *blocks, unsigned nblocks)
{
	memset(t, 0, sizeof(*t));
	t->uffd = -1;
	t->pagemap = -1;
	t->blocks = blocks;
	t->nblocks = nblocks;
	if (kind == MFD__TRACKER_UFFD_WP) {
		const char *why = NULL;
		if (mfd__tracker_uffd_supported(&why)) {
			t->ops = &mfd__tracker_uffd_wp;
			t->kind = MFD__TRACKER_UFFD_WP;
			int ret = t->ops->start(t);
			if (!ret)
				return 0;
			why = strerror(-ret);
			t->ops->stop(t);
			memset(t, 0, sizeof(*t));
			t->uffd = -1;
			t->pagemap = -1;
			t->blocks = blocks;
			t->nblocks = nblocks;
		}
		mfd__warn("dirty-tracker uffd-wp unavailable (%s): falling "
			  "back to manual (mfd_source_mark_dirty / sync_dirty "
			  "hook)",
			  why);
	}
	t->ops = &mfd__tracker_manual;
	t->kind = MFD__TRACKER_MANUAL;
	return t->ops->start(t);
}

int64_t mfd__tracker_sync(struct mfd__tracker *t, unsigned i)
{
	struct mfd__ramblock *rb = &t->blocks[i];
	int ret = t->ops->sync(t, i);
	if (ret)
		return ret;
	return (int64_t)mfd__bitmap_harvest(&rb->dirty, &rb->log);
}

void mfd__tracker_stop(struct mfd__tracker *t)
{
	if (t->ops)
		t->ops->stop(t);
	t->ops = NULL;
}
