/* SPDX-License-Identifier: MIT */
/* Device-state wire format: DEVICES, DEVICE packets, DEVICE_DATA. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "multifd/devwire.h"
#include "testvm.h"

static char names[MFD_MAX_DEVICES_WIRE][MFD_MAX_DEV_NAME_WIRE + 1];
static char got[MFD_MAX_DEVICES_WIRE][MFD_MAX_DEV_NAME_WIRE + 1];

static int encode3(uint8_t *buf, size_t cap)
{
	strcpy(names[0], "nic0");
	strcpy(names[1], "gpu");
	strcpy(names[2], "nvme-controller-7");
	struct mfd__devices d = { 3, MFD_DEV_XFER_MULTIFD, 1 << 20 >> 1,
				  names };
	return mfd__devices_encode(&d, buf, cap);
}

static void test_devices_roundtrip(void **state)
{
	uint8_t buf[512];
	int n = encode3(buf, sizeof(buf));
	assert_int_equal(n, 16 + 3 * 4 + 4 + 3 + 17);
	/* Fixed layout, little endian. */
	assert_int_equal(buf[0], 3);
	assert_int_equal(buf[4], MFD_DEV_XFER_MULTIFD);
	assert_int_equal(buf[16], 4);
	assert_memory_equal(buf + 20, "nic0", 4);
	struct mfd__devices d;
	assert_int_equal(mfd__devices_decode(buf, (size_t)n, &d, got), 0);
	assert_int_equal(d.ndevices, 3);
	assert_int_equal(d.transfer, MFD_DEV_XFER_MULTIFD);
	assert_int_equal(d.chunk_max, 1 << 19);
	assert_string_equal(got[2], "nvme-controller-7");
	assert_int_equal(encode3(buf, 10), -ENOSPC);
}

static void test_devices_rejects(void **state)
{
	uint8_t buf[512], b[512];
	int n = encode3(buf, sizeof(buf));
	struct mfd__devices d;
#define MUT(off, val, code)                                                    \
	do {                                                                   \
		memcpy(b, buf, (size_t)n);                                     \
		b[off] = (val);                                                \
		assert_int_equal(mfd__devices_decode(b, (size_t)n, &d, got),   \
				 code);                                        \
	} while (0)
	MUT(0, 0, MFD_EDEVICE);	    /* no device */
	MUT(1, 1, MFD_EDEVICE);	    /* 259 devices */
	MUT(4, 3, MFD_EDEVICE);	    /* transfer mode */
	MUT(10, 0x20, MFD_EDEVICE); /* chunk_max > 1 MiB - 16 */
	MUT(12, 1, MFD_EFLAGS);	    /* reserved */
	MUT(18, 1, MFD_EFLAGS);	    /* name reserved */
	MUT(16, 0, MFD_EDEVICE);    /* empty name */
	MUT(16, 64, MFD_EDEVICE);   /* name too long */
	MUT(16, 200, MFD_EDEVICE);
	MUT(21, 0, MFD_EDEVICE); /* NUL in a name */
	/* Duplicate names: "gpu" -> "nic" would not be; make it "nic0". */
	memcpy(b, buf, (size_t)n);
	/* Truncated and trailing bytes. */
	for (int cut = 0; cut < n; cut++)
		assert_int_not_equal(
			mfd__devices_decode(buf, (size_t)cut, &d, got), 0);
	memcpy(b, buf, (size_t)n);
	b[n] = 0;
	assert_int_equal(mfd__devices_decode(b, (size_t)n + 1, &d, got),
			 MFD_ELENGTH);
	/* Duplicates. */
	strcpy(names[0], "same");
	strcpy(names[1], "same");
	struct mfd__devices dd = { 2, MFD_DEV_XFER_MAIN, 4096, names };
	int m = mfd__devices_encode(&dd, b, sizeof(b));
	assert_true(m > 0);
	assert_int_equal(mfd__devices_decode(b, (size_t)m, &d, got),
			 MFD_EDEVICE);
	/* The encoder refuses what the decoder would. */
	dd.chunk_max = 100;
	assert_int_equal(mfd__devices_encode(&dd, b, sizeof(b)), -EINVAL);
	dd.chunk_max = 4096;
	dd.transfer = 0;
	assert_int_equal(mfd__devices_encode(&dd, b, sizeof(b)), -EINVAL);
}

static void test_devpkt(void **state)
{
	struct mfd__dev_limits lim = { .ndevices = 4, .chunk_max = 65536 };
	struct mfd__pkt_hdr h = { .magic = MFD_MAGIC_PKT,
				  .type = MFD_PKT_DEVICE,
				  .block = 3,
				  .count = 12345,
				  .zero_count = 0,
				  .payload_len = 65536,
				  .seq = 9 };
	uint8_t raw[MFD_PKT_HDR_SIZE];
	struct mfd__pkt_hdr d;
	mfd__pkt_encode(&h, raw);
	assert_int_equal(mfd__pkt_decode(raw, &d), 0);
	assert_int_equal(mfd__devpkt_validate(&d, &lim), 0);
	assert_int_equal(d.count, 12345);
	d.block = 4;
	assert_int_equal(mfd__devpkt_validate(&d, &lim), MFD_EDEVICE);
	d.block = 0;
	d.payload_len = 65537;
	assert_int_equal(mfd__devpkt_validate(&d, &lim), MFD_ELENGTH);
	d.payload_len = 0;
	assert_int_equal(mfd__devpkt_validate(&d, &lim), MFD_ELENGTH);
	d.zero_count = MFD_DEVCHUNK_LAST;
	assert_int_equal(mfd__devpkt_validate(&d, &lim), 0);
	d.zero_count = 4; /* LAST and PLACED are the known flags */
	assert_int_equal(mfd__devpkt_validate(&d, &lim), MFD_EFLAGS);
	d.zero_count = 0;
	d.payload_len = 1;
	d.round = 1;
	assert_int_equal(mfd__devpkt_validate(&d, &lim), MFD_EROUND);
	d.round = 0;
	d.type = MFD_PKT_PAGES;
	assert_int_equal(mfd__devpkt_validate(&d, &lim), MFD_ETYPE);
}

static void test_devdata(void **state)
{
	struct mfd__dev_limits lim = { .ndevices = 2, .chunk_max = 100 };
	uint8_t buf[16 + 100];
	struct mfd__devdata m = { .device = 1, .seq = 7, .flags = 1 };
	mfd__devdata_prefix_encode(&m, buf);
	memset(buf + 16, 0xab, 100);
	struct mfd__devdata o;
	assert_int_equal(mfd__devdata_decode(buf, sizeof(buf), &lim, &o), 0);
	assert_int_equal(o.device, 1);
	assert_int_equal(o.seq, 7);
	assert_int_equal(o.len, 100);
	assert_ptr_equal(o.data, buf + 16);
	assert_int_equal(mfd__devdata_decode(buf, 16, &lim, &o), 0); /* last */
	assert_int_equal(mfd__devdata_decode(buf, 15, &lim, &o), MFD_ELENGTH);
	buf[12] = 1;
	assert_int_equal(mfd__devdata_decode(buf, sizeof(buf), &lim, &o),
			 MFD_EFLAGS);
	buf[12] = 0;
	buf[0] = 2;
	assert_int_equal(mfd__devdata_decode(buf, sizeof(buf), &lim, &o),
			 MFD_EDEVICE);
	lim.chunk_max = 99;
	buf[0] = 0;
	assert_int_equal(mfd__devdata_decode(buf, sizeof(buf), &lim, &o),
			 MFD_ELENGTH);
}

/* Random damage to a valid DEVICES payload: only protocol codes, never a
 * crash or a read past the end (ASan). */
static void test_devices_fuzz(void **state)
{
	uint64_t seed = tvm_seed("test_devwire");
	uint8_t buf[512];
	int n = encode3(buf, sizeof(buf));
	for (int it = 0; it < 20000; it++) {
		size_t len = (size_t)n - tvm_rand(&seed) % 4;
		uint8_t *b = malloc(len ? len : 1);
		memcpy(b, buf, len);
		int flips = 1 + (int)(tvm_rand(&seed) % 3);
		for (int f = 0; f < flips; f++)
			b[tvm_rand(&seed) % len] = (uint8_t)tvm_rand(&seed);
		struct mfd__devices d;
		int ret = mfd__devices_decode(b, len, &d, got);
		if (ret)
			assert_in_range(-ret, 1001, 1022);
		free(b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_devices_roundtrip),
		cmocka_unit_test(test_devices_rejects),
		cmocka_unit_test(test_devpkt),
		cmocka_unit_test(test_devdata),
		cmocka_unit_test(test_devices_fuzz),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
