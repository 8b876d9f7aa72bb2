/* SPDX-License-Identifier: MIT */
/*
 * The RDMA channel's messages (docs/protocol.md, "RDMA channels"), as pure
 * functions: no I/O, no allocation, no globals; every field of a received
 * message is checked before the protocol (rdma.c) acts on it. Fuzzed by
 * tests/fuzz/fuzz_rdma.c.
 *
 * Header, 16 bytes, little-endian:
 *   0  u32 magic "MFDR"
 *   4  u16 type (enum mfd__rdma_type)
 *   6  u16 credits returned (receive buffers re-posted since the last one)
 *   8  u32 payload length (the message's bytes after the header)
 *  12  u32 reserved, 0
 * REGIONS payload: up to MFD__RDMA_MAX_REGIONS entries of 24 bytes:
 *   0  u64 address, 8 u64 length, 16 u32 rkey, 20 u32 reserved, 0.
 */
#ifndef MULTIFD_RDMA_WIRE_H
#define MULTIFD_RDMA_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define MFD__RDMA_MAGIC	      0x5244464dU /* "MFDR" */
#define MFD__RDMA_HDR_SIZE    16
#define MFD__RDMA_REGION_SIZE 24
#define MFD__RDMA_RECV_SLOTS  16
#define MFD__RDMA_SLOT_SIZE   (64 * 1024) /* largest message, header included */
#define MFD__RDMA_MAX_REGIONS 64

enum mfd__rdma_type {
	MFD__RDMA_CREDIT = 1, /* no payload */
	MFD__RDMA_REGIONS = 2,
	MFD__RDMA_DATA = 3,
	MFD__RDMA_FENCE = 4, /* no payload: the receiver's round is applied */
};

struct mfd__rdma_hdr {
	uint16_t type; /* enum mfd__rdma_type */
	uint16_t credits;
	uint32_t len; /* payload bytes */
};

struct mfd__rdma_region {
	uint64_t addr, len;
	uint32_t rkey;
};

/* Writes h as MFD__RDMA_HDR_SIZE bytes at out. */
void mfd__rdma_hdr_encode(const struct mfd__rdma_hdr *h, uint8_t *out);

/*
 * Decodes the header of a received message of msg_len bytes (header
 * included) at buf. Checks, in this order: MFD__RDMA_HDR_SIZE <= msg_len
 * <= MFD__RDMA_SLOT_SIZE (MFD_ELENGTH), the magic (MFD_EBADMAGIC), the
 * length field equal to the payload's and the reserved word 0
 * (MFD_ELENGTH), credits <= max_credits, the credits the receiver can
 * still take back (MFD_ECOUNT), a known type (MFD_ETYPE), no payload on
 * CREDIT and FENCE (MFD_ELENGTH). 0 and *h filled, or the error (*h
 * untouched).
 */
int mfd__rdma_hdr_decode(const uint8_t *buf, size_t msg_len,
			 unsigned max_credits, struct mfd__rdma_hdr *h);

/* Writes the n regions of r as n * MFD__RDMA_REGION_SIZE bytes at out. */
void mfd__rdma_regions_encode(const struct mfd__rdma_region *r, unsigned n,
			      uint8_t *out);

/*
 * Decodes a REGIONS payload of len bytes into out (room for max entries):
 * len a multiple of MFD__RDMA_REGION_SIZE and at most max entries
 * (MFD_ELENGTH); each entry's reserved word 0 and address + length without
 * wrapping around (MFD_EFLAGS). 0 and *n entries, or the error (*n
 * untouched, out undefined).
 */
int mfd__rdma_regions_decode(const uint8_t *p, size_t len,
			     struct mfd__rdma_region *out, unsigned max,
			     unsigned *n);

#endif /* MULTIFD_RDMA_WIRE_H */
