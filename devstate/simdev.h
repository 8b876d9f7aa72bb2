/* SPDX-License-Identifier: MIT */
/*
 * A simulated migratable device for tests and the bench. It implements
 * mfd_device_ops (include/multifd/device.h) the way a VFIO variant driver
 * would, and only through the public API, so the bench links it beside the
 * shared library.
 *
 * State: state_size bytes cut into units (64 KiB by default). Unit u at
 * version v has contents derived from (seed, u, v) only, so a destination
 * can check every byte it loads, and two devices with equal version
 * vectors have equal state. While the device runs, dirty_rate bytes of
 * state per second change (a unit's version goes up); the first
 * precopy_fraction of the units may be sent during PRE_COPY, the rest only
 * in STOP_COPY.
 *
 * Stream (what save() produces and load() checks): records of a 16-byte
 * header (u32 magic "SIMD", u32 unit, u32 version, u32 length, little
 * endian) followed by the unit's contents.
 *
 * DMA: with dma_rate > 0 a thread writes guest pages in
 * [dma_base, dma_base + dma_size) while the device runs, and logs them for
 * dma_dirty(). It is quiesced before the device enters a stopped state.
 *
 * Restore cost: load() takes at least load_ms_per_mib per MiB (sleeping,
 * as a device's firmware would keep the device busy, not the CPU).
 *
 * Memory: the state lives in state_size bytes of the device's own memory
 * (filled at creation, rewritten when a unit changes). save() copies from
 * it; save_iov() (STOP_COPY) points at it, so the engine sends it without
 * a copy; load() copies into it. state_mem() shows it to the engine, so
 * the destination receives placed bytes straight into it and load_segs()
 * only checks that they are where the stream puts them (off with
 * no_placed). With defer_check, load() checks only the
 * record headers and mfd_simdev_check() checks the bytes later, so the
 * check's cost is not part of the load (the bench); without it load()
 * checks every byte as it arrives (the tests).
 */
#ifndef DEVSTATE_SIMDEV_H
#define DEVSTATE_SIMDEV_H

#include <stdbool.h>
#include <stdint.h>

#include "multifd/device.h"

struct mfd_simdev_cfg {
	uint64_t state_size;	 /* bytes (> 0) */
	uint32_t unit_size;	 /* 0 = 64 KiB; a multiple of 8 */
	double precopy_fraction; /* 0 .. 1 */
	uint64_t dirty_rate;	 /* state bytes changed per second running */
	uint64_t seed;
	double load_ms_per_mib; /* destination restore cost */
	uint32_t caps;		/* 0 = MFD_DEV_CAP_ALL */
	/* DMA into guest RAM (source). */
	void *dma_base;
	uint64_t dma_size;
	uint32_t dma_page; /* 0 = 4096 */
	uint64_t dma_rate; /* bytes/s while running, 0 = none */
	/* Fault injection: save() fails with -EIO once this many bytes were
	 * produced (0 = never). */
	uint64_t fail_save_after;
	bool defer_check; /* load(): headers only; see mfd_simdev_check() */
	/* No state_mem / load_segs: every byte goes through save_iov() as
	 * inline bytes and through load() as a copy (the path before placed
	 * chunks, and VFIO's). */
	bool no_placed;
};

struct mfd_simdev;

int mfd_simdev_new(struct mfd_simdev **out, const struct mfd_simdev_cfg *cfg);
void mfd_simdev_free(struct mfd_simdev *d);
/* The ops table (the same for both sides); opaque is the simdev. */
const mfd_device_ops *mfd_simdev_ops(const struct mfd_simdev *d);

int mfd_simdev_state(struct mfd_simdev *d);
/* Changes n units now, as the device would by running (deterministic:
 * the units follow from the seed and the count of changes so far). */
void mfd_simdev_touch(struct mfd_simdev *d, uint64_t n);
/* Units and their current (source) or loaded (destination) versions;
 * a unit never loaded reads UINT32_MAX. */
uint32_t mfd_simdev_units(const struct mfd_simdev *d);
uint32_t mfd_simdev_version(struct mfd_simdev *d, uint32_t unit);
/* Digest of the version vector: equal digests, equal state. */
uint64_t mfd_simdev_digest(struct mfd_simdev *d);
/* 0 when every unit was loaded (or is the source's) and its bytes in the
 * device memory are those of its version, else -EINVAL. */
int mfd_simdev_check(struct mfd_simdev *d);
/* The device memory (state_size bytes): unit u at u * unit_size. */
const void *mfd_simdev_mem(const struct mfd_simdev *d, uint64_t *len);

struct mfd_simdev_stats {
	uint64_t saved_bytes;	/* stream bytes produced, all sessions */
	uint64_t precopy_bytes; /* of which in PRE_COPY */
	uint64_t loaded_bytes;	/* stream bytes applied */
	uint64_t placed_bytes;	/* of which received in place (load_segs) */
	uint64_t dma_pages;	/* guest pages written by DMA */
	uint64_t load_ns;	/* time spent inside load() */
	uint64_t state_changes; /* units changed */
};
void mfd_simdev_get_stats(struct mfd_simdev *d, struct mfd_simdev_stats *st);

#endif /* DEVSTATE_SIMDEV_H */
