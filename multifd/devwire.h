/* SPDX-License-Identifier: MIT */
/*
 * Wire format of device state (docs/protocol.md, "Device state"), as pure
 * functions beside wire.h. Negotiated with MFD_FEAT_DEVICES.
 *
 *  DEVICES (control, src->dst, right after SETUP): the device list and the
 *    transfer mode; the destination compares it with its registered devices.
 *  DEVICE packet (data channels, `multifd` mode): one chunk of one device,
 *    header fields reused: block = device index, count = the device's chunk
 *    sequence number, zero_count = chunk flags, payload_len = chunk bytes,
 *    round = 0. Not counted in SYNC counts nor in END totals.
 *  DEVICE_DATA (control, `main` mode): the same chunk on the main channel,
 *    16-byte prefix (u32 device, u32 seq, u32 flags, u32 reserved) + bytes.
 */
#ifndef MULTIFD_DEVWIRE_H
#define MULTIFD_DEVWIRE_H

#include <stddef.h>
#include <stdint.h>

#include "multifd/wire.h"

#define MFD_MAX_DEVICES_WIRE  256
#define MFD_MAX_DEV_NAME_WIRE 63
#define MFD_DEV_CHUNK_MIN     4096U
#define MFD_DEVDATA_PREFIX    16
/* A DEVICE_DATA chunk must fit a control payload. */
#define MFD_DEV_CHUNK_MAX (MFD_MAX_CTL_PAYLOAD - MFD_DEVDATA_PREFIX)

#define MFD_DEVCHUNK_LAST (1U << 0) /* the device's last chunk */
/* `multifd` mode only: the payload starts with a placement table
 * (struct mfd__devplace below). */
#define MFD_DEVCHUNK_PLACED (1U << 1)
#define MFD_DEVCHUNK_KNOWN  (MFD_DEVCHUNK_LAST | MFD_DEVCHUNK_PLACED)

enum mfd__dev_transfer {
	MFD_DEV_XFER_MAIN = 1,
	MFD_DEV_XFER_MULTIFD = 2,
};

struct mfd__devices {
	uint32_t ndevices;  /* 1..MFD_MAX_DEVICES_WIRE */
	uint32_t transfer;  /* enum mfd__dev_transfer */
	uint32_t chunk_max; /* MFD_DEV_CHUNK_MIN..MFD_DEV_CHUNK_MAX */
	char (*names)[MFD_MAX_DEV_NAME_WIRE + 1]; /* ndevices, NUL-ended */
};

size_t mfd__devices_size(const struct mfd__devices *d);
/* Bytes written, or -ENOSPC / -EINVAL (a field out of range). */
int mfd__devices_encode(const struct mfd__devices *d, uint8_t *out, size_t cap);
/*
 * names must have room for MFD_MAX_DEVICES_WIRE entries. Checks ndevices
 * (MFD_EDEVICE), transfer (MFD_EDEVICE), chunk_max (MFD_EDEVICE), reserved
 * fields (MFD_EFLAGS), each name 1..63 bytes without NUL and unique
 * (MFD_EDEVICE), exact length (MFD_ELENGTH).
 */
int mfd__devices_decode(const uint8_t *in, size_t len, struct mfd__devices *d,
			char (*names)[MFD_MAX_DEV_NAME_WIRE + 1]);

struct mfd__dev_limits {
	uint32_t ndevices;
	uint32_t chunk_max;
};

/*
 * A decoded DEVICE packet header (mfd__pkt_decode() passes its fields
 * through): round 0 (MFD_EROUND), device < ndevices (MFD_EDEVICE), known
 * flags (MFD_EFLAGS), payload_len <= chunk_max (plus the largest placement
 * table with PLACED) and > 0 unless LAST (MFD_ELENGTH). The sequence window is
 * the reorder buffer's to check.
 */
int mfd__devpkt_validate(const struct mfd__pkt_hdr *h,
			 const struct mfd__dev_limits *lim);

/*
 * Placement table of a PLACED chunk: u32 nseg (1..MFD_DEVPLACE_MAX_SEGS),
 * u32 fence, then nseg entries of u64 mem_off, u32 len, u32 flags; the
 * segments' bytes follow in table order. A segment with flags
 * MFD_DEVSEG_INLINE (mem_off 0) is ordinary stream bytes; one without is
 * placed: its bytes belong at mem_off of the device's state memory (device.h,
 * state_mem). fence: every chunk of the device before it may write where
 * placed bytes go (it is not placed), so the destination writes this chunk's
 * placed bytes straight into the state memory only once chunks 0..fence-1
 * are applied; the chunks from fence on do not overlap in the state memory
 * (inline bytes a device loads into its memory come in an unplaced chunk of
 * their own: device.h, save_iov).
 */
#define MFD_DEVPLACE_MAX_SEGS 63
#define MFD_DEVPLACE_FIXED    8
#define MFD_DEVPLACE_ENTRY    16
#define MFD_DEVPLACE_MAX_HDR                                                   \
	(MFD_DEVPLACE_FIXED + MFD_DEVPLACE_MAX_SEGS * MFD_DEVPLACE_ENTRY)
#define MFD_DEVSEG_INLINE (1U << 0)

struct mfd__devseg {
	uint64_t mem_off;
	uint32_t len;
	uint32_t flags;
};
struct mfd__devplace {
	uint32_t nseg, fence;
	struct mfd__devseg seg[MFD_DEVPLACE_MAX_SEGS];
};
static inline size_t mfd__devplace_size(uint32_t nseg)
{
	return MFD_DEVPLACE_FIXED + (size_t)nseg * MFD_DEVPLACE_ENTRY;
}
/* Bytes written (mfd__devplace_size(p->nseg)), or -EINVAL (nseg 0 or too
 * many, a segment of length 0 or an inline one with an offset). */
int mfd__devplace_encode(const struct mfd__devplace *p, uint8_t *out);
/* The fixed part: nseg in 1..MFD_DEVPLACE_MAX_SEGS (MFD_ECOUNT), fence <=
 * seq (MFD_EROUND), and the table fits the payload (MFD_ELENGTH). */
int mfd__devplace_decode_fixed(const uint8_t in[MFD_DEVPLACE_FIXED],
			       uint32_t seq, uint32_t payload_len,
			       struct mfd__devplace *p);
/*
 * The entries (p from decode_fixed): known flags (MFD_EFLAGS), every
 * length > 0 and the lengths adding up to the payload after the table
 * (MFD_ELENGTH), which is at most chunk_max (MFD_ELENGTH); inline entries
 * with offset 0, and, when mem_size is not UINT64_MAX, placed bytes inside
 * [0, mem_size) (MFD_EOFFSET).
 */
int mfd__devplace_decode_segs(const uint8_t *in, uint32_t payload_len,
			      uint32_t chunk_max, uint64_t mem_size,
			      struct mfd__devplace *p);

struct mfd__devdata {
	uint32_t device, seq, flags;
	const uint8_t *data; /* points into the payload */
	uint32_t len;
};
/* Encodes the 16-byte prefix; the caller sends the bytes after it. */
void mfd__devdata_prefix_encode(const struct mfd__devdata *m,
				uint8_t out[MFD_DEVDATA_PREFIX]);
/* Same checks as mfd__devpkt_validate on a DEVICE_DATA payload; PLACED is
 * not a flag of this mode (MFD_EFLAGS). */
int mfd__devdata_decode(const uint8_t *in, size_t len,
			const struct mfd__dev_limits *lim,
			struct mfd__devdata *m);

#endif /* MULTIFD_DEVWIRE_H */
