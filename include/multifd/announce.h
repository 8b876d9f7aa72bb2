/* SPDX-License-Identifier: MIT */
/*
 * libmultifd: the "I'm over here" self-announcement after a migration.
 *
 * Once the guest runs on the destination, the network still delivers its
 * traffic to the old host until the switches learn that the guest's MAC
 * addresses moved. QEMU sends, per NIC, a few RARP-style broadcast frames
 * (net/announce.c, qemu_announce_self); this header does the same for a
 * list of MAC addresses on one named interface, through an AF_PACKET
 * socket (CAP_NET_RAW needed).
 *
 * Schedule (the destination keys announce-initial, announce-max,
 * announce-rounds, announce-step; docs/config.md): round 1 is sent
 * announce-initial after the start, and each following round waits
 * announce-step longer than the one before, at most announce-max. With the
 * defaults the rounds go out at 50, 200, 450, 800 and 1250 ms.
 *
 * Conventions as in multifd.h: 0 or a negative errno; strings are copied.
 */
#ifndef MULTIFD_ANNOUNCE_H
#define MULTIFD_ANNOUNCE_H

#include <stdint.h>

#include "multifd/multifd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of one announcement frame: the Ethernet minimum without FCS. */
#define MFD_ANNOUNCE_FRAME_LEN 60
/* Ethertype of the frames (RARP), and the RARP "reverse request" opcode. */
#define MFD_ANNOUNCE_ETHERTYPE		0x8035
#define MFD_ANNOUNCE_OP_REQUEST_REVERSE 3
/* Most MAC addresses per announcement. */
#define MFD_ANNOUNCE_MAX_MACS 256

typedef struct mfd_announce_params {
	uint32_t initial_ms; /* delay before round 1 */
	uint32_t max_ms;     /* longest delay between rounds */
	uint32_t rounds;     /* 0: nothing is sent */
	uint32_t step_ms;    /* each delay is this much longer than the last */
} mfd_announce_params;

/*
 * The announce-* keys of cfg (cfg NULL: their defaults) in *p. Any thread
 * that may read cfg. 0, or -EINVAL when p is NULL.
 */
MFD_API int mfd_announce_get_params(const mfd_config *cfg,
				    mfd_announce_params *p);

/*
 * Delay in ms before round (0-based) of p: min(initial + round * step,
 * max). Pure; any thread.
 */
MFD_API uint64_t mfd_announce_delay_ms(const mfd_announce_params *p,
				       unsigned round);

/*
 * Writes the announcement frame for mac into out: destination broadcast,
 * source mac, ethertype 0x8035; RARP hardware type 1 (Ethernet), protocol
 * 0x0800, lengths 6 and 4, opcode 3; sender and target hardware address
 * mac, both IPv4 addresses 0; zero padding to 60 bytes. Pure (no I/O);
 * any thread. 0, or -EINVAL when mac is a multicast, broadcast or all-zero
 * address (no NIC has one).
 */
MFD_API int mfd_announce_frame(uint8_t out[MFD_ANNOUNCE_FRAME_LEN],
			       const uint8_t mac[6]);

/*
 * Parses "aa:bb:cc:dd:ee:ff" (hex, ':' or '-' separated) into mac. 0, or
 * -EINVAL for anything else (mac then unchanged).
 */
MFD_API int mfd_announce_parse_mac(const char *text, uint8_t mac[6]);

/*
 * Sends all rounds for the nmacs addresses on interface ifname, sleeping
 * between rounds as p says: blocks the calling thread for the whole
 * schedule (the sum of the delays). Any thread. 0 when every frame was
 * sent; -EINVAL (bad ifname, nmacs 0 or above MFD_ANNOUNCE_MAX_MACS, an
 * address mfd_announce_frame() refuses), -ENODEV (no such interface),
 * -EPERM (no CAP_NET_RAW) or the -errno of the first failed send, which
 * ends the rounds.
 */
MFD_API int mfd_announce_run(const char *ifname, const uint8_t (*macs)[6],
			     unsigned nmacs, const mfd_announce_params *p);

/*
 * Destination: announce these addresses on ifname after each successful
 * incoming migration, from a small thread of the library, with the
 * announce-* keys of the destination's config. Call before
 * mfd_dest_start(); a later call replaces the list (and stops the rounds
 * of an earlier migration still due), nmacs 0 clears it.
 * When the announce hook (mfd_dest_hooks) is set, the hook is called per
 * round instead and ifname/macs are not used. ifname is looked up when
 * the rounds start, after loaded() (which may create it): a missing
 * interface shows in mfd_dest_announce_wait(). 0 or -EINVAL as
 * mfd_announce_run() checks its arguments, MFD_ESTATE while a migration
 * runs.
 */
MFD_API int mfd_dest_set_announce(mfd_dest *dst, const char *ifname,
				  const uint8_t (*macs)[6], unsigned nmacs);

/*
 * Destination: wait until the announcement of the last migration ended.
 * Call after mfd_dest_wait(); blocks at most the schedule's length plus
 * the time of the hook calls. 0 when every round was sent (or none was
 * due: no hook, no addresses, announce-rounds 0 or the migration failed),
 * else the first error (as mfd_announce_run(), or MFD_EHOOK when the hook
 * failed), which also ended the rounds; MFD_ESTATE while a migration
 * runs. mfd_dest_free() does not wait for
 * the schedule: it stops the rounds still due.
 */
MFD_API int mfd_dest_announce_wait(mfd_dest *dst);

#ifdef __cplusplus
}
#endif

#endif /* MULTIFD_ANNOUNCE_H */
