/* SPDX-License-Identifier: MIT */
/*
 * The pre-copy decision (multifd/converge.c) without sockets: round
 * records in, action and reason out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "multifd/converge.h"

#define MS 1000000ULL

static const struct mfd__converge_settings defaults = {
	.downtime_limit_ms = 300,
	.max_rounds = 30,
	.precopy_timeout_ms = 0,
	.cancel_on_timeout = false,
	.auto_converge = true,
	.throttle_threshold = 50,
	.throttle_initial = 20,
	.throttle_increment = 10,
	.throttle_max = 99,
};

/* A round that sent bytes in ns and found dirty bytes at its sync. */
static mfd_round_stats rnd(uint32_t round, uint32_t throttle, uint64_t bytes,
			   uint64_t ns, uint64_t dirty)
{
	return (mfd_round_stats){ .round = round,
				  .throttle_pct = throttle,
				  .bytes = bytes,
				  .ns = ns,
				  .dirty_bytes = dirty };
}

static struct mfd__converge_out decide(const mfd_round_stats *r, unsigned n,
				       uint32_t throttle,
				       const struct mfd__converge_settings *set,
				       uint64_t elapsed_ns)
{
	struct mfd__converge_in in = { .rounds = r,
				       .nrounds = n,
				       .elapsed_ns = elapsed_ns,
				       .throttle = throttle,
				       .set = set };
	struct mfd__converge_out out;
	memset(&out, 0xa5, sizeof(out));
	mfd__converge_decide(&in, &out);
	return out;
}

/* 1 GB/s; 200 MB dirty is 200 ms: within 300 ms. */
static void test_switchover_within_limit(void **state)
{
	(void)state;
	mfd_round_stats r[] = { rnd(0, 0, 1000000000, 1000 * MS, 200000000) };
	struct mfd__converge_out o = decide(r, 1, 0, &defaults, 1000 * MS);
	assert_int_equal(o.action, MFD__CONV_SWITCHOVER);
	assert_string_equal(o.reason, "converged");
	assert_int_equal(o.bandwidth_bps, 1000000000);
	assert_int_equal(o.expected_downtime_ns, 200 * MS);
	assert_int_equal(o.throttle, 0);
}

/* Nothing dirty: switch over whatever the bandwidth (none measured). */
static void test_switchover_nothing_pending(void **state)
{
	(void)state;
	mfd_round_stats r[] = { rnd(0, 0, 0, 0, 0) };
	struct mfd__converge_out o = decide(r, 1, 0, &defaults, 0);
	assert_int_equal(o.action, MFD__CONV_SWITCHOVER);
	assert_int_equal(o.bandwidth_bps, 0);
	assert_int_equal(o.expected_downtime_ns, UINT64_MAX);
}

/* 400 MB dirty at 1 GB/s is 400 ms; dirtied 40 % of what was sent, below
 * the threshold: another round, no throttle. */
static void test_continue(void **state)
{
	(void)state;
	mfd_round_stats r[] = { rnd(0, 0, 1000000000, 1000 * MS, 400000000) };
	struct mfd__converge_out o = decide(r, 1, 0, &defaults, 1000 * MS);
	assert_int_equal(o.action, MFD__CONV_CONTINUE);
	assert_string_equal(o.reason, "not converged");
	assert_int_equal(o.expected_downtime_ns, 400 * MS);
}

/* A round too short to time keeps the estimate of the last one that was
 * not (here 500 MB/s), rather than dividing by noise. */
static void test_short_round_keeps_estimate(void **state)
{
	(void)state;
	mfd_round_stats r[] = { rnd(0, 0, 500000000, 1000 * MS, 100000000),
				rnd(1, 0, 4096, MS / 2, 100000000) };
	struct mfd__converge_out o = decide(r, 2, 0, &defaults, 1000 * MS);
	assert_int_equal(o.bandwidth_bps, 500000000);
	assert_int_equal(o.expected_downtime_ns, 200 * MS);
	assert_int_equal(o.action, MFD__CONV_SWITCHOVER);
}

/* QEMU's rule: a step after every second round above the threshold,
 * counted since the throttle last changed; capped at throttle-max. */
static void test_auto_converge_steps(void **state)
{
	(void)state;
	uint64_t gb = 1000000000, s = 1000 * MS;
	/* Dirtied 60 % of what was sent, far above the limit. */
	mfd_round_stats r[8];
	r[0] = rnd(0, 0, gb, s, 600000000);
	struct mfd__converge_out o = decide(r, 1, 0, &defaults, s);
	assert_int_equal(o.action, MFD__CONV_CONTINUE);
	assert_int_equal(o.throttle, 0);
	r[1] = rnd(1, 0, gb, s, 600000000);
	o = decide(r, 2, 0, &defaults, 2 * s);
	assert_int_equal(o.action, MFD__CONV_THROTTLE);
	assert_string_equal(o.reason, "auto-converge");
	assert_int_equal(o.throttle, 20);
	/* At 20 %: one high round, nothing; a second, 30 %. */
	r[2] = rnd(2, 20, gb, s, 600000000);
	o = decide(r, 3, 20, &defaults, 3 * s);
	assert_int_equal(o.action, MFD__CONV_CONTINUE);
	assert_int_equal(o.throttle, 20);
	r[3] = rnd(3, 20, gb, s, 600000000);
	o = decide(r, 4, 20, &defaults, 4 * s);
	assert_int_equal(o.action, MFD__CONV_THROTTLE);
	assert_int_equal(o.throttle, 30);
	/* Near the cap: 95 + 10 stops at 99. */
	r[4] = rnd(4, 95, gb, s, 600000000);
	r[5] = rnd(5, 95, gb, s, 600000000);
	o = decide(r, 6, 95, &defaults, 6 * s);
	assert_int_equal(o.throttle, 99);
	/* At the cap: nothing more to do. */
	r[6] = rnd(6, 99, gb, s, 600000000);
	r[7] = rnd(7, 99, gb, s, 600000000);
	o = decide(r, 8, 99, &defaults, 8 * s);
	assert_int_equal(o.action, MFD__CONV_CONTINUE);
	assert_int_equal(o.throttle, 99);
}

/* A round below the threshold between two above does not reset the
 * count, and auto-converge off never throttles. */
static void test_auto_converge_counting(void **state)
{
	(void)state;
	uint64_t gb = 1000000000, s = 1000 * MS;
	mfd_round_stats r[] = { rnd(0, 0, gb, s, 600000000),
				rnd(1, 0, gb, s, 400000000),
				rnd(2, 0, gb, s, 600000000) };
	struct mfd__converge_out o = decide(r, 3, 0, &defaults, 3 * s);
	assert_int_equal(o.action, MFD__CONV_THROTTLE);
	assert_int_equal(o.throttle, 20);
	struct mfd__converge_settings off = defaults;
	off.auto_converge = false;
	o = decide(r, 3, 0, &off, 3 * s);
	assert_int_equal(o.action, MFD__CONV_CONTINUE);
	assert_int_equal(o.throttle, 0);
	/* The round that is itself below the threshold never steps. */
	mfd_round_stats q[] = { rnd(0, 0, gb, s, 600000000),
				rnd(1, 0, gb, s, 400000000) };
	o = decide(q, 2, 0, &defaults, 2 * s);
	assert_int_equal(o.action, MFD__CONV_CONTINUE);
}

/* max-rounds: force or cancel by the policy, never before. */
static void test_max_rounds(void **state)
{
	(void)state;
	uint64_t gb = 1000000000, s = 1000 * MS;
	struct mfd__converge_settings set = defaults;
	set.max_rounds = 3;
	set.auto_converge = false;
	mfd_round_stats r[] = { rnd(0, 0, gb, s, 400000000),
				rnd(1, 0, gb, s, 400000000),
				rnd(2, 0, gb, s, 400000000) };
	struct mfd__converge_out o = decide(r, 2, 0, &set, 2 * s);
	assert_int_equal(o.action, MFD__CONV_CONTINUE);
	o = decide(r, 3, 0, &set, 3 * s);
	assert_int_equal(o.action, MFD__CONV_FORCE);
	assert_string_equal(o.reason, "max-rounds");
	set.cancel_on_timeout = true;
	o = decide(r, 3, 0, &set, 3 * s);
	assert_int_equal(o.action, MFD__CONV_CANCEL);
	assert_string_equal(o.reason, "max-rounds");
	/* Converged in the last allowed round: a switchover, not forced. */
	r[2].dirty_bytes = 100000000;
	o = decide(r, 3, 0, &set, 3 * s);
	assert_int_equal(o.action, MFD__CONV_SWITCHOVER);
}

/* precopy-timeout counts from the start of pre-copy to the last sync. */
static void test_precopy_timeout(void **state)
{
	(void)state;
	uint64_t gb = 1000000000, s = 1000 * MS;
	struct mfd__converge_settings set = defaults;
	set.precopy_timeout_ms = 5000;
	set.cancel_on_timeout = true;
	mfd_round_stats r[] = { rnd(0, 0, gb, s, 400000000) };
	struct mfd__converge_out o = decide(r, 1, 0, &set, 4999 * MS);
	assert_int_equal(o.action, MFD__CONV_CONTINUE);
	o = decide(r, 1, 0, &set, 5000 * MS);
	assert_int_equal(o.action, MFD__CONV_CANCEL);
	assert_string_equal(o.reason, "precopy-timeout");
}

/* The step due in the round that reaches a limit is still returned, as
 * the source always applied it before switching over or cancelling. */
static void test_throttle_with_limit(void **state)
{
	(void)state;
	uint64_t gb = 1000000000, s = 1000 * MS;
	struct mfd__converge_settings set = defaults;
	set.max_rounds = 2;
	mfd_round_stats r[] = { rnd(0, 0, gb, s, 600000000),
				rnd(1, 0, gb, s, 600000000) };
	struct mfd__converge_out o = decide(r, 2, 0, &set, 2 * s);
	assert_int_equal(o.action, MFD__CONV_FORCE);
	assert_int_equal(o.throttle, 20);
}

/* The settings follow the config keys. */
static void test_settings_from_config(void **state)
{
	(void)state;
	struct mfd_config cfg;
	mfd__config_defaults(&cfg);
	cfg.timeout_policy = MFD__POLICY_CANCEL;
	cfg.max_rounds = 7;
	struct mfd__converge_settings set;
	mfd__converge_settings_from(&set, &cfg);
	assert_true(set.cancel_on_timeout);
	assert_int_equal(set.max_rounds, 7);
	assert_int_equal(set.downtime_limit_ms, cfg.downtime_limit_ms);
	assert_int_equal(set.throttle_max, cfg.throttle_max);
}

/* Post-copy's switch policy, after pre-copy's decision on the same
 * rounds: 1 GB/s, 400 MB dirty (400 ms against a 300 ms limit). */
static const char *pc(enum mfd__postcopy_mode mode, uint32_t after,
		      bool requested, const mfd_round_stats *r, unsigned n,
		      const struct mfd__converge_settings *set)
{
	struct mfd__postcopy_policy p = { .mode = mode, .after_rounds = after };
	struct mfd__converge_in in = { .rounds = r,
				       .nrounds = n,
				       .elapsed_ns = n * 1000 * MS,
				       .set = set };
	struct mfd__converge_out out;
	mfd__converge_decide(&in, &out);
	return mfd__postcopy_decide(&p, requested, &in, &out);
}

static void test_postcopy_switch(void **state)
{
	(void)state;
	uint64_t gb = 1000000000, s = 1000 * MS;
	struct mfd__converge_settings set = defaults;
	set.auto_converge = false;
	mfd_round_stats r[] = { rnd(0, 0, gb, s, 500000000),
				rnd(1, 0, gb, s, 400000000),
				rnd(2, 0, gb, s, 350000000),
				rnd(3, 0, gb, s, 100000000) };

	/* off: never, even when asked. */
	assert_null(pc(MFD__POSTCOPY_OFF, 1, true, r, 3, &set));
	/* manual: when asked, and only then. */
	assert_null(pc(MFD__POSTCOPY_MANUAL, 1, false, r, 3, &set));
	assert_string_equal(pc(MFD__POSTCOPY_MANUAL, 1, true, r, 3, &set),
			    "requested");
	/* auto: after that many unconverged rounds, not before, while the
	 * dirty bytes shrink. */
	assert_null(pc(MFD__POSTCOPY_AUTO, 4, false, r, 3, &set));
	assert_string_equal(pc(MFD__POSTCOPY_AUTO, 3, false, r, 3, &set),
			    "postcopy-after-rounds");
	assert_string_equal(pc(MFD__POSTCOPY_AUTO, 30, true, r, 3, &set),
			    "requested");
	/* Converged: a plain switchover, whatever the mode or request. */
	assert_null(pc(MFD__POSTCOPY_AUTO, 1, true, r, 4, &set));
	assert_null(pc(MFD__POSTCOPY_MANUAL, 1, true, r, 4, &set));
}

static void test_postcopy_not_converging(void **state)
{
	(void)state;
	uint64_t gb = 1000000000, s = 1000 * MS;
	struct mfd__converge_settings set = defaults;
	set.auto_converge = false;
	/* The hot set: the same dirty bytes round after round. */
	mfd_round_stats r[] = { rnd(0, 0, gb, s, 400000000),
				rnd(1, 0, gb, s, 400000000) };
	assert_null(pc(MFD__POSTCOPY_AUTO, 30, false, r, 1, &set));
	assert_string_equal(pc(MFD__POSTCOPY_AUTO, 30, false, r, 2, &set),
			    "not converging");
	r[1].dirty_bytes = 399999999;
	assert_null(pc(MFD__POSTCOPY_AUTO, 30, false, r, 2, &set));
	/* Manual mode leaves it to pre-copy. */
	r[1].dirty_bytes = 500000000;
	assert_null(pc(MFD__POSTCOPY_MANUAL, 30, false, r, 2, &set));

	/* Where pre-copy would force or cancel, auto switches instead, with
	 * pre-copy's reason; manual keeps pre-copy's policy. */
	set.max_rounds = 2;
	r[1].dirty_bytes = 350000000;
	assert_string_equal(pc(MFD__POSTCOPY_AUTO, 30, false, r, 2, &set),
			    "max-rounds");
	assert_null(pc(MFD__POSTCOPY_MANUAL, 30, false, r, 2, &set));
	set.max_rounds = 30;
	set.precopy_timeout_ms = 1500;
	assert_string_equal(pc(MFD__POSTCOPY_AUTO, 30, false, r, 2, &set),
			    "precopy-timeout");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_switchover_within_limit),
		cmocka_unit_test(test_switchover_nothing_pending),
		cmocka_unit_test(test_continue),
		cmocka_unit_test(test_short_round_keeps_estimate),
		cmocka_unit_test(test_auto_converge_steps),
		cmocka_unit_test(test_auto_converge_counting),
		cmocka_unit_test(test_max_rounds),
		cmocka_unit_test(test_precopy_timeout),
		cmocka_unit_test(test_throttle_with_limit),
		cmocka_unit_test(test_settings_from_config),
		cmocka_unit_test(test_postcopy_switch),
		cmocka_unit_test(test_postcopy_not_converging),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
