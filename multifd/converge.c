/* SPDX-License-Identifier: MIT */
/* The pre-copy decision (converge.h). */
#include "multifd/converge.h"

#include <math.h>
#include <stdlib.h>

void mfd__converge_settings_from(struct mfd__converge_settings *set,
				 const struct mfd_config *cfg)
{
	*set = (struct mfd__converge_settings){
		.downtime_limit_ms = cfg->downtime_limit_ms,
		.max_rounds = cfg->max_rounds,
		.precopy_timeout_ms = cfg->precopy_timeout_ms,
		.cancel_on_timeout = cfg->timeout_policy == MFD__POLICY_CANCEL,
		.auto_converge = cfg->auto_converge && !cfg->dirty_limit,
		.dirty_limit = cfg->dirty_limit,
		.vcpu_dirty_limit_bps =
			(uint64_t)cfg->vcpu_dirty_limit * 1000000,
		.throttle_threshold = cfg->throttle_threshold,
		.throttle_initial = cfg->throttle_initial,
		.throttle_increment = cfg->throttle_increment,
		.throttle_max = cfg->throttle_max,
		.downtime_quantile = cfg->downtime_quantile,
	};
}

/* Rounds shorter than this say little about the bandwidth. */
#define TIMED_NS 1000000ULL
/* The bandwidth is predicted from the latest timed rounds that together
 * sent at least this much: the short rounds near convergence (a few
 * hundred pages) spend more of their time starting and syncing than
 * sending, and alone would predict a fraction of the link. */
#define RECENT_BYTES (16ULL << 20)
/* A part without a bandwidth to divide by: more than any limit. */
#define NO_ESTIMATE (UINT64_MAX / 8)

/* The page phase of a round: what followed its device phase. Device
 * state goes one device after the other (on 1 to 4 devices recorded on
 * loopback: 1.4 GB/s against the pages' 2.0), and in round 0 it took up
 * to a quarter of the round; the final pass's pages, and the device state
 * queued behind them, go at the pages' pace. */
static uint64_t page_bytes(const mfd_round_stats *r)
{
	return r->bytes > r->device_bytes ? r->bytes - r->device_bytes : 0;
}

/* Less the time its threads waited for a CPU another thread held (their
 * run-queue wait, per thread): on a machine the migration shares with
 * the running guest (recorded on 2 cores, loopback, 4 guest threads:
 * 70.6 ms of wait over 3 threads in a page phase of 51 ms, rate 1.5
 * GB/s, and the final pass with the guest stopped at 2.7 GB/s; 51 -
 * 70.6 / 3 = 27.5 ms says 2.8), the final pass gets that CPU back. A
 * round whose threads slept on the socket (a slow link) waited little
 * and keeps its time. Never below a quarter of the wall time: the
 * waits of threads that overlap are not all on the critical path. */
static uint64_t page_ns(const mfd_round_stats *r)
{
	uint64_t ns = r->ns > r->device_ns ? r->ns - r->device_ns : 0;
	uint64_t wait = r->page_threads ? r->page_wait_ns / r->page_threads : 0;
	return wait < ns - ns / 4 ? ns - wait : ns / 4;
}

/* The device phase of a round: the devices' own pace (their save, one
 * after the other, on the migration thread), which the final pass's
 * device state cannot beat however fast the link (recorded on loopback,
 * 4 devices: 27 MB of stop-copy state in 6-14 ms, 2-4 GB/s, where the
 * pages' bandwidth predicted 4-5 ms). The latest round that sent at
 * least 1 MiB of device state in more than 1 ms; 0: none.
 *
 * Timed as the migration thread spent it: its CPU time and its waits for
 * room in the channels' queues (the link), both of which the final pass
 * has. Not the phase's wall time, nor that less its threads' run-queue
 * wait: it also holds the time the thread was blocked behind the running
 * guest, which the final pass does not pay (recorded on loopback, 1 GiB,
 * 4 writers, 1 device, with uffd-wp: round 0's device phase, the first
 * write fault of every page the guest touches, 211 ms for 52 MB, of which
 * 22 ms of CPU, 66 ms of run-queue wait and 124 ms blocked; with the
 * manual tracker 104 ms: 29, 38 and 37; the final pass's 6.75 MB of
 * device state went at 1.4-2.0 GB/s with either). Records without the
 * thread's figures: the wall time less its threads' run-queue wait per
 * thread, as page_ns(). */
static uint64_t device_bandwidth(const struct mfd__converge_in *in)
{
	for (unsigned i = in->nrounds; i-- > 0;) {
		const mfd_round_stats *r = &in->rounds[i];
		uint64_t ns = r->device_ns;
		if (r->device_bytes < (1ULL << 20) || ns <= 1000000)
			continue;
		if (r->device_cpu_ns) {
			uint64_t own = r->device_cpu_ns + r->device_full_ns;
			ns = own < ns ? own : ns;
		} else {
			/* Without the scheduler's figures the phase's wall
			 * time holds the running guest's CPU too (recorded:
			 * 1.37 GB/s where the final pass's device state
			 * went at 2.7). */
			if (!r->page_threads)
				return 0;
			uint64_t wait = r->device_wait_ns / r->page_threads;
			ns = wait < ns - ns / 4 ? ns - wait : ns / 4;
		}
		return (uint64_t)((double)r->device_bytes * 1e9 / (double)ns);
	}
	return 0;
}

static bool timed(const mfd_round_stats *r)
{
	return page_ns(r) > TIMED_NS && page_bytes(r) > 0;
}

/* Bytes over time of the latest timed rounds from round `from`, back until
 * RECENT_BYTES: a short round weighs by its time, not as one vote. */
static double recent(const struct mfd__converge_in *in, unsigned from,
		     double *ns)
{
	double bytes = 0;
	*ns = 0;
	for (unsigned i = in->nrounds; i-- > from && bytes < RECENT_BYTES;) {
		const mfd_round_stats *r = &in->rounds[i];
		if (!timed(r))
			continue;
		bytes += (double)page_bytes(r);
		*ns += (double)page_ns(r);
	}
	return bytes;
}

/* Round 0 is the first pass: every page lands on destination memory that
 * was never touched (its page faults set the pace on a fast link), and it
 * carries the image's zero pages. The final pass resends pages the
 * destination holds, as the later rounds do: once they have sent enough,
 * round 0 no longer counts. */
static uint64_t bandwidth(const struct mfd__converge_in *in)
{
	double ns, bytes = recent(in, 1, &ns);
	if (bytes < RECENT_BYTES)
		bytes = recent(in, 0, &ns);
	return ns > 0 ? (uint64_t)(bytes * 1e9 / ns) : 0;
}

/* Wire bytes per byte of page in the latest timed round that sent pages:
 * the mix of zero (a few bytes), compressed and raw pages the pending ones
 * are likely to have. Without one, raw pages (1). The bytes written for
 * the round's pages, not those that left during it: on a slow link the
 * socket queues hold several MB across a round's end (recorded on 1
 * Gbit/s: 2.7 to 5.3 MB against rounds of 6 to 7 MB), and the bytes that
 * left then put 0.73 to 1.23 wire bytes on a page byte of rounds whose
 * pages were all raw (1.002 written). */
static double wire_ratio(const struct mfd__converge_in *in)
{
	for (unsigned i = in->nrounds; i-- > 0;) {
		const mfd_round_stats *r = &in->rounds[i];
		uint64_t before = i ? in->rounds[i - 1].unsent_bytes : 0;
		double written = (double)page_bytes(r) +
				 (double)r->unsent_bytes - (double)before;
		if (timed(r) && r->pages && in->page_size && written > 0)
			return written /
			       ((double)r->pages * (double)in->page_size);
	}
	return 1.0;
}

static uint64_t at_bandwidth(double bytes, uint64_t bps)
{
	if (bytes <= 0)
		return 0;
	if (!bps)
		return NO_ESTIMATE;
	double ns = bytes * 1e9 / (double)bps;
	return ns >= (double)NO_ESTIMATE ? NO_ESTIMATE : (uint64_t)ns;
}

/* The upper p-quantile (0.5 < p < 1) of the standard normal: Abramowitz
 * and Stegun 26.2.23, within 4.5e-4. */
static double z_quantile(double p)
{
	double t = sqrt(-2.0 * log(1.0 - p));
	return t - (2.515517 + 0.802853 * t + 0.010328 * t * t) /
			   (1.0 + 1.432788 * t + 0.189269 * t * t +
			    0.001308 * t * t * t);
}

/* Student's t at p with nu degrees of freedom: the Cornish-Fisher series
 * around z (Abramowitz and Stegun 26.7.5), within 5 % at nu = 1 (p = 0.95:
 * 6.01 against 6.31) and 0.3 % from nu = 2 on. */
static double t_quantile(double p, unsigned nu)
{
	double z = z_quantile(p), z2 = z * z, v = nu;
	double g1 = (z2 + 1) * z / 4;
	double g2 = ((5 * z2 + 16) * z2 + 3) * z / 96;
	double g3 = (((3 * z2 + 19) * z2 + 17) * z2 - 15) * z / 384;
	double g4 = ((((79 * z2 + 776) * z2 + 1482) * z2 - 1920) * z2 - 945) *
		    z / 92160;
	return z + g1 / v + g2 / (v * v) + g3 / (v * v * v) +
	       g4 / (v * v * v * v);
}

/* Round i against its prediction from the rounds before it: its page
 * phase predicted (*pred) and measured (*meas), in ns. The queues at its
 * two ends are facts of the boundary, not of the prediction: its page
 * phase ends when its pages are written, with r->unsent_bytes of them
 * still queued, and began behind the round before's. false: nothing to
 * compare. */
static bool round_trial(const struct mfd__converge_in *in, unsigned i,
			double *pred, double *meas)
{
	const mfd_round_stats *r = &in->rounds[i];
	struct mfd__converge_in before = *in;
	before.nrounds = i;
	uint64_t bps = bandwidth(&before);
	if (!timed(r) || !r->pages || !in->page_size || !bps)
		return false;
	double bytes =
		(double)r->pages * (double)in->page_size * wire_ratio(&before) +
		(double)in->rounds[i - 1].unsent_bytes -
		(double)r->unsent_bytes;
	if (bytes <= 0)
		return false;
	*pred = bytes * 1e9 / (double)bps;
	*meas = (double)page_ns(r);
	return true;
}

/* What the final pass would move: the pending pages at the last mix, the
 * devices' stop-copy state, and the socket queues it waits behind. */
static double final_bytes(const struct mfd__converge_in *in)
{
	const mfd_round_stats *last = &in->rounds[in->nrounds - 1];
	return (double)last->dirty_bytes * wire_ratio(in) +
	       (double)last->device_stop_bytes + (double)last->unsent_bytes;
}

double mfd__converge_margin(const struct mfd__converge_in *in, uint32_t pct,
			    unsigned *nerr)
{
	/* A trial is as large as the final pass: consecutive rounds, the
	 * latest first, until they moved that much. Near convergence the
	 * rounds are a fraction of it, and a short stall (the sender not
	 * scheduled for a few ms on a loaded machine; recorded on 1
	 * Gbit/s: a 1.6 MB round 44 % over its prediction) weighs on a
	 * small round as it never would on the final pass. */
	double x[MFD__MARGIN_ROUNDS], sum = 0, size = final_bytes(in);
	double pred = 0, meas = 0, moved = 0;
	unsigned n = 0;
	for (unsigned i = in->nrounds; i-- > 1 && n < MFD__MARGIN_ROUNDS;) {
		double p, m;
		/* Round 1 is predicted from round 0 alone, whose bandwidth
		 * and mix (first touch, the image's zero pages) the final
		 * pass's prediction leaves out once later rounds sent
		 * enough (recorded on 1 Gbit/s: +23 % where rounds 2-10
		 * came within 2 %): it counts when nothing else does. */
		if (i == 1 && (n || pred > 0))
			break;
		if (!round_trial(in, i, &p, &m))
			continue;
		pred += p;
		meas += m;
		moved += (double)page_bytes(&in->rounds[i]);
		if (moved >= size) {
			x[n] = log(meas / pred);
			sum += x[n++];
			pred = meas = moved = 0;
		}
	}
	/* Rounds that together moved less than one final pass: one trial. */
	if (!n && pred > 0) {
		x[n] = log(meas / pred);
		sum += x[n++];
	}
	*nerr = n;
	if (pct <= 50 || !n)
		return 1.0;
	double mean = sum / n, bound = x[0];
	if (n >= 2) {
		double ss = 0;
		for (unsigned k = 0; k < n; k++)
			ss += (x[k] - mean) * (x[k] - mean);
		double sd = sqrt(ss / (n - 1));
		bound = mean + t_quantile(pct / 100.0, n - 1) * sd *
				       sqrt(1.0 + 1.0 / n);
	}
	return bound > 0 ? exp(bound) : 1.0;
}

static uint64_t stretch(uint64_t ns, double by)
{
	double v = (double)ns * by;
	return v >= (double)NO_ESTIMATE ? NO_ESTIMATE : (uint64_t)v;
}

/* END and LOADED: the round trip, both sides' digests, and what is left
 * of the socket queues after the stop and the sync (drain_ns). */
static uint64_t end_part(const struct mfd__converge_in *in, uint64_t drain_ns,
			 uint64_t overlap_ns)
{
	return in->rtt_ns + 2 * in->verify_ns +
	       (drain_ns > overlap_ns ? drain_ns - overlap_ns : 0);
}

/* The rounds' tails the end is predicted from: the latest ones answered,
 * rounds after the first pass when there are any. */
#define TAIL_ROUNDS 5

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t median_u64(uint64_t *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return n % 2 ? v[n / 2] : v[n / 2 - 1] / 2 + v[n / 2] / 2;
}

bool mfd__converge_tail(const struct mfd__converge_in *in, uint64_t bps,
			uint64_t *queue_bytes, uint64_t *dest_ns)
{
	uint64_t q[TAIL_ROUNDS], d[TAIL_ROUNDS];
	unsigned n = 0;
	for (unsigned pass = 0; pass < 2 && !n; pass++)
		for (unsigned i = in->nrounds;
		     i-- > (pass ? 0 : 1) && n < TAIL_ROUNDS;) {
			const mfd_round_stats *r = &in->rounds[i];
			if (!r->tail_ns)
				continue;
			uint64_t link =
				at_bandwidth((double)r->tail_bytes, bps);
			q[n] = r->tail_bytes;
			d[n++] = (r->tail_ns > link ? r->tail_ns - link : 0) +
				 r->dest_end_ns;
		}
	if (!n || !bps)
		return false;
	*queue_bytes = median_u64(q, n);
	*dest_ns = median_u64(d, n);
	return true;
}

/* The bytes of the final pass through the socket queues, in ns at the
 * bandwidth: lead (what the last round left there once the stop and the
 * sync are over), then the pages (ram), then the device state (dev). The
 * workers' writes return while the queues have room: the last queue_ns of
 * it are still in them when the last byte has been written, and leave
 * during the end exchange, not during ram or device, which are measured
 * until the last page and the last device chunk were written. */
static void split_link(uint64_t lead, uint64_t ram, uint64_t dev,
		       uint64_t queue_ns, uint64_t out[3])
{
	uint64_t all = lead + ram + dev;
	uint64_t q = queue_ns < all ? queue_ns : all;
	uint64_t ram_done = lead + ram > q ? lead + ram - q : 0;
	out[0] = ram_done;
	out[1] = all - q - ram_done;
	out[2] = q;
}

void mfd__converge_estimate(const struct mfd__converge_in *in,
			    uint64_t limit_ns, struct mfd__estimate *est)
{
	const mfd_round_stats *last = &in->rounds[in->nrounds - 1];
	uint64_t *part = est->part_ns;
	*est = (struct mfd__estimate){ .bandwidth_bps = bandwidth(in) };
	part[MFD_DOWN_STOP] = in->stop_ns;
	/* The sync at the stop finds what was written since the last one,
	 * a moment before: the second sync's cost, where it was timed. */
	part[MFD_DOWN_SYNC] =
		in->dev_stop_ns +
		(last->sync_cpu_ns ? last->sync_cpu_ns : last->sync_ns);
	part[MFD_DOWN_RAM] = at_bandwidth(
		(double)last->dirty_bytes * wire_ratio(in), est->bandwidth_bps);
	uint64_t dev_bps = device_bandwidth(in);
	part[MFD_DOWN_DEVICE] = at_bandwidth(
		(double)last->device_stop_bytes,
		dev_bps && dev_bps < est->bandwidth_bps ? dev_bps
							: est->bandwidth_bps);
	/* Both sides hash all RAM: the source after it queued the final
	 * pages and the device state (on a slow link that is nearly all of
	 * the sending; recorded on 1 Gbit/s: 187 ms of it still to come
	 * when the last page left), the destination after the last page. */
	/* The socket queues go on draining while the guest stops and the
	 * dirty log is synced: only what is left after that delays the
	 * final pass (on loopback a few MB drain within the sync; on
	 * 1 Gbit/s they take tens of ms). */
	uint64_t drain =
		at_bandwidth((double)last->unsent_bytes, est->bandwidth_bps);
	uint64_t overlap = part[MFD_DOWN_STOP] + part[MFD_DOWN_SYNC];
	/* With the rounds' tails timed: the end is what the queues hold when
	 * the last byte is written, at the bandwidth, then the destination's
	 * own time the rounds' answers took beyond that and its END work
	 * (recorded on loopback, 4 devices: tails of 0.02-0.4 ms, the
	 * devices' arcs out of RESUMING 1.5-3.3 ms), END and LOADED's round
	 * trip, and both sides' digests with verify. */
	uint64_t qbytes, dest;
	bool tails = mfd__converge_tail(in, est->bandwidth_bps, &qbytes, &dest);
	uint64_t link[3] = { 0 }, lead = drain > overlap ? drain - overlap : 0;
	if (tails) {
		split_link(lead, part[MFD_DOWN_RAM], part[MFD_DOWN_DEVICE],
			   at_bandwidth((double)qbytes, est->bandwidth_bps),
			   link);
		part[MFD_DOWN_RAM] = link[0];
		part[MFD_DOWN_DEVICE] = link[1];
		part[MFD_DOWN_END] =
			link[2] + dest + in->rtt_ns + 2 * in->verify_ns;
	} else {
		part[MFD_DOWN_END] = end_part(in, drain, overlap);
	}
	int over = MFD_DOWN_NONE;
	for (int p = MFD_DOWN_STOP; p <= MFD_DOWN_END; p++) {
		est->total_ns += part[p];
		if (part[p] > part[over])
			over = p;
	}
	/* The same with the transfer at the margin's pace. */
	est->margin = mfd__converge_margin(in, in->set->downtime_quantile,
					   &est->nerr);
	est->total_q_ns =
		part[MFD_DOWN_STOP] + part[MFD_DOWN_SYNC] +
		stretch(part[MFD_DOWN_RAM], est->margin) +
		stretch(part[MFD_DOWN_DEVICE], est->margin) +
		(tails ? stretch(link[2], est->margin) + dest + in->rtt_ns +
				 2 * in->verify_ns
		       : end_part(in, stretch(drain, est->margin), overlap));
	if (est->total_q_ns < est->total_ns)
		est->total_q_ns = est->total_ns;
	est->over = est->total_q_ns > limit_ns ? over : MFD_DOWN_NONE;
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

void mfd__dirty_limit(const uint64_t *rate_bps, const uint32_t *cur, unsigned n,
		      uint64_t limit_bps, uint32_t max_pct, uint32_t *out)
{
	for (unsigned i = 0; i < n; i++) {
		out[i] = cur[i];
		if (rate_bps[i] <= limit_bps)
			continue;
		double run = (100.0 - cur[i]) * (double)limit_bps /
			     (double)rate_bps[i];
		double pct = 100.0 - run;
		uint32_t p = pct >= (double)max_pct ? max_pct
						    : (uint32_t)(pct + 0.999);
		if (p > max_pct)
			p = max_pct;
		if (p > out[i])
			out[i] = p;
	}
}

void mfd__converge_decide(const struct mfd__converge_in *in,
			  struct mfd__converge_out *out)
{
	const struct mfd__converge_settings *set = in->set;
	const mfd_round_stats *last = &in->rounds[in->nrounds - 1];
	uint64_t limit_ns = set->downtime_limit_ms * 1000000ULL;
	mfd__converge_estimate(in, limit_ns, &out->est);
	out->bandwidth_bps = out->est.bandwidth_bps;
	out->expected_downtime_ns = out->est.total_ns;
	out->throttle = in->throttle;
	out->dirty_limit = false;
	/* A budget: the whole predicted downtime, fixed costs included,
	 * must fit, not only the pages, and at the quantile: at the median
	 * itself, half the switchovers would break it. */
	/* Not on the first pass alone: it placed every page on memory the
	 * destination had never touched and carried the image's zero
	 * pages, so its pace says little of the final pass's (recorded on
	 * loopback: ram parts 0.8 to 1.6 times the measured from it, 0.5
	 * to 0.6 once its CPU wait is taken out). One more round, of pages
	 * sent again, times the final pass's kind of work; it costs a
	 * round of pre-copy and shrinks what the stop leaves. */
	bool first = in->nrounds < 2 &&
		     (last->dirty_bytes || last->device_stop_bytes);
	if (out->est.over == MFD_DOWN_NONE && !first) {
		out->action = MFD__CONV_SWITCHOVER;
		out->reason = "converged";
		return;
	}
	/* Throttling still applies in the round that reaches a limit, as
	 * it always did: the hook sees the step, then 0 at the end. */
	out->throttle = next_throttle(in);
	out->dirty_limit =
		set->dirty_limit && (in->dirty_limit_on || too_fast(in, last));
	out->action = out->throttle != in->throttle ? MFD__CONV_THROTTLE
						    : MFD__CONV_CONTINUE;
	out->reason = out->action == MFD__CONV_THROTTLE ? "auto-converge"
		      : out->est.over == MFD_DOWN_NONE	? "first pass"
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

int mfd__downtime_overrun(const uint64_t *measured_ns,
			  const uint64_t *expected_ns, uint64_t limit_ns)
{
	uint64_t total = 0;
	int worst = MFD_DOWN_NONE, largest = MFD_DOWN_STOP;
	double worst_by = 0;
	for (int p = MFD_DOWN_STOP; p <= MFD_DOWN_END; p++) {
		total += measured_ns[p];
		double by = (double)measured_ns[p] - (double)expected_ns[p];
		if (by > worst_by) {
			worst_by = by;
			worst = p;
		}
		if (measured_ns[p] > measured_ns[largest])
			largest = p;
	}
	if (total <= limit_ns)
		return MFD_DOWN_NONE;
	return worst != MFD_DOWN_NONE ? worst : largest;
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
	/* The first pass fit: the next round switches over (pre-copy's
	 * first-pass rule), for less than post-copy costs. */
	if (pre->est.over == MFD_DOWN_NONE)
		return NULL;
	if (last->round + 1 >= p->after_rounds)
		return "postcopy-after-rounds";
	if (in->nrounds >= 2 &&
	    last->dirty_bytes >= in->rounds[in->nrounds - 2].dirty_bytes)
		return "not converging";
	return NULL;
}
