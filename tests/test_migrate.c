/* SPDX-License-Identifier: MIT */
/* End-to-end migrations over loopback TCP: destination identical byte for
 * byte, with 1, 2 and 4 channels and with several RAM blocks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "testvm.h"

#define MiB (1024UL * 1024)

static uint64_t seed;

static void migrate_one_block(unsigned channels)
{
	struct tvm vm = { 0 };
	char ch[32];
	snprintf(ch, sizeof(ch), "channels=%u", channels);
	const char *kv[] = { ch, "verify=on", NULL };
	tvm_config(&vm, kv);
	tvm_add_block(&vm, "pc.ram", 256 * MiB, 4096);
	tvm_fill_random(vm.blocks[0].src, 256 * MiB, seed + channels);
	uint64_t before = tvm_hash(vm.blocks[0].src, 256 * MiB);

	int dret = -1;
	int ret = tvm_migrate(&vm, NULL, &dret);
	assert_int_equal(ret, 0);
	assert_int_equal(dret, 0);
	assert_true(tvm_equal(&vm));
	assert_int_equal(vm.stopped, 1);
	assert_int_equal(vm.resumed, 0);
	assert_int_equal(vm.loaded, 1);
	assert_int_equal(vm.failed, 0);
	/* The source only reads guest memory. */
	assert_true(tvm_hash(vm.blocks[0].src, 256 * MiB) == before);

	mfd_stats s, d;
	assert_int_equal(mfd_source_get_stats(vm.src, &s, sizeof(s)), 0);
	assert_int_equal(mfd_dest_get_stats(vm.dst, &d, sizeof(d)), 0);
	assert_int_equal(s.phase, MFD_PHASE_COMPLETED);
	assert_int_equal(d.phase, MFD_PHASE_COMPLETED);
	assert_int_equal(s.channels, channels);
	assert_int_equal(d.channels, channels);
	assert_true(s.pages >= 256 * MiB / 4096);
	assert_int_equal(s.pages, d.pages);
	assert_int_equal(s.wire_bytes, d.wire_bytes);
	assert_true(s.downtime_ns > 0);
	assert_true(s.total_ns >= s.downtime_ns);
	tvm_destroy(&vm);
}

static void test_one_channel(void **state)
{
	migrate_one_block(1);
}
static void test_two_channels(void **state)
{
	migrate_one_block(2);
}
static void test_four_channels(void **state)
{
	migrate_one_block(4);
}

static void test_several_blocks(void **state)
{
	struct tvm vm = { 0 };
	const char *kv[] = { "channels=3", "verify=on", "packet-pages=64",
			     NULL };
	tvm_config(&vm, kv);
	/* Sizes that are not multiples of a packet or of 64 pages, and a
	 * block with 2 MiB pages. */
	tvm_add_block(&vm, "pc.ram", 96 * MiB + 4096 * 3, 4096);
	tvm_add_block(&vm, "vga.vram", 4 * MiB + 4096, 4096);
	tvm_add_block(&vm, "pc.bios", 4096, 4096);
	tvm_add_block(&vm, "mem1", 16 * MiB, 2 * MiB);
	for (unsigned i = 0; i < vm.nblocks; i++)
		tvm_fill_random(vm.blocks[i].src, vm.blocks[i].size,
				seed * 31 + i);
	int dret = -1;
	assert_int_equal(tvm_migrate(&vm, NULL, &dret), 0);
	assert_int_equal(dret, 0);
	assert_true(tvm_equal(&vm));
	tvm_destroy(&vm);
}

static void test_layout_mismatch(void **state)
{
	/* A destination with a different block list refuses the setup and
	 * both sides say why; nothing is written. */
	struct tvm vm = { 0 };
	tvm_config(&vm, NULL);
	tvm_add_block(&vm, "pc.ram", 8 * MiB, 4096);
	tvm_fill_random(vm.blocks[0].src, 8 * MiB, seed);
	mfd_dest_hooks dh = { 0 };
	assert_int_equal(mfd_dest_new(&vm.dst, vm.cfg, &dh), 0);
	assert_int_equal(mfd_dest_add_block(vm.dst, "pc.ram", vm.blocks[0].dst,
					    4 * MiB, 4096),
			 0);
	assert_int_equal(mfd_dest_start(vm.dst, "tcp:127.0.0.1:0"), 0);
	assert_int_equal(mfd_dest_get_uri(vm.dst, vm.uri, sizeof(vm.uri)), 0);
	int dret = 0;
	assert_int_equal(tvm_migrate(&vm, NULL, &dret), MFD_ESETUP);
	assert_int_equal(dret, MFD_ESETUP);
	assert_int_equal(vm.stopped, 0);
	uint8_t zero[4096] = { 0 };
	assert_memory_equal(vm.blocks[0].dst, zero, sizeof(zero));
	tvm_destroy(&vm);
}

static int h_stop(void *o)
{
	((struct tvm *)o)->stopped++;
	return 0;
}
static int h_resume(void *o)
{
	((struct tvm *)o)->resumed++;
	return 0;
}

static void test_nobody_listening(void **state)
{
	/* Port 1 on loopback: refused at once, the guest never stopped. */
	struct tvm vm = { 0 };
	const char *kv[] = { "connect-timeout=2s", NULL };
	tvm_config(&vm, kv);
	tvm_add_block(&vm, "pc.ram", 1 * MiB, 4096);
	mfd_source_hooks sh = { .opaque = &vm,
				.stop = h_stop,
				.resume = h_resume };
	assert_int_equal(mfd_source_new(&vm.src, vm.cfg, &sh), 0);
	assert_int_equal(mfd_source_add_block(vm.src, "pc.ram",
					      vm.blocks[0].src, 1 * MiB, 4096),
			 0);
	assert_int_equal(mfd_source_migrate(vm.src, "tcp:127.0.0.1:1"),
			 -ECONNREFUSED);
	assert_int_equal(vm.stopped, 0);
	mfd_stats st;
	mfd_source_get_stats(vm.src, &st, sizeof(st));
	assert_int_equal(st.phase, MFD_PHASE_FAILED);
	assert_true(st.total_ns < 2000000000ULL);
	tvm_destroy(&vm);
}

int main(void)
{
	tvm_io_engine("test_migrate");
	seed = tvm_seed("test_migrate");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_channel),
		cmocka_unit_test(test_two_channels),
		cmocka_unit_test(test_four_channels),
		cmocka_unit_test(test_several_blocks),
		cmocka_unit_test(test_layout_mismatch),
		cmocka_unit_test(test_nobody_listening),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
