/* SPDX-License-Identifier: MIT */
/*
 * TCP channels over io_uring (io-engine = uring).
 *
 * Rings: one per direction of a channel, made on first use. The engine
 * sends on a channel from one thread at a time and receives from one
 * thread at a time, but on a main channel those may be two threads at once
 * (the source's migration thread sends while its return path receives; the
 * destination's loader may answer an error while a read is pending). A
 * ring per direction keeps every ring owned by one thread without a lock.
 * A data channel's bulk direction is the only one that does real work.
 *
 * Every call submits its message with one io_uring_enter that also waits
 * for the completion (bounded by the io timeout, when there is one) and
 * waits for all of its completions before it returns: the caller's
 * buffers (the header and offsets are reused at once) are never
 * referenced after return. The io timeout bounds the wait itself
 * (IORING_ENTER_EXT_ARG), not a linked timeout request: a message that
 * completes at once (the usual case) then costs one request, one
 * completion and no timer. Only when the wait runs out is the message
 * cancelled, and the call waits for the cancellation to complete.
 * The socket is a registered file of each ring (no file lookup per
 * request).
 *
 * A peer on this host (loopback, or the socket's own address) is
 * received from with plain recvmsg(2), as io-engine sockets does: the
 * kernel runs that peer's transmit and this side's TCP receive on the
 * sending CPU, and io_uring's receive model (a non-blocking attempt, then
 * poll re-armed and retried for every segment that arrives) cost
 * measurably more receiving CPU per GiB than a blocking
 * recvmsg(MSG_WAITALL), which sleeps and copies inside one call. Sends stay
 * on the ring. To a remote peer both directions use the ring.
 *
 * Sends of at least ZC_MIN_BYTES to a peer on another host use
 * IORING_OP_SENDMSG_ZC when the kernel has it (to this host the kernel
 * copies the pages on delivery anyway, see peer_is_local): the pages go
 * to the NIC without a copy, and the call waits for
 * the notification CQE (IORING_CQE_F_NOTIF) that says the kernel let go of
 * them. When the notification reports that the kernel copied anyway
 * (loopback, or a device without scatter-gather), the channel goes back
 * to IORING_OP_SENDMSG: zero-copy would then cost the copy plus pinning.
 *
 * Shutdown from another thread is shutdown(2) on the socket: the pending
 * send or receive wakes up and completes with an error or end of file.
 * A zero-copy notification does not come while the peer holds the bytes
 * unread, so that wait looks every 100 ms whether the channel was shut
 * down (SHUT_RDWR) and is bounded by the io timeout.
 */
#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/in.h>

#include "multifd/multifd.h"
#include "multifd/channels/channel.h"
#include "multifd/common/clock.h"
#include "multifd/common/log.h"
#include "multifd/common/util.h"

/* liburing 2.3 headers predate these (kernel 6.2). */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

#define RING_ENTRIES 4
/* Below this, pinning pages and waiting for a notification costs more than
 * the copy it saves. */
#define ZC_MIN_BYTES (64 * 1024)

enum { UD_OP = 1, UD_CANCEL = 2 };

/* gettid() is a system call; a ring's owner is checked on every call. */
static __thread pid_t my_tid;

static pid_t self_tid(void)
{
	if (!my_tid)
		my_tid = gettid();
	return my_tid;
}

struct dir {
	struct io_uring ring;
	bool up;
	bool fixed;  /* the socket is registered file 0 of the ring */
	pid_t owner; /* the thread the ring was made for */
};

struct uring_chan {
	struct mfd__chan c;
	struct dir tx, rx;
	uint64_t timeout_ms; /* atomic: set_timeout may come from any thread */
	int shut;	     /* atomic: shutdown was called */
	bool zc;	     /* tx owner only */
	bool sync_rx;	     /* receive with recvmsg(2): see uring_wrap */
};

/*
 * Rings are made and unmade under one lock. liburing maps and unmaps ring
 * memory with raw system calls that ThreadSanitizer cannot see, so a ring
 * made at the address of one another thread unmade would look like a race
 * on its memory; the lock orders the two. Rings are made once or twice per
 * channel, never on the data path.
 */
static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static int probe_err;
static bool probe_zc;

static void probe(void)
{
	struct io_uring ring;
	pthread_mutex_lock(&ring_lock);
	int ret = io_uring_queue_init(2, &ring, 0);
	pthread_mutex_unlock(&ring_lock);
	if (ret) {
		probe_err = ret;
		return;
	}
	struct io_uring_probe *p = io_uring_get_probe_ring(&ring);
	if (!p) {
		probe_err = -EOPNOTSUPP;
	} else {
		if (!io_uring_opcode_supported(p, IORING_OP_SENDMSG) ||
		    !io_uring_opcode_supported(p, IORING_OP_RECVMSG) ||
		    !io_uring_opcode_supported(p, IORING_OP_ASYNC_CANCEL) ||
		    !(ring.features & IORING_FEAT_EXT_ARG))
			probe_err = -EOPNOTSUPP;
		probe_zc = io_uring_opcode_supported(p, IORING_OP_SENDMSG_ZC);
		io_uring_free_probe(p);
	}
	pthread_mutex_lock(&ring_lock);
	io_uring_queue_exit(&ring);
	pthread_mutex_unlock(&ring_lock);
}

int mfd__uring_available(void)
{
	pthread_once(&probe_once, probe);
	return probe_err;
}

static int ring_init(struct io_uring *r)
{
	/* SINGLE_ISSUER + DEFER_TASKRUN: completion work runs only when the
	 * owner waits for it, in its own context, with no interrupt; the
	 * cheapest mode, and it fits a ring that one thread owns. */
	static const unsigned flags[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	int ret = -EINVAL;
	for (size_t i = 0; i < MFD_ARRAY_SIZE(flags) && ret == -EINVAL; i++)
		ret = io_uring_queue_init(RING_ENTRIES, r, flags[i]);
	return ret;
}

static void dir_exit(struct dir *d)
{
	if (!d->up)
		return;
	pthread_mutex_lock(&ring_lock);
	io_uring_queue_exit(&d->ring);
	pthread_mutex_unlock(&ring_lock);
	d->up = false;
}

/*
 * The ring of one direction for the calling thread. A channel changes
 * hands once or twice (the handshake runs on the migration or loader
 * thread, the data on a worker): a single-issuer ring is then made anew
 * for its new owner. Only between calls, so no operation is in flight.
 */
static int dir_ring(struct dir *d, int fd, struct io_uring **out)
{
	pid_t me = self_tid();
	if (d->up && d->owner != me)
		dir_exit(d);
	if (!d->up) {
		pthread_mutex_lock(&ring_lock);
		int ret = ring_init(&d->ring);
		pthread_mutex_unlock(&ring_lock);
		if (ret)
			return ret;
		d->up = true;
		d->owner = me;
		d->fixed = io_uring_register_files(&d->ring, &fd, 1) == 0;
	}
	*out = &d->ring;
	return 0;
}

enum op { OP_SEND, OP_SEND_ZC, OP_RECV };

/*
 * One message operation: submits it and waits for every CQE it produces
 * (the op's, a zero-copy send's notification and, after a timeout, the
 * cancellation's). Returns the op's result: bytes, or -errno, -ETIMEDOUT
 * when the io timeout cut it before any byte moved.
 */
static int run(struct uring_chan *u, struct dir *d, enum op op,
	       struct msghdr *msg, bool *copied)
{
	struct io_uring *r;
	int ret = dir_ring(d, u->c.fd, &r);
	if (ret)
		return ret;
	int fd = d->fixed ? 0 : u->c.fd;
	/* The ring is empty between calls: there is always room. */
	struct io_uring_sqe *sqe = io_uring_get_sqe(r);
	switch (op) {
	case OP_SEND:
		io_uring_prep_sendmsg(sqe, fd, msg, MSG_NOSIGNAL | MSG_WAITALL);
		break;
	case OP_SEND_ZC:
		io_uring_prep_sendmsg_zc(sqe, fd, msg,
					 MSG_NOSIGNAL | MSG_WAITALL);
		sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
		break;
	case OP_RECV:
		io_uring_prep_recvmsg(sqe, fd, msg, MSG_WAITALL);
		break;
	}
	if (d->fixed)
		sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, UD_OP);

	/* Every wait below submits what is queued: the first submits the
	 * message and waits for its completion in one system call. Until the
	 * message completes, the wait is bounded by the io timeout. */
	uint64_t ms = __atomic_load_n(&u->timeout_ms, __ATOMIC_RELAXED);
	uint64_t deadline = ms ? mfd__now_ns() + ms * 1000000ULL : 0;
	int res = -EIO;
	bool op_done = false, notif = false, cancelling = false, cut = false;
	while (!op_done || notif || cancelling) {
		struct __kernel_timespec ts, *tsp = NULL;
		bool bounded = deadline && !op_done && !cancelling;
		/* A zero-copy notification comes when the peer has taken
		 * the bytes: bounded by the io timeout too, and looked at
		 * every 100 ms for a shutdown from another thread (which
		 * does not wake this wait). */
		bool notif_wait = op_done && notif;
		if (bounded || notif_wait) {
			uint64_t now = mfd__now_ns();
			uint64_t left = !deadline	 ? UINT64_MAX
					: deadline > now ? deadline - now
							 : 0;
			if (notif_wait && left > 100000000ULL)
				left = 100000000ULL;
			ts.tv_sec = (long long)(left / 1000000000ULL);
			ts.tv_nsec = (long long)(left % 1000000000ULL);
			tsp = &ts;
		}
		struct io_uring_cqe *cqe = NULL;
		ret = io_uring_submit_and_wait_timeout(r, &cqe, 1, tsp, NULL);
		if (ret == -ETIME && notif_wait && !io_uring_cq_ready(r)) {
			/* Giving up on the notification leaves the pages
			 * with the kernel: only when the channel is dead. */
			if (__atomic_load_n(&u->shut, __ATOMIC_RELAXED))
				return -EPIPE;
			if (deadline && mfd__now_ns() >= deadline)
				return -ETIMEDOUT;
			continue;
		}
		if (ret == -ETIME && bounded && !io_uring_cq_ready(r)) {
			if (mfd__now_ns() < deadline)
				continue; /* woken early (a signal) */
			/* The peer was silent for the io timeout: cancel the
			 * message (it completes with what it moved, or
			 * -ECANCELED); the next wait submits the cancel. */
			struct io_uring_sqe *c = io_uring_get_sqe(r);
			io_uring_prep_cancel64(c, UD_OP, 0);
			io_uring_sqe_set_data64(c, UD_CANCEL);
			cancelling = cut = true;
			continue;
		}
		if (ret == -ETIME || ret == -EINTR || ret == -EAGAIN ||
		    ret == -EBUSY)
			continue;
		if (ret < 0)
			return ret; /* a broken ring: the channel is dead */
		if (!cqe)
			continue;
		if (cqe->user_data == UD_CANCEL) {
			cancelling = false;
		} else if (cqe->flags & IORING_CQE_F_NOTIF) {
			if ((uint32_t)cqe->res & IORING_NOTIF_USAGE_ZC_COPIED)
				*copied = true;
			notif = false;
		} else {
			res = cqe->res;
			notif = cqe->flags & IORING_CQE_F_MORE;
			op_done = true;
		}
		io_uring_cqe_seen(r, cqe);
	}
	if (cut && (res == -ECANCELED || res == -EINTR))
		return -ETIMEDOUT;
	return res;
}

/* Drops n bytes from the front of msg's iovecs. */
static int uring_sendv(struct mfd__chan *c, struct iovec *iov, int iovcnt)
{
	struct uring_chan *u = (struct uring_chan *)c;
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };
	while (msg.msg_iovlen) {
		size_t len = 0;
		for (size_t i = 0; i < msg.msg_iovlen; i++)
			len += msg.msg_iov[i].iov_len;
		if (len == 0)
			return 0;
		bool zc = u->zc && len >= ZC_MIN_BYTES, copied = false;
		int n = run(u, &u->tx, zc ? OP_SEND_ZC : OP_SEND, &msg,
			    &copied);
		if (zc && (copied || n == -EINVAL || n == -EOPNOTSUPP)) {
			mfd__dbg("%s: zero-copy send %s: plain sends from now "
				 "on",
				 c->peer,
				 copied ? "was copied by the kernel"
					: "refused");
			u->zc = false;
		}
		if (zc && (n == -EINVAL || n == -EOPNOTSUPP))
			continue; /* retried without zero-copy */
		if (n < 0)
			return n == -EAGAIN ? -ETIMEDOUT : n;
		if (n == 0)
			return -EPIPE;
		mfd__iov_consume(&msg, (size_t)n);
	}
	return 0;
}

static int uring_recvv(struct mfd__chan *c, struct iovec *iov, int iovcnt)
{
	struct uring_chan *u = (struct uring_chan *)c;
	if (u->sync_rx)
		return mfd__tcp_recvv(c, iov, iovcnt);
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };
	bool started = false;
	while (msg.msg_iovlen) {
		/* Drop empty iovecs: a 0-byte read would look like EOF. */
		mfd__iov_consume(&msg, 0);
		if (!msg.msg_iovlen)
			break;
		bool unused = false;
		int n = run(u, &u->rx, OP_RECV, &msg, &unused);
		if (n < 0)
			return n == -EAGAIN ? -ETIMEDOUT : n;
		if (n == 0)
			return started ? MFD_ETRUNCATED : -ECONNRESET;
		started = true;
		mfd__iov_consume(&msg, (size_t)n);
	}
	return 0;
}

static int uring_recv(struct mfd__chan *c, void *buf, size_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	return uring_recvv(c, &iov, 1);
}

static int uring_set_timeout(struct mfd__chan *c, uint64_t ms)
{
	struct uring_chan *u = (struct uring_chan *)c;
	__atomic_store_n(&u->timeout_ms, ms, __ATOMIC_RELAXED);
	/* Receives from a local peer are the sockets engine's. */
	return u->sync_rx ? mfd__sock_timeout(c->fd, SO_RCVTIMEO, ms) : 0;
}

static void uring_shutdown(struct mfd__chan *c, int how)
{
	struct uring_chan *u = (struct uring_chan *)c;
	if (how == SHUT_RDWR)
		__atomic_store_n(&u->shut, 1, __ATOMIC_RELAXED);
	shutdown(c->fd, how);
}

static void uring_close(struct mfd__chan *c)
{
	struct uring_chan *u = (struct uring_chan *)c;
	if (!u)
		return;
	dir_exit(&u->tx);
	dir_exit(&u->rx);
	close(c->fd);
	free(u);
}

static const struct mfd__chan_ops uring_ops = {
	.name = "uring",
	.sendv = uring_sendv,
	.recv = uring_recv,
	.recvv = uring_recvv,
	.set_timeout = uring_set_timeout,
	.shutdown = uring_shutdown,
	.close = uring_close,
	.first_ready = mfd__tcp_first_ready,
	.unsent = mfd__sock_unsent,
	.rtt_ns = mfd__sock_rtt_ns,
	.pace = mfd__sock_pace,
};

/* The address of a sockaddr_in or _in6 (v4-mapped as v4), *len bytes. */
static const void *sa_addr(const struct sockaddr_storage *ss, size_t *len)
{
	if (ss->ss_family == AF_INET) {
		*len = 4;
		return &((const struct sockaddr_in *)ss)->sin_addr;
	}
	if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a =
			&((const struct sockaddr_in6 *)ss)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			*len = 4;
			return a->s6_addr + 12;
		}
		*len = 16;
		return a;
	}
	*len = 0;
	return NULL;
}

/*
 * Whether the peer is this host: a loopback address, or the peer's
 * address is the socket's own. Such traffic goes through the loopback
 * device, where the kernel copies zero-copy pages on delivery anyway
 * (the receiver may not hold the sender's pages): zero-copy would only
 * add pinning and a notification per send.
 */
static bool peer_is_local(int fd)
{
	struct sockaddr_storage me, peer;
	socklen_t ml = sizeof(me), pl = sizeof(peer);
	if (getsockname(fd, (struct sockaddr *)&me, &ml) ||
	    getpeername(fd, (struct sockaddr *)&peer, &pl))
		return false;
	size_t mlen, plen;
	const uint8_t *m = sa_addr(&me, &mlen), *p = sa_addr(&peer, &plen);
	if (!p)
		return false;
	if (plen == 4 && p[0] == 127)
		return true;
	if (plen == 16 && IN6_IS_ADDR_LOOPBACK((const struct in6_addr *)p))
		return true;
	return m && mlen == plen && memcmp(m, p, plen) == 0;
}

static bool ring_rx_always;

void mfd__uring_ring_rx_always(bool on)
{
	__atomic_store_n(&ring_rx_always, on, __ATOMIC_RELAXED);
}

static int uring_wrap(int fd, struct mfd__chan **out)
{
	struct uring_chan *u = calloc(1, sizeof(*u));
	if (!u) {
		close(fd);
		return -ENOMEM;
	}
	u->c.ops = &uring_ops;
	u->c.fd = fd;
	bool local = peer_is_local(fd);
	u->zc = probe_zc && !local;
	u->sync_rx =
		local && !__atomic_load_n(&ring_rx_always, __ATOMIC_RELAXED);
	mfd__tcp_peer_name(fd, u->c.peer, sizeof(u->c.peer));
	*out = &u->c;
	return 0;
}

static int check_available(void)
{
	int ret = mfd__uring_available();
	if (ret)
		mfd__err("io-engine uring: io_uring is not available here: %s",
			 mfd_strerror(ret));
	return ret;
}

static int uring_connect(const char *uri, uint64_t timeout_ms,
			 struct mfd__chan **out)
{
	int fd, ret = check_available();
	if (!ret)
		ret = mfd__tcp_connect_fd(uri, timeout_ms, &fd);
	return ret ? ret : uring_wrap(fd, out);
}

static int uring_listen(const char *uri, int backlog, struct mfd__listener *l)
{
	int ret = check_available();
	return ret ? ret : mfd__tcp_transport.listen(uri, backlog, l);
}

static int uring_accept(struct mfd__listener *l, uint64_t timeout_ms,
			const int *cancel, struct mfd__chan **out)
{
	int fd = -1, ret = mfd__tcp_accept_fd(l, timeout_ms, cancel, &fd);
	return ret ? ret : uring_wrap(fd, out);
}

static void uring_listener_close(struct mfd__listener *l)
{
	mfd__tcp_transport.listener_close(l);
}

const struct mfd__transport mfd__uring_transport = {
	.name = "uring",
	.connect = uring_connect,
	.listen = uring_listen,
	.accept = uring_accept,
	.listener_close = uring_listener_close,
};
