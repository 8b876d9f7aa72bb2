/* SPDX-License-Identifier: MIT */
/*
 * The vDPA adapter (devstate/vdpa.c) and its state format: the codec and
 * each of its refusals; the fake device's ioctl order rules; migrations of
 * a fake virtio-net device through the engine, with traffic during
 * pre-copy, and failures after the device was suspended.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devstate/vdpa_compat.h"
#include "devstate/vdpa_state.h"
#include "multifd/device.h"
#include "multifd/vdpa.h"
#include "tests/fake_vdpa.h"
#include "tests/testvm.h"

#define BIT(n) (1ULL << (n))
#define RAM    (4u << 20)
#define NQ     5 /* rx0 tx0 rx1 tx1 cvq */
#define BUFLEN 2048

static uint64_t seed;

static const uint64_t FEATURES =
	BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_NET_F_MAC) |
	BIT(VIRTIO_NET_F_STATUS) | BIT(VIRTIO_NET_F_MTU) |
	BIT(VIRTIO_NET_F_CTRL_VQ) | BIT(VIRTIO_NET_F_CTRL_RX) |
	BIT(VIRTIO_NET_F_CTRL_RX_EXTRA) | BIT(VIRTIO_NET_F_MQ) |
	BIT(VIRTIO_NET_F_CTRL_MAC_ADDR) |
	BIT(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS) | BIT(VIRTIO_NET_F_GUEST_CSUM) |
	BIT(VIRTIO_NET_F_GUEST_TSO4);
#define BACKEND_SR (BIT(VHOST_BACKEND_F_SUSPEND) | BIT(VHOST_BACKEND_F_RESUME))

static const uint8_t MAC0[6] = { 0x52, 0x54, 0, 0xaa, 0xbb, 0xcc };
static const uint8_t MAC1[6] = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 };

/* ------------------------------------------------------------------ */
/* The state codec */

static void sample_state(struct mfd__vdpa_state *s)
{
	const char *why;
	memset(s, 0, sizeof(*s));
	s->features = FEATURES;
	memcpy(s->mac, MAC0, 6);
	s->status = VIRTIO_NET_S_LINK_UP;
	s->max_vq_pairs = 2;
	s->mtu = 1500;
	s->nvqs = NQ;
	for (unsigned i = 0; i < NQ; i++)
		s->vq[i] = (struct mfd__vdpa_vq){ (uint16_t)i, 256,
						  (uint16_t)(100 + i),
						  (uint16_t)(98 + i) };
	uint8_t two[2] = { 2, 0 }, on = 1;
	uint8_t table[4 + 6 + 4 + 12] = { 1, 0, 0, 0 };
	memcpy(table + 4, MAC1, 6);
	table[10] = 2;
	memset(table + 14, 0x33, 12);
	uint8_t off[8] = { BIT(VIRTIO_NET_F_GUEST_CSUM) };
	assert_int_equal(mfd__vdpa_ctrl_apply(
				 &s->ctrl, s->features, 2, VIRTIO_NET_CTRL_MAC,
				 VIRTIO_NET_CTRL_MAC_ADDR_SET, MAC1, 6, &why),
			 0);
	assert_int_equal(mfd__vdpa_ctrl_apply(
				 &s->ctrl, s->features, 2, VIRTIO_NET_CTRL_MQ,
				 VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, two, 2, &why),
			 0);
	assert_int_equal(mfd__vdpa_ctrl_apply(
				 &s->ctrl, s->features, 2, VIRTIO_NET_CTRL_RX,
				 VIRTIO_NET_CTRL_RX_ALLMULTI, &on, 1, &why),
			 0);
	assert_int_equal(mfd__vdpa_ctrl_apply(&s->ctrl, s->features, 2,
					      VIRTIO_NET_CTRL_MAC,
					      VIRTIO_NET_CTRL_MAC_TABLE_SET,
					      table, sizeof(table), &why),
			 0);
	assert_int_equal(
		mfd__vdpa_ctrl_apply(&s->ctrl, s->features, 2,
				     VIRTIO_NET_CTRL_GUEST_OFFLOADS,
				     VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET, off, 8,
				     &why),
		0);
}

static void test_codec_roundtrip(void **st)
{
	(void)st;
	struct mfd__vdpa_state s, t;
	uint8_t a[MFD_VDPA_STATE_MAX], b[MFD_VDPA_STATE_MAX];
	const char *why = NULL;
	sample_state(&s);
	size_t n = mfd__vdpa_state_encode(&s, a, sizeof(a));
	assert_int_equal(n, mfd__vdpa_state_size(&s));
	assert_int_equal(mfd__vdpa_state_encode(&s, a, n - 1), 0);
	assert_int_equal(mfd__vdpa_state_parse(a, n, &t, &why), 0);
	assert_true(t.features == s.features);
	assert_memory_equal(t.mac, MAC0, 6);
	assert_int_equal(t.max_vq_pairs, 2);
	assert_int_equal(t.mtu, 1500);
	assert_int_equal(t.nvqs, NQ);
	assert_memory_equal(t.vq, s.vq, sizeof(s.vq[0]) * NQ);
	assert_memory_equal(t.ctrl.mac, MAC1, 6);
	assert_int_equal(t.ctrl.mq_pairs, 2);
	assert_int_equal(t.ctrl.n_uni, 1);
	assert_int_equal(t.ctrl.n_multi, 2);
	assert_int_equal(t.ctrl.rx[VIRTIO_NET_CTRL_RX_ALLMULTI], 1);
	assert_true(t.ctrl.offloads == BIT(VIRTIO_NET_F_GUEST_CSUM));
	assert_int_equal(t.ctrl.norder, 5);
	assert_memory_equal(t.ctrl.order, s.ctrl.order, 5 * 2);
	/* Parsing keeps everything: the same bytes again. */
	assert_int_equal(mfd__vdpa_state_encode(&t, b, sizeof(b)), n);
	assert_memory_equal(a, b, n);
}

/* One refusal: the sample's encoding with a change, and what it gives. */
struct bad {
	const char *why; /* a substring of the reason */
	int code;
	void (*edit)(struct mfd__vdpa_state *s); /* before encoding */
	size_t at;   /* then bytes: offset (0: none) */
	uint8_t val; /* the byte put there */
	int trim;    /* bytes cut (<0) or added (>0) at the end */
};

static void e_nover1(struct mfd__vdpa_state *s)
{
	s->features &= ~BIT(VIRTIO_F_VERSION_1);
}
static void e_packed(struct mfd__vdpa_state *s)
{
	s->features |= BIT(VIRTIO_F_RING_PACKED);
}
static void e_pairs0(struct mfd__vdpa_state *s)
{
	s->max_vq_pairs = 0;
}
static void e_nomq_pairs(struct mfd__vdpa_state *s)
{
	s->features &= ~BIT(VIRTIO_NET_F_MQ);
	s->ctrl.norder = 0;
}
static void e_mtu(struct mfd__vdpa_state *s)
{
	s->mtu = 67;
}
static void e_status(struct mfd__vdpa_state *s)
{
	s->status = 4;
}
static void e_q01(struct mfd__vdpa_state *s)
{
	s->vq[1].index = 2;
}
static void e_order(struct mfd__vdpa_state *s)
{
	s->vq[3].index = 2;
}
static void e_beyond(struct mfd__vdpa_state *s)
{
	s->vq[4].index = 5;
}
/* Found by fuzz_vdpa: 512 pairs put the control queue at index 1024. */
static void e_bigindex(struct mfd__vdpa_state *s)
{
	s->max_vq_pairs = 512;
	s->vq[4].index = 1024;
}
static void e_ring(struct mfd__vdpa_state *s)
{
	s->vq[2].num = 300;
}
static void e_flight(struct mfd__vdpa_state *s)
{
	s->vq[0].last_avail = (uint16_t)(s->vq[0].used_idx + 257);
}
static void e_noctrl(struct mfd__vdpa_state *s)
{
	s->features &= ~(BIT(VIRTIO_NET_F_CTRL_VQ) | BIT(VIRTIO_NET_F_MQ));
	s->max_vq_pairs = 0;
	s->nvqs = 2;
}
static void e_mq_nocvq(struct mfd__vdpa_state *s)
{
	s->features &= ~BIT(VIRTIO_NET_F_CTRL_VQ);
}
static void e_mqpairs(struct mfd__vdpa_state *s)
{
	s->ctrl.mq_pairs = 3;
}
static void e_rxextra(struct mfd__vdpa_state *s)
{
	s->features &= ~BIT(VIRTIO_NET_F_CTRL_RX_EXTRA);
	s->ctrl.has |= MFD_VDPA_HAS_RX0 << VIRTIO_NET_CTRL_RX_NOBCAST;
	s->ctrl.order[s->ctrl.norder++] =
		VIRTIO_NET_CTRL_RX << 8 | VIRTIO_NET_CTRL_RX_NOBCAST;
}
static void e_rxval(struct mfd__vdpa_state *s)
{
	s->ctrl.rx[VIRTIO_NET_CTRL_RX_ALLMULTI] = 2;
}
static void e_offl(struct mfd__vdpa_state *s)
{
	s->ctrl.offloads |= BIT(VIRTIO_NET_F_GUEST_TSO6);
}
static void e_table(struct mfd__vdpa_state *s)
{
	s->ctrl.n_multi = MFD_VDPA_MAX_MACS + 1;
}
static void e_dup(struct mfd__vdpa_state *s)
{
	s->ctrl.order[1] = s->ctrl.order[0];
}
static void e_vlan(struct mfd__vdpa_state *s)
{
	s->ctrl.order[2] = VIRTIO_NET_CTRL_VLAN << 8 | VIRTIO_NET_CTRL_VLAN_ADD;
}
static void e_maclen(struct mfd__vdpa_state *s)
{
	(void)s;
}

/* Byte offsets of the sample's encoding: the first command (MAC_ADDR_SET)
 * begins after the header and the five queues. */
#define CMD0 (MFD_VDPA_HDR_LEN + NQ * MFD_VDPA_VQ_LEN)

static const struct bad bads[] = {
	{ "bad magic", -EBADMSG, NULL, 1, 'x', 0 },
	{ "unknown version", -EPROTONOSUPPORT, NULL, 4, 2, 0 },
	{ "reserved flags", -EBADMSG, NULL, 7, 1, 0 },
	{ "not a virtio-net", -EBADMSG, NULL, 8, 2, 0 },
	{ "VERSION_1", -EBADMSG, e_nover1, 0, 0, 0 },
	{ "packed", -EBADMSG, e_packed, 0, 0, 0 },
	{ "max_virtqueue_pairs out of range", -EBADMSG, e_pairs0, 0, 0, 0 },
	{ "max_virtqueue_pairs without", -EBADMSG, e_nomq_pairs, 0, 0, 0 },
	{ "mtu", -EBADMSG, e_mtu, 0, 0, 0 },
	{ "status", -EBADMSG, e_status, 0, 0, 0 },
	{ "too many queues", -EBADMSG, NULL, 12, MFD_VDPA_MAX_VQS + 1, 0 },
	{ "too many control commands", -EBADMSG, NULL, 14,
	  MFD_VDPA_MAX_CMDS + 1, 0 },
	{ "queue table truncated", -EBADMSG, NULL, 12, 60, 0 },
	{ "queues 0 and 1", -EBADMSG, e_q01, 0, 0, 0 },
	{ "not increasing", -EBADMSG, e_order, 0, 0, 0 },
	{ "beyond the device's queues", -EBADMSG, e_beyond, 0, 0, 0 },
	{ "queue index too large", -EBADMSG, e_bigindex, 0, 0, 0 },
	{ "ring size", -EBADMSG, e_ring, 0, 0, 0 },
	{ "in flight", -EBADMSG, e_flight, 0, 0, 0 },
	{ "without VIRTIO_NET_F_CTRL_VQ", -EBADMSG, e_noctrl, 0, 0, 0 },
	{ "VIRTIO_NET_F_MQ without", -EBADMSG, e_mq_nocvq, 0, 0, 0 },
	{ "pairs out of range", -EBADMSG, e_mqpairs, 0, 0, 0 },
	{ "RX mode command without", -EBADMSG, e_rxextra, 0, 0, 0 },
	{ "RX mode command: bad payload", -EBADMSG, e_rxval, 0, 0, 0 },
	{ "offload not negotiated", -EBADMSG, e_offl, 0, 0, 0 },
	{ "bad tables", -EBADMSG, e_table, 0, 0, 0 },
	{ "given twice", -EBADMSG, e_dup, 0, 0, 0 },
	{ "does not carry", -EBADMSG, e_vlan, 0, 0, 0 },
	{ "MAC_ADDR_SET: bad length", -EBADMSG, e_maclen, CMD0 + 2, 5, 0 },
	{ "short header", -EBADMSG, NULL, 0, 0, -(int)(9999) },
	{ "command header truncated", -EBADMSG, NULL, 0, 0, -9998 },
	{ "command payload truncated", -EBADMSG, NULL, 0, 0, -1 },
	{ "trailing bytes", -EBADMSG, NULL, 0, 0, 1 },
};

static void test_codec_refusals(void **st)
{
	(void)st;
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		const struct bad *b = &bads[i];
		struct mfd__vdpa_state s, t;
		uint8_t buf[MFD_VDPA_STATE_MAX + 8] = { 0 };
		const char *why = NULL;
		sample_state(&s);
		if (b->edit)
			b->edit(&s);
		/* An edited state may be one encode refuses to size: encode
		 * into the whole buffer. */
		size_t n = mfd__vdpa_state_size(&s);
		assert_true(n <= sizeof(buf) - 8);
		assert_int_equal(mfd__vdpa_state_encode(&s, buf, sizeof(buf)),
				 n);
		if (b->at)
			buf[b->at] = b->val;
		if (b->trim == -9999)
			n = MFD_VDPA_HDR_LEN - 1;
		else if (b->trim == -9998)
			n = CMD0 + 3;
		else
			n = (size_t)((long)n + b->trim);
		int ret = mfd__vdpa_state_parse(buf, n, &t, &why);
		printf("# %-36s -> %d %s\n", b->why, ret, why ? why : "-");
		assert_int_equal(ret, b->code);
		assert_non_null(why);
		assert_non_null(strstr(why, b->why));
	}
}

/* ------------------------------------------------------------------ */
/* A guest, its hypervisor and a fake device */

struct side {
	uint8_t *mem;
	struct fake_vdpa *f;
	mfd_vdpa_dev *dev;
	mfd_vdpa_sys sys;
	struct fake_vdpa_ring ring[NQ];
};

static void layout(struct fake_vdpa_ring *r)
{
	for (unsigned i = 0; i < NQ; i++) {
		r[i] = (struct fake_vdpa_ring){
			.desc = 0x10000 + 0x8000ull * i,
			.avail = 0x10000 + 0x8000ull * i + 0x1000 * 4,
			.used = 0x10000 + 0x8000ull * i + 0x1000 * 5,
			.bufs = 0x100000 + 0x80000ull * i,
			.num = i == NQ - 1 ? 64 : 256,
			.buf_len = BUFLEN,
		};
	}
}

static int ioc(struct side *s, unsigned long req, void *arg)
{
	int r = s->sys.ioctl(s->sys.ctx, fake_vdpa_fd(s->f), req, arg);
	return r < 0 ? -errno : 0;
}

static int ioc_vs(struct side *s, unsigned long req, unsigned idx, unsigned num)
{
	struct vhost_vring_state vs = { idx, num };
	return ioc(s, req, &vs);
}

static void log_write(void *ctx, uint64_t iova, uint64_t len)
{
	mfd_vdpa_dev_log_write(ctx, iova, len);
}

/* A side with its fake and adapter; the adapter learns the memory and the
 * rings from the "hypervisor". */
static void side_init(struct side *s, uint8_t *mem, uint16_t mtu,
		      uint64_t backend_offered, uint64_t backend_set)
{
	struct fake_vdpa_cfg c = { .features = FEATURES |
					       BIT(VIRTIO_NET_F_HOST_TSO4),
				   .backend_features = backend_offered,
				   .max_vq_pairs = 2,
				   .mtu = mtu,
				   .max_ring = 1024 };
	memcpy(c.mac, MAC0, 6);
	memset(s, 0, sizeof(*s));
	s->mem = mem;
	s->f = fake_vdpa_new(&c, mem, RAM);
	assert_non_null(s->f);
	fake_vdpa_set_writer(s->f, tvm_guest_write);
	s->sys = fake_vdpa_sys(s->f);
	uint64_t bf = backend_set;
	assert_int_equal(ioc(s, VHOST_SET_BACKEND_FEATURES, &bf), 0);
	assert_int_equal(
		mfd_vdpa_dev_new(&s->dev, fake_vdpa_fd(s->f), bf, &s->sys), 0);
	assert_int_equal(mfd_vdpa_dev_add_region(s->dev, 0, mem, RAM), 0);
	layout(s->ring);
	for (unsigned i = 0; i < NQ; i++) {
		mfd_vdpa_vring vr = fake_vdpa_vring_of(&s->ring[i]);
		assert_int_equal(mfd_vdpa_dev_set_vring(s->dev, i, &vr), 0);
	}
}

static void side_free(struct side *s)
{
	mfd_vdpa_dev_free(s->dev);
	fake_vdpa_free(s->f);
}

/* The guest's driver starts the device, as the hypervisor relays it. */
static void guest_boot(struct side *s)
{
	assert_int_equal(fake_vdpa_guest_boot(s->f, s->ring, NQ, FEATURES), 0);
	assert_int_equal(mfd_vdpa_dev_set_features(s->dev, FEATURES), 0);
}

/* A control command through the (shadow) control queue: the device
 * acknowledges it, the adapter records it. */
static void guest_ctrl(struct side *s, uint8_t cls, uint8_t cmd, const void *d,
		       size_t len)
{
	assert_int_equal(
		s->sys.ctrl(s->sys.ctx, fake_vdpa_fd(s->f), cls, cmd, d, len),
		0);
	assert_int_equal(mfd_vdpa_dev_ctrl(s->dev, cls, cmd, d, len), 0);
}

static uint8_t table[4 + 12 + 4 + 18];

static void guest_configure(struct side *s)
{
	uint8_t two[2] = { 2, 0 }, on = 1, off = 0;
	uint8_t offl[8] = { BIT(VIRTIO_NET_F_GUEST_CSUM) |
			    BIT(VIRTIO_NET_F_GUEST_TSO4) };
	table[0] = 2;
	for (unsigned i = 0; i < 12; i++)
		table[4 + i] = (uint8_t)(0x10 + i);
	table[16] = 3;
	for (unsigned i = 0; i < 18; i++)
		table[20 + i] = (uint8_t)(0x80 + i);
	guest_ctrl(s, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, MAC1,
		   6);
	guest_ctrl(s, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, two,
		   2);
	guest_ctrl(s, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &off, 1);
	guest_ctrl(s, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI, &on, 1);
	guest_ctrl(s, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_NOBCAST, &on, 1);
	guest_ctrl(s, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, table,
		   sizeof(table));
	guest_ctrl(s, VIRTIO_NET_CTRL_GUEST_OFFLOADS,
		   VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET, offl, 8);
}

/* Packet k of queue q: its bytes. */
static void packet(uint8_t *p, size_t len, unsigned q, unsigned k)
{
	uint64_t r = seed ^ ((uint64_t)q << 32 | k);
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(tvm_rand(&r) >> 24);
}

static void traffic(struct side *s, unsigned q, unsigned first, unsigned n)
{
	uint8_t p[1500];
	for (unsigned k = first; k < first + n; k++) {
		packet(p, sizeof(p), q, k);
		assert_int_equal(fake_vdpa_rx(s->f, q, p, 60 + k * 7), 0);
	}
}

/* Whether packet k of rx queue q lies in mem where the device put it (the
 * ring was fresh, so packet k took buffer k). */
static bool packet_in(const uint8_t *mem, const struct fake_vdpa_ring *r,
		      unsigned q, unsigned k)
{
	uint8_t p[1500];
	packet(p, sizeof(p), q, k);
	return !memcmp(mem + r->bufs + (uint64_t)k * BUFLEN + 12, p,
		       60 + k * 7);
}

/* ------------------------------------------------------------------ */
/* Migrations through the engine */

/* The tvm first: the engine's hooks get the rig as their tvm. */
struct rig {
	struct tvm vm;
	struct side s, d;
	unsigned syncs;
	bool precopy_traffic, log;
	struct fake_vdpa_view at_stop; /* the source device, still running */
};

static int h_stop(void *o)
{
	struct rig *r = o;
	fake_vdpa_view(r->s.f, &r->at_stop);
	r->vm.stopped++;
	return 0;
}
/* After round 0's pages went out, the NIC receives: these buffers and
 * the used rings were sent already, so only the device's dirty log can
 * bring them over again. */
static int h_sync(void *o, unsigned block, uint64_t *bitmap, uint64_t n)
{
	struct rig *r = o;
	(void)bitmap;
	(void)n;
	if (block == 0 && r->syncs++ == 0 && r->precopy_traffic) {
		traffic(&r->s, 0, 5, 7);
		traffic(&r->s, 2, 3, 4);
	}
	return 0;
}

static void add_dest(struct tvm *vm)
{
	struct rig *r = (struct rig *)vm;
	assert_int_equal(mfd_dest_add_device(vm->dst, "net0",
					     mfd_vdpa_dev_ops(r->d.dev),
					     r->d.dev),
			 0);
}

static void add_source(struct tvm *vm)
{
	struct rig *r = (struct rig *)vm;
	assert_int_equal(mfd_source_add_device(vm->src, "net0",
					       mfd_vdpa_dev_ops(r->s.dev),
					       r->s.dev),
			 0);
}

static int run(struct rig *r, const char *verify, uint16_t dst_mtu,
	       uint64_t backend, int *dret)
{
	struct tvm *vm = &r->vm;
	const char *kv[] = { verify, "channels=2", NULL };
	tvm_config(vm, kv);
	tvm_add_block(vm, "pc.ram", RAM, 4096);
	tvm_fill_random(vm->blocks[0].src, RAM, seed);
	side_init(&r->s, vm->blocks[0].src, 1500, BACKEND_SR, backend);
	side_init(&r->d, vm->blocks[0].dst, dst_mtu, BACKEND_SR, BACKEND_SR);
	if (r->log)
		fake_vdpa_set_log(r->s.f, log_write, r->s.dev);
	guest_boot(&r->s);
	guest_configure(&r->s);
	traffic(&r->s, 0, 0, 5);
	traffic(&r->s, 2, 0, 3);
	vm->dest_setup = add_dest;
	vm->src_setup = add_source;
	vm->shooks = (mfd_source_hooks){ .opaque = r,
					 .stop = h_stop,
					 .sync_dirty = h_sync };
	tvm_start_dest(vm);
	int ret = tvm_migrate(vm, NULL, dret);
	printf("# source %d (%s), destination %d (%s)\n", ret,
	       mfd_strerror(ret), *dret, mfd_strerror(*dret));
	return ret;
}

static void rig_free(struct rig *r)
{
	mfd_source_free(r->vm.src);
	mfd_dest_free(r->vm.dst);
	r->vm.src = NULL;
	r->vm.dst = NULL;
	side_free(&r->s);
	side_free(&r->d);
	tvm_destroy(&r->vm);
}

/* The destination's device matches the source's after it starts. */
static void check_same(struct rig *r)
{
	struct fake_vdpa_view vs = r->at_stop, vd, now;
	fake_vdpa_view(r->s.f, &now);
	fake_vdpa_view(r->d.f, &vd);
	assert_true(vd.features == FEATURES);
	assert_true(vd.features == vs.features);
	assert_memory_equal(vd.mac, MAC1, 6);
	assert_memory_equal(vd.mac, vs.mac, 6);
	assert_int_equal(vd.mq_pairs, 2);
	assert_int_equal(vs.mq_pairs, 2);
	assert_true(vd.offloads == vs.offloads);
	assert_true(vd.offloads == (BIT(VIRTIO_NET_F_GUEST_CSUM) |
				    BIT(VIRTIO_NET_F_GUEST_TSO4)));
	assert_memory_equal(vd.rx, vs.rx, 6);
	assert_int_equal(vd.rx[VIRTIO_NET_CTRL_RX_PROMISC], 0);
	assert_int_equal(vd.rx[VIRTIO_NET_CTRL_RX_NOBCAST], 1);
	assert_int_equal(vd.n_uni, 2);
	assert_int_equal(vd.n_multi, 3);
	assert_memory_equal(vd.uni, table + 4, 12);
	assert_memory_equal(vd.multi, table + 20, 18);
	for (unsigned i = 0; i < NQ; i++) {
		assert_int_equal(vd.last_avail[i], vs.last_avail[i]);
		assert_true(vd.enabled[i]);
	}
	assert_int_equal(vs.last_avail[0], 12);
	assert_int_equal(vs.last_avail[2], 7);
	/* The adapter never asked either device for a refused order. */
	assert_int_equal(now.refused, 0);
	assert_int_equal(vd.refused, 0);
}

static void migrate_ok(uint64_t backend)
{
	struct rig *r = calloc(1, sizeof(*r));
	struct fake_vdpa_view v;
	int dret;
	r->precopy_traffic = r->log = true;
	int ret = run(r, "verify=on", 1500, backend, &dret);
	assert_int_equal(ret, 0);
	assert_int_equal(dret, 0);
	assert_int_equal(r->vm.stopped, 1);
	assert_int_equal(r->vm.resumed, 0);
	assert_true(tvm_equal(&r->vm));
	/* The packets that came in during pre-copy are in the
	 * destination's memory, where the device put them. */
	for (unsigned k = 0; k < 12; k++)
		assert_true(
			packet_in(r->vm.blocks[0].dst, &r->d.ring[0], 0, k));
	for (unsigned k = 0; k < 7; k++)
		assert_true(
			packet_in(r->vm.blocks[0].dst, &r->d.ring[2], 2, k));
	mfd_vdpa_stats ss, ds;
	mfd_vdpa_dev_get_stats(r->s.dev, &ss);
	mfd_vdpa_dev_get_stats(r->d.dev, &ds);
	assert_true(ss.dirty_pages >= 2);
	assert_int_equal(ss.unmapped_writes, 0);
	assert_true(ss.state_bytes > MFD_VDPA_HDR_LEN);
	assert_int_equal(ss.state_bytes, ds.state_bytes);
	printf("# state %llu bytes, load %llu ns, %llu dirty pages logged\n",
	       (unsigned long long)ds.state_bytes,
	       (unsigned long long)ds.load_ns,
	       (unsigned long long)ss.dirty_pages);
	/* Loaded, not started: no DRIVER_OK before the hypervisor starts
	 * the device. */
	fake_vdpa_view(r->d.f, &v);
	assert_int_equal(v.status, VIRTIO_CONFIG_S_ACKNOWLEDGE |
					   VIRTIO_CONFIG_S_DRIVER |
					   VIRTIO_CONFIG_S_FEATURES_OK);
	assert_int_equal(fake_vdpa_rx(r->d.f, 0, "x", 1), -EAGAIN);
	/* The source stays stopped. */
	fake_vdpa_view(r->s.f, &v);
	if (backend & BIT(VHOST_BACKEND_F_SUSPEND))
		assert_true(v.suspended);
	else
		assert_int_equal(v.status, 0); /* reset */
	assert_int_equal(fake_vdpa_rx(r->s.f, 0, "x", 1), -EAGAIN);
	/* The hypervisor starts the guest and its device. */
	const mfd_device_ops *ops = mfd_vdpa_dev_ops(r->d.dev);
	assert_int_equal(ops->set_state(r->d.dev, MFD_DEV_RUNNING), 0);
	check_same(r);
	/* It runs: the next packet takes the next buffer of the ring the
	 * guest set up on the source. */
	uint8_t *dm = r->vm.blocks[0].dst;
	traffic(&r->d, 0, 12, 1);
	assert_true(packet_in(dm, &r->d.ring[0], 0, 12));
	uint16_t used;
	memcpy(&used, dm + r->d.ring[0].used + 2, 2);
	assert_int_equal(used, 13);
	rig_free(r);
	free(r);
}

static void test_migrate_suspend_resume(void **st)
{
	(void)st;
	migrate_ok(BACKEND_SR);
}

/* Without suspend: the state is read, then the device reset. */
static void test_migrate_reset_fallback(void **st)
{
	(void)st;
	migrate_ok(0);
}

/* The control: without the device's log the pre-copy packets do not
 * arrive (the test would not see a missing dirty page otherwise). */
static void test_without_log_packets_are_lost(void **st)
{
	(void)st;
	struct rig *r = calloc(1, sizeof(*r));
	int dret;
	r->precopy_traffic = true;
	r->log = false;
	int ret = run(r, "verify=off", 1500, BACKEND_SR, &dret);
	assert_int_equal(ret, 0);
	assert_int_equal(dret, 0);
	/* The used rings came over (the adapter reports them itself), the
	 * buffers written after round 0 did not. */
	assert_true(packet_in(r->vm.blocks[0].dst, &r->d.ring[0], 0, 4));
	assert_false(packet_in(r->vm.blocks[0].dst, &r->d.ring[0], 0, 5));
	assert_false(tvm_equal(&r->vm));
	rig_free(r);
	free(r);
}

/* The destination refuses (another MTU) after the source device was
 * suspended: the source device runs again, with its state. */
static void fail_after_suspend(uint64_t backend, unsigned resumes,
			       unsigned restarts)
{
	struct rig *r = calloc(1, sizeof(*r));
	struct fake_vdpa_view v;
	int dret;
	r->precopy_traffic = r->log = true;
	int ret = run(r, "verify=on", 9000, backend, &dret);
	assert_int_equal(ret, MFD_EDEVICE);
	assert_int_equal(dret, MFD_EDEVICE);
	assert_int_equal(r->vm.resumed, 1);
	mfd_vdpa_stats ss;
	mfd_vdpa_dev_get_stats(r->s.dev, &ss);
	assert_int_equal(ss.suspends,
			 (backend & BIT(VHOST_BACKEND_F_SUSPEND)) ? 1 : 0);
	assert_int_equal(ss.resumes, resumes);
	assert_int_equal(ss.restarts, restarts);
	fake_vdpa_view(r->s.f, &v);
	assert_false(v.suspended);
	assert_true(v.status & VIRTIO_CONFIG_S_DRIVER_OK);
	assert_memory_equal(v.mac, MAC1, 6);
	assert_int_equal(v.mq_pairs, 2);
	assert_int_equal(v.n_multi, 3);
	assert_int_equal(v.last_avail[0], 12);
	assert_int_equal(v.refused, 0);
	/* The destination never started its device. */
	fake_vdpa_view(r->d.f, &v);
	assert_false(v.status & VIRTIO_CONFIG_S_DRIVER_OK);
	/* The source's NIC receives into the next buffer. */
	traffic(&r->s, 0, 12, 1);
	assert_true(packet_in(r->vm.blocks[0].src, &r->s.ring[0], 0, 12));
	rig_free(r);
	free(r);
}

static void test_fail_resume(void **st)
{
	(void)st;
	fail_after_suspend(BACKEND_SR, 1, 0);
}

static void test_fail_suspend_without_resume(void **st)
{
	(void)st;
	fail_after_suspend(BIT(VHOST_BACKEND_F_SUSPEND), 0, 1);
}

static void test_fail_reset_fallback(void **st)
{
	(void)st;
	fail_after_suspend(0, 0, 1);
}

/* ------------------------------------------------------------------ */
/* Order of ioctls, errors */

static void test_ioctl_order(void **st)
{
	(void)st;
	uint8_t *mem = tvm_map(RAM);
	struct side s;
	side_init(&s, mem, 1500, BIT(VHOST_BACKEND_F_SUSPEND), 0);
	struct fake_vdpa_view v;
	uint64_t bf = BIT(VHOST_BACKEND_F_RESUME);
	/* A backend feature the device does not offer. */
	assert_int_equal(ioc(&s, VHOST_SET_BACKEND_FEATURES, &bf), -EOPNOTSUPP);
	/* FEATURES_OK before features; DRIVER_OK before FEATURES_OK. */
	uint8_t stv = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
		      VIRTIO_CONFIG_S_FEATURES_OK;
	assert_int_equal(ioc(&s, VHOST_VDPA_SET_STATUS, &stv), -EINVAL);
	stv = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER_OK;
	assert_int_equal(ioc(&s, VHOST_VDPA_SET_STATUS, &stv), -EINVAL);
	guest_boot(&s);
	/* Rings move only while the device is stopped. */
	assert_int_equal(ioc_vs(&s, VHOST_SET_VRING_BASE, 0, 7), -EBUSY);
	assert_int_equal(ioc_vs(&s, VHOST_SET_VRING_NUM, 0, 128), -EBUSY);
	uint64_t f = FEATURES;
	assert_int_equal(ioc(&s, VHOST_SET_FEATURES, &f), -EBUSY);
	/* No status bit cleared without a reset. */
	stv = VIRTIO_CONFIG_S_ACKNOWLEDGE;
	assert_int_equal(ioc(&s, VHOST_VDPA_SET_STATUS, &stv), -EINVAL);
	/* Suspend without the backend feature set. */
	assert_int_equal(ioc(&s, VHOST_VDPA_SUSPEND, NULL), -EOPNOTSUPP);
	assert_int_equal(ioc(&s, VHOST_VDPA_RESUME, NULL), -EOPNOTSUPP);
	fake_vdpa_view(s.f, &v);
	assert_int_equal(v.refused, 9);
	assert_true(v.last_refused == VHOST_VDPA_RESUME);
	/* The adapter refuses arcs it has no meaning for. */
	const mfd_device_ops *ops = mfd_vdpa_dev_ops(s.dev);
	assert_int_equal(ops->caps, MFD_DEV_CAP_STOP_COPY);
	assert_int_equal(ops->set_state(s.dev, MFD_DEV_RESUMING), -EINVAL);
	uint8_t b[8];
	assert_int_equal(ops->save(s.dev, b, sizeof(b)), -EINVAL);
	assert_int_equal(ops->load(s.dev, b, sizeof(b)), -EINVAL);
	int cur;
	assert_int_equal(ops->get_state(s.dev, &cur), 0);
	assert_int_equal(cur, MFD_DEV_RUNNING);
	side_free(&s);
	tvm_unmap(mem, RAM);
}

/* A failing ioctl after the suspend: the adapter resumes the device and
 * reports the error; the control command it cannot carry is refused. */
static void test_adapter_errors(void **st)
{
	(void)st;
	uint8_t *mem = tvm_map(RAM);
	struct side s;
	struct fake_vdpa_view v;
	side_init(&s, mem, 1500, BACKEND_SR, BACKEND_SR);
	guest_boot(&s);
	uint8_t vlan[2] = { 5, 0 };
	assert_int_equal(mfd_vdpa_dev_ctrl(s.dev, VIRTIO_NET_CTRL_VLAN,
					   VIRTIO_NET_CTRL_VLAN_ADD, vlan, 2),
			 -EINVAL);
	assert_int_equal(mfd_vdpa_dev_set_features(s.dev, BIT(63)), -EINVAL);
	mfd_vdpa_vring vr = fake_vdpa_vring_of(&s.ring[0]);
	vr.num = 2048; /* over the device's 1024 */
	assert_int_equal(mfd_vdpa_dev_set_vring(s.dev, 0, &vr), -EINVAL);
	assert_int_equal(mfd_vdpa_dev_set_vring(s.dev, NQ, &vr), -EINVAL);
	fake_vdpa_fail(s.f, VHOST_GET_VRING_BASE, EIO);
	const mfd_device_ops *ops = mfd_vdpa_dev_ops(s.dev);
	assert_int_equal(ops->set_state(s.dev, MFD_DEV_STOP), -EIO);
	int cur;
	assert_int_equal(ops->get_state(s.dev, &cur), 0);
	assert_int_equal(cur, MFD_DEV_RUNNING);
	fake_vdpa_view(s.f, &v);
	assert_false(v.suspended);
	/* Not virtio-net (or not vhost-vdpa at all). */
	mfd_vdpa_dev *d2;
	fake_vdpa_fail(s.f, VHOST_VDPA_GET_DEVICE_ID, ENOTTY);
	assert_int_equal(mfd_vdpa_dev_new(&d2, fake_vdpa_fd(s.f), 0, &s.sys),
			 -EOPNOTSUPP);
	side_free(&s);
	tvm_unmap(mem, RAM);
}

/* Destination: a state that does not fit its device is refused before
 * DRIVER_OK. */
static void test_load_refusals(void **st)
{
	(void)st;
	uint8_t *mem = tvm_map(RAM);
	struct side s;
	struct mfd__vdpa_state ref;
	uint8_t buf[MFD_VDPA_STATE_MAX];
	side_init(&s, mem, 1500, BACKEND_SR, BACKEND_SR);
	const mfd_device_ops *ops = mfd_vdpa_dev_ops(s.dev);
	sample_state(&ref);
	for (unsigned i = 0; i < NQ; i++) {
		ref.vq[i].num = s.ring[i].num;
		ref.vq[i].last_avail = ref.vq[i].used_idx = 0;
	}
	memset(mem + s.ring[0].used, 0, 4);
	memset(mem + s.ring[1].used, 0, 4);
	memset(mem + s.ring[2].used, 0, 4);
	memset(mem + s.ring[3].used, 0, 4);
	memset(mem + s.ring[4].used, 0, 4);
	for (int c = 0; c < 4; c++) {
		struct mfd__vdpa_state t = ref;
		int want = -EINVAL;
		if (c == 0)
			t.features |= BIT(VIRTIO_NET_F_GUEST_TSO6); /* not
								offered */
		if (c == 1)
			t.vq[0].used_idx = t.vq[0].last_avail = 9; /* ring
								      says 0 */
		if (c == 2)
			t.vq[2].num = 512; /* set up with 256 */
		size_t n = mfd__vdpa_state_encode(&t, buf, sizeof(buf));
		if (c == 3) {
			buf[0] ^= 1;
			want = -EBADMSG;
		}
		int cur;
		assert_int_equal(ops->get_state(s.dev, &cur), 0);
		if (cur == MFD_DEV_ERROR)
			assert_int_equal(ops->reset(s.dev), 0);
		assert_int_equal(ops->set_state(s.dev, MFD_DEV_STOP), 0);
		assert_int_equal(ops->set_state(s.dev, MFD_DEV_RESUMING), 0);
		assert_int_equal(ops->load(s.dev, buf, n / 2), 0);
		assert_int_equal(ops->load(s.dev, buf + n / 2, n - n / 2), 0);
		assert_int_equal(ops->set_state(s.dev, MFD_DEV_STOP), want);
		struct fake_vdpa_view v;
		fake_vdpa_view(s.f, &v);
		assert_false(v.status & VIRTIO_CONFIG_S_DRIVER_OK);
	}
	/* Too many bytes for any valid state. */
	assert_int_equal(ops->reset(s.dev), 0);
	assert_int_equal(ops->set_state(s.dev, MFD_DEV_STOP), 0);
	assert_int_equal(ops->set_state(s.dev, MFD_DEV_RESUMING), 0);
	static uint8_t big[MFD_VDPA_STATE_MAX + 1];
	assert_int_equal(ops->load(s.dev, big, sizeof(big)), -EMSGSIZE);
	side_free(&s);
	tvm_unmap(mem, RAM);
}

static void test_no_device(void **st)
{
	(void)st;
	int fd = -1;
	assert_int_equal(mfd_vdpa_open("/dev/vhost-vdpa-4095", &fd), -ENODEV);
	assert_int_equal(fd, -1);
	assert_int_equal(mfd_vdpa_open(NULL, &fd), -EINVAL);
}

int main(void)
{
	seed = tvm_seed("test_vdpa");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_codec_roundtrip),
		cmocka_unit_test(test_codec_refusals),
		cmocka_unit_test(test_ioctl_order),
		cmocka_unit_test(test_adapter_errors),
		cmocka_unit_test(test_load_refusals),
		cmocka_unit_test(test_no_device),
		cmocka_unit_test(test_migrate_suspend_resume),
		cmocka_unit_test(test_migrate_reset_fallback),
		cmocka_unit_test(test_without_log_packets_are_lost),
		cmocka_unit_test(test_fail_resume),
		cmocka_unit_test(test_fail_suspend_without_resume),
		cmocka_unit_test(test_fail_reset_fallback),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
