/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_verbs.h"

#define MAXQ  1024
#define MAXMR 128

struct fabric {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	unsigned refs;
	uint32_t next_key;
};

struct fmr {
	uint8_t *addr;
	size_t len;
	uint32_t lkey, rkey;
	bool remote_write, live;
};

struct fwr {
	uint64_t wr_id;
	uint8_t *buf;
	uint32_t len, lkey;
};

struct mfd__vqp {
	struct fabric *f;
	struct mfd__vqp *peer;
	bool error;
	struct fmr mr[MAXMR];
	struct fwr rq[MAXQ];
	unsigned rq_head, rq_n;
	struct mfd__vwc cq[MAXQ * 2];
	unsigned cq_head, cq_n;
	unsigned fail_in;
	int fail_err;
	unsigned sends, writes;
};

static void cq_push(struct mfd__vqp *q, uint64_t wr_id, int op, int status,
		    uint32_t len)
{
	unsigned size = MAXQ * 2;
	if (q->cq_n == size)
		abort(); /* the protocol overran its completion queue */
	q->cq[(q->cq_head + q->cq_n++) % size] =
		(struct mfd__vwc){ wr_id, status, op, len };
	pthread_cond_broadcast(&q->f->cv);
}

/* Under lock: the error state, with every posted receive flushed. */
static void to_error(struct mfd__vqp *q)
{
	if (q->error)
		return;
	q->error = true;
	while (q->rq_n) {
		struct fwr *w = &q->rq[q->rq_head];
		cq_push(q, w->wr_id, MFD__VWC_RECV, -ECONNRESET, 0);
		q->rq_head = (q->rq_head + 1) % MAXQ;
		q->rq_n--;
	}
	pthread_cond_broadcast(&q->f->cv);
}

static void both_error(struct mfd__vqp *q)
{
	to_error(q);
	if (q->peer)
		to_error(q->peer);
}

void fake_pair(struct mfd__vqp **a, struct mfd__vqp **b)
{
	struct fabric *f = calloc(1, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cv, NULL);
	f->refs = 2;
	f->next_key = 0x1000;
	*a = calloc(1, sizeof(**a));
	*b = calloc(1, sizeof(**b));
	(*a)->f = (*b)->f = f;
	(*a)->peer = *b;
	(*b)->peer = *a;
}

void fake_fail_post(struct mfd__vqp *q, unsigned n, int err)
{
	pthread_mutex_lock(&q->f->lock);
	q->fail_in = n;
	q->fail_err = err;
	pthread_mutex_unlock(&q->f->lock);
}

#define COUNTER(name, expr)                                                    \
	unsigned name(struct mfd__vqp *q)                                      \
	{                                                                      \
		pthread_mutex_lock(&q->f->lock);                               \
		unsigned v = (expr);                                           \
		pthread_mutex_unlock(&q->f->lock);                             \
		return v;                                                      \
	}
COUNTER(fake_sends, q->sends)
COUNTER(fake_writes, q->writes)
COUNTER(fake_posted_recvs, q->rq_n)

/* Under lock: an injected failure of this post? */
static int injected(struct mfd__vqp *q)
{
	if (q->fail_in && --q->fail_in == 0)
		return q->fail_err;
	return 0;
}

static int f_reg(struct mfd__vqp *q, void *addr, size_t len, bool remote_write,
		 struct mfd__vmr *out)
{
	pthread_mutex_lock(&q->f->lock);
	int ret = -ENOMEM;
	for (unsigned i = 0; i < MAXMR; i++) {
		struct fmr *m = &q->mr[i];
		if (m->live)
			continue;
		*m = (struct fmr){
			addr,	      len, q->f->next_key++, q->f->next_key++,
			remote_write, true
		};
		*out = (struct mfd__vmr){ addr, len, m->lkey, m->rkey, m };
		ret = 0;
		break;
	}
	pthread_mutex_unlock(&q->f->lock);
	return ret;
}

static void f_dereg(struct mfd__vqp *q, struct mfd__vmr *mr)
{
	pthread_mutex_lock(&q->f->lock);
	if (mr->handle)
		((struct fmr *)mr->handle)->live = false;
	mr->handle = NULL;
	pthread_mutex_unlock(&q->f->lock);
}

/* Under lock: [buf, buf+len) inside a region of q with this key? */
static bool covered(struct mfd__vqp *q, const uint8_t *buf, uint64_t len,
		    uint32_t key, bool remote)
{
	for (unsigned i = 0; i < MAXMR; i++) {
		struct fmr *m = &q->mr[i];
		if (!m->live || (remote ? m->rkey : m->lkey) != key)
			continue;
		if (remote && !m->remote_write)
			return false;
		return buf >= m->addr && len <= m->len &&
		       (uint64_t)(buf - m->addr) <= m->len - len;
	}
	return false;
}

static int f_send(struct mfd__vqp *q, uint64_t wr_id, const void *buf,
		  uint32_t len, uint32_t lkey)
{
	pthread_mutex_lock(&q->f->lock);
	int ret = injected(q);
	if (ret)
		goto out;
	if (q->error) {
		cq_push(q, wr_id, MFD__VWC_SEND, -ECONNRESET, 0);
		goto out;
	}
	if (!covered(q, buf, len, lkey, false)) {
		cq_push(q, wr_id, MFD__VWC_SEND, -EACCES, 0);
		both_error(q);
		goto out;
	}
	struct mfd__vqp *p = q->peer;
	if (!p || p->rq_n == 0) {
		cq_push(q, wr_id, MFD__VWC_SEND, -ENOBUFS, 0);
		both_error(q);
		goto out;
	}
	struct fwr *w = &p->rq[p->rq_head];
	if (w->len < len) {
		cq_push(q, wr_id, MFD__VWC_SEND, -EIO, 0);
		both_error(q);
		goto out;
	}
	memcpy(w->buf, buf, len);
	p->rq_head = (p->rq_head + 1) % MAXQ;
	p->rq_n--;
	q->sends++;
	cq_push(p, w->wr_id, MFD__VWC_RECV, 0, len);
	cq_push(q, wr_id, MFD__VWC_SEND, 0, 0);
out:
	pthread_mutex_unlock(&q->f->lock);
	return ret;
}

static int f_recv(struct mfd__vqp *q, uint64_t wr_id, void *buf, uint32_t len,
		  uint32_t lkey)
{
	pthread_mutex_lock(&q->f->lock);
	int ret = injected(q);
	if (!ret && q->rq_n == MAXQ)
		ret = -ENOMEM;
	if (!ret && q->error)
		cq_push(q, wr_id, MFD__VWC_RECV, -ECONNRESET, 0);
	else if (!ret)
		q->rq[(q->rq_head + q->rq_n++) % MAXQ] =
			(struct fwr){ wr_id, buf, len, lkey };
	pthread_mutex_unlock(&q->f->lock);
	return ret;
}

static pthread_mutex_t bad_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned bad_n;
static enum fake_bad_write bad_what;

void fake_bad_write(unsigned n, enum fake_bad_write what)
{
	pthread_mutex_lock(&bad_lock);
	bad_n = n;
	bad_what = what;
	pthread_mutex_unlock(&bad_lock);
}

static enum fake_bad_write bad_now(void)
{
	enum fake_bad_write w = FAKE_WRITE_OK;
	pthread_mutex_lock(&bad_lock);
	if (bad_n && --bad_n == 0)
		w = bad_what;
	pthread_mutex_unlock(&bad_lock);
	return w;
}

static int f_write(struct mfd__vqp *q, uint64_t wr_id, const void *buf,
		   uint32_t len, uint32_t lkey, uint64_t raddr, uint32_t rkey)
{
	enum fake_bad_write bad = bad_now();
	pthread_mutex_lock(&q->f->lock);
	if (bad == FAKE_WRITE_BAD_RKEY)
		rkey ^= 0x40000000;
	for (unsigned i = 0; bad == FAKE_WRITE_PAST_END && q->peer && i < MAXMR;
	     i++) {
		struct fmr *m = &q->peer->mr[i];
		if (m->live && m->rkey == rkey)
			raddr = (uint64_t)(uintptr_t)(m->addr + m->len);
	}
	int ret = injected(q);
	if (ret)
		goto out;
	if (q->error) {
		cq_push(q, wr_id, MFD__VWC_WRITE, -ECONNRESET, 0);
		goto out;
	}
	uint8_t *dst = (uint8_t *)(uintptr_t)raddr;
	if (!covered(q, buf, len, lkey, false) || !q->peer ||
	    !covered(q->peer, dst, len, rkey, true)) {
		cq_push(q, wr_id, MFD__VWC_WRITE, -EACCES, 0);
		both_error(q);
		goto out;
	}
	memcpy(dst, buf, len);
	q->writes++;
	cq_push(q, wr_id, MFD__VWC_WRITE, 0, 0);
out:
	pthread_mutex_unlock(&q->f->lock);
	return ret;
}

static int f_poll(struct mfd__vqp *q, struct mfd__vwc *wc, int n,
		  int timeout_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (timeout_ms > 0) {
		ts.tv_sec += timeout_ms / 1000;
		ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&q->f->lock);
	while (q->cq_n == 0 && timeout_ms != 0) {
		if (timeout_ms < 0)
			pthread_cond_wait(&q->f->cv, &q->f->lock);
		else if (pthread_cond_timedwait(&q->f->cv, &q->f->lock, &ts))
			break;
	}
	int got = 0;
	while (got < n && q->cq_n) {
		wc[got++] = q->cq[q->cq_head];
		q->cq_head = (q->cq_head + 1) % (MAXQ * 2);
		q->cq_n--;
	}
	pthread_mutex_unlock(&q->f->lock);
	return got;
}

static void f_disconnect(struct mfd__vqp *q)
{
	pthread_mutex_lock(&q->f->lock);
	both_error(q);
	pthread_mutex_unlock(&q->f->lock);
}

static void f_destroy(struct mfd__vqp *q)
{
	struct fabric *f = q->f;
	pthread_mutex_lock(&f->lock);
	both_error(q);
	if (q->peer)
		q->peer->peer = NULL;
	unsigned refs = --f->refs;
	pthread_mutex_unlock(&f->lock);
	free(q);
	if (refs == 0) {
		pthread_mutex_destroy(&f->lock);
		pthread_cond_destroy(&f->cv);
		free(f);
	}
}

static int f_fd(struct mfd__vqp *q)
{
	return -1;
}

const struct mfd__verbs_ops fake_verbs_ops = {
	.name = "fake",
	.reg_mr = f_reg,
	.dereg_mr = f_dereg,
	.post_send = f_send,
	.post_recv = f_recv,
	.post_write = f_write,
	.poll = f_poll,
	.disconnect = f_disconnect,
	.destroy = f_destroy,
	.fd = f_fd,
};
