/* SPDX-License-Identifier: MIT */
/* The vDPA virtio-net state codec (docs/protocol.md, "vDPA device state"). */
#include <errno.h>
#include <string.h>

#include "devstate/vdpa_compat.h"
#include "devstate/vdpa_state.h"
#include "multifd/common/le.h"

#define BIT(n) (1ULL << (n))
/* Offload bits the guest may turn on with CTRL_GUEST_OFFLOADS_SET (virtio
 * 1.2, 5.1.6.5.6.1): the GUEST_* receive offloads. */
#define GUEST_OFFLOADS                                                         \
	(BIT(VIRTIO_NET_F_GUEST_CSUM) | BIT(VIRTIO_NET_F_GUEST_TSO4) |         \
	 BIT(VIRTIO_NET_F_GUEST_TSO6) | BIT(VIRTIO_NET_F_GUEST_ECN) |          \
	 BIT(VIRTIO_NET_F_GUEST_UFO) | BIT(54) | BIT(55))

#define get16 mfd__get_le16
#define get32 mfd__get_le32
#define get64 mfd__get_le64
/* Writers that return where the next field starts. */
static uint8_t *put16(uint8_t *p, uint16_t v)
{
	mfd__put_le16(p, v);
	return p + 2;
}
static uint8_t *put32(uint8_t *p, uint32_t v)
{
	mfd__put_le32(p, v);
	return p + 4;
}
static uint8_t *put64(uint8_t *p, uint64_t v)
{
	mfd__put_le64(p, v);
	return p + 8;
}

static int refuse(const char **why, const char *text)
{
	*why = text;
	return -EINVAL;
}

#define KEY(cls, cmd) ((uint16_t)((cls) << 8 | (cmd)))

static int has_bit(uint8_t cls, uint8_t cmd)
{
	switch (KEY(cls, cmd)) {
	case KEY(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET):
		return MFD_VDPA_HAS_MAC;
	case KEY(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET):
		return MFD_VDPA_HAS_TABLE;
	case KEY(VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET):
		return MFD_VDPA_HAS_MQ;
	case KEY(VIRTIO_NET_CTRL_GUEST_OFFLOADS,
		 VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET):
		return MFD_VDPA_HAS_OFFLOADS;
	}
	if (cls == VIRTIO_NET_CTRL_RX && cmd < MFD_VDPA_NRX)
		return (int)(MFD_VDPA_HAS_RX0 << cmd);
	return 0;
}

/* A MAC filter table (struct virtio_net_ctrl_mac) at p, room bytes; its
 * size in *used, or -1. */
static int mac_table(const uint8_t *p, size_t room, uint32_t *n, size_t *used)
{
	if (room < 4)
		return -1;
	*n = get32(p);
	if (*n > MFD_VDPA_MAX_MACS || room - 4 < (size_t)*n * 6)
		return -1;
	*used = 4 + (size_t)*n * 6;
	return 0;
}

int mfd__vdpa_ctrl_apply(struct mfd__vdpa_ctrl *c, uint64_t features,
			 uint16_t max_vq_pairs, uint8_t cls, uint8_t cmd,
			 const void *data, size_t len, const char **why)
{
	const uint8_t *p = data;
	int bit = has_bit(cls, cmd);
	if (!(features & BIT(VIRTIO_NET_F_CTRL_VQ)))
		return refuse(why, "control command without "
				   "VIRTIO_NET_F_CTRL_VQ");
	if (!bit)
		return refuse(why, "control command the state does not carry");
	if (cls == VIRTIO_NET_CTRL_RX) {
		uint64_t need = cmd <= VIRTIO_NET_CTRL_RX_ALLMULTI
					? BIT(VIRTIO_NET_F_CTRL_RX)
					: BIT(VIRTIO_NET_F_CTRL_RX_EXTRA);
		if (!(features & need))
			return refuse(why, "RX mode command without its "
					   "feature");
		if (len != 1 || p[0] > 1)
			return refuse(why, "RX mode command: bad payload");
	} else if (bit == MFD_VDPA_HAS_MAC) {
		if (!(features & BIT(VIRTIO_NET_F_CTRL_MAC_ADDR)))
			return refuse(why, "MAC_ADDR_SET without "
					   "VIRTIO_NET_F_CTRL_MAC_ADDR");
		if (len != 6)
			return refuse(why, "MAC_ADDR_SET: bad length");
	} else if (bit == MFD_VDPA_HAS_TABLE) {
		uint32_t n, m;
		size_t a, b;
		if (!(features & BIT(VIRTIO_NET_F_CTRL_RX)))
			return refuse(why, "MAC_TABLE_SET without "
					   "VIRTIO_NET_F_CTRL_RX");
		if (mac_table(p, len, &n, &a) ||
		    mac_table(p + a, len - a, &m, &b) || a + b != len)
			return refuse(why, "MAC_TABLE_SET: bad tables");
	} else if (bit == MFD_VDPA_HAS_MQ) {
		if (!(features & BIT(VIRTIO_NET_F_MQ)))
			return refuse(why, "VQ_PAIRS_SET without "
					   "VIRTIO_NET_F_MQ");
		if (len != 2)
			return refuse(why, "VQ_PAIRS_SET: bad length");
		uint16_t pairs = get16(p);
		if (pairs < 1 || pairs > max_vq_pairs)
			return refuse(why, "VQ_PAIRS_SET: pairs out of range");
	} else { /* offloads */
		if (!(features & BIT(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS)))
			return refuse(why, "GUEST_OFFLOADS_SET without "
					   "VIRTIO_NET_F_CTRL_GUEST_OFFLOADS");
		if (len != 8)
			return refuse(why, "GUEST_OFFLOADS_SET: bad length");
		uint64_t off = get64(p);
		if (off & ~(GUEST_OFFLOADS & features))
			return refuse(why, "GUEST_OFFLOADS_SET: offload not "
					   "negotiated");
	}
	/* Checked: apply. */
	if (!(c->has & (uint32_t)bit)) {
		if (c->norder >= MFD_VDPA_MAX_CMDS)
			return refuse(why, "too many control commands");
		c->order[c->norder++] = KEY(cls, cmd);
		c->has |= (uint32_t)bit;
	}
	if (cls == VIRTIO_NET_CTRL_RX) {
		c->rx[cmd] = p[0];
	} else if (bit == MFD_VDPA_HAS_MAC) {
		memcpy(c->mac, p, 6);
	} else if (bit == MFD_VDPA_HAS_TABLE) {
		c->n_uni = get32(p);
		memcpy(c->uni, p + 4, (size_t)c->n_uni * 6);
		p += 4 + (size_t)c->n_uni * 6;
		c->n_multi = get32(p);
		memcpy(c->multi, p + 4, (size_t)c->n_multi * 6);
	} else if (bit == MFD_VDPA_HAS_MQ) {
		c->mq_pairs = get16(p);
	} else {
		c->offloads = get64(p);
	}
	return 0;
}

size_t mfd__vdpa_ctrl_payload(const struct mfd__vdpa_ctrl *c, uint16_t k,
			      uint8_t *out)
{
	uint8_t tmp[8 + 2 * 6 * MFD_VDPA_MAX_MACS];
	uint8_t *p = out ? out : tmp;
	uint8_t cls = (uint8_t)(k >> 8), cmd = (uint8_t)k;
	if (cls == VIRTIO_NET_CTRL_RX) {
		p[0] = c->rx[cmd];
		return 1;
	}
	switch (has_bit(cls, cmd)) {
	case MFD_VDPA_HAS_MAC:
		memcpy(p, c->mac, 6);
		return 6;
	case MFD_VDPA_HAS_TABLE: {
		uint8_t *q = put32(p, c->n_uni);
		memcpy(q, c->uni, (size_t)c->n_uni * 6);
		q = put32(q + (size_t)c->n_uni * 6, c->n_multi);
		memcpy(q, c->multi, (size_t)c->n_multi * 6);
		return (size_t)(q - p) + (size_t)c->n_multi * 6;
	}
	case MFD_VDPA_HAS_MQ:
		put16(p, c->mq_pairs);
		return 2;
	default:
		put64(p, c->offloads);
		return 8;
	}
}

size_t mfd__vdpa_state_size(const struct mfd__vdpa_state *s)
{
	size_t n = MFD_VDPA_HDR_LEN + (size_t)s->nvqs * MFD_VDPA_VQ_LEN;
	for (unsigned i = 0; i < s->ctrl.norder; i++)
		n += 4 +
		     mfd__vdpa_ctrl_payload(&s->ctrl, s->ctrl.order[i], NULL);
	return n;
}

size_t mfd__vdpa_state_encode(const struct mfd__vdpa_state *s, void *buf,
			      size_t cap)
{
	size_t need = mfd__vdpa_state_size(s);
	if (cap < need)
		return 0;
	uint8_t *p = buf;
	p = put32(p, MFD_VDPA_STATE_MAGIC);
	p = put16(p, MFD_VDPA_STATE_VERSION);
	p = put16(p, 0);
	p = put32(p, VIRTIO_ID_NET);
	p = put16(p, (uint16_t)s->nvqs);
	p = put16(p, (uint16_t)s->ctrl.norder);
	p = put64(p, s->features);
	memcpy(p, s->mac, 6);
	p = put16(p + 6, s->status);
	p = put16(p, s->max_vq_pairs);
	p = put16(p, s->mtu);
	for (unsigned i = 0; i < s->nvqs; i++) {
		p = put16(p, s->vq[i].index);
		p = put16(p, s->vq[i].num);
		p = put16(p, s->vq[i].last_avail);
		p = put16(p, s->vq[i].used_idx);
	}
	for (unsigned i = 0; i < s->ctrl.norder; i++) {
		uint16_t k = s->ctrl.order[i];
		size_t len = mfd__vdpa_ctrl_payload(&s->ctrl, k, p + 4);
		p[0] = (uint8_t)(k >> 8);
		p[1] = (uint8_t)k;
		put16(p + 2, (uint16_t)len);
		p += 4 + len;
	}
	return need;
}

static int check_config(const struct mfd__vdpa_state *s, const char **why)
{
	uint64_t f = s->features;
	if (!(f & BIT(VIRTIO_F_VERSION_1)))
		return refuse(why, "VIRTIO_F_VERSION_1 not negotiated");
	if (f & BIT(VIRTIO_F_RING_PACKED))
		return refuse(why, "packed virtqueues are not supported");
	if (f & BIT(VIRTIO_NET_F_MQ)) {
		if (s->max_vq_pairs < VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN ||
		    s->max_vq_pairs > VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX)
			return refuse(why, "max_virtqueue_pairs out of range");
		if (!(f & BIT(VIRTIO_NET_F_CTRL_VQ)))
			return refuse(why, "VIRTIO_NET_F_MQ without "
					   "VIRTIO_NET_F_CTRL_VQ");
	} else if (s->max_vq_pairs) {
		return refuse(why, "max_virtqueue_pairs without "
				   "VIRTIO_NET_F_MQ");
	}
	if ((f & BIT(VIRTIO_NET_F_MTU)) ? s->mtu < 68 : s->mtu != 0)
		return refuse(why,
			      "mtu: below 68, or without VIRTIO_NET_F_MTU");
	if ((f & BIT(VIRTIO_NET_F_STATUS))
		    ? (s->status &
		       ~(VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE)) != 0
		    : s->status != 0)
		return refuse(why, "status: unknown bits, or without "
				   "VIRTIO_NET_F_STATUS");
	return 0;
}

static int check_vqs(const struct mfd__vdpa_state *s, const char **why)
{
	unsigned cvq = mfd__vdpa_cvq_index(s->features, s->max_vq_pairs);
	bool ctrl = s->features & BIT(VIRTIO_NET_F_CTRL_VQ);
	if (s->nvqs < 2 || s->vq[0].index != 0 || s->vq[1].index != 1)
		return refuse(why, "queues 0 and 1 missing");
	for (unsigned i = 0; i < s->nvqs; i++) {
		const struct mfd__vdpa_vq *q = &s->vq[i];
		if (i && q->index <= s->vq[i - 1].index)
			return refuse(why, "queue indices not increasing");
		if (q->index >= MFD_VDPA_MAX_VQ_INDEX)
			return refuse(why, "queue index too large");
		if (q->index > cvq || (q->index == cvq && !ctrl))
			return refuse(why, "queue index beyond the device's "
					   "queues");
		if (!q->num || q->num > 32768 || (q->num & (q->num - 1)))
			return refuse(why, "ring size not a power of two up "
					   "to 32768");
		if ((uint16_t)(q->last_avail - q->used_idx) > q->num)
			return refuse(why, "more buffers in flight than the "
					   "ring holds");
	}
	return 0;
}

int mfd__vdpa_state_parse(const void *buf, size_t len,
			  struct mfd__vdpa_state *s, const char **why)
{
	const uint8_t *p = buf;
	int ret;
	memset(s, 0, sizeof(*s));
	if (len < MFD_VDPA_HDR_LEN || get32(p) != MFD_VDPA_STATE_MAGIC) {
		*why = len < MFD_VDPA_HDR_LEN ? "short header" : "bad magic";
		return -EBADMSG;
	}
	if (get16(p + 4) != MFD_VDPA_STATE_VERSION) {
		*why = "unknown version";
		return -EPROTONOSUPPORT;
	}
	if (get16(p + 6)) {
		*why = "reserved flags set";
		return -EBADMSG;
	}
	if (get32(p + 8) != VIRTIO_ID_NET) {
		*why = "not a virtio-net device";
		return -EBADMSG;
	}
	unsigned nvqs = get16(p + 12), ncmds = get16(p + 14);
	s->features = get64(p + 16);
	memcpy(s->mac, p + 24, 6);
	s->status = get16(p + 30);
	s->max_vq_pairs = get16(p + 32);
	s->mtu = get16(p + 34);
	if ((ret = check_config(s, why)))
		return -EBADMSG;
	if (nvqs > MFD_VDPA_MAX_VQS) {
		*why = "too many queues";
		return -EBADMSG;
	}
	if (ncmds > MFD_VDPA_MAX_CMDS) {
		*why = "too many control commands";
		return -EBADMSG;
	}
	size_t off = MFD_VDPA_HDR_LEN;
	if (len - off < (size_t)nvqs * MFD_VDPA_VQ_LEN) {
		*why = "queue table truncated";
		return -EBADMSG;
	}
	s->nvqs = nvqs;
	for (unsigned i = 0; i < nvqs; i++, off += MFD_VDPA_VQ_LEN) {
		s->vq[i].index = get16(p + off);
		s->vq[i].num = get16(p + off + 2);
		s->vq[i].last_avail = get16(p + off + 4);
		s->vq[i].used_idx = get16(p + off + 6);
	}
	if (check_vqs(s, why))
		return -EBADMSG;
	for (unsigned i = 0; i < ncmds; i++) {
		if (len - off < 4) {
			*why = "command header truncated";
			return -EBADMSG;
		}
		uint8_t cls = p[off], cmd = p[off + 1];
		size_t clen = get16(p + off + 2);
		off += 4;
		if (len - off < clen) {
			*why = "command payload truncated";
			return -EBADMSG;
		}
		int bit = has_bit(cls, cmd);
		if (bit && (s->ctrl.has & (uint32_t)bit)) {
			*why = "control command given twice";
			return -EBADMSG;
		}
		if (mfd__vdpa_ctrl_apply(&s->ctrl, s->features, s->max_vq_pairs,
					 cls, cmd, p + off, clen, why))
			return -EBADMSG;
		off += clen;
	}
	if (off != len) {
		*why = "trailing bytes";
		return -EBADMSG;
	}
	return 0;
}
