/* SPDX-License-Identifier: MIT */
/*
 * Device state through the engine, with simulated devices (devstate/
 * simdev.c) on both sides: after a migration every device's state on the
 * destination equals the source's (the simdev checks every byte it loads
 * and its version vector is compared unit by unit), in both transfer
 * modes, while the devices DMA into guest RAM during pre-copy and the RAM
 * ends identical too. A device read error on the source fails the
 * migration with the guest and the devices running again; a reorder bound
 * smaller than the state forces back-pressure and still succeeds; a
 * DEVICE packet with a bad device index or an out-of-window sequence number
 * fails the migration with the right error; a channel reset while the
 * device state flows fails it with the guest and devices running again.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devstate/simdev.h"
#include "multifd/device.h"
#include "multifd/wire.h"
#include "testvm.h"

#define MiB  (1024UL * 1024)
#define RAM  (32 * MiB)
#define NDEV 3

static uint64_t seed;

struct rig {
	struct tvm vm;
	unsigned ndev;
	unsigned dst_ndev; /* devices the destination registers; 0: ndev */
	struct mfd_simdev *s[NDEV], *d[NDEV];
	int stopped, resumed, loaded, failed, failed_err;
};

struct devopts {
	uint64_t state;
	double precopy;
	uint64_t dirty_rate, dma_rate;
	uint64_t fail_after; /* source device 1 */
	double load_ms_per_mib;
	bool defer_check; /* destination: bytes checked after, not on load */
	/* No state_mem/load_segs on that side: plain chunks from the source,
	 * received into the reorder buffer and copied by load() on the
	 * destination. */
	bool src_no_placed, dst_no_placed;
};

static int h_stop(void *o)
{
	/* Atomic: a test's proxy thread may read it (reset_in_devstate). */
	__atomic_add_fetch(&((struct rig *)o)->stopped, 1, __ATOMIC_RELEASE);
	return 0;
}
static int h_resume(void *o)
{
	((struct rig *)o)->resumed++;
	return 0;
}
static int h_loaded(void *o)
{
	((struct rig *)o)->loaded++;
	return 0;
}
static void h_failed(void *o, int err)
{
	((struct rig *)o)->failed++;
	((struct rig *)o)->failed_err = err;
}

static struct mfd_simdev *mkdev(struct rig *r, unsigned i,
				const struct devopts *o, bool source)
{
	struct mfd_simdev_cfg c = {
		.state_size = o->state + i * 12345, /* not unit-aligned */
		.precopy_fraction = o->precopy,
		.seed = seed + i,
	};
	if (source) {
		c.dirty_rate = o->dirty_rate;
		c.dma_base = r->vm.blocks[0].src;
		c.dma_size = RAM;
		c.dma_rate = o->dma_rate;
		c.fail_save_after = i == 1 ? o->fail_after : 0;
		c.no_placed = o->src_no_placed;
	} else {
		c.no_placed = o->dst_no_placed;
		c.load_ms_per_mib = o->load_ms_per_mib;
		c.defer_check = o->defer_check;
	}
	struct mfd_simdev *d;
	assert_int_equal(mfd_simdev_new(&d, &c), 0);
	return d;
}

/* Migrates; proxy_uri (or NULL) is where the source connects. */
static int run(struct rig *r, const char *const *kv, const struct devopts *o,
	       struct tvm_proxy *proxy, int *dret)
{
	struct tvm *vm = &r->vm;
	char name[32];
	tvm_config(vm, kv);
	tvm_add_block(vm, "pc.ram", RAM, 4096);
	tvm_fill_random(vm->blocks[0].src, RAM, seed);
	for (unsigned i = 0; i < r->ndev; i++) {
		r->s[i] = mkdev(r, i, o, true);
		r->d[i] = mkdev(r, i, o, false);
	}
	mfd_dest_hooks dh = { .opaque = r,
			      .loaded = h_loaded,
			      .failed = h_failed };
	assert_int_equal(mfd_dest_new(&vm->dst, vm->cfg, &dh), 0);
	assert_int_equal(mfd_dest_add_block(vm->dst, "pc.ram",
					    vm->blocks[0].dst, RAM, 4096),
			 0);
	for (unsigned i = 0; i < (r->dst_ndev ? r->dst_ndev : r->ndev); i++) {
		snprintf(name, sizeof(name), "0000:00:%02x.0", i + 2);
		assert_int_equal(mfd_dest_add_device(vm->dst, name,
						     mfd_simdev_ops(r->d[i]),
						     r->d[i]),
				 0);
	}
	assert_int_equal(mfd_dest_start(vm->dst, "tcp:127.0.0.1:0"), 0);
	assert_int_equal(mfd_dest_get_uri(vm->dst, vm->uri, sizeof(vm->uri)),
			 0);
	mfd_source_hooks sh = { .opaque = r,
				.stop = h_stop,
				.resume = h_resume };
	assert_int_equal(mfd_source_new(&vm->src, vm->cfg, &sh), 0);
	assert_int_equal(mfd_source_add_block(vm->src, "pc.ram",
					      vm->blocks[0].src, RAM, 4096),
			 0);
	for (unsigned i = 0; i < r->ndev; i++) {
		snprintf(name, sizeof(name), "0000:00:%02x.0", i + 2);
		assert_int_equal(mfd_source_add_device(vm->src, name,
						       mfd_simdev_ops(r->s[i]),
						       r->s[i]),
				 0);
	}
	if (proxy)
		tvm_proxy_start(proxy, vm->uri, 2);
	int ret = mfd_source_migrate(vm->src,
				     proxy ? proxy->listen_uri : vm->uri);
	*dret = mfd_dest_wait(vm->dst);
	if (proxy)
		tvm_proxy_stop(proxy);
	printf("# source %d (%s), destination %d (%s)\n", ret,
	       mfd_strerror(ret), *dret, mfd_strerror(*dret));
	return ret;
}

static void rig_free(struct rig *r)
{
	/* The engine first: it may still hold the devices. */
	mfd_source_free(r->vm.src);
	mfd_dest_free(r->vm.dst);
	r->vm.src = NULL;
	r->vm.dst = NULL;
	for (unsigned i = 0; i < r->ndev; i++) {
		mfd_simdev_free(r->s[i]);
		mfd_simdev_free(r->d[i]);
	}
	tvm_destroy(&r->vm);
}

static void check_equal(struct rig *r)
{
	for (unsigned i = 0; i < r->ndev; i++) {
		assert_int_equal(mfd_simdev_state(r->s[i]), MFD_DEV_STOP);
		assert_int_equal(mfd_simdev_state(r->d[i]), MFD_DEV_STOP);
		uint32_t n = mfd_simdev_units(r->s[i]);
		assert_int_equal(mfd_simdev_units(r->d[i]), n);
		for (uint32_t u = 0; u < n; u++)
			assert_int_equal(mfd_simdev_version(r->d[i], u),
					 mfd_simdev_version(r->s[i], u));
		assert_true(mfd_simdev_digest(r->d[i]) ==
			    mfd_simdev_digest(r->s[i]));
		/* The device memory itself, byte for byte. */
		uint64_t ls, ld;
		const void *ms = mfd_simdev_mem(r->s[i], &ls);
		const void *md = mfd_simdev_mem(r->d[i], &ld);
		assert_int_equal(ls, ld);
		assert_memory_equal(ms, md, ls);
		assert_int_equal(mfd_simdev_check(r->d[i]), 0);
	}
	assert_true(tvm_equal(&r->vm));
}

/* Stream bytes the destination's devices took in place (load_segs). */
static uint64_t placed_bytes(struct rig *r, uint64_t *loaded)
{
	uint64_t p = 0, l = 0;
	for (unsigned i = 0; i < r->ndev; i++) {
		struct mfd_simdev_stats st;
		mfd_simdev_get_stats(r->d[i], &st);
		p += st.placed_bytes;
		l += st.loaded_bytes;
	}
	if (loaded)
		*loaded = l;
	return p;
}

static void migrate_ok(const char *mode, const char *channels)
{
	struct rig r = { .ndev = NDEV };
	char xfer[64], ch[32];
	snprintf(xfer, sizeof(xfer), "device-transfer=%s", mode);
	snprintf(ch, sizeof(ch), "channels=%s", channels);
	const char *kv[] = { xfer,
			     ch,
			     "verify=on",
			     "device-chunk-size=64K",
			     "downtime-limit=50",
			     NULL };
	struct devopts o = { .state = 3 * MiB,
			     .precopy = 0.5,
			     .dirty_rate = 2 * MiB,
			     .dma_rate = 16 * MiB };
	int dret;
	int ret = run(&r, kv, &o, NULL, &dret);
	assert_int_equal(ret, 0);
	assert_int_equal(dret, 0);
	assert_int_equal(r.loaded, 1);
	assert_int_equal(r.stopped, 1);
	assert_int_equal(r.resumed, 0);
	check_equal(&r);
	uint64_t dma = 0, pre = 0;
	for (unsigned i = 0; i < NDEV; i++) {
		struct mfd_simdev_stats st;
		mfd_simdev_get_stats(r.s[i], &st);
		dma += st.dma_pages;
		pre += st.precopy_bytes;
	}
	printf("# %s: %llu DMA pages, %llu precopy bytes\n", mode,
	       (unsigned long long)dma, (unsigned long long)pre);
	assert_true(dma > 0);
	assert_true(pre > 0);
	mfd_stats ss, ds;
	mfd_source_get_stats(r.vm.src, &ss, sizeof(ss));
	mfd_dest_get_stats(r.vm.dst, &ds, sizeof(ds));
	assert_true(ss.device_bytes > 0);
	assert_int_equal(ss.device_bytes, ds.device_bytes);
	assert_true(ss.device_downtime_ns > 0);
	assert_true(ds.device_downtime_ns > 0);
	rig_free(&r);
}

static void test_main_mode(void **s)
{
	(void)s;
	migrate_ok("main", "2");
}

static void test_multifd_mode(void **s)
{
	(void)s;
	migrate_ok("multifd", "4");
}

/*
 * Every chunk size from the smallest to the largest, odd ones included, in
 * both modes, with a reorder bound at its minimum (twice the chunk) so
 * every device is larger than the buffer: pre-copy goes through save()
 * while the device changes, STOP_COPY through save_iov() (no copy), and
 * the destination's device memory must equal the source's byte for byte.
 * multifd runs three ways: placed chunks received in place (load_segs),
 * placed chunks to a destination without the op (into the buffer, then
 * load()), and a source without state_mem (plain chunks). Units changed
 * during pre-copy are sent again in STOP_COPY, so a placed chunk must not
 * land before the pre-copy chunk of its unit is applied (the fence).
 */
static void test_chunk_sizes(void **s)
{
	(void)s;
	static const unsigned sizes[] = { 4096,	  4104,	  65536 - 24,
					  131072, 524288, 1048560 };
	static const char *modes[] = { "multifd", "multifd", "multifd",
				       "main" };
	for (unsigned m = 0; m < 4; m++) {
		for (unsigned k = 0; k < sizeof(sizes) / sizeof(sizes[0]);
		     k++) {
			struct rig r = { .ndev = NDEV };
			char xfer[64], cs[64], bm[64];
			snprintf(xfer, sizeof(xfer), "device-transfer=%s",
				 modes[m]);
			snprintf(cs, sizeof(cs), "device-chunk-size=%u",
				 sizes[k]);
			snprintf(bm, sizeof(bm), "device-buffer-max=%u",
				 2 * sizes[k]);
			const char *kv[] = { xfer, "channels=3",	cs,
					     bm,   "downtime-limit=50", NULL };
			struct devopts o = { .state = 2 * MiB + 4 * sizes[k],
					     .precopy = 0.3,
					     .dirty_rate = 4 * MiB,
					     .defer_check = k % 2,
					     .dst_no_placed = m == 1,
					     .src_no_placed = m == 2 };
			printf("# %s%s, chunk %u, buffer %u\n", modes[m],
			       m == 1	? " (destination copies)"
			       : m == 2 ? " (source without state_mem)"
					: "",
			       sizes[k], 2 * sizes[k]);
			int dret;
			int ret = run(&r, kv, &o, NULL, &dret);
			assert_int_equal(ret, 0);
			assert_int_equal(dret, 0);
			check_equal(&r);
			mfd_stats ds;
			mfd_dest_get_stats(r.vm.dst, &ds, sizeof(ds));
			if (m < 3)
				assert_true(ds.device_buffer_peak <=
					    2ULL * sizes[k]);
			uint64_t loaded, placed = placed_bytes(&r, &loaded);
			printf("# %llu of %llu bytes placed\n",
			       (unsigned long long)placed,
			       (unsigned long long)loaded);
			if (m == 0)
				assert_true(placed > 0 && placed < loaded);
			else
				assert_int_equal(placed, 0);
			rig_free(&r);
		}
	}
}

static void read_error(const char *mode, double precopy)
{
	struct rig r = { .ndev = NDEV };
	char xfer[64];
	snprintf(xfer, sizeof(xfer), "device-transfer=%s", mode);
	const char *kv[] = { xfer, "channels=2", "device-chunk-size=64K",
			     NULL };
	/* Device 1 fails after 1 MiB: during pre-copy with a pre-copy
	 * share, else in STOP_COPY after the stop hook. */
	struct devopts o = { .state = 4 * MiB,
			     .precopy = precopy,
			     .dma_rate = 4 * MiB,
			     .fail_after = 1 * MiB };
	int dret;
	int ret = run(&r, kv, &o, NULL, &dret);
	assert_int_equal(ret, -EIO);
	assert_true(dret < 0);
	assert_int_equal(r.loaded, 0);
	assert_int_equal(r.failed, 1);
	assert_int_equal(r.resumed, r.stopped);
	assert_int_equal(r.stopped, precopy > 0 ? 0 : 1);
	for (unsigned i = 0; i < NDEV; i++) {
		assert_int_equal(mfd_simdev_state(r.s[i]), MFD_DEV_RUNNING);
		assert_int_not_equal(mfd_simdev_state(r.d[i]), MFD_DEV_RUNNING);
	}
	mfd_stats st;
	mfd_source_get_stats(r.vm.src, &st, sizeof(st));
	assert_int_equal(st.phase, MFD_PHASE_FAILED);
	rig_free(&r);
}

static void test_read_error_stop_copy(void **s)
{
	(void)s;
	read_error("multifd", 0);
	read_error("main", 0);
}

static void test_read_error_precopy(void **s)
{
	(void)s;
	read_error("multifd", 0.9);
}

/*
 * A slow restore (20 ms/MiB) of 2 x 4 MiB through a 128 KiB reorder bound:
 * chunks received into the buffer wait for room (back-pressure), and the
 * bound holds; chunks received in place hold only their segment lists, so
 * the buffer stays below one chunk while the bytes wait in the devices.
 */
static void backpressure(bool in_place)
{
	struct rig r = { .ndev = 2 };
	const char *kv[] = { "device-transfer=multifd", "channels=4",
			     "device-chunk-size=32K", "device-buffer-max=128K",
			     NULL };
	struct devopts o = { .state = 4 * MiB,
			     .load_ms_per_mib = 20,
			     .dst_no_placed = !in_place };
	int dret;
	int ret = run(&r, kv, &o, NULL, &dret);
	assert_int_equal(ret, 0);
	assert_int_equal(dret, 0);
	check_equal(&r);
	mfd_stats ds;
	mfd_dest_get_stats(r.vm.dst, &ds, sizeof(ds));
	printf("# reorder peak %llu bytes (bound 131072), %llu waits\n",
	       (unsigned long long)ds.device_buffer_peak,
	       (unsigned long long)ds.device_buffer_waits);
	assert_true(ds.device_buffer_peak <= 128 * 1024);
	assert_true(ds.device_buffer_peak > 0);
	uint64_t loaded, placed = placed_bytes(&r, &loaded);
	if (in_place) {
		/* Every unit's bytes, not its 16-byte record headers. */
		assert_true(placed >= 2 * 4 * MiB && placed < loaded);
		assert_true(ds.device_buffer_peak < 32 * 1024);
	} else {
		assert_int_equal(placed, 0);
		assert_true(ds.device_buffer_waits > 0);
	}
	rig_free(&r);
}

/*
 * The fence: pre-copy chunks (copied by load()) still wait behind a slow
 * restore when STOP_COPY sends the same units again as placed chunks,
 * which must not land in the device memory before the older chunks are
 * applied over it. Every byte is checked as it is loaded (without the
 * fence this test fails: the older bytes overwrite the newer).
 */
static void test_placed_after_precopy(void **s)
{
	(void)s;
	struct rig r = { .ndev = 1 };
	const char *kv[] = { "device-transfer=multifd", "channels=4",
			     "device-chunk-size=64K", "downtime-limit=1000",
			     NULL };
	struct devopts o = { .state = 4 * MiB,
			     .precopy = 1.0,
			     .dirty_rate = 64 * MiB,
			     .load_ms_per_mib = 100 };
	int dret;
	int ret = run(&r, kv, &o, NULL, &dret);
	assert_int_equal(ret, 0);
	assert_int_equal(dret, 0);
	check_equal(&r);
	uint64_t loaded, placed = placed_bytes(&r, &loaded);
	printf("# %llu of %llu bytes placed\n", (unsigned long long)placed,
	       (unsigned long long)loaded);
	/* Here the STOP_COPY chunks arrive while the pre-copy chunks still
	 * wait, so most or all go through the buffer. */
	assert_true(placed < loaded);
	rig_free(&r);
}

static void test_backpressure(void **s)
{
	(void)s;
	backpressure(false);
	backpressure(true);
}

/* Hostile: the first packet of the only data channel is a DEVICE packet
 * (device pre-copy goes before round 0's pages); patch its header. */
static uint64_t patch_pos;
static uint32_t patch_val;

static void damage(struct tvm_proxy *p, unsigned conn, uint64_t pos,
		   uint8_t *buf, size_t len)
{
	(void)p;
	if (conn != 1)
		return;
	uint8_t v[4];
	mfd__put_le32(v, patch_val);
	for (size_t i = 0; i < len; i++)
		if (pos + i >= patch_pos && pos + i < patch_pos + 4)
			buf[i] = v[pos + i - patch_pos];
}

static void hostile(uint64_t field, uint32_t val, int expect)
{
	struct rig r = { .ndev = 1 };
	const char *kv[] = { "device-transfer=multifd", "channels=1",
			     "io-timeout=5s", NULL };
	struct devopts o = { .state = 1 * MiB, .precopy = 1.0 };
	patch_pos = MFD_HELLO_SIZE + field;
	patch_val = val;
	struct tvm_proxy proxy = { .damage = damage };
	int dret;
	int ret = run(&r, kv, &o, &proxy, &dret);
	assert_int_equal(dret, expect);
	assert_int_equal(ret, expect);
	assert_int_equal(r.failed, 1);
	assert_int_equal(r.failed_err, expect);
	assert_int_equal(r.loaded, 0);
	assert_int_equal(r.resumed, r.stopped);
	assert_int_equal(mfd_simdev_state(r.s[0]), MFD_DEV_RUNNING);
	/* Nothing of the bad chunk reached the device, which never runs
	 * (STOP, or ERROR: leaving RESUMING incomplete fails validation). */
	struct mfd_simdev_stats st;
	mfd_simdev_get_stats(r.d[0], &st);
	assert_int_equal(st.loaded_bytes, 0);
	assert_int_not_equal(mfd_simdev_state(r.d[0]), MFD_DEV_RUNNING);
	rig_free(&r);
}

/* A fault during the device state: the only data channel is reset once
 * the RAM (32 MiB) has gone and the devices' stop-copy state flows: past
 * RAM + 8 MiB and after the source stopped its guest. On a loaded machine
 * pre-copy runs longer and the devices' pre-copy state alone can pass
 * that mark before the stop; the reset then waits for the stop (and hits
 * the final pass's first bytes). */
static int reset_in_devstate(struct tvm_proxy *p, unsigned conn, uint64_t pos,
			     size_t len)
{
	(void)len;
	const struct rig *r = p->opaque;
	return conn == 1 && pos > RAM + 8 * MiB &&
			       __atomic_load_n(&r->stopped, __ATOMIC_ACQUIRE)
		       ? TVM_RESET
		       : TVM_PASS;
}

static void test_fault_during_device_state(void **s)
{
	(void)s;
	struct rig r = { .ndev = NDEV };
	const char *kv[] = { "device-transfer=multifd", "channels=1",
			     "io-timeout=5s", NULL };
	struct devopts o = { .state = 8 * MiB, .dma_rate = 4 * MiB };
	struct tvm_proxy proxy = { .fault = reset_in_devstate, .opaque = &r };
	int dret;
	int ret = run(&r, kv, &o, &proxy, &dret);
	assert_true(ret < 0);
	assert_true(dret < 0);
	assert_int_equal(r.loaded, 0);
	assert_int_equal(r.failed, 1);
	assert_int_equal(r.stopped, 1);
	assert_int_equal(r.resumed, 1);
	for (unsigned i = 0; i < NDEV; i++) {
		assert_int_equal(mfd_simdev_state(r.s[i]), MFD_DEV_RUNNING);
		assert_int_not_equal(mfd_simdev_state(r.d[i]), MFD_DEV_RUNNING);
	}
	rig_free(&r);
}

static void test_bad_device_index(void **s)
{
	(void)s;
	hostile(12, 7, MFD_EDEVICE); /* block field = device index */
}

/*
 * The destination registers one device fewer: it refuses DEVICES, which the
 * source sends without waiting for an answer, and closes the rest, so the
 * source's data channels break. The source must still report the
 * destination's reason, not the broken connection, and run on.
 */
static void test_device_count_mismatch(void **s)
{
	(void)s;
	const char *const kv[] = { "channels=2", NULL };
	struct devopts o = { .state = 1 * MiB };
	for (int rep = 0; rep < 5; rep++) {
		struct rig r = { .ndev = NDEV, .dst_ndev = NDEV - 1 };
		int dret;
		int ret = run(&r, kv, &o, NULL, &dret);
		assert_int_equal(ret, MFD_EDEVICE);
		assert_int_equal(dret, MFD_EDEVICE);
		const char *why = mfd_source_error_text(r.vm.src);
		printf("# source: %s\n", why);
		assert_non_null(strstr(why, "source has 3 devices, "
					    "destination 2"));
		assert_int_equal(r.loaded, 0);
		assert_int_equal(r.failed, 1);
		assert_int_equal(r.stopped, r.resumed);
		rig_free(&r);
	}
}

static void test_seq_out_of_window(void **s)
{
	(void)s;
	hostile(16, 70000, MFD_EROUND); /* count field = sequence number */
}

int main(void)
{
	tvm_io_engine("test_devices");
	seed = tvm_seed("test_devices");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_main_mode),
		cmocka_unit_test(test_multifd_mode),
		cmocka_unit_test(test_chunk_sizes),
		cmocka_unit_test(test_read_error_stop_copy),
		cmocka_unit_test(test_read_error_precopy),
		cmocka_unit_test(test_backpressure),
		cmocka_unit_test(test_placed_after_precopy),
		cmocka_unit_test(test_fault_during_device_state),
		cmocka_unit_test(test_bad_device_index),
		cmocka_unit_test(test_seq_out_of_window),
		cmocka_unit_test(test_device_count_mismatch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
