/* SPDX-License-Identifier: MIT */
/*
 * multifd-bench: migrate a simulated VM from a source to a destination in
 * one process over loopback, check the result byte for byte and report
 * times, volumes, rates and CPU use.
 *
 * Only the public API (include/multifd/multifd.h) is used, as a hypervisor
 * would use it.
 */
#include <fcntl.h>
#include <sched.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>

#include <multifd/multifd.h>

#include "benchcfg.h"
#include "plot.h"
#include "progress.h"
#include "devices.h"
#include "guest.h"
#include "report.h"
#include "twohost.h"
#include "vm.h"

#define PAGE_SIZE  4096u
#define EXIT_USAGE 2

/* Everything the command line decides. Later options (guest writers,
 * compression, devices) go here too. */
struct bench_opts {
	uint64_t ram_bytes;
	unsigned blocks;
	struct vm_image image;
	unsigned channels;
	unsigned packet_pages; /* 0: the library's default */
	bool verify;
	bool dest_populate;
	bool json;
	const char *uri;       /* destination listen address */
	const char *io_engine; /* NULL: the library's default */
	const char *transport; /* "tcp" or "rdma" */
	unsigned fill_threads;
	unsigned timeout_s; /* 0: none */
	/* Library settings from the command line (--channels, --verify,
	 * --set ...), in command-line order: the last one wins. */
	struct cfg_list sets;
	const char *config_path; /* --config */
	bool print_config;
	const char *timeline; /* --timeline FILE.csv */
	const char *plot;     /* --plot FILE.png */
	/* Two-host mode: "dest --listen URI" / "source --connect URI". */
	enum { MODE_LOCAL, MODE_DEST, MODE_SOURCE } mode;
	const char *twohost_uri;
	bool check; /* dest: compare RAM with the regenerated image */
	const char *compression; /* as given, for the report */
	const char *dest_netns;	 /* ip-netns names, or NULL */
	const char *source_netns;
	const char *dump_image; /* --dump-image FILE: write the image, exit */
	/* Guest workload and pre-copy (NULL / 0: library defaults). */
	struct guest_opts guest;
	unsigned measure_ms; /* guest work rate before and after */
	const char *tracker, *downtime_limit, *max_bandwidth, *auto_converge,
		*max_rounds, *timeout_policy, *precopy_timeout;
	struct bench_devices_opts dev; /* --devices ... (devices.c) */
};

#define MAX_ROUND_RECORDS 1000

/* What the hooks saw, written from the library's migration threads. */
struct hook_log {
	uint64_t stop_ns;
	uint64_t resume_ns;
	uint64_t loaded_ns;
	unsigned stops;
	unsigned resumes;
	int dest_failed; /* error given to the failed hook */
	struct guest *guest;
	uint64_t work_at_stop;
	int throttle_max;
	unsigned throttles;
};

static const char *prog = "multifd-bench";

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static double ns_to_ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static double tv_to_s(const struct timeval *tv)
{
	return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

/* ------------------------------------------------------------------ */
/* Command line                                                       */
/* ------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: %s [OPTION]...\n"
		"       %s dest --listen tcp:HOST:PORT [OPTION]...\n"
		"       %s source --connect tcp:HOST:PORT [OPTION]...\n"
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
		"  --channels N          data channels (default 2)\n"
		"  --packet-pages N      max pages per packet (default: "
		"library's)\n"
		"  --verify on|off       end-of-migration digests (default "
		"on)\n"
		"  --dest-populate on|off  pre-fault destination RAM when the\n"
		"                        destination VM is created, as a "
		"hypervisor\n"
		"                        preallocating guest RAM does (default "
		"on)\n"
		"  --uri tcp:HOST:PORT   destination listen address "
		"(default tcp:127.0.0.1:0)\n"
		"  --transport tcp|rdma  transport (default tcp; rdma makes "
		"the "
		"default\n"
		"                        --uri rdma:127.0.0.1:0)\n"
		"  --io-engine sockets|uring  I/O of tcp channels (library "
		"config io-engine)\n"
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
		"  --compression none|zstd  page codec (default none)\n"
		"  --zstd-level N        zstd level 1..19 (default 1)\n"
		"  --zstd-long N         zstd window 2^N with long-distance "
		"matching,\n"
		"                        0 or 20..27 (default 0: off)\n"
		"  --dest-netns NAME     run the destination (its listener "
		"and\n"
		"                        threads) in network namespace NAME\n"
		"                        (/var/run/netns/NAME)\n"
		"  --source-netns NAME   the same for the source side\n"
		"  --fill-threads N      threads filling the image (default "
		"2)\n"
		"  --dump-image FILE     write the source image (--ram, "
		"--image,\n"
		"                        --seed) to FILE and exit: the input "
		"of\n"
		"                        a zstd -b ceiling\n"
		"  --timeout SECONDS     cancel a migration running longer "
		"(default 300, 0 = none)\n"
		"  --json                print one JSON object instead of a "
		"table\n"
		"Guest workload (writer threads running during migration):\n"
		"  --writers N           writer threads (default 0: an idle "
		"guest)\n"
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
		"Pre-copy (shorthands for --set):\n"
		"  --tracker manual|uffd-wp   --downtime-limit MS   "
		"--max-bandwidth BYTES/S\n"
		"  --auto-converge on|off     --max-rounds N        "
		"--timeout-policy force|cancel\n"
		"  --precopy-timeout MS\n"
		"  --devices N           simulated devices "
		"(devstate/simdev.c), "
		"DMA into the RAM\n"
		"  --device-state SIZE   state per device (64M)\n"
		"  --device-precopy F    share of it sent during pre-copy (0)\n"
		"  --device-load-ms-per-mib X  destination restore cost (0)\n"
		"  --device-transfer main|multifd\n"
		"  -h, --help            this text\n"
		"\n"
		"A live progress line is drawn on stderr when it is a "
		"terminal.\n"
		"Exit status: 0 success, 1 migration failed or RAM differs, "
		"2 bad usage.\n",
		prog, prog, prog);
}

static void __attribute__((noreturn, format(printf, 1, 2)))
usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help'.\n", prog);
	exit(EXIT_USAGE);
}

static bool parse_u64(const char *s, uint64_t *out)
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

	if (!parse_u64(s, &v) || v < min || v > max)
		usage_error("--%s: '%s' is not an integer in %" PRIu64
			    "..%" PRIu64,
			    name, s, min, max);
	return (unsigned)v;
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

static bool parse_bool(const char *s, bool *out)
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

enum {
	OPT_RAM = 256,
	OPT_BLOCKS,
	OPT_IMAGE,
	OPT_SEED,
	OPT_CHANNELS,
	OPT_PACKET_PAGES,
	OPT_VERIFY,
	OPT_DEST_POPULATE,
	OPT_JSON,
	OPT_URI,
	OPT_SET,
	OPT_FILL_THREADS,
	OPT_DUMP_IMAGE,
	OPT_TIMEOUT,
	OPT_CONFIG,
	OPT_PRINT_CONFIG,
	OPT_TIMELINE,
	OPT_PLOT,
	OPT_LISTEN,
	OPT_CONNECT,
	OPT_CHECK,
	OPT_COMPRESSION,
	OPT_ZSTD_LEVEL,
	OPT_ZSTD_LONG,
	OPT_DEST_NETNS,
	OPT_SOURCE_NETNS,
	OPT_IO_ENGINE,
	OPT_TRANSPORT,
	OPT_WRITERS,
	OPT_DIRTY_RATE,
	OPT_PATTERN,
	OPT_HOT_FRACTION,
	OPT_GUEST_LOAD,
	OPT_MEASURE_MS,
	OPT_TRACKER,
	OPT_DOWNTIME_LIMIT,
	OPT_MAX_BANDWIDTH,
	OPT_AUTO_CONVERGE,
	OPT_MAX_ROUNDS,
	OPT_TIMEOUT_POLICY,
	OPT_PRECOPY_TIMEOUT,
	OPT_DEVICES,
	OPT_DEVICE_STATE,
	OPT_DEVICE_PRECOPY,
	OPT_DEVICE_LOAD_MS,
	OPT_DEVICE_TRANSFER,
};

static const struct option long_opts[] = {
	{ "ram", required_argument, NULL, OPT_RAM },
	{ "blocks", required_argument, NULL, OPT_BLOCKS },
	{ "image", required_argument, NULL, OPT_IMAGE },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "channels", required_argument, NULL, OPT_CHANNELS },
	{ "packet-pages", required_argument, NULL, OPT_PACKET_PAGES },
	{ "verify", required_argument, NULL, OPT_VERIFY },
	{ "dest-populate", required_argument, NULL, OPT_DEST_POPULATE },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "uri", required_argument, NULL, OPT_URI },
	{ "set", required_argument, NULL, OPT_SET },
	{ "fill-threads", required_argument, NULL, OPT_FILL_THREADS },
	{ "dump-image", required_argument, NULL, OPT_DUMP_IMAGE },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "print-config", no_argument, NULL, OPT_PRINT_CONFIG },
	{ "timeline", required_argument, NULL, OPT_TIMELINE },
	{ "plot", required_argument, NULL, OPT_PLOT },
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "connect", required_argument, NULL, OPT_CONNECT },
	{ "check", required_argument, NULL, OPT_CHECK },
	{ "compression", required_argument, NULL, OPT_COMPRESSION },
	{ "zstd-level", required_argument, NULL, OPT_ZSTD_LEVEL },
	{ "zstd-long", required_argument, NULL, OPT_ZSTD_LONG },
	{ "dest-netns", required_argument, NULL, OPT_DEST_NETNS },
	{ "source-netns", required_argument, NULL, OPT_SOURCE_NETNS },
	{ "io-engine", required_argument, NULL, OPT_IO_ENGINE },
	{ "transport", required_argument, NULL, OPT_TRANSPORT },
	{ "writers", required_argument, NULL, OPT_WRITERS },
	{ "dirty-rate", required_argument, NULL, OPT_DIRTY_RATE },
	{ "pattern", required_argument, NULL, OPT_PATTERN },
	{ "hot-fraction", required_argument, NULL, OPT_HOT_FRACTION },
	{ "guest-load", required_argument, NULL, OPT_GUEST_LOAD },
	{ "guest-measure-ms", required_argument, NULL, OPT_MEASURE_MS },
	{ "tracker", required_argument, NULL, OPT_TRACKER },
	{ "downtime-limit", required_argument, NULL, OPT_DOWNTIME_LIMIT },
	{ "max-bandwidth", required_argument, NULL, OPT_MAX_BANDWIDTH },
	{ "auto-converge", required_argument, NULL, OPT_AUTO_CONVERGE },
	{ "max-rounds", required_argument, NULL, OPT_MAX_ROUNDS },
	{ "timeout-policy", required_argument, NULL, OPT_TIMEOUT_POLICY },
	{ "precopy-timeout", required_argument, NULL, OPT_PRECOPY_TIMEOUT },
	{ "devices", required_argument, NULL, OPT_DEVICES },
	{ "device-state", required_argument, NULL, OPT_DEVICE_STATE },
	{ "device-precopy", required_argument, NULL, OPT_DEVICE_PRECOPY },
	{ "device-load-ms-per-mib", required_argument, NULL,
	  OPT_DEVICE_LOAD_MS },
	{ "device-transfer", required_argument, NULL, OPT_DEVICE_TRANSFER },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

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

/* Guest workload and pre-copy options; the library checks the values of
 * the ones that are config keys. */
static void parse_precopy_opt(int c, const char *arg, struct bench_opts *o)
{
	switch (c) {
	case OPT_WRITERS:
		o->guest.writers = parse_uint_opt("writers", arg, 0, 256);
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
	case OPT_TRACKER:
		o->tracker = arg;
		break;
	case OPT_DOWNTIME_LIMIT:
		o->downtime_limit = arg;
		break;
	case OPT_MAX_BANDWIDTH:
		o->max_bandwidth = arg;
		break;
	case OPT_AUTO_CONVERGE:
		o->auto_converge = arg;
		break;
	case OPT_MAX_ROUNDS:
		o->max_rounds = arg;
		break;
	case OPT_TIMEOUT_POLICY:
		o->timeout_policy = arg;
		break;
	case OPT_PRECOPY_TIMEOUT:
		o->precopy_timeout = arg;
		break;
	/* ---- simulated devices (devices.c) ---- */
	case OPT_DEVICES:
		o->dev.n = parse_uint_opt("devices", arg, 0, 256);
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
	case OPT_DEVICE_TRANSFER:
		o->dev.transfer = arg;
		cfg_list_add(&o->sets, "device-transfer", arg,
			     "--device-transfer");
		break;
	}
}

static void parse_args(int argc, char **argv, struct bench_opts *o)
{
	int c, mode = MODE_LOCAL;

	/* A subcommand first selects two-host mode. */
	if (argc > 1 && !strcmp(argv[1], "dest"))
		mode = MODE_DEST;
	else if (argc > 1 && !strcmp(argv[1], "source"))
		mode = MODE_SOURCE;
	if (mode != MODE_LOCAL) {
		argv[1] = argv[0];
		argv++;
		argc--;
	}

	*o = (struct bench_opts){
		.ram_bytes = 1ULL << 30,
		.blocks = 1,
		.image = { .kind = VM_IMAGE_RANDOM, .seed = 1 },
		.channels = 2,
		.verify = true,
		.dest_populate = true,
		.uri = NULL,
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
	};
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_RAM:
			if (!parse_size(optarg, &o->ram_bytes) || !o->ram_bytes)
				usage_error("--ram: '%s' is not a size like "
					    "512M or 2G",
					    optarg);
			if (o->ram_bytes % PAGE_SIZE)
				usage_error("--ram: %s is not a multiple of "
					    "the 4 KiB page size",
					    optarg);
			break;
		case OPT_BLOCKS:
			o->blocks = parse_uint_opt("blocks", optarg, 1, 256);
			break;
		case OPT_IMAGE: {
			uint64_t seed = o->image.seed;

			if (vm_image_parse(optarg, &o->image))
				usage_error("--image: empty");
			if (o->image.kind == VM_IMAGE_FILE &&
			    access(optarg, R_OK))
				usage_error(
					"--image: '%s' is not random, zero, "
					"mix or a readable file: %s",
					optarg, strerror(errno));
			o->image.seed = seed;
			break;
		}
		case OPT_SEED:
			if (!parse_u64(optarg, &o->image.seed))
				usage_error("--seed: '%s' is not an unsigned "
					    "integer",
					    optarg);
			break;
		case OPT_CHANNELS:
			o->channels =
				parse_uint_opt("channels", optarg, 1, 1024);
			cfg_list_add(&o->sets, "channels", optarg,
				     "--channels");
			break;
		case OPT_PACKET_PAGES:
			o->packet_pages = parse_uint_opt("packet-pages", optarg,
							 1, 1u << 20);
			cfg_list_add(&o->sets, "packet-pages", optarg,
				     "--packet-pages");
			break;
		case OPT_VERIFY:
			if (!parse_bool(optarg, &o->verify))
				usage_error("--verify: '%s' is not on or off",
					    optarg);
			cfg_list_add(&o->sets, "verify",
				     o->verify ? "on" : "off", "--verify");
			break;
		case OPT_DEST_POPULATE:
			if (!parse_bool(optarg, &o->dest_populate))
				usage_error(
					"--dest-populate: '%s' is not on or "
					"off",
					optarg);
			break;
		case OPT_JSON:
			o->json = true;
			break;
		case OPT_URI:
			if (strncmp(optarg, "tcp:", 4) &&
			    strncmp(optarg, "rdma:", 5))
				usage_error("--uri: '%s' is not "
					    "tcp:HOST:PORT or rdma:HOST:PORT",
					    optarg);
			o->uri = optarg;
			break;
		case OPT_IO_ENGINE:
			if (strcmp(optarg, "sockets") &&
			    strcmp(optarg, "uring"))
				usage_error("--io-engine: '%s' is not sockets "
					    "or uring",
					    optarg);
			o->io_engine = optarg;
			cfg_list_add(&o->sets, "io-engine", optarg,
				     "--io-engine");
			break;
		case OPT_TRANSPORT:
			if (strcmp(optarg, "tcp") && strcmp(optarg, "rdma"))
				usage_error("--transport: '%s' is not tcp or "
					    "rdma",
					    optarg);
			o->transport = optarg;
			break;
		case OPT_SET:
			if (!cfg_list_add_kv(&o->sets, optarg, "--set"))
				usage_error("--set: '%s' is not key=value",
					    optarg);
			break;
		case OPT_CONFIG:
			o->config_path = optarg;
			break;
		case OPT_PRINT_CONFIG:
			o->print_config = true;
			break;
		case OPT_TIMELINE:
			o->timeline = optarg;
			break;
		case OPT_PLOT:
			o->plot = optarg;
			break;
		case OPT_LISTEN:
		case OPT_CONNECT:
			if ((c == OPT_LISTEN) != (o->mode == MODE_DEST) ||
			    o->mode == MODE_LOCAL)
				usage_error(
					"--%s belongs to '%s %s'",
					c == OPT_LISTEN ? "listen" : "connect",
					prog,
					c == OPT_LISTEN ? "dest" : "source");
			if (strncmp(optarg, "tcp:", 4))
				usage_error("--%s: '%s' is not tcp:HOST:PORT",
					    c == OPT_LISTEN ? "listen"
							    : "connect",
					    optarg);
			o->twohost_uri = optarg;
			break;
		case OPT_CHECK:
			if (!parse_bool(optarg, &o->check))
				usage_error("--check: '%s' is not on or off",
					    optarg);
			break;
		case OPT_FILL_THREADS:
			o->fill_threads =
				parse_uint_opt("fill-threads", optarg, 1, 16);
			break;
		case OPT_DUMP_IMAGE:
			o->dump_image = optarg;
			break;
		case OPT_COMPRESSION:
			/* Library keys: checked with the rest of --set. */
			o->compression = optarg;
			cfg_list_add(&o->sets, "compression", optarg,
				     "--compression");
			break;
		case OPT_ZSTD_LEVEL:
			cfg_list_add(&o->sets, "zstd-level", optarg,
				     "--zstd-level");
			break;
		case OPT_ZSTD_LONG:
			cfg_list_add(&o->sets, "zstd-long", optarg,
				     "--zstd-long");
			break;
		case OPT_DEST_NETNS:
			o->dest_netns = optarg;
			break;
		case OPT_SOURCE_NETNS:
			o->source_netns = optarg;
			break;
		case OPT_TIMEOUT:
			o->timeout_s =
				parse_uint_opt("timeout", optarg, 0, 86400);
			break;
		case OPT_DEVICES:
		case OPT_DEVICE_STATE:
		case OPT_DEVICE_PRECOPY:
		case OPT_DEVICE_LOAD_MS:
		case OPT_DEVICE_TRANSFER:
		case OPT_WRITERS:
		case OPT_DIRTY_RATE:
		case OPT_PATTERN:
		case OPT_HOT_FRACTION:
		case OPT_GUEST_LOAD:
		case OPT_MEASURE_MS:
		case OPT_TRACKER:
		case OPT_DOWNTIME_LIMIT:
		case OPT_MAX_BANDWIDTH:
		case OPT_AUTO_CONVERGE:
		case OPT_MAX_ROUNDS:
		case OPT_TIMEOUT_POLICY:
		case OPT_PRECOPY_TIMEOUT:
			parse_precopy_opt(c, optarg, o);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			/* getopt_long printed what was wrong. */
			fprintf(stderr, "Try '%s --help'.\n", prog);
			exit(EXIT_USAGE);
		}
	}
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
	if (!o->uri)
		o->uri = strcmp(o->transport, "rdma") ? "tcp:127.0.0.1:0"
						      : "rdma:127.0.0.1:0";
	if (strncmp(o->uri, o->transport, strlen(o->transport)) ||
	    o->uri[strlen(o->transport)] != ':')
		usage_error("--uri %s does not match --transport %s", o->uri,
			    o->transport);
}

/* Writes the filled source RAM to path. 0 or a negative errno. */
static int dump_image(const struct vm *vm, const char *path)
{
	FILE *f = fopen(path, "wb");
	if (!f) {
		fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
		return -errno;
	}
	size_t n = fwrite(vm->src, 1, vm->ram_bytes, f);
	int err = n == vm->ram_bytes ? 0 : -EIO;
	if (fclose(f) && !err)
		err = -errno;
	if (err)
		fprintf(stderr, "%s: %s: write failed\n", prog, path);
	return err;
}

/* RDMA needs a device: say so at once, before RAM is mapped and filled. */
static int check_rdma_device(void)
{
	int n = 0;
	struct ibv_device **list = ibv_get_device_list(&n);

	if (list)
		ibv_free_device_list(list);
	if (!list || n == 0) {
		fprintf(stderr,
			"%s: --transport rdma: no RDMA device is present "
			"(ibv_get_device_list found none)\n",
			prog);
		return -ENODEV;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Library configuration                                              */
/* ------------------------------------------------------------------ */

static int config_set_checked(mfd_config *cfg, const char *key,
			      const char *value, const char *what)
{
	int err = mfd_config_set(cfg, key, value);

	if (err)
		fprintf(stderr, "%s: %s %s=%s: %s\n", prog, what, key, value,
			mfd_strerror(err));
	return err;
}

/* The pre-copy shorthands, each set only when given. */
static int precopy_config(const struct bench_opts *o, mfd_config *cfg)
{
	const struct {
		const char *key, *value;
	} kv[] = {
		{ "dirty-tracker", o->tracker },
		{ "downtime-limit", o->downtime_limit },
		{ "max-bandwidth", o->max_bandwidth },
		{ "auto-converge", o->auto_converge },
		{ "max-rounds", o->max_rounds },
		{ "timeout-policy", o->timeout_policy },
		{ "precopy-timeout", o->precopy_timeout },
	};
	int err = 0;

	for (size_t i = 0; !err && i < sizeof(kv) / sizeof(kv[0]); i++)
		if (kv[i].value)
			err = config_set_checked(cfg, kv[i].key, kv[i].value,
						 "option");
	return err;
}

/*
 * One side's config: library defaults < the bench's defaults (verify on) <
 * --config FILE < the command line in order (benchcfg.c).
 */
static int build_config(const struct bench_opts *o, mfd_config **out)
{
	struct cfg_list defaults = { 0 };
	int err;

	cfg_list_add(&defaults, "verify", "on", "the bench's default");
	err = benchcfg_build(prog, &defaults, o->config_path, &o->sets, out);
	cfg_list_free(&defaults);
	if (!err)
		err = precopy_config(o, *out);
	return err;
}

/* Effective value of an integer key, or fallback when unreadable. */
static uint64_t config_u64(const mfd_config *cfg, const char *key,
			   uint64_t fallback)
{
	char buf[64];
	uint64_t v;

	if (mfd_config_get(cfg, key, buf, sizeof(buf)) || !parse_u64(buf, &v))
		return fallback;
	return v;
}

static bool config_bool(const mfd_config *cfg, const char *key, bool fallback)
{
	char buf[64];
	bool v;

	if (mfd_config_get(cfg, key, buf, sizeof(buf)) || !parse_bool(buf, &v))
		return fallback;
	return v;
}

/* ------------------------------------------------------------------ */
/* Hooks: no guest writers yet, so they only record when they ran      */
/* ------------------------------------------------------------------ */

static int hook_stop(void *opaque)
{
	struct hook_log *h = opaque;

	__atomic_store_n(&h->stop_ns, now_ns(), __ATOMIC_RELEASE);
	__atomic_add_fetch(&h->stops, 1, __ATOMIC_RELAXED);
	/* Returns when every writer is parked: the memory is final. */
	guest_pause(h->guest);
	h->work_at_stop = guest_work(h->guest);
	return 0;
}

static int hook_resume(void *opaque)
{
	struct hook_log *h = opaque;

	__atomic_store_n(&h->resume_ns, now_ns(), __ATOMIC_RELEASE);
	__atomic_add_fetch(&h->resumes, 1, __ATOMIC_RELAXED);
	guest_resume(h->guest);
	return 0;
}

static int hook_throttle(void *opaque, int pct)
{
	struct hook_log *h = opaque;

	guest_throttle(h->guest, pct);
	if (pct > h->throttle_max)
		h->throttle_max = pct;
	h->throttles++;
	return 0;
}

static int hook_loaded(void *opaque)
{
	struct hook_log *h = opaque;

	__atomic_store_n(&h->loaded_ns, now_ns(), __ATOMIC_RELEASE);
	return 0;
}

static void hook_failed(void *opaque, int err)
{
	struct hook_log *h = opaque;

	__atomic_store_n(&h->dest_failed, err, __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------------ */
/* Watchdog: a hung migration is cancelled rather than hanging the run */
/* ------------------------------------------------------------------ */

struct watchdog {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	bool fired;
	unsigned timeout_s;
	mfd_source *src;
	mfd_dest *dst;
};

static void *watchdog_thread(void *arg)
{
	struct watchdog *w = arg;
	struct timespec deadline;
	int rc = 0;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += w->timeout_s;
	pthread_mutex_lock(&w->lock);
	while (!w->done && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&w->cond, &w->lock, &deadline);
	if (!w->done) {
		w->fired = true;
		fprintf(stderr, "%s: no result after %u s, cancelling\n", prog,
			w->timeout_s);
		mfd_source_cancel(w->src);
		mfd_dest_cancel(w->dst);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static int watchdog_start(struct watchdog *w, unsigned timeout_s,
			  mfd_source *src, mfd_dest *dst)
{
	pthread_condattr_t ca;
	int err;

	memset(w, 0, sizeof(*w));
	w->timeout_s = timeout_s;
	w->src = src;
	w->dst = dst;
	if (!timeout_s)
		return 0;
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);
	err = pthread_create(&w->thread, NULL, watchdog_thread, w);
	if (err) {
		pthread_cond_destroy(&w->cond);
		pthread_mutex_destroy(&w->lock);
		w->timeout_s = 0;
		return -err;
	}
	return 0;
}

static void watchdog_stop(struct watchdog *w)
{
	if (!w->timeout_s)
		return;
	pthread_mutex_lock(&w->lock);
	w->done = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
}

/* ------------------------------------------------------------------ */
/* One migration                                                      */
/* ------------------------------------------------------------------ */

struct run_result {
	int src_err;
	int dst_err;
	int setup_err; /* before the migration could start */
	bool timed_out;
	bool memcmp_done;
	bool memcmp_ok;
	uint64_t first_diff; /* byte offset of the first difference */
	uint64_t fill_ns;
	uint64_t populate_ns;
	uint64_t wall_ns;
	uint64_t memcmp_ns;
	struct rusage ru0, ru1;
	mfd_stats src_st;
	mfd_stats dst_st;
	struct hook_log hooks;
	char uri[256];
	struct sampler *sampler; /* timeline and progress line */
	/* Guest workload */
	uint64_t migrate_t0;
	double work_before, work_during, work_after; /* per second */
	uint64_t writes;
	uint64_t work_at_start;
	mfd_round_stats rounds[MAX_ROUND_RECORDS];
	unsigned nrounds;
};

static void report_error(const char *what, int err)
{
	fprintf(stderr, "%s: %s: %s (%d)\n", prog, what, mfd_strerror(err),
		err);
}

/* Offset of the first differing byte, compared in 1 MiB slices so that a
 * mismatch can be located; UINT64_MAX when equal. */
static uint64_t compare_ram(const struct vm *vm)
{
	const uint64_t slice = 1ULL << 20;

	for (uint64_t off = 0; off < vm->ram_bytes; off += slice) {
		uint64_t len = vm->ram_bytes - off;

		if (len > slice)
			len = slice;
		if (!memcmp(vm->src + off, vm->dst + off, len))
			continue;
		for (uint64_t i = off; i < off + len; i++)
			if (vm->src[i] != vm->dst[i])
				return i;
	}
	return UINT64_MAX;
}

/*
 * Network namespaces (bench/netns.sh makes them): the calling thread
 * switches to /var/run/netns/NAME around mfd_dest_start() or
 * mfd_source_start(); the sockets and threads those create stay there.
 * *home receives the thread's own namespace; name NULL does nothing.
 */
static int netns_enter(const char *name, int *home)
{
	char path[256];
	int fd, err = 0;

	*home = -1;
	if (!name)
		return 0;
	snprintf(path, sizeof(path), "/var/run/netns/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	*home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || *home < 0 || setns(fd, CLONE_NEWNET) < 0) {
		err = -errno;
		fprintf(stderr, "%s: network namespace %s: %s\n", prog, name,
			strerror(errno));
		if (*home >= 0)
			close(*home);
		*home = -1;
	}
	if (fd >= 0)
		close(fd);
	return err;
}

static void netns_leave(int *home)
{
	if (*home < 0)
		return;
	if (setns(*home, CLONE_NEWNET) < 0) {
		fprintf(stderr, "%s: back to own network namespace: %s\n", prog,
			strerror(errno));
		exit(1);
	}
	close(*home);
	*home = -1;
}

/* The writers report their writes while the manual tracker runs. */
static void guest_attach(const struct bench_opts *o, struct run_result *res,
			 mfd_source *src, bool start)
{
	bool uffd = o->tracker && !strcmp(o->tracker, "uffd-wp");

	if (!start || !uffd)
		guest_set_marking(res->hooks.guest, src);
}

/* uffd-wp falls back to manual where the kernel lacks it: the writers must
 * then report their writes. Waits until the tracker has been chosen. */
static void guest_check_tracker(const struct bench_opts *o,
				struct run_result *res, mfd_source *src)
{
	mfd_stats st;

	if (!res->hooks.guest || !o->tracker || strcmp(o->tracker, "uffd-wp"))
		return;
	do {
		usleep(100);
		mfd_source_get_stats(src, &st, sizeof(st));
	} while (st.phase == MFD_PHASE_SETUP);
	if (st.phase == MFD_PHASE_PRECOPY && st.tracker == 0) {
		fprintf(stderr,
			"%s: uffd-wp unavailable, the writers mark "
			"their pages instead\n",
			prog);
		guest_set_marking(res->hooks.guest, src);
	}
}

static void migrate(const struct bench_opts *o, struct vm *vm,
		    const mfd_config *scfg, const mfd_config *dcfg,
		    struct run_result *res)
{
	mfd_source_hooks sh = {
		.opaque = &res->hooks,
		.stop = hook_stop,
		.resume = hook_resume,
		.throttle = hook_throttle,
	};
	mfd_dest_hooks dh = {
		.opaque = &res->hooks,
		.loaded = hook_loaded,
		.failed = hook_failed,
	};
	mfd_source *src = NULL;
	int netns_home = -1;
	mfd_dest *dst = NULL;
	struct watchdog wd;
	uint64_t t0;
	int err;

	err = mfd_dest_new(&dst, dcfg, &dh);
	if (err) {
		report_error("mfd_dest_new", err);
		goto fail;
	}
	for (unsigned i = 0; i < vm->nblocks; i++) {
		err = mfd_dest_add_block(dst, vm->blocks[i].name,
					 vm_block_dst(vm, i),
					 vm->blocks[i].size, vm->page_size);
		if (err) {
			report_error("mfd_dest_add_block", err);
			goto fail;
		}
	}
	err = mfd_source_new(&src, scfg, &sh);
	if (err) {
		report_error("mfd_source_new", err);
		goto fail;
	}
	for (unsigned i = 0; i < vm->nblocks; i++) {
		err = mfd_source_add_block(src, vm->blocks[i].name,
					   vm_block_src(vm, i),
					   vm->blocks[i].size, vm->page_size);
		if (err) {
			report_error("mfd_source_add_block", err);
			goto fail;
		}
	}
	err = bench_devices_attach(&o->dev, src, dst, vm->src, vm->ram_bytes);
	if (err) {
		report_error("devices", err);
		goto fail;
	}
	/* The destination's listener and threads live in its namespace:
	 * sockets and threads keep the namespace they were created in. */
	err = netns_enter(o->dest_netns, &netns_home);
	if (!err) {
		err = mfd_dest_start(dst, o->uri);
		netns_leave(&netns_home);
	} else {
		goto fail;
	}
	if (err) {
		fprintf(stderr, "%s: mfd_dest_start(%s): %s (%d)\n", prog,
			o->uri, mfd_strerror(err), err);
		goto fail;
	}
	err = mfd_dest_get_uri(dst, res->uri, sizeof(res->uri));
	if (err) {
		report_error("mfd_dest_get_uri", err);
		mfd_dest_cancel(dst);
		mfd_dest_wait(dst);
		goto fail;
	}

	err = watchdog_start(&wd, o->timeout_s, src, dst);
	if (err) {
		report_error("watchdog", err);
		mfd_dest_cancel(dst);
		mfd_dest_wait(dst);
		goto fail;
	}
	getrusage(RUSAGE_SELF, &res->ru0);
	t0 = now_ns();
	res->migrate_t0 = t0;
	res->work_at_start = guest_work(res->hooks.guest);
	guest_attach(o, res, src, true);
	res->src_err = netns_enter(o->source_netns, &netns_home);
	if (!res->src_err) {
		res->src_err = mfd_source_start(src, res->uri);
		netns_leave(&netns_home);
	}
	/*
	 * After mfd_source_start(): it resets the statistics with plain
	 * stores, which would race with a sampler already reading them
	 * (TSan). The first sample is taken within microseconds of start.
	 */
	if (!res->src_err &&
	    sampler_start(&res->sampler, src, NULL, vm->page_size, true))
		res->sampler = NULL; /* no timeline, not a failed run */
	if (!res->src_err)
		guest_check_tracker(o, res, src);
	if (!res->src_err)
		res->src_err = mfd_source_wait(src);
	/* A source that never connected leaves the destination waiting for
	 * a connection forever. */
	if (res->src_err)
		mfd_dest_cancel(dst);
	res->dst_err = mfd_dest_wait(dst);
	sampler_stop(res->sampler);
	res->wall_ns = now_ns() - t0;
	getrusage(RUSAGE_SELF, &res->ru1);
	watchdog_stop(&wd);
	res->timed_out = wd.fired;

	mfd_source_get_stats(src, &res->src_st, sizeof(res->src_st));
	mfd_dest_get_stats(dst, &res->dst_st, sizeof(res->dst_st));
	while (res->nrounds < MAX_ROUND_RECORDS &&
	       !mfd_source_get_round(src, res->nrounds,
				     &res->rounds[res->nrounds],
				     sizeof(res->rounds[0])))
		res->nrounds++;
	/* The guest must not report to a source about to be freed. */
	guest_attach(o, res, NULL, false);
	if (res->src_err)
		report_error("source", res->src_err);
	if (res->dst_err)
		report_error("destination", res->dst_err);
	mfd_source_free(src);
	mfd_dest_free(dst);
	return;

fail:
	res->setup_err = err;
	mfd_source_free(src);
	mfd_dest_free(dst);
}

static int first_error(const struct run_result *res)
{
	if (res->setup_err)
		return res->setup_err;
	if (res->src_err)
		return res->src_err;
	return res->dst_err;
}

static void fill_report(struct report *r, const struct bench_opts *o,
			const struct vm *vm, const mfd_config *cfg,
			const struct run_result *res)
{
	const mfd_stats *s = &res->src_st;
	int err = first_error(res);
	bool ok = !err && res->memcmp_ok;
	bool verify = config_bool(cfg, "verify", o->verify);
	uint64_t total_ns = s->total_ns ? s->total_ns : res->wall_ns;
	uint64_t xfer_ns = s->transfer_ns ? s->transfer_ns : total_ns;
	uint64_t hooks_down_ns = 0;

	if (res->hooks.stop_ns && res->hooks.loaded_ns > res->hooks.stop_ns)
		hooks_down_ns = res->hooks.loaded_ns - res->hooks.stop_ns;

	report_str(r, "status", ok ? "ok" : "failed");
	if (err)
		report_str(r, "error", mfd_strerror(err));
	else if (!res->memcmp_ok)
		report_str(r, "error", "destination RAM differs from source");
	report_i64(r, "error_code", err);
	report_str(r, "image", vm_image_name(&o->image));
	report_u64(r, "seed", o->image.seed);
	report_u64(r, "ram_bytes", o->ram_bytes);
	report_u64(r, "blocks", o->blocks);
	report_u64(r, "page_size", PAGE_SIZE);
	report_u64(r, "channels",
		   s->channels ? s->channels
			       : config_u64(cfg, "channels", o->channels));
	report_u64(r, "packet_pages",
		   config_u64(cfg, "packet-pages", o->packet_pages));
	report_bool(r, "verify", verify);
	report_bool(r, "thp", vm && vm->src_thp && vm->dst_thp);
	report_bool(r, "dest_populate", o->dest_populate);
	report_str(r, "uri", res->uri);
	report_str(r, "transport", o->transport);
	{
		char eng[32] = "?";

		mfd_config_get(cfg, "io-engine", eng, sizeof(eng));
		report_str(r, "io_engine", eng);
	}

	report_f64(r, "fill_ms", ns_to_ms(res->fill_ns), 1);
	report_f64(r, "dest_populate_ms", ns_to_ms(res->populate_ns), 1);
	report_f64(r, "setup_ms", ns_to_ms(s->setup_ns), 3);
	report_f64(r, "transfer_ms", ns_to_ms(s->transfer_ns), 3);
	report_f64(r, "downtime_ms", ns_to_ms(s->downtime_ns), 3);
	report_f64(r, "downtime_hooks_ms", ns_to_ms(hooks_down_ns), 3);
	report_f64(r, "verify_ms", ns_to_ms(s->verify_ns), 3);
	report_f64(r, "dest_verify_ms", ns_to_ms(res->dst_st.verify_ns), 3);
	report_f64(r, "total_ms", ns_to_ms(total_ns), 3);
	report_f64(r, "wall_ms", ns_to_ms(res->wall_ns), 3);
	report_f64(r, "memcmp_ms", ns_to_ms(res->memcmp_ns), 1);

	report_u64(r, "wire_bytes", s->wire_bytes);
	report_u64(r, "dest_wire_bytes", res->dst_st.wire_bytes);
	report_u64(r, "pages_sent", s->pages);
	report_u64(r, "zero_pages", s->zero_pages);
	report_str(r, "compression", o->compression ? o->compression : "none");
	report_u64(r, "compressed_bytes", s->compressed_bytes);
	report_u64(r, "raw_pages", s->raw_pages);
	report_f64(r, "compression_ratio",
		   s->compressed_bytes ? (double)s->compress_in_bytes /
						 (double)s->compressed_bytes
				       : NAN,
		   3);
	report_f64(r, "compress_cpu_s", (double)s->compress_ns / 1e9, 3);
	report_f64(r, "decompress_cpu_s", (double)res->dst_st.compress_ns / 1e9,
		   3);
	report_u64(r, "dest_pages", res->dst_st.pages);
	report_u64(r, "packets", s->packets);
	report_u64(r, "rounds",
		   s->phase == MFD_PHASE_NONE ? 0 : (uint64_t)s->round + 1);

	report_f64(r, "throughput_mbps",
		   xfer_ns ? (double)s->wire_bytes * 1e3 / (double)xfer_ns
			   : NAN,
		   1);
	report_f64(r, "effective_mbps",
		   total_ns ? (double)o->ram_bytes * 1e3 / (double)total_ns
			    : NAN,
		   1);
	report_f64(r, "last_round_mbps", (double)s->bandwidth_bps / 1e6, 1);
	report_f64(r, "cpu_user_s",
		   tv_to_s(&res->ru1.ru_utime) - tv_to_s(&res->ru0.ru_utime),
		   3);
	report_f64(r, "cpu_sys_s",
		   tv_to_s(&res->ru1.ru_stime) - tv_to_s(&res->ru0.ru_stime),
		   3);
	report_f64(r, "src_cpu_s", (double)s->cpu_ns / 1e9, 3);
	report_f64(r, "dst_cpu_s", (double)res->dst_st.cpu_ns / 1e9, 3);
	report_f64(r, "src_cpu_s_per_gib",
		   (double)s->cpu_ns / 1e9 / ((double)o->ram_bytes / (1 << 30)),
		   3);
	report_f64(r, "dst_cpu_s_per_gib",
		   (double)res->dst_st.cpu_ns / 1e9 /
			   ((double)o->ram_bytes / (1 << 30)),
		   3);
	report_u64(r, "stop_hooks", res->hooks.stops);
	report_u64(r, "resume_hooks", res->hooks.resumes);
	report_bool(r, "verified", verify && !err);
	report_bool(r, "memcmp_ok", res->memcmp_ok);
	report_str(r, "source_phase", mfd_phase_name(s->phase));
	report_str(r, "dest_phase", mfd_phase_name(res->dst_st.phase));
	report_bool(r, "timed_out", res->timed_out);
	report_u64(r, "lib_version", (uint64_t)mfd_version());
}

/* ------------------------------------------------------------------ */
/* Guest impact and pre-copy report                                   */
/* ------------------------------------------------------------------ */

/* Work per second of the running guest over ms milliseconds. */
static double work_rate(struct guest *g, unsigned ms)
{
	uint64_t w0 = guest_work(g), t0 = now_ns();

	usleep(ms * 1000u);
	return (double)(guest_work(g) - w0) * 1e9 / (double)(now_ns() - t0);
}

/* The guest's work rate while it ran during migration: from the start
 * until the stop hook (or until the end, when it never stopped). */
static void guest_during(struct run_result *res)
{
	struct guest *g = res->hooks.guest;
	uint64_t end, work;

	if (!g || !res->migrate_t0)
		return;
	if (res->hooks.stop_ns) {
		end = res->hooks.stop_ns;
		work = res->hooks.work_at_stop;
	} else {
		end = now_ns();
		work = guest_work(g);
	}
	/* Work before migrate_t0 was measured by work_rate(), which ended
	 * just before: count from its end. */
	if (end > res->migrate_t0)
		res->work_during = (double)(work - res->work_at_start) * 1e9 /
				   (double)(end - res->migrate_t0);
}

/* After success the guest runs on at the destination (the source is
 * parked); after a failure it still runs at the source. */
static void guest_after(const struct bench_opts *o, struct vm *vm,
			struct run_result *res)
{
	struct guest *g = res->hooks.guest;

	if (!g)
		return;
	if (res->hooks.stops && !res->hooks.resumes) {
		guest_set_ram(g, vm->dst);
		guest_resume(g);
	}
	res->work_after = work_rate(g, o->measure_ms);
	res->writes = guest_writes(g);
}

static void fill_report_precopy(struct report *r, const struct bench_opts *o,
				const mfd_config *cfg,
				const struct run_result *res)
{
	const mfd_stats *s = &res->src_st;
	char buf[64];
	size_t len = 0, cap = 64 + (size_t)res->nrounds * 160;
	char *json = malloc(cap);

	report_str(r, "tracker", s->tracker == 1 ? "uffd-wp" : "manual");
	if (!mfd_config_get(cfg, "downtime-limit", buf, sizeof(buf)))
		report_str(r, "downtime_limit", buf);
	if (!mfd_config_get(cfg, "max-bandwidth", buf, sizeof(buf)))
		report_str(r, "max_bandwidth", buf);
	if (!mfd_config_get(cfg, "timeout-policy", buf, sizeof(buf)))
		report_str(r, "timeout_policy", buf);
	report_bool(r, "auto_converge", config_bool(cfg, "auto-converge", 0));
	report_bool(r, "forced", s->forced);
	report_f64(r, "down_sync_ms", ns_to_ms(s->down_sync_ns), 3);
	report_f64(r, "down_pages_ms", ns_to_ms(s->down_pages_ns), 3);
	report_f64(r, "down_end_ms", ns_to_ms(s->down_end_ns), 3);
	report_f64(r, "down_ack_ms", ns_to_ms(s->down_ack_ns), 3);
	report_f64(r, "expected_downtime_ms",
		   s->expected_downtime_ns == UINT64_MAX
			   ? -1
			   : ns_to_ms(s->expected_downtime_ns),
		   3);
	report_f64(r, "dirty_rate_mbps", (double)s->dirty_rate_bps / 1e6, 1);
	report_u64(r, "throttle_pct", s->throttle_max_pct);
	report_u64(r, "throttle_calls", res->hooks.throttles);
	report_u64(r, "writers", o->guest.writers);
	if (o->guest.writers) {
		report_str(r, "pattern", guest_pattern_name(o->guest.pattern));
		report_f64(r, "guest_dirty_rate_mbps", o->guest.dirty_mbps, 1);
		report_u64(r, "guest_load_pct", o->guest.load_pct);
		report_u64(r, "guest_writes", res->writes);
		report_f64(r, "guest_work_before", res->work_before / 1e6, 2);
		report_f64(r, "guest_work_during", res->work_during / 1e6, 2);
		report_f64(r, "guest_work_after", res->work_after / 1e6, 2);
		report_f64(r, "guest_slowdown_pct",
			   res->work_before > 0
				   ? 100.0 * (1.0 - res->work_during /
							    res->work_before)
				   : 0,
			   1);
	}
	if (!json)
		return;
	len += (size_t)snprintf(json + len, cap - len, "[");
	for (unsigned i = 0; i < res->nrounds; i++) {
		const mfd_round_stats *x = &res->rounds[i];

		len += (size_t)snprintf(
			json + len, cap - len,
			"%s{\"round\": %u, \"pages\": %" PRIu64
			", \"bytes\": %" PRIu64 ", \"ms\": %.3f, \"mbps\": %.1f"
			", \"dirty_pages\": %" PRIu64 ", \"dirty_mbps\": %.1f"
			", \"throttle_pct\": %u}",
			i ? ", " : "", x->round, x->pages, x->bytes,
			ns_to_ms(x->ns), (double)x->bandwidth_bps / 1e6,
			x->dirty_pages, (double)x->dirty_rate_bps / 1e6,
			x->throttle_pct);
	}
	snprintf(json + len, cap - len, "]");
	report_raw(r, "round_stats", json);
	free(json);
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	struct run_result res;
	struct report rep;
	mfd_config *scfg = NULL, *dcfg = NULL;
	struct vm *vm = NULL;
	uint64_t t;
	int err;

	parse_args(argc, argv, &o);
	memset(&res, 0, sizeof(res));

	/* Bad configuration is a usage error: fail before mapping RAM. */
	if (build_config(&o, &scfg) || build_config(&o, &dcfg)) {
		mfd_config_free(scfg);
		cfg_list_free(&o.sets);
		return EXIT_USAGE;
	}
	if (!strcmp(o.transport, "rdma") && check_rdma_device()) {
		mfd_config_free(scfg);
		mfd_config_free(dcfg);
		cfg_list_free(&o.sets);
		return 1;
	}
	if (o.print_config) {
		benchcfg_print(scfg, stdout);
		err = 0;
		goto out;
	}
	if (o.mode != MODE_LOCAL && o.dev.n) {
		fprintf(stderr,
			"%s: --devices: local runs only (both sides "
			"must register the same devices)\n",
			prog);
		err = 1;
		goto out;
	}
	if (o.mode != MODE_LOCAL) {
		struct twohost_args ta = {
			.prog = prog,
			.source = o.mode == MODE_SOURCE,
			.uri = o.twohost_uri,
			.ram_bytes = o.ram_bytes,
			.blocks = o.blocks,
			.page_size = PAGE_SIZE,
			.image = o.image,
			.fill_threads = o.fill_threads,
			.dest_populate = o.dest_populate,
			.check = o.check,
			.json = o.json,
			.timeout_s = o.timeout_s,
			.cfg = o.mode == MODE_SOURCE ? scfg : dcfg,
			.timeline = o.timeline,
			.plot = o.plot,
		};

		err = twohost_run(&ta);
		goto out;
	}

	err = vm_create(&vm, o.ram_bytes, o.blocks, PAGE_SIZE);
	if (err)
		goto out;
	t = now_ns();
	err = vm_fill(vm, &o.image, o.fill_threads);
	res.fill_ns = now_ns() - t;
	if (err) {
		fprintf(stderr, "%s: filling RAM with image %s failed: %s\n",
			prog, vm_image_name(&o.image), strerror(-err));
		goto out;
	}
	if (o.dump_image) {
		err = dump_image(vm, o.dump_image);
		goto out;
	}
	if (o.dest_populate) {
		t = now_ns();
		vm_dest_populate(vm);
		res.populate_ns = now_ns() - t;
	}

	if (o.guest.writers) {
		err = guest_start(&res.hooks.guest, &o.guest, vm);
		if (err) {
			fprintf(stderr, "%s: starting the guest writers: %s\n",
				prog, strerror(-err));
			goto out;
		}
		/* A first window as warm-up: right after filling and
		 * populating gigabytes the machine is still busy (page
		 * reclaim, free page reporting), which depressed this
		 * baseline by up to half in early runs. */
		work_rate(res.hooks.guest, o.measure_ms);
		res.work_before = work_rate(res.hooks.guest, o.measure_ms);
	}

	migrate(&o, vm, scfg, dcfg, &res);
	guest_during(&res);

	if (!first_error(&res)) {
		t = now_ns();
		res.first_diff = compare_ram(vm);
		res.memcmp_ns = now_ns() - t;
		res.memcmp_done = true;
		res.memcmp_ok = res.first_diff == UINT64_MAX;
		if (!res.memcmp_ok)
			fprintf(stderr,
				"%s: destination RAM differs from source, "
				"first at byte %" PRIu64 " (page %" PRIu64
				")\n",
				prog, res.first_diff,
				res.first_diff / PAGE_SIZE);
	}

	guest_after(&o, vm, &res);

	report_init(&rep);
	fill_report(&rep, &o, vm, scfg, &res);
	fill_report_precopy(&rep, &o, scfg, &res);
	bench_devices_report(&rep, &o.dev, &res.src_st, &res.dst_st);
	if (o.json)
		report_json(&rep, stdout);
	else
		report_table(&rep, stdout);
	report_free(&rep);
	fflush(stdout);
	err = first_error(&res) || !res.memcmp_ok ||
	      (o.dev.n && !bench_devices_equal());
	{
		char title[256];

		snprintf(title, sizeof(title),
			 "multifd-bench: %.0f MiB %s, %u channels, loopback",
			 (double)o.ram_bytes / 1048576.0,
			 vm_image_name(&o.image), res.src_st.channels);
		if (bench_outputs(res.sampler, o.timeline, o.plot,
				  res.hooks.stop_ns, res.src_st.downtime_ns,
				  title))
			err = 1;
	}

out:
	sampler_free(res.sampler);
	guest_stop(res.hooks.guest);
	bench_devices_free(); /* before the RAM its DMA writes */
	vm_destroy(vm);
	mfd_config_free(scfg);
	mfd_config_free(dcfg);
	cfg_list_free(&o.sets);
	return err ? 1 : 0;
}
