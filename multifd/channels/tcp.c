/* SPDX-License-Identifier: MIT */
/* TCP channels over plain sockets. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/sockios.h>

#include "multifd/multifd.h"
#include "multifd/channels/channel.h"
#include "multifd/common/clock.h"

int mfd__uri_split(const char *uri, char *host, size_t hostlen, char *port,
		   size_t portlen)
{
	const char *h, *hend, *p;
	if (!uri)
		return MFD_EURI;
	if (strncmp(uri, "tcp:", 4) == 0)
		h = uri + 4;
	else if (strncmp(uri, "rdma:", 5) == 0)
		h = uri + 5;
	else
		return MFD_EURI;
	if (*h == '[') {
		hend = strchr(h, ']');
		if (!hend || hend[1] != ':')
			return MFD_EURI;
		h++;
		p = hend + 2;
	} else {
		hend = strrchr(h, ':');
		if (!hend)
			return MFD_EURI;
		p = hend + 1;
	}
	size_t hl = (size_t)(hend - h), pl = strlen(p);
	if (hl == 0 || hl >= hostlen || pl == 0 || pl >= portlen)
		return MFD_EURI;
	for (const char *q = p; *q; q++)
		if (*q < '0' || *q > '9')
			return MFD_EURI;
	if (atol(p) > 65535)
		return MFD_EURI;
	memcpy(host, h, hl);
	host[hl] = 0;
	memcpy(port, p, pl + 1);
	return 0;
}

static int tcp_sendv(struct mfd__chan *c, struct iovec *iov, int iovcnt)
{
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };
	while (msg.msg_iovlen) {
		ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return -ETIMEDOUT;
			return -errno;
		}
		/* Partial writes are normal for sockets. */
		mfd__iov_consume(&msg, (size_t)n);
	}
	return 0;
}

int mfd__tcp_recvv(struct mfd__chan *c, struct iovec *iov, int iovcnt)
{
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };
	bool started = false;
	while (msg.msg_iovlen) {
		/* Drop empty iovecs: a 0-byte read would look like EOF. */
		mfd__iov_consume(&msg, 0);
		if (!msg.msg_iovlen)
			break;
		ssize_t n = recvmsg(c->fd, &msg, MSG_WAITALL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return -ETIMEDOUT;
			return -errno;
		}
		if (n == 0)
			return started ? MFD_ETRUNCATED : -ECONNRESET;
		started = true;
		mfd__iov_consume(&msg, (size_t)n);
	}
	return 0;
}

static int tcp_recv(struct mfd__chan *c, void *buf, size_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	return mfd__tcp_recvv(c, &iov, 1);
}

int mfd__sock_timeout(int fd, int opt, uint64_t ms)
{
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000),
			      .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
	return setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv)) < 0 ? -errno
								    : 0;
}

static int tcp_set_timeout(struct mfd__chan *c, uint64_t ms)
{
	int ret = mfd__sock_timeout(c->fd, SO_RCVTIMEO, ms);
	return ret ? ret : mfd__sock_timeout(c->fd, SO_SNDTIMEO, ms);
}

uint64_t mfd__sock_unsent(struct mfd__chan *c)
{
	int n = 0;
	return ioctl(c->fd, SIOCOUTQ, &n) == 0 && n > 0 ? (uint64_t)n : 0;
}

static void tcp_shutdown(struct mfd__chan *c, int how)
{
	shutdown(c->fd, how);
}

static void tcp_close(struct mfd__chan *c)
{
	if (!c)
		return;
	close(c->fd);
	free(c);
}

/* Wakes poll() only when need bytes are there (or on EOF). */
static bool set_lowat(int fd, uint32_t need)
{
	int v = (int)need;
	return setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v)) == 0;
}

int mfd__tcp_first_ready(struct mfd__chan *c, uint32_t need, short revents)
{
	int avail = 0;
	/* Not countable (never for a socket): ready when readable. */
	if (ioctl(c->fd, FIONREAD, &avail) < 0)
		return !!(revents & (POLLIN | POLLHUP | POLLERR));
	if ((uint32_t)avail >= need) {
		set_lowat(c->fd, 1);
		return 1;
	}
	/* Readable yet short: the peer closed before a full message (the
	 * kernel reports EOF as readable). */
	if (revents & (POLLHUP | POLLRDHUP | POLLERR))
		return -ECONNRESET;
	if (!set_lowat(c->fd, need))
		return !!(revents & POLLIN);
	return 0;
}

static const struct mfd__chan_ops tcp_ops = {
	.name = "tcp",
	.sendv = tcp_sendv,
	.recv = tcp_recv,
	.recvv = mfd__tcp_recvv,
	.set_timeout = tcp_set_timeout,
	.shutdown = tcp_shutdown,
	.close = tcp_close,
	.first_ready = mfd__tcp_first_ready,
	.unsent = mfd__sock_unsent,
	.rtt_ns = mfd__sock_rtt_ns,
	.pace = mfd__sock_pace,
};

void mfd__tcp_peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char h[NI_MAXHOST] = "?", p[NI_MAXSERV] = "?";
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
		getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), p,
			    sizeof(p), NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(buf, len, "%.46s:%.8s", h, p);
}

static int tcp_wrap(int fd, struct mfd__chan **out)
{
	struct mfd__chan *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->ops = &tcp_ops;
	c->fd = fd;
	mfd__tcp_peer_name(fd, c->peer, sizeof(c->peer));
	*out = c;
	return 0;
}

/* Control messages and syncs are small and latency-bound (they sit inside
 * the downtime); bulk packets go out in one sendmsg anyway. */
static void set_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int mfd__wait_fd_until(int fd, short events, uint64_t deadline,
		       const int *cancel)
{
	for (;;) {
		if (cancel && __atomic_load_n(cancel, __ATOMIC_ACQUIRE))
			return -ECANCELED;
		uint64_t now = mfd__now_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		uint64_t left = (deadline - now) / 1000000ULL + 1;
		struct pollfd pfd = { .fd = fd, .events = events };
		int n = poll(&pfd, 1, left > 100 ? 100 : (int)left);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0)
			return 0;
	}
}

static int wait_fd(int fd, short events, uint64_t timeout_ms, const int *cancel)
{
	return mfd__wait_fd_until(
		fd, events, mfd__now_ns() + timeout_ms * 1000000ULL, cancel);
}

int mfd__tcp_connect_fd(const char *uri, uint64_t timeout_ms, int *out)
{
	char host[256], port[16];
	int ret = mfd__uri_split(uri, host, sizeof(host), port, sizeof(port));
	if (ret)
		return ret;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV },
			*res, *ai;
	int gai = getaddrinfo(host, port, &hints, &res);
	if (gai)
		return gai == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
	ret = -ECONNREFUSED;
	for (ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family,
				ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
				ai->ai_protocol);
		if (fd < 0) {
			ret = -errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 &&
		    errno != EINPROGRESS) {
			ret = -errno;
			close(fd);
			continue;
		}
		ret = wait_fd(fd, POLLOUT, timeout_ms, NULL);
		if (ret == 0) {
			int err = 0;
			socklen_t el = sizeof(err);
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
			ret = -err;
		}
		if (ret) {
			close(fd);
			continue;
		}
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		set_nodelay(fd);
		*out = fd;
		break;
	}
	freeaddrinfo(res);
	return ret;
}

static int tcp_listen(const char *uri, int backlog, struct mfd__listener *l)
{
	char host[256], port[16];
	int ret = mfd__uri_split(uri, host, sizeof(host), port, sizeof(port));
	if (ret)
		return ret;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV | AI_PASSIVE },
			*res;
	int gai = getaddrinfo(host, port, &hints, &res);
	if (gai)
		return gai == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
	int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC,
			res->ai_protocol);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 ||
	    listen(fd, backlog) < 0) {
		ret = -errno;
		close(fd);
		goto out;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char h[NI_MAXHOST], p[NI_MAXSERV];
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), p, sizeof(p),
		    NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(l->uri, sizeof(l->uri),
		 ss.ss_family == AF_INET6 ? "tcp:[%s]:%s" : "tcp:%s:%s", h, p);
	l->fd = fd;
	ret = 0;
out:
	freeaddrinfo(res);
	return ret;
}

int mfd__tcp_accept_fd(struct mfd__listener *l, uint64_t timeout_ms,
		       const int *cancel, int *out)
{
	int ret = wait_fd(l->fd, POLLIN, timeout_ms, cancel);
	if (ret)
		return ret;
	int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return -errno;
	set_nodelay(fd);
	*out = fd;
	return 0;
}

static int tcp_connect(const char *uri, uint64_t timeout_ms,
		       struct mfd__chan **out)
{
	int fd = -1, ret = mfd__tcp_connect_fd(uri, timeout_ms, &fd);
	return ret ? ret : tcp_wrap(fd, out);
}

static int tcp_accept(struct mfd__listener *l, uint64_t timeout_ms,
		      const int *cancel, struct mfd__chan **out)
{
	int fd = -1, ret = mfd__tcp_accept_fd(l, timeout_ms, cancel, &fd);
	return ret ? ret : tcp_wrap(fd, out);
}

static void tcp_listener_close(struct mfd__listener *l)
{
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
}

const struct mfd__transport mfd__tcp_transport = {
	.name = "tcp",
	.connect = tcp_connect,
	.listen = tcp_listen,
	.accept = tcp_accept,
	.listener_close = tcp_listener_close,
};
