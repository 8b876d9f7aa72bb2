/* SPDX-License-Identifier: MIT */
/* multifd-bench's command line: see cli.h. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <multifd/multifd.h>

#include "cli.h"
#include "harness.h"

static void bench_usage(FILE *f)
{
	fprintf(f,
		"Usage: %s [OPTION]...\n"
		"       %s dest --listen tcp:HOST:PORT [OPTION]...\n"
		"       %s source --connect tcp:HOST:PORT [OPTION]...\n"
		"       %s file-info FILE\n"
		"Migrate a simulated VM over loopback and report the result;\n"
		"or, with dest/source, run one side each in two processes or\n"
		"hosts (give both the same --ram and --blocks; the "
		"destination\n"
		"refuses a different RAM layout).\n"
		"\n"
		"  --ram SIZE            guest RAM, K/M/G suffixes (default "
		"1G)\n"
		"  --blocks N            split RAM into N blocks of different "
		"sizes (default 1)\n"
		"  --image KIND|PATH     random, zero, mix, or a file "
		"(default random)\n"
		"  --seed N              seed of the image (default 1)\n"
		"  --dest-populate on|off  pre-fault destination RAM when the\n"
		"                        destination VM is created, as a "
		"hypervisor\n"
		"                        preallocating guest RAM does (default "
		"on)\n"
		"  --uri tcp:HOST:PORT   destination listen address "
		"(default tcp:127.0.0.1:0)\n"
		"  --transport tcp|rdma  transport (default tcp; rdma makes "
		"the default\n"
		"                        --uri rdma:127.0.0.1:0)\n"
		"  --config FILE         library config from an INI file "
		"(docs/config.md)\n"
		"  --set [SECTION.]KEY=VALUE  library config for both sides "
		"(repeatable;\n"
		"                        overrides --config; the last "
		"setting wins)\n"
		"  --print-config        print the effective config as INI "
		"and exit\n"
		"  --timeline FILE.csv   one row per 100 ms: time, bytes, "
		"throughput,\n"
		"                        pending bytes, dirty rate, phase\n"
		"  --plot FILE.png       chart of throughput and pending bytes "
		"(gnuplot)\n"
		"  --check on|off        dest mode: regenerate the image and "
		"compare\n"
		"                        RAM byte for byte (default on)\n"
		"  --dest-netns NAME     run the destination (its listener "
		"and\n"
		"                        threads) in network namespace NAME\n"
		"                        (/var/run/netns/NAME)\n"
		"  --source-netns NAME   the same for the source side\n"
		"  --announce-if IFNAME  destination: after the guest runs, "
		"send the\n"
		"                        self-announcement frames (RARP) of "
		"each\n"
		"                        --announce-mac on IFNAME "
		"(announce-* keys)\n"
		"  --announce-mac MAC    a guest NIC's address, "
		"aa:bb:cc:dd:ee:ff\n"
		"                        (repeatable; needs --announce-if)\n"
		"  --cut-at-round N      local run: cut every connection "
		"(a proxy\n"
		"                        resets them) once round N runs; "
		"the\n"
		"                        migration pauses (resume-timeout)\n"
		"  --resume-after-ms M   then mfd_source_resume() M ms after "
		"the\n"
		"                        pause, straight to the destination "
		"(0)\n"
		"  --fill-threads N      threads filling the image (default "
		"2)\n"
		"  --dump-image FILE     write the source image (--ram, "
		"--image,\n"
		"                        --seed) to FILE and exit: the input "
		"of\n"
		"                        a zstd -b ceiling\n"
		"  --save FILE           save the guest to FILE (file:FILE) "
		"instead of\n"
		"                        migrating; with --restore FILE too, "
		"restore\n"
		"                        it into the destination in the same "
		"run\n"
		"  --restore FILE        restore the destination from FILE "
		"(made by\n"
		"                        --save with the same --ram, --blocks, "
		"--image,\n"
		"                        --seed) and compare RAM\n"
		"  --restore-cache cold|warm  cold: drop FILE's page cache "
		"before\n"
		"                        the restore, as fio's read does "
		"(default warm)\n"
		"  --timeout SECONDS     cancel a migration running longer "
		"(default 300, 0 = none)\n"
		"  --json                print one JSON object instead of a "
		"table\n"
		"Guest workload (writer threads running during migration):\n"
		"  --writers N           writer threads (default 0: an idle "
		"guest)\n"
		"  --readers N           compute threads that never write "
		"(vCPUs of a\n"
		"                        mixed guest; with --writers)\n"
		"  --throttle MODE       auto-converge (every vCPU) or "
		"dirty-limit\n"
		"                        (only writers over vcpu-dirty-limit); "
		"writers\n"
		"                        then own a stripe of RAM each\n"
		"  --dirty-rate MB/s     pages dirtied x 4 KiB per second, all "
		"writers (default 100)\n"
		"  --pattern P           uniform, hotset or seq (default "
		"hotset)\n"
		"  --hot-fraction F      hotset: share of pages taking 90%% of "
		"writes (default 0.1)\n"
		"  --guest-load PCT      busy share of each writer's 10 ms "
		"slice "
		"(default 25)\n"
		"  --guest-measure-ms N  work rate measured before and after "
		"(default 1000)\n"
		"Simulated devices (devstate/simdev.c), DMA into the RAM:\n"
		"  --devices N           devices (default 0)\n"
		"  --device-state SIZE   state per device (64M)\n"
		"  --device-precopy F    share of it sent during pre-copy (0)\n"
		"  --device-load-ms-per-mib X  destination restore cost (0)\n"
		"  --device-placed on|off  devices show their state memory, "
		"so the\n"
		"                        destination receives into it (on)\n"
		"  --devices-vdpa N      fake vhost-vdpa virtio-net devices "
		"with traffic\n"
		"                        (docs/vdpa.md; default 0)\n"
		"Cold destination memory (coldmem.c):\n"
		"  --warm-host GiB       touch and free that much memory right "
		"before\n"
		"                        the migration, so the host backs free "
		"pages\n"
		"                        (cold runs: --dest-populate off)\n"
		"A real KVM guest instead (--vm kvm, bench/kvm/; needs "
		"/dev/kvm; local runs\n"
		"and dest/source, where the destination needs no --kernel "
		"but the same\n"
		"--ram and --vcpus; --ram defaults to 32M, --guest-measure-ms "
		"is the guest's\n"
		"work rate window before and after):\n"
		"  --vm sim|kvm          the VM model (default sim)\n"
		"  --kernel GUEST.elf    ELF kernel, PVH note or 64-bit entry "
		"(e.g.\n"
		"                        tests/guests/stamp.elf)\n"
		"  --cmdline STR         its command line (default "
		"\"rate=2000\")\n"
		"  --vcpus N             vCPUs, 1..8 (default 1)\n"
		"  --dirty-log bitmap|ring  KVM dirty log mode (default "
		"bitmap)\n"
		"  --clear-chunk PAGES   KVM_CLEAR_DIRTY_LOG chunk, multiple "
		"of 64 (16384)\n"
		"  --ring-entries N      dirty ring entries per vCPU (4096)\n"
		"  --postcopy-after-ms N with --postcopy manual: switch N ms "
		"after the start\n"
		"  --serial FILE|-       the guest's COM1 output\n"
		"  -h, --help            this text\n",
		prog_name, prog_name, prog_name, prog_name);
}

/* What --KEY takes: its values when they are few, else its type. */
static const char *key_metavar(const mfd_config_key_info *k)
{
	if (!strcmp(k->type, "enum") || !strcmp(k->type, "bool"))
		return k->range;
	if (!strcmp(k->type, "uint"))
		return "N";
	if (!strcmp(k->type, "size"))
		return "SIZE";
	if (!strcmp(k->type, "time"))
		return "TIME";
	return "VALUE";
}

/* The library's keys as options, from its own table. */
static void keys_usage(FILE *f)
{
	mfd_config_key_info k;

	fprintf(f,
		"Library configuration (docs/config.md): every key is also "
		"an option\n"
		"--KEY VALUE, the same as --set KEY=VALUE; the library checks "
		"the value.\n"
		"Defaults < --config FILE < these, --set and --tracker in "
		"command-line\n"
		"order (the last setting wins). The bench turns verify on.\n");
	for (unsigned i = 0; !mfd_config_key(i, &k, sizeof(k)); i++)
		fprintf(f, "  --%s %s\n        %s (%s, default %s)\n", k.name,
			key_metavar(&k), k.doc, k.range, k.def);
	fprintf(f, "  --tracker manual|uffd-wp  the same as --dirty-tracker\n"
		   "\n"
		   "A live progress line is drawn on stderr when it is a "
		   "terminal.\n"
		   "Exit status: 0 success, 1 migration failed or RAM differs, "
		   "2 bad usage.\n");
}

static void __attribute__((noreturn, format(printf, 1, 2)))
usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help'.\n", prog_name);
	exit(EXIT_USAGE);
}

bool cli_parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!*s || *s == '-' || *s == '+')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static unsigned parse_uint_opt(const char *name, const char *s, uint64_t min,
			       uint64_t max)
{
	uint64_t v;

	if (!cli_parse_u64(s, &v) || v < min || v > max)
		usage_error("--%s: '%s' is not an integer in %" PRIu64
			    "..%" PRIu64,
			    name, s, min, max);
	return (unsigned)v;
}

static double parse_double_opt(const char *name, const char *s, double min,
			       double max)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= min && v <= max))
		usage_error("--%s: '%s' is not a number in %g..%g", name, s,
			    min, max);
	return v;
}

/* "1G", "512M", "64k", "4096", "2GiB": powers of 1024. */
static bool parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!*s || *s == '-' || *s == '+')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return false;
	switch (*end) {
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	case 't':
	case 'T':
		shift = 40;
		break;
	}
	if (shift) {
		end++;
		if (!strcasecmp(end, "iB") || !strcasecmp(end, "B"))
			end += strlen(end);
	} else if (!strcasecmp(end, "B")) {
		end++;
	}
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return false;
	*out = (uint64_t)v << shift;
	return true;
}

bool cli_parse_bool(const char *s, bool *out)
{
	if (!strcasecmp(s, "on") || !strcasecmp(s, "true") || !strcmp(s, "1") ||
	    !strcasecmp(s, "yes")) {
		*out = true;
		return true;
	}
	if (!strcasecmp(s, "off") || !strcasecmp(s, "false") ||
	    !strcmp(s, "0") || !strcasecmp(s, "no")) {
		*out = false;
		return true;
	}
	return false;
}

static bool parse_on_off(const char *name, const char *s)
{
	bool v;

	if (!cli_parse_bool(s, &v))
		usage_error("--%s: '%s' is not on or off", name, s);
	return v;
}

enum {
	OPT_RAM = 256,
	OPT_BLOCKS,
	OPT_IMAGE,
	OPT_SEED,
	OPT_DEST_POPULATE,
	OPT_JSON,
	OPT_URI,
	OPT_SET,
	OPT_FILL_THREADS,
	OPT_DUMP_IMAGE,
	OPT_SAVE,
	OPT_RESTORE,
	OPT_RESTORE_CACHE,
	OPT_TIMEOUT,
	OPT_CONFIG,
	OPT_PRINT_CONFIG,
	OPT_TIMELINE,
	OPT_PLOT,
	OPT_LISTEN,
	OPT_CONNECT,
	OPT_CHECK,
	OPT_DEST_NETNS,
	OPT_SOURCE_NETNS,
	OPT_ANNOUNCE_IF,
	OPT_ANNOUNCE_MAC,
	OPT_CUT_AT_ROUND,
	OPT_RESUME_AFTER,
	OPT_TRANSPORT,
	OPT_WRITERS,
	OPT_READERS,
	OPT_DIRTY_RATE,
	OPT_PATTERN,
	OPT_HOT_FRACTION,
	OPT_GUEST_LOAD,
	OPT_MEASURE_MS,
	OPT_TRACKER,
	OPT_THROTTLE,
	OPT_DEVICES,
	OPT_DEVICES_VDPA,
	OPT_DEVICE_STATE,
	OPT_DEVICE_PRECOPY,
	OPT_DEVICE_LOAD_MS,
	OPT_DEVICE_PLACED,
	OPT_WARM_HOST,
	OPT_VM,
	OPT_KERNEL,
	OPT_CMDLINE,
	OPT_VCPUS,
	OPT_DIRTY_LOG,
	OPT_CLEAR_CHUNK,
	OPT_RING_ENTRIES,
	OPT_POSTCOPY_AFTER,
	OPT_SERIAL,
	/* Library key number i of mfd_config_key() is OPT_KEY + i. */
	OPT_KEY = 1024,
};

/* The bench's own options; the library's keys are added at run time. */
static const struct option bench_long_opts[] = {
	{ "ram", required_argument, NULL, OPT_RAM },
	{ "blocks", required_argument, NULL, OPT_BLOCKS },
	{ "image", required_argument, NULL, OPT_IMAGE },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "dest-populate", required_argument, NULL, OPT_DEST_POPULATE },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "uri", required_argument, NULL, OPT_URI },
	{ "set", required_argument, NULL, OPT_SET },
	{ "fill-threads", required_argument, NULL, OPT_FILL_THREADS },
	{ "dump-image", required_argument, NULL, OPT_DUMP_IMAGE },
	{ "save", required_argument, NULL, OPT_SAVE },
	{ "restore", required_argument, NULL, OPT_RESTORE },
	{ "restore-cache", required_argument, NULL, OPT_RESTORE_CACHE },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "print-config", no_argument, NULL, OPT_PRINT_CONFIG },
	{ "timeline", required_argument, NULL, OPT_TIMELINE },
	{ "plot", required_argument, NULL, OPT_PLOT },
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "connect", required_argument, NULL, OPT_CONNECT },
	{ "check", required_argument, NULL, OPT_CHECK },
	{ "dest-netns", required_argument, NULL, OPT_DEST_NETNS },
	{ "source-netns", required_argument, NULL, OPT_SOURCE_NETNS },
	{ "announce-if", required_argument, NULL, OPT_ANNOUNCE_IF },
	{ "announce-mac", required_argument, NULL, OPT_ANNOUNCE_MAC },
	{ "cut-at-round", required_argument, NULL, OPT_CUT_AT_ROUND },
	{ "resume-after-ms", required_argument, NULL, OPT_RESUME_AFTER },
	{ "transport", required_argument, NULL, OPT_TRANSPORT },
	{ "writers", required_argument, NULL, OPT_WRITERS },
	{ "readers", required_argument, NULL, OPT_READERS },
	{ "throttle", required_argument, NULL, OPT_THROTTLE },
	{ "dirty-rate", required_argument, NULL, OPT_DIRTY_RATE },
	{ "pattern", required_argument, NULL, OPT_PATTERN },
	{ "hot-fraction", required_argument, NULL, OPT_HOT_FRACTION },
	{ "guest-load", required_argument, NULL, OPT_GUEST_LOAD },
	{ "guest-measure-ms", required_argument, NULL, OPT_MEASURE_MS },
	{ "tracker", required_argument, NULL, OPT_TRACKER },
	{ "devices", required_argument, NULL, OPT_DEVICES },
	{ "devices-vdpa", required_argument, NULL, OPT_DEVICES_VDPA },
	{ "device-state", required_argument, NULL, OPT_DEVICE_STATE },
	{ "device-precopy", required_argument, NULL, OPT_DEVICE_PRECOPY },
	{ "device-load-ms-per-mib", required_argument, NULL,
	  OPT_DEVICE_LOAD_MS },
	{ "device-placed", required_argument, NULL, OPT_DEVICE_PLACED },
	{ "warm-host", required_argument, NULL, OPT_WARM_HOST },
	{ "vm", required_argument, NULL, OPT_VM },
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "cmdline", required_argument, NULL, OPT_CMDLINE },
	{ "vcpus", required_argument, NULL, OPT_VCPUS },
	{ "dirty-log", required_argument, NULL, OPT_DIRTY_LOG },
	{ "clear-chunk", required_argument, NULL, OPT_CLEAR_CHUNK },
	{ "ring-entries", required_argument, NULL, OPT_RING_ENTRIES },
	{ "postcopy-after-ms", required_argument, NULL, OPT_POSTCOPY_AFTER },
	{ "serial", required_argument, NULL, OPT_SERIAL },
	{ "help", no_argument, NULL, 'h' },
};

#define N_BENCH_OPTS (sizeof(bench_long_opts) / sizeof(bench_long_opts[0]))

/* Settings given as "--KEY VALUE" name the option in their messages. */
static char key_what[256][48];

/*
 * The option table: the bench's options, then one --KEY per library key,
 * then the terminator. A key named like a bench option would make one of
 * them unreachable: that is a bug of this program, said at once.
 */
static struct option *make_long_opts(void)
{
	mfd_config_key_info k;
	unsigned nkeys = 0;
	struct option *v;

	while (!mfd_config_key(nkeys, &k, sizeof(k)))
		nkeys++;
	if (nkeys > sizeof(key_what) / sizeof(key_what[0])) {
		fprintf(stderr, "%s: %u library keys, room for %zu\n",
			prog_name, nkeys,
			sizeof(key_what) / sizeof(key_what[0]));
		exit(EXIT_USAGE);
	}
	v = calloc(N_BENCH_OPTS + nkeys + 1, sizeof(*v));
	if (!v) {
		fprintf(stderr, "%s: out of memory\n", prog_name);
		exit(1);
	}
	memcpy(v, bench_long_opts, sizeof(bench_long_opts));
	for (unsigned i = 0; i < nkeys; i++) {
		mfd_config_key(i, &k, sizeof(k));
		for (size_t b = 0; b < N_BENCH_OPTS; b++)
			if (!strcmp(bench_long_opts[b].name, k.name)) {
				fprintf(stderr,
					"%s: library key %s clashes with the "
					"bench option --%s\n",
					prog_name, k.name, k.name);
				exit(EXIT_USAGE);
			}
		snprintf(key_what[i], sizeof(key_what[i]), "--%s", k.name);
		v[N_BENCH_OPTS + i] =
			(struct option){ k.name, required_argument, NULL,
					 OPT_KEY + (int)i };
	}
	return v;
}

/* Guest workload and device options. */
static void parse_guest_opt(int c, const char *arg, struct bench_opts *o)
{
	switch (c) {
	case OPT_WRITERS:
		o->guest.writers = parse_uint_opt("writers", arg, 0, 256);
		break;
	case OPT_READERS:
		o->guest.readers = parse_uint_opt("readers", arg, 0, 256);
		break;
	case OPT_DIRTY_RATE:
		o->guest.dirty_mbps =
			parse_double_opt("dirty-rate", arg, 0, 1e6);
		break;
	case OPT_PATTERN:
		if (guest_pattern_parse(arg, &o->guest.pattern))
			usage_error("--pattern: '%s' is not uniform, hotset "
				    "or seq",
				    arg);
		break;
	case OPT_HOT_FRACTION:
		o->guest.hot_fraction =
			parse_double_opt("hot-fraction", arg, 1e-9, 1);
		break;
	case OPT_GUEST_LOAD:
		o->guest.load_pct = parse_uint_opt("guest-load", arg, 1, 100);
		break;
	case OPT_MEASURE_MS:
		o->measure_ms =
			parse_uint_opt("guest-measure-ms", arg, 0, 600000);
		break;
	case OPT_DEVICES:
		o->dev.n = parse_uint_opt("devices", arg, 0, 256);
		break;
	case OPT_DEVICES_VDPA:
		o->dev.vdpa = parse_uint_opt("devices-vdpa", arg, 0, 64);
		break;
	case OPT_DEVICE_STATE:
		if (!parse_size(arg, &o->dev.state) || !o->dev.state)
			usage_error("--device-state: '%s' is not a size", arg);
		break;
	case OPT_DEVICE_PRECOPY:
		o->dev.precopy = parse_double_opt("device-precopy", arg, 0, 1);
		break;
	case OPT_DEVICE_LOAD_MS:
		o->dev.load_ms_per_mib =
			parse_double_opt("device-load-ms-per-mib", arg, 0, 1e6);
		break;
	case OPT_DEVICE_PLACED:
		o->dev.no_placed = !parse_on_off("device-placed", arg);
		break;
	case OPT_WARM_HOST:
		o->cold.warm_gib = parse_double_opt("warm-host", arg, 0, 1024);
		break;
	}
}

/* The simulated VM and where it goes. */
static void parse_vm_opt(int c, const char *arg, struct bench_opts *o)
{
	switch (c) {
	case OPT_RAM:
		if (!parse_size(arg, &o->ram_bytes) || !o->ram_bytes)
			usage_error("--ram: '%s' is not a size like 512M or 2G",
				    arg);
		if (o->ram_bytes % BENCH_PAGE_SIZE)
			usage_error("--ram: %s is not a multiple of the 4 KiB "
				    "page size",
				    arg);
		break;
	case OPT_BLOCKS:
		o->blocks = parse_uint_opt("blocks", arg, 1, 256);
		break;
	case OPT_IMAGE: {
		uint64_t seed = o->image.seed;

		if (vm_image_parse(arg, &o->image))
			usage_error("--image: empty");
		if (o->image.kind == VM_IMAGE_FILE && access(arg, R_OK))
			usage_error("--image: '%s' is not random, zero, mix or "
				    "a readable file: %s",
				    arg, strerror(errno));
		o->image.seed = seed;
		break;
	}
	case OPT_SEED:
		if (!cli_parse_u64(arg, &o->image.seed))
			usage_error("--seed: '%s' is not an unsigned integer",
				    arg);
		break;
	case OPT_DEST_POPULATE:
		o->dest_populate = parse_on_off("dest-populate", arg);
		break;
	case OPT_URI:
		if (strncmp(arg, "tcp:", 4) && strncmp(arg, "rdma:", 5))
			usage_error("--uri: '%s' is not tcp:HOST:PORT or "
				    "rdma:HOST:PORT",
				    arg);
		o->uri = arg;
		break;
	case OPT_TRANSPORT:
		if (strcmp(arg, "tcp") && strcmp(arg, "rdma"))
			usage_error("--transport: '%s' is not tcp or rdma",
				    arg);
		o->transport = arg;
		break;
	case OPT_LISTEN:
	case OPT_CONNECT: {
		const char *name = c == OPT_LISTEN ? "listen" : "connect";

		if ((c == OPT_LISTEN) != (o->mode == MODE_DEST) ||
		    o->mode == MODE_LOCAL)
			usage_error("--%s belongs to '%s %s'", name, prog_name,
				    c == OPT_LISTEN ? "dest" : "source");
		if (strncmp(arg, "tcp:", 4))
			usage_error("--%s: '%s' is not tcp:HOST:PORT", name,
				    arg);
		o->twohost_uri = arg;
		break;
	}
	case OPT_DEST_NETNS:
		o->dest_netns = arg;
		break;
	case OPT_CUT_AT_ROUND:
		o->cut_round = (unsigned)parse_uint_opt("cut-at-round", arg, 1,
							100000);
		break;
	case OPT_RESUME_AFTER:
		o->resume_after_ms = (unsigned)parse_uint_opt("resume-after-ms",
							      arg, 0, 3600000);
		break;
	case OPT_ANNOUNCE_IF:
		o->announce_if = arg;
		break;
	case OPT_ANNOUNCE_MAC:
		if (o->announce_nmacs == MFD_ANNOUNCE_MAX_MACS)
			usage_error("--announce-mac: at most %d addresses",
				    MFD_ANNOUNCE_MAX_MACS);
		if (mfd_announce_parse_mac(
			    arg, o->announce_macs[o->announce_nmacs]) ||
		    mfd_announce_frame((uint8_t[MFD_ANNOUNCE_FRAME_LEN]){ 0 },
				       o->announce_macs[o->announce_nmacs]))
			usage_error("--announce-mac: '%s' is not a unicast "
				    "MAC address like 52:54:00:12:34:56",
				    arg);
		o->announce_nmacs++;
		break;
	case OPT_SOURCE_NETNS:
		o->source_netns = arg;
		break;
	case OPT_FILL_THREADS:
		o->fill_threads = parse_uint_opt("fill-threads", arg, 1, 16);
		break;
	}
}

/* --vm kvm and its guest (bench/kvm/). */
static void parse_kvm_opt(int c, const char *arg, struct bench_opts *o)
{
	struct kvm_bench_opts *k = &o->kvm;
	uint64_t v;

	switch (c) {
	case OPT_VM:
		if (strcmp(arg, "sim") && strcmp(arg, "kvm"))
			usage_error("--vm: '%s' is not sim or kvm", arg);
		k->on = !strcmp(arg, "kvm");
		break;
	case OPT_KERNEL:
		k->kernel = arg;
		break;
	case OPT_CMDLINE:
		k->cmdline = arg;
		break;
	case OPT_VCPUS:
		k->vcpus = parse_uint_opt("vcpus", arg, 1, 8);
		break;
	case OPT_DIRTY_LOG:
		if (strcmp(arg, "bitmap") && strcmp(arg, "ring"))
			usage_error("--dirty-log: '%s' is not bitmap or ring",
				    arg);
		k->dirty_ring = !strcmp(arg, "ring");
		break;
	case OPT_CLEAR_CHUNK:
		v = parse_uint_opt("clear-chunk", arg, 64, 1U << 30);
		if (v % 64)
			usage_error("--clear-chunk: %s is not a multiple of 64",
				    arg);
		k->clear_chunk = v;
		break;
	case OPT_RING_ENTRIES:
		v = parse_uint_opt("ring-entries", arg, 64, 65536);
		if (v & (v - 1))
			usage_error("--ring-entries: %s is not a power of two",
				    arg);
		k->ring_entries = (uint32_t)v;
		break;
	case OPT_POSTCOPY_AFTER:
		k->postcopy_after_ms = (unsigned)parse_uint_opt(
			"postcopy-after-ms", arg, 1, 3600000);
		break;
	case OPT_SERIAL:
		k->serial = arg;
		break;
	}
}

/* The run and its outputs. */
static void parse_run_opt(int c, const char *arg, struct bench_opts *o)
{
	switch (c) {
	case OPT_JSON:
		o->json = true;
		break;
	case OPT_CONFIG:
		o->config_path = arg;
		break;
	case OPT_PRINT_CONFIG:
		o->print_config = true;
		break;
	case OPT_TIMELINE:
		o->timeline = arg;
		break;
	case OPT_PLOT:
		o->plot = arg;
		break;
	case OPT_CHECK:
		o->check = parse_on_off("check", arg);
		break;
	case OPT_DUMP_IMAGE:
		o->dump_image = arg;
		break;
	case OPT_SAVE:
		o->save_path = arg;
		break;
	case OPT_RESTORE:
		o->restore_path = arg;
		break;
	case OPT_RESTORE_CACHE:
		if (strcmp(arg, "cold") && strcmp(arg, "warm"))
			usage_error("--restore-cache: '%s' is not cold or warm",
				    arg);
		o->restore_cold = !strcmp(arg, "cold");
		break;
	case OPT_TIMEOUT:
		o->timeout_s = parse_uint_opt("timeout", arg, 0, 86400);
		break;
	}
}

/* A subcommand first selects two-host mode; it is taken out of argv. */
static enum bench_mode take_mode(int *argc, char ***argv)
{
	enum bench_mode mode = MODE_LOCAL;

	if (*argc > 1 && !strcmp((*argv)[1], "dest"))
		mode = MODE_DEST;
	else if (*argc > 1 && !strcmp((*argv)[1], "file-info"))
		mode = MODE_FILE_INFO;
	else if (*argc > 1 && !strcmp((*argv)[1], "source"))
		mode = MODE_SOURCE;
	if (mode != MODE_LOCAL) {
		(*argv)[1] = (*argv)[0];
		(*argv)++;
		(*argc)--;
	}
	return mode;
}

static void check_args(int argc, char **argv, struct bench_opts *o)
{
	if (o->mode == MODE_FILE_INFO) {
		if (optind + 1 != argc)
			usage_error("file-info needs one FILE");
		o->info_path = argv[optind];
		return;
	}
	if ((o->save_path || o->restore_path) &&
	    (o->mode != MODE_LOCAL || o->kvm.on || o->dest_netns ||
	     o->source_netns))
		usage_error("--save and --restore: local runs of the simulated "
			    "VM only");
	if (optind < argc)
		usage_error("unexpected argument '%s'%s", argv[optind],
			    !strcmp(argv[optind], "dest") ||
					    !strcmp(argv[optind], "source")
				    ? " (the subcommand goes first)"
				    : "");
	if (o->mode == MODE_DEST && !o->twohost_uri && !o->print_config)
		usage_error("dest needs --listen tcp:HOST:PORT");
	if (o->mode == MODE_SOURCE && !o->twohost_uri && !o->print_config)
		usage_error("source needs --connect tcp:HOST:PORT");
	if (o->cut_round &&
	    (o->mode != MODE_LOCAL || o->kvm.on || strcmp(o->transport, "tcp")))
		usage_error("--cut-at-round: local runs over tcp only");
	if (!o->announce_if != !o->announce_nmacs)
		usage_error("--announce-if and --announce-mac go together");
	if (o->announce_if && (o->mode == MODE_SOURCE || o->kvm.on))
		usage_error("--announce-if: the destination of a local run "
			    "or of dest mode only");
	if (o->kvm.on) {
		/* The destination restores the guest the source sends. */
		if (!o->kvm.kernel && !o->print_config && o->mode != MODE_DEST)
			usage_error("--vm kvm needs --kernel GUEST.elf");
		if (strcmp(o->transport, "tcp") || o->dev.n || o->dev.vdpa ||
		    o->guest.writers)
			usage_error("--vm kvm: over tcp only, without "
				    "--devices, --devices-vdpa or --writers");
		if (!o->ram_given)
			o->ram_bytes = 32ULL << 20;
	}
	if (!o->uri)
		o->uri = strcmp(o->transport, "rdma") ? "tcp:127.0.0.1:0"
						      : "rdma:127.0.0.1:0";
	if (strncmp(o->uri, o->transport, strlen(o->transport)) ||
	    o->uri[strlen(o->transport)] != ':')
		usage_error("--uri %s does not match --transport %s", o->uri,
			    o->transport);
}

void cli_parse(int argc, char **argv, struct bench_opts *o)
{
	enum bench_mode mode = take_mode(&argc, &argv);
	struct option *opts = make_long_opts();
	mfd_config_key_info k;
	int c;

	*o = (struct bench_opts){
		.ram_bytes = 1ULL << 30,
		.blocks = 1,
		.image = { .kind = VM_IMAGE_RANDOM, .seed = 1 },
		.dest_populate = true,
		.transport = "tcp",
		.fill_threads = 2,
		.timeout_s = 300,
		.mode = mode,
		.check = true,
		.guest = { .dirty_mbps = 100,
			   .pattern = GUEST_HOTSET,
			   .hot_fraction = 0.1,
			   .load_pct = 25 },
		.measure_ms = 1000,
		.dev = { .state = 64ULL << 20, .dma_rate = 16ULL << 20 },
		.kvm = { .cmdline = "rate=2000", .vcpus = 1 },
	};
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c >= OPT_KEY) {
			/* A library key: only the library checks it. */
			mfd_config_key((unsigned)(c - OPT_KEY), &k, sizeof(k));
			cfg_list_add_opt(&o->sets, k.name, optarg,
					 key_what[c - OPT_KEY]);
		} else if (c == OPT_TRACKER) {
			cfg_list_add_opt(&o->sets, "dirty-tracker", optarg,
					 "--tracker");
		} else if (c == OPT_THROTTLE) {
			/* Either mode: writers own stripes, so that runs of
			 * the two compare the same guest. */
			if (strcmp(optarg, "auto-converge") &&
			    strcmp(optarg, "dirty-limit"))
				usage_error("--throttle: '%s' is not "
					    "auto-converge or dirty-limit",
					    optarg);
			cfg_list_add_opt(&o->sets, optarg, "on", "--throttle");
			o->guest.own_ranges = true;
		} else if (c == OPT_SET) {
			if (!cfg_list_add_kv(&o->sets, optarg, "--set"))
				usage_error("--set: '%s' is not key=value",
					    optarg);
		} else if (c >= OPT_WRITERS && c <= OPT_WARM_HOST) {
			parse_guest_opt(c, optarg, o);
		} else if (c == 'h') {
			bench_usage(stdout);
			keys_usage(stdout);
			exit(0);
		} else if (c >= OPT_VM && c <= OPT_SERIAL) {
			parse_kvm_opt(c, optarg, o);
		} else if (c >= OPT_RAM) {
			o->ram_given |= c == OPT_RAM;
			parse_vm_opt(c, optarg, o);
			parse_run_opt(c, optarg, o);
		} else {
			/* getopt_long printed what was wrong. */
			fprintf(stderr, "Try '%s --help'.\n", prog_name);
			exit(EXIT_USAGE);
		}
	}
	free(opts);
	check_args(argc, argv, o);
	/* The report names the device transfer as given, "default" if not. */
	o->dev.transfer = cfg_list_last(&o->sets, "device-transfer");
}
