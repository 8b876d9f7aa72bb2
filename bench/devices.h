/* SPDX-License-Identifier: MIT */
/*
 * Simulated devices for the bench (devstate/simdev.c): --devices N
 * --device-state SIZE --device-precopy FRACTION --device-load-ms-per-mib X
 * --device-transfer main|multifd --device-placed on|off. The source devices DMA
 * into the bench VM's RAM while they run; the destination devices take X ms per
 * MiB to restore, as a device's firmware would.
 */
#ifndef BENCH_DEVICES_H
#define BENCH_DEVICES_H

#include <stdbool.h>
#include <stdint.h>

#include "multifd/device.h"
#include "report.h"

struct bench_devices_opts {
	unsigned n;
	uint64_t state;
	double precopy;
	double load_ms_per_mib;
	uint64_t dma_rate;    /* bytes/s per device while running */
	const char *transfer; /* NULL: the library's default */
	bool no_placed;	      /* --device-placed off: no state_mem */
	unsigned vdpa;	      /* --devices-vdpa (bench/vdpa.c) */
};

/* Registers the devices with both sides. */
int bench_devices_attach(const struct bench_devices_opts *o, mfd_source *src,
			 mfd_dest *dst, void *ram, uint64_t ram_bytes);
/* After the migration: every device's state equal on both sides. */
bool bench_devices_equal(void);
/* JSON / table items: the device share of the downtime. */
void bench_devices_report(struct report *r, const struct bench_devices_opts *o,
			  const mfd_stats *src, const mfd_stats *dst);
/* After mfd_source_free() / mfd_dest_free(). */
void bench_devices_free(void);

#endif
