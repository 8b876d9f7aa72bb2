/* SPDX-License-Identifier: MIT */
/* The simulated device: deterministic, checkable state; pre-copy
 * accounting; restore cost; DMA writes reported through the dirty log. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "devstate/simdev.h"

static struct mfd_simdev *mk(uint64_t size, double pre, uint64_t seed)
{
	struct mfd_simdev_cfg c = { .state_size = size,
				    .unit_size = 4096,
				    .precopy_fraction = pre,
				    .seed = seed };
	struct mfd_simdev *d;
	assert_int_equal(mfd_simdev_new(&d, &c), 0);
	return d;
}

static int go(struct mfd_simdev *d, int s)
{
	return mfd_simdev_ops(d)->set_state(d, s);
}

/* Reads everything save() gives in the current phase, in odd sizes. */
static size_t drain(struct mfd_simdev *d, uint8_t *buf, size_t cap)
{
	size_t n = 0, step = 777;
	for (;;) {
		size_t want = cap - n < step ? cap - n : step;
		ssize_t r = mfd_simdev_ops(d)->save(d, buf + n, want);
		assert_true(r >= 0);
		if (r == 0)
			return n;
		n += (size_t)r;
		step = step * 3 % 10007 + 1;
	}
}

static void test_deterministic_stream(void **state)
{
	const uint64_t size = 100000; /* last unit is short */
	size_t cap = 4 * size;
	uint8_t *a = malloc(cap), *b = malloc(cap);
	struct mfd_simdev *x = mk(size, 0.5, 42), *y = mk(size, 0.5, 42);
	size_t na = 0, nb = 0;
	struct mfd_simdev *devs[2] = { x, y };
	uint8_t *bufs[2] = { a, b };
	size_t *ns[2] = { &na, &nb };
	for (int i = 0; i < 2; i++) {
		struct mfd_simdev *d = devs[i];
		assert_int_equal(go(d, MFD_DEV_PRE_COPY), 0);
		*ns[i] += drain(d, bufs[i] + *ns[i], cap - *ns[i]);
		mfd_simdev_touch(d, 5);
		uint64_t init, dirty;
		assert_int_equal(
			mfd_simdev_ops(d)->get_precopy_info(d, &init, &dirty),
			0);
		assert_int_equal(init, 0);
		*ns[i] += drain(d, bufs[i] + *ns[i], cap - *ns[i]);
		assert_int_equal(go(d, MFD_DEV_PRE_COPY_P2P), 0);
		assert_int_equal(go(d, MFD_DEV_STOP_COPY), 0);
		*ns[i] += drain(d, bufs[i] + *ns[i], cap - *ns[i]);
	}
	assert_int_equal(na, nb);
	assert_memory_equal(a, b, na);
	assert_int_equal(mfd_simdev_digest(x), mfd_simdev_digest(y));

	/* A destination loads it in other pieces and checks every byte. */
	struct mfd_simdev *z = mk(size, 0.5, 42);
	assert_int_equal(go(z, MFD_DEV_RUNNING_P2P), 0);
	assert_int_equal(go(z, MFD_DEV_STOP), 0);
	assert_int_equal(go(z, MFD_DEV_RESUMING), 0);
	for (size_t off = 0; off < na;) {
		size_t k = na - off < 5000 ? na - off : 5000;
		assert_int_equal(mfd_simdev_ops(z)->load(z, a + off, k), 0);
		off += k;
	}
	assert_int_equal(go(z, MFD_DEV_STOP), 0);
	assert_int_equal(mfd_simdev_digest(z), mfd_simdev_digest(x));
	for (uint32_t u = 0; u < mfd_simdev_units(x); u++)
		assert_int_equal(mfd_simdev_version(z, u),
				 mfd_simdev_version(x, u));

	/* Another seed gives another state. */
	struct mfd_simdev *w = mk(size, 0.5, 43);
	assert_int_not_equal(mfd_simdev_digest(w), mfd_simdev_digest(x));
	mfd_simdev_free(w);
	mfd_simdev_free(x);
	mfd_simdev_free(y);
	mfd_simdev_free(z);
	free(a);
	free(b);
}

static void test_precopy_accounting(void **state)
{
	struct mfd_simdev *d = mk(64 * 4096, 0.25, 7);
	const mfd_device_ops *ops = mfd_simdev_ops(d);
	uint64_t init, dirty;
	assert_int_equal(ops->get_precopy_info(d, &init, &dirty), -EINVAL);
	assert_int_equal(go(d, MFD_DEV_PRE_COPY), 0);
	assert_int_equal(ops->get_precopy_info(d, &init, &dirty), 0);
	assert_int_equal(init, 16 * (4096 + 16));
	assert_int_equal(dirty, 0);
	uint8_t *buf = malloc(1 << 20);
	size_t n = drain(d, buf, 1 << 20);
	assert_int_equal(n, init);
	assert_int_equal(ops->get_precopy_info(d, &init, &dirty), 0);
	assert_int_equal(init + dirty, 0);
	/* The rest goes in STOP_COPY: everything not yet sent. */
	assert_int_equal(go(d, MFD_DEV_PRE_COPY_P2P), 0);
	assert_int_equal(go(d, MFD_DEV_STOP_COPY), 0);
	n = drain(d, buf, 1 << 20);
	assert_int_equal(n, 48 * (4096 + 16));
	/* Illegal arc refused like a kernel driver would. */
	assert_int_equal(go(d, MFD_DEV_RUNNING), -EINVAL);
	free(buf);
	mfd_simdev_free(d);
}

static void test_load_checks(void **state)
{
	const uint64_t size = 8 * 4096;
	struct mfd_simdev *s = mk(size, 0, 9);
	uint8_t *buf = malloc(1 << 20);
	assert_int_equal(go(s, MFD_DEV_RUNNING_P2P), 0);
	assert_int_equal(go(s, MFD_DEV_STOP), 0);
	assert_int_equal(go(s, MFD_DEV_STOP_COPY), 0);
	size_t n = drain(s, buf, 1 << 20);
	assert_int_equal(n, 8 * (4096 + 16));

	/* Corrupt one byte: load fails. */
	struct mfd_simdev *d = mk(size, 0, 9);
	assert_int_equal(go(d, MFD_DEV_RUNNING_P2P), 0);
	assert_int_equal(go(d, MFD_DEV_STOP), 0);
	assert_int_equal(go(d, MFD_DEV_RESUMING), 0);
	buf[5000] ^= 1;
	assert_int_equal(mfd_simdev_ops(d)->load(d, buf, n), -EINVAL);
	buf[5000] ^= 1;
	mfd_simdev_free(d);

	/* Incomplete: leaving RESUMING fails and the device is in ERROR. */
	d = mk(size, 0, 9);
	assert_int_equal(go(d, MFD_DEV_RUNNING_P2P), 0);
	assert_int_equal(go(d, MFD_DEV_STOP), 0);
	assert_int_equal(go(d, MFD_DEV_RESUMING), 0);
	assert_int_equal(mfd_simdev_ops(d)->load(d, buf, n - 10), 0);
	assert_int_equal(go(d, MFD_DEV_STOP), -EINVAL);
	assert_int_equal(mfd_simdev_state(d), MFD_DEV_ERROR);
	mfd_simdev_free(d);

	/* Restore cost: 8 records of 4 KiB at 200 ms/MiB take >= 6.4 ms. */
	struct mfd_simdev_cfg c = { .state_size = size,
				    .unit_size = 4096,
				    .seed = 9,
				    .load_ms_per_mib = 200 };
	assert_int_equal(mfd_simdev_new(&d, &c), 0);
	assert_int_equal(go(d, MFD_DEV_RUNNING_P2P), 0);
	assert_int_equal(go(d, MFD_DEV_STOP), 0);
	assert_int_equal(go(d, MFD_DEV_RESUMING), 0);
	assert_int_equal(mfd_simdev_ops(d)->load(d, buf, n), 0);
	assert_int_equal(go(d, MFD_DEV_STOP), 0);
	struct mfd_simdev_stats st;
	mfd_simdev_get_stats(d, &st);
	assert_true(st.load_ns >= (uint64_t)(200e6 * n / (1 << 20)));
	assert_int_equal(st.loaded_bytes, n);
	mfd_simdev_free(d);
	mfd_simdev_free(s);
	free(buf);
}

static void test_fail_save(void **state)
{
	struct mfd_simdev_cfg c = { .state_size = 1 << 20,
				    .fail_save_after = 100000 };
	struct mfd_simdev *d;
	assert_int_equal(mfd_simdev_new(&d, &c), 0);
	assert_int_equal(go(d, MFD_DEV_RUNNING_P2P), 0);
	assert_int_equal(go(d, MFD_DEV_STOP), 0);
	assert_int_equal(go(d, MFD_DEV_STOP_COPY), 0);
	uint8_t *buf = malloc(1 << 16);
	ssize_t r;
	while ((r = mfd_simdev_ops(d)->save(d, buf, 1 << 16)) > 0)
		;
	assert_int_equal(r, -EIO);
	free(buf);
	mfd_simdev_free(d);
}

struct marks {
	uint8_t *base;
	size_t size;
	uint8_t *seen; /* per page */
	unsigned n;
};
static int mark(void *ctx, void *host, uint64_t len)
{
	struct marks *m = ctx;
	uint8_t *p = host;
	assert_true(p >= m->base && p + len <= m->base + m->size);
	assert_int_equal(len, 4096);
	m->seen[(size_t)(p - m->base) / 4096] = 1;
	m->n++;
	return 0;
}

static void test_dma(void **state)
{
	const size_t size = 4 << 20;
	uint8_t *ram = calloc(1, size), *copy = malloc(size);
	struct mfd_simdev_cfg c = { .state_size = 1 << 16,
				    .seed = 5,
				    .dma_base = ram,
				    .dma_size = size,
				    .dma_rate = 200 << 20 };
	struct mfd_simdev *d;
	assert_int_equal(mfd_simdev_new(&d, &c), 0);
	const mfd_device_ops *ops = mfd_simdev_ops(d);
	assert_non_null(ops->dma_dirty);
	struct timespec ts = { 0, 50 * 1000000L };
	nanosleep(&ts, NULL);
	/* On a loaded machine the DMA thread may not have run yet: wait (up
	 * to 10 s) until it has written something. */
	for (int tries = 0; tries < 1000; tries++) {
		bool any = false;
		for (size_t i = 0; i < size && !any; i += 4096)
			for (size_t j = 0; j < 4096 && !any; j += 8)
				any = *(volatile uint64_t *)(ram + i + j) != 0;
		if (any)
			break;
		struct timespec t10 = { 0, 10 * 1000000L };
		nanosleep(&t10, NULL);
	}
	/* Stop the device: no DMA after this. */
	assert_int_equal(go(d, MFD_DEV_RUNNING_P2P), 0);
	assert_int_equal(go(d, MFD_DEV_STOP), 0);
	struct marks m = { ram, size, calloc(size / 4096, 1), 0 };
	assert_int_equal(ops->dma_dirty(d, mark, &m), 0);
	assert_true(m.n > 0);
	/* Every page that differs from zero was reported. */
	for (size_t pg = 0; pg < size / 4096; pg++) {
		bool nz = false;
		for (size_t i = 0; i < 4096 && !nz; i++)
			nz = ram[pg * 4096 + i] != 0;
		if (nz)
			assert_true(m.seen[pg]);
	}
	/* Stopped means stopped. */
	memcpy(copy, ram, size);
	nanosleep(&ts, NULL);
	assert_memory_equal(copy, ram, size);
	m.n = 0;
	assert_int_equal(ops->dma_dirty(d, mark, &m), 0);
	assert_int_equal(m.n, 0);
	mfd_simdev_free(d);
	free(m.seen);
	free(ram);
	free(copy);
}

/* get_stop_copy_size is exactly what STOP_COPY then sends: all of it
 * from RUNNING; the rest after pre-copy; the changed units after a touch;
 * 0 once drained. */
static void test_stop_copy_size(void **state)
{
	(void)state;
	const uint64_t size = 100000; /* 25 units, the last one short */
	size_t cap = 4 * size;
	uint8_t *buf = malloc(cap);
	struct mfd_simdev *d = mk(size, 0.5, 7);
	const mfd_device_ops *ops = mfd_simdev_ops(d);
	uint64_t n = 1;
	assert_int_equal(ops->get_stop_copy_size(d, &n), 0);
	assert_int_equal(n, size + 25 * 16);
	assert_int_equal(go(d, MFD_DEV_PRE_COPY), 0);
	size_t pre = drain(d, buf, cap);
	assert_true(pre > 0);
	assert_int_equal(ops->get_stop_copy_size(d, &n), 0);
	assert_int_equal(n, size + 25 * 16 - pre);
	mfd_simdev_touch(d, 3);
	uint64_t touched;
	assert_int_equal(ops->get_stop_copy_size(d, &touched), 0);
	assert_true(touched > n);
	assert_int_equal(go(d, MFD_DEV_PRE_COPY_P2P), 0);
	assert_int_equal(go(d, MFD_DEV_STOP_COPY), 0);
	assert_int_equal(ops->get_stop_copy_size(d, &n), 0);
	assert_int_equal(n, touched);
	assert_int_equal(drain(d, buf, cap), touched);
	assert_int_equal(ops->get_stop_copy_size(d, &n), 0);
	assert_int_equal(n, 0);
	mfd_simdev_free(d);
	free(buf);
}

/* A record copied aside in PRE_COPY (its unit changed while it was being
 * sent) ends in STOP_COPY through save_iov() in a call of its own, with
 * nothing inside the state memory: loading it writes where the unit's new
 * version is placed later, so it must not share a placed chunk (device.h,
 * save_iov; the fence of protocol 9.2.1). */
static void test_save_iov_aside_alone(void **state)
{
	(void)state;
	const uint64_t size = 4096; /* one unit: every touch changes it */
	struct mfd_simdev *d = mk(size, 1.0, 11);
	const mfd_device_ops *ops = mfd_simdev_ops(d);
	void *basev;
	uint64_t msize;
	assert_int_equal(ops->state_mem(d, &basev, &msize), 0);
	const uint8_t *base = basev;
	assert_int_equal(go(d, MFD_DEV_PRE_COPY), 0);
	uint8_t part[100];
	assert_int_equal(ops->save(d, part, sizeof(part)), sizeof(part));
	mfd_simdev_touch(d, 1); /* the record's unit: copied aside */
	assert_int_equal(go(d, MFD_DEV_PRE_COPY_P2P), 0);
	assert_int_equal(go(d, MFD_DEV_STOP_COPY), 0);
	struct iovec iov[16];
	int cnt = 16;
	ssize_t n = ops->save_iov(d, iov, &cnt, 1 << 20);
	/* Exactly the rest of the old record, all of it outside memory. */
	assert_int_equal(n, 16 + 4096 - 100);
	for (int i = 0; i < cnt; i++)
		assert_true((const uint8_t *)iov[i].iov_base + iov[i].iov_len <=
				    base ||
			    (const uint8_t *)iov[i].iov_base >= base + msize);
	/* Then the new version: its header, and its bytes in place. */
	cnt = 16;
	n = ops->save_iov(d, iov, &cnt, 1 << 20);
	assert_int_equal(n, 16 + 4096);
	assert_int_equal(cnt, 2);
	assert_ptr_equal(iov[1].iov_base, base);
	cnt = 16;
	assert_int_equal(ops->save_iov(d, iov, &cnt, 1 << 20), 0);
	mfd_simdev_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_deterministic_stream),
		cmocka_unit_test(test_precopy_accounting),
		cmocka_unit_test(test_load_checks),
		cmocka_unit_test(test_fail_save),
		cmocka_unit_test(test_dma),
		cmocka_unit_test(test_stop_copy_size),
		cmocka_unit_test(test_save_iov_aside_alone),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
