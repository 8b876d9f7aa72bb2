/* SPDX-License-Identifier: MIT */
/*
 * libmultifd device state: the API a hypervisor uses to migrate the state of
 * its devices (NICs, GPUs, NVMe controllers passed through with VFIO, or
 * emulated devices) together with guest RAM.
 *
 * The model is Linux VFIO migration v2 (linux/vfio.h, enum
 * vfio_device_mig_state), so that a VFIO device plugs in with a thin adapter
 * (include/multifd/vfio.h) and an emulated device can behave the same way:
 *
 *  - a device is in one of the states below, with the same numbers as
 *    VFIO_DEVICE_STATE_*;
 *  - the library moves it along the arcs VFIO allows, one arc per call of
 *    set_state(), always the shortest path the kernel's
 *    vfio_mig_get_next_state() would take (mfd_dev_next_state() below);
 *  - with several devices, every device that supports the P2P states
 *    reaches RUNNING_P2P / PRE_COPY_P2P before any device is stopped, and
 *    every device leaves the stopped states before any device runs again,
 *    so that no device issues peer-to-peer DMA to a stopped peer;
 *  - on the source the library reads the state as an opaque byte stream
 *    (save), first during pre-copy, then after the guest has stopped; on the
 *    destination it writes the same bytes, in the same order (load).
 *
 * Threading: the ops of one device are never called concurrently with each
 * other, except dma_dirty(), which may run at any time on the migration
 * thread while a load or save of another device runs elsewhere. On the
 * destination, load() of different devices runs on different threads in
 * the `multifd` transfer mode.
 */
#ifndef MULTIFD_DEVICE_H
#define MULTIFD_DEVICE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "multifd/multifd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Device migration states: the numbers of enum vfio_device_mig_state. */
enum mfd_dev_state {
	MFD_DEV_ERROR = 0,	  /* failed; only a reset leaves it */
	MFD_DEV_STOP = 1,	  /* no DMA, no interrupts, state frozen */
	MFD_DEV_RUNNING = 2,	  /* normal operation */
	MFD_DEV_STOP_COPY = 3,	  /* stopped; the state can be read */
	MFD_DEV_RESUMING = 4,	  /* stopped; new state is being written */
	MFD_DEV_RUNNING_P2P = 5,  /* running, but no new peer-to-peer DMA */
	MFD_DEV_PRE_COPY = 6,	  /* running; early state can be read */
	MFD_DEV_PRE_COPY_P2P = 7, /* PRE_COPY without peer-to-peer DMA */
	MFD_DEV_NSTATES = 8,
};

/* Capabilities: the bits of VFIO_MIGRATION_*. STOP_COPY is mandatory. */
#define MFD_DEV_CAP_STOP_COPY (1U << 0) /* STOP, STOP_COPY, RESUMING */
#define MFD_DEV_CAP_P2P	      (1U << 1) /* RUNNING_P2P (+ PRE_COPY_P2P) */
#define MFD_DEV_CAP_PRE_COPY  (1U << 2) /* PRE_COPY (+ PRE_COPY_P2P) */
#define MFD_DEV_CAP_ALL                                                        \
	(MFD_DEV_CAP_STOP_COPY | MFD_DEV_CAP_P2P | MFD_DEV_CAP_PRE_COPY)

/* "RUNNING", "PRE_COPY_P2P", ...; "?" for a number out of range. */
MFD_API const char *mfd_dev_state_name(int state);

/*
 * The next single arc from cur toward target for a device with caps, as the
 * kernel's vfio_mig_get_next_state() computes it (shortest path, skipping
 * the states the device does not support). Returns 0 and *next, or -EINVAL
 * when target is ERROR, a state the device does not support, or not
 * reachable (cur is ERROR). *next == cur exactly when cur == target.
 */
MFD_API int mfd_dev_next_state(int cur, int target, uint32_t caps, int *next);

/* Whether from -> to is one arc of the FSM (not a combination), for a
 * device with caps. */
MFD_API int mfd_dev_arc_valid(int from, int to, uint32_t caps);

/* One segment of a chunk handed to load_segs(): see there. */
struct mfd_dev_seg {
	const void *buf;  /* the bytes, or NULL: already placed */
	uint64_t mem_off; /* placed: offset in the state memory */
	uint64_t len;
};

/*
 * What the hypervisor implements per device. Every callback returns 0 (or a
 * byte count where said) or a negative errno; a failure ends the migration.
 */
typedef struct mfd_device_ops {
	/* MFD_DEV_CAP_* bits; MFD_DEV_CAP_STOP_COPY is required. */
	uint32_t caps;
	/*
	 * Required. Move the device along one arc of the FSM (the library
	 * never asks for a combination). On failure the library calls
	 * get_state() if there is one, else it considers the device in ERROR.
	 */
	int (*set_state)(void *opaque, int new_state);
	/* Optional: the current state (VFIO: FEATURE_GET of MIG_DEVICE_STATE).
	 */
	int (*get_state)(void *opaque, int *state);
	/* Optional: ERROR -> RUNNING (VFIO_DEVICE_RESET). */
	int (*reset)(void *opaque);
	/*
	 * Optional, PRE_COPY devices: bytes of initial state not read yet and
	 * an estimate of state changed since read (VFIO_MIG_GET_PRECOPY_INFO).
	 * Called only in PRE_COPY and PRE_COPY_P2P.
	 */
	int (*get_precopy_info)(void *opaque, uint64_t *initial_bytes,
				uint64_t *dirty_bytes);
	/*
	 * Source, data plane: copy up to len bytes of the next state into buf.
	 * Returns the bytes written, 0 at the end of what the current phase
	 * has (in PRE_COPY: nothing more for now; in STOP_COPY: the end of the
	 * state), or a negative errno. Called in PRE_COPY(_P2P) and STOP_COPY.
	 */
	ssize_t (*save)(void *opaque, void *buf, size_t len);
	/*
	 * Optional, source, STOP_COPY only: like save(), but instead of
	 * copying, describe where the next (up to len) bytes of the stream
	 * already lie in the device's memory: fill at most *iovcnt entries of
	 * iov, set *iovcnt to the entries used and return the bytes they hold
	 * (0 at the end of the state, or a negative errno). The bytes are
	 * consumed as if save() had returned them. The library sends them
	 * straight from there (no copy), so the memory must stay mapped and
	 * unchanged while the device is in STOP_COPY, and mapped until the
	 * migration has ended. Without it, or in PRE_COPY, save() is used;
	 * the two may alternate within one stream. With state_mem, bytes
	 * described outside the state memory travel inline, and the library
	 * cannot tell a record header from state: if loading such bytes
	 * writes into the state memory (e.g. the rest of a record the device
	 * copied aside because it changed while being sent, whose newer copy
	 * this stream places later), return them in a call of their own,
	 * with nothing inside the state memory. That chunk then goes as an
	 * ordinary one, and the destination writes no later placed byte
	 * before it is loaded (protocol 9.2.1, the fence).
	 */
	ssize_t (*save_iov)(void *opaque, struct iovec *iov, int *iovcnt,
			    size_t len);
	/*
	 * Destination, data plane: apply the next len bytes of the stream, in
	 * the order save() produced them (buffer boundaries may differ). Called
	 * in RESUMING only.
	 */
	int (*load)(void *opaque, const void *buf, size_t len);
	/* ---- placed state (issue 15): state_mem, load_segs ---- */
	/*
	 * Optional, both sides: the device's state memory, size bytes at
	 * *base, mapped from set-up until the migration has ended. Source:
	 * bytes that save_iov() describes inside it travel as placed bytes
	 * (their offset in it, not their stream position, tells the peer
	 * where they go). Destination, with load_segs: a receive worker
	 * writes placed bytes straight to *base + offset, from the socket,
	 * after checking offset + length <= size (else the chunk is refused
	 * with MFD_EOFFSET), on any receive thread, while load() or
	 * load_segs() of the same device may run. A device whose stream does
	 * not place bytes in its memory (VFIO's data fd) has no state_mem.
	 * Called once per migration, in STOP_COPY or RESUMING.
	 */
	int (*state_mem)(void *opaque, void **base, uint64_t *size);
	/*
	 * Optional, destination, with state_mem: the next bytes of the
	 * stream, in stream order like load(), as nseg segments: a segment
	 * with buf != NULL carries its bytes there (copy them, as load()
	 * would); one with buf == NULL says its len bytes are already in the
	 * state memory at offset mem_off, where the source's state memory had
	 * them. The device checks that this is where its stream puts them
	 * (else a negative errno: the migration fails). Without it, placed
	 * bytes are received into a buffer and given to load().
	 */
	int (*load_segs)(void *opaque, const struct mfd_dev_seg *seg, int nseg);
	/* ---- end placed state ---- */
	/*
	 * Optional, source: report the guest RAM the device wrote by DMA since
	 * the last call (VFIO's DMA logging report), by calling mark() for each
	 * range [host, host+len) of guest memory. Called at every dirty sync.
	 */
	int (*dma_dirty)(void *opaque,
			 int (*mark)(void *ctx, void *host, uint64_t len),
			 void *ctx);
	/*
	 * Optional, source: an estimate of the bytes the device would still
	 * produce in STOP_COPY if it were stopped now (VFIO's
	 * VFIO_DEVICE_FEATURE_MIG_DATA_SIZE). Called at every dirty sync in
	 * any state but ERROR; it feeds the downtime estimate (the device part
	 * of downtime-limit's budget). Without it, a device counts as 0 bytes.
	 */
	int (*get_stop_copy_size)(void *opaque, uint64_t *bytes);
	/*
	 * Optional, source: how long the device expects its arc to STOP_COPY
	 * to take if it were stopped now, in ns (quiescing the DMA in flight,
	 * freezing its state). Called at every dirty sync in any state but
	 * ERROR, it feeds the sync part of the downtime estimate, which the
	 * arc adds to (the devices go one after the other). Without it, the
	 * slowest arc the library has timed on the device stands in (for
	 * devices that save their state on entering PRE_COPY, that arc costs
	 * what the stop does).
	 */
	int (*get_stop_cost)(void *opaque, uint64_t *ns);
} mfd_device_ops;

/*
 * Registers a device for migration, before mfd_*_start(); name (1..63
 * bytes, unique) identifies it to the peer, which must register the same
 * names in the same order. ops is copied; opaque is passed to every op.
 * The device must be in RUNNING. -EINVAL for bad ops or name, -EEXIST for
 * a duplicate, -ENOSPC beyond 256 devices, MFD_ESTATE while migrating.
 */
MFD_API int mfd_source_add_device(mfd_source *src, const char *name,
				  const mfd_device_ops *ops, void *opaque);
MFD_API int mfd_dest_add_device(mfd_dest *dst, const char *name,
				const mfd_device_ops *ops, void *opaque);

#ifdef __cplusplus
}
#endif

#endif /* MULTIFD_DEVICE_H */
