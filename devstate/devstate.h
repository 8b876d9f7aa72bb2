/* SPDX-License-Identifier: MIT */
/*
 * Engine side of device state (prefix mfd__): the set of registered devices
 * and the three roles the VFIO integration of a hypervisor has, each one
 * explicit here:
 *
 *  - data plane: save (source) and load (destination) go through the
 *    device's ops; devsave.c / devload.c in multifd/ move the bytes;
 *  - control plane: mfd__devset_vm_event(), called at every run-state change
 *    of the VM (before and after the stop hook, after a resume, on the
 *    destination before and after the load), drives the devices' FSM;
 *  - error handling: mfd__devset_notify(), the migration-state notifier
 *    (setup, switchover, completed, failed); on a failed migration it rolls
 *    every device of the source back to RUNNING.
 *
 * This folder knows nothing of sockets. Not thread-safe: one migration
 * thread drives a set; load threads only call their own device's load().
 */
#ifndef DEVSTATE_DEVSTATE_H
#define DEVSTATE_DEVSTATE_H

#include <stdbool.h>
#include <stdint.h>

#include "multifd/device.h"

#define MFD_MAX_DEVICES	 256
#define MFD_MAX_DEV_NAME 63

struct mfd__dev {
	char name[MFD_MAX_DEV_NAME + 1];
	mfd_device_ops ops;
	void *opaque;
	int state;	     /* as the library last set (or read) it */
	unsigned arcs;	     /* arcs taken, for tests and logs */
	uint64_t arc_max_ns; /* the slowest set_state() timed */
	/* state_mem() of this migration (devsave.c / devload.c): mem_size
	 * bytes at mem; mem_asked once it was called. */
	uint8_t *mem;
	uint64_t mem_size;
	bool mem_asked;
};

/* The device's state memory for placed bytes, asked once per migration
 * (mem_asked cleared at its start): 0 with *base and *size, 1 when the
 * device has none, or the op's error. */
int mfd__dev_state_mem(struct mfd__dev *d, uint8_t **base, uint64_t *size);

struct mfd__devset {
	struct mfd__dev *devs;
	unsigned n;
	bool source;
	/* Every set_state() arc in order, for tests: (device << 8 | state). */
	void (*trace)(void *ctx, unsigned dev, int from, int to);
	void *trace_ctx;
};

void mfd__devset_init(struct mfd__devset *set, bool source);
void mfd__devset_destroy(struct mfd__devset *set);
/* Registers a device, which starts in RUNNING (source and destination, as
 * a freshly opened VFIO device). -EINVAL for bad ops or name, -ENOSPC over
 * MFD_MAX_DEVICES, -EEXIST for a duplicate name. */
int mfd__devset_add(struct mfd__devset *set, const char *name,
		    const mfd_device_ops *ops, void *opaque);

/* Moves one device to target, arc by arc. -EINVAL when target is not
 * reachable (the device is not touched); else the first error of set_state,
 * after which d->state is what get_state() says, or ERROR. */
int mfd__dev_goto(struct mfd__devset *set, unsigned idx, int target);

/*
 * Moves every device to target (for a device without PRE_COPY, PRE_COPY
 * means RUNNING and PRE_COPY_P2P means RUNNING_P2P), keeping the P2P rule:
 * no device enters a stopped state (STOP, STOP_COPY, RESUMING) before every
 * device has left RUNNING / PRE_COPY, and no device enters RUNNING /
 * PRE_COPY before every device has left the stopped states. Stops at the
 * first error (returned) unless best_effort, which tries every device and
 * returns the first error.
 */
int mfd__devset_goto(struct mfd__devset *set, int target, bool best_effort);

/* Control plane: run-state changes of the VM. */
enum mfd__vm_event {
	MFD_VM_BEFORE_STOP,  /* source: all to the P2P states */
	MFD_VM_AFTER_STOP,   /* source: all to STOP_COPY */
	MFD_VM_AFTER_RESUME, /* either side: all to RUNNING */
	MFD_VM_BEFORE_LOAD,  /* destination: all to RESUMING */
	MFD_VM_AFTER_LOAD,   /* destination: all to STOP (state validated) */
};
int mfd__devset_vm_event(struct mfd__devset *set, enum mfd__vm_event ev);

/* Error handling: the migration-state notifier. */
enum mfd__mig_event {
	MFD_MIG_SETUP,	    /* source: PRE_COPY where supported */
	MFD_MIG_SWITCHOVER, /* nothing to do: the vm events move devices */
	MFD_MIG_COMPLETED,  /* source: STOP_COPY -> STOP, closing the session */
	MFD_MIG_FAILED,	    /* source: every device back to RUNNING (reset
			       first where it is in ERROR); destination:
			       every device to STOP, never RUNNING */
};
int mfd__devset_notify(struct mfd__devset *set, enum mfd__mig_event ev);

/* Sum of precopy info over the devices in PRE_COPY(_P2P). */
int mfd__devset_precopy_pending(struct mfd__devset *set, uint64_t *bytes);
/* The sum of the devices' stop-copy size estimates (get_stop_copy_size);
 * a device without the op, in ERROR, or whose op fails counts as 0: it is
 * an estimate, never a reason to fail. */
uint64_t mfd__devset_stop_copy_size(struct mfd__devset *set);
/* The sum of the devices' arcs to STOP_COPY as predicted now: each
 * device's get_stop_cost, else (no op, or it fails) its slowest arc timed
 * so far; a device in ERROR counts as 0. */
uint64_t mfd__devset_stop_cost(struct mfd__devset *set);

#endif /* DEVSTATE_DEVSTATE_H */
