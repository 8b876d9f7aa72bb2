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
	uint64_t downtime_limit_ms;  /* switch over when expected_q <= this */
	uint32_t max_rounds;	     /* rounds before the timeout policy */
	uint64_t precopy_timeout_ms; /* 0: none */
	bool cancel_on_timeout;	     /* timeout-policy: cancel, else force */
	bool auto_converge;	     /* off when dirty_limit is on */
	bool dirty_limit;	     /* per-vCPU throttles instead */
	uint64_t vcpu_dirty_limit_bps;
	uint32_t throttle_threshold; /* dirtied > this % of sent: too fast */
	uint32_t throttle_initial;   /* percent */
	uint32_t throttle_increment; /* percent per step */
	uint32_t throttle_max;	     /* percent */
	/* The budget holds at this quantile of the rounds' prediction
	 * errors (percent, 51..99); 0 or 50: at the estimate itself. */
	uint32_t downtime_quantile;
};

/* What has happened: the records of the rounds that have ended, oldest
 * first, the last one the round whose dirty sync just ran (its dirty_bytes,
 * sync_ns and device_stop_bytes are what the switchover would face). The
 * fixed costs the records do not hold come beside them. */
struct mfd__converge_in {
	const mfd_round_stats *rounds;
	unsigned nrounds;    /* >= 1 */
	uint64_t elapsed_ns; /* pre-copy start until the last dirty sync */
	uint32_t throttle;   /* percent in force now */
	uint32_t page_size;  /* of the pages counted in rounds[].pages */
	uint64_t stop_ns;    /* stop hook: declared, else last call, else 0 */
	/* The devices' arcs to STOP_COPY after the stop (quiescing their
	 * DMA): declared by the devices, else their slowest arc timed. */
	uint64_t dev_stop_ns;
	uint64_t rtt_ns;     /* a request and its answer on the main channel */
	uint64_t verify_ns;  /* one side's end digests (chunks, 5.5); 0: off */
	bool dirty_limit_on; /* dirty-limit engaged in an earlier round */
	const struct mfd__converge_settings *set;
};

/*
 * The expected downtime in parts (enum mfd_down_part), what the switchover
 * would cost if it began now:
 *   stop    the stop hook (in->stop_ns)
 *   sync    the devices' arcs to STOP_COPY (in->dev_stop_ns), then the
 *           final dirty sync: as long as the CPU time of the second sync
 *           run right after the last round's (sync_cpu_ns: it finds what
 *           was written in between, as the stop's finds what was written
 *           since the decision), else the last round's sync_ns
 *   ram     the pending pages: the last round's wire bytes per page (its
 *           mix of zero, compressed and raw pages) at the recent rounds'
 *           bandwidth; both from the rounds' page phases, without the
 *           device state sent before the pages (rounds[].device_bytes,
 *           device_ns), which goes at its own pace; a page phase's time
 *           less its threads' run-queue wait per thread (page_wait_ns /
 *           page_threads, at most three quarters of it): the CPU the
 *           running guest held, which the final pass gets back
 *   device  the devices' stop-copy bytes at that bandwidth (the final
 *           pass queues them behind the pages)
 *   end     END and LOADED, from the latest rounds' tails
 *           (mfd__converge_tail): the bytes the socket queues hold when
 *           the final pass's last byte is written, at the bandwidth (the
 *           queues fill as the pass is written: ram and device are
 *           measured until their last byte was written, so the link
 *           time of what is still queued then leaves them for the end),
 *           plus the destination's time beyond that and the END work
 *           it declared, a round trip (END, LOADED), plus with verify
 *           both sides' digests one after the other. The final pass
 *           begins behind what the last round left in the queues once
 *           the stop and the sync are over (they drain meanwhile).
 *           Without an answered round: a round trip, that drain, and the
 *           digests
 * total is their sum: the estimate, a median (it is as likely to come out
 * high as low). The budget is judged at a quantile of it: total_q_ns, the
 * parts that go at the bandwidth (ram, device and the queues' drain in
 * end) stretched by margin, what this migration's own rounds say about
 * how far the estimator's predictions fall short (mfd__converge_margin).
 * over is the largest part when total_q_ns exceeds the limit
 * (MFD_DOWN_NONE when it fits). Without a timed round there is no
 * bandwidth: ram and device are UINT64_MAX/8 when they have bytes.
 */
struct mfd__estimate {
	uint64_t part_ns[MFD_DOWN_END + 1]; /* [MFD_DOWN_NONE] unused, 0 */
	uint64_t total_ns;
	uint64_t total_q_ns;	/* at downtime_quantile: >= total_ns */
	double margin;		/* >= 1: total_q's stretch of the transfer */
	unsigned nerr;		/* prediction errors the margin rests on */
	uint64_t bandwidth_bps; /* predicted; 0 without a timed round */
	int over;		/* enum mfd_down_part */
};

enum mfd__converge_action {
	MFD__CONV_CONTINUE, /* another round */
	MFD__CONV_THROTTLE, /* another round, at out.throttle */
	/* Converged: expected downtime within limit, and not on the first
	 * pass alone (a round of resent pages has been timed, or nothing
	 * is pending at all). */
	MFD__CONV_SWITCHOVER,
	MFD__CONV_FORCE,  /* not converged, switch over anyway */
	MFD__CONV_CANCEL, /* not converged, fail with MFD_ENOCONVERGE */
};

struct mfd__converge_out {
	enum mfd__converge_action action;
	/* "converged", "auto-converge", "max-rounds", "precopy-timeout",
	 * "first pass" (the estimate fit, but after the first pass alone)
	 * or "not converged" (static); est.over names the part of the
	 * estimate that did not fit. */
	const char *reason;
	uint32_t throttle; /* percent that should be in force now */
	/* Dirty-limit: set the per-vCPU throttles (mfd__dirty_limit) after
	 * this round: engaged by a round that dirtied too fast, then on. */
	bool dirty_limit;
	/* The estimate the decision rests on (est.total_q_ns against
	 * downtime-limit); bandwidth_bps and expected_downtime_ns repeat
	 * its bandwidth and total (the median, not the quantile). */
	struct mfd__estimate est;
	uint64_t bandwidth_bps;
	uint64_t expected_downtime_ns;
};

void mfd__converge_settings_from(struct mfd__converge_settings *set,
				 const struct mfd_config *cfg);
/*
 * Dirty-limit, per vCPU: rate_bps[i] is what vCPU i dirtied over the last
 * round while cur[i] percent was in force. A vCPU above limit_bps gets the
 * throttle that brings it to the limit if its dirtying scales with the
 * time it runs, (100 - cur) * limit / rate of the time, so
 * out = 100 - that, rounded up, capped at max_pct, and never below cur. A
 * vCPU at or under the limit keeps cur (lowering it would let it climb
 * over again the next round). Pure: out[i] for each of the n vCPUs.
 */
void mfd__dirty_limit(const uint64_t *rate_bps, const uint32_t *cur, unsigned n,
		      uint64_t limit_bps, uint32_t max_pct, uint32_t *out);

/*
 * The margin: each pre-copy round i >= 2 (1 when there is no other) is a
 * trial of the estimator. Its
 * page phase is predicted from the rounds before it (their bandwidth and
 * packet mix, as the ram part is) and then measured. Consecutive rounds,
 * the latest first, make one trial once they moved as many bytes as the
 * final pass would (pending pages, device state, socket queues); its
 * error is ln(measured / predicted). From the latest MFD__MARGIN_ROUNDS
 * errors, the upper pct-quantile of the next: mean + t(pct, n - 1) * sd *
 * sqrt(1 + 1/n), the one-sided prediction bound of a normal sample
 * (Student's t: few trials, a wide bound); one error alone is its own
 * bound. Returns exp(that), at least 1 (an estimator that runs
 * pessimistic gets no discount); 1 without errors or with pct <= 50.
 * *nerr: the errors used.
 */
#define MFD__MARGIN_ROUNDS 10
double mfd__converge_margin(const struct mfd__converge_in *in, uint32_t pct,
			    unsigned *nerr);

/*
 * The end exchange from the rounds' tails (rounds[].tail_ns: a round's
 * last packet written to the destination's ROUND answer; tail_bytes: the
 * socket queues then): of the latest 5 rounds answered (after the first
 * pass when any is), the median of the queued bytes (*queue_bytes) and
 * the median of what each answer took beyond those bytes at bps plus the
 * END work the destination declared with it (*dest_ns: the destination's
 * reading, placing and barrier, its answer, the way back; dest_end_ns).
 * false: no round answered, or no bandwidth.
 */
bool mfd__converge_tail(const struct mfd__converge_in *in, uint64_t bps,
			uint64_t *queue_bytes, uint64_t *dest_ns);

/* The estimate alone (pure, as the decision); limit_ns decides est->over
 * (against est->total_q_ns, at in->set->downtime_quantile). */
void mfd__converge_estimate(const struct mfd__converge_in *in,
			    uint64_t limit_ns, struct mfd__estimate *est);
void mfd__converge_decide(const struct mfd__converge_in *in,
			  struct mfd__converge_out *out);

/*
 * After the switchover: which part broke the budget. measured_ns and
 * expected_ns are indexed by enum mfd_down_part (as est.part_ns;
 * [MFD_DOWN_NONE] ignored). MFD_DOWN_NONE when the measured parts add up
 * to at most limit_ns; else the part whose measurement exceeded its
 * expectation by the most, or, when none exceeded it (an estimate that
 * did not fit either: a forced switchover), the largest measured part.
 */
int mfd__downtime_overrun(const uint64_t *measured_ns,
			  const uint64_t *expected_ns, uint64_t limit_ns);

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
 * both. Never when pre-copy converged, nor in auto mode when its estimate
 * fit after the first pass alone (the next round switches over): a plain
 * switchover costs less.
 */
const char *mfd__postcopy_decide(const struct mfd__postcopy_policy *p,
				 bool requested,
				 const struct mfd__converge_in *in,
				 const struct mfd__converge_out *pre);

#endif /* MULTIFD_CONVERGE_H */
