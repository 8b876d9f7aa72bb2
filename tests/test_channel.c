/* SPDX-License-Identifier: MIT */
/*
 * One TCP channel pair over the io-engine under test: bulk bytes arrive
 * whole and in order, the io timeout cuts a silent peer (also in the middle
 * of a message), shutdown from another thread wakes a blocked call, and a
 * channel keeps working when it changes threads.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "multifd/channels/channel.h"
#include "multifd/internal.h"
#include "testvm.h"

static const struct mfd__transport *tp;
static uint64_t seed;

struct pair {
	struct mfd__listener l;
	struct mfd__chan *a, *b; /* a connected, b accepted */
};

static void pair_open(struct pair *p)
{
	memset(p, 0, sizeof(*p));
	assert_int_equal(tp->listen("tcp:127.0.0.1:0", 4, &p->l), 0);
	assert_int_equal(tp->connect(p->l.uri, 5000, &p->a), 0);
	assert_int_equal(tp->accept(&p->l, 5000, NULL, &p->b), 0);
}

static void pair_close(struct pair *p)
{
	p->a->ops->close(p->a);
	p->b->ops->close(p->b);
	tp->listener_close(&p->l);
}

struct bulk {
	struct mfd__chan *c;
	uint8_t *buf;
	size_t len;
	int ret;
};

/* Sends buf as iovecs of varying sizes, in 3 messages. */
static void *bulk_send(void *arg)
{
	struct bulk *b = arg;
	size_t third = b->len / 3, off = 0;
	for (int m = 0; m < 3 && !b->ret; m++) {
		size_t end = m == 2 ? b->len : off + third;
		struct iovec iov[8];
		int n = 0;
		size_t chunk = (end - off) / 7 + 1;
		for (size_t o = off; o < end; o += chunk) {
			iov[n].iov_base = b->buf + o;
			iov[n].iov_len = o + chunk > end ? end - o : chunk;
			n++;
		}
		b->ret = b->c->ops->sendv(b->c, iov, n);
		off = end;
	}
	return NULL;
}

static void test_bulk(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p);
	size_t len = (8u << 20) + 12345;
	uint8_t *src = malloc(len), *dst = calloc(1, len);
	assert_non_null(src);
	assert_non_null(dst);
	uint64_t x = seed | 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		src[i] = (uint8_t)x;
	}
	assert_int_equal(p.a->ops->set_timeout(p.a, 5000), 0);
	assert_int_equal(p.b->ops->set_timeout(p.b, 5000), 0);
	struct bulk b = { .c = p.a, .buf = src, .len = len };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, bulk_send, &b), 0);
	/* Received in pieces that do not match the sends. */
	size_t off = 0, piece = 100003;
	while (off < len) {
		size_t n = len - off < piece ? len - off : piece;
		struct iovec iov[2] = { { dst + off, n / 2 },
					{ dst + off + n / 2, n - n / 2 } };
		assert_int_equal(p.b->ops->recvv(p.b, iov, 2), 0);
		off += n;
	}
	pthread_join(t, NULL);
	assert_int_equal(b.ret, 0);
	assert_memory_equal(src, dst, len);
	free(src);
	free(dst);
	pair_close(&p);
}

/*
 * A stream shaped like data packets (a small header naming the sizes, a
 * small "offsets" part, a bulk payload of at least 64 KiB now and then,
 * small-only packets in between), sent in pieces that do not follow the
 * packets: received as the destination does, header and offsets with recv,
 * payload with recvv; every byte lands where it belongs. Then EOF in the
 * middle of a header.
 */
#define PK_N 300

struct pk_send {
	struct mfd__chan *c;
	uint8_t *buf;
	size_t len;
	int ret;
};

static void *pk_send_main(void *arg)
{
	struct pk_send *s = arg;
	size_t off = 0;
	/* Uneven sends, not aligned with the packets. */
	while (off < s->len && !s->ret) {
		size_t n = 4096 + (off * 7919) % 200000;
		if (n > s->len - off)
			n = s->len - off;
		s->ret = mfd__chan_send(s->c, s->buf + off, n);
		off += n;
	}
	/* A header cut short, then end of file. */
	if (!s->ret)
		s->ret = mfd__chan_send(s->c, "\x01\x02\x03", 3);
	s->c->ops->shutdown(s->c, SHUT_WR);
	return NULL;
}

static void test_packets(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p);
	uint32_t olen[PK_N], plen[PK_N];
	size_t len = 0;
	uint64_t x = seed | 1;
	for (int i = 0; i < PK_N; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		olen[i] = (uint32_t)(x % 9000);
		plen[i] = i % 3 == 2 ? 0 : 65536 + (uint32_t)(x >> 40) % 300000;
		len += 8 + olen[i] + plen[i];
	}
	uint8_t *src = malloc(len), *dst = calloc(1, len);
	assert_non_null(src);
	assert_non_null(dst);
	size_t off = 0;
	for (int i = 0; i < PK_N; i++) {
		memcpy(src + off, &olen[i], 4);
		memcpy(src + off + 4, &plen[i], 4);
		off += 8;
		for (size_t k = 0; k < olen[i] + plen[i]; k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			src[off++] = (uint8_t)x;
		}
	}
	assert_int_equal(p.a->ops->set_timeout(p.a, 5000), 0);
	assert_int_equal(p.b->ops->set_timeout(p.b, 5000), 0);
	struct pk_send s = { .c = p.a, .buf = src, .len = len };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, pk_send_main, &s), 0);
	off = 0;
	for (int i = 0; i < PK_N; i++) {
		uint32_t h[2];
		assert_int_equal(p.b->ops->recv(p.b, h, sizeof(h)), 0);
		assert_int_equal(h[0], olen[i]);
		assert_int_equal(h[1], plen[i]);
		memcpy(dst + off, h, sizeof(h));
		off += sizeof(h);
		if (h[0])
			assert_int_equal(p.b->ops->recv(p.b, dst + off, h[0]),
					 0);
		off += h[0];
		if (h[1]) {
			/* Three iovecs, one of them empty. */
			struct iovec iov[3] = { { dst + off, h[1] / 3 },
						{ dst + off, 0 },
						{ dst + off + h[1] / 3,
						  h[1] - h[1] / 3 } };
			assert_int_equal(p.b->ops->recvv(p.b, iov, 3), 0);
		}
		off += h[1];
	}
	assert_int_equal(off, len);
	assert_memory_equal(src, dst, len);
	uint32_t h[2];
	assert_int_equal(p.b->ops->recv(p.b, h, sizeof(h)), MFD_ETRUNCATED);
	pthread_join(t, NULL);
	assert_int_equal(s.ret, 0);
	free(src);
	free(dst);
	pair_close(&p);
}

/* The estimate's ops: the send queue empties once the peer has read
 * everything (SIOCOUTQ counts unacknowledged bytes too: wait for the ACK),
 * and after traffic the smoothed round trip of a loopback connection is
 * above 0 and far below a second. */
static void test_unsent_and_rtt(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p);
	assert_non_null(p.a->ops->unsent);
	assert_non_null(p.a->ops->rtt_ns);
	uint8_t buf[65536];
	memset(buf, 0x3c, sizeof(buf));
	for (int i = 0; i < 4; i++) {
		struct iovec iov = { buf, sizeof(buf) };
		assert_int_equal(p.a->ops->sendv(p.a, &iov, 1), 0);
		assert_int_equal(p.b->ops->recv(p.b, buf, sizeof(buf)), 0);
		struct iovec back = { buf, 64 };
		assert_int_equal(p.b->ops->sendv(p.b, &back, 1), 0);
		assert_int_equal(p.a->ops->recv(p.a, buf, 64), 0);
	}
	uint64_t left = 1;
	for (int i = 0; i < 1000 && left; i++) {
		left = p.a->ops->unsent(p.a);
		if (left)
			usleep(1000);
	}
	assert_int_equal(left, 0);
	uint64_t rtt = p.a->ops->rtt_ns(p.a);
	assert_true(rtt > 0);
	assert_true(rtt < 1000000000ULL);
	pair_close(&p);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* The pace op (post-copy's data channels): SO_MAX_PACING_RATE and a
 * TCP_NOTSENT_LOWAT of about 2 ms of it, and the bytes really leave no
 * faster than the pace; 0 lifts both. */
static void test_pace(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p);
	assert_non_null(p.a->ops->pace);
	unsigned long rate = 0;
	int lowat = -1;
	socklen_t len = sizeof(rate);
	assert_int_equal(p.a->ops->pace(p.a, 4000000), 0);
	assert_int_equal(getsockopt(p.a->fd, SOL_SOCKET, SO_MAX_PACING_RATE,
				    &rate, &len),
			 0);
	assert_int_equal(rate, 4000000);
	len = sizeof(lowat);
	assert_int_equal(getsockopt(p.a->fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT,
				    &lowat, &len),
			 0);
	assert_int_equal(lowat, 65536); /* 2 ms of 4 MB/s is less */
	assert_int_equal(p.a->ops->pace(p.a, 500000000), 0);
	assert_int_equal(getsockopt(p.a->fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT,
				    &lowat, &len),
			 0);
	assert_int_equal(lowat, 1000000);

	/* 1 MiB at 4 MB/s: 0.26 s, less the first segments, which leave
	 * at once (measured 0.16 s); unpaced, loopback moves it in a few
	 * milliseconds. Only a lower bound is checked: a loaded machine
	 * only makes it slower. */
	assert_int_equal(p.a->ops->pace(p.a, 4000000), 0);
	size_t n = 1 << 20;
	struct bulk b = { .c = p.a, .buf = malloc(n), .len = n };
	uint8_t *in = malloc(n);
	assert_non_null(b.buf);
	assert_non_null(in);
	for (size_t i = 0; i < n; i++)
		b.buf[i] = (uint8_t)(i * 7 + 1);
	pthread_t t;
	uint64_t t0 = mono_ns();
	assert_int_equal(pthread_create(&t, NULL, bulk_send, &b), 0);
	assert_int_equal(p.b->ops->recv(p.b, in, n), 0);
	uint64_t took = mono_ns() - t0;
	pthread_join(t, NULL);
	assert_int_equal(b.ret, 0);
	assert_memory_equal(in, b.buf, n);
	assert_true(took > 100000000ULL);

	assert_int_equal(p.a->ops->pace(p.a, 0), 0);
	len = sizeof(rate);
	assert_int_equal(getsockopt(p.a->fd, SOL_SOCKET, SO_MAX_PACING_RATE,
				    &rate, &len),
			 0);
	assert_int_equal(rate, ~0UL);
	len = sizeof(lowat);
	assert_int_equal(getsockopt(p.a->fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT,
				    &lowat, &len),
			 0);
	assert_int_equal(lowat, 0);
	free(b.buf);
	free(in);
	pair_close(&p);
}

static void test_timeout_silent(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p);
	assert_int_equal(p.b->ops->set_timeout(p.b, 200), 0);
	uint8_t buf[16];
	uint64_t t0 = tvm_now_ms();
	assert_int_equal(p.b->ops->recv(p.b, buf, sizeof(buf)), -ETIMEDOUT);
	uint64_t dt = tvm_now_ms() - t0;
	assert_true(dt >= 150);
	assert_true(dt < 5000);
	pair_close(&p);
}

static void test_timeout_mid_message(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p);
	assert_int_equal(p.b->ops->set_timeout(p.b, 200), 0);
	assert_int_equal(mfd__chan_send(p.a, "hello", 5), 0);
	uint8_t buf[16];
	assert_int_equal(p.b->ops->recv(p.b, buf, sizeof(buf)), -ETIMEDOUT);
	pair_close(&p);
}

static void test_timeout_then_data(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p);
	/* A timeout that does not expire leaves the message intact. */
	assert_int_equal(p.b->ops->set_timeout(p.b, 5000), 0);
	for (int i = 0; i < 1000; i++) {
		uint32_t v = (uint32_t)i, got = 0;
		assert_int_equal(mfd__chan_send(p.a, &v, sizeof(v)), 0);
		assert_int_equal(p.b->ops->recv(p.b, &got, sizeof(got)), 0);
		assert_int_equal(got, v);
	}
	pair_close(&p);
}

struct shut {
	struct mfd__chan *c;
	int how;
};

static void *shut_later(void *arg)
{
	struct shut *s = arg;
	usleep(100 * 1000);
	s->c->ops->shutdown(s->c, s->how);
	return NULL;
}

static void test_shutdown_wakes_recv(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p);
	assert_int_equal(p.b->ops->set_timeout(p.b, 0), 0);
	struct shut s = { p.b, SHUT_RDWR };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, shut_later, &s), 0);
	uint8_t buf[16];
	uint64_t t0 = tvm_now_ms();
	int ret = p.b->ops->recv(p.b, buf, sizeof(buf));
	pthread_join(t, NULL);
	assert_int_not_equal(ret, 0);
	assert_true(tvm_now_ms() - t0 < 5000);
	/* Later calls fail at once. */
	assert_int_not_equal(p.b->ops->recv(p.b, buf, sizeof(buf)), 0);
	pair_close(&p);
}

static void test_shutdown_wakes_send(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p);
	assert_int_equal(p.a->ops->set_timeout(p.a, 0), 0);
	/* Nobody reads b: the send blocks once the buffers are full. */
	size_t len = 64u << 20;
	uint8_t *buf = calloc(1, len);
	assert_non_null(buf);
	struct shut s = { p.a, SHUT_RDWR };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, shut_later, &s), 0);
	int ret = mfd__chan_send(p.a, buf, len);
	pthread_join(t, NULL);
	assert_int_not_equal(ret, 0);
	free(buf);
	pair_close(&p);
}

struct hop {
	struct mfd__chan *c;
	uint32_t v;
	int ret;
};

static void *hop_send(void *arg)
{
	struct hop *h = arg;
	h->ret = mfd__chan_send(h->c, &h->v, sizeof(h->v));
	return NULL;
}

static void test_thread_change(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p);
	assert_int_equal(p.b->ops->set_timeout(p.b, 5000), 0);
	for (uint32_t i = 0; i < 6; i++) {
		struct hop h = { p.a, i, -1 };
		if (i % 2) {
			pthread_t t;
			assert_int_equal(pthread_create(&t, NULL, hop_send, &h),
					 0);
			pthread_join(t, NULL);
		} else {
			hop_send(&h);
		}
		assert_int_equal(h.ret, 0);
		uint32_t got = 99;
		assert_int_equal(p.b->ops->recv(p.b, &got, sizeof(got)), 0);
		assert_int_equal(got, i);
	}
	pair_close(&p);
}

int main(void)
{
	const char *engine = tvm_io_engine("test_channel");
	tp = strcmp(engine, "uring") ? &mfd__tcp_transport
				     : &mfd__uring_transport;
	seed = tvm_seed("test_channel");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bulk),
		cmocka_unit_test(test_packets),
		cmocka_unit_test(test_unsent_and_rtt),
		cmocka_unit_test(test_pace),
		cmocka_unit_test(test_timeout_silent),
		cmocka_unit_test(test_timeout_mid_message),
		cmocka_unit_test(test_timeout_then_data),
		cmocka_unit_test(test_shutdown_wakes_recv),
		cmocka_unit_test(test_shutdown_wakes_send),
		cmocka_unit_test(test_thread_change),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	if (tp == &mfd__uring_transport) {
		/* Loopback peers receive with recvmsg(2) by default: the
		 * same tests through io_uring receives, as to a remote peer. */
		printf("test_channel: again with io_uring receives\n");
		mfd__uring_ring_rx_always(true);
		ret |= cmocka_run_group_tests(tests, NULL, NULL);
		mfd__uring_ring_rx_always(false);
	}
	return ret;
}
