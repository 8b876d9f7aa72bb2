/* SPDX-License-Identifier: MIT */
/*
 * multifd-bench --vm kvm: live-migrates a running KVM guest between two
 * VMMs in this process and reports the migration and the guest's own view
 * of it (its work rate before, during and after, and the gap in its serial
 * output).
 */
#include "kvm_bench.h"
#include "kvm_migrate.h"
#include "vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "multifd/multifd.h"

#define EXIT_SKIP 77

int kvm_bench_run(const struct kvm_bench_opts *k, uint64_t ram_bytes,
		  unsigned measure_ms, const mfd_config *cfg)
{
	struct kvm_mig_opts o = {
		.kernel = k->kernel,
		.cmdline = k->cmdline,
		.vcpus = k->vcpus,
		.mem_bytes = ram_bytes,
		.before_ms = measure_ms,
		.after_ms = measure_ms,
		.serial_fd = -1,
		.cancel_after_ms = -1,
		.kill_dest_after_ms = -1,
		.clear_chunk = k->clear_chunk,
		.ring_entries = k->ring_entries,
		.dirty_mode = k->dirty_ring ? VMM_DIRTY_RING : VMM_DIRTY_BITMAP,
	};
	int rc = 1, serial_close = 0;

	if (k->serial && !strcmp(k->serial, "-")) {
		o.serial_fd = 1;
	} else if (k->serial) {
		o.serial_fd =
			open(k->serial,
			     O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (o.serial_fd < 0) {
			fprintf(stderr, "multifd-bench: --serial %s: %s\n",
				k->serial, strerror(errno));
			return 1;
		}
		serial_close = 1;
	}
	o.cfg = cfg;

	struct kvm_mig_result r;
	int ret = kvm_migrate_run(&o, &r);
	if (ret == -ENODEV) {
		printf("kvm: not usable here: %s\n", r.err);
		rc = EXIT_SKIP;
		goto out;
	}
	if (ret) {
		fprintf(stderr, "multifd-bench: %s\n",
			r.err[0] ? r.err : strerror(-ret));
		rc = 1;
		goto out;
	}
	char ch[16] = "?";
	mfd_config_get(cfg, "channels", ch, sizeof(ch));
	printf("kvm: guest %s, %u vCPU(s), %llu MiB, cmdline \"%s\", "
	       "channels %s\n",
	       o.kernel, o.vcpus, (unsigned long long)(o.mem_bytes >> 20),
	       o.cmdline, ch);
	printf("result: %s%s%s\n", r.ret ? mfd_strerror(r.ret) : "success",
	       r.err[0] ? "; " : "", r.err);
	const mfd_stats *s = &r.src;
	printf("migration: total %.1f ms, setup %.1f ms, rounds %u, pages "
	       "%llu (zero %llu), wire %.1f MiB\n",
	       s->total_ns / 1e6, s->setup_ns / 1e6, s->round + 1,
	       (unsigned long long)s->pages, (unsigned long long)s->zero_pages,
	       s->wire_bytes / 1048576.0);
	printf("downtime: %.2f ms (stop+final sync %.2f, pages %.2f, end "
	       "%.2f, ack %.2f), device state %.2f ms, %llu bytes\n",
	       s->downtime_ns / 1e6, s->down_sync_ns / 1e6,
	       s->down_pages_ns / 1e6, s->down_end_ns / 1e6,
	       s->down_ack_ns / 1e6, s->device_downtime_ns / 1e6,
	       (unsigned long long)s->device_bytes);
	char mode[96];
	if (r.ring_entries)
		snprintf(mode, sizeof(mode), "ring (%u entries per vCPU)",
			 r.ring_entries);
	else
		snprintf(mode, sizeof(mode), "bitmap%s",
			 r.manual_protect ? " + manual protect (GET, CLEAR in "
					    "chunks)"
					  : " (GET re-protects)");
	printf("dirty log: %s: %llu syncs, %.3f ms in them, %llu dirty "
	       "pages reported\n",
	       mode, (unsigned long long)r.syncs, r.sync_ns / 1e6,
	       (unsigned long long)r.dirty_pages);
	printf("guest work (pages verified/s): before %.0f, during %.0f, "
	       "after %.0f (%s)\n",
	       r.rate_before, r.rate_during, r.rate_after,
	       r.dest_running ? "destination" : "source");
	if (r.dest_running)
		printf("guest serial: last line on the source seq=%llu, first "
		       "on the destination seq=%llu, gap %.1f ms (lines every "
		       "100 ms of guest time)\n",
		       (unsigned long long)r.last_seq_src,
		       (unsigned long long)r.first_seq_dst,
		       r.serial_gap_ns / 1e6);
	printf("guest bad pages: %llu (%llu lines after the end)\n",
	       (unsigned long long)r.bad_end,
	       (unsigned long long)r.lines_after);
	rc = !r.ret && r.dest_running && !r.bad_end && r.lines_after &&
			     r.first_seq_dst == r.last_seq_src + 1
		     ? 0
		     : 1;
out:
	if (serial_close)
		close(o.serial_fd);
	return rc;
}
