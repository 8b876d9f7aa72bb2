/* SPDX-License-Identifier: MIT */
/* Small helpers of every layer. */
#ifndef MULTIFD_COMMON_UTIL_H
#define MULTIFD_COMMON_UTIL_H

#define MFD_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif /* MULTIFD_COMMON_UTIL_H */
