/* SPDX-License-Identifier: MIT */
/*
 * The destination never waits forever. A crafted source (raw sockets, bytes
 * from docs/protocol.md) drives a real destination into each wait that used
 * to hang, and the destination must fail within io-timeout + 1 s with the
 * code that names the wait, send exactly one ERROR on main and close.
 * mfd_dest_wait() is called with no watchdog: it must return on its own.
 * The same crafted source sends placed device chunks with bad placement
 * tables: refused with their codes, the device memory untouched.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "devstate/simdev.h"
#include "multifd/ctl.h"
#include "multifd/devwire.h"
#include "multifd/internal.h"
#include "devstate/reorder.h"
#include "multifd/wire.h"
#include "testvm.h"

#define RAM	   (1024UL * 1024)
#define IO_TIMEOUT 1000 /* ms */
#define NCHAN	   2

struct crafted {
	struct tvm vm;
	int main_fd;
	int data_fd[NCHAN];
	uint32_t seq[NCHAN];
	uint8_t session[16];
	uint64_t features;
};

static int connect_to(const char *uri)
{
	unsigned port = 0;
	const char *colon = strrchr(uri, ':');
	assert_non_null(colon);
	port = (unsigned)atoi(colon + 1);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	/* The test itself must not hang either. */
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void start(struct crafted *c, const char *extra);

/* Best effort: the destination may already have failed and closed; what
 * matters is what it reports. */
static void send_all(int fd, const void *buf, size_t len)
{
	if (send(fd, buf, len, MSG_NOSIGNAL) != (ssize_t)len)
		printf("# send: %s\n", strerror(errno));
}

static bool recv_all(int fd, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = recv(fd, (uint8_t *)buf + got, len - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0)
				printf("# recv: %s\n", strerror(errno));
			return false;
		}
		got += (size_t)n;
	}
	return true;
}

static void hello(struct crafted *c, int fd, uint16_t role, uint16_t ch)
{
	struct mfd__hello h = { .magic = MFD_MAGIC_HELLO,
				.version = MFD_PROTO_VERSION,
				.role = role,
				.channel = ch,
				.nchannels = NCHAN,
				.features = c->features };
	memcpy(h.session, c->session, 16);
	uint8_t buf[MFD_HELLO_SIZE], rep[MFD_HELLO_REPLY_SIZE];
	mfd__hello_encode(&h, buf);
	send_all(fd, buf, sizeof(buf));
	assert_true(recv_all(fd, rep, sizeof(rep)));
	struct mfd__hello_reply r;
	assert_int_equal(mfd__hello_reply_decode(rep, &r), 0);
}

static void ctl(int fd, uint16_t type, const void *payload, uint32_t len)
{
	struct mfd__ctl_hdr h = { .magic = MFD_MAGIC_CTL,
				  .type = type,
				  .length = len };
	uint8_t hdr[MFD_CTL_HDR_SIZE];
	mfd__ctl_hdr_encode(&h, hdr);
	send_all(fd, hdr, sizeof(hdr));
	if (len)
		send_all(fd, payload, len);
}

static void setup_msg(struct crafted *c)
{
	struct mfd__block_desc b = { .size = RAM, .page_size = 4096 };
	snprintf(b.name, sizeof(b.name), "pc.ram");
	struct mfd__setup su = { .nblocks = 1,
				 .packet_pages = 128,
				 .nchannels = NCHAN,
				 .features = c->features,
				 .blocks = &b };
	uint8_t buf[1024];
	int len = mfd__setup_encode(&su, buf, sizeof(buf));
	assert_true(len > 0);
	ctl(c->main_fd, MFD_CTL_SETUP, buf, (uint32_t)len);
}

/* Reads one control message on main; its type and, for ERROR, code. */
static bool read_ctl(int fd, uint16_t *type, int *code)
{
	uint8_t hdr[MFD_CTL_HDR_SIZE], buf[8 + MFD_MAX_ERROR_TEXT];
	struct mfd__ctl_hdr h;
	if (!recv_all(fd, hdr, sizeof(hdr)))
		return false;
	assert_int_equal(mfd__ctl_hdr_decode(hdr, &h), 0);
	assert_true(h.length <= sizeof(buf));
	assert_true(recv_all(fd, buf, h.length));
	*type = h.type;
	*code = 0;
	if (h.type == MFD_CTL_ERROR) {
		struct mfd__error_msg m;
		assert_int_equal(mfd__error_decode(buf, h.length, &m), 0);
		*code = m.code;
	}
	return true;
}

/* Destination up, main connected, SETUP sent and SETUP_OK read, data
 * channels connected. */
static void add_device(struct tvm *vm)
{
	struct mfd_simdev_cfg dc = { .state_size = 1 << 20, .seed = 1 };
	struct mfd_simdev *d;
	assert_int_equal(mfd_simdev_new(&d, &dc), 0);
	vm->opaque = d;
	assert_int_equal(
		mfd_dest_add_device(vm->dst, "dev0", mfd_simdev_ops(d), d), 0);
}

static void devices_msg(struct crafted *c)
{
	char names[1][MFD_MAX_DEV_NAME_WIRE + 1] = { "dev0" };
	struct mfd__devices dv = { .ndevices = 1,
				   .transfer = MFD_DEV_XFER_MULTIFD,
				   .chunk_max = 4096,
				   .names = names };
	uint8_t buf[256];
	int len = mfd__devices_encode(&dv, buf, sizeof(buf));
	assert_true(len > 0);
	ctl(c->main_fd, MFD_CTL_DEVICES, buf, (uint32_t)len);
}

static void start_dev(struct crafted *c, const char *extra, bool devices,
		      uint64_t features)
{
	memset(c, 0, sizeof(*c));
	c->features = features;
	if (devices)
		c->vm.dest_setup = add_device;
	char to[32];
	snprintf(to, sizeof(to), "io-timeout=%ums", IO_TIMEOUT);
	const char *kv[] = { "channels=2", to, "connect-timeout=1s", extra,
			     NULL };
	tvm_config(&c->vm, kv);
	tvm_add_block(&c->vm, "pc.ram", RAM, 4096);
	tvm_start_dest(&c->vm);
	for (unsigned i = 0; i < 16; i++)
		c->session[i] = (uint8_t)(0xa0 + i);
	c->main_fd = connect_to(c->vm.uri);
	hello(c, c->main_fd, MFD_ROLE_MAIN, 0);
	setup_msg(c);
	uint16_t type;
	int code;
	assert_true(read_ctl(c->main_fd, &type, &code));
	assert_int_equal(type, MFD_CTL_SETUP_OK);
	if (features & MFD_FEAT_DEVICES)
		devices_msg(c);
	for (unsigned i = 0; i < NCHAN; i++) {
		c->data_fd[i] = connect_to(c->vm.uri);
		hello(c, c->data_fd[i], MFD_ROLE_DATA, (uint16_t)i);
	}
}

static void start(struct crafted *c, const char *extra)
{
	start_dev(c, extra, false, 0);
}

static void pkt(struct crafted *c, unsigned ch, uint16_t type, uint32_t round,
		uint32_t count)
{
	struct mfd__pkt_hdr h = { .magic = MFD_MAGIC_PKT,
				  .type = type,
				  .round = round,
				  .count = count,
				  .seq = c->seq[ch]++ };
	uint8_t buf[MFD_PKT_HDR_SIZE];
	mfd__pkt_encode(&h, buf);
	send_all(c->data_fd[ch], buf, sizeof(buf));
}

/* A PAGES packet of one zero page (no payload): progress on a channel. */
static void zero_page(struct crafted *c, unsigned ch, uint32_t round,
		      uint64_t off)
{
	struct mfd__pkt_hdr h = { .magic = MFD_MAGIC_PKT,
				  .type = MFD_PKT_PAGES,
				  .round = round,
				  .zero_count = 1,
				  .seq = c->seq[ch]++ };
	uint8_t buf[MFD_PKT_HDR_SIZE + 8];
	mfd__pkt_encode(&h, buf);
	mfd__put_le64(buf + MFD_PKT_HDR_SIZE, off);
	send_all(c->data_fd[ch], buf, sizeof(buf));
}

/*
 * The destination's result, waited for from t0 with no watchdog: it must
 * come within io-timeout + 1 s, be expect, be reported on main as exactly
 * one ERROR with that code, followed by the orderly close (EOF).
 */
/* Called by finish2() with the destination's device, if any, once the
 * destination has ended and before the device is freed. */
static void (*after_wait)(void *dev);

static void finish2(struct crafted *c, uint64_t t0, int expect, int alt)
{
	/* The ERROR comes first, then the destination's FIN: it closes
	 * after the source does (protocol 7.4), so this side closes at once
	 * and mfd_dest_wait() returns without waiting for close-timeout. */
	uint16_t type;
	int code, errors = 0, first = 0;
	while (read_ctl(c->main_fd, &type, &code)) {
		assert_int_equal(type, MFD_CTL_ERROR);
		if (!errors++)
			first = code;
	}
	uint64_t told = tvm_now_ms() - t0;
	close(c->main_fd);
	int ret = mfd_dest_wait(c->vm.dst);
	uint64_t took = tvm_now_ms() - t0;
	printf("# destination: %d (%s), ERROR after %llu ms, returned after "
	       "%llu ms\n",
	       ret, mfd_strerror(ret), (unsigned long long)told,
	       (unsigned long long)took);
	if (alt && ret == alt)
		expect = alt;
	assert_int_equal(ret, expect);
	assert_int_equal(errors, 1);
	assert_int_equal(first, expect);
	assert_true(took <= IO_TIMEOUT + 1000);
	assert_int_equal(c->vm.loaded, 0);
	assert_int_equal(c->vm.failed, 1);
	assert_int_equal(c->vm.failed_err, expect);
	for (unsigned i = 0; i < NCHAN; i++)
		if (c->data_fd[i] >= 0)
			close(c->data_fd[i]);
	void *dev = c->vm.opaque;
	/* After mfd_dest_wait(): every destination thread has ended. */
	if (dev && after_wait)
		after_wait(dev);
	after_wait = NULL;
	tvm_destroy(&c->vm);
	if (dev)
		mfd_simdev_free(dev);
}

static void finish(struct crafted *c, uint64_t t0, int expect)
{
	finish2(c, t0, expect, 0);
}

/* DONE at once on channel 0, while channel 1 reaches SYNC 0: refused where
 * it is read (protocol 7.3.4), not at END or never. */
static void test_done_without_sync(void **s)
{
	struct crafted c;
	start(&c, NULL);
	pkt(&c, 1, MFD_PKT_SYNC, 0, 0);
	uint64_t t0 = tvm_now_ms();
	pkt(&c, 0, MFD_PKT_DONE, 0, 0);
	finish(&c, t0, MFD_EROUND);
}

/* Channel 0 ends properly after SYNC 0; channel 1 goes on to SYNC 1, a
 * barrier that can never be complete: refused at once. */
static void test_sync_after_a_channel_ended(void **s)
{
	struct crafted c;
	start(&c, NULL);
	pkt(&c, 0, MFD_PKT_SYNC, 0, 0);
	pkt(&c, 1, MFD_PKT_SYNC, 0, 0);
	pkt(&c, 0, MFD_PKT_DONE, 0, 0);
	usleep(100000);
	uint64_t t0 = tvm_now_ms();
	pkt(&c, 1, MFD_PKT_SYNC, 1, 0);
	finish(&c, t0, MFD_EROUND);
}

/* Channel 0 waits at the barrier of round 0 while channel 1 sends pages of
 * round 0 slowly, for longer than io-timeout: a slow round is not a stall,
 * and the barrier waits on. Then channel 1 goes silent without its SYNC:
 * the load fails within io-timeout + 1 s (the silent channel's read or the
 * barrier's deadline, whichever runs out first). */
static void test_barrier_slow_then_stalled(void **s)
{
	struct crafted c;
	start(&c, NULL);
	pkt(&c, 0, MFD_PKT_SYNC, 0, 0);
	uint64_t t0 = tvm_now_ms();
	for (unsigned i = 0; tvm_now_ms() - t0 < IO_TIMEOUT * 3 / 2; i++) {
		zero_page(&c, 1, 0, (uint64_t)i * 4096);
		struct pollfd pfd = { .fd = c.main_fd, .events = POLLIN };
		/* No ERROR while the round makes progress. */
		assert_int_equal(poll(&pfd, 1, IO_TIMEOUT / 5), 0);
	}
	mfd_stats st;
	mfd_dest_get_stats(c.vm.dst, &st, sizeof(st));
	assert_int_equal(st.phase, MFD_PHASE_PRECOPY);
	assert_int_equal(st.error, 0);
	finish2(&c, tvm_now_ms(), MFD_EBARRIER, -ETIMEDOUT);
}

/* After END, one data channel goes silent without its DONE. */
static void test_silent_channel_after_end(void **s)
{
	struct crafted c;
	start(&c, NULL);
	pkt(&c, 0, MFD_PKT_SYNC, 0, 0);
	pkt(&c, 1, MFD_PKT_SYNC, 0, 0);
	pkt(&c, 0, MFD_PKT_DONE, 0, 0);
	struct mfd__round r = { .round = 0 };
	uint8_t rb[MFD_ROUND_SIZE];
	mfd__round_encode(&r, rb);
	ctl(c.main_fd, MFD_CTL_ROUND, rb, sizeof(rb));
	struct mfd__end e = { .final_round = 0, .nblocks = 1 };
	uint8_t eb[64];
	int len = mfd__end_encode(&e, eb, sizeof(eb));
	assert_true(len > 0);
	uint64_t t0 = tvm_now_ms();
	ctl(c.main_fd, MFD_CTL_END, eb, (uint32_t)len);
	finish(&c, t0, -ETIMEDOUT);
}

/* An embedder without a watchdog: whichever channel goes silent in the
 * middle of a round, mfd_dest_wait() returns within io-timeout + 1 s. */
static void test_embedder_any_channel_silent(void **s)
{
	for (unsigned silent = 0; silent <= NCHAN; silent++) {
		struct crafted c;
		start(&c, NULL);
		printf("# silent: %s %u\n", silent < NCHAN ? "data" : "main",
		       silent);
		/* The others complete their part of the session. */
		for (unsigned i = 0; i < NCHAN; i++) {
			if (i == silent)
				continue;
			zero_page(&c, i, 0, (uint64_t)i * 4096);
			pkt(&c, i, MFD_PKT_SYNC, 0, 1);
			pkt(&c, i, MFD_PKT_DONE, 0, 0);
		}
		uint64_t t0 = tvm_now_ms();
		/* A silent data channel fails its own read at io-timeout,
		 * or the other channel's barrier wait does, at about the
		 * same time; a silent main after every DONE fails at
		 * io-timeout too. */
		finish2(&c, t0, -ETIMEDOUT, silent < NCHAN ? MFD_EBARRIER : 0);
	}
}

/* A device chunk that its loader does not need next (seq 1, then 2) fills
 * the reorder buffer while the source never sends chunk 0: the receiver's
 * wait for room ends at io-timeout. */
static void device_chunk(struct crafted *c, unsigned ch, uint32_t dseq)
{
	struct mfd__pkt_hdr h = { .magic = MFD_MAGIC_PKT,
				  .type = MFD_PKT_DEVICE,
				  .count = dseq,
				  .payload_len = 4096,
				  .seq = c->seq[ch]++ };
	uint8_t buf[MFD_PKT_HDR_SIZE + 4096];
	memset(buf, 0x5a, sizeof(buf));
	mfd__pkt_encode(&h, buf);
	send_all(c->data_fd[ch], buf, sizeof(buf));
}

static void test_reorder_back_pressure(void **s)
{
	struct crafted c;
	start_dev(&c, "device-buffer-max=8K", true, MFD_FEAT_DEVICES);
	device_chunk(&c, 0, 1);
	uint64_t t0 = tvm_now_ms();
	device_chunk(&c, 0, 2);
	/* Channel 1 keeps the source visibly alive (pages of round 0): only
	 * the loader's progress extends a wait for room. */
	for (unsigned i = 0; i < 3 * IO_TIMEOUT / 100; i++) {
		zero_page(&c, 1, 0, (uint64_t)i * 4096);
		struct pollfd pfd = { .fd = c.main_fd, .events = POLLIN };
		if (poll(&pfd, 1, 100) > 0)
			break;
	}
	finish(&c, t0, MFD_EDEVBUFFER);
}

/*
 * Placed chunks aimed at the device's state memory (1 MiB here): a bad
 * placement table is refused with its code before a byte of the chunk is
 * read, and the device memory is what it was; placed bytes that are inside
 * the memory but not where the stream puts them fail the device's check
 * (MFD_EDEVICE).
 */
struct seg_spec {
	uint64_t off;
	uint32_t len, flags;
};

static void placed_chunk(struct crafted *c, uint32_t dseq, uint32_t nseg,
			 uint32_t fence, const struct seg_spec *sg,
			 uint32_t data)
{
	uint32_t tab = 8 + 16 * nseg;
	struct mfd__pkt_hdr h = { .magic = MFD_MAGIC_PKT,
				  .type = MFD_PKT_DEVICE,
				  .count = dseq,
				  .zero_count = MFD_DEVCHUNK_PLACED,
				  .payload_len = tab + data,
				  .seq = c->seq[0]++ };
	uint8_t *buf = calloc(1, MFD_PKT_HDR_SIZE + tab + data);
	assert_non_null(buf);
	mfd__pkt_encode(&h, buf);
	uint8_t *t = buf + MFD_PKT_HDR_SIZE;
	mfd__put_le32(t, nseg);
	mfd__put_le32(t + 4, fence);
	for (uint32_t i = 0; sg && i < nseg; i++) {
		mfd__put_le64(t + 8 + 16 * i, sg[i].off);
		mfd__put_le32(t + 16 + 16 * i, sg[i].len);
		mfd__put_le32(t + 20 + 16 * i, sg[i].flags);
	}
	memset(t + tab, 0xa5, data);
	send_all(c->data_fd[0], buf, MFD_PKT_HDR_SIZE + tab + data);
	free(buf);
}

/* RESUMING fills the simulated device's memory with 0x5a; the crafted
 * chunks carry 0xa5: not one byte of them may be there. */
static void memory_as_resumed(void *dev)
{
	uint64_t len;
	const uint8_t *mem = mfd_simdev_mem(dev, &len);
	for (uint64_t i = 0; i < len; i++)
		if (mem[i] != 0x5a)
			fail_msg("device memory byte %llu is 0x%02x",
				 (unsigned long long)i, mem[i]);
}

static void placed_refused(uint32_t nseg, uint32_t fence,
			   const struct seg_spec *sg, uint32_t data, int expect)
{
	struct crafted c;
	start_dev(&c, NULL, true, MFD_FEAT_DEVICES);
	uint64_t t0 = tvm_now_ms();
	placed_chunk(&c, 0, nseg, fence, sg, data);
	after_wait = memory_as_resumed;
	finish(&c, t0, expect);
}

static void test_placed_refused(void **s)
{
	const uint32_t M = 1 << 20;
	/* Past the end, across it, wrapping around, and an inline segment
	 * with an offset. */
	placed_refused(1, 0, &(struct seg_spec){ M, 16, 0 }, 16, MFD_EOFFSET);
	placed_refused(1, 0, &(struct seg_spec){ M - 100, 4096, 0 }, 4096,
		       MFD_EOFFSET);
	placed_refused(1, 0, &(struct seg_spec){ UINT64_MAX - 10, 4096, 0 },
		       4096, MFD_EOFFSET);
	placed_refused(1, 0, &(struct seg_spec){ 8, 16, MFD_DEVSEG_INLINE }, 16,
		       MFD_EOFFSET);
	/* Table shape: no segment, too many, a fence after the chunk,
	 * lengths that do not add up, a zero length, beyond chunk_max
	 * (4096), unknown segment flags. */
	placed_refused(0, 0, NULL, 16, MFD_ECOUNT);
	placed_refused(64, 0, NULL, 0, MFD_ECOUNT);
	placed_refused(1, 1, &(struct seg_spec){ 0, 16, 0 }, 16, MFD_EROUND);
	placed_refused(1, 0, &(struct seg_spec){ 0, 16, 0 }, 32, MFD_ELENGTH);
	placed_refused(2, 0, (struct seg_spec[]){ { 0, 16, 0 }, { 16, 0, 0 } },
		       16, MFD_ELENGTH);
	placed_refused(2, 0,
		       (struct seg_spec[]){ { 0, 4096, 0 }, { 4096, 16, 0 } },
		       4112, MFD_ELENGTH);
	placed_refused(1, 0, &(struct seg_spec){ 0, 16, 2 }, 16, MFD_EFLAGS);
}

/* Inside the memory, but chunk 0 starts with a record header, which is
 * never in the state memory: the device's in-order check refuses it. */
static void test_placed_not_where_stream_says(void **s)
{
	struct crafted c;
	start_dev(&c, NULL, true, MFD_FEAT_DEVICES);
	uint64_t t0 = tvm_now_ms();
	placed_chunk(&c, 0, 1, 0, &(struct seg_spec){ 4096, 64, 0 }, 64);
	finish(&c, t0, MFD_EDEVICE);
}

/* A destination with devices refuses a session without DEVICES in place
 * of SETUP_OK (protocol 7.1), with one ERROR. */
static void test_devices_without_feature(void **s)
{
	struct crafted c;
	memset(&c, 0, sizeof(c));
	const char *kv[] = { "channels=2", "io-timeout=1s", NULL };
	tvm_config(&c.vm, kv);
	tvm_add_block(&c.vm, "pc.ram", RAM, 4096);
	c.vm.dest_setup = add_device;
	tvm_start_dest(&c.vm);
	c.main_fd = connect_to(c.vm.uri);
	c.data_fd[0] = c.data_fd[1] = -1;
	hello(&c, c.main_fd, MFD_ROLE_MAIN, 0);
	uint64_t t0 = tvm_now_ms();
	setup_msg(&c);
	finish(&c, t0, MFD_EDEVICE);
}

/* A malformed SETUP gets one ERROR, then the orderly close. */
static void test_one_error_malformed_setup(void **s)
{
	struct crafted c;
	memset(&c, 0, sizeof(c));
	const char *kv[] = { "channels=2", "io-timeout=1s", NULL };
	tvm_config(&c.vm, kv);
	tvm_add_block(&c.vm, "pc.ram", RAM, 4096);
	tvm_start_dest(&c.vm);
	c.main_fd = connect_to(c.vm.uri);
	c.data_fd[0] = c.data_fd[1] = -1;
	hello(&c, c.main_fd, MFD_ROLE_MAIN, 0);
	uint8_t junk[40];
	memset(junk, 0xee, sizeof(junk));
	uint64_t t0 = tvm_now_ms();
	ctl(c.main_fd, MFD_CTL_SETUP, junk, sizeof(junk));
	uint16_t type;
	int code = 0, errors = 0;
	while (read_ctl(c.main_fd, &type, &code)) {
		assert_int_equal(type, MFD_CTL_ERROR);
		errors++;
	}
	assert_int_equal(errors, 1);
	close(c.main_fd);
	int ret = mfd_dest_wait(c.vm.dst);
	assert_true(tvm_now_ms() - t0 <= 1000);
	assert_true(ret < 0);
	assert_int_equal(code, ret);
	tvm_destroy(&c.vm);
}

/* ROUND before SETUP: a known type not allowed here, one ERROR. */
static void test_one_error_round_before_setup(void **s)
{
	struct crafted c;
	memset(&c, 0, sizeof(c));
	const char *kv[] = { "channels=2", "io-timeout=1s", NULL };
	tvm_config(&c.vm, kv);
	tvm_add_block(&c.vm, "pc.ram", RAM, 4096);
	tvm_start_dest(&c.vm);
	c.main_fd = connect_to(c.vm.uri);
	hello(&c, c.main_fd, MFD_ROLE_MAIN, 0);
	struct mfd__round r = { .round = 0 };
	uint8_t rb[MFD_ROUND_SIZE];
	mfd__round_encode(&r, rb);
	ctl(c.main_fd, MFD_CTL_ROUND, rb, sizeof(rb));
	uint16_t type;
	int code, errors = 0;
	while (read_ctl(c.main_fd, &type, &code)) {
		assert_int_equal(type, MFD_CTL_ERROR);
		assert_int_equal(code, MFD_EUNEXPECTED);
		errors++;
	}
	assert_int_equal(errors, 1);
	close(c.main_fd);
	assert_int_equal(mfd_dest_wait(c.vm.dst), MFD_EUNEXPECTED);
	tvm_destroy(&c.vm);
}

/* The pure grammar step, without sockets. */
static struct mfd__pkt_hdr ph(uint16_t type, uint32_t round, uint32_t count,
			      uint32_t seq)
{
	return (struct mfd__pkt_hdr){ .magic = MFD_MAGIC_PKT,
				      .type = type,
				      .round = round,
				      .count = count,
				      .seq = seq };
}

static void test_grammar(void **s)
{
	struct mfd_data_grammar g;
	struct mfd__pkt_hdr h;
	mfd__grammar_init(&g);
	h = ph(MFD_PKT_DONE, 0, 0, 0);
	assert_int_equal(mfd__grammar_step(&g, &h), MFD_EROUND);
	h = ph(MFD_PKT_PAGES, 0, 1, 0);
	assert_int_equal(mfd__grammar_step(&g, &h), 0);
	h = ph(MFD_PKT_SYNC, 0, 2, 1);
	assert_int_equal(mfd__grammar_step(&g, &h), MFD_ECOUNT);
	h = ph(MFD_PKT_SYNC, 1, 1, 1);
	assert_int_equal(mfd__grammar_step(&g, &h), MFD_EROUND);
	h = ph(MFD_PKT_SYNC, 0, 1, 2);
	assert_int_equal(mfd__grammar_step(&g, &h), MFD_EROUND); /* seq */
	h = ph(MFD_PKT_SYNC, 0, 1, 1);
	assert_int_equal(mfd__grammar_step(&g, &h), 0);
	assert_int_equal(g.round, 1);
	/* A device chunk between SYNC and DONE is allowed. */
	h = ph(MFD_PKT_DEVICE, 0, 0, 2);
	assert_int_equal(mfd__grammar_step(&g, &h), 0);
	/* END announced round 3 as final: DONE after SYNC 0 is early. */
	g.final_round = 3;
	h = ph(MFD_PKT_DONE, 0, 0, 3);
	assert_int_equal(mfd__grammar_step(&g, &h), MFD_EROUND);
	g.final_round = 0;
	h = ph(MFD_PKT_SYNC, 1, 0, 3);
	assert_int_equal(mfd__grammar_step(&g, &h), MFD_EROUND);
	h = ph(MFD_PKT_DONE, 0, 0, 3);
	assert_int_equal(mfd__grammar_step(&g, &h), 0);
	/* Nothing after DONE. */
	h = ph(MFD_PKT_PAGES, 1, 1, 4);
	assert_int_equal(mfd__grammar_step(&g, &h), MFD_EUNEXPECTED);
	assert_int_equal(g.seq, 4);
}

/* The source keeps a destination's code that names a wait, not "remote
 * error": every code of MFD_ERRNO_MAP travels. */
static void test_codes_travel(void **s)
{
	const int codes[] = { MFD_EUNEXPECTED, MFD_EBARRIER, MFD_EDEVBUFFER,
			      MFD_EDRAIN, MFD_EBADMAGIC };
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		struct mfd__error_msg m = { .code = codes[i] };
		snprintf(m.text, sizeof(m.text), "x");
		uint8_t buf[8 + MFD_MAX_ERROR_TEXT];
		int len = mfd__error_encode(&m, buf, sizeof(buf));
		assert_true(len > 0);
		assert_int_equal(mfd__ctl_peer_error(buf, (uint32_t)len, "t"),
				 codes[i]);
	}
	struct mfd__error_msg m = { .code = -2000 };
	uint8_t buf[8 + MFD_MAX_ERROR_TEXT];
	int len = mfd__error_encode(&m, buf, sizeof(buf));
	assert_int_equal(mfd__ctl_peer_error(buf, (uint32_t)len, "t"),
			 MFD_EREMOTE);
}

/* The barrier and the reorder buffer alone, one thread: every wait ends
 * with the code that names it. */
static void test_bounded_primitives(void **s)
{
	struct mfd__barrier b;
	uint64_t progress = 0;
	mfd__barrier_init(&b, 2);
	b.timeout_ms = 200;
	b.progress = &progress;
	uint64_t t0 = tvm_now_ms();
	assert_int_equal(mfd__barrier_wait(&b), MFD_EBARRIER);
	uint64_t took = tvm_now_ms() - t0;
	assert_true(took >= 190 && took < 1200);
	assert_int_equal(b.waiting, 0);
	mfd__barrier_leave(&b);
	t0 = tvm_now_ms();
	assert_int_equal(mfd__barrier_wait(&b), MFD_EROUND);
	assert_true(tvm_now_ms() - t0 < 100);
	mfd__barrier_abort(&b);
	assert_int_equal(mfd__barrier_wait(&b), -ECANCELED);
	mfd__barrier_destroy(&b);

	struct mfd__reorder *r;
	struct mfd__rchunk *c1, *c2;
	assert_int_equal(mfd__reorder_new(&r, 1, 8192, 4096, 64), 0);
	mfd__reorder_set_timeout(r, 200);
	/* Chunk 1 takes all but the reserve kept for chunk 0. */
	assert_int_equal(mfd__reorder_reserve(r, 0, 1, 4096, false, &c1), 0);
	t0 = tvm_now_ms();
	assert_int_equal(mfd__reorder_reserve(r, 0, 2, 4096, false, &c2),
			 MFD_EDEVBUFFER);
	took = tvm_now_ms() - t0;
	assert_true(took >= 190 && took < 1200);
	assert_int_equal(mfd__reorder_bytes(r), 4096);
	mfd__reorder_drop(r, c1);
	mfd__reorder_free(r);
}

int main(void)
{
	tvm_io_engine("test_waits");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grammar),
		cmocka_unit_test(test_codes_travel),
		cmocka_unit_test(test_bounded_primitives),
		cmocka_unit_test(test_done_without_sync),
		cmocka_unit_test(test_sync_after_a_channel_ended),
		cmocka_unit_test(test_barrier_slow_then_stalled),
		cmocka_unit_test(test_silent_channel_after_end),
		cmocka_unit_test(test_embedder_any_channel_silent),
		cmocka_unit_test(test_reorder_back_pressure),
		cmocka_unit_test(test_placed_refused),
		cmocka_unit_test(test_placed_not_where_stream_says),
		cmocka_unit_test(test_devices_without_feature),
		cmocka_unit_test(test_one_error_malformed_setup),
		cmocka_unit_test(test_one_error_round_before_setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
