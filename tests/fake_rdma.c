/* SPDX-License-Identifier: MIT */
/* The "fake-rdma:" transport: listeners and connections in one process. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_rdma.h"
#include "fake_verbs.h"
#include "multifd/channels/channel.h"
#include "multifd/channels/rdma.h"

#define BACKLOG 64

struct flistener {
	unsigned port;
	struct mfd__chan *pending[BACKLOG];
	unsigned n;
	bool closed;
	struct flistener *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct flistener *listeners;
static unsigned next_port = 1000;

static int port_of(const char *uri)
{
	const char *p = strrchr(uri, ':');
	return p ? atoi(p + 1) : -1;
}

static int f_connect(const char *uri, uint64_t timeout_ms,
		     struct mfd__chan **out)
{
	int port = port_of(uri);
	pthread_mutex_lock(&lock);
	struct flistener *l = listeners;
	while (l && (int)l->port != port)
		l = l->next;
	if (!l || l->closed || l->n == BACKLOG) {
		pthread_mutex_unlock(&lock);
		return -ECONNREFUSED;
	}
	/* As rdma_cm's passive side, the acceptor's receives are posted
	 * before the connection is established. */
	struct mfd__vqp *a, *b;
	fake_pair(&a, &b);
	struct mfd__chan *cb;
	int ret =
		mfd__rdma_chan_new(&fake_verbs_ops, b, "fake-rdma source", &cb);
	if (ret) {
		pthread_mutex_unlock(&lock);
		fake_verbs_ops.destroy(a);
		return ret;
	}
	l->pending[l->n++] = cb;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&lock);
	return mfd__rdma_chan_new(&fake_verbs_ops, a, "fake-rdma dest", out);
}

static int f_listen(const char *uri, int backlog, struct mfd__listener *l)
{
	struct flistener *fl = calloc(1, sizeof(*fl));
	if (!fl)
		return -ENOMEM;
	pthread_mutex_lock(&lock);
	fl->port = next_port++;
	fl->next = listeners;
	listeners = fl;
	pthread_mutex_unlock(&lock);
	l->priv = fl;
	snprintf(l->uri, sizeof(l->uri), "fake-rdma:local:%u", fl->port);
	return 0;
}

static int f_accept(struct mfd__listener *l, uint64_t timeout_ms,
		    const int *cancel, struct mfd__chan **out)
{
	struct flistener *fl = l->priv;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	uint64_t deadline_ms = (uint64_t)now.tv_sec * 1000 +
			       (uint64_t)now.tv_nsec / 1000000 + timeout_ms;
	pthread_mutex_lock(&lock);
	for (;;) {
		if (fl->n) {
			*out = fl->pending[0];
			memmove(fl->pending, fl->pending + 1,
				--fl->n * sizeof(fl->pending[0]));
			pthread_mutex_unlock(&lock);
			return 0;
		}
		if (cancel && __atomic_load_n(cancel, __ATOMIC_ACQUIRE)) {
			pthread_mutex_unlock(&lock);
			return -ECANCELED;
		}
		clock_gettime(CLOCK_REALTIME, &now);
		uint64_t ms = (uint64_t)now.tv_sec * 1000 +
			      (uint64_t)now.tv_nsec / 1000000;
		if (ms >= deadline_ms) {
			pthread_mutex_unlock(&lock);
			return -ETIMEDOUT;
		}
		uint64_t until =
			ms + 100 < deadline_ms ? ms + 100 : deadline_ms;
		struct timespec ts = { (time_t)(until / 1000),
				       (long)(until % 1000) * 1000000L };
		pthread_cond_timedwait(&cv, &lock, &ts);
	}
}

static void f_listener_close(struct mfd__listener *l)
{
	struct flistener *fl = l->priv;
	if (!fl)
		return;
	pthread_mutex_lock(&lock);
	for (struct flistener **pp = &listeners; *pp; pp = &(*pp)->next)
		if (*pp == fl) {
			*pp = fl->next;
			break;
		}
	pthread_mutex_unlock(&lock);
	for (unsigned i = 0; i < fl->n; i++)
		fl->pending[i]->ops->close(fl->pending[i]);
	free(fl);
	l->priv = NULL;
}

static const struct mfd__transport fake_rdma_transport = {
	.name = "fake-rdma",
	.connect = f_connect,
	.listen = f_listen,
	.accept = f_accept,
	.listener_close = f_listener_close,
};

void fake_rdma_install(void)
{
	if (mfd__transport_register("fake-rdma", &fake_rdma_transport))
		abort();
}
