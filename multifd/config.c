/* SPDX-License-Identifier: MIT */
/*
 * Configuration keys: one table drives defaults, parsing, range checks,
 * printing and docs/config.md. A value is parsed completely and checked
 * before it is stored, so a rejected value leaves the config as it was.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "multifd/config.h"

_Static_assert(sizeof(bool) == 1, "bool fields are stored as one byte");

#define FIELD(f)                                                               \
	.offset = offsetof(struct mfd_config, f),                              \
	.width = sizeof(((struct mfd_config *)0)->f)

/*
 * Defaults are written the way mfd_config_get() prints them, so that the
 * table, the printed values and docs/config.md all read the same.
 */
static const char *const tracker_choices[] = {"manual", "uffd-wp", NULL};
static const char *const policy_choices[] = {"force", "cancel", NULL};

const struct mfd__cfg_key mfd__cfg_keys[] = {
    {
	.section = "migration",
	.name = "channels",
	.type = MFD__CFG_UINT,
	.def = "2",
	.min = 1,
	.max = 64,
	FIELD(channels),
	.doc =
	    "Number of data channels, each with its own connection and worker.",
    },
    {
	.section = "migration",
	.name = "packet-pages",
	.type = MFD__CFG_UINT,
	.def = "128",
	.min = 1,
	.max = 1024,
	FIELD(packet_pages),
	.doc = "Maximum number of guest pages in one packet.",
    },
    {
	.section = "migration",
	.name = "verify",
	.type = MFD__CFG_BOOL,
	.def = "off",
	.min = 0,
	.max = 1,
	FIELD(verify),
	.doc = "Send a digest of every RAM block at the end; the destination "
	       "checks it.",
    },
    {
	.section = "migration",
	.name = "max-rounds",
	.type = MFD__CFG_UINT,
	.def = "30",
	.min = 1,
	.max = 100000,
	FIELD(max_rounds),
	.doc = "Most pre-copy rounds; when reached without meeting the "
	       "downtime target, timeout-policy applies.",
    },
    {
	.section = "migration",
	.name = "downtime-limit",
	.type = MFD__CFG_MS,
	.def = "300ms",
	.min = 1,
	.max = 3600000,
	FIELD(downtime_limit_ms),
	.doc = "Downtime target: switch over once the remaining dirty pages "
	       "can be sent within it.",
    },
    {
	.section = "migration",
	.name = "connect-timeout",
	.type = MFD__CFG_MS,
	.def = "5000ms",
	.min = 100,
	.max = 600000,
	FIELD(connect_timeout_ms),
	.doc = "Time allowed to connect a channel and complete its handshake.",
    },
    {
	.section = "migration",
	.name = "io-timeout",
	.type = MFD__CFG_MS,
	.def = "30000ms",
	.min = 100,
	.max = 3600000,
	FIELD(io_timeout_ms),
	.doc = "A channel that makes no progress for this long fails the "
	       "migration.",
    },
    {
	.section = "migration",
	.name = "dirty-tracker",
	.type = MFD__CFG_ENUM,
	.def = "manual",
	.min = 0,
	.max = 1,
	FIELD(dirty_tracker),
	.choices = tracker_choices,
	.doc = "Where dirty pages come from: manual (mfd_source_mark_dirty and "
	       "the sync_dirty hook) or uffd-wp (the kernel's write "
	       "protection of the source RAM; falls back to manual where "
	       "unsupported).",
    },
    {
	.section = "migration",
	.name = "max-bandwidth",
	.type = MFD__CFG_UINT,
	.size = true,
	.def = "0",
	.min = 0,
	.max = 1ULL << 40,
	FIELD(max_bandwidth),
	.doc = "Bytes per second all channels together may send before "
	       "switchover (0 = unlimited); never applied during downtime.",
    },
    {
	.section = "migration",
	.name = "auto-converge",
	.type = MFD__CFG_BOOL,
	.def = "off",
	.min = 0,
	.max = 1,
	FIELD(auto_converge),
	.doc = "Throttle the guest through the throttle hook while it dirties "
	       "memory faster than it can be sent.",
    },
    {
	.section = "migration",
	.name = "cpu-throttle-initial",
	.type = MFD__CFG_UINT,
	.def = "20",
	.min = 1,
	.max = 99,
	FIELD(throttle_initial),
	.doc = "First throttle percentage of auto-converge.",
    },
    {
	.section = "migration",
	.name = "cpu-throttle-increment",
	.type = MFD__CFG_UINT,
	.def = "10",
	.min = 1,
	.max = 99,
	FIELD(throttle_increment),
	.doc = "Throttle percentage added each time auto-converge steps up.",
    },
    {
	.section = "migration",
	.name = "cpu-throttle-max",
	.type = MFD__CFG_UINT,
	.def = "99",
	.min = 1,
	.max = 99,
	FIELD(throttle_max),
	.doc = "Highest throttle percentage auto-converge applies.",
    },
    {
	.section = "migration",
	.name = "throttle-trigger-threshold",
	.type = MFD__CFG_UINT,
	.def = "50",
	.min = 1,
	.max = 100,
	FIELD(throttle_threshold),
	.doc = "Auto-converge steps up after two rounds in which the guest "
	       "dirtied more than this percentage of the bytes sent.",
    },
    {
	.section = "migration",
	.name = "precopy-timeout",
	.type = MFD__CFG_MS,
	.def = "0ms",
	.min = 0,
	.max = 86400000,
	FIELD(precopy_timeout_ms),
	.doc = "Longest pre-copy phase (0 = no limit); then timeout-policy "
	       "applies.",
    },
    {
	.section = "migration",
	.name = "timeout-policy",
	.type = MFD__CFG_ENUM,
	.def = "force",
	.min = 0,
	.max = 1,
	FIELD(timeout_policy),
	.choices = policy_choices,
	.doc = "When max-rounds or precopy-timeout ends pre-copy unconverged: "
	       "force (switch over anyway) or cancel (fail with "
	       "MFD_ENOCONVERGE, the guest runs on at the source).",
    },
    {.name = NULL},
};

/* Longest part of a rejected value echoed in a message. */
#define ECHO_MAX 40

/* The value as it may appear on one line: printable, bounded. */
static void echo(char out[ECHO_MAX + 4], const char *value)
{
	size_t n;

	for (n = 0; n < ECHO_MAX && value[n]; n++) {
		unsigned char c = (unsigned char)value[n];

		out[n] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	if (value[n]) {
		memcpy(out + n, "...", 3);
		n += 3;
	}
	out[n] = 0;
}

/* "1..64", "100ms..600000ms" or "on/off". */
static void range_text(char *out, size_t outlen, const struct mfd__cfg_key *k)
{
	switch (k->type) {
	case MFD__CFG_BOOL:
		snprintf(out, outlen, "on/off");
		break;
	case MFD__CFG_ENUM: {
		size_t used = 0;

		out[0] = 0;
		for (unsigned i = 0; k->choices[i] && used < outlen; i++)
			used += (size_t)snprintf(out + used, outlen - used,
						 "%s%s", i ? "/" : "",
						 k->choices[i]);
		break;
	}
	case MFD__CFG_MS:
		snprintf(out, outlen, "%" PRIu64 "ms..%" PRIu64 "ms", k->min,
			 k->max);
		break;
	default:
		snprintf(out, outlen, "%" PRIu64 "..%" PRIu64, k->min, k->max);
		break;
	}
}

/* What a value of k looks like, for messages. */
static void expect_text(char *out, size_t outlen, const struct mfd__cfg_key *k)
{
	char range[64];

	range_text(range, sizeof(range), k);
	switch (k->type) {
	case MFD__CFG_BOOL:
		snprintf(out, outlen, "on/off, true/false, yes/no or 1/0");
		break;
	case MFD__CFG_ENUM:
		snprintf(out, outlen, "one of %s", range);
		break;
	case MFD__CFG_MS:
		snprintf(
		    out, outlen,
		    "a whole number of ms, or with an ms or s suffix, in %s",
		    range);
		break;
	default:
		snprintf(out, outlen, "a decimal integer%s in %s",
			 k->size ? " with optional K/M/G suffix," : "", range);
		break;
	}
}

enum bad {
	BAD_EMPTY = 1,
	BAD_NEGATIVE,
	BAD_SYNTAX,
	BAD_OVERFLOW,
	BAD_RANGE,
};

static int reject(const struct mfd__cfg_key *k, const char *value, enum bad why,
		  char *err, size_t errlen)
{
	char v[ECHO_MAX + 4], range[64], expect[160];

	if (!err || !errlen)
		return MFD_ECONFIG;
	echo(v, value);
	range_text(range, sizeof(range), k);
	expect_text(expect, sizeof(expect), k);
	switch (why) {
	case BAD_EMPTY:
		snprintf(err, errlen, "%s: empty value (expected %s)", k->name,
			 expect);
		break;
	case BAD_NEGATIVE:
		snprintf(err, errlen, "%s: \"%s\" is negative (expected %s)",
			 k->name, v, expect);
		break;
	case BAD_OVERFLOW:
		snprintf(err, errlen, "%s: \"%s\" is too large (expected %s)",
			 k->name, v, expect);
		break;
	case BAD_RANGE:
		snprintf(err, errlen, "%s: %s is out of range %s", k->name, v,
			 range);
		break;
	default:
		snprintf(err, errlen, "%s: \"%s\" is not %s (expected %s)",
			 k->name, v,
			 k->type == MFD__CFG_BOOL ? "a boolean" : "valid",
			 expect);
		break;
	}
	return MFD_ECONFIG;
}

/*
 * Leading decimal digits of s into *out; *end points past them.
 * 0, -EINVAL when there is no digit, -ERANGE on overflow.
 */
static int parse_digits(const char *s, uint64_t *out, const char **end)
{
	uint64_t v = 0;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*out = v;
	*end = p;
	return 0;
}

static int mul_checked(uint64_t *v, uint64_t m)
{
	if (*v > UINT64_MAX / m)
		return -ERANGE;
	*v *= m;
	return 0;
}

/* Number and suffix of a UINT or MS value; 0 or an enum bad. */
static int parse_number(const struct mfd__cfg_key *k, const char *value,
			uint64_t *out)
{
	const char *end;
	uint64_t v;
	int ret;

	if (value[0] == '-')
		return BAD_NEGATIVE;
	ret = parse_digits(value, &v, &end);
	if (ret == -ERANGE)
		return BAD_OVERFLOW;
	if (ret)
		return BAD_SYNTAX;

	if (k->type == MFD__CFG_MS) {
		if (!strcmp(end, "s"))
			ret = mul_checked(&v, 1000);
		else if (*end && strcmp(end, "ms"))
			return BAD_SYNTAX;
	} else if (*end) {
		uint64_t m;

		if (!k->size || end[1])
			return BAD_SYNTAX;
		switch (end[0]) {
		case 'K':
		case 'k':
			m = 1ULL << 10;
			break;
		case 'M':
		case 'm':
			m = 1ULL << 20;
			break;
		case 'G':
		case 'g':
			m = 1ULL << 30;
			break;
		default:
			return BAD_SYNTAX;
		}
		ret = mul_checked(&v, m);
	}
	if (ret)
		return BAD_OVERFLOW;
	*out = v;
	return 0;
}

static int parse_bool(const char *value, uint64_t *out)
{
	static const char *const yes[] = {"on", "true", "yes", "1"};
	static const char *const no[] = {"off", "false", "no", "0"};

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcasecmp(value, yes[i])) {
			*out = 1;
			return 0;
		}
		if (!strcasecmp(value, no[i])) {
			*out = 0;
			return 0;
		}
	}
	return BAD_SYNTAX;
}

static int parse_choice(const struct mfd__cfg_key *k, const char *value,
			uint64_t *out)
{
	for (uint64_t i = 0; k->choices[i]; i++) {
		if (!strcmp(value, k->choices[i])) {
			*out = i;
			return 0;
		}
	}
	return BAD_SYNTAX;
}

static int store(struct mfd_config *cfg, const struct mfd__cfg_key *k,
		 uint64_t v)
{
	char *p = (char *)cfg + k->offset;

	switch (k->width) {
	case 1: {
		uint8_t x = (uint8_t)v;

		memcpy(p, &x, 1);
		return 0;
	}
	case 4: {
		uint32_t x = (uint32_t)v;

		memcpy(p, &x, 4);
		return 0;
	}
	case 8:
		memcpy(p, &v, 8);
		return 0;
	}
	return MFD_ECONFIG;
}

static uint64_t load(const struct mfd_config *cfg, const struct mfd__cfg_key *k)
{
	const char *p = (const char *)cfg + k->offset;

	switch (k->width) {
	case 1: {
		uint8_t x;

		memcpy(&x, p, 1);
		return x;
	}
	case 4: {
		uint32_t x;

		memcpy(&x, p, 4);
		return x;
	}
	case 8: {
		uint64_t x;

		memcpy(&x, p, 8);
		return x;
	}
	}
	return 0;
}

int mfd__config_parse(struct mfd_config *cfg, const struct mfd__cfg_key *k,
		      const char *value, char *err, size_t errlen)
{
	uint64_t v = 0;
	int bad;

	if (!k || !value) {
		if (err && errlen)
			snprintf(err, errlen, "%s: %s", k ? k->name : "(null)",
				 k ? "no value" : "unknown key");
		return MFD_ECONFIG;
	}
	if (!value[0])
		return reject(k, value, BAD_EMPTY, err, errlen);
	if (k->type == MFD__CFG_BOOL)
		bad = parse_bool(value, &v);
	else if (k->type == MFD__CFG_ENUM)
		bad = parse_choice(k, value, &v);
	else
		bad = parse_number(k, value, &v);
	if (bad)
		return reject(k, value, (enum bad)bad, err, errlen);
	if (v < k->min || v > k->max)
		return reject(k, value, BAD_RANGE, err, errlen);
	if (store(cfg, k, v)) {
		if (err && errlen)
			snprintf(err, errlen, "%s: bad field width %zu",
				 k->name, k->width);
		return MFD_ECONFIG;
	}
	return 0;
}

void mfd__config_defaults(struct mfd_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	/* The defaults are strings in the table, parsed like any value;
	 * tests/test_config.c checks that each one parses. */
	for (const struct mfd__cfg_key *k = mfd__cfg_keys; k->name; k++)
		(void)mfd__config_parse(cfg, k, k->def, NULL, 0);
}

const struct mfd__cfg_key *mfd__config_find(const char *key)
{
	const char *dot, *name = key;
	size_t seclen = 0;

	if (!key)
		return NULL;
	dot = strchr(key, '.');
	if (dot) {
		seclen = (size_t)(dot - key);
		name = dot + 1;
	}
	for (const struct mfd__cfg_key *k = mfd__cfg_keys; k->name; k++) {
		if (strcmp(k->name, name))
			continue;
		if (dot && (strlen(k->section) != seclen ||
			    strncmp(k->section, key, seclen)))
			continue;
		return k;
	}
	return NULL;
}

int mfd_config_new(mfd_config **out)
{
	struct mfd_config *cfg;

	if (!out)
		return -EINVAL;
	cfg = malloc(sizeof(*cfg));
	if (!cfg)
		return -ENOMEM;
	mfd__config_defaults(cfg);
	*out = cfg;
	return 0;
}

void mfd_config_free(mfd_config *cfg)
{
	free(cfg);
}

int mfd_config_set(mfd_config *cfg, const char *key, const char *value)
{
	const struct mfd__cfg_key *k;

	if (!cfg)
		return -EINVAL;
	k = mfd__config_find(key);
	if (!k)
		return MFD_ECONFIG;
	return mfd__config_parse(cfg, k, value, NULL, 0);
}

int mfd_config_get(const mfd_config *cfg, const char *key, char *buf,
		   size_t len)
{
	const struct mfd__cfg_key *k;
	uint64_t v;
	int n;

	if (!cfg)
		return -EINVAL;
	k = mfd__config_find(key);
	if (!k)
		return -ENOENT;
	if (!buf || !len)
		return -ENOSPC;
	v = load(cfg, k);
	switch (k->type) {
	case MFD__CFG_BOOL:
		n = snprintf(buf, len, "%s", v ? "on" : "off");
		break;
	case MFD__CFG_ENUM:
		n = snprintf(buf, len, "%s", k->choices[v]);
		break;
	case MFD__CFG_MS:
		n = snprintf(buf, len, "%" PRIu64 "ms", v);
		break;
	default:
		n = snprintf(buf, len, "%" PRIu64, v);
		break;
	}
	if (n < 0 || (size_t)n >= len) {
		buf[0] = 0; /* no truncated value that reads as valid */
		return -ENOSPC;
	}
	return 0;
}
