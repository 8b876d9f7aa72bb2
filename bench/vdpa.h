/* SPDX-License-Identifier: MIT */
/*
 * --devices-vdpa N: fake vhost-vdpa virtio-net devices (tests/fake_vdpa.c)
 * behind the library's vDPA adapter (include/multifd/vdpa.h), each with
 * its rings and receive buffers in a guest memory block of its own
 * ("vdpa.ram", 4 MiB per device) and traffic while the migration runs: a
 * thread delivers packets to every source device (8 per device per ms)
 * and, as the guest's driver, posts the used buffers again. After the
 * migration the destination devices are started (DRIVER_OK, control
 * commands replayed) and compared with the source's.
 */
#ifndef BENCH_VDPA_H
#define BENCH_VDPA_H

#include <stdbool.h>

#include "multifd/multifd.h"
#include "report.h"

/* Registers the block and the devices with both sides (after the other
 * blocks: block is the index it gets), and starts the traffic. */
int bench_vdpa_attach(unsigned n, mfd_source *src, mfd_dest *dst,
		      unsigned block);
/* After the migration (the engine is done with the devices): stops the
 * traffic; when ok, starts the destination devices. */
void bench_vdpa_finish(bool ok);
/* The destination devices run with the source's state and memory. */
bool bench_vdpa_equal(void);
void bench_vdpa_report(struct report *r);
void bench_vdpa_free(void);

#endif
