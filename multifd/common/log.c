/* SPDX-License-Identifier: MIT */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "multifd/common/log.h"

/*
 * The log sink: mfd_set_log()'s callback, or stderr. Guarded by log_lock,
 * which is held only to copy the sink, never while a line is written.
 */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static mfd_log_fn log_fn;
static void *log_opaque;
static int log_level = -1; /* -1: not read from $MFD_LOG yet */

/* The calling thread's last error line. */
static __thread char last_error[1024];

void mfd_set_log(mfd_log_fn fn, void *opaque, int level)
{
	pthread_mutex_lock(&log_lock);
	log_fn = fn;
	log_opaque = opaque;
	log_level = level;
	pthread_mutex_unlock(&log_lock);
}

const char *mfd__log_last_error(void)
{
	return last_error[0] ? last_error : NULL;
}

void mfd__log_forget(void)
{
	last_error[0] = 0;
}

void mfd__log(int level, const char *fmt, ...)
{
	pthread_mutex_lock(&log_lock);
	if (log_level < 0) {
		const char *env = getenv("MFD_LOG");
		log_level = env ? atoi(env) : MFD_LOG_WARN;
	}
	int lvl = log_level;
	mfd_log_fn fn = log_fn;
	void *opaque = log_opaque;
	pthread_mutex_unlock(&log_lock);
	if (level > lvl && level != MFD_LOG_ERROR)
		return;
	static const char *const tags[] = { "error", "warning", "info",
					    "debug" };
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (level == MFD_LOG_ERROR)
		snprintf(last_error, sizeof(last_error), "%s", line);
	if (level > lvl)
		return;
	if (fn)
		fn(opaque, level, line);
	else /* one write per line so lines of threads do not mix */
		fprintf(stderr, "multifd: %s: %s\n", tags[level & 3], line);
}
