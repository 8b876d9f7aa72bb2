/* SPDX-License-Identifier: MIT */
/*
 * Configuration keys: one table drives defaults, parsing, range checks,
 * printing and docs/config.md. A value is parsed completely and checked
 * before it is stored, so a rejected value leaves the config as it was.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "multifd/config.h"
#include "multifd/compress/codec.h"
#include "multifd/wire.h"

_Static_assert(sizeof(bool) == 1, "bool fields are stored as one byte");

#define FIELD(f)                                                               \
	.offset = offsetof(struct mfd_config, f),                              \
	.width = sizeof(((struct mfd_config *)0)->f)

/* Index = enum mfd__codec_id. */
static const char *const compression_names[] = { "none", "zstd", NULL };
static const char *const io_engine_names[] = { "sockets", "uring", NULL };

/*
 * Defaults are written the way mfd_config_get() prints them, so that the
 * table, the printed values and docs/config.md all read the same.
 */
static const char *const tls_modes[] = { "off", "cert", "psk", NULL };
static const char *const tracker_choices[] = { "manual", "uffd-wp", NULL };
static const char *const policy_choices[] = { "force", "cancel", NULL };
/* Index = enum mfd__dev_transfer_cfg. */
static const char *const devxfer_choices[] = { "main", "multifd", NULL };
static const char *const prefault_choices[] = { "off", "ahead", NULL };
static const char *const postcopy_choices[] = { "off", "manual", "auto", NULL };

const struct mfd__cfg_key mfd__cfg_keys[] = {
	{
		.section = "migration",
		.name = "channels",
		.type = MFD__CFG_UINT,
		.def = "2",
		.min = 1,
		.max = 64,
		FIELD(channels),
		.doc = "Number of data channels, each with its own connection "
		       "and worker.",
	},
	{
		.section = "migration",
		.name = "packet-pages",
		.type = MFD__CFG_UINT,
		.def = "512",
		.min = 1,
		.max = 1024,
		FIELD(packet_pages),
		.doc = "Maximum number of guest pages in one packet (512: 2 "
		       "MiB, one huge page, of 4 KiB pages).",
	},
	{
		.section = "migration",
		.name = "verify",
		.type = MFD__CFG_BOOL,
		.def = "off",
		.min = 0,
		.max = 1,
		FIELD(verify),
		.doc = "Send a digest of every RAM block at the end; the "
		       "destination "
		       "checks it.",
	},
	{
		.section = "migration",
		.name = "max-rounds",
		.type = MFD__CFG_UINT,
		.def = "30",
		.min = 1,
		.max = 100000,
		FIELD(max_rounds),
		.doc = "Most pre-copy rounds; when reached without meeting the "
		       "downtime target, timeout-policy applies.",
	},
	{
		.section = "migration",
		.name = "downtime-limit",
		.type = MFD__CFG_MS,
		.def = "300ms",
		.min = 1,
		.max = 3600000,
		FIELD(downtime_limit_ms),
		.doc = "Downtime budget: switch over once the predicted "
		       "downtime fits in it at downtime-quantile: the "
		       "remaining dirty pages and the devices' stop-copy "
		       "state at the predicted bandwidth, plus the stop "
		       "hook, the devices' stop and the final dirty sync, "
		       "and the end exchange (digests with verify), and "
		       "never on the first pass alone (its pace is not the "
		       "final pass's) unless nothing is pending. When it "
		       "does not fit, the part that broke it is logged and "
		       "reported (over_part).",
	},
	{
		.section = "migration",
		.name = "stop-cost",
		.type = MFD__CFG_MS,
		.def = "0ms",
		.min = 0,
		.max = 3600000,
		FIELD(stop_cost_ms),
		.doc = "What the stop hook costs, as the embedder knows it "
		       "(pausing vCPUs, flushing devices), counted in the "
		       "downtime estimate; 0 = the hook's last measured call "
		       "on this source (none before the first).",
	},
	{
		.section = "migration",
		.name = "downtime-quantile",
		.type = MFD__CFG_UINT,
		.def = "95",
		.min = 50,
		.max = 99,
		FIELD(downtime_quantile),
		.doc = "How sure the switchover must be to fit downtime-limit, "
		       "in percent: the predicted transfer is stretched by "
		       "this quantile of the errors the estimator made on "
		       "this migration's own rounds (each round's pages "
		       "predicted, then timed). 95: 9 switchovers of 10 "
		       "within the limit with a 91 % chance; 50 = the "
		       "estimate itself, no margin. The margin is reported "
		       "(expected_downtime_q_ns) beside the estimate.",
	},
	{
		.section = "migration",
		.name = "connect-timeout",
		.type = MFD__CFG_MS,
		.def = "5000ms",
		.min = 100,
		.max = 600000,
		FIELD(connect_timeout_ms),
		.doc = "Time allowed to connect a channel and complete its "
		       "handshake.",
	},
	{
		.section = "migration",
		.name = "max-pending-connections",
		.type = MFD__CFG_UINT,
		.def = "16",
		.min = 1,
		.max = 1024,
		FIELD(max_pending),
		.doc = "Destination: connections held at once until they have "
		       "sent "
		       "their whole hello (each for at most connect-timeout); "
		       "when "
		       "full, the oldest is dropped.",
	},
	{
		.section = "migration",
		.name = "io-timeout",
		.type = MFD__CFG_MS,
		.def = "30000ms",
		.min = 100,
		.max = 3600000,
		FIELD(io_timeout_ms),
		.doc = "A channel that makes no progress for this long fails "
		       "the "
		       "migration.",
	},
	{
		.section = "migration",
		.name = "degraded-channels",
		.type = MFD__CFG_BOOL,
		.def = "on",
		.min = 0,
		.max = 1,
		FIELD(degraded_channels),
		.doc = "A data channel that breaks in pre-copy is dropped and "
		       "its unacknowledged pages are re-sent on the others; "
		       "the migration goes on while one channel lives "
		       "(channels_lost). Both sides must have it on (feature "
		       "DEGRADE), else a broken channel fails the migration.",
	},
	{
		.section = "migration",
		.name = "resume-timeout",
		.type = MFD__CFG_MS,
		.def = "60000ms",
		.min = 0,
		.max = 3600000,
		FIELD(resume_timeout_ms),
		.doc = "When the main channel or every data channel breaks in "
		       "pre-copy, both sides keep their state this long: the "
		       "source's guest runs on (phase paused) and "
		       "mfd_source_resume() reconnects and goes on where the "
		       "destination stopped; without a resume the migration "
		       "fails as before (with post-copy also in the switch's "
		       "DISCARD exchange, before the stop). With post-copy, "
		       "a break after the switch (a data channel, an urgent "
		       "lane or main) "
		       "pauses the same way (phase postcopy-paused: the guest "
		       "runs on the destination, its faults wait) and a "
		       "resume sends what the destination lacks; without one "
		       "the guest is lost (MFD_ELOSTGUEST). 0 = off. Both "
		       "sides must have it on (feature RESUME); not with "
		       "devices or RDMA.",
	},
	{
		.section = "migration",
		.name = "close-timeout",
		.type = MFD__CFG_MS,
		.def = "2000ms",
		.min = 100,
		.max = 600000,
		FIELD(close_timeout_ms),
		.doc = "Destination, after a failure: how long the main "
		       "channel is kept open after its ERROR, until the source "
		       "closes it (orderly close, protocol 7.4).",
	},
	{
		.section = "migration",
		.name = "compression",
		.type = MFD__CFG_ENUM,
		.def = "none",
		.min = 0,
		.max = 1,
		FIELD(compression),
		.choices = compression_names,
		.doc = "Page codec of the data channels: none or zstd (one "
		       "streaming "
		       "context per channel). Zero pages are detected either "
		       "way.",
	},
	{
		.section = "migration",
		.name = "zstd-level",
		.type = MFD__CFG_UINT,
		.def = "1",
		.min = 1,
		.max = 19,
		FIELD(zstd_level),
		.doc = "zstd compression level (source side).",
	},
	{
		.section = "migration",
		.name = "zstd-long",
		.type = MFD__CFG_UINT,
		.def = "0",
		.min = MFD_ZSTD_LONG_MIN,
		.max = MFD_ZSTD_LONG_MAX,
		.or_zero = true,
		FIELD(zstd_long),
		.doc = "zstd long-distance mode, as zstd --long=N: 0 off, or "
		       "N for a 2^N byte window with long-distance "
		       "matching. Costs 2^N bytes per channel on each side; "
		       "the destination accepts windows up to its own "
		       "setting (at least 2^23).",
	},
	{
		.section = "migration",
		.name = "io-engine",
		.type = MFD__CFG_ENUM,
		.def = "sockets",
		.min = 0,
		.max = 1,
		FIELD(io_engine),
		.choices = io_engine_names,
		.doc = "How tcp: channels and file: readers and writers do "
		       "their I/O: sockets (sendmsg/recvmsg, pwrite/pread) or "
		       "uring (io_uring; zero-copy sends where they avoid a "
		       "copy; file reads on tmpfs use pread either way).",
	},
	{
		.section = "migration",
		.name = "direct-io",
		.type = MFD__CFG_BOOL,
		.def = "off",
		.min = 0,
		.max = 1,
		FIELD(direct_io),
		.doc = "file: URIs: the source writes guest pages with "
		       "O_DIRECT (no page cache; guest memory must be 4 KiB "
		       "aligned). A file system without O_DIRECT fails the "
		       "save with a clear error.",
	},
	{
		.section = "migration",
		.name = "file-hole-min",
		.type = MFD__CFG_UINT,
		.def = "16",
		.min = 1,
		.max = 1u << 20,
		FIELD(file_hole_min),
		.doc = "file: URIs, source: a run of at least this many "
		       "consecutive zero pages is left a hole of the file; "
		       "shorter runs are written as data (zeros), so a batch "
		       "stays one contiguous write and the file a few large "
		       "extents. 1: every zero page is a hole.",
	},
	{
		.section = "migration",
		.name = "lazy-restore",
		.type = MFD__CFG_BOOL,
		.def = "off",
		.min = 0,
		.max = 1,
		FIELD(lazy_restore),
		.doc = "file: URIs, destination: run the guest as soon as the "
		       "image's metadata and device state are checked and "
		       "loaded; its pages come from the file on fault "
		       "(userfaultfd) while the readers stream the rest. A "
		       "page digest that fails after the guest ran is a lost "
		       "guest (MFD_ELOSTGUEST).",
	},
	{
		.section = "migration",
		.name = "auth-key-file",
		.type = MFD__CFG_PATH,
		.def = "",
		.min = 0,
		.max = MFD_CFG_PATH_MAX - 1,
		FIELD(auth_key_file),
		.doc = "File with the pre-shared key (hex or raw, not readable "
		       "by "
		       "others); when set, every connection is authenticated "
		       "(docs/security.md). Empty: no authentication.",
	},
	{
		.section = "migration",
		.name = "tls",
		.type = MFD__CFG_ENUM,
		.def = "off",
		.min = 0,
		.max = 2,
		.choices = tls_modes,
		FIELD(tls),
		.doc = "TLS 1.3 on every channel: off, cert (X.509 "
		       "certificates) or "
		       "psk (external pre-shared key from tls-psk-file).",
	},
	{
		.section = "migration",
		.name = "tls-ca",
		.type = MFD__CFG_STR,
		.def = "",
		.min = 0,
		.max = MFD__CFG_PATH_MAX - 1,
		FIELD(tls_ca),
		.doc = "PEM file of the CA certificates the peer's certificate "
		       "must "
		       "chain to (empty: the system's default store).",
	},
	{
		.section = "migration",
		.name = "tls-cert",
		.type = MFD__CFG_STR,
		.def = "",
		.min = 0,
		.max = MFD__CFG_PATH_MAX - 1,
		FIELD(tls_cert),
		.doc = "PEM file of this side's certificate (chain); required "
		       "on the "
		       "destination with tls=cert, optional on the source.",
	},
	{
		.section = "migration",
		.name = "tls-key",
		.type = MFD__CFG_STR,
		.def = "",
		.min = 0,
		.max = MFD__CFG_PATH_MAX - 1,
		FIELD(tls_key),
		.doc = "PEM file of the private key of tls-cert (empty: read "
		       "it from "
		       "tls-cert).",
	},
	{
		.section = "migration",
		.name = "tls-psk-file",
		.type = MFD__CFG_STR,
		.def = "",
		.min = 0,
		.max = MFD__CFG_PATH_MAX - 1,
		FIELD(tls_psk_file),
		.doc = "With tls=psk: file holding the shared secret (16 to "
		       "4096 "
		       "bytes, e.g. 64 hex digits); the key is its SHA-256.",
	},
	{
		.section = "migration",
		.name = "tls-hostname",
		.type = MFD__CFG_STR,
		.def = "",
		.min = 0,
		.max = 255,
		FIELD(tls_hostname),
		.doc = "Source with tls=cert: the DNS name or IP address the "
		       "destination's certificate must carry (empty: the URI's "
		       "host).",
	},
	{
		.section = "migration",
		.name = "tls-verify-peer",
		.type = MFD__CFG_BOOL,
		.def = "off",
		.min = 0,
		.max = 1,
		FIELD(tls_verify_peer),
		.doc = "Destination with tls=cert: require a client "
		       "certificate that "
		       "chains to tls-ca; a source without one is refused.",
	},
	{
		.section = "migration",
		.name = "dirty-tracker",
		.type = MFD__CFG_ENUM,
		.def = "manual",
		.min = 0,
		.max = 1,
		FIELD(dirty_tracker),
		.choices = tracker_choices,
		.doc = "Where dirty pages come from: manual "
		       "(mfd_source_mark_dirty and "
		       "the sync_dirty hook) or uffd-wp (the kernel's write "
		       "protection of the source RAM; falls back to manual "
		       "where "
		       "unsupported).",
	},
	{
		.section = "migration",
		.name = "max-bandwidth",
		.type = MFD__CFG_UINT,
		.size = true,
		.def = "0",
		.min = 0,
		.max = 1ULL << 40,
		FIELD(max_bandwidth),
		.doc = "Bytes per second all channels together may send before "
		       "switchover (0 = unlimited); never applied during "
		       "downtime.",
	},
	{
		.section = "migration",
		.name = "auto-converge",
		.type = MFD__CFG_BOOL,
		.def = "off",
		.min = 0,
		.max = 1,
		FIELD(auto_converge),
		.doc = "Throttle the guest through the throttle hook while it "
		       "dirties "
		       "memory faster than it can be sent.",
	},
	{
		.section = "migration",
		.name = "dirty-limit",
		.type = MFD__CFG_BOOL,
		.def = "off",
		.min = 0,
		.max = 1,
		FIELD(dirty_limit),
		.doc = "Throttle only the vCPUs that dirty memory faster than "
		       "vcpu-dirty-limit, each through the throttle_vcpu hook "
		       "(QEMU 8.1's dirty-limit), instead of the whole guest; "
		       "it engages when auto-converge would (throttle-trigger-"
		       "threshold) and replaces it. Needs the hook and "
		       "mfd_source_set_vcpu_range(); without them nothing is "
		       "throttled.",
	},
	{
		.section = "migration",
		.name = "vcpu-dirty-limit",
		.type = MFD__CFG_UINT,
		.def = "1",
		.min = 1,
		.max = 1000000,
		FIELD(vcpu_dirty_limit),
		.doc = "Dirty-limit's target: MB/s of pages one vCPU may dirty "
		       "while it is throttled.",
	},
	{
		.section = "migration",
		.name = "cpu-throttle-initial",
		.type = MFD__CFG_UINT,
		.def = "20",
		.min = 1,
		.max = 99,
		FIELD(throttle_initial),
		.doc = "First throttle percentage of auto-converge.",
	},
	{
		.section = "migration",
		.name = "cpu-throttle-increment",
		.type = MFD__CFG_UINT,
		.def = "10",
		.min = 1,
		.max = 99,
		FIELD(throttle_increment),
		.doc = "Throttle percentage added each time auto-converge "
		       "steps up.",
	},
	{
		.section = "migration",
		.name = "cpu-throttle-max",
		.type = MFD__CFG_UINT,
		.def = "99",
		.min = 1,
		.max = 99,
		FIELD(throttle_max),
		.doc = "Highest throttle percentage auto-converge applies.",
	},
	{
		.section = "migration",
		.name = "throttle-trigger-threshold",
		.type = MFD__CFG_UINT,
		.def = "50",
		.min = 1,
		.max = 100,
		FIELD(throttle_threshold),
		.doc = "Auto-converge steps up after two rounds in which the "
		       "guest "
		       "dirtied more than this percentage of the bytes sent.",
	},
	{
		.section = "migration",
		.name = "precopy-timeout",
		.type = MFD__CFG_MS,
		.def = "0ms",
		.min = 0,
		.max = 86400000,
		FIELD(precopy_timeout_ms),
		.doc = "Longest pre-copy phase (0 = no limit); then "
		       "timeout-policy "
		       "applies.",
	},
	{
		.section = "migration",
		.name = "timeout-policy",
		.type = MFD__CFG_ENUM,
		.def = "force",
		.min = 0,
		.max = 1,
		FIELD(timeout_policy),
		.choices = policy_choices,
		.doc = "When max-rounds or precopy-timeout ends pre-copy "
		       "unconverged: "
		       "force (switch over anyway) or cancel (fail with "
		       "MFD_ENOCONVERGE, the guest runs on at the source).",
	},
	{
		.section = "migration",
		.name = "device-transfer",
		.type = MFD__CFG_ENUM,
		.def = "multifd",
		.min = 0,
		.max = 1,
		FIELD(device_transfer),
		.choices = devxfer_choices,
		.doc = "How device state travels: main (on the main channel "
		       "after the "
		       "RAM, loaded serially) or multifd (chunks over the data "
		       "channels, one loader thread per device).",
	},
	{
		.section = "migration",
		.name = "device-buffer-max",
		.type = MFD__CFG_UINT,
		.size = true,
		.def = "67108864",
		.min = 8192,
		.max = 1ULL << 40,
		FIELD(device_buffer_max),
		.doc = "Destination, multifd device transfer: most "
		       "device-state bytes "
		       "held for reordering; a channel whose chunk does not "
		       "fit waits "
		       "(raised to twice the source's chunk size when below "
		       "it).",
	},
	{
		.section = "migration",
		.name = "device-chunk-size",
		.type = MFD__CFG_UINT,
		.size = true,
		.def = "524288",
		.min = 4096,
		.max = 1048560,
		FIELD(device_chunk_size),
		.doc = "Source: bytes of device state per chunk (DEVICE packet "
		       "or "
		       "DEVICE_DATA message).",
	},
	{
		.section = "migration",
		.name = "dest-prefault",
		.type = MFD__CFG_ENUM,
		.def = "off",
		.min = 0,
		.max = 1,
		FIELD(dest_prefault),
		.choices = prefault_choices,
		.doc = "Destination: off, or ahead (two helper threads "
		       "populate guest RAM in 2 MiB units at most 256 MiB "
		       "ahead of the highest page received, in block order, "
		       "never outside the registered blocks; their CPU time "
		       "counts in the destination's).",
	},
	{
		.section = "migration",
		.name = "postcopy",
		.type = MFD__CFG_ENUM,
		.def = "off",
		.min = 0,
		.max = 2,
		FIELD(postcopy),
		.choices = postcopy_choices,
		.doc = "Source: off, manual (switch to post-copy when the "
		       "hypervisor calls mfd_source_start_postcopy()) or auto "
		       "(also when pre-copy does not converge within "
		       "postcopy-after-rounds rounds, or its expected downtime "
		       "stops shrinking). Not with verify or tls; the "
		       "destination needs userfaultfd.",
	},
	{
		.section = "migration",
		.name = "postcopy-lanes",
		.type = MFD__CFG_UINT,
		.def = "1",
		.min = 1,
		.max = 8,
		FIELD(postcopy_lanes),
		.doc = "Source, with postcopy: urgent connections that carry "
		       "the pages the destination's guest faults on, beside "
		       "the data channels.",
	},
	{
		.section = "migration",
		.name = "postcopy-after-rounds",
		.type = MFD__CFG_UINT,
		.def = "1",
		.min = 1,
		.max = 1000000,
		FIELD(postcopy_after_rounds),
		.doc = "Source, postcopy=auto: switch to post-copy after this "
		       "many pre-copy rounds without convergence. 1: after the "
		       "first full pass, as libvirt's "
		       "--postcopy-after-precopy; each further round sends "
		       "the dirty set once more (trade-off: docs/config.md, "
		       "Choosing postcopy-after-rounds).",
	},
	{
		.section = "migration",
		.name = "max-postcopy-bandwidth",
		.type = MFD__CFG_UINT,
		.size = true,
		.def = "0",
		.min = 0,
		.max = 1ULL << 40,
		FIELD(max_postcopy_bandwidth),
		.doc = "Source: bytes per second the data channels together "
		       "may send after the post-copy switch (0 = unlimited); "
		       "the urgent lanes are never limited.",
	},
	{
		.section = "migration",
		.name = "postcopy-pacing",
		.type = MFD__CFG_BOOL,
		.def = "on",
		.min = 0,
		.max = 1,
		FIELD(postcopy_pacing),
		.doc = "Source: after the post-copy switch, pace the data "
		       "channels (SO_MAX_PACING_RATE) at what the urgent lanes "
		       "leave of 95 % of the link (max-postcopy-bandwidth, "
		       "else the rate pre-copy measured; not with "
		       "max-bandwidth set), so that an answer to a "
		       "fault does not queue behind their bytes on this "
		       "host. Sockets only.",
	},
	{
		.section = "migration",
		.name = "postcopy-bulk-nice",
		.type = MFD__CFG_UINT,
		.def = "0",
		.min = 0,
		.max = 19,
		FIELD(postcopy_bulk_nice),
		.doc = "Both sides: after the post-copy switch, the data "
		       "channels' threads run at this nice value (never "
		       "raised; 0 = as they are), so that the threads on a "
		       "page request's path (fault thread, urgent lanes) get "
		       "the CPU before them. Where the CPU is short the bulk "
		       "then sends slower and the guest faults more (see "
		       "docs/config.md).",
	},
	{
		.section = "migration",
		.name = "postcopy-urgent-priority",
		.type = MFD__CFG_UINT,
		.def = "1",
		.min = 0,
		.max = 99,
		FIELD(postcopy_urgent_priority),
		.doc = "Both sides: the threads on a post-copy page "
		       "request's path (the destination's fault thread, each "
		       "urgent lane's thread on both sides) run SCHED_FIFO at "
		       "this priority while they serve requests, so that a "
		       "fault's page does not wait for a busy CPU. Needs "
		       "CAP_SYS_NICE or RLIMIT_RTPRIO; without it, or at 0, "
		       "they ask for a short fair-class slice instead. A "
		       "thread the embedder gave a policy keeps it.",
	},
	{
		.section = "migration",
		.name = "announce-initial",
		.type = MFD__CFG_MS,
		.def = "50ms",
		.min = 0,
		.max = 100000,
		FIELD(announce_initial_ms),
		.doc = "Destination: delay from the guest running to the first "
		       "round of self-announcement frames (QEMU's "
		       "announce-initial).",
	},
	{
		.section = "migration",
		.name = "announce-max",
		.type = MFD__CFG_MS,
		.def = "550ms",
		.min = 0,
		.max = 100000,
		FIELD(announce_max_ms),
		.doc = "Destination: longest delay between two announcement "
		       "rounds.",
	},
	{
		.section = "migration",
		.name = "announce-rounds",
		.type = MFD__CFG_UINT,
		.def = "5",
		.min = 0,
		.max = 1000,
		FIELD(announce_rounds),
		.doc = "Destination: announcement rounds after the guest runs "
		       "(one frame per MAC address each, or one call of the "
		       "announce hook); 0 sends none.",
	},
	{
		.section = "migration",
		.name = "announce-step",
		.type = MFD__CFG_MS,
		.def = "100ms",
		.min = 1,
		.max = 10000,
		FIELD(announce_step_ms),
		.doc = "Destination: each delay between announcement rounds is "
		       "this much longer than the one before (up to "
		       "announce-max).",
	},
	{ .name = NULL },
};

/* Longest part of a rejected value echoed in a message. */
#define ECHO_MAX 40

/* The value as it may appear on one line: printable, bounded. */
static void echo(char out[ECHO_MAX + 4], const char *value)
{
	size_t n;

	for (n = 0; n < ECHO_MAX && value[n]; n++) {
		unsigned char c = (unsigned char)value[n];

		out[n] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	if (value[n]) {
		memcpy(out + n, "...", 3);
		n += 3;
	}
	out[n] = 0;
}

/* "1..64", "100ms..600000ms" or "on/off". */
static void range_text(char *out, size_t outlen, const struct mfd__cfg_key *k)
{
	switch (k->type) {
	case MFD__CFG_BOOL:
		snprintf(out, outlen, "on/off");
		break;
	case MFD__CFG_ENUM: {
		size_t n = 0;

		out[0] = 0;
		for (unsigned i = 0; k->choices[i] && n < outlen; i++)
			n += (size_t)snprintf(out + n, outlen - n, "%s%s",
					      i ? "/" : "", k->choices[i]);
		break;
	}
	case MFD__CFG_MS:
		snprintf(out, outlen, "%" PRIu64 "ms..%" PRIu64 "ms", k->min,
			 k->max);
		break;
	case MFD__CFG_STR:
		snprintf(out, outlen, "0..%" PRIu64 " bytes", k->max);
		break;
	default:
		snprintf(out, outlen, "%s%" PRIu64 "..%" PRIu64,
			 k->or_zero ? "0 or " : "", k->min, k->max);
		break;
	}
}

/* What a value of k looks like, for messages. */
static void expect_text(char *out, size_t outlen, const struct mfd__cfg_key *k)
{
	char range[64];

	range_text(range, sizeof(range), k);
	switch (k->type) {
	case MFD__CFG_BOOL:
		snprintf(out, outlen, "on/off, true/false, yes/no or 1/0");
		break;
	case MFD__CFG_ENUM:
		snprintf(out, outlen, "one of %s", range);
		break;
	case MFD__CFG_STR:
		snprintf(out, outlen, "printable text of %s", range);
		break;
	case MFD__CFG_MS:
		snprintf(out, outlen,
			 "a whole number of ms, or with an ms or s suffix, in "
			 "%s",
			 range);
		break;
	default:
		snprintf(out, outlen, "a decimal integer%s in %s",
			 k->size ? " with optional K/M/G suffix," : "", range);
		break;
	}
}

enum bad {
	BAD_EMPTY = 1,
	BAD_NEGATIVE,
	BAD_SYNTAX,
	BAD_OVERFLOW,
	BAD_RANGE,
};

static int reject(const struct mfd__cfg_key *k, const char *value, enum bad why,
		  char *err, size_t errlen)
{
	char v[ECHO_MAX + 4], range[64], expect[160];

	if (!err || !errlen)
		return MFD_ECONFIG;
	echo(v, value);
	range_text(range, sizeof(range), k);
	expect_text(expect, sizeof(expect), k);
	switch (why) {
	case BAD_EMPTY:
		snprintf(err, errlen, "%s: empty value (expected %s)", k->name,
			 expect);
		break;
	case BAD_NEGATIVE:
		snprintf(err, errlen, "%s: \"%s\" is negative (expected %s)",
			 k->name, v, expect);
		break;
	case BAD_OVERFLOW:
		snprintf(err, errlen, "%s: \"%s\" is too large (expected %s)",
			 k->name, v, expect);
		break;
	case BAD_RANGE:
		snprintf(err, errlen, "%s: %s is out of range %s", k->name, v,
			 range);
		break;
	default:
		snprintf(err, errlen, "%s: \"%s\" is not %s (expected %s)",
			 k->name, v,
			 k->type == MFD__CFG_BOOL   ? "a boolean"
			 : k->type == MFD__CFG_ENUM ? "a known value"
						    : "valid",
			 expect);
		break;
	}
	return MFD_ECONFIG;
}

/*
 * Leading decimal digits of s into *out; *end points past them.
 * 0, -EINVAL when there is no digit, -ERANGE on overflow.
 */
static int parse_digits(const char *s, uint64_t *out, const char **end)
{
	uint64_t v = 0;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*out = v;
	*end = p;
	return 0;
}

static int mul_checked(uint64_t *v, uint64_t m)
{
	if (*v > UINT64_MAX / m)
		return -ERANGE;
	*v *= m;
	return 0;
}

/* Number and suffix of a UINT or MS value; 0 or an enum bad. */
static int parse_number(const struct mfd__cfg_key *k, const char *value,
			uint64_t *out)
{
	const char *end;
	uint64_t v;
	int ret;

	if (value[0] == '-')
		return BAD_NEGATIVE;
	ret = parse_digits(value, &v, &end);
	if (ret == -ERANGE)
		return BAD_OVERFLOW;
	if (ret)
		return BAD_SYNTAX;

	if (k->type == MFD__CFG_MS) {
		if (!strcmp(end, "s"))
			ret = mul_checked(&v, 1000);
		else if (*end && strcmp(end, "ms"))
			return BAD_SYNTAX;
	} else if (*end) {
		uint64_t m;

		if (!k->size || end[1])
			return BAD_SYNTAX;
		switch (end[0]) {
		case 'K':
		case 'k':
			m = 1ULL << 10;
			break;
		case 'M':
		case 'm':
			m = 1ULL << 20;
			break;
		case 'G':
		case 'g':
			m = 1ULL << 30;
			break;
		default:
			return BAD_SYNTAX;
		}
		ret = mul_checked(&v, m);
	}
	if (ret)
		return BAD_OVERFLOW;
	*out = v;
	return 0;
}

static int parse_bool(const char *value, uint64_t *out)
{
	static const char *const yes[] = { "on", "true", "yes", "1" };
	static const char *const no[] = { "off", "false", "no", "0" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcasecmp(value, yes[i])) {
			*out = 1;
			return 0;
		}
		if (!strcasecmp(value, no[i])) {
			*out = 0;
			return 0;
		}
	}
	return BAD_SYNTAX;
}

static int parse_enum(const struct mfd__cfg_key *k, const char *value,
		      uint64_t *out)
{
	for (unsigned i = 0; k->choices[i]; i++) {
		if (!strcasecmp(value, k->choices[i])) {
			*out = i;
			return 0;
		}
	}
	return BAD_SYNTAX;
}

static int store(struct mfd_config *cfg, const struct mfd__cfg_key *k,
		 uint64_t v)
{
	char *p = (char *)cfg + k->offset;

	switch (k->width) {
	case 1: {
		uint8_t x = (uint8_t)v;

		memcpy(p, &x, 1);
		return 0;
	}
	case 4: {
		uint32_t x = (uint32_t)v;

		memcpy(p, &x, 4);
		return 0;
	}
	case 8:
		memcpy(p, &v, 8);
		return 0;
	}
	return MFD_ECONFIG;
}

static uint64_t load(const struct mfd_config *cfg, const struct mfd__cfg_key *k)
{
	const char *p = (const char *)cfg + k->offset;

	switch (k->width) {
	case 1: {
		uint8_t x;

		memcpy(&x, p, 1);
		return x;
	}
	case 4: {
		uint32_t x;

		memcpy(&x, p, 4);
		return x;
	}
	case 8: {
		uint64_t x;

		memcpy(&x, p, 8);
		return x;
	}
	}
	return 0;
}

/* Text: empty means unset; no control characters, which would end up in
 * log lines. */
static int parse_str(struct mfd_config *cfg, const struct mfd__cfg_key *k,
		     const char *value, char *err, size_t errlen)
{
	size_t n = strlen(value);

	if (n > k->max || n >= k->width)
		return reject(k, value, BAD_RANGE, err, errlen);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f)
			return reject(k, value, BAD_SYNTAX, err, errlen);
	memset((char *)cfg + k->offset, 0, k->width);
	memcpy((char *)cfg + k->offset, value, n);
	return 0;
}

int mfd__config_parse(struct mfd_config *cfg, const struct mfd__cfg_key *k,
		      const char *value, char *err, size_t errlen)
{
	uint64_t v = 0;
	int bad;

	if (!k || !value) {
		if (err && errlen)
			snprintf(err, errlen, "%s: %s", k ? k->name : "(null)",
				 k ? "no value" : "unknown key");
		return MFD_ECONFIG;
	}
	if (k->type == MFD__CFG_PATH) {
		/* Any bytes; checked when the file is opened. */
		size_t n = strlen(value);

		if (n > k->max || n >= k->width) {
			if (err && errlen)
				snprintf(err, errlen,
					 "%s: path longer than %llu bytes",
					 k->name, (unsigned long long)k->max);
			return MFD_ECONFIG;
		}
		memcpy((char *)cfg + k->offset, value, n + 1);
		return 0;
	}
	if (k->type == MFD__CFG_STR)
		return parse_str(cfg, k, value, err, errlen);
	if (!value[0])
		return reject(k, value, BAD_EMPTY, err, errlen);
	if (k->type == MFD__CFG_BOOL)
		bad = parse_bool(value, &v);
	else if (k->type == MFD__CFG_ENUM)
		bad = parse_enum(k, value, &v);
	else
		bad = parse_number(k, value, &v);
	if (bad)
		return reject(k, value, (enum bad)bad, err, errlen);
	if ((v < k->min || v > k->max) && !(v == 0 && k->or_zero))
		return reject(k, value, BAD_RANGE, err, errlen);
	if (store(cfg, k, v)) {
		if (err && errlen)
			snprintf(err, errlen, "%s: bad field width %zu",
				 k->name, k->width);
		return MFD_ECONFIG;
	}
	return 0;
}

void mfd__config_defaults(struct mfd_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	/* The defaults are strings in the table, parsed like any value;
	 * tests/test_config.c checks that each one parses. */
	for (const struct mfd__cfg_key *k = mfd__cfg_keys; k->name; k++)
		(void)mfd__config_parse(cfg, k, k->def, NULL, 0);
}

const struct mfd__cfg_key *mfd__config_find(const char *key)
{
	const char *dot, *name = key;
	size_t seclen = 0;

	if (!key)
		return NULL;
	dot = strchr(key, '.');
	if (dot) {
		seclen = (size_t)(dot - key);
		name = dot + 1;
	}
	for (const struct mfd__cfg_key *k = mfd__cfg_keys; k->name; k++) {
		if (strcmp(k->name, name))
			continue;
		if (dot && (strlen(k->section) != seclen ||
			    strncmp(k->section, key, seclen)))
			continue;
		return k;
	}
	return NULL;
}

int mfd_config_new(mfd_config **out)
{
	struct mfd_config *cfg;

	if (!out)
		return -EINVAL;
	cfg = malloc(sizeof(*cfg));
	if (!cfg)
		return -ENOMEM;
	mfd__config_defaults(cfg);
	*out = cfg;
	return 0;
}

void mfd_config_free(mfd_config *cfg)
{
	free(cfg);
}

int mfd_config_set(mfd_config *cfg, const char *key, const char *value)
{
	return mfd_config_set_err(cfg, key, value, NULL, 0);
}

int mfd_config_set_err(mfd_config *cfg, const char *key, const char *value,
		       char *err, size_t errlen)
{
	const struct mfd__cfg_key *k;
	char v[ECHO_MAX + 4];

	if (err && errlen)
		err[0] = 0;
	if (!cfg)
		return -EINVAL;
	k = mfd__config_find(key);
	if (!k) {
		if (err && errlen) {
			echo(v, key ? key : "(null)");
			snprintf(err, errlen, "unknown key \"%s\"", v);
		}
		return MFD_ECONFIG;
	}
	return mfd__config_parse(cfg, k, value, err, errlen);
}

int mfd_config_get(const mfd_config *cfg, const char *key, char *buf,
		   size_t len)
{
	const struct mfd__cfg_key *k;
	uint64_t v;
	int n;

	if (!cfg)
		return -EINVAL;
	k = mfd__config_find(key);
	if (!k)
		return -ENOENT;
	if (!buf || !len)
		return -ENOSPC;
	if (k->type == MFD__CFG_PATH) {
		const char *p = (const char *)cfg + k->offset;

		if (strnlen(p, k->width) >= len) {
			buf[0] = 0;
			return -ENOSPC;
		}
		snprintf(buf, len, "%s", p);
		return 0;
	}
	v = k->type == MFD__CFG_STR ? 0 : load(cfg, k);
	switch (k->type) {
	case MFD__CFG_STR:
		n = snprintf(buf, len, "%.*s", (int)k->width,
			     (const char *)cfg + k->offset);
		break;
	case MFD__CFG_ENUM:
		n = snprintf(buf, len, "%s", v <= k->max ? k->choices[v] : "?");
		break;
	case MFD__CFG_BOOL:
		n = snprintf(buf, len, "%s", v ? "on" : "off");
		break;
	case MFD__CFG_MS:
		n = snprintf(buf, len, "%" PRIu64 "ms", v);
		break;
	default:
		n = snprintf(buf, len, "%" PRIu64, v);
		break;
	}
	if (n < 0 || (size_t)n >= len) {
		buf[0] = 0; /* no truncated value that reads as valid */
		return -ENOSPC;
	}
	return 0;
}

static const char *type_name(const struct mfd__cfg_key *k)
{
	switch (k->type) {
	case MFD__CFG_BOOL:
		return "bool";
	case MFD__CFG_MS:
		return "time";
	case MFD__CFG_ENUM:
		return "enum";
	case MFD__CFG_PATH:
		return "path";
	case MFD__CFG_STR:
		return "text";
	default:
		return k->size ? "size" : "uint";
	}
}

int mfd_config_key(unsigned index, mfd_config_key_info *info, size_t size)
{
	mfd_config_key_info out;
	const struct mfd__cfg_key *k;

	if (!info)
		return -EINVAL;
	for (unsigned i = 0; i < index; i++)
		if (!mfd__cfg_keys[i].name)
			return -ENOENT;
	k = &mfd__cfg_keys[index];
	if (!k->name)
		return -ENOENT;
	memset(&out, 0, sizeof(out));
	out.section = k->section;
	out.name = k->name;
	out.type = type_name(k);
	out.def = k->def;
	out.doc = k->doc;
	out.min = k->or_zero ? 0 : k->min;
	out.max = k->max;
	range_text(out.range, sizeof(out.range), k);
	memcpy(info, &out, size < sizeof(out) ? size : sizeof(out));
	return 0;
}

/* ---- INI files (inih) ---- */

struct ini_load {
	struct mfd_config work; /* committed only when the whole file is good */
	FILE *f;
	const char *path;
	unsigned line;	    /* line of the text handed to inih last */
	unsigned next_line; /* line the next read starts on */
	int err;	    /* first error, 0 so far */
	char *msg;
	size_t msglen;
};

/*
 * fgets() that counts lines, so that the handler knows where it is: inih
 * calls the handler while it processes the text it read last. A line
 * longer than inih's buffer arrives in pieces; only a piece ending in a
 * newline starts a new line.
 */
static char *ini_reader_fn(char *str, int num, void *stream)
{
	struct ini_load *l = stream;
	char *r = fgets(str, num, l->f);
	size_t n;

	if (!r)
		return NULL;
	/* Indented lines are ordinary lines here, not inih's multi-line
	 * continuations (no key takes a multi-line value). */
	if (l->line != l->next_line) {
		size_t ws = strspn(r, " \t");

		memmove(r, r + ws, strlen(r + ws) + 1);
	}
	l->line = l->next_line;
	n = strlen(r);
	if (n && r[n - 1] == '\n')
		l->next_line++;
	return r;
}

static void __attribute__((format(printf, 2, 3)))
ini_fail(struct ini_load *l, const char *fmt, ...)
{
	char reason[512];
	va_list ap;

	if (l->err)
		return; /* the first error is the one reported */
	l->err = MFD_ECONFIG;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (l->msg && l->msglen)
		snprintf(l->msg, l->msglen, "%s:%u: %s", l->path, l->line,
			 reason);
}

static int ini_handler_fn(void *user, const char *section, const char *name,
			  const char *value)
{
	struct ini_load *l = user;
	const struct mfd__cfg_key *k = NULL;
	char sec[ECHO_MAX + 4], key[ECHO_MAX + 4], reason[384];

	echo(sec, section);
	echo(key, name);
	if (!section[0]) {
		k = mfd__config_find(name);
		ini_fail(l, "%s: key outside a section (put it under [%s])",
			 key, k ? k->section : "a section");
		return 0;
	}
	for (const struct mfd__cfg_key *c = mfd__cfg_keys; c->name; c++)
		if (!strcmp(c->section, section) && !strcmp(c->name, name))
			k = c;
	if (!k) {
		ini_fail(l, "unknown key %s.%s", sec, key);
		return 0;
	}
	if (mfd__config_parse(&l->work, k, value, reason, sizeof(reason))) {
		ini_fail(l, "%s", reason);
		return 0;
	}
	return 1;
}

static int ini_syntax_only(void *user, const char *section, const char *name,
			   const char *value)
{
	return 1;
}

int mfd_config_load(mfd_config *cfg, const char *path, char *err, size_t errlen)
{
	struct ini_load l = {
		.path = path, .next_line = 1, .msg = err, .msglen = errlen
	};
	int ret;

	if (err && errlen)
		err[0] = 0;
	if (!cfg || !path)
		return -EINVAL;
	l.f = fopen(path, "re");
	if (!l.f) {
		ret = -errno;
		if (err && errlen)
			snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		return ret;
	}
	l.work = *cfg;
	/*
	 * inih goes on after a syntax error, so a first pass finds the first
	 * one before any value is judged: the error reported is always the
	 * first bad line of the file.
	 */
	ret = ini_parse_stream(ini_reader_fn, &l, ini_syntax_only, NULL);
	if (!ret && !ferror(l.f)) {
		rewind(l.f);
		l.line = 0;
		l.next_line = 1;
		ret = ini_parse_stream(ini_reader_fn, &l, ini_handler_fn, &l);
	}
	if (ferror(l.f) && !l.err) {
		l.err = -EIO;
		if (err && errlen)
			snprintf(err, errlen, "%s: read error", path);
	}
	fclose(l.f);
	if (ret > 0 && !l.err) {
		/* inih's own syntax error: no '=' or ':', or an unclosed [ */
		l.line = (unsigned)ret;
		ini_fail(&l,
			 "syntax error (expected [section] or key = value)");
	} else if (ret < 0 && !l.err) {
		l.err = -ENOMEM;
		if (err && errlen)
			snprintf(err, errlen, "%s: out of memory", path);
	}
	if (l.err)
		return l.err;
	*cfg = l.work;
	return 0;
}

struct mfd__chan_opts mfd__config_chan_opts(const struct mfd_config *cfg)
{
	struct mfd__chan_opts o = {
		.io_engine = cfg->io_engine,
		.tls = cfg->tls,
		.tls_ca = cfg->tls_ca,
		.tls_cert = cfg->tls_cert,
		.tls_key = cfg->tls_key,
		.tls_psk_file = cfg->tls_psk_file,
		.tls_hostname = cfg->tls_hostname,
		.tls_verify_peer = cfg->tls_verify_peer,
		.plain_magic = MFD_MAGIC_HELLO,
		.plain_hello_len = MFD_HELLO_SIZE,
		.plain_reply_len = MFD_HELLO_REPLY_SIZE,
	};
	/* A plaintext source on a TLS listener learns MFD_ETLS. */
	struct mfd__hello_reply r = { .magic = MFD_MAGIC_HELLO,
				      .version = MFD_PROTO_VERSION,
				      .status = 1,
				      .error = MFD_ETLS };
	_Static_assert(MFD_HELLO_SIZE <= MFD__CHAN_PLAIN_MAX &&
			       MFD_HELLO_REPLY_SIZE <= MFD__CHAN_PLAIN_MAX,
		       "the plaintext refusal fits the channel options");
	mfd__hello_reply_encode(&r, o.plain_reply);
	return o;
}
