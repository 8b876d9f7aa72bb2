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
	int fd; /* pollable: readable when a message may be received */
	char peer[64]; /* for messages */
};

static inline int mfd__chan_send(struct mfd__chan *c, const void *buf,
				 size_t len)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	return c->ops->sendv(c, &iov, 1);
}

struct mfd__listener {
	int fd;
	char uri[128]; /* as bound, with the real port */
};

/* "tcp:HOST:PORT", "tcp:[V6]:PORT". MFD_EURI when malformed. */
int mfd__uri_split(const char *uri, char *host, size_t hostlen, char *port,
		   size_t portlen);

int mfd__tcp_connect(const char *uri, uint64_t timeout_ms,
		     struct mfd__chan **out);
int mfd__tcp_listen(const char *uri, int backlog, struct mfd__listener *l);
/* Waits up to timeout_ms, checking *cancel every 100 ms; -ETIMEDOUT,
 * -ECANCELED. */
int mfd__tcp_accept(struct mfd__listener *l, uint64_t timeout_ms,
		    const int *cancel, struct mfd__chan **out);
void mfd__listener_close(struct mfd__listener *l);

#endif /* MULTIFD_CHANNEL_H */
