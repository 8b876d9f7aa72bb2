/* SPDX-License-Identifier: MIT */
/* Reset and snapshot of the counters, generated from MFD__STATS. */
#include "multifd/stats.h"

void mfd__stats_reset(struct mfd__stats *st)
{
#define RESET(type, name) STAT_SET(st->name, (type)0);
	MFD__STATS(RESET)
#undef RESET
}

void mfd__stats_snapshot(const struct mfd__stats *st, mfd_stats *out)
{
#define COPY(type, name) out->name = STAT_GET(st->name);
	MFD__STATS(COPY)
#undef COPY
}
