/* SPDX-License-Identifier: MIT */
/*
 * The round trip of a socket channel, from the kernel's TCP_INFO. Apart
 * from tcp.c: the kernel's struct tcp_info (linux/tcp.h) has tcpi_min_rtt,
 * glibc's (netinet/tcp.h) stops before it, and the two headers do not mix.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <linux/tcp.h>

#include "multifd/channels/channel.h"

/*
 * The path's round trip, not the smoothed one: on a channel that carries
 * a few control messages between long pauses, tcpi_rtt holds the
 * receiver's delayed ACKs (recorded on loopback: 4.5 ms smoothed, where
 * END to LOADED took about 1 ms), and on a shaped link the data queued
 * ahead of each message, which the downtime estimate counts apart (the
 * socket queues' drain). tcpi_min_rtt is the least round trip seen over
 * the last few minutes (Linux 4.6 and later).
 */
uint64_t mfd__sock_rtt_ns(struct mfd__chan *c)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		return 0;
	if (len >= offsetof(struct tcp_info, tcpi_min_rtt) +
			    sizeof(ti.tcpi_min_rtt) &&
	    ti.tcpi_min_rtt && ti.tcpi_min_rtt != ~0U)
		return (uint64_t)ti.tcpi_min_rtt * 1000;
	return (uint64_t)ti.tcpi_rtt * 1000;
}

int mfd__sock_pace(struct mfd__chan *c, uint64_t bps)
{
	/* The kernel's unsigned long; ~0 is "no cap". */
	unsigned long v = bps ? (unsigned long)bps : ~0UL;
	/* What waits unsent in the socket: at most about 2 ms of the pace
	 * (not less than 64 KiB); 0 is the sysctl's default again. */
	uint64_t low = bps / 500 < 65536 ? 65536 : bps / 500;
	int lowat = !bps ? 0 : low > INT_MAX ? INT_MAX : (int)low;
	if (setsockopt(c->fd, SOL_SOCKET, SO_MAX_PACING_RATE, &v, sizeof(v)) ||
	    setsockopt(c->fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat,
		       sizeof(lowat)))
		return -errno;
	return 0;
}
