/* SPDX-License-Identifier: MIT */
/* The configuration table: defaults, parsing, range checks, messages. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "multifd/config.h"

#define UNUSED __attribute__((unused))

static mfd_config *new_config(void)
{
	mfd_config *cfg = NULL;

	assert_int_equal(mfd_config_new(&cfg), 0);
	assert_non_null(cfg);
	return cfg;
}

static void assert_get(const mfd_config *cfg, const char *key, const char *want)
{
	char buf[64];

	memset(buf, 'x', sizeof(buf));
	assert_int_equal(mfd_config_get(cfg, key, buf, sizeof(buf)), 0);
	assert_string_equal(buf, want);
}

static unsigned nkeys(void)
{
	unsigned n = 0;

	while (mfd__cfg_keys[n].name)
		n++;
	return n;
}

/* ---- the table itself ---- */

static void test_table(UNUSED void **state)
{
	static const struct {
		const char *name;
		size_t offset, width;
	} fields[] = {
		{ "channels", offsetof(struct mfd_config, channels), 4 },
		{ "packet-pages", offsetof(struct mfd_config, packet_pages),
		  4 },
		{ "verify", offsetof(struct mfd_config, verify), 1 },
		{ "max-rounds", offsetof(struct mfd_config, max_rounds), 4 },
		{ "downtime-limit",
		  offsetof(struct mfd_config, downtime_limit_ms), 8 },
		{ "stop-cost", offsetof(struct mfd_config, stop_cost_ms), 8 },
		{ "downtime-quantile",
		  offsetof(struct mfd_config, downtime_quantile), 4 },
		{ "connect-timeout",
		  offsetof(struct mfd_config, connect_timeout_ms), 8 },
		{ "max-pending-connections",
		  offsetof(struct mfd_config, max_pending), 4 },
		{ "io-timeout", offsetof(struct mfd_config, io_timeout_ms), 8 },
		{ "degraded-channels",
		  offsetof(struct mfd_config, degraded_channels), 1 },
		{ "resume-timeout",
		  offsetof(struct mfd_config, resume_timeout_ms), 8 },
		{ "close-timeout",
		  offsetof(struct mfd_config, close_timeout_ms), 8 },
		{ "compression", offsetof(struct mfd_config, compression), 4 },
		{ "zstd-level", offsetof(struct mfd_config, zstd_level), 4 },
		{ "io-engine", offsetof(struct mfd_config, io_engine), 4 },
		{ "auth-key-file", offsetof(struct mfd_config, auth_key_file),
		  MFD_CFG_PATH_MAX },
		{ "tls", offsetof(struct mfd_config, tls), 4 },
		{ "tls-ca", offsetof(struct mfd_config, tls_ca),
		  MFD__CFG_PATH_MAX },
		{ "tls-cert", offsetof(struct mfd_config, tls_cert),
		  MFD__CFG_PATH_MAX },
		{ "tls-key", offsetof(struct mfd_config, tls_key),
		  MFD__CFG_PATH_MAX },
		{ "tls-psk-file", offsetof(struct mfd_config, tls_psk_file),
		  MFD__CFG_PATH_MAX },
		{ "tls-hostname", offsetof(struct mfd_config, tls_hostname),
		  256 },
		{ "tls-verify-peer",
		  offsetof(struct mfd_config, tls_verify_peer), 1 },
		{ "dirty-tracker", offsetof(struct mfd_config, dirty_tracker),
		  4 },
		{ "max-bandwidth", offsetof(struct mfd_config, max_bandwidth),
		  8 },
		{ "auto-converge", offsetof(struct mfd_config, auto_converge),
		  1 },
		{ "dirty-limit", offsetof(struct mfd_config, dirty_limit), 1 },
		{ "vcpu-dirty-limit",
		  offsetof(struct mfd_config, vcpu_dirty_limit), 4 },
		{ "cpu-throttle-initial",
		  offsetof(struct mfd_config, throttle_initial), 4 },
		{ "cpu-throttle-increment",
		  offsetof(struct mfd_config, throttle_increment), 4 },
		{ "cpu-throttle-max", offsetof(struct mfd_config, throttle_max),
		  4 },
		{ "throttle-trigger-threshold",
		  offsetof(struct mfd_config, throttle_threshold), 4 },
		{ "precopy-timeout",
		  offsetof(struct mfd_config, precopy_timeout_ms), 8 },
		{ "timeout-policy", offsetof(struct mfd_config, timeout_policy),
		  4 },
		{ "device-transfer",
		  offsetof(struct mfd_config, device_transfer), 4 },
		{ "device-buffer-max",
		  offsetof(struct mfd_config, device_buffer_max), 8 },
		{ "device-chunk-size",
		  offsetof(struct mfd_config, device_chunk_size), 4 },
		{ "zstd-long", offsetof(struct mfd_config, zstd_long), 4 },
		{ "direct-io", offsetof(struct mfd_config, direct_io), 1 },
		{ "lazy-restore", offsetof(struct mfd_config, lazy_restore),
		  1 },
		{ "file-hole-min", offsetof(struct mfd_config, file_hole_min),
		  4 },
		{ "dest-prefault", offsetof(struct mfd_config, dest_prefault),
		  4 },
		{ "postcopy", offsetof(struct mfd_config, postcopy), 4 },
		{ "postcopy-lanes", offsetof(struct mfd_config, postcopy_lanes),
		  4 },
		{ "postcopy-after-rounds",
		  offsetof(struct mfd_config, postcopy_after_rounds), 4 },
		{ "max-postcopy-bandwidth",
		  offsetof(struct mfd_config, max_postcopy_bandwidth), 8 },
		{ "postcopy-pacing",
		  offsetof(struct mfd_config, postcopy_pacing), sizeof(bool) },
		{ "postcopy-bulk-nice",
		  offsetof(struct mfd_config, postcopy_bulk_nice), 4 },
		{ "postcopy-urgent-priority",
		  offsetof(struct mfd_config, postcopy_urgent_priority), 4 },
		{ "announce-initial",
		  offsetof(struct mfd_config, announce_initial_ms), 8 },
		{ "announce-max", offsetof(struct mfd_config, announce_max_ms),
		  8 },
		{ "announce-rounds",
		  offsetof(struct mfd_config, announce_rounds), 4 },
		{ "announce-step",
		  offsetof(struct mfd_config, announce_step_ms), 8 },
	};
	const size_t nfields = sizeof(fields) / sizeof(fields[0]);

	/* One entry per field of struct mfd_config, each field once. */
	assert_int_equal(nkeys(), nfields);
	for (size_t i = 0; i < nfields; i++) {
		const struct mfd__cfg_key *k = mfd__config_find(fields[i].name);

		assert_non_null(k);
		assert_int_equal(k->offset, fields[i].offset);
		assert_int_equal(k->width, fields[i].width);
	}

	for (const struct mfd__cfg_key *k = mfd__cfg_keys; k->name; k++) {
		struct mfd_config cfg;
		char err[256];

		assert_string_equal(k->section, "migration");
		assert_true(k->name[0]);
		assert_null(strchr(k->name, '.'));
		assert_non_null(k->doc);
		assert_true(k->doc[0]);
		assert_null(strchr(k->doc, '\n'));
		assert_true(k->offset + k->width <= sizeof(struct mfd_config));
		assert_true(k->min <= k->max);
		switch (k->type) {
		case MFD__CFG_BOOL:
			assert_int_equal(k->width, 1);
			assert_int_equal(k->min, 0);
			assert_int_equal(k->max, 1);
			assert_false(k->size);
			break;
		case MFD__CFG_MS:
			assert_int_equal(k->width, 8);
			assert_false(k->size);
			break;
		case MFD__CFG_PATH:
			assert_int_equal(k->min, 0);
			assert_true(k->max < k->width);
			assert_false(k->size);
			break;
		case MFD__CFG_UINT:
			assert_true(k->width == 4 || k->width == 8);
			if (k->width == 4)
				assert_true(k->max <= UINT32_MAX);
			break;
		case MFD__CFG_ENUM: {
			uint64_t n = 0;

			assert_int_equal(k->width, 4);
			assert_non_null(k->choices);
			while (k->choices[n])
				n++;
			assert_int_equal(k->min, 0);
			assert_int_equal(k->max, n - 1);
			assert_non_null(k->choices);
			while (k->choices[n])
				n++;
			assert_int_equal(k->width, 4);
			assert_int_equal(k->min, 0);
			assert_int_equal(k->max, n - 1);
			assert_false(k->size);
			break;
		}
		case MFD__CFG_STR:
			assert_int_equal(k->min, 0);
			assert_true(k->max < k->width);
			assert_false(k->size);
			break;
		default:
			fail_msg("%s: unknown type", k->name);
		}
		/* The default is a valid value. */
		memset(&cfg, 0, sizeof(cfg));
		err[0] = 0;
		if (mfd__config_parse(&cfg, k, k->def, err, sizeof(err)))
			fail_msg("default of %s: %s", k->name, err);
		/* Names are unique. */
		for (const struct mfd__cfg_key *j = k + 1; j->name; j++)
			assert_string_not_equal(j->name, k->name);
	}
}

/* ---- defaults ---- */

static void test_defaults(UNUSED void **state)
{
	mfd_config *cfg = new_config();

	assert_get(cfg, "channels", "2");
	assert_get(cfg, "packet-pages", "512");
	assert_get(cfg, "verify", "off");
	assert_get(cfg, "max-rounds", "30");
	assert_get(cfg, "downtime-limit", "300ms");
	assert_get(cfg, "connect-timeout", "5000ms");
	assert_get(cfg, "io-timeout", "30000ms");
	assert_get(cfg, "degraded-channels", "on");
	assert_get(cfg, "resume-timeout", "60000ms");
	assert_get(cfg, "compression", "none");
	assert_get(cfg, "zstd-level", "1");
	assert_get(cfg, "io-engine", "sockets");
	assert_get(cfg, "tls", "off");
	assert_get(cfg, "tls-ca", "");
	assert_get(cfg, "tls-verify-peer", "off");
	assert_get(cfg, "dirty-tracker", "manual");
	assert_get(cfg, "max-bandwidth", "0");
	assert_get(cfg, "auto-converge", "off");
	assert_get(cfg, "cpu-throttle-initial", "20");
	assert_get(cfg, "cpu-throttle-increment", "10");
	assert_get(cfg, "cpu-throttle-max", "99");
	assert_get(cfg, "throttle-trigger-threshold", "50");
	assert_get(cfg, "precopy-timeout", "0ms");
	assert_get(cfg, "timeout-policy", "force");

	assert_int_equal(cfg->channels, 2);
	assert_int_equal(cfg->packet_pages, 512);
	assert_false(cfg->verify);
	assert_int_equal(cfg->max_rounds, 30);
	assert_int_equal(cfg->downtime_limit_ms, 300);
	assert_int_equal(cfg->connect_timeout_ms, 5000);
	assert_int_equal(cfg->io_timeout_ms, 30000);

	/* The table's default text is what get prints back. */
	for (const struct mfd__cfg_key *k = mfd__cfg_keys; k->name; k++)
		assert_get(cfg, k->name, k->def);
	mfd_config_free(cfg);
}

static void test_defaults_fn(UNUSED void **state)
{
	struct mfd_config a, b;

	memset(&a, 0xa5, sizeof(a));
	mfd__config_defaults(&a);
	memset(&b, 0x5a, sizeof(b));
	mfd__config_defaults(&b);
	/* Every byte is determined, padding included. */
	assert_memory_equal(&a, &b, sizeof(a));
	assert_int_equal(a.channels, 2);
	assert_int_equal(a.io_timeout_ms, 30000);
}

/* ---- set/get ---- */

static void set_ok(mfd_config *cfg, const char *key, const char *value,
		   const char *printed)
{
	int ret = mfd_config_set(cfg, key, value);

	if (ret)
		fail_msg("set %s=%s: %d", key, value, ret);
	assert_get(cfg, key, printed);
}

static void test_round_trip(UNUSED void **state)
{
	mfd_config *cfg = new_config();

	set_ok(cfg, "channels", "1", "1");
	set_ok(cfg, "channels", "64", "64");
	set_ok(cfg, "channels", "017", "17"); /* decimal, not octal */
	assert_int_equal(cfg->channels, 17);
	set_ok(cfg, "packet-pages", "1", "1");
	set_ok(cfg, "packet-pages", "1024", "1024");
	assert_int_equal(cfg->packet_pages, 1024);
	set_ok(cfg, "max-rounds", "100000", "100000");
	assert_int_equal(cfg->max_rounds, 100000);

	static const char *const on[] = { "on", "true", "yes", "1",
					  "ON", "True", "YES" };
	static const char *const off[] = { "off", "false", "no", "0",
					   "Off", "FALSE", "No" };
	for (size_t i = 0; i < sizeof(on) / sizeof(on[0]); i++) {
		set_ok(cfg, "verify", on[i], "on");
		assert_true(cfg->verify);
		set_ok(cfg, "verify", off[i], "off");
		assert_false(cfg->verify);
	}

	set_ok(cfg, "downtime-limit", "250", "250ms");
	set_ok(cfg, "downtime-limit", "250ms", "250ms");
	set_ok(cfg, "downtime-limit", "2s", "2000ms");
	assert_int_equal(cfg->downtime_limit_ms, 2000);
	set_ok(cfg, "downtime-limit", "1", "1ms");
	set_ok(cfg, "downtime-limit", "3600s", "3600000ms");
	set_ok(cfg, "downtime-limit", "3600000ms", "3600000ms");
	set_ok(cfg, "connect-timeout", "100ms", "100ms");
	set_ok(cfg, "connect-timeout", "600s", "600000ms");
	assert_int_equal(cfg->connect_timeout_ms, 600000);
	set_ok(cfg, "io-timeout", "100", "100ms");
	set_ok(cfg, "io-timeout", "3600s", "3600000ms");
	assert_int_equal(cfg->io_timeout_ms, 3600000);
	set_ok(cfg, "io-engine", "uring", "uring");
	assert_int_equal(cfg->io_engine, MFD__IO_URING);
	set_ok(cfg, "io-engine", "sockets", "sockets");
	assert_int_equal(cfg->io_engine, MFD__IO_SOCKETS);
	/* Other fields were left alone. */
	assert_int_equal(cfg->channels, 17);
	assert_int_equal(cfg->packet_pages, 1024);
	mfd_config_free(cfg);
}

/* ---- suffixes ---- */

/* A size key that is not in the table, to reach the K/M/G path. */
static const struct mfd__cfg_key size64 = {
	.section = "test",
	.name = "size64",
	.type = MFD__CFG_UINT,
	.size = true,
	.def = "1",
	.min = 0,
	.max = UINT64_MAX,
	.offset = offsetof(struct mfd_config, downtime_limit_ms),
	.width = 8,
	.doc = "a 64-bit size",
};
static const struct mfd__cfg_key size32 = {
	.section = "test",
	.name = "size32",
	.type = MFD__CFG_UINT,
	.size = true,
	.def = "1",
	.min = 1,
	.max = UINT32_MAX,
	.offset = offsetof(struct mfd_config, max_rounds),
	.width = 4,
	.doc = "a 32-bit size",
};

static uint64_t parse_size(const struct mfd__cfg_key *k, const char *value,
			   int want_ret)
{
	struct mfd_config cfg, before;
	char err[256] = "";
	int ret;

	mfd__config_defaults(&cfg);
	before = cfg;
	ret = mfd__config_parse(&cfg, k, value, err, sizeof(err));
	if (ret != want_ret)
		fail_msg("%s=\"%s\": got %d (%s), want %d", k->name, value, ret,
			 err, want_ret);
	if (ret) {
		assert_memory_equal(&cfg, &before, sizeof(cfg));
		assert_non_null(strstr(err, k->name));
		return 0;
	}
	return k->width == 8 ? cfg.downtime_limit_ms : cfg.max_rounds;
}

static void test_size_suffixes(UNUSED void **state)
{
	assert_int_equal(parse_size(&size64, "0", 0), 0);
	assert_int_equal(parse_size(&size64, "7", 0), 7);
	assert_int_equal(parse_size(&size64, "4K", 0), 4096);
	assert_int_equal(parse_size(&size64, "4k", 0), 4096);
	assert_int_equal(parse_size(&size64, "2M", 0), 2u << 20);
	assert_int_equal(parse_size(&size64, "2m", 0), 2u << 20);
	assert_int_equal(parse_size(&size64, "3G", 0), 3ULL << 30);
	assert_int_equal(parse_size(&size64, "3g", 0), 3ULL << 30);
	assert_int_equal(parse_size(&size64, "17179869183G", 0),
			 17179869183ULL << 30);
	assert_int_equal(parse_size(&size64, "18446744073709551615", 0),
			 UINT64_MAX);
	/* overflow, before and after the suffix */
	parse_size(&size64, "18446744073709551616", MFD_ECONFIG);
	parse_size(&size64, "17179869184G", MFD_ECONFIG);
	parse_size(&size64, "18014398509481984K", MFD_ECONFIG);
	/* not suffixes */
	parse_size(&size64, "4KB", MFD_ECONFIG);
	parse_size(&size64, "4KiB", MFD_ECONFIG);
	parse_size(&size64, "4T", MFD_ECONFIG);
	parse_size(&size64, "4 K", MFD_ECONFIG);
	parse_size(&size64, "K", MFD_ECONFIG);
	parse_size(&size64, "4KK", MFD_ECONFIG);
	parse_size(&size64, "-4K", MFD_ECONFIG);
	parse_size(&size64, "4\x01", MFD_ECONFIG);
	/* a 32-bit field: the range stops what would be truncated */
	assert_int_equal(parse_size(&size32, "4194303K", 0), 4194303ULL << 10);
	parse_size(&size32, "4G", MFD_ECONFIG);
	parse_size(&size32, "4194304K", MFD_ECONFIG);
	parse_size(&size32, "0K", MFD_ECONFIG);
}

static void test_no_suffix_where_not_size(UNUSED void **state)
{
	mfd_config *cfg = new_config();

	assert_int_equal(mfd_config_set(cfg, "channels", "1K"), MFD_ECONFIG);
	assert_int_equal(mfd_config_set(cfg, "packet-pages", "1k"),
			 MFD_ECONFIG);
	assert_int_equal(mfd_config_set(cfg, "max-rounds", "1M"), MFD_ECONFIG);
	assert_int_equal(mfd_config_set(cfg, "downtime-limit", "1K"),
			 MFD_ECONFIG);
	assert_get(cfg, "channels", "2");
	mfd_config_free(cfg);
}

static void test_time_suffixes(UNUSED void **state)
{
	mfd_config *cfg = new_config();
	static const char *const bad[] = {
		"1.5s",
		"1 s",
		"1S",
		"1MS",
		"1m",
		"1min",
		"1sec",
		"1us",
		"1ns",
		"ms",
		"s",
		"1mss",
		"1sms",
		"1h",
		"1e3",
		"1000 ",
		"1s ",
		" 1s",
		"18446744073709552s",
	};

	set_ok(cfg, "downtime-limit", "7", "7ms");
	set_ok(cfg, "downtime-limit", "7ms", "7ms");
	set_ok(cfg, "downtime-limit", "7s", "7000ms");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (mfd_config_set(cfg, "downtime-limit", bad[i]) !=
		    MFD_ECONFIG)
			fail_msg("downtime-limit accepted \"%s\"", bad[i]);
		assert_get(cfg, "downtime-limit", "7000ms");
	}
	mfd_config_free(cfg);
}

/* ---- rejected values ---- */

struct bad_case {
	const char *key, *value;
};

static const struct bad_case bad_cases[] = {
	/* 0 or a range: neither */
	{ "zstd-long", "19" },
	{ "zstd-long", "28" },
	/* empty */
	{ "channels", "" },
	{ "verify", "" },
	{ "io-timeout", "" },
	/* negative */
	{ "channels", "-1" },
	{ "max-rounds", "-0" },
	{ "connect-timeout", "-5s" },
	/* trailing or leading garbage, other bases, signs */
	{ "channels", "abc" },
	{ "channels", "4abc" },
	{ "channels", " 4" },
	{ "channels", "4 " },
	{ "channels", "4\n" },
	{ "channels", "0x10" },
	{ "channels", "+4" },
	{ "channels", "4.0" },
	{ "channels", "1e1" },
	{ "packet-pages", "128pages" },
	{ "io-timeout", "30s!" },
	/* overflow */
	{ "channels", "99999999999999999999999" },
	{ "max-rounds", "18446744073709551616" },
	{ "io-timeout", "18446744073709551616" },
	/* out of range, including what a 32-bit store would truncate */
	{ "channels", "0" },
	{ "channels", "65" },
	{ "channels", "4294967297" },
	{ "channels", "18446744073709551615" },
	{ "packet-pages", "0" },
	{ "packet-pages", "1025" },
	{ "max-rounds", "0" },
	{ "max-rounds", "100001" },
	{ "downtime-limit", "0" },
	{ "downtime-limit", "0s" },
	{ "downtime-limit", "3600001" },
	{ "downtime-limit", "3601s" },
	{ "connect-timeout", "99" },
	{ "connect-timeout", "601s" },
	{ "io-timeout", "99ms" },
	{ "io-timeout", "3601s" },
	/* not booleans */
	{ "verify", "maybe" },
	{ "verify", "2" },
	{ "verify", "-1" },
	{ "verify", "onn" },
	{ "verify", "o" },
	{ "verify", "on " },
	{ "verify", "enabled" },
	{ "verify", "01" },
	/* not one of the names */
	{ "io-engine", "1" },
	{ "io-engine", "uring " },
	{ "io-engine", "epoll" },
};

static void test_bad_values(UNUSED void **state)
{
	mfd_config *cfg = new_config();
	struct mfd_config before;

	/* Non-default values, so "unchanged" is not "reset to default". */
	set_ok(cfg, "channels", "5", "5");
	set_ok(cfg, "packet-pages", "300", "300");
	set_ok(cfg, "verify", "on", "on");
	set_ok(cfg, "max-rounds", "9", "9");
	set_ok(cfg, "downtime-limit", "77", "77ms");
	set_ok(cfg, "connect-timeout", "777", "777ms");
	set_ok(cfg, "io-timeout", "7777", "7777ms");
	set_ok(cfg, "io-engine", "uring", "uring");
	set_ok(cfg, "zstd-long", "27", "27");
	set_ok(cfg, "zstd-long", "0", "0");
	set_ok(cfg, "zstd-long", "20", "20");
	before = *cfg;

	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		const struct mfd__cfg_key *k = mfd__config_find(c->key);
		char err[256] = "";

		assert_non_null(k);
		if (mfd_config_set(cfg, c->key, c->value) != MFD_ECONFIG)
			fail_msg("%s accepted \"%s\"", c->key, c->value);
		assert_memory_equal(cfg, &before, sizeof(before));

		/* The reason: one line naming the key. */
		assert_int_equal(
			mfd__config_parse(cfg, k, c->value, err, sizeof(err)),
			MFD_ECONFIG);
		assert_memory_equal(cfg, &before, sizeof(before));
		print_message("%s\n", err);
		assert_true(strncmp(err, c->key, strlen(c->key)) == 0);
		assert_true(err[strlen(c->key)] == ':');
		assert_null(strchr(err, '\n'));
		/* ... and the allowed range or forms. */
		if (k->type == MFD__CFG_BOOL) {
			assert_non_null(strstr(err, "on/off"));
		} else if (k->type == MFD__CFG_ENUM) {
			assert_non_null(strstr(err, "sockets/uring"));
		} else {
			char range[64];

			snprintf(range, sizeof(range),
				 k->type == MFD__CFG_MS ? "%llums..%llums"
							: "%llu..%llu",
				 (unsigned long long)k->min,
				 (unsigned long long)k->max);
			if (!strstr(err, range))
				fail_msg("no range \"%s\" in \"%s\"", range,
					 err);
		}
		/* ... and the value, where it is printable. */
		if (c->value[0] && !strchr(c->value, '\n') &&
		    !strstr(err, c->value))
			fail_msg("no value \"%s\" in \"%s\"", c->value, err);
	}
	mfd_config_free(cfg);
}

static void test_messages(UNUSED void **state)
{
	const struct mfd__cfg_key *k = mfd__config_find("channels");
	struct mfd_config cfg;
	char err[256], big[300], small[16];

	mfd__config_defaults(&cfg);
	assert_int_equal(mfd__config_parse(&cfg, k, "99", err, sizeof(err)),
			 MFD_ECONFIG);
	assert_string_equal(err, "channels: 99 is out of range 1..64");

	assert_int_equal(mfd__config_parse(&cfg, mfd__config_find("io-timeout"),
					   "50ms", err, sizeof(err)),
			 MFD_ECONFIG);
	assert_string_equal(
		err, "io-timeout: 50ms is out of range 100ms..3600000ms");

	/* Control characters never break the line; long values are cut. */
	assert_int_equal(
		mfd__config_parse(&cfg, k, "1\n2\r3\x1b", err, sizeof(err)),
		MFD_ECONFIG);
	assert_null(strchr(err, '\n'));
	assert_null(strchr(err, '\r'));
	assert_null(strchr(err, '\x1b'));
	memset(big, '7', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	assert_int_equal(mfd__config_parse(&cfg, k, big, err, sizeof(err)),
			 MFD_ECONFIG);
	assert_true(strlen(err) < 150);
	assert_non_null(strstr(err, "..."));

	/* A small or absent buffer: truncated, terminated, or left alone. */
	assert_int_equal(mfd__config_parse(&cfg, k, "99", small, sizeof(small)),
			 MFD_ECONFIG);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_int_equal(mfd__config_parse(&cfg, k, "99", NULL, 0),
			 MFD_ECONFIG);
	assert_int_equal(mfd__config_parse(&cfg, k, "99", err, 0), MFD_ECONFIG);
	assert_int_equal(mfd__config_parse(&cfg, k, NULL, err, sizeof(err)),
			 MFD_ECONFIG);
	assert_int_equal(mfd__config_parse(&cfg, NULL, "1", err, sizeof(err)),
			 MFD_ECONFIG);
	assert_int_equal(cfg.channels, 2);
}

/* ---- keys ---- */

static void test_key_forms(UNUSED void **state)
{
	mfd_config *cfg = new_config();
	static const char *const unknown[] = {
		"",
		"channel",
		"Channels",
		"migration",
		"migration.",
		".channels",
		"Migration.channels",
		"other.channels",
		"migration.channels.x",
		"migration..channels",
		"migrationchannels",
		"channels ",
		"migration. channels",
	};
	char buf[64];

	assert_ptr_equal(mfd__config_find("channels"),
			 mfd__config_find("migration.channels"));
	for (const struct mfd__cfg_key *k = mfd__cfg_keys; k->name; k++) {
		char full[128];

		snprintf(full, sizeof(full), "%s.%s", k->section, k->name);
		assert_ptr_equal(mfd__config_find(k->name), k);
		assert_ptr_equal(mfd__config_find(full), k);
	}
	set_ok(cfg, "migration.channels", "9", "9");
	assert_get(cfg, "channels", "9");
	set_ok(cfg, "channels", "10", "10");
	assert_get(cfg, "migration.channels", "10");
	set_ok(cfg, "migration.io-timeout", "2s", "2000ms");

	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		assert_null(mfd__config_find(unknown[i]));
		assert_int_equal(mfd_config_set(cfg, unknown[i], "1"),
				 MFD_ECONFIG);
		assert_int_equal(
			mfd_config_get(cfg, unknown[i], buf, sizeof(buf)),
			-ENOENT);
	}
	assert_null(mfd__config_find(NULL));
	assert_int_equal(mfd_config_set(cfg, NULL, "1"), MFD_ECONFIG);
	assert_int_equal(mfd_config_get(cfg, NULL, buf, sizeof(buf)), -ENOENT);
	assert_get(cfg, "channels", "10");
	mfd_config_free(cfg);
}

static void test_get_buffer(UNUSED void **state)
{
	mfd_config *cfg = new_config();
	char buf[8];

	/* "512" needs 4 bytes with its terminator. */
	assert_int_equal(mfd_config_get(cfg, "packet-pages", buf, 4), 0);
	assert_string_equal(buf, "512");
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(mfd_config_get(cfg, "packet-pages", buf, 3), -ENOSPC);
	assert_int_equal(buf[0], 0); /* no half value that reads as valid */
	assert_int_equal(mfd_config_get(cfg, "verify", buf, 3), -ENOSPC);
	assert_int_equal(mfd_config_get(cfg, "verify", buf, 4), 0);
	assert_string_equal(buf, "off");
	assert_int_equal(mfd_config_get(cfg, "downtime-limit", buf, 5),
			 -ENOSPC);
	assert_int_equal(mfd_config_get(cfg, "downtime-limit", buf, 6), 0);
	assert_string_equal(buf, "300ms");
	assert_int_equal(mfd_config_get(cfg, "channels", buf, 0), -ENOSPC);
	assert_int_equal(mfd_config_get(cfg, "channels", NULL, 0), -ENOSPC);
	/* An unknown key is reported as such, whatever the buffer. */
	assert_int_equal(mfd_config_get(cfg, "nope", buf, 0), -ENOENT);
	mfd_config_free(cfg);
}

static void test_enum(UNUSED void **state)
{
	mfd_config *cfg = new_config();
	const struct mfd__cfg_key *k = mfd__config_find("compression");
	char err[256];

	set_ok(cfg, "compression", "zstd", "zstd");
	assert_int_equal(cfg->compression, 1);
	set_ok(cfg, "compression", "NONE", "none");
	assert_int_equal(cfg->compression, 0);
	set_ok(cfg, "zstd-level", "19", "19");
	assert_int_equal(mfd_config_set(cfg, "zstd-level", "20"), MFD_ECONFIG);
	assert_int_equal(mfd_config_set(cfg, "zstd-level", "0"), MFD_ECONFIG);
	const char *bad[] = { "", "lz4", "zstd ", "1", "zst" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mfd_config before = *cfg;

		assert_int_equal(
			mfd__config_parse(cfg, k, bad[i], err, sizeof(err)),
			MFD_ECONFIG);
		assert_memory_equal(cfg, &before, sizeof(before));
		print_message("%s\n", err);
		assert_non_null(strstr(err, "none/zstd"));
	}
	mfd_config_free(cfg);
}

/* ---- enum and text keys (TLS) ---- */

static void test_tls_keys(UNUSED void **state)
{
	mfd_config *cfg = new_config();
	struct mfd_config before;
	char err[256], big[MFD__CFG_PATH_MAX + 1], buf[MFD__CFG_PATH_MAX];
	/* Names are case-insensitive (CERT is cert), nothing else passes. */
	static const char *const bad_modes[] = { "",	   "on",   "1",
						 "tls1.3", "psk ", "cert\n" };

	set_ok(cfg, "tls", "cert", "cert");
	assert_int_equal(cfg->tls, MFD__TLS_CERT);
	set_ok(cfg, "tls", "psk", "psk");
	assert_int_equal(cfg->tls, MFD__TLS_PSK);
	set_ok(cfg, "migration.tls", "off", "off");
	assert_int_equal(cfg->tls, MFD__TLS_OFF);
	before = *cfg;
	for (size_t i = 0; i < sizeof(bad_modes) / sizeof(bad_modes[0]); i++) {
		assert_int_equal(mfd__config_parse(cfg, mfd__config_find("tls"),
						   bad_modes[i], err,
						   sizeof(err)),
				 MFD_ECONFIG);
		assert_memory_equal(cfg, &before, sizeof(before));
		assert_non_null(strstr(err, "off/cert/psk"));
		assert_true(strncmp(err, "tls:", 4) == 0);
	}

	set_ok(cfg, "tls-ca", "/etc/multifd/ca.pem", "/etc/multifd/ca.pem");
	assert_string_equal(cfg->tls_ca, "/etc/multifd/ca.pem");
	set_ok(cfg, "tls-ca", "a b", "a b");
	set_ok(cfg, "tls-ca", "", ""); /* unset again */
	set_ok(cfg, "tls-hostname", "dest.example", "dest.example");
	set_ok(cfg, "tls-verify-peer", "on", "on");
	assert_true(cfg->tls_verify_peer);

	/* The longest path fits, one byte more does not. */
	memset(big, 'p', sizeof(big));
	big[MFD__CFG_PATH_MAX - 1] = 0;
	assert_int_equal(mfd_config_set(cfg, "tls-cert", big), 0);
	assert_int_equal(mfd_config_get(cfg, "tls-cert", buf, sizeof(buf)), 0);
	assert_string_equal(buf, big);
	assert_int_equal(mfd_config_get(cfg, "tls-cert", buf, 10), -ENOSPC);
	before = *cfg;
	big[MFD__CFG_PATH_MAX - 1] = 'p';
	big[MFD__CFG_PATH_MAX] = 0;
	assert_int_equal(mfd__config_parse(cfg, mfd__config_find("tls-cert"),
					   big, err, sizeof(err)),
			 MFD_ECONFIG);
	assert_non_null(strstr(err, "0..511 bytes"));
	assert_true(strlen(err) < 150);
	/* Control characters would break log lines. */
	assert_int_equal(mfd_config_set(cfg, "tls-key", "a\nb"), MFD_ECONFIG);
	assert_int_equal(mfd_config_set(cfg, "tls-key", "a\x1b"), MFD_ECONFIG);
	assert_int_equal(mfd_config_set(cfg, "tls-hostname", NULL),
			 MFD_ECONFIG);
	memset(big, 'h', 257);
	big[256] = 0;
	assert_int_equal(mfd_config_set(cfg, "tls-hostname", big), MFD_ECONFIG);
	assert_memory_equal(cfg, &before, sizeof(before));
	mfd_config_free(cfg);
}

static void test_enums(UNUSED void **state)
{
	mfd_config *cfg = new_config();
	const struct mfd__cfg_key *k = mfd__config_find("dirty-tracker");
	struct mfd_config before;
	char err[256];

	assert_int_equal(mfd_config_set(cfg, "dirty-tracker", "uffd-wp"), 0);
	assert_get(cfg, "dirty-tracker", "uffd-wp");
	assert_int_equal(cfg->dirty_tracker, 1);
	assert_int_equal(mfd_config_set(cfg, "timeout-policy", "cancel"), 0);
	assert_get(cfg, "timeout-policy", "cancel");
	before = *cfg;
	/* Names match in any case, but no index and no prefix. */
	assert_int_equal(mfd_config_set(cfg, "dirty-tracker", "1"),
			 MFD_ECONFIG);
	assert_int_equal(mfd_config_set(cfg, "dirty-tracker", "uffd"),
			 MFD_ECONFIG);
	assert_memory_equal(cfg, &before, sizeof(before));
	assert_int_equal(mfd__config_parse(cfg, k, "kvm", err, sizeof(err)),
			 MFD_ECONFIG);
	assert_string_equal(err, "dirty-tracker: \"kvm\" is not a known value "
				 "(expected one of manual/uffd-wp)");
	mfd_config_free(cfg);
}

static void test_null_args(UNUSED void **state)
{
	mfd_config *cfg = new_config();
	char buf[16];

	assert_int_equal(MFD_ECONFIG, -1016);
	assert_int_equal(mfd_config_new(NULL), -EINVAL);
	mfd_config_free(NULL);
	assert_int_equal(mfd_config_set(NULL, "channels", "1"), -EINVAL);
	assert_int_equal(mfd_config_get(NULL, "channels", buf, sizeof(buf)),
			 -EINVAL);
	assert_int_equal(mfd_config_set(cfg, "channels", NULL), MFD_ECONFIG);
	assert_get(cfg, "channels", "2");
	mfd_config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_defaults_fn),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_size_suffixes),
		cmocka_unit_test(test_no_suffix_where_not_size),
		cmocka_unit_test(test_time_suffixes),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_messages),
		cmocka_unit_test(test_key_forms),
		cmocka_unit_test(test_get_buffer),
		cmocka_unit_test(test_enum),
		cmocka_unit_test(test_tls_keys),
		cmocka_unit_test(test_enums),
		cmocka_unit_test(test_null_args),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
