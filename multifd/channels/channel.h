/* SPDX-License-Identifier: MIT */
/*
 * A channel: one connection, owned by one thread at a time. Transports
 * implement the ops; the engine never looks below them.
 */
#ifndef MULTIFD_CHANNEL_H
#define MULTIFD_CHANNEL_H

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "multifd/channels/opts.h"
#include "multifd/common/util.h"

struct mfd__chan;

struct mfd__chan_ops {
	const char *name;
	/* Send every byte of iov (the array may be modified). 0 or -errno. */
	int (*sendv)(struct mfd__chan *c, struct iovec *iov, int iovcnt);
	/* Receive exactly len bytes. MFD_ETRUNCATED on EOF inside the
	 * message, -ECONNRESET on EOF before its first byte, -ETIMEDOUT when
	 * the peer is silent longer than the io timeout. */
	int (*recv)(struct mfd__chan *c, void *buf, size_t len);
	/* Receive exactly the bytes of iov, straight into its buffers. */
	int (*recvv)(struct mfd__chan *c, struct iovec *iov, int iovcnt);
	/* Set the io timeout in ms (0 = none). */
	int (*set_timeout)(struct mfd__chan *c, uint64_t ms);
	/* how = SHUT_RD, SHUT_WR or SHUT_RDWR, as shutdown(2): SHUT_RDWR
	 * wakes any thread blocked on the channel and makes later calls fail;
	 * SHUT_WR tells the peer nothing more will come. Safe from any thread
	 * while another uses the channel. */
	void (*shutdown)(struct mfd__chan *c, int how);
	/* Release; only when no other thread uses the channel. */
	void (*close)(struct mfd__chan *c);

	/*
	 * Optional ops, for transports that place pages one-sided (rdma).
	 * Without them the engine falls back to the stream ops (the
	 * mfd__chan_* helpers below), so it never asks which transport runs.
	 */
	/* Both sides, once per data channel after the handshake, in channel
	 * order: register guest RAM (mem[i] is block i) for the peer and
	 * learn the peer's. Adds the time spent registering to *reg_ns.
	 * The engine calls it through mfd__chan_register_memory()
	 * (multifd/internal.h). */
	int (*register_memory)(struct mfd__chan *c, const struct mfd__mem *mem,
			       unsigned n, uint64_t *reg_ns);
	/* Source: an uncompressed PAGES packet. iov[0] is the encoded
	 * header, iov[1] the offsets, iov[2..] the pages, inside guest
	 * memory of block (registered). */
	int (*send_pages)(struct mfd__chan *c, uint32_t block,
			  struct iovec *iov, int iovcnt);
	/* Destination: the payload of an uncompressed PAGES packet whose
	 * header and offsets were received and validated; iov the pages of
	 * block they name. */
	int (*recv_payload)(struct mfd__chan *c, uint32_t block,
			    struct iovec *iov, int iovcnt);
	/* Source, after SYNC r went out: waits until the destination has
	 * applied round r on every channel (its round_applied). Needed when
	 * pages land without the destination reading them: a page of round
	 * r+1 must not land before round r is applied. */
	int (*round_fence)(struct mfd__chan *c);
	/* Destination, after the round barrier: round r is applied. */
	int (*round_applied)(struct mfd__chan *c);
	/*
	 * Destination, before the handshake, so that a silent or slow peer
	 * costs nothing but a slot: whether the peer's first message is
	 * complete in the receive buffer, need bytes of it (the hello) or
	 * what the transport's own framing says (a TLS record). 1: it is
	 * (nothing consumed); 0: not yet, and poll(2) on fd wakes when it
	 * may be (the op may set a receive low-water mark); < 0: the peer
	 * closed short of it. revents: what poll reported on fd, 0 before
	 * the first poll. Without the op a channel is ready when readable.
	 */
	int (*first_ready)(struct mfd__chan *c, uint32_t need, short revents);
	/*
	 * Optional, source: bytes sent into the channel that have not left
	 * this host yet (a socket's send queue, SIOCOUTQ); 0 when unknown.
	 * Any thread, while another sends. The downtime estimate counts the
	 * queue out of a round's bytes and adds its drain to the end.
	 */
	uint64_t (*unsent)(struct mfd__chan *c);
	/* Optional: the transport's path round trip in ns (TCP_INFO
	 * tcpi_min_rtt: without delayed ACKs and queued data), 0 when
	 * unknown. Any thread. The end exchange's part of the downtime
	 * estimate. */
	uint64_t (*rtt_ns)(struct mfd__chan *c);
	/* Optional, source: the most bytes per second the transport puts
	 * on the wire (0: no cap), as an even pace, so that the host's own
	 * queues (a qdisc) hold about a millisecond of this channel's data
	 * rather than megabytes. 0 or -errno. Any thread. */
	int (*pace)(struct mfd__chan *c, uint64_t bps);
};

struct mfd__chan {
	const struct mfd__chan_ops *ops;
	int fd;	       /* pollable: readable when a message may be received */
	char peer[64]; /* for messages */
};

/* Drops the first n bytes from msg's iovecs, after a partial transfer. */
static inline void mfd__iov_consume(struct msghdr *msg, size_t n)
{
	size_t cnt = msg->msg_iovlen;
	msg->msg_iov = mfd__iov_skip(msg->msg_iov, &cnt, n);
	msg->msg_iovlen = cnt;
}

/* A read position in an iovec array, for moving it in pieces. */
struct mfd__iov_cursor {
	const struct iovec *iov;
	int cnt;
	size_t off; /* bytes of iov[0] already taken */
};

/*
 * The next at most max bytes at the cursor as out[0..return) (at most
 * outmax iovecs; *took their bytes), and the cursor past them.
 */
static inline int mfd__iov_cut(struct mfd__iov_cursor *c, size_t max,
			       struct iovec *out, int outmax, size_t *took)
{
	int n = 0;
	*took = 0;
	while (c->cnt && max && n < outmax) {
		size_t k = c->iov->iov_len - c->off;
		if (k > max)
			k = max;
		out[n].iov_base = (uint8_t *)c->iov->iov_base + c->off;
		out[n++].iov_len = k;
		*took += k;
		max -= k;
		c->off += k;
		if (c->off == c->iov->iov_len) {
			c->iov++;
			c->cnt--;
			c->off = 0;
		}
	}
	return n;
}

static inline int mfd__chan_send(struct mfd__chan *c, const void *buf,
				 size_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	return c->ops->sendv(c, &iov, 1);
}

static inline int mfd__chan_send_pages(struct mfd__chan *c, uint32_t block,
				       struct iovec *iov, int iovcnt)
{
	return c->ops->send_pages ? c->ops->send_pages(c, block, iov, iovcnt)
				  : c->ops->sendv(c, iov, iovcnt);
}

static inline int mfd__chan_recv_payload(struct mfd__chan *c, uint32_t block,
					 struct iovec *iov, int iovcnt)
{
	return c->ops->recv_payload
		       ? c->ops->recv_payload(c, block, iov, iovcnt)
		       : c->ops->recvv(c, iov, iovcnt);
}

static inline int mfd__chan_first_ready(struct mfd__chan *c, uint32_t need,
					short revents)
{
	if (revents & POLLNVAL)
		return -EBADF;
	if (c->ops->first_ready)
		return c->ops->first_ready(c, need, revents);
	return !!(revents & (POLLIN | POLLHUP | POLLERR));
}

struct mfd__transport;

struct mfd__listener {
	const struct mfd__transport *tp; /* NULL when not listening */
	int fd;
	void *priv;    /* the transport's own state, if any */
	char uri[128]; /* as bound, with the real port */
};

/*
 * A transport: how channels are made. The ops of the channels it makes do
 * the rest. Chosen by mfd__transport_select() from the URI scheme and the
 * io-engine key, so the engine never names one.
 */
struct mfd__transport {
	const char *name; /* "tcp", "uring", "rdma" */
	int (*connect)(const char *uri, uint64_t timeout_ms,
		       struct mfd__chan **out);
	int (*listen)(const char *uri, int backlog, struct mfd__listener *l);
	/* Waits up to timeout_ms, checking *cancel every 100 ms;
	 * -ETIMEDOUT, -ECANCELED. */
	int (*accept)(struct mfd__listener *l, uint64_t timeout_ms,
		      const int *cancel, struct mfd__chan **out);
	void (*listener_close)(struct mfd__listener *l);
};

extern const struct mfd__transport mfd__tcp_transport;
extern const struct mfd__transport mfd__uring_transport;
extern const struct mfd__transport mfd__rdma_transport;

/* "tcp:HOST:PORT", "tcp:[V6]:PORT", "rdma:HOST:PORT": the part after the
 * scheme. MFD_EURI when malformed or of an unknown scheme. */
int mfd__uri_split(const char *uri, char *host, size_t hostlen, char *port,
		   size_t portlen);

/* The transport for uri under o (o->io_engine picks tcp or uring for
 * "tcp:"; o may be NULL: sockets). MFD_EURI for a malformed URI or unknown
 * scheme. */
int mfd__transport_select(const char *uri, const struct mfd__chan_opts *o,
			  const struct mfd__transport **out);
int mfd__connect(const struct mfd__chan_opts *o, const char *uri,
		 uint64_t timeout_ms, struct mfd__chan **out);
int mfd__listen(const struct mfd__chan_opts *o, const char *uri, int backlog,
		struct mfd__listener *l);
int mfd__accept(struct mfd__listener *l, uint64_t timeout_ms, const int *cancel,
		struct mfd__chan **out);
void mfd__listener_close(struct mfd__listener *l);

/* Tests only: makes "scheme:..." URIs use tp (e.g. an in-memory fabric).
 * Up to 4 schemes; not thread-safe against migrations being started. */
int mfd__transport_register(const char *scheme,
			    const struct mfd__transport *tp);

/* 0 when io_uring works here with the operations uring channels need,
 * else -errno (e.g. -EPERM when disabled by kernel.io_uring_disabled). */
int mfd__uring_available(void);

/* Tests only: uring channels to a peer on this host receive through
 * io_uring too, as to a remote peer (by default they use recvmsg(2)). */
void mfd__uring_ring_rx_always(bool on);

/* Plain-socket building blocks shared by the TCP-based transports. */
int mfd__tcp_connect_fd(const char *uri, uint64_t timeout_ms, int *fd);
int mfd__tcp_accept_fd(struct mfd__listener *l, uint64_t timeout_ms,
		       const int *cancel, int *fd);
void mfd__tcp_peer_name(int fd, char *buf, size_t len);
/* recvv of io-engine sockets: blocking recvmsg(MSG_WAITALL) on c->fd,
 * bounded by SO_RCVTIMEO (-ETIMEDOUT). */
int mfd__tcp_recvv(struct mfd__chan *c, struct iovec *iov, int iovcnt);
/* Waits until fd has one of events (poll), checking *cancel (when non-NULL)
 * every 100 ms: 0, -ETIMEDOUT once mfd__now_ns() reaches deadline,
 * -ECANCELED or -errno. */
int mfd__wait_fd_until(int fd, short events, uint64_t deadline,
		       const int *cancel);
/* first_ready of socket channels: FIONREAD against need, with
 * SO_RCVLOWAT = need while short (1 again once ready). */
int mfd__tcp_first_ready(struct mfd__chan *c, uint32_t need, short revents);
/* Sets SO_RCVTIMEO or SO_SNDTIMEO (opt) of fd to ms (0: none). */
int mfd__sock_timeout(int fd, int opt, uint64_t ms);
/* unsent of socket channels: SIOCOUTQ of c->fd (0 on error). */
uint64_t mfd__sock_unsent(struct mfd__chan *c);
/* rtt_ns of socket channels: TCP_INFO's tcpi_min_rtt of c->fd, else
 * tcpi_rtt on kernels without it (0 on error); in tcpinfo.c. */
uint64_t mfd__sock_rtt_ns(struct mfd__chan *c);
/* pace of socket channels: SO_MAX_PACING_RATE of c->fd, which also turns
 * on TCP's own pacing without the fq qdisc (Linux 4.13); then TCP small
 * queues let about 1 ms of the rate into the qdisc. */
int mfd__sock_pace(struct mfd__chan *c, uint64_t bps);

#endif /* MULTIFD_CHANNEL_H */
