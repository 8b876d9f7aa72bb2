/* SPDX-License-Identifier: MIT */
/*
 * Verification catches a page that arrives wrong. One page of the source
 * holds a marker; a proxy flips one byte of it inside a valid PAGES packet
 * (headers and offsets untouched), or a destination-side test hook
 * (mfd__test_dest_placed) changes it after it was placed. With verify on,
 * the destination must answer MFD_EVERIFY, never call its loaded hook, and
 * the source must report MFD_EVERIFY and resume its stopped guest. With
 * verify off the same damage goes through unnoticed: the damage is real,
 * and it is the digest comparison that stops it.
 *
 * Device state has no digest of its own (docs/protocol.md: END carries
 * per-block RAM digests only); a device validates what it was given when
 * it enters STOP (test_devices), so there is no device case here.
 * Last, the digest's helper threads' CPU time reaches cpu_ns.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "multifd/internal.h"
#include "testvm.h"

#define MiB	 (1024UL * 1024)
#define RAM	 (8 * MiB)
#define PAGE	 4096UL
#define MARK_PG	 300
#define MARK	 0x4b52414d4b52414dULL
#define FLIP_BIT 0x10

static uint64_t seed;
static int flips; /* atomic */

/* Flips one byte of the first marker seen on a data channel, once. */
static void flip_marker(struct tvm_proxy *p, unsigned conn, uint64_t pos,
			uint8_t *buf, size_t len)
{
	if (conn == 0)
		return;
	for (size_t i = 0; i + 8 <= len; i++) {
		uint64_t v;
		memcpy(&v, buf + i, 8);
		if (v == MARK) {
			if (__atomic_fetch_add(&flips, 1, __ATOMIC_RELAXED))
				return;
			buf[i + 3] ^= FLIP_BIT;
			return;
		}
	}
}

static void change_placed(unsigned block, uint8_t *host, uint64_t size)
{
	if (block == 0 && size > MARK_PG * PAGE) {
		host[MARK_PG * PAGE + 100] ^= FLIP_BIT;
		__atomic_fetch_add(&flips, 1, __ATOMIC_RELAXED);
	}
}

enum how { PROXY, HOOK };

static void run(enum how how, bool verify)
{
	struct tvm vm = { 0 };
	const char *kv[] = { "channels=2", verify ? "verify=on" : "verify=off",
			     "io-timeout=10s", NULL };
	tvm_config(&vm, kv);
	tvm_add_block(&vm, "pc.ram", RAM, PAGE);
	tvm_fill_random(vm.blocks[0].src, RAM, seed);
	uint64_t *mark = (uint64_t *)(vm.blocks[0].src + MARK_PG * PAGE);
	for (size_t i = 0; i < PAGE / 8; i++)
		mark[i] = MARK;
	uint64_t before = tvm_hash(vm.blocks[0].src, RAM);
	tvm_start_dest(&vm);

	__atomic_store_n(&flips, 0, __ATOMIC_RELAXED);
	struct tvm_proxy proxy = { .damage = flip_marker };
	int dret = 0, ret;
	if (how == PROXY) {
		tvm_proxy_start(&proxy, vm.uri, 3);
		ret = tvm_migrate(&vm, proxy.listen_uri, &dret);
		tvm_proxy_stop(&proxy);
	} else {
		mfd__test_dest_placed = change_placed;
		ret = tvm_migrate(&vm, NULL, &dret);
		mfd__test_dest_placed = NULL;
	}
	printf("# %s, verify %s: source %d (%s), destination %d (%s)\n",
	       how == PROXY ? "proxy" : "hook", verify ? "on" : "off", ret,
	       mfd_strerror(ret), dret, mfd_strerror(dret));
	/* The damage happened, exactly once. */
	assert_int_equal(__atomic_load_n(&flips, __ATOMIC_RELAXED), 1);
	assert_int_equal(vm.stopped, 1);
	if (verify) {
		assert_int_equal(dret, MFD_EVERIFY);
		assert_int_equal(ret, MFD_EVERIFY);
		assert_int_equal(vm.loaded, 0);
		assert_int_equal(vm.failed, 1);
		assert_int_equal(vm.failed_err, MFD_EVERIFY);
		/* The guest runs on at the source, its memory untouched. */
		assert_int_equal(vm.resumed, 1);
		assert_true(tvm_hash(vm.blocks[0].src, RAM) == before);
		mfd_stats st;
		mfd_source_get_stats(vm.src, &st, sizeof(st));
		assert_int_equal(st.phase, MFD_PHASE_FAILED);
		assert_int_equal(st.error, MFD_EVERIFY);
	} else {
		assert_int_equal(ret, 0);
		assert_int_equal(dret, 0);
		assert_int_equal(vm.loaded, 1);
		assert_int_equal(vm.resumed, 0);
		/* Only one byte differs, by the flipped bit, in the
		 * marker page. */
		assert_false(tvm_equal(&vm));
		uint8_t *d = vm.blocks[0].dst, *s = vm.blocks[0].src;
		size_t ndiff = 0, at = 0;
		for (size_t i = 0; i < RAM; i++)
			if (d[i] != s[i]) {
				ndiff++;
				at = i;
			}
		assert_int_equal(ndiff, 1);
		assert_int_equal(at / PAGE, MARK_PG);
		assert_int_equal(d[at] ^ s[at], FLIP_BIT);
	}
	tvm_destroy(&vm);
}

static void test_flip_in_flight(void **s)
{
	run(PROXY, true);
}
static void test_flip_in_flight_unverified(void **s)
{
	run(PROXY, false);
}
static void test_changed_after_placing(void **s)
{
	run(HOOK, true);
}
static void test_changed_after_placing_unverified(void **s)
{
	run(HOOK, false);
}

/* The parallel digest's helper threads count in cpu_ns: their CPU time is
 * handed back to the caller, which adds it to its side's total. */
static void test_digest_helpers_counted(void **s)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (cpus < 2) {
		print_message(
			"skipped: one CPU, the digest starts no helper\n");
		skip();
	}
	struct mfd__ramblock rb = { .size = 8 * MFD_DIGEST_CHUNK,
				    .page_size = PAGE };
	rb.host = tvm_map(rb.size);
	tvm_fill_random(rb.host, rb.size, seed);
	uint8_t out[1][MFD_DIGEST_SIZE], again[1][MFD_DIGEST_SIZE];
	uint64_t cpu = 0;
	assert_int_equal(mfd__digest_blocks(&rb, 1, out, &cpu), 0);
	/* Helpers started and hashed: some of their CPU time came back. */
	assert_true(cpu > 0);
	/* NULL is allowed, and the digest does not depend on the split. */
	assert_int_equal(mfd__digest_blocks(&rb, 1, again, NULL), 0);
	assert_memory_equal(out, again, MFD_DIGEST_SIZE);
	tvm_unmap(rb.host, rb.size);
}

int main(void)
{
	tvm_io_engine("test_verify");
	seed = tvm_seed("test_verify");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flip_in_flight),
		cmocka_unit_test(test_flip_in_flight_unverified),
		cmocka_unit_test(test_changed_after_placing),
		cmocka_unit_test(test_changed_after_placing_unverified),
		cmocka_unit_test(test_digest_helpers_counted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
