/* SPDX-License-Identifier: MIT */
/* The pre-copy decision (converge.h). */
#include "multifd/converge.h"

void mfd__converge_settings_from(struct mfd__converge_settings *set,
				 const struct mfd_config *cfg)
{
	*set = (struct mfd__converge_settings){
		.downtime_limit_ms = cfg->downtime_limit_ms,
		.max_rounds = cfg->max_rounds,
		.precopy_timeout_ms = cfg->precopy_timeout_ms,
		.cancel_on_timeout = cfg->timeout_policy == MFD__POLICY_CANCEL,
		.auto_converge = cfg->auto_converge,
		.throttle_threshold = cfg->throttle_threshold,
		.throttle_initial = cfg->throttle_initial,
		.throttle_increment = cfg->throttle_increment,
		.throttle_max = cfg->throttle_max,
	};
}

/* A round too short to time says little: the estimate is that of the
 * last round that was not. */
static uint64_t bandwidth(const struct mfd__converge_in *in)
{
	for (unsigned i = in->nrounds; i-- > 0;) {
		const mfd_round_stats *r = &in->rounds[i];
		if (r->ns > 1000000 && r->bytes > 0)
			return (uint64_t)((double)r->bytes * 1e9 /
					  (double)r->ns);
	}
	return 0;
}

static bool too_fast(const struct mfd__converge_in *in,
		     const mfd_round_stats *r)
{
	return (double)r->dirty_bytes >
	       (double)r->bytes * in->set->throttle_threshold / 100.0;
}

/*
 * Auto-converge, QEMU's rule: after two rounds in which the guest dirtied
 * more than throttle-threshold percent of what was sent, throttle at
 * throttle-initial, then step by throttle-increment up to throttle-max.
 * The two rounds are counted since the throttle last changed (the rounds
 * recorded at the throttle now in force), a step every second one.
 */
static uint32_t next_throttle(const struct mfd__converge_in *in)
{
	const struct mfd__converge_settings *set = in->set;
	const mfd_round_stats *last = &in->rounds[in->nrounds - 1];
	if (!set->auto_converge || !too_fast(in, last))
		return in->throttle;
	unsigned high = 0;
	for (unsigned i = in->nrounds; i-- > 0;) {
		if (in->rounds[i].throttle_pct != in->throttle)
			break;
		high += too_fast(in, &in->rounds[i]);
	}
	if (high % 2)
		return in->throttle;
	uint32_t pct = in->throttle ? in->throttle + set->throttle_increment
				    : set->throttle_initial;
	return pct > set->throttle_max ? set->throttle_max : pct;
}

void mfd__converge_decide(const struct mfd__converge_in *in,
			  struct mfd__converge_out *out)
{
	const struct mfd__converge_settings *set = in->set;
	const mfd_round_stats *last = &in->rounds[in->nrounds - 1];
	uint64_t pending = last->dirty_bytes;
	out->bandwidth_bps = bandwidth(in);
	double expected_ms =
		out->bandwidth_bps
			? (double)pending * 1000.0 / (double)out->bandwidth_bps
			: 1e18;
	out->expected_downtime_ns =
		out->bandwidth_bps ? (uint64_t)(expected_ms * 1e6) : UINT64_MAX;
	out->throttle = in->throttle;
	if (pending == 0 || expected_ms <= (double)set->downtime_limit_ms) {
		out->action = MFD__CONV_SWITCHOVER;
		out->reason = "converged";
		return;
	}
	/* Throttling still applies in the round that reaches a limit, as
	 * it always did: the hook sees the step, then 0 at the end. */
	out->throttle = next_throttle(in);
	out->action = out->throttle != in->throttle ? MFD__CONV_THROTTLE
						    : MFD__CONV_CONTINUE;
	out->reason = out->action == MFD__CONV_THROTTLE ? "auto-converge"
							: "not converged";
	const char *why = NULL;
	if (last->round + 1 >= set->max_rounds)
		why = "max-rounds";
	else if (set->precopy_timeout_ms &&
		 in->elapsed_ns >= set->precopy_timeout_ms * 1000000)
		why = "precopy-timeout";
	if (why) {
		out->action = set->cancel_on_timeout ? MFD__CONV_CANCEL
						     : MFD__CONV_FORCE;
		out->reason = why;
	}
}

/* Post-copy's switch policy (converge.h). */
const char *mfd__postcopy_decide(const struct mfd__postcopy_policy *p,
				 bool requested,
				 const struct mfd__converge_in *in,
				 const struct mfd__converge_out *pre)
{
	const mfd_round_stats *last = &in->rounds[in->nrounds - 1];

	if (p->mode == MFD__POSTCOPY_OFF || pre->action == MFD__CONV_SWITCHOVER)
		return NULL;
	if (requested)
		return "requested";
	if (p->mode != MFD__POSTCOPY_AUTO)
		return NULL;
	if (pre->action == MFD__CONV_FORCE || pre->action == MFD__CONV_CANCEL)
		return pre->reason;
	if (last->round + 1 >= p->after_rounds)
		return "postcopy-after-rounds";
	if (in->nrounds >= 2 &&
	    last->dirty_bytes >= in->rounds[in->nrounds - 2].dirty_bytes)
		return "not converging";
	return NULL;
}
