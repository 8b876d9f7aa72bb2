/* SPDX-License-Identifier: MIT */
/* Device FSM: the VFIO v2 arcs, the P2P rule with several devices, the
 * control-plane events and the rollback of a failed migration. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "devstate/devstate.h"

enum {
	ERR = MFD_DEV_ERROR,
	STOP = MFD_DEV_STOP,
	RUN = MFD_DEV_RUNNING,
	SC = MFD_DEV_STOP_COPY,
	RES = MFD_DEV_RESUMING,
	RP2P = MFD_DEV_RUNNING_P2P,
	PC = MFD_DEV_PRE_COPY,
	PCP2P = MFD_DEV_PRE_COPY_P2P
};

/* The arcs linux/vfio.h describes, one by one (for a device with every
 * optional state). Independent of the library's table. */
static const int uapi_arcs[][2] = {
	{ RP2P, STOP }, { SC, STOP },	 { RES, STOP }, { RP2P, RUN },
	{ RUN, RP2P },	{ STOP, RP2P },	 { STOP, SC },	{ STOP, RES },
	{ RUN, PC },	{ RP2P, PCP2P }, { PC, RUN },	{ PCP2P, RP2P },
	{ PC, PCP2P },	{ PCP2P, PC },	 { PCP2P, SC },
};

static bool uapi_arc(int a, int b)
{
	for (size_t i = 0; i < sizeof(uapi_arcs) / sizeof(uapi_arcs[0]); i++)
		if (uapi_arcs[i][0] == a && uapi_arcs[i][1] == b)
			return true;
	return false;
}

/* BFS distance over the uAPI arcs. */
static int dist(int from, int to)
{
	int d[MFD_DEV_NSTATES], q[MFD_DEV_NSTATES], h = 0, t = 0;
	for (int i = 0; i < MFD_DEV_NSTATES; i++)
		d[i] = -1;
	d[from] = 0;
	q[t++] = from;
	while (h < t) {
		int s = q[h++];
		for (int n = 0; n < MFD_DEV_NSTATES; n++)
			if (d[n] < 0 && uapi_arc(s, n)) {
				d[n] = d[s] + 1;
				q[t++] = n;
			}
	}
	return d[to];
}

static void test_full_caps_shortest_paths(void **state)
{
	for (int a = 1; a < MFD_DEV_NSTATES; a++)
		for (int b = 1; b < MFD_DEV_NSTATES; b++) {
			int cur = a, steps = 0, n;
			while (cur != b) {
				assert_int_equal(
					mfd_dev_next_state(cur, b,
							   MFD_DEV_CAP_ALL, &n),
					0);
				assert_true(uapi_arc(cur, n));
				cur = n;
				assert_true(++steps <= 8);
			}
			assert_int_equal(steps, dist(a, b));
			assert_int_equal(
				mfd_dev_arc_valid(a, b, MFD_DEV_CAP_ALL),
				uapi_arc(a, b));
		}
}

static void test_specific_paths(void **state)
{
	int n;
	assert_int_equal(mfd_dev_next_state(RUN, SC, MFD_DEV_CAP_ALL, &n), 0);
	assert_int_equal(n, RP2P);
	assert_int_equal(mfd_dev_next_state(PC, SC, MFD_DEV_CAP_ALL, &n), 0);
	assert_int_equal(n, PCP2P);
	assert_int_equal(mfd_dev_next_state(PCP2P, SC, MFD_DEV_CAP_ALL, &n), 0);
	assert_int_equal(n, SC);
	/* Without P2P the P2P states are passed through. */
	uint32_t nop2p = MFD_DEV_CAP_STOP_COPY | MFD_DEV_CAP_PRE_COPY;
	assert_int_equal(mfd_dev_next_state(PC, SC, nop2p, &n), 0);
	assert_int_equal(n, SC);
	assert_int_equal(mfd_dev_next_state(RUN, STOP, nop2p, &n), 0);
	assert_int_equal(n, STOP);
	assert_true(mfd_dev_arc_valid(RUN, STOP, MFD_DEV_CAP_STOP_COPY));
	assert_false(mfd_dev_arc_valid(RUN, STOP, MFD_DEV_CAP_ALL));
	assert_true(mfd_dev_arc_valid(PC, SC, nop2p));
	/* Same state: next is itself. */
	assert_int_equal(mfd_dev_next_state(STOP, STOP, MFD_DEV_CAP_ALL, &n),
			 0);
	assert_int_equal(n, STOP);
}

static void test_illegal(void **state)
{
	int n = -1;
	/* ERROR can never be asked for, nor left by the FSM. */
	for (int s = 1; s < MFD_DEV_NSTATES; s++)
		assert_int_equal(
			mfd_dev_next_state(s, ERR, MFD_DEV_CAP_ALL, &n),
			-EINVAL);
	for (int s = 0; s < MFD_DEV_NSTATES; s++)
		assert_int_equal(
			mfd_dev_next_state(ERR, s, MFD_DEV_CAP_ALL, &n),
			-EINVAL);
	/* Unsupported optional states, either end. */
	uint32_t base = MFD_DEV_CAP_STOP_COPY;
	assert_int_equal(mfd_dev_next_state(RUN, PC, base, &n), -EINVAL);
	assert_int_equal(mfd_dev_next_state(RUN, RP2P, base, &n), -EINVAL);
	assert_int_equal(mfd_dev_next_state(PC, RUN, base, &n), -EINVAL);
	assert_int_equal(
		mfd_dev_next_state(RUN, PCP2P,
				   MFD_DEV_CAP_STOP_COPY | MFD_DEV_CAP_PRE_COPY,
				   &n),
		-EINVAL);
	/* Out of range. */
	assert_int_equal(mfd_dev_next_state(RUN, 8, MFD_DEV_CAP_ALL, &n),
			 -EINVAL);
	assert_int_equal(mfd_dev_next_state(-1, RUN, MFD_DEV_CAP_ALL, &n),
			 -EINVAL);
	/* Direct arcs that are not arcs. */
	assert_false(mfd_dev_arc_valid(RUN, SC, MFD_DEV_CAP_ALL));
	assert_false(mfd_dev_arc_valid(PC, STOP, MFD_DEV_CAP_ALL));
	assert_false(mfd_dev_arc_valid(RES, RUN, MFD_DEV_CAP_ALL));
	assert_false(mfd_dev_arc_valid(SC, PC, MFD_DEV_CAP_ALL));
	assert_false(mfd_dev_arc_valid(STOP, STOP, MFD_DEV_CAP_ALL));
	assert_string_equal(mfd_dev_state_name(PCP2P), "PRE_COPY_P2P");
	assert_string_equal(mfd_dev_state_name(99), "?");
}

static void test_reduced_caps_terminate(void **state)
{
	static const uint32_t capsets[] = {
		MFD_DEV_CAP_STOP_COPY,
		MFD_DEV_CAP_STOP_COPY | MFD_DEV_CAP_P2P,
		MFD_DEV_CAP_STOP_COPY | MFD_DEV_CAP_PRE_COPY,
		MFD_DEV_CAP_ALL,
	};
	for (size_t c = 0; c < 4; c++)
		for (int a = 1; a < MFD_DEV_NSTATES; a++)
			for (int b = 1; b < MFD_DEV_NSTATES; b++) {
				int n, cur = a, steps = 0;
				if (mfd_dev_next_state(a, b, capsets[c], &n))
					continue;
				while (cur != b) {
					assert_int_equal(
						mfd_dev_next_state(
							cur, b, capsets[c], &n),
						0);
					assert_true(mfd_dev_arc_valid(
						cur, n, capsets[c]));
					cur = n;
					assert_true(++steps <= 4);
				}
			}
}

/* ---------------------------------------------------------------- */
/* A set of fake devices                                            */
/* ---------------------------------------------------------------- */

struct fake {
	int state;
	uint32_t caps;
	int fail_to; /* fail the arc into this state (0 = none) */
	bool reset_called;
};

static int fake_set(void *o, int s)
{
	struct fake *f = o;
	if (!mfd_dev_arc_valid(f->state, s, f->caps))
		return -EINVAL; /* the library must never ask this */
	if (f->fail_to && s == f->fail_to) {
		f->state = ERR;
		return -EIO;
	}
	f->state = s;
	return 0;
}
static int fake_get(void *o, int *s)
{
	*s = ((struct fake *)o)->state;
	return 0;
}
static int fake_reset(void *o)
{
	struct fake *f = o;
	f->state = RUN;
	f->reset_called = true;
	return 0;
}
static int fake_info(void *o, uint64_t *i, uint64_t *d)
{
	*i = 100;
	*d = 10;
	return 0;
}
static ssize_t fake_save(void *o, void *b, size_t l)
{
	return 0;
}
static int fake_load(void *o, const void *b, size_t l)
{
	return 0;
}

#define MAXTRACE 256
struct trace {
	unsigned n;
	unsigned dev[MAXTRACE];
	int from[MAXTRACE], to[MAXTRACE];
};
static void trace_fn(void *ctx, unsigned dev, int from, int to)
{
	struct trace *t = ctx;
	assert_true(t->n < MAXTRACE);
	t->dev[t->n] = dev;
	t->from[t->n] = from;
	t->to[t->n] = to;
	t->n++;
}

static void make_set(struct mfd__devset *set, bool source, struct fake *f,
		     unsigned n, struct trace *t)
{
	mfd__devset_init(set, source);
	set->trace = trace_fn;
	set->trace_ctx = t;
	for (unsigned i = 0; i < n; i++) {
		mfd_device_ops ops = { .caps = f[i].caps,
				       .set_state = fake_set,
				       .get_state = fake_get,
				       .reset = fake_reset,
				       .get_precopy_info = fake_info,
				       .save = fake_save,
				       .load = fake_load };
		char name[16];
		snprintf(name, sizeof(name), "dev%u", i);
		f[i].state = RUN;
		assert_int_equal(mfd__devset_add(set, name, &ops, &f[i]), 0);
	}
}

static bool stopped(int s)
{
	return s == STOP || s == SC || s == RES;
}
static bool running(int s)
{
	return s == RUN || s == PC;
}

/* In the trace: no device enters a stopped state while a P2P-capable
 * device is still in RUNNING/PRE_COPY, and vice versa for running. */
static void check_p2p_rule(const struct trace *t, struct fake *f, unsigned n,
			   const int *start)
{
	int cur[8];
	for (unsigned i = 0; i < n; i++)
		cur[i] = start[i];
	for (unsigned k = 0; k < t->n; k++) {
		unsigned d = t->dev[k];
		assert_int_equal(cur[d], t->from[k]);
		if (stopped(t->to[k]) && !stopped(t->from[k]))
			for (unsigned i = 0; i < n; i++)
				if (f[i].caps & MFD_DEV_CAP_P2P)
					assert_false(running(cur[i]));
		if (running(t->to[k]) && !running(t->from[k]))
			for (unsigned i = 0; i < n; i++)
				if (f[i].caps & MFD_DEV_CAP_P2P)
					assert_false(stopped(cur[i]));
		cur[d] = t->to[k];
	}
}

static void test_p2p_rule_source(void **state)
{
	struct fake f[4] = {
		{ .caps = MFD_DEV_CAP_ALL },
		{ .caps = MFD_DEV_CAP_ALL },
		{ .caps = MFD_DEV_CAP_STOP_COPY | MFD_DEV_CAP_P2P },
		{ .caps = MFD_DEV_CAP_STOP_COPY | MFD_DEV_CAP_PRE_COPY }
	};
	struct trace t = { 0 };
	struct mfd__devset set;
	make_set(&set, true, f, 4, &t);
	int start[4] = { RUN, RUN, RUN, RUN };

	assert_int_equal(mfd__devset_notify(&set, MFD_MIG_SETUP), 0);
	assert_int_equal(f[0].state, PC);
	assert_int_equal(f[2].state, RUN); /* no PRE_COPY */
	assert_int_equal(f[3].state, PC);
	uint64_t pend;
	assert_int_equal(mfd__devset_precopy_pending(&set, &pend), 0);
	assert_int_equal(pend, 3 * 110);

	assert_int_equal(mfd__devset_vm_event(&set, MFD_VM_BEFORE_STOP), 0);
	assert_int_equal(f[0].state, PCP2P);
	assert_int_equal(f[1].state, PCP2P);
	assert_int_equal(f[2].state, RP2P);
	assert_int_equal(f[3].state, PC); /* no P2P: stays until stop */
	assert_int_equal(mfd__devset_vm_event(&set, MFD_VM_AFTER_STOP), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(f[i].state, SC);
	assert_int_equal(mfd__devset_notify(&set, MFD_MIG_COMPLETED), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(f[i].state, STOP);
	check_p2p_rule(&t, f, 4, start);

	/* And back up: the P2P rule the other way. */
	int start2[4] = { STOP, STOP, STOP, STOP };
	t.n = 0;
	assert_int_equal(mfd__devset_vm_event(&set, MFD_VM_AFTER_RESUME), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(f[i].state, RUN);
	check_p2p_rule(&t, f, 4, start2);
	mfd__devset_destroy(&set);
}

static void test_dest_events(void **state)
{
	struct fake f[3] = { { .caps = MFD_DEV_CAP_ALL },
			     { .caps = MFD_DEV_CAP_STOP_COPY },
			     { .caps = MFD_DEV_CAP_ALL } };
	struct trace t = { 0 };
	struct mfd__devset set;
	make_set(&set, false, f, 3, &t);
	int start[3] = { RUN, RUN, RUN };
	assert_int_equal(mfd__devset_vm_event(&set, MFD_VM_BEFORE_LOAD), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(f[i].state, RES);
	assert_int_equal(mfd__devset_vm_event(&set, MFD_VM_AFTER_LOAD), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(f[i].state, STOP);
	assert_int_equal(mfd__devset_vm_event(&set, MFD_VM_AFTER_RESUME), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(f[i].state, RUN);
	check_p2p_rule(&t, f, 3, start);
	/* The library never asked for an arc the device refused. */
	for (unsigned k = 0; k < t.n; k++)
		assert_true(mfd_dev_arc_valid(t.from[k], t.to[k],
					      f[t.dev[k]].caps));
	mfd__devset_destroy(&set);
}

static void test_failure_rolls_back(void **state)
{
	struct fake f[3] = { { .caps = MFD_DEV_CAP_ALL },
			     { .caps = MFD_DEV_CAP_ALL, .fail_to = SC },
			     { .caps = MFD_DEV_CAP_ALL } };
	struct trace t = { 0 };
	struct mfd__devset set;
	make_set(&set, true, f, 3, &t);
	assert_int_equal(mfd__devset_notify(&set, MFD_MIG_SETUP), 0);
	assert_int_equal(mfd__devset_vm_event(&set, MFD_VM_BEFORE_STOP), 0);
	/* Device 1 fails entering STOP_COPY and lands in ERROR. */
	assert_int_equal(mfd__devset_vm_event(&set, MFD_VM_AFTER_STOP), -EIO);
	assert_int_equal(set.devs[1].state, ERR);
	assert_int_equal(f[0].state, SC);
	/* The failed migration: everything back to RUNNING, the broken
	 * device through a reset. */
	f[1].fail_to = 0;
	assert_int_equal(mfd__devset_notify(&set, MFD_MIG_FAILED), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(f[i].state, RUN);
		assert_int_equal(set.devs[i].state, RUN);
	}
	assert_true(f[1].reset_called);
	assert_false(f[0].reset_called);

	/* Failure during pre-copy: also back to RUNNING. */
	assert_int_equal(mfd__devset_notify(&set, MFD_MIG_SETUP), 0);
	assert_int_equal(f[2].state, PC);
	assert_int_equal(mfd__devset_notify(&set, MFD_MIG_FAILED), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(f[i].state, RUN);
	mfd__devset_destroy(&set);
}

static void test_bad_requests_touch_nothing(void **state)
{
	struct fake f[2] = { { .caps = MFD_DEV_CAP_ALL },
			     { .caps = MFD_DEV_CAP_STOP_COPY } };
	struct trace t = { 0 };
	struct mfd__devset set;
	make_set(&set, true, f, 2, &t);
	assert_int_equal(mfd__dev_goto(&set, 0, ERR), -EINVAL);
	assert_int_equal(mfd__dev_goto(&set, 1, PC), -EINVAL);
	assert_int_equal(mfd__dev_goto(&set, 5, RUN), -EINVAL);
	assert_int_equal(mfd__devset_goto(&set, ERR, false), -EINVAL);
	assert_int_equal(t.n, 0);
	/* Registration checks. */
	mfd_device_ops ops = { .caps = MFD_DEV_CAP_P2P,
			       .set_state = fake_set,
			       .save = fake_save };
	assert_int_equal(mfd__devset_add(&set, "x", &ops, NULL), -EINVAL);
	ops.caps = MFD_DEV_CAP_STOP_COPY;
	assert_int_equal(mfd__devset_add(&set, "dev0", &ops, NULL), -EEXIST);
	assert_int_equal(mfd__devset_add(&set, "", &ops, NULL), -EINVAL);
	ops.caps = MFD_DEV_CAP_ALL; /* PRE_COPY without precopy info */
	assert_int_equal(mfd__devset_add(&set, "y", &ops, NULL), -EINVAL);
	ops.caps = MFD_DEV_CAP_STOP_COPY;
	ops.save = NULL; /* a source device must save */
	assert_int_equal(mfd__devset_add(&set, "z", &ops, NULL), -EINVAL);
	mfd__devset_destroy(&set);
}

/* The devices' arcs to STOP_COPY as the downtime estimate's sync part
 * sees them: each device's declared cost, else (no op, or it fails) its
 * slowest arc timed, here a device that saves its state on entering
 * PRE_COPY (3 ms); a device in ERROR counts 0. */
static int set_slow_pc(void *o, int s)
{
	if (s == PC) {
		struct timespec ts = { 0, 3000000 };
		nanosleep(&ts, NULL);
	}
	return fake_set(o, s);
}
static int declare_7ms(void *o, uint64_t *ns)
{
	(void)o;
	*ns = 7000000;
	return 0;
}
static int declare_fails(void *o, uint64_t *ns)
{
	(void)o;
	*ns = 123456789;
	return -EIO;
}

static void test_stop_cost(void **state)
{
	(void)state;
	struct fake f[3] = { { .caps = MFD_DEV_CAP_ALL },
			     { .caps = MFD_DEV_CAP_ALL },
			     { .caps = MFD_DEV_CAP_ALL } };
	int (*cost[3])(void *, uint64_t *) = { NULL, declare_7ms,
					       declare_fails };
	struct mfd__devset set;
	mfd__devset_init(&set, true);
	for (unsigned i = 0; i < 3; i++) {
		mfd_device_ops ops = { .caps = f[i].caps,
				       .set_state = i ? fake_set : set_slow_pc,
				       .get_state = fake_get,
				       .get_precopy_info = fake_info,
				       .save = fake_save,
				       .get_stop_cost = cost[i] };
		char name[16];
		snprintf(name, sizeof(name), "dev%u", i);
		f[i].state = RUN;
		assert_int_equal(mfd__devset_add(&set, name, &ops, &f[i]), 0);
	}
	/* No arc yet: only the declared 7 ms. */
	assert_int_equal(mfd__devset_stop_cost(&set), 7000000);
	assert_int_equal(mfd__devset_goto(&set, PC, false), 0);
	uint64_t arc0 = set.devs[0].arc_max_ns, arc2 = set.devs[2].arc_max_ns;
	assert_true(arc0 >= 3000000);
	assert_int_equal(mfd__devset_stop_cost(&set), arc0 + 7000000 + arc2);
	/* Faster arcs do not lower the slowest. */
	assert_int_equal(mfd__devset_goto(&set, RUN, false), 0);
	assert_true(set.devs[0].arc_max_ns >= arc0);
	set.devs[1].state = ERR;
	assert_int_equal(mfd__devset_stop_cost(&set),
			 set.devs[0].arc_max_ns + set.devs[2].arc_max_ns);
	mfd__devset_destroy(&set);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_caps_shortest_paths),
		cmocka_unit_test(test_specific_paths),
		cmocka_unit_test(test_illegal),
		cmocka_unit_test(test_reduced_caps_terminate),
		cmocka_unit_test(test_p2p_rule_source),
		cmocka_unit_test(test_dest_events),
		cmocka_unit_test(test_failure_rolls_back),
		cmocka_unit_test(test_bad_requests_touch_nothing),
		cmocka_unit_test(test_stop_cost),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
