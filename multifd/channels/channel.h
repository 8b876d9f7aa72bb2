/* SPDX-License-Identifier: MIT */
/*
 * A channel: one connection, owned by one thread at a time. Transports
 * implement the ops; the engine never looks below them.
 */
#ifndef MULTIFD_CHANNEL_H
#define MULTIFD_CHANNEL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

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
};

struct mfd__chan {
	const struct mfd__chan_ops *ops;
	int fd;	       /* pollable: readable when a message may be received */
	char peer[64]; /* for messages */
};

static inline int mfd__chan_send(struct mfd__chan *c, const void *buf,
				 size_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	return c->ops->sendv(c, &iov, 1);
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

struct mfd_config;

/* "tcp:HOST:PORT", "tcp:[V6]:PORT", "rdma:HOST:PORT": the part after the
 * scheme. MFD_EURI when malformed or of an unknown scheme. */
int mfd__uri_split(const char *uri, char *host, size_t hostlen, char *port,
		   size_t portlen);

/* The transport for uri under cfg (io-engine picks tcp or uring for
 * "tcp:"). MFD_EURI for a malformed URI or unknown scheme. */
int mfd__transport_select(const char *uri, const struct mfd_config *cfg,
			  const struct mfd__transport **out);
int mfd__connect(const struct mfd_config *cfg, const char *uri,
		 uint64_t timeout_ms, struct mfd__chan **out);
int mfd__listen(const struct mfd_config *cfg, const char *uri, int backlog,
		struct mfd__listener *l);
int mfd__accept(struct mfd__listener *l, uint64_t timeout_ms, const int *cancel,
		struct mfd__chan **out);
void mfd__listener_close(struct mfd__listener *l);

/* 0 when io_uring works here with the operations uring channels need,
 * else -errno (e.g. -EPERM when disabled by kernel.io_uring_disabled). */
int mfd__uring_available(void);

/* Plain-socket building blocks shared by the TCP-based transports. */
int mfd__tcp_connect_fd(const char *uri, uint64_t timeout_ms, int *fd);
int mfd__tcp_accept_fd(struct mfd__listener *l, uint64_t timeout_ms,
		       const int *cancel, int *fd);
void mfd__tcp_peer_name(int fd, char *buf, size_t len);

#endif /* MULTIFD_CHANNEL_H */
