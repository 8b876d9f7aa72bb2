/* SPDX-License-Identifier: MIT */
/*
 * --cut-at-round: a loopback TCP proxy between the bench's source and
 * destination that can cut every connection at once (a reset both ways),
 * as a broken network path would, so that a resumable pre-copy shows in a
 * run. Two threads per connection (one per direction), plain read/write.
 */
#ifndef BENCH_CUTPROXY_H
#define BENCH_CUTPROXY_H

#include <stddef.h>

struct cutproxy;

/* Listens on 127.0.0.1 (a free port) and forwards each connection to
 * target ("tcp:HOST:PORT"); *listen_uri gets its URI. 0 or -errno. */
int cutproxy_start(struct cutproxy **out, const char *target, char *listen_uri,
		   size_t len);
/* Resets every connection it carries now; later ones are forwarded. */
void cutproxy_cut(struct cutproxy *p);
/* Stops listening, ends every connection, joins, frees. NULL: nothing. */
void cutproxy_stop(struct cutproxy *p);

#endif /* BENCH_CUTPROXY_H */
