/* SPDX-License-Identifier: MIT */
/*
 * Device FSM (the arcs of VFIO migration v2) and the engine's device set:
 * control plane (run-state changes) and error handling (migration notifier).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "devstate/devstate.h"
#include "multifd/multifd.h"
#include "multifd/common/clock.h"
#include "multifd/common/log.h"

enum {
	S_ERR = MFD_DEV_ERROR,
	S_STOP = MFD_DEV_STOP,
	S_RUN = MFD_DEV_RUNNING,
	S_SC = MFD_DEV_STOP_COPY,
	S_RES = MFD_DEV_RESUMING,
	S_RP2P = MFD_DEV_RUNNING_P2P,
	S_PC = MFD_DEV_PRE_COPY,
	S_PCP2P = MFD_DEV_PRE_COPY_P2P,
};

/*
 * next[cur][target]: the first state on the shortest path, for a device with
 * every optional state. This is the table of the uAPI's arcs (linux/vfio.h,
 * enum vfio_device_mig_state) written out: the same facts as the kernel's
 * vfio_mig_get_next_state().
 */
static const unsigned char next_tab[MFD_DEV_NSTATES][MFD_DEV_NSTATES] = {
	[S_STOP] = { [S_STOP] = S_STOP,
		     [S_RUN] = S_RP2P,
		     [S_PC] = S_RP2P,
		     [S_PCP2P] = S_RP2P,
		     [S_SC] = S_SC,
		     [S_RES] = S_RES,
		     [S_RP2P] = S_RP2P,
		     [S_ERR] = S_ERR },
	[S_RUN] = { [S_STOP] = S_RP2P,
		    [S_RUN] = S_RUN,
		    [S_PC] = S_PC,
		    [S_PCP2P] = S_RP2P,
		    [S_SC] = S_RP2P,
		    [S_RES] = S_RP2P,
		    [S_RP2P] = S_RP2P,
		    [S_ERR] = S_ERR },
	[S_PC] = { [S_STOP] = S_RUN,
		   [S_RUN] = S_RUN,
		   [S_PC] = S_PC,
		   [S_PCP2P] = S_PCP2P,
		   [S_SC] = S_PCP2P,
		   [S_RES] = S_RUN,
		   [S_RP2P] = S_RUN,
		   [S_ERR] = S_ERR },
	[S_PCP2P] = { [S_STOP] = S_RP2P,
		      [S_RUN] = S_RP2P,
		      [S_PC] = S_PC,
		      [S_PCP2P] = S_PCP2P,
		      [S_SC] = S_SC,
		      [S_RES] = S_RP2P,
		      [S_RP2P] = S_RP2P,
		      [S_ERR] = S_ERR },
	[S_SC] = { [S_STOP] = S_STOP,
		   [S_RUN] = S_STOP,
		   [S_PC] = S_STOP,
		   [S_PCP2P] = S_STOP,
		   [S_SC] = S_SC,
		   [S_RES] = S_STOP,
		   [S_RP2P] = S_STOP,
		   [S_ERR] = S_ERR },
	[S_RES] = { [S_STOP] = S_STOP,
		    [S_RUN] = S_STOP,
		    [S_PC] = S_STOP,
		    [S_PCP2P] = S_STOP,
		    [S_SC] = S_STOP,
		    [S_RES] = S_RES,
		    [S_RP2P] = S_STOP,
		    [S_ERR] = S_ERR },
	[S_RP2P] = { [S_STOP] = S_STOP,
		     [S_RUN] = S_RUN,
		     [S_PC] = S_RUN,
		     [S_PCP2P] = S_PCP2P,
		     [S_SC] = S_STOP,
		     [S_RES] = S_STOP,
		     [S_RP2P] = S_RP2P,
		     [S_ERR] = S_ERR },
	[S_ERR] = { [S_STOP] = S_ERR,
		    [S_RUN] = S_ERR,
		    [S_PC] = S_ERR,
		    [S_PCP2P] = S_ERR,
		    [S_SC] = S_ERR,
		    [S_RES] = S_ERR,
		    [S_RP2P] = S_ERR,
		    [S_ERR] = S_ERR },
};

/* Capabilities a state needs; ERROR can never be asked for. */
static const uint32_t state_caps[MFD_DEV_NSTATES] = {
	[S_STOP] = MFD_DEV_CAP_STOP_COPY,
	[S_RUN] = MFD_DEV_CAP_STOP_COPY,
	[S_PC] = MFD_DEV_CAP_STOP_COPY | MFD_DEV_CAP_PRE_COPY,
	[S_PCP2P] = MFD_DEV_CAP_ALL,
	[S_SC] = MFD_DEV_CAP_STOP_COPY,
	[S_RES] = MFD_DEV_CAP_STOP_COPY,
	[S_RP2P] = MFD_DEV_CAP_STOP_COPY | MFD_DEV_CAP_P2P,
	[S_ERR] = ~0U,
};

static bool supported(int s, uint32_t caps)
{
	return s >= 0 && s < MFD_DEV_NSTATES &&
	       (state_caps[s] & caps) == state_caps[s];
}

const char *mfd_dev_state_name(int s)
{
	static const char *const names[MFD_DEV_NSTATES] = {
		"ERROR",    "STOP",	   "RUNNING",  "STOP_COPY",
		"RESUMING", "RUNNING_P2P", "PRE_COPY", "PRE_COPY_P2P"
	};
	return s >= 0 && s < MFD_DEV_NSTATES ? names[s] : "?";
}

int mfd_dev_next_state(int cur, int target, uint32_t caps, int *next)
{
	if (!next || !supported(cur, caps) || !supported(target, caps))
		return -EINVAL;
	int n = next_tab[cur][target];
	/* Unsupported intermediate states are passed through, as if the
	 * device were fully running in them (the uAPI's rule). */
	while (!supported(n, caps) && n != S_ERR)
		n = next_tab[n][target];
	if (n == S_ERR)
		return -EINVAL;
	*next = n;
	return 0;
}

int mfd_dev_arc_valid(int from, int to, uint32_t caps)
{
	int n;
	if (from == to || mfd_dev_next_state(from, to, caps, &n))
		return 0;
	return n == to;
}

/* ------------------------------------------------------------------ */

void mfd__devset_init(struct mfd__devset *set, bool source)
{
	memset(set, 0, sizeof(*set));
	set->source = source;
}

void mfd__devset_destroy(struct mfd__devset *set)
{
	free(set->devs);
	set->devs = NULL;
	set->n = 0;
}

int mfd__devset_add(struct mfd__devset *set, const char *name,
		    const mfd_device_ops *ops, void *opaque)
{
	if (!name || !ops || !ops->set_state ||
	    !(ops->caps & MFD_DEV_CAP_STOP_COPY) ||
	    (ops->caps & ~MFD_DEV_CAP_ALL))
		return -EINVAL;
	size_t len = strlen(name);
	if (len == 0 || len > MFD_MAX_DEV_NAME)
		return -EINVAL;
	if (set->source && !ops->save)
		return -EINVAL;
	if (!set->source && !ops->load)
		return -EINVAL;
	if (ops->load_segs && !ops->state_mem)
		return -EINVAL;
	if ((ops->caps & MFD_DEV_CAP_PRE_COPY) && set->source &&
	    !ops->get_precopy_info)
		return -EINVAL;
	if (set->n >= MFD_MAX_DEVICES)
		return -ENOSPC;
	for (unsigned i = 0; i < set->n; i++)
		if (!strcmp(set->devs[i].name, name))
			return -EEXIST;
	struct mfd__dev *nd =
		realloc(set->devs, (set->n + 1) * sizeof(*set->devs));
	if (!nd)
		return -ENOMEM;
	set->devs = nd;
	struct mfd__dev *d = &nd[set->n];
	memset(d, 0, sizeof(*d));
	memcpy(d->name, name, len + 1);
	d->ops = *ops;
	d->opaque = opaque;
	d->state = MFD_DEV_RUNNING;
	set->n++;
	return 0;
}

static int step(struct mfd__devset *set, unsigned idx, int next)
{
	struct mfd__dev *d = &set->devs[idx];
	int from = d->state;
	uint64_t t0 = mfd__now_ns();
	int ret = d->ops.set_state(d->opaque, next);
	uint64_t dt = mfd__now_ns() - t0;
	if (dt > d->arc_max_ns)
		d->arc_max_ns = dt;
	if (ret) {
		int s = MFD_DEV_ERROR;
		if (!d->ops.get_state || d->ops.get_state(d->opaque, &s) ||
		    s < 0 || s >= MFD_DEV_NSTATES)
			s = MFD_DEV_ERROR;
		d->state = s;
		mfd__err("device %s: %s -> %s failed: %s (now %s)", d->name,
			 mfd_dev_state_name(from), mfd_dev_state_name(next),
			 mfd_strerror(ret), mfd_dev_state_name(s));
		return ret < 0 ? ret : -EIO;
	}
	d->state = next;
	d->arcs++;
	if (set->trace)
		set->trace(set->trace_ctx, idx, from, next);
	return 0;
}

int mfd__dev_goto(struct mfd__devset *set, unsigned idx, int target)
{
	if (idx >= set->n)
		return -EINVAL;
	struct mfd__dev *d = &set->devs[idx];
	int next;
	if (mfd_dev_next_state(d->state, target, d->ops.caps, &next))
		return -EINVAL;
	while (d->state != target) {
		int ret = mfd_dev_next_state(d->state, target, d->ops.caps,
					     &next);
		if (ret)
			return ret;
		ret = step(set, idx, next);
		if (ret)
			return ret;
	}
	return 0;
}

static bool is_stopped(int s)
{
	return s == S_STOP || s == S_SC || s == S_RES;
}
static bool is_running(int s)
{
	return s == S_RUN || s == S_PC;
}

static int effective_target(int target, uint32_t caps)
{
	if (!(caps & MFD_DEV_CAP_PRE_COPY)) {
		if (target == S_PC)
			return S_RUN;
		if (target == S_PCP2P)
			return S_RP2P;
	}
	if (!(caps & MFD_DEV_CAP_P2P)) {
		if (target == S_RP2P)
			return S_RUN;
		if (target == S_PCP2P)
			return (caps & MFD_DEV_CAP_PRE_COPY) ? S_PC : S_RUN;
	}
	return target;
}

/*
 * Advances device idx toward target but not across a boundary: phase 0
 * stops before an arc that enters a stopped state from a non-stopped one or
 * a running state from a non-running one.
 */
static int advance(struct mfd__devset *set, unsigned idx, int target,
		   bool bounded)
{
	struct mfd__dev *d = &set->devs[idx];
	while (d->state != target) {
		int next;
		int ret = mfd_dev_next_state(d->state, target, d->ops.caps,
					     &next);
		if (ret)
			return ret;
		if (bounded && ((is_stopped(next) && !is_stopped(d->state)) ||
				(is_running(next) && !is_running(d->state))))
			return 0;
		ret = step(set, idx, next);
		if (ret)
			return ret;
	}
	return 0;
}

int mfd__devset_goto(struct mfd__devset *set, int target, bool best_effort)
{
	int first = 0;
	/* Validate every device first: nothing moves on a bad request. */
	for (unsigned i = 0; i < set->n; i++) {
		int t = effective_target(target, set->devs[i].ops.caps), n;
		if (mfd_dev_next_state(set->devs[i].state, t,
				       set->devs[i].ops.caps, &n)) {
			if (!best_effort)
				return -EINVAL;
			if (!first)
				first = -EINVAL;
		}
	}
	for (int phase = 0; phase < 2; phase++) {
		for (unsigned i = 0; i < set->n; i++) {
			struct mfd__dev *d = &set->devs[i];
			int t = effective_target(target, d->ops.caps);
			if (d->state == S_ERR)
				continue;
			int ret = advance(set, i, t, phase == 0);
			if (ret) {
				if (!first)
					first = ret;
				if (!best_effort)
					return first;
			}
		}
	}
	return first;
}

int mfd__devset_vm_event(struct mfd__devset *set, enum mfd__vm_event ev)
{
	switch (ev) {
	case MFD_VM_BEFORE_STOP:
		/* PRE_COPY -> PRE_COPY_P2P, RUNNING -> RUNNING_P2P. */
		for (unsigned i = 0; i < set->n; i++) {
			struct mfd__dev *d = &set->devs[i];
			int t = d->state == S_PC ? S_PCP2P : S_RP2P;
			t = effective_target(t, d->ops.caps);
			int ret = advance(set, i, t, true);
			if (ret)
				return ret;
		}
		return 0;
	case MFD_VM_AFTER_STOP:
		return mfd__devset_goto(set, S_SC, false);
	case MFD_VM_AFTER_RESUME:
		return mfd__devset_goto(set, S_RUN, false);
	case MFD_VM_BEFORE_LOAD:
		return mfd__devset_goto(set, S_RES, false);
	case MFD_VM_AFTER_LOAD:
		return mfd__devset_goto(set, S_STOP, false);
	}
	return -EINVAL;
}

int mfd__devset_notify(struct mfd__devset *set, enum mfd__mig_event ev)
{
	switch (ev) {
	case MFD_MIG_SETUP:
		return set->source ? mfd__devset_goto(set, S_PC, false) : 0;
	case MFD_MIG_SWITCHOVER:
		return 0;
	case MFD_MIG_COMPLETED:
		return set->source ? mfd__devset_goto(set, S_STOP, true) : 0;
	case MFD_MIG_FAILED:
		if (!set->source)
			return mfd__devset_goto(set, S_STOP, true);
		for (unsigned i = 0; i < set->n; i++) {
			struct mfd__dev *d = &set->devs[i];
			if (d->state != S_ERR || !d->ops.reset)
				continue;
			if (d->ops.reset(d->opaque) == 0)
				d->state = S_RUN;
			else
				mfd__err("device %s: reset failed", d->name);
		}
		int ret = mfd__devset_goto(set, S_RUN, true);
		for (unsigned i = 0; i < set->n; i++)
			if (set->devs[i].state != S_RUN)
				mfd__err(
					"device %s left in %s after the failed "
					"migration",
					set->devs[i].name,
					mfd_dev_state_name(set->devs[i].state));
		return ret;
	}
	return -EINVAL;
}

uint64_t mfd__devset_stop_copy_size(struct mfd__devset *set)
{
	uint64_t sum = 0;
	for (unsigned i = 0; i < set->n; i++) {
		struct mfd__dev *d = &set->devs[i];
		uint64_t n = 0;
		if (d->ops.get_stop_copy_size && d->state != MFD_DEV_ERROR &&
		    d->ops.get_stop_copy_size(d->opaque, &n) == 0)
			sum += n;
	}
	return sum;
}

uint64_t mfd__devset_stop_cost(struct mfd__devset *set)
{
	uint64_t sum = 0;
	for (unsigned i = 0; i < set->n; i++) {
		struct mfd__dev *d = &set->devs[i];
		uint64_t ns = 0;
		if (d->state == MFD_DEV_ERROR)
			continue;
		if (!d->ops.get_stop_cost ||
		    d->ops.get_stop_cost(d->opaque, &ns) != 0)
			ns = d->arc_max_ns;
		sum += ns;
	}
	return sum;
}

int mfd__devset_precopy_pending(struct mfd__devset *set, uint64_t *bytes)
{
	uint64_t sum = 0;
	for (unsigned i = 0; i < set->n; i++) {
		struct mfd__dev *d = &set->devs[i];
		if (d->state != S_PC && d->state != S_PCP2P)
			continue;
		uint64_t init = 0, dirty = 0;
		int ret = d->ops.get_precopy_info(d->opaque, &init, &dirty);
		if (ret)
			return ret;
		sum += init + dirty;
	}
	*bytes = sum;
	return 0;
}

int mfd__dev_state_mem(struct mfd__dev *d, uint8_t **base, uint64_t *size)
{
	if (!d->mem_asked) {
		void *b = NULL;
		uint64_t sz = 0;
		int ret = d->ops.state_mem
				  ? d->ops.state_mem(d->opaque, &b, &sz)
				  : 0;
		if (ret)
			return ret;
		d->mem = b;
		d->mem_size = b ? sz : 0;
		d->mem_asked = true;
	}
	*base = d->mem;
	*size = d->mem_size;
	return d->mem ? 0 : 1;
}
