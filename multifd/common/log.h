/* SPDX-License-Identifier: MIT */
/* Diagnostics of every layer (prefix mfd__): one line per message, to the
 * sink mfd_set_log() chose (include/multifd/multifd.h; default stderr). */
#ifndef MULTIFD_COMMON_LOG_H
#define MULTIFD_COMMON_LOG_H

#include "multifd/multifd.h" /* MFD_LOG_*, mfd_log_fn */

/* Logs through mfd_set_log()'s sink (default: stderr when level <=
 * $MFD_LOG, warnings by default). An error-level line is also kept as the
 * calling thread's last error (mfd__log_last_error()), whatever the level
 * of the sink. */
void mfd__log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
#define mfd__err(...)  mfd__log(MFD_LOG_ERROR, __VA_ARGS__)
#define mfd__warn(...) mfd__log(MFD_LOG_WARN, __VA_ARGS__)
#define mfd__info(...) mfd__log(MFD_LOG_INFO, __VA_ARGS__)
#define mfd__dbg(...)  mfd__log(MFD_LOG_DEBUG, __VA_ARGS__)

/* The last error-level line this thread logged since the last
 * mfd__log_forget(), or NULL (the session keeps it as a failure's
 * reason). */
const char *mfd__log_last_error(void);
void mfd__log_forget(void);

#endif /* MULTIFD_COMMON_LOG_H */
