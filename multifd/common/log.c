/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "multifd/common/log.h"

static int log_level = -1;

void mfd__log(int level, const char *fmt, ...)
{
	int lvl = __atomic_load_n(&log_level, __ATOMIC_RELAXED);
	if (lvl < 0) {
		const char *env = getenv("MFD_LOG");
		lvl = env ? atoi(env) : MFD_LOG_WARN;
		__atomic_store_n(&log_level, lvl, __ATOMIC_RELAXED);
	}
	if (level > lvl)
		return;
	static const char *const tags[] = { "error", "warning", "info",
					    "debug" };
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One write per line so lines of concurrent threads do not mix. */
	fprintf(stderr, "multifd: %s: %s\n", tags[level & 3], line);
}
