/* SPDX-License-Identifier: MIT */
/*
 * A destination fed garbage on a data channel fails cleanly with the right
 * error; the source reports it, never stopped the guest, and its memory is
 * untouched. The damage is done by a proxy between a real source and a real
 * destination, at chosen bytes of the first data channel's stream.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "multifd/wire.h"
#include "testvm.h"

#define MiB (1024UL * 1024)
#define RAM (8 * MiB)

/* Stream positions on data channel 0 (proxy connection 1). */
#define HDR  (MFD_HELLO_SIZE)
#define OFFS (HDR + MFD_PKT_HDR_SIZE)

struct patch {
	uint64_t pos;
	uint8_t bytes[8];
	size_t len;
	bool garbage; /* everything from pos on is random */
};

static struct patch cur;
static uint64_t seed;

static void damage(struct tvm_proxy *p, unsigned conn, uint64_t pos,
		   uint8_t *buf, size_t len)
{
	if (conn != 1)
		return;
	for (size_t i = 0; i < len; i++) {
		uint64_t at = pos + i;
		if (cur.garbage && at >= cur.pos)
			buf[i] = (uint8_t)(at * 2654435761u >> 13);
		else if (at >= cur.pos && at < cur.pos + cur.len)
			buf[i] = cur.bytes[at - cur.pos];
	}
}

static struct patch le32_at(uint64_t pos, uint32_t v)
{
	struct patch pt = { .pos = pos, .len = 4 };
	mfd__put_le32(pt.bytes, v);
	return pt;
}

static struct patch le64_at(uint64_t pos, uint64_t v)
{
	struct patch pt = { .pos = pos, .len = 8 };
	mfd__put_le64(pt.bytes, v);
	return pt;
}

static void run_case(struct patch pt, int expect)
{
	struct tvm vm = { 0 };
	const char *kv[] = { "channels=2", "verify=on", "io-timeout=5s", NULL };
	tvm_config(&vm, kv);
	tvm_add_block(&vm, "pc.ram", RAM, 4096);
	tvm_fill_random(vm.blocks[0].src, RAM, seed);
	uint64_t before = tvm_hash(vm.blocks[0].src, RAM);
	tvm_start_dest(&vm);

	cur = pt;
	struct tvm_proxy proxy = { .damage = damage };
	tvm_proxy_start(&proxy, vm.uri, 3);
	int dret = 0;
	int ret = tvm_migrate(&vm, proxy.listen_uri, &dret);
	tvm_proxy_stop(&proxy);

	printf("# case at %llu: source %d (%s), destination %d (%s)\n",
	       (unsigned long long)pt.pos, ret, mfd_strerror(ret), dret,
	       mfd_strerror(dret));
	if (expect)
		assert_int_equal(dret, expect);
	else
		assert_true(dret < 0);
	/* The source reports the destination's reason. */
	assert_int_equal(ret, dret);
	assert_int_equal(vm.loaded, 0);
	assert_int_equal(vm.failed, 1);
	assert_int_equal(vm.failed_err, dret);
	/* Usually round 0 fails and the guest is never stopped; a small VM
	 * may reach switchover first, and then it must run again. Either way
	 * its memory is as it was. */
	assert_true(vm.stopped <= 1);
	assert_int_equal(vm.resumed, vm.stopped);
	assert_true(tvm_hash(vm.blocks[0].src, RAM) == before);
	mfd_stats st;
	mfd_source_get_stats(vm.src, &st, sizeof(st));
	assert_int_equal(st.phase, MFD_PHASE_FAILED);
	assert_int_equal(st.error, ret);
	tvm_destroy(&vm);
}

static void test_bad_magic(void **s)
{
	run_case(le32_at(HDR + 0, 0x21212121), MFD_EBADMAGIC);
}
static void test_bad_type(void **s)
{
	struct patch p = { .pos = HDR + 4, .bytes = { 9, 0 }, .len = 2 };
	run_case(p, MFD_ETYPE);
}
static void test_bad_flags(void **s)
{
	struct patch p = { .pos = HDR + 6, .bytes = { 1, 0 }, .len = 2 };
	run_case(p, MFD_EFLAGS);
}
static void test_bad_round(void **s)
{
	run_case(le32_at(HDR + 8, 5), MFD_EROUND);
}
static void test_bad_block(void **s)
{
	run_case(le32_at(HDR + 12, 7), MFD_EBLOCK);
}
static void test_oversized_count(void **s)
{
	run_case(le32_at(HDR + 16, 5000), MFD_ECOUNT);
}
static void test_zero_count(void **s)
{
	run_case(le32_at(HDR + 16, 0), MFD_ECOUNT);
}
static void test_length_mismatch(void **s)
{
	run_case(le32_at(HDR + 24, 4096 * 128 - 1), MFD_ELENGTH);
}
static void test_bad_seq(void **s)
{
	run_case(le32_at(HDR + 28, 3), MFD_EROUND);
}
static void test_unaligned_offset(void **s)
{
	run_case(le64_at(OFFS, 1), MFD_EOFFSET);
}
static void test_offset_out_of_range(void **s)
{
	/* The last offset of the first packet points just past the block. */
	run_case(le64_at(OFFS + 127 * 8, RAM), MFD_EOFFSET);
}
static void test_offset_far_out(void **s)
{
	run_case(le64_at(OFFS + 127 * 8, 1ULL << 62), MFD_EOFFSET);
}
static void test_duplicate_offset(void **s)
{
	run_case(le64_at(OFFS + 8, 0), MFD_EOFFSET);
}
static void test_garbage(void **s)
{
	struct patch p = { .pos = HDR, .garbage = true };
	run_case(p, 0);
}

/* A stranger that connects first and says nonsense is refused; the real
 * migration that follows is not disturbed. */
static void test_stranger_refused(void **s)
{
	struct tvm vm = { 0 };
	const char *kv[] = { "channels=2", "verify=on", NULL };
	tvm_config(&vm, kv);
	tvm_add_block(&vm, "pc.ram", RAM, 4096);
	tvm_fill_random(vm.blocks[0].src, RAM, seed + 1);
	tvm_start_dest(&vm);
	unsigned port;
	assert_int_equal(sscanf(vm.uri, "tcp:127.0.0.1:%u", &port), 1);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	char junk[MFD_HELLO_SIZE];
	memset(junk, 'G', sizeof(junk));
	assert_int_equal(write(fd, junk, sizeof(junk)), sizeof(junk));
	uint8_t reply[MFD_HELLO_REPLY_SIZE];
	assert_int_equal(read(fd, reply, sizeof(reply)), sizeof(reply));
	struct mfd_hello_reply r;
	mfd__hello_reply_decode(reply, &r);
	assert_int_equal(r.status, 1);
	assert_int_equal(r.error, MFD_EBADMAGIC);
	close(fd);
	int dret = -1;
	assert_int_equal(tvm_migrate(&vm, NULL, &dret), 0);
	assert_int_equal(dret, 0);
	assert_true(tvm_equal(&vm));
	tvm_destroy(&vm);
}

int main(void)
{
	tvm_io_engine("test_hostile");
	seed = tvm_seed("test_hostile");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_magic),
		cmocka_unit_test(test_bad_type),
		cmocka_unit_test(test_bad_flags),
		cmocka_unit_test(test_bad_round),
		cmocka_unit_test(test_bad_block),
		cmocka_unit_test(test_oversized_count),
		cmocka_unit_test(test_zero_count),
		cmocka_unit_test(test_length_mismatch),
		cmocka_unit_test(test_bad_seq),
		cmocka_unit_test(test_unaligned_offset),
		cmocka_unit_test(test_offset_out_of_range),
		cmocka_unit_test(test_offset_far_out),
		cmocka_unit_test(test_duplicate_offset),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_stranger_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
