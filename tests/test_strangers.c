/* SPDX-License-Identifier: MIT */
/*
 * Hostile strangers at the destination's port: connections that stay
 * silent, send part of a hello, or close early, made before the main
 * channel and between the data channels, must not delay or fail the
 * migration (the destination polls every pending connection and
 * handshakes only one whose hello is complete); a flood beyond
 * max-pending-connections drops the oldest and keeps the destination's
 * file descriptors (its memory per connection) bounded.
 */
#include <arpa/inet.h>
#include <dirent.h>
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "multifd/wire.h"
#include "testvm.h"

#define MiB  (1024UL * 1024)
#define RAM  (8 * MiB)
#define MAXS 128

static uint64_t seed;
static unsigned port;
static int strangers[MAXS];
static unsigned nstrangers;
static char tls_dir[64];

enum kind { SILENT, PARTIAL, CLOSE_EARLY };

/* A stranger connects to the destination directly (not through the
 * proxy) and, by kind, says nothing, 20 bytes of a hello, or closes. */
static void stranger(enum kind k)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	if (k != SILENT) {
		uint8_t part[MFD_HELLO_SIZE / 2];
		memset(part, 0x16, sizeof(part)); /* also a TLS record type */
		assert_int_equal(write(fd, part, sizeof(part)), sizeof(part));
	}
	if (k == CLOSE_EARLY) {
		close(fd);
		return;
	}
	assert_true(nstrangers < MAXS);
	strangers[nstrangers++] = fd;
}

static void close_strangers(void)
{
	for (unsigned i = 0; i < nstrangers; i++)
		close(strangers[i]);
	nstrangers = 0;
}

/* Whether the destination has closed stranger i (EOF or reset). */
static bool dropped(unsigned i)
{
	char b;
	ssize_t n = recv(strangers[i], &b, 1, MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static unsigned open_fds(void)
{
	unsigned n = 0;
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

/* Before the first bytes of each proxied connection (main = 0, data
 * channels 1..), more strangers arrive: between the real channels. */
static int between(struct tvm_proxy *p, unsigned conn, uint64_t pos, size_t len)
{
	(void)p, (void)len;
	if (pos == 0) {
		stranger(SILENT);
		stranger(conn % 2 ? PARTIAL : CLOSE_EARLY);
		stranger(SILENT);
	}
	return TVM_PASS;
}

static void config(struct tvm *vm, const char *extra)
{
	char psk[128];
	const char *kv[8] = { "channels=3", "verify=on",
			      /* The old one-at-a-time accept failed here:
			       * a silent stranger cost connect-timeout. */
			      "connect-timeout=2000ms" };
	unsigned n = 3;
	if (extra)
		kv[n++] = extra;
	if (tls_dir[0]) {
		snprintf(psk, sizeof(psk), "tls-psk-file=%s/psk", tls_dir);
		kv[n++] = "tls=psk";
		kv[n++] = psk;
	}
	kv[n] = NULL;
	tvm_config(vm, kv);
	tvm_add_block(vm, "pc.ram", RAM, 4096);
	tvm_fill_random(vm->blocks[0].src, RAM, seed + 1);
	tvm_start_dest(vm);
	assert_int_equal(sscanf(vm->uri, "tcp:127.0.0.1:%u", &port), 1);
}

static void wait_all_dropped(void)
{
	uint64_t t0 = tvm_now_ms();
	for (unsigned i = 0; i < nstrangers; i++)
		while (!dropped(i)) {
			assert_true(tvm_now_ms() - t0 < 10000);
			usleep(10000);
		}
}

static void run_between(void)
{
	struct tvm vm = { 0 };
	config(&vm, NULL);
	/* Before the main channel. */
	stranger(SILENT);
	stranger(PARTIAL);
	stranger(CLOSE_EARLY);
	stranger(SILENT);
	struct tvm_proxy px = { .fault = between };
	tvm_proxy_start(&px, vm.uri, 4);
	uint64_t t0 = tvm_now_ms();
	int dret = -1;
	assert_int_equal(tvm_migrate(&vm, px.listen_uri, &dret), 0);
	uint64_t ms = tvm_now_ms() - t0;
	/* Joins the proxy's threads, which made the strangers between. */
	tvm_proxy_stop(&px);
	assert_int_equal(dret, 0);
	assert_true(tvm_equal(&vm));
	printf("migration with %u strangers around it: %llu ms\n", nstrangers,
	       (unsigned long long)ms);
	/* Done with its channels, the destination let every stranger go. */
	wait_all_dropped();
	close_strangers();
	tvm_destroy(&vm);
}

static void test_strangers_between_channels(void **s)
{
	(void)s;
	run_between();
}

/* The same with TLS: a pending connection waits for its whole first
 * record (ClientHello) before the TLS handshake runs. */
static void test_strangers_between_channels_tls(void **s)
{
	(void)s;
	assert_int_equal(tvm_psk_dir(tls_dir, sizeof(tls_dir), "strangers"), 0);
	run_between();
	tvm_psk_dir_remove(tls_dir);
	tls_dir[0] = 0;
}

/* More strangers than max-pending-connections: the oldest are dropped,
 * the destination holds at most the bound, and a migration still gets
 * through. */
static void test_stranger_flood(void **s)
{
	(void)s;
	enum { BOUND = 4, FLOOD = 48 };
	unsigned base = open_fds();
	struct tvm vm = { 0 };
	config(&vm, "max-pending-connections=4");
	unsigned with_dest = open_fds();
	for (unsigned i = 0; i < FLOOD; i++)
		stranger(SILENT);
	/* The destination accepts them all and keeps the newest BOUND. */
	uint64_t t0 = tvm_now_ms();
	while (!dropped(FLOOD - BOUND - 1)) {
		assert_true(tvm_now_ms() - t0 < 10000);
		usleep(10000);
	}
	usleep(100000);
	for (unsigned i = 0; i < FLOOD; i++)
		assert_int_equal(dropped(i), i < FLOOD - BOUND);
	/* Its own descriptors: the listener and what it had, plus BOUND. */
	unsigned held = open_fds() - with_dest - FLOOD;
	printf("fds: %u before, %u with the destination, %u held for %u "
	       "strangers (bound %u)\n",
	       base, with_dest, held, FLOOD, BOUND);
	assert_true(held <= BOUND);
	/* The real source is not refused: it pushes out the oldest. */
	int dret = -1;
	assert_int_equal(tvm_migrate(&vm, NULL, &dret), 0);
	assert_int_equal(dret, 0);
	assert_true(tvm_equal(&vm));
	wait_all_dropped();
	close_strangers();
	tvm_destroy(&vm);
}

int main(void)
{
	tvm_io_engine("test_strangers");
	seed = tvm_seed("test_strangers");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strangers_between_channels),
		cmocka_unit_test(test_strangers_between_channels_tls),
		cmocka_unit_test(test_stranger_flood),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
