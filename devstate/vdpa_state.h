/* SPDX-License-Identifier: MIT */
/*
 * The state of a virtio-net vDPA device as it travels (docs/protocol.md,
 * "vDPA device state"): a pure codec, no I/O, no allocation, no globals.
 * The parser is the one place the destination's adapter reads untrusted
 * bytes; every field is checked before the device is touched.
 */
#ifndef DEVSTATE_VDPA_STATE_H
#define DEVSTATE_VDPA_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MFD_VDPA_STATE_MAGIC   0x5044564dU /* "MVDP" little-endian */
#define MFD_VDPA_STATE_VERSION 1
#define MFD_VDPA_HDR_LEN       36
#define MFD_VDPA_VQ_LEN	       8
#define MFD_VDPA_MAX_VQS       64   /* queues in one state */
#define MFD_VDPA_MAX_VQ_INDEX  1024 /* a queue's index is below this */
#define MFD_VDPA_MAX_MACS      64   /* entries of one MAC filter table */
#define MFD_VDPA_MAX_CMDS      16
/* The largest valid encoding. */
#define MFD_VDPA_STATE_MAX                                                     \
	(MFD_VDPA_HDR_LEN + MFD_VDPA_MAX_VQS * MFD_VDPA_VQ_LEN +               \
	 MFD_VDPA_MAX_CMDS * 4 + 8 + 2 * 6 * MFD_VDPA_MAX_MACS + 6 + 2 + 8 +   \
	 6)

struct mfd__vdpa_vq {
	uint16_t index, num, last_avail, used_idx;
};

/* Control-queue state, the net effect of the commands the guest sent. */
enum {
	MFD_VDPA_HAS_MAC = 1u << 0,	 /* CTRL_MAC_ADDR_SET */
	MFD_VDPA_HAS_TABLE = 1u << 1,	 /* CTRL_MAC_TABLE_SET */
	MFD_VDPA_HAS_MQ = 1u << 2,	 /* CTRL_MQ_VQ_PAIRS_SET */
	MFD_VDPA_HAS_OFFLOADS = 1u << 3, /* CTRL_GUEST_OFFLOADS_SET */
	/* CTRL_RX command c (0..5): bit 8 + c */
	MFD_VDPA_HAS_RX0 = 1u << 8,
};
#define MFD_VDPA_NRX 6

struct mfd__vdpa_ctrl {
	uint32_t has;
	uint8_t mac[6];
	uint16_t mq_pairs;
	uint64_t offloads;
	uint8_t rx[MFD_VDPA_NRX]; /* 0 or 1 per VIRTIO_NET_CTRL_RX_* */
	uint32_t n_uni, n_multi;
	uint8_t uni[MFD_VDPA_MAX_MACS][6], multi[MFD_VDPA_MAX_MACS][6];
	/* Order in which the commands were first given (class << 8 | cmd),
	 * kept so the destination replays them in the guest's order. */
	uint16_t order[MFD_VDPA_MAX_CMDS];
	unsigned norder;
};

struct mfd__vdpa_state {
	uint64_t features; /* negotiated with the guest's driver */
	uint8_t mac[6];	   /* virtio_net_config */
	uint16_t status, max_vq_pairs, mtu;
	unsigned nvqs;
	struct mfd__vdpa_vq vq[MFD_VDPA_MAX_VQS];
	struct mfd__vdpa_ctrl ctrl;
};

/*
 * Checks one control command against the features and the config and
 * applies it to c (the net effect). 0, or -EINVAL with *why set; c is
 * unchanged on failure. A command the state format does not carry (VLAN,
 * ANNOUNCE, RSS, ...) is refused.
 */
int mfd__vdpa_ctrl_apply(struct mfd__vdpa_ctrl *c, uint64_t features,
			 uint16_t max_vq_pairs, uint8_t cls, uint8_t cmd,
			 const void *data, size_t len, const char **why);

/* The payload of command k (class << 8 | cmd, one of c->order) as the
 * device takes it, into out (NULL: only its length); returns its length. */
size_t mfd__vdpa_ctrl_payload(const struct mfd__vdpa_ctrl *c, uint16_t k,
			      uint8_t *out);

/* Bytes of the encoding of s. */
size_t mfd__vdpa_state_size(const struct mfd__vdpa_state *s);
/* Encodes s into buf (room for mfd__vdpa_state_size()); returns the bytes
 * written, or 0 when cap is too small. */
size_t mfd__vdpa_state_encode(const struct mfd__vdpa_state *s, void *buf,
			      size_t cap);
/*
 * Parses len bytes into *s: 0, -EPROTONOSUPPORT for another version, or
 * -EBADMSG for anything else refused; *why (never NULL on failure) names
 * the refusal. Everything the result holds has been checked (see
 * docs/protocol.md for the list).
 */
int mfd__vdpa_state_parse(const void *buf, size_t len,
			  struct mfd__vdpa_state *s, const char **why);

/* The control queue's index for features and max_vq_pairs. */
static inline unsigned mfd__vdpa_cvq_index(uint64_t features,
					   uint16_t max_vq_pairs)
{
	return (features >> 22 & 1) ? 2u * max_vq_pairs : 2u; /* F_MQ */
}

#endif /* DEVSTATE_VDPA_STATE_H */
