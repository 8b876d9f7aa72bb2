/* SPDX-License-Identifier: MIT */
/* The bench's simulated guest (bench/guest.c): its work rate during a
 * migration is the same quantity in pre-copy and post-copy (the window
 * computation), and what a migration does to a guest lowers it: a
 * throttle's sleep, and writes that block on missing pages (post-copy
 * faults), never raise it. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "bench/guest.h"
#include "bench/vm.h"
#include "ramblock/uffd.h"

#define MiB (1024ULL * 1024)
#define S   1000000000ULL

static void test_span_precopy(void **state)
{
	(void)state;
	/* Ran 2 s until the stop, did 200: 100 a second. What it did after
	 * the stop (parked) does not count. */
	struct guest_span s = { .start_ns = 1 * S,
				.stop_ns = 3 * S,
				.end_ns = 9 * S,
				.work_start = 1000,
				.work_stop = 1200,
				.work_end = 1200 };
	assert_true(guest_span_rate(&s) == 100.0);
	/* Never stopped (a failed migration): until the end. */
	s.stop_ns = 0;
	s.end_ns = 5 * S;
	s.work_end = 1400;
	assert_true(guest_span_rate(&s) == 100.0);
}

static void test_span_postcopy(void **state)
{
	(void)state;
	/* 2 s before the stop (200), parked 0.5 s (downtime: counts in
	 * neither), then 2 s on the destination (100): 300 in 4 s. */
	struct guest_span s = { .start_ns = 1 * S,
				.stop_ns = 3 * S,
				.run_ns = 3 * S + S / 2,
				.end_ns = 5 * S + S / 2,
				.work_start = 0,
				.work_stop = 200,
				.work_run = 200,
				.work_end = 300 };
	assert_true(guest_span_rate(&s) == 75.0);
	/* Inconsistent windows give 0, not a huge or negative rate. */
	s.run_ns = 2 * S; /* before the stop */
	assert_true(guest_span_rate(&s) == 0.0);
	s.run_ns = 3 * S + S / 2;
	s.work_end = 100; /* work went backwards */
	assert_true(guest_span_rate(&s) == 0.0);
	s.work_end = 300;
	s.stop_ns = s.start_ns; /* empty first part */
	assert_true(guest_span_rate(&s) == 0.0);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * S + (uint64_t)ts.tv_nsec;
}

/* Work per second over ms milliseconds. */
static double rate(struct guest *g, unsigned ms)
{
	uint64_t w0 = guest_work(g), t0 = now_ns();
	usleep(ms * 1000u);
	return (double)(guest_work(g) - w0) * 1e9 / (double)(now_ns() - t0);
}

struct tvm {
	struct vm vm;
	struct vm_block blk;
};

static void tvm_init(struct tvm *t, uint64_t bytes)
{
	memset(t, 0, sizeof(*t));
	t->vm.ram_bytes = bytes;
	t->vm.page_size = 4096;
	t->vm.nblocks = 1;
	t->vm.blocks = &t->blk;
	t->blk = (struct vm_block){ .name = "pc.ram", .size = bytes };
	t->vm.src = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	t->vm.dst = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(t->vm.src != MAP_FAILED && t->vm.dst != MAP_FAILED);
	memset(t->vm.src, 0x5a, bytes);
}

static void tvm_free(struct tvm *t)
{
	munmap(t->vm.src, t->vm.ram_bytes);
	munmap(t->vm.dst, t->vm.ram_bytes);
}

/* A throttle of 90 % (sleep 90 ms after each 10 ms slice, as QEMU's
 * cpu-throttle) takes at least half of the guest's work rate away: it
 * used to show as a speed-up when the throttled writers found the CPU
 * idle. */
static void test_throttle_lowers_rate(void **state)
{
	(void)state;
	struct tvm t;
	struct guest *g = NULL;
	struct guest_opts o = { .writers = 2,
				.dirty_mbps = 8,
				.pattern = GUEST_UNIFORM,
				.hot_fraction = 0.1,
				.load_pct = 25 };

	tvm_init(&t, 8 * MiB);
	assert_int_equal(guest_start(&g, &o, &t.vm), 0);
	usleep(50000);
	double free_rate = rate(g, 500);
	guest_throttle(g, 90);
	usleep(150000); /* the slices under way end */
	double slow = rate(g, 500);
	double nominal = guest_nominal_rate(g, false);
	guest_throttle(g, 0);
	guest_stop(g);
	tvm_free(&t);
	printf("nominal %.0f/s, free %.0f/s, throttled 90%%: %.0f/s\n", nominal,
	       free_rate, slow);
	/* Nothing makes the guest faster than its demand (the window's
	 * edges cut a slice of each writer: a few percent). */
	assert_true(free_rate > 0 && free_rate < 1.1 * nominal);
	assert_true(slow < 0.5 * free_rate);
}

/* A page server for the destination RAM: every fault waits delay_ms, then
 * the page is placed (the source's bytes). */
struct server {
	struct mfd__uffd_missing u;
	struct tvm *t;
	unsigned delay_ms;
	int quit;
	uint64_t served;
	pthread_t th;
};

static void *serve(void *arg)
{
	struct server *s = arg;
	while (!__atomic_load_n(&s->quit, __ATOMIC_ACQUIRE)) {
		uint64_t addr;
		int r = mfd__uffd_next_fault(&s->u, &addr, 20);
		if (r <= 0)
			continue;
		addr &= ~4095ULL;
		usleep(s->delay_ms * 1000u);
		uint64_t off = addr - (uint64_t)(uintptr_t)s->t->vm.dst;
		(void)mfd__uffd_place(&s->u, (void *)(uintptr_t)addr,
				      s->t->vm.src + off, 4096);
		s->served++;
	}
	return NULL;
}

/* Post-copy: the guest's writes block on pages not there yet. Each such
 * write stalls its writer's slice, so the rate falls. */
static void test_faults_lower_rate(void **state)
{
	(void)state;
	struct tvm t;
	struct server s = { .delay_ms = 2 };
	struct guest *g = NULL;
	/* 2 writers, 12.5 writes a slice each, to pages of 64 MiB. */
	struct guest_opts o = { .writers = 2,
				.dirty_mbps = 10,
				.pattern = GUEST_UNIFORM,
				.hot_fraction = 0.1,
				.load_pct = 25 };

	tvm_init(&t, 64 * MiB);
	s.t = &t;
	int err = mfd__uffd_missing_open(&s.u);
	if (err == -ENOTSUP || err == -EPERM || err == -ENOSYS) {
		tvm_free(&t);
		skip();
	}
	assert_int_equal(err, 0);
	assert_int_equal(
		mfd__uffd_missing_register(&s.u, t.vm.dst, t.vm.ram_bytes), 0);
	assert_int_equal(pthread_create(&s.th, NULL, serve, &s), 0);

	assert_int_equal(guest_start(&g, &o, &t.vm), 0);
	usleep(50000);
	double free_rate = rate(g, 500);
	guest_pause(g);
	guest_set_ram(g, t.vm.dst);
	guest_resume(g);
	double faulting = rate(g, 500);
	double nominal = guest_nominal_rate(g, false);
	/* The writers may be waiting on a page: stop them while the
	 * server still answers. */
	guest_stop(g);
	__atomic_store_n(&s.quit, 1, __ATOMIC_RELEASE);
	pthread_join(s.th, NULL);
	mfd__uffd_missing_unregister(&s.u, t.vm.dst, t.vm.ram_bytes);
	mfd__uffd_missing_close(&s.u);
	tvm_free(&t);
	printf("nominal %.0f/s, free %.0f/s, faulting: %.0f/s (%llu pages "
	       "served)\n",
	       nominal, free_rate, faulting, (unsigned long long)s.served);
	assert_true(s.served > 0);
	assert_true(free_rate < 1.1 * nominal);
	assert_true(faulting < 0.7 * free_rate);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_span_precopy),
		cmocka_unit_test(test_span_postcopy),
		cmocka_unit_test(test_throttle_lowers_rate),
		cmocka_unit_test(test_faults_lower_rate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
