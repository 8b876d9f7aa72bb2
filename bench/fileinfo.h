/* SPDX-License-Identifier: MIT */
/* multifd-bench file-info FILE: the header, blocks and digests of an image
 * made by --save (docs/protocol.md 11). */
#ifndef BENCH_FILEINFO_H
#define BENCH_FILEINFO_H

/* Prints them; 0, or 1 when the image is unreadable, refused, incomplete
 * or a bitmap does not match its digest. */
int file_info_run(const char *path);

#endif /* BENCH_FILEINFO_H */
