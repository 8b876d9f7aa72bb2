/* SPDX-License-Identifier: MIT */
/*
 * Configuration files (mfd_config_load), the reason text of
 * mfd_config_set_err, key enumeration (mfd_config_key) and the precedence
 * defaults < file < later settings. Public API only.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <multifd/multifd.h>

#define UNUSED __attribute__((unused))

static char dir[64];

static int setup(UNUSED void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/mfd-cfgtest-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(UNUSED void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Writes text to dir/name; returns the path (static buffer). */
static const char *file(const char *name, const char *text)
{
	static char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	return path;
}

static mfd_config *new_config(void)
{
	mfd_config *cfg = NULL;

	assert_int_equal(mfd_config_new(&cfg), 0);
	return cfg;
}

static void assert_get(const mfd_config *cfg, const char *key, const char *want)
{
	char buf[64];

	assert_int_equal(mfd_config_get(cfg, key, buf, sizeof(buf)), 0);
	assert_string_equal(buf, want);
}

/* Every key, enumerated through the public API: a fresh config holds its
 * default, under both spellings, and the range text is the documented one. */
static void test_every_default(UNUSED void **state)
{
	mfd_config *cfg = new_config();
	mfd_config_key_info k;
	unsigned n = 0;

	for (; !mfd_config_key(n, &k, sizeof(k)); n++) {
		char full[128];

		assert_non_null(k.section);
		assert_non_null(k.name);
		assert_non_null(k.doc);
		assert_true(k.min <= k.max);
		assert_true(
			!strcmp(k.type, "uint") || !strcmp(k.type, "size") ||
			!strcmp(k.type, "bool") || !strcmp(k.type, "time") ||
			!strcmp(k.type, "enum") || !strcmp(k.type, "path") ||
			!strcmp(k.type, "text"));
		snprintf(full, sizeof(full), "%s.%s", k.section, k.name);
		assert_get(cfg, k.name, k.def);
		assert_get(cfg, full, k.def);
		assert_true(k.range[0] != 0);
	}
	assert_true(n >= 7);
	assert_int_equal(mfd_config_key(n, &k, sizeof(k)), -ENOENT);
	assert_int_equal(mfd_config_key(n + 1000, &k, sizeof(k)), -ENOENT);
	assert_int_equal(mfd_config_key(0, NULL, sizeof(k)), -EINVAL);

	/* A caller with an older, shorter struct gets only its part. */
	{
		unsigned char small[offsetof(mfd_config_key_info, doc)];

		memset(small, 0xAA, sizeof(small));
		assert_int_equal(
			mfd_config_key(0, (void *)small, sizeof(small)), 0);
	}
	mfd_config_free(cfg);
}

static void test_load_good(UNUSED void **state)
{
	mfd_config *cfg = new_config();
	char err[256] = "x";
	const char *p = file("good.ini", "# a comment\n"
					 "; another\n"
					 "\n"
					 "[migration]\n"
					 "channels = 8\n"
					 "verify=yes ; inline comment\n"
					 "  downtime-limit   =   2s  \n"
					 "io-timeout = 45000\n"
					 "channels = 6\n");

	assert_int_equal(mfd_config_load(cfg, p, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_get(cfg, "channels", "6"); /* the later line wins */
	assert_get(cfg, "verify", "on");
	assert_get(cfg, "downtime-limit", "2000ms");
	assert_get(cfg, "io-timeout", "45000ms");
	assert_get(cfg, "packet-pages", "512"); /* untouched: default */
	/* An empty file changes nothing. */
	assert_int_equal(
		mfd_config_load(cfg, file("empty.ini", ""), err, sizeof(err)),
		0);
	assert_get(cfg, "channels", "6");
	mfd_config_free(cfg);
}

/* Each bad file: the error names the file and the line of the first bad
 * line, and the config is left exactly as it was. */
static void test_load_bad_lines(UNUSED void **state)
{
	static const struct {
		const char *text;
		const char *want; /* after "PATH:" */
	} cases[] = {
		{ "[migration]\nchannels = 4\nverify = on\n\n\n\nchannels = "
		  "99\n",
		  "7: channels: 99 is out of range 1..64" },
		{ "[migration]\nchanels = 4\n",
		  "2: unknown key migration.chanels" },
		{ "[migration]\n\n\nverify = maybe\n",
		  "4: verify: \"maybe\" is not a boolean (expected on/off, "
		  "true/false, yes/no or 1/0)" },
		{ "channels = 4\n", "1: channels: key outside a section (put "
				    "it under [migration])" },
		{ "[bench]\nchannels = 4\n", "2: unknown key bench.channels" },
		{ "[migration]\nchannels = 4\nthis line has no equals sign\n"
		  "channels = 999\n",
		  "3: syntax error (expected [section] or key = value)" },
		{ "[migration\nchannels = 4\n",
		  "1: syntax error (expected [section] or key = value)" },
		{ "[migration]\ndowntime-limit = 5 s\n",
		  "2: downtime-limit: \"5 s\" is not valid (expected a whole "
		  "number "
		  "of ms, or with an ms or s suffix, in 1ms..3600000ms)" },
		{ "[migration]\npacket-pages =\n",
		  "2: packet-pages: empty value" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mfd_config *cfg = new_config();
		char name[32], err[512], want[512];
		const char *p;

		assert_int_equal(mfd_config_set(cfg, "channels", "3"), 0);
		snprintf(name, sizeof(name), "bad%zu.ini", i);
		p = file(name, cases[i].text);
		assert_int_equal(mfd_config_load(cfg, p, err, sizeof(err)),
				 MFD_ECONFIG);
		snprintf(want, sizeof(want), "%s:%s", p, cases[i].want);
		if (strncmp(err, want, strlen(want)))
			fail_msg("case %zu:\n got  %s\n want %s", i, err, want);
		/* all or nothing */
		assert_get(cfg, "channels", "3");
		assert_get(cfg, "verify", "off");
		mfd_config_free(cfg);
	}
}

static void test_load_errors(UNUSED void **state)
{
	mfd_config *cfg = new_config();
	char err[256], path[128], small[8];

	snprintf(path, sizeof(path), "%s/missing.ini", dir);
	assert_int_equal(mfd_config_load(cfg, path, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "missing.ini: No such file"));
	assert_int_equal(mfd_config_load(cfg, dir, err, sizeof(err)) < 0, 1);
	assert_int_equal(mfd_config_load(NULL, path, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(mfd_config_load(cfg, NULL, err, sizeof(err)), -EINVAL);
	/* No buffer, or a short one: same result, truncated text. */
	assert_int_equal(mfd_config_load(cfg,
					 file("b.ini", "[migration]\nx = 1\n"),
					 NULL, 0),
			 MFD_ECONFIG);
	assert_int_equal(mfd_config_load(cfg,
					 file("b.ini", "[migration]\nx=1\n"),
					 small, sizeof(small)),
			 MFD_ECONFIG);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	mfd_config_free(cfg);
}

static void test_set_err(UNUSED void **state)
{
	mfd_config *cfg = new_config();
	char err[256];

	assert_int_equal(mfd_config_set_err(cfg, "migration.channels", "99",
					    err, sizeof(err)),
			 MFD_ECONFIG);
	assert_string_equal(err, "channels: 99 is out of range 1..64");
	assert_int_equal(mfd_config_set_err(cfg, "nope", "1", err, sizeof(err)),
			 MFD_ECONFIG);
	assert_string_equal(err, "unknown key \"nope\"");
	assert_int_equal(mfd_config_set_err(cfg, "bench.channels", "1", err,
					    sizeof(err)),
			 MFD_ECONFIG);
	assert_int_equal(
		mfd_config_set_err(cfg, "channels", "7", err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_get(cfg, "channels", "7");
	assert_int_equal(mfd_config_set_err(cfg, "channels", "x", NULL, 0),
			 MFD_ECONFIG);
	mfd_config_free(cfg);
}

/* defaults < file < command line, as the bench and a hypervisor apply
 * them: load, then set. */
static void test_precedence(UNUSED void **state)
{
	mfd_config *cfg = new_config();
	char err[256];
	const char *p = file("prec.ini", "[migration]\nchannels = 4\n"
					 "packet-pages = 64\n");

	assert_get(cfg, "channels", "2");
	assert_int_equal(mfd_config_load(cfg, p, err, sizeof(err)), 0);
	assert_get(cfg, "channels", "4");
	assert_get(cfg, "packet-pages", "64");
	assert_get(cfg, "max-rounds", "30");
	assert_int_equal(mfd_config_set(cfg, "migration.channels", "5"), 0);
	assert_get(cfg, "channels", "5");
	assert_get(cfg, "packet-pages", "64");
	mfd_config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_default),
		cmocka_unit_test(test_load_good),
		cmocka_unit_test(test_load_bad_lines),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_set_err),
		cmocka_unit_test(test_precedence),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
