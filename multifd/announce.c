/* SPDX-License-Identifier: MIT */
/*
 * Self-announcement after a migration (include/multifd/announce.h): the
 * frame builder (pure), the rounds on a schedule, and the destination's
 * announcement thread. The frame follows QEMU's announce_self_create().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "multifd/announcer.h"
#include "multifd/common/clock.h"
#include "multifd/common/log.h"
#include "multifd/common/util.h"
#include "multifd/config.h"
#include "multifd/stats.h"

int mfd_announce_get_params(const mfd_config *cfg, mfd_announce_params *p)
{
	struct mfd_config def;

	if (!p)
		return -EINVAL;
	if (!cfg) {
		mfd__config_defaults(&def);
		cfg = &def;
	}
	*p = (mfd_announce_params){
		.initial_ms = (uint32_t)cfg->announce_initial_ms,
		.max_ms = (uint32_t)cfg->announce_max_ms,
		.rounds = cfg->announce_rounds,
		.step_ms = (uint32_t)cfg->announce_step_ms,
	};
	return 0;
}

uint64_t mfd_announce_delay_ms(const mfd_announce_params *p, unsigned round)
{
	uint64_t d = p->initial_ms + (uint64_t)round * p->step_ms;

	return d > p->max_ms ? p->max_ms : d;
}

static bool mac_ok(const uint8_t mac[6])
{
	static const uint8_t zero[6];

	/* Bit 0 of the first byte: group address (multicast, broadcast). */
	return !(mac[0] & 1) && memcmp(mac, zero, 6) != 0;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

int mfd_announce_frame(uint8_t out[MFD_ANNOUNCE_FRAME_LEN],
		       const uint8_t mac[6])
{
	if (!out || !mac || !mac_ok(mac))
		return -EINVAL;
	memset(out, 0, MFD_ANNOUNCE_FRAME_LEN);
	memset(out, 0xff, 6); /* broadcast */
	memcpy(out + 6, mac, 6);
	put16(out + 12, MFD_ANNOUNCE_ETHERTYPE);
	put16(out + 14, 1);	 /* hardware: Ethernet */
	put16(out + 16, 0x0800); /* protocol: IPv4 */
	out[18] = 6;		 /* hardware address length */
	out[19] = 4;		 /* protocol address length */
	put16(out + 20, MFD_ANNOUNCE_OP_REQUEST_REVERSE);
	memcpy(out + 22, mac, 6); /* sender hardware; sender IP 0 */
	memcpy(out + 32, mac, 6); /* target hardware; target IP 0 */
	return 0;		  /* bytes 42..59: padding, zero */
}

int mfd_announce_parse_mac(const char *text, uint8_t mac[6])
{
	uint8_t v[6];

	if (!text || !mac || strlen(text) != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		const char *s = text + 3 * i;
		int hi = mfd__hexval(s[0]), lo = mfd__hexval(s[1]);

		if (hi < 0 || lo < 0 || (i < 5 && s[2] != ':' && s[2] != '-'))
			return -EINVAL;
		v[i] = (uint8_t)(hi << 4 | lo);
	}
	memcpy(mac, v, 6);
	return 0;
}

static int check_list(const char *ifname, const uint8_t (*macs)[6],
		      unsigned nmacs)
{
	if (!ifname || !ifname[0] || strlen(ifname) >= IF_NAMESIZE || !macs ||
	    nmacs == 0 || nmacs > MFD_ANNOUNCE_MAX_MACS)
		return -EINVAL;
	for (unsigned i = 0; i < nmacs; i++)
		if (!mac_ok(macs[i]))
			return -EINVAL;
	return 0;
}

/* ---- one round: a frame per address ---- */

struct sender {
	int fd;
	struct sockaddr_ll to;
	const uint8_t (*macs)[6];
	unsigned nmacs;
};

static int sender_open(struct sender *s, const char *ifname,
		       const uint8_t (*macs)[6], unsigned nmacs)
{
	unsigned idx = if_nametoindex(ifname);

	if (!idx)
		return errno == ENXIO || errno == ENOENT ? -ENODEV : -errno;
	/* Protocol 0: the socket only sends, nothing is queued to it. */
	s->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (s->fd < 0)
		return errno == EACCES ? -EPERM : -errno;
	memset(&s->to, 0, sizeof(s->to));
	s->to.sll_family = AF_PACKET;
	s->to.sll_protocol = htons(MFD_ANNOUNCE_ETHERTYPE);
	s->to.sll_ifindex = (int)idx;
	s->to.sll_halen = ETH_ALEN;
	memset(s->to.sll_addr, 0xff, ETH_ALEN);
	s->macs = macs;
	s->nmacs = nmacs;
	return 0;
}

static int send_round(void *ctx, unsigned round)
{
	struct sender *s = ctx;
	uint8_t f[MFD_ANNOUNCE_FRAME_LEN];

	for (unsigned i = 0; i < s->nmacs; i++) {
		(void)mfd_announce_frame(f, s->macs[i]); /* checked before */
		ssize_t n =
			sendto(s->fd, f, sizeof(f), 0,
			       (const struct sockaddr *)&s->to, sizeof(s->to));
		if (n < 0)
			return -errno;
		if (n != (ssize_t)sizeof(f))
			return -EIO;
	}
	return 0;
}

/*
 * The schedule. Deadlines are absolute (from t0), so a slow round does not
 * shift the later ones. With a stopper, the sleep ends early when it is
 * stopped (then 0 and no further round).
 */
static int run_rounds(const mfd_announce_params *p,
		      int (*round_fn)(void *ctx, unsigned round), void *ctx,
		      struct mfd__announcer *stopper)
{
	uint64_t at = mfd__now_ns();

	for (unsigned r = 0; r < p->rounds; r++) {
		at += mfd_announce_delay_ms(p, r) * 1000000;
		if (stopper) {
			bool stop;

			pthread_mutex_lock(&stopper->lock);
			while (!stopper->stop &&
			       mfd__cond_wait_until(&stopper->cv,
						    &stopper->lock,
						    at) != ETIMEDOUT)
				;
			stop = stopper->stop;
			pthread_mutex_unlock(&stopper->lock);
			if (stop)
				return 0;
		} else {
			struct timespec ts = {
				.tv_sec = (time_t)(at / 1000000000),
				.tv_nsec = (long)(at % 1000000000),
			};
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME,
					       &ts, NULL) == EINTR)
				;
		}
		int err = round_fn(ctx, r);
		if (err)
			return err;
	}
	return 0;
}

int mfd_announce_run(const char *ifname, const uint8_t (*macs)[6],
		     unsigned nmacs, const mfd_announce_params *p)
{
	struct sender s;
	int err;

	if (!p)
		return -EINVAL;
	err = check_list(ifname, macs, nmacs);
	if (!err)
		err = sender_open(&s, ifname, macs, nmacs);
	if (err)
		return err;
	err = run_rounds(p, send_round, &s, NULL);
	close(s.fd);
	return err;
}

/* ---- the destination's announcement thread ---- */

void mfd__announcer_init(struct mfd__announcer *a)
{
	memset(a, 0, sizeof(*a));
	pthread_mutex_init(&a->lock, NULL);
	mfd__cond_init_mono(&a->cv);
}

int mfd__announcer_set(struct mfd__announcer *a, const char *ifname,
		       const uint8_t (*macs)[6], unsigned nmacs)
{
	uint8_t(*copy)[6] = NULL;

	(void)mfd__announcer_join(a, true); /* it reads the list */
	if (nmacs) {
		int err = check_list(ifname, macs, nmacs);
		if (err)
			return err;
		copy = malloc(sizeof(*copy) * nmacs);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, macs, sizeof(*copy) * nmacs);
		snprintf(a->ifname, sizeof(a->ifname), "%s", ifname);
	}
	free(a->macs);
	a->macs = copy;
	a->nmacs = nmacs;
	return 0;
}

struct hook_ctx {
	int (*hook)(void *opaque, unsigned round);
	void *opaque;
};

static int hook_round(void *ctx, unsigned round)
{
	struct hook_ctx *h = ctx;

	return h->hook(h->opaque, round) < 0 ? MFD_EHOOK : 0;
}

static void *announcer_main(void *arg)
{
	struct mfd__announcer *a = arg;
	int err;

	if (a->hook) {
		struct hook_ctx h = { a->hook, a->opaque };

		err = run_rounds(&a->p, hook_round, &h, a);
	} else {
		struct sender s;

		err = sender_open(&s, a->ifname, (const uint8_t(*)[6])a->macs,
				  a->nmacs);
		if (!err) {
			err = run_rounds(&a->p, send_round, &s, a);
			close(s.fd);
		}
	}
	if (err)
		mfd__warn("announce: %s: %s", a->hook ? "hook" : a->ifname,
			  mfd_strerror(err));
	a->result = err; /* read after the join */
	if (a->cpu_ns)
		STAT_ADD(*a->cpu_ns, mfd__thread_cpu_ns());
	return NULL;
}

int mfd__announcer_start(struct mfd__announcer *a, const mfd_announce_params *p,
			 int (*hook)(void *opaque, unsigned round),
			 void *opaque, uint64_t *cpu_ns)
{
	(void)mfd__announcer_join(a, true); /* an earlier one: obsolete */
	a->result = 0;
	if (p->rounds == 0 || (!hook && a->nmacs == 0))
		return 0;
	a->p = *p;
	a->hook = hook;
	a->opaque = opaque;
	a->cpu_ns = cpu_ns;
	a->stop = false;
	int err = -pthread_create(&a->thread, NULL, announcer_main, a);
	if (err) {
		a->result = err;
		return err;
	}
	a->started = true;
	return 0;
}

int mfd__announcer_join(struct mfd__announcer *a, bool stop)
{
	int ret;

	if (!a->started) {
		ret = a->result;
		if (stop) /* abandoned: no result carries over */
			a->result = 0;
		return ret;
	}
	if (stop) {
		pthread_mutex_lock(&a->lock);
		a->stop = true;
		pthread_cond_broadcast(&a->cv);
		pthread_mutex_unlock(&a->lock);
	}
	pthread_join(a->thread, NULL);
	a->started = false;
	ret = a->result;
	if (stop)
		a->result = 0;
	return ret;
}

void mfd__announcer_destroy(struct mfd__announcer *a)
{
	(void)mfd__announcer_join(a, true);
	free(a->macs);
	a->macs = NULL;
	pthread_cond_destroy(&a->cv);
	pthread_mutex_destroy(&a->lock);
}
