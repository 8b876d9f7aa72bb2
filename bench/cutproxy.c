/* SPDX-License-Identifier: MIT */
/* --cut-at-round's proxy (cutproxy.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cutproxy.h"

#define MAX_CONN 160 /* main, 64 data channels, lanes: with room */

struct pump {
	int from, to;
	pthread_t thread;
};

struct cutproxy {
	int lfd;
	struct sockaddr_in target;
	pthread_t thread;
	int stop; /* atomic */
	pthread_mutex_t lock;
	int fds[2 * MAX_CONN]; /* client, server of each connection */
	struct pump pumps[2 * MAX_CONN];
	unsigned n;
};

static void *pump_main(void *arg)
{
	struct pump *pp = arg;
	static __thread char buf[256 * 1024];
	for (;;) {
		ssize_t r = read(pp->from, buf, sizeof(buf));
		if (r <= 0)
			break;
		for (ssize_t off = 0; off < r;) {
			ssize_t w = send(pp->to, buf + off, (size_t)(r - off),
					 MSG_NOSIGNAL);
			if (w <= 0)
				goto out;
			off += w;
		}
	}
out:
	shutdown(pp->to, SHUT_WR);
	return NULL;
}

/* A reset, not a FIN: the peer's next read or write fails at once. */
static void reset(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	shutdown(fd, SHUT_RDWR);
}

static void *accept_main(void *arg)
{
	struct cutproxy *p = arg;
	while (!__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) {
		struct pollfd pfd = { .fd = p->lfd, .events = POLLIN };
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		int c = accept(p->lfd, NULL, NULL);
		if (c < 0)
			continue;
		int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0 || connect(s, (struct sockaddr *)&p->target,
				     sizeof(p->target))) {
			close(c);
			if (s >= 0)
				close(s);
			continue;
		}
		pthread_mutex_lock(&p->lock);
		if (p->n == MAX_CONN) {
			pthread_mutex_unlock(&p->lock);
			close(c);
			close(s);
			continue;
		}
		unsigned i = p->n++;
		p->fds[2 * i] = c;
		p->fds[2 * i + 1] = s;
		p->pumps[2 * i] = (struct pump){ .from = c, .to = s };
		p->pumps[2 * i + 1] = (struct pump){ .from = s, .to = c };
		pthread_create(&p->pumps[2 * i].thread, NULL, pump_main,
			       &p->pumps[2 * i]);
		pthread_create(&p->pumps[2 * i + 1].thread, NULL, pump_main,
			       &p->pumps[2 * i + 1]);
		pthread_mutex_unlock(&p->lock);
	}
	return NULL;
}

int cutproxy_start(struct cutproxy **out, const char *target, char *listen_uri,
		   size_t len)
{
	char host[64];
	unsigned port;
	if (sscanf(target, "tcp:%63[^:]:%u", host, &port) != 2 || port > 65535)
		return -EINVAL;
	struct cutproxy *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->target.sin_family = AF_INET;
	p->target.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &p->target.sin_addr) != 1) {
		free(p);
		return -EINVAL;
	}
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(p->lfd, 128) ||
	    getsockname(p->lfd, (struct sockaddr *)&sa, &sl)) {
		int err = -errno;
		if (p->lfd >= 0)
			close(p->lfd);
		free(p);
		return err;
	}
	snprintf(listen_uri, len, "tcp:127.0.0.1:%u", ntohs(sa.sin_port));
	pthread_mutex_init(&p->lock, NULL);
	if (pthread_create(&p->thread, NULL, accept_main, p)) {
		close(p->lfd);
		free(p);
		return -EAGAIN;
	}
	*out = p;
	return 0;
}

void cutproxy_cut(struct cutproxy *p)
{
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < 2 * p->n; i++)
		reset(p->fds[i]);
	pthread_mutex_unlock(&p->lock);
}

void cutproxy_stop(struct cutproxy *p)
{
	if (!p)
		return;
	__atomic_store_n(&p->stop, 1, __ATOMIC_RELEASE);
	pthread_join(p->thread, NULL);
	cutproxy_cut(p);
	for (unsigned i = 0; i < 2 * p->n; i++)
		pthread_join(p->pumps[i].thread, NULL);
	for (unsigned i = 0; i < 2 * p->n; i++)
		close(p->fds[i]);
	close(p->lfd);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
