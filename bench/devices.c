/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices.h"
#include "devstate/simdev.h"

static struct mfd_simdev **sdev, **ddev;
static unsigned ndev;

int bench_devices_attach(const struct bench_devices_opts *o, mfd_source *src,
			 mfd_dest *dst, void *ram, uint64_t ram_bytes)
{
	if (!o->n)
		return 0;
	sdev = calloc(o->n, sizeof(*sdev));
	ddev = calloc(o->n, sizeof(*ddev));
	if (!sdev || !ddev)
		return -12;
	for (unsigned i = 0; i < o->n; i++) {
		struct mfd_simdev_cfg c = {
			.state_size = o->state,
			.precopy_fraction = o->precopy,
			.seed = 1000 + i,
			.dma_base = ram,
			.dma_size = ram_bytes,
			.dma_rate = o->dma_rate,
			.no_placed = o->no_placed,
		};
		int err = mfd_simdev_new(&sdev[i], &c);
		if (err)
			return err;
		ndev = i + 1;
		c.dma_rate = 0;
		c.load_ms_per_mib = o->load_ms_per_mib;
		/* The bytes are checked after the run (bench_devices_equal),
		 * not inside the load that the downtime measures. */
		c.defer_check = true;
		if ((err = mfd_simdev_new(&ddev[i], &c)))
			return err;
		char name[32];
		snprintf(name, sizeof(name), "simdev%u", i);
		if ((err = mfd_source_add_device(
			     src, name, mfd_simdev_ops(sdev[i]), sdev[i])) ||
		    (err = mfd_dest_add_device(
			     dst, name, mfd_simdev_ops(ddev[i]), ddev[i])))
			return err;
	}
	return 0;
}

bool bench_devices_equal(void)
{
	for (unsigned i = 0; i < ndev; i++) {
		if (!ddev[i] ||
		    mfd_simdev_digest(sdev[i]) != mfd_simdev_digest(ddev[i]) ||
		    mfd_simdev_check(ddev[i]))
			return false;
		uint64_t ls, ld;
		const void *ms = mfd_simdev_mem(sdev[i], &ls);
		const void *md = mfd_simdev_mem(ddev[i], &ld);
		if (ls != ld || memcmp(ms, md, ls))
			return false;
	}
	return true;
}

void bench_devices_report(struct report *r, const struct bench_devices_opts *o,
			  const mfd_stats *src, const mfd_stats *dst)
{
	if (!o->n)
		return;
	report_u64(r, "devices", o->n);
	report_u64(r, "device_state_bytes", o->state);
	report_f64(r, "device_precopy", o->precopy, 3);
	report_f64(r, "device_load_ms_per_mib", o->load_ms_per_mib, 3);
	report_str(r, "device_transfer", o->transfer ? o->transfer : "default");
	report_u64(r, "device_bytes", src->device_bytes);
	report_f64(r, "device_downtime_ms",
		   (double)src->device_downtime_ns / 1e6, 3);
	/* Device state per second of its part of the downtime: the number
	 * to hold against throughput_mbps (RAM) of the same run. */
	report_f64(r, "device_throughput_mbps",
		   src->device_downtime_ns
			   ? (double)src->device_bytes * 1e3 /
				     (double)src->device_downtime_ns
			   : 0,
		   1);
	/* DEVICE packets count in wire_bytes; DEVICE_DATA (main) not. */
	bool multi = !o->transfer || !strcmp(o->transfer, "multifd");
	uint64_t dev_wire = multi ? src->device_bytes : 0;
	uint64_t ram_wire =
		src->wire_bytes > dev_wire ? src->wire_bytes - dev_wire : 0;
	report_f64(r, "ram_throughput_mbps",
		   src->transfer_ns
			   ? (double)ram_wire * 1e3 / (double)src->transfer_ns
			   : 0,
		   1);
	report_f64(r, "device_downtime_ratio",
		   src->downtime_ns ? (double)src->device_downtime_ns /
					      (double)src->downtime_ns
				    : 0,
		   3);
	report_f64(r, "dest_device_load_ms",
		   (double)dst->device_downtime_ns / 1e6, 3);
	report_u64(r, "dest_device_buffer_peak", dst->device_buffer_peak);
	report_u64(r, "dest_device_buffer_waits", dst->device_buffer_waits);
	report_bool(r, "device_placed", !o->no_placed);
	uint64_t placed = 0;
	for (unsigned i = 0; i < ndev; i++) {
		struct mfd_simdev_stats st;
		mfd_simdev_get_stats(ddev[i], &st);
		placed += st.placed_bytes;
	}
	report_u64(r, "dest_device_placed_bytes", placed);
	report_bool(r, "devices_equal", bench_devices_equal());
}

void bench_devices_free(void)
{
	for (unsigned i = 0; i < ndev; i++) {
		mfd_simdev_free(sdev[i]);
		mfd_simdev_free(ddev[i]);
	}
	free(sdev);
	free(ddev);
	sdev = ddev = NULL;
	ndev = 0;
}
