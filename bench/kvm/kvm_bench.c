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

#define EXIT_USAGE 2
#define EXIT_SKIP  77

int kvm_bench_wanted(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--vm=kvm"))
			return 1;
		if (!strcmp(argv[i], "--vm") && i + 1 < argc &&
		    !strcmp(argv[i + 1], "kvm"))
			return 1;
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: multifd-bench --vm kvm --kernel GUEST.elf "
		"[--cmdline \"...\"] [--vcpus N]\n"
		"         [--ram SIZE] [--before MS] [--after MS] "
		"[--serial FILE|-]\n"
		"         [--dirty-log bitmap|ring] [--clear-chunk PAGES] "
		"[--ring-entries N]\n"
		"         [--config FILE] [--KEY VALUE ...]\n"
		"Migrates a running KVM guest (an ELF entered in 64-bit mode, "
		"e.g.\ntests/guests/stamp.elf) between two VMMs in this "
		"process over loopback.\n"
		"--KEY VALUE sets any library key (docs/config.md), e.g. "
		"--channels 2\n--max-bandwidth 16M. Defaults: --cmdline "
		"\"rate=2000\" --vcpus 1 --ram 32M\n--before 2000 --after "
		"2000.\n");
}

static int parse_u64(const char *s, uint64_t *v, int size)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -1;
	uint64_t m = 1;
	const char *unit = size && *end ? strchr("KMG", *end & ~0x20) : NULL;
	if (unit) {
		m = 1ULL << (10 * (unit - "KMG" + 1));
		end++;
	}
	if (*end || x > UINT64_MAX / m)
		return -1;
	*v = x * m;
	return 0;
}

int kvm_bench_main(int argc, char **argv)
{
	struct kvm_mig_opts o = {
		.cmdline = "rate=2000",
		.vcpus = 1,
		.mem_bytes = 32ULL << 20,
		.before_ms = 2000,
		.after_ms = 2000,
		.serial_fd = -1,
		.cancel_after_ms = -1,
		.kill_dest_after_ms = -1,
	};
	mfd_config *cfg = NULL;
	char err[256];
	int rc = EXIT_USAGE, serial_close = 0;
	uint64_t v;

	if (mfd_config_new(&cfg)) {
		fprintf(stderr, "multifd-bench: out of memory\n");
		return 1;
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			rc = 0;
			goto out;
		}
		if (strncmp(a, "--", 2)) {
			fprintf(stderr,
				"multifd-bench: unexpected argument "
				"'%s'\n",
				a);
			goto out;
		}
		const char *key = a + 2, *val;
		char kbuf[64];
		const char *eq = strchr(key, '=');
		if (eq) {
			snprintf(kbuf, sizeof(kbuf), "%.*s", (int)(eq - key),
				 key);
			key = kbuf;
			val = eq + 1;
		} else if (i + 1 < argc) {
			val = argv[++i];
		} else {
			fprintf(stderr, "multifd-bench: %s needs a value\n", a);
			goto out;
		}
		if (!strcmp(key, "vm")) {
			if (strcmp(val, "kvm")) {
				fprintf(stderr, "multifd-bench: --vm kvm "
						"expected\n");
				goto out;
			}
		} else if (!strcmp(key, "kernel")) {
			o.kernel = val;
		} else if (!strcmp(key, "cmdline")) {
			o.cmdline = val;
		} else if (!strcmp(key, "vcpus")) {
			if (parse_u64(val, &v, 0) || v < 1 || v > 8) {
				fprintf(stderr,
					"multifd-bench: --vcpus: 1..8\n");
				goto out;
			}
			o.vcpus = (unsigned)v;
		} else if (!strcmp(key, "ram")) {
			if (parse_u64(val, &v, 1)) {
				fprintf(stderr, "multifd-bench: --ram: a size "
						"such as 64M\n");
				goto out;
			}
			o.mem_bytes = v;
		} else if (!strcmp(key, "before") || !strcmp(key, "after")) {
			if (parse_u64(val, &v, 0) || v > 600000) {
				fprintf(stderr,
					"multifd-bench: --%s: "
					"milliseconds, 0..600000\n",
					key);
				goto out;
			}
			if (key[0] == 'b')
				o.before_ms = (unsigned)v;
			else
				o.after_ms = (unsigned)v;
		} else if (!strcmp(key, "dirty-log")) {
			if (!strcmp(val, "bitmap")) {
				o.dirty_mode = VMM_DIRTY_BITMAP;
			} else if (!strcmp(val, "ring")) {
				o.dirty_mode = VMM_DIRTY_RING;
			} else {
				fprintf(stderr, "multifd-bench: --dirty-log: "
						"bitmap or ring\n");
				goto out;
			}
		} else if (!strcmp(key, "ring-entries")) {
			if (parse_u64(val, &v, 0) || v < 64 || (v & (v - 1)) ||
			    v > 65536) {
				fprintf(stderr,
					"multifd-bench: --ring-entries: "
					"a power of two, 64..65536\n");
				goto out;
			}
			o.ring_entries = (uint32_t)v;
		} else if (!strcmp(key, "clear-chunk")) {
			if (parse_u64(val, &v, 0) || v < 64 || v % 64 ||
			    v > (1ULL << 31)) {
				fprintf(stderr, "multifd-bench: --clear-chunk: "
						"a multiple of 64 pages\n");
				goto out;
			}
			o.clear_chunk = v;
		} else if (!strcmp(key, "serial")) {
			if (!strcmp(val, "-")) {
				o.serial_fd = 1;
			} else {
				o.serial_fd = open(val,
						   O_WRONLY | O_CREAT |
							   O_TRUNC | O_CLOEXEC,
						   0644);
				if (o.serial_fd < 0) {
					perror(val);
					goto out;
				}
				serial_close = 1;
			}
		} else if (!strcmp(key, "config")) {
			if (mfd_config_load(cfg, val, err, sizeof(err))) {
				fprintf(stderr, "multifd-bench: %s\n", err);
				goto out;
			}
		} else if (mfd_config_set_err(cfg, key, val, err,
					      sizeof(err))) {
			fprintf(stderr, "multifd-bench: --%s: %s\n", key, err);
			goto out;
		}
	}
	if (!o.kernel) {
		fprintf(stderr, "multifd-bench: --vm kvm needs --kernel "
				"GUEST.elf\n");
		usage(stderr);
		goto out;
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
	mfd_config_free(cfg);
	return rc;
}
