/* SPDX-License-Identifier: MIT */
/*
 * The pre-copy decision: after each round's dirty sync, whether to switch
 * over, go on (with or without a new throttle), or give up waiting for
 * convergence (force the switchover, or cancel). A pure function of the
 * round records and the settings: no clock, no I/O, no global, so that it
 * is tested without sockets (tests/test_converge.c). The source's
 * migration thread applies what it returns.
 */
#ifndef MULTIFD_CONVERGE_H
#define MULTIFD_CONVERGE_H

#include <stdbool.h>
#include <stdint.h>

#include "multifd/config.h"
#include "multifd/multifd.h"

struct mfd__converge_settings {
	uint64_t downtime_limit_ms;  /* switch over when expected <= this */
	uint32_t max_rounds;	     /* rounds before the timeout policy */
	uint64_t precopy_timeout_ms; /* 0: none */
	bool cancel_on_timeout;	     /* timeout-policy: cancel, else force */
	bool auto_converge;
	uint32_t throttle_threshold; /* dirtied > this % of sent: too fast */
	uint32_t throttle_initial;   /* percent */
	uint32_t throttle_increment; /* percent per step */
	uint32_t throttle_max;	     /* percent */
};

/* What has happened: the records of the rounds that have ended, oldest
 * first, the last one the round whose dirty sync just ran. */
struct mfd__converge_in {
	const mfd_round_stats *rounds;
	unsigned nrounds;    /* >= 1 */
	uint64_t elapsed_ns; /* pre-copy start until the last dirty sync */
	uint32_t throttle;   /* percent in force now */
	const struct mfd__converge_settings *set;
};

enum mfd__converge_action {
	MFD__CONV_CONTINUE,   /* another round */
	MFD__CONV_THROTTLE,   /* another round, at out.throttle */
	MFD__CONV_SWITCHOVER, /* converged: expected downtime within limit */
	MFD__CONV_FORCE,      /* not converged, switch over anyway */
	MFD__CONV_CANCEL,     /* not converged, fail with MFD_ENOCONVERGE */
};

struct mfd__converge_out {
	enum mfd__converge_action action;
	/* "converged", "auto-converge", "max-rounds", "precopy-timeout" or
	 * "not converged" (static). */
	const char *reason;
	uint32_t throttle; /* percent that should be in force now */
	/* The bandwidth estimate: that of the last round long enough to
	 * time (over 1 ms, bytes sent), else 0; and the expected downtime,
	 * dirty bytes / bandwidth (UINT64_MAX without an estimate). */
	uint64_t bandwidth_bps;
	uint64_t expected_downtime_ns;
};

void mfd__converge_settings_from(struct mfd__converge_settings *set,
				 const struct mfd_config *cfg);
void mfd__converge_decide(const struct mfd__converge_in *in,
			  struct mfd__converge_out *out);

/*
 * Post-copy's switch policy (docs/protocol.md section 10), a separate step
 * after mfd__converge_decide() on the same input and its answer: whether
 * pre-copy hands the guest over to post-copy now. Not wired to a
 * configuration key or to the source yet.
 */
enum mfd__postcopy_mode {
	MFD__POSTCOPY_OFF,
	MFD__POSTCOPY_MANUAL, /* when the hypervisor asks */
	MFD__POSTCOPY_AUTO,   /* when pre-copy does not converge */
};
struct mfd__postcopy_policy {
	enum mfd__postcopy_mode mode;
	uint32_t after_rounds; /* auto: rounds without convergence, >= 1 */
};
/*
 * NULL: pre-copy's answer stands. Else the reason to switch (static):
 * "requested" (manual or auto, the hypervisor asked), and in auto mode
 * "postcopy-after-rounds" (that many rounds ended unconverged), "not
 * converging" (the dirty bytes of the last round did not shrink from the
 * round before, above the downtime limit), or pre-copy's own reason to
 * force or cancel ("max-rounds", "precopy-timeout"): post-copy replaces
 * both. Never when pre-copy converged: a plain switchover costs less.
 */
const char *mfd__postcopy_decide(const struct mfd__postcopy_policy *p,
				 bool requested,
				 const struct mfd__converge_in *in,
				 const struct mfd__converge_out *pre);

#endif /* MULTIFD_CONVERGE_H */
