/* SPDX-License-Identifier: MIT */
/* Diagnostics of every layer (prefix mfd__): one line per message. */
#ifndef MULTIFD_COMMON_LOG_H
#define MULTIFD_COMMON_LOG_H

enum {
	MFD_LOG_ERROR = 0,
	MFD_LOG_WARN = 1,
	MFD_LOG_INFO = 2,
	MFD_LOG_DEBUG = 3
};
/* Logs to stderr when level <= $MFD_LOG (default: warnings). */
void mfd__log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
#define mfd__err(...)  mfd__log(MFD_LOG_ERROR, __VA_ARGS__)
#define mfd__warn(...) mfd__log(MFD_LOG_WARN, __VA_ARGS__)
#define mfd__info(...) mfd__log(MFD_LOG_INFO, __VA_ARGS__)
#define mfd__dbg(...)  mfd__log(MFD_LOG_DEBUG, __VA_ARGS__)

#endif /* MULTIFD_COMMON_LOG_H */
