/* SPDX-License-Identifier: MIT */
/*
 * libmultifd: the transport layer of virtual-machine live migration.
 *
 * A hypervisor embeds this library to move guest RAM from a source host to a
 * destination host over N parallel channels while the guest keeps running.
 *
 * Conventions (they hold for every call in this header):
 *  - Every function that can fail returns 0 or a negative errno, or one of
 *    the negative MFD_E* protocol codes below. mfd_strerror() gives the text.
 *  - Constructors return their handle through an out-parameter; *_free()
 *    accepts NULL.
 *  - When a call that starts asynchronous work returns an error, none of the
 *    hooks of that work will be called.
 *
 * Threading:
 *  - A handle (mfd_source, mfd_dest, mfd_config) is driven by one thread at
 *    a time: the hypervisor's "migration control" thread. The exceptions are
 *    named: mfd_source_mark_dirty(), mfd_*_get_stats() and mfd_*_cancel()
 *    may be called from any thread at any time while the handle lives.
 *  - Hooks are called from the library's own migration thread, never from
 *    inside a call of the hypervisor, and never concurrently with each other
 *    for one handle. The exceptions are named: the in-doubt resolutions
 *    (mfd_source_reclaim() calls resume, mfd_dest_run() loaded,
 *    mfd_dest_discard() failed) run the hook inside the call, on the
 *    caller's thread, after the migration thread has ended.
 *
 * Ownership:
 *  - Guest memory registered with *_add_block() stays owned by the
 *    hypervisor; it must stay mapped until the handle is freed. The library
 *    reads source memory and writes destination memory, nothing else.
 *  - Strings passed in are copied; pointers passed out (mfd_strerror) are
 *    static.
 */
#ifndef MULTIFD_MULTIFD_H
#define MULTIFD_MULTIFD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MFD_BUILDING_LIBRARY)
#define MFD_API __attribute__((visibility("default")))
#else
#define MFD_API
#endif

#define MFD_VERSION_MAJOR 0
#define MFD_VERSION_MINOR 1
#define MFD_VERSION_PATCH 0
#define MFD_VERSION_NUMBER                                                     \
	(MFD_VERSION_MAJOR * 10000 + MFD_VERSION_MINOR * 100 +                 \
	 MFD_VERSION_PATCH)

/* Run-time version of the library, as MFD_VERSION_NUMBER. */
MFD_API int mfd_version(void);

/*
 * Protocol and engine errors. Each is returned negated (-1001 ...); system
 * errors are returned as -errno. The X-macro keeps names, codes and texts in
 * one place.
 */
#define MFD_ERRNO_MAP(XX)                                                      \
	XX(BADMAGIC, 1001, "bad magic number (not a multifd peer?)")           \
	XX(VERSION, 1002, "unsupported protocol version")                      \
	XX(ROLE, 1003, "unexpected channel role or channel index")             \
	XX(SESSION, 1004, "channel belongs to another migration session")      \
	XX(BLOCK, 1005, "RAM block index out of range")                        \
	XX(OFFSET, 1006,                                                       \
	   "page offset unaligned, out of range or not increasing")            \
	XX(COUNT, 1007, "page count exceeds the negotiated maximum")           \
	XX(LENGTH, 1008, "length field inconsistent with the message")         \
	XX(TYPE, 1009, "unknown message type")                                 \
	XX(ROUND, 1010, "round or sequence number out of order")               \
	XX(SETUP, 1011,                                                        \
	   "SETUP refused: RAM layouts or migration parameters differ")        \
	XX(VERIFY, 1012, "verification digest mismatch")                       \
	XX(REMOTE, 1013, "the peer reported an error")                         \
	XX(FEATURE, 1014, "peer requested an unsupported feature")             \
	XX(TRUNCATED, 1015, "connection closed in the middle of a message")    \
	XX(CONFIG, 1016, "invalid configuration value")                        \
	XX(URI, 1017, "malformed or unsupported URI")                          \
	XX(STATE, 1018, "call not valid in the current migration state")       \
	XX(FLAGS, 1019, "reserved field or flag not zero")                     \
	XX(HOOK, 1020, "a hypervisor hook reported failure")                   \
	XX(COMPRESS, 1021,                                                     \
	   "compressed payload corrupt or not of the announced size")          \
	XX(DEVICE, 1022, "device index out of range or device state invalid")  \
	XX(AUTH, 1023,                                                         \
	   "authentication failed (wrong or missing key, or replayed)")        \
	XX(TLS, 1024, "TLS failed: handshake, peer not trusted or bad record") \
	XX(NOCONVERGE, 1025,                                                   \
	   "pre-copy did not converge (max-rounds or precopy-timeout) and "    \
	   "timeout-policy is cancel")                                         \
	XX(UNEXPECTED, 1026,                                                   \
	   "message not allowed here (known type, out of the grammar or in "   \
	   "the wrong direction)")                                             \
	XX(BARRIER, 1027,                                                      \
	   "a data channel did not reach the round barrier within io-timeout") \
	XX(DEVBUFFER, 1028,                                                    \
	   "no room in the device reorder buffer within io-timeout")           \
	XX(DRAIN, 1029,                                                        \
	   "the data channels did not all end (DONE) within io-timeout after " \
	   "END")                                                              \
	XX(INDOUBT, 1030,                                                      \
	   "handover in doubt: the connection broke between LOADED and the "   \
	   "end of COMMIT; the embedder decides where the guest runs")         \
	XX(LOSTGUEST, 1031,                                                    \
	   "guest lost: the migration failed after the post-copy switch; "     \
	   "the guest's memory is neither complete on the destination nor "    \
	   "resumable here")

enum {
#define MFD__XX_ENUM(name, code, text) MFD_E##name = -(code),
	MFD_ERRNO_MAP(MFD__XX_ENUM)
#undef MFD__XX_ENUM
};

/* Text for any return code of this library (static, never NULL). */
MFD_API const char *mfd_strerror(int err);

/*
 * Diagnostics. The library reports what went wrong in three ways: the
 * return code; the first failure's full reason, kept with the handle
 * (mfd_source_error_text(), mfd_dest_error_text()); and log lines.
 *
 * By default log lines go to stderr, one write per line, as
 * "multifd: LEVEL: text", for levels up to $MFD_LOG (a number; default
 * MFD_LOG_WARN). mfd_set_log(fn, opaque, level) sends every line of a level
 * up to level (MFD_LOG_ERROR ... MFD_LOG_DEBUG) to fn instead, without the
 * prefix and without a newline; then the library writes nothing to stderr.
 * mfd_set_log(NULL, NULL, level) returns to stderr with that level (a
 * negative level: $MFD_LOG or the default).
 *
 * The setting is process-wide (the library is linked once per process).
 * fn may be called from any of the library's threads, concurrently, while
 * a handle lives; msg is valid for the call only. fn must not call back
 * into the library. Set it before the first handle is created, or at a
 * time no migration runs: a line being logged while it changes may still
 * reach the previous sink.
 */
enum {
	MFD_LOG_ERROR = 0, /* a migration failed, or a peer was refused */
	MFD_LOG_WARN = 1,  /* something degraded or fell back */
	MFD_LOG_INFO = 2,  /* choices made (tracker, throttle) */
	MFD_LOG_DEBUG = 3  /* per round */
};
typedef void (*mfd_log_fn)(void *opaque, int level, const char *msg);
MFD_API void mfd_set_log(mfd_log_fn fn, void *opaque, int level);

/*
 * Configuration: every key lives in one table in the library; docs/config.md
 * lists them with type, default, range and meaning. Values are strings:
 * sizes accept K/M/G suffixes, times ms/s, booleans on/off/true/false/1/0.
 * Keys may be written "key" or "section.key".
 */
typedef struct mfd_config mfd_config;

MFD_API int mfd_config_new(mfd_config **out);
MFD_API void mfd_config_free(mfd_config *cfg);
/* Returns MFD_ECONFIG for an unknown key, a bad value or one out of range. */
MFD_API int mfd_config_set(mfd_config *cfg, const char *key, const char *value);
/* Writes the effective value as text; -ENOENT for an unknown key. */
MFD_API int mfd_config_get(const mfd_config *cfg, const char *key, char *buf,
			   size_t len);
/*
 * As mfd_config_set(), and on error writes one line saying why to err
 * (when err is non-NULL), e.g. "channels: 99 is out of range 1..64".
 */
MFD_API int mfd_config_set_err(mfd_config *cfg, const char *key,
			       const char *value, char *err, size_t errlen);
/*
 * Loads an INI file (parsed with inih): "[section]" lines select the
 * section of the keys that follow, "key = value" lines set them, lines
 * starting with ';' or '#' are comments, as is "; ..." after a value. Every
 * key must be under its own section (docs/config.md). Later lines win over
 * earlier ones, and anything set before the call stays unless the file
 * sets it: load the file first, then apply command-line settings, for the
 * precedence defaults < file < command line.
 *
 * The file is applied completely or not at all. Returns 0; -errno when it
 * cannot be read; MFD_ECONFIG for an unknown key, a key outside its
 * section, a bad or out-of-range value, or a syntax error. Then err (when
 * non-NULL) holds one line naming the file and line of the first error:
 * "vm.ini:7: channels: 99 is out of range 1..64".
 */
MFD_API int mfd_config_load(mfd_config *cfg, const char *path, char *err,
			    size_t errlen);

/* One key of the table, for listing keys and their effective values. */
typedef struct mfd_config_key_info {
	const char *section; /* "migration", ... (static strings) */
	const char *name;    /* "channels", ... */
	const char *type;    /* "uint", "size", "bool", "time" or "enum" */
	const char *def;     /* the default, as mfd_config_get() prints it */
	const char *doc;     /* one-line meaning */
	uint64_t min, max;   /* range; milliseconds for time, 0..1 for bool */
	char range[64];	     /* "1..64", "100ms..600000ms" or "on/off" */
} mfd_config_key_info;

/*
 * Describes key number index (0, 1, ... in table order) into info; size is
 * sizeof(*info) as the caller knows it (the struct only grows at its end).
 * Returns -ENOENT past the last key: loop until then.
 */
MFD_API int mfd_config_key(unsigned index, mfd_config_key_info *info,
			   size_t size);

/* Phases of a migration, as reported in mfd_stats.phase. */
enum mfd_phase {
	MFD_PHASE_NONE = 0,
	MFD_PHASE_SETUP,      /* connecting, handshake, block list */
	MFD_PHASE_PRECOPY,    /* rounds while the guest runs */
	MFD_PHASE_SWITCHOVER, /* guest stopped: final pages, end, verify */
	MFD_PHASE_COMPLETED,
	MFD_PHASE_FAILED,
	MFD_PHASE_CANCELLED,
	MFD_PHASE_INDOUBT, /* handover broke: waits for the embedder (below) */
	/* Post-copy switch made: the guest runs on the destination, which
	 * pulls the pages it misses; the source never resumes it. */
	MFD_PHASE_POSTCOPY,
	/* Resumable pre-copy: the connections broke; both sides keep their
	 * state for resume-timeout (the source's guest runs on) until
	 * mfd_source_resume() reconnects, else the migration fails. */
	MFD_PHASE_PAUSED,
	/* Post-copy, after the switch (QEMU's postcopy-paused): a connection
	 * broke; the guest runs on the destination, whose threads that fault
	 * on a missing page wait; both sides keep their state for
	 * resume-timeout until mfd_source_resume() reconnects, else the guest
	 * is lost (MFD_ELOSTGUEST). The source never resumes the guest. */
	MFD_PHASE_POSTCOPY_PAUSED,
};

MFD_API const char *mfd_phase_name(int phase);

/*
 * Statistics of one migration, on either side. Read them at any time from
 * any thread with mfd_source_get_stats() / mfd_dest_get_stats(). Times are
 * nanoseconds; a part that has not happened yet reads 0. The struct only
 * grows at its end: callers pass sizeof(their struct).
 */
typedef struct mfd_stats {
	int phase;		/* enum mfd_phase */
	int error;		/* 0, or the error that ended the migration */
	uint32_t round;		/* current (or last) round, 0-based */
	uint32_t channels;	/* data channels in use */
	uint64_t ram_bytes;	/* total size of registered RAM */
	uint64_t wire_bytes;	/* bytes sent (source) or received (dest) */
	uint64_t pages;		/* pages sent / loaded, all rounds */
	uint64_t zero_pages;	/* pages sent / loaded as zero pages */
	uint64_t packets;	/* page packets */
	uint64_t pending_bytes; /* dirty bytes not yet sent (source) */
	uint64_t setup_ns;	/* start until the first page may go out */
	uint64_t transfer_ns;	/* start of round 0 until all pages landed */
	uint64_t total_ns;	/* start until completion or failure */
	uint64_t downtime_ns;	/* stop hook until loaded acknowledgement */
	uint64_t verify_ns;	/* block digests from the page digests
				   after the stop (this side): the final
				   round's chunks (overlapped with the
				   transfer's tail) and END's pass; the page
				   digests are taken by the workers, in
				   cpu_ns */
	uint64_t bandwidth_bps; /* bytes/s measured in the last round */
	/* Compression (0 without it). compressed_bytes: payload bytes of
	 * compressed packets; compress_in_bytes: page bytes that went into
	 * them (ratio = in / compressed); compress_ns: thread CPU time spent
	 * compressing (source) or decompressing (destination), all channels. */
	uint64_t compressed_bytes;
	uint64_t compress_in_bytes;
	uint64_t compress_ns;
	/* CPU time (user + system) of this side's library threads, added as
	 * each ends: complete once the migration has ended. Counted: source
	 * migration thread, send workers, return-path thread; destination
	 * loader thread, receive workers, device loader threads (with
	 * verify, the workers' page digests). Not counted: the RDMA
	 * transport's completion poller (one per channel, inside the
	 * transport, which does not see the stats). Hooks run on the
	 * migration thread and count with it. */
	uint64_t cpu_ns;
	/* Downtime in parts, which add up to downtime_ns (source): */
	uint64_t down_sync_ns;	       /* stop hook and final dirty sync */
	uint64_t down_pages_ns;	       /* until the last page left */
	uint64_t down_end_ns;	       /* end marker and digests sent */
	uint64_t down_ack_ns;	       /* until the destination's LOADED */
	uint64_t expected_downtime_ns; /* estimate at the last decision;
					  >= UINT64_MAX / 8: none (no timed
					  round yet) */
	uint64_t dirty_rate_bps;       /* guest dirtying, last round */
	uint32_t throttle_pct;	       /* throttle now applied (0 = none) */
	uint32_t throttle_max_pct;     /* highest throttle applied */
	int tracker;		       /* dirty tracker running: 0 manual,
					  1 uffd-wp */
	uint32_t forced; /* 1: switched over unconverged (timeout-policy
			    force at max-rounds or precopy-timeout) */
	/* Time spent registering guest RAM with the transport (RDMA memory
	 * regions, every channel's); 0 for transports without. */
	uint64_t register_ns;
	/* Device state (include/multifd/device.h). device_bytes: state
	 * bytes sent (source) or applied (destination), all phases.
	 * device_downtime_ns: source, from STOP_COPY until all device state
	 * was sent; destination, from the last ROUND (the switchover) until
	 * every device was loaded and in STOP. */
	uint64_t device_bytes;
	uint64_t device_downtime_ns;
	/* Destination, multifd device transfer: the most bytes the reorder
	 * buffer held (<= device-buffer-max) and how many times a channel
	 * waited for room (back-pressure). */
	uint64_t device_buffer_peak;
	uint64_t device_buffer_waits;
	/* Source, with compression: pages sent uncompressed because they
	 * looked incompressible (random or already compressed data), in
	 * packets of their own; also counted in pages. */
	uint64_t raw_pages;
	/*
	 * Source: the switchover estimate in parts, as predicted at the last
	 * decision (they add up to expected_downtime_ns), beside what was
	 * measured. expected_stop_ns: the stop hook (stop-cost, else its
	 * last measured call); _sync_ns: the devices' arcs to STOP_COPY
	 * (get_stop_cost, else their slowest arc timed) and the final dirty
	 * sync (the last round's); _ram_ns: the pending pages at the predicted
	 * bandwidth and the last round's packet mix; _device_ns: the devices'
	 * stop-copy size at that bandwidth; _end_ns: the end exchange (round
	 * trip, digests with verify). down_stop_ns: the measured stop hook
	 * (part of down_sync_ns). over_part: enum mfd_down_part, the part that
	 * made the estimate exceed downtime-limit at the last decision (0:
	 * none).
	 */
	uint64_t expected_stop_ns;
	uint64_t expected_sync_ns;
	uint64_t expected_ram_ns;
	uint64_t expected_device_ns;
	uint64_t expected_end_ns;
	uint64_t down_stop_ns;
	uint32_t over_part;
	/*
	 * Source, the downtime measured in the estimate's parts: stop is
	 * down_stop_ns, sync the rest of down_sync_ns, ram down_pages_ns,
	 * device down_device_ns (after the last page left until the last
	 * device chunk left; 0 when the device state was out first), end
	 * the rest (down_end_ns + down_ack_ns - down_device_ns).
	 * overrun_part: when downtime_ns exceeded downtime-limit, the part
	 * whose measurement exceeded its expected_*_ns by the most (enum
	 * mfd_down_part; 0: within the limit).
	 */
	uint64_t down_device_ns;
	uint32_t overrun_part;
	/* Source: the estimate at the budget's quantile (downtime-quantile),
	 * what the last decision held against downtime-limit: the transfer
	 * parts stretched by the errors the estimator made on this
	 * migration's rounds (>= expected_downtime_ns, which stays the
	 * estimate itself). */
	uint64_t expected_downtime_q_ns;
	/* Source, dirty-limit: vCPUs throttled now, and the highest
	 * per-vCPU throttle applied. */
	uint32_t vcpus_throttled;
	uint32_t vcpu_throttle_max_pct;
	/*
	 * Post-copy (postcopy = manual | auto). postcopy_round: the round
	 * the switch began (0: no switch). Source: urgent_pages sent on the
	 * urgent lanes in answer to page requests (neighbours included),
	 * urgent_requests read, lane_bytes the bytes of all urgent lanes
	 * (the data channels' are wire_bytes minus these; the destination
	 * counts the same). Destination: faults of the guest's threads, page
	 * requests sent, their latency (request to placement; p50 and p99
	 * are upper bounds of log-linear buckets, within 1 us below 16 us
	 * and 12.5 % above; max exact) and
	 * blocktime, the time the guest's threads spent waiting for pages.
	 * downtime_ns in post-copy: on the source, the stop to SWITCH sent;
	 * on the destination, SWITCH read to postcopy_run returned (the two
	 * add up to the guest's downtime less half a round trip).
	 * postcopy_ns: the switch to the end (source: LOADED read;
	 * destination: the last page placed).
	 */
	uint32_t postcopy_round;
	uint64_t urgent_pages;
	uint64_t urgent_requests;
	uint64_t lane_bytes;
	uint64_t faults;
	uint64_t page_requests;
	uint64_t latency_p50_ns;
	uint64_t latency_p99_ns;
	uint64_t latency_max_ns;
	uint64_t blocktime_ns;
	uint64_t postcopy_ns;
	/* Data channels dropped in pre-copy (degraded-channels): their
	 * unacknowledged pages were re-sent on the others. Both sides. */
	uint32_t channels_lost;
	/* Resumable pre-copy: how often the migration was resumed; source:
	 * bytes of the pages it took in the rounds the destination had not
	 * applied when the connections broke (in flight), and of those the
	 * destination did not hold whole, which went again. */
	uint32_t resumes;
	uint64_t resume_bytes;
	uint64_t resume_inflight_bytes;
	/* Source, post-copy: of urgent_pages, those asked for that a data
	 * channel had taken already and an urgent lane sent again (the
	 * data channel's copy was still on its way; the destination keeps
	 * the first to arrive). */
	uint64_t urgent_again_pages;
	/* Post-copy, both sides: threads on the page-request path (urgent
	 * lanes' on both sides, the destination's fault thread) started so
	 * far that ran SCHED_FIFO (postcopy-urgent-priority); 0 where the
	 * key is 0 or the process may not (then they ask for a short
	 * slice). */
	uint32_t urgent_rt_threads;
} mfd_stats;

/* The parts of the downtime estimate (mfd_stats.over_part,
 * mfd_round_stats.over_part). */
enum mfd_down_part {
	MFD_DOWN_NONE = 0,
	MFD_DOWN_STOP,	 /* the stop hook */
	MFD_DOWN_SYNC,	 /* the final dirty sync */
	MFD_DOWN_RAM,	 /* the pending pages */
	MFD_DOWN_DEVICE, /* the devices' stop-copy state */
	MFD_DOWN_END,	 /* end marker, digests, LOADED */
};

/* "none", "stop", "sync", "ram", "device", "end"; "?" out of range. */
MFD_API const char *mfd_down_part_name(int part);

/*
 * One pre-copy round on the source (the last record is the final pass
 * after the stop hook). Dirty figures are those found by the dirty sync at
 * the end of the round. Grows only at its end, as mfd_stats.
 */
typedef struct mfd_round_stats {
	uint32_t round;
	uint32_t throttle_pct;	       /* throttle in force during the round */
	uint64_t pages;		       /* pages sent in the round */
	uint64_t bytes;		       /* bytes that left in the round */
	uint64_t ns;		       /* duration */
	uint64_t bandwidth_bps;	       /* bytes / duration */
	uint64_t dirty_pages;	       /* dirty at the sync that ended it */
	uint64_t dirty_rate_bps;       /* dirty bytes / time since last sync */
	uint64_t expected_downtime_ns; /* the estimate's total (below) */
	uint64_t dirty_bytes;	       /* dirty at the sync that ended it */
	uint64_t sync_ns;	       /* the dirty sync that ended it */
	uint64_t device_stop_bytes;    /* devices' stop-copy size then */
	/* The estimate made at the end of the round, in parts (as in
	 * mfd_stats), and the part over downtime-limit (enum mfd_down_part,
	 * 0 when it fit). */
	uint64_t expected_stop_ns;
	uint64_t expected_sync_ns;
	uint64_t expected_ram_ns;
	uint64_t expected_device_ns;
	uint64_t expected_end_ns;
	uint32_t over_part;
	/* Bytes sent into the channels that had not left the host when the
	 * round ended (socket send queues); bytes above counts only what
	 * left during the round. */
	uint64_t unsent_bytes;
	/* The round's device phase, before its pages (pre-copy rounds): the
	 * device state's bytes (counted in bytes too) and the time it took
	 * (counted in ns). The rest is the page phase, whose rate the
	 * estimate uses. */
	uint64_t device_bytes;
	uint64_t device_ns;
	/* The estimate at downtime-quantile made at the end of the round
	 * (mfd_stats.expected_downtime_q_ns). */
	uint64_t expected_downtime_q_ns;
	/* What the scheduler says of the page phase (the channel workers
	 * and the migration thread; 0 where the kernel has no schedstats):
	 * their CPU time and the time they waited, runnable, for a CPU,
	 * summed, and how many threads were read. A round whose threads
	 * waited for the CPU the running guest held goes faster once it is
	 * stopped. sync_cpu_ns: the CPU time of a second dirty sync run
	 * right after the one that ended the round (what the sync at the
	 * stop, a moment after the decision, costs), without the sync_dirty
	 * hook, which is asked once a round: its time in the first sync is
	 * added; in the final pass's record, the CPU time of the sync at
	 * the stop. */
	uint64_t page_cpu_ns;
	uint64_t page_wait_ns;
	uint32_t page_threads;
	uint64_t sync_cpu_ns;
	/* The round's tail (pre-copy rounds, issue 18): tail_bytes, what
	 * the socket send queues held (SIOCOUTQ: not yet acknowledged) when
	 * the round's last packet left the workers; tail_ns, from that last
	 * packet's write to the destination's ROUND answer for the round
	 * (its barrier passed: every byte of the round read and placed), 0
	 * when no answer came before the next round ended; dest_ns, the
	 * destination's own part of that, from its barrier to the answer
	 * (MFD_FEAT_ROUND_COST); dest_end_ns, the END work the destination
	 * expects beyond a barrier (its devices' arcs out of RESUMING). What
	 * the end exchange after the final pass waits for, measured on this
	 * migration's link and destination. */
	uint64_t tail_bytes;
	uint64_t tail_ns;
	uint64_t dest_ns;
	uint64_t dest_end_ns;
	/* The device phase's run-queue wait, as page_wait_ns (the same
	 * threads): the device state's own pace, less the CPU the running
	 * guest held. */
	uint64_t device_wait_ns;
	/* The device phase as the migration thread, which saves the
	 * devices one after the other, spent it: its CPU time, and the
	 * time it waited for room in the channels' queues (the link held
	 * it back). What else its wall time holds, the final pass with the
	 * guest stopped does not pay: waiting for a CPU, and blocked behind
	 * the running guest's page-table work (uffd-wp's write faults). */
	uint64_t device_cpu_ns;
	uint64_t device_full_ns;
} mfd_round_stats;

/*
 * The two-phase handover (docs/protocol.md 7.6): the destination sends
 * LOADED with the guest still paused; the source answers COMMIT, after
 * which it never resumes the guest; the destination then runs the guest
 * (its loaded hook) and answers COMMITTED. A break in this exchange that
 * leaves a side unable to know where the guest may run puts that side in
 * MFD_PHASE_INDOUBT: its wait returns MFD_EINDOUBT, its in_doubt hook is
 * called with what it knows, and it keeps the guest paused until the
 * embedder decides with the calls below. Neither side decides alone:
 *
 *  side   what it knows when the connection breaks      outcome
 *  -----  --------------------------------------------  ----------------
 *  src    before END was sent, or an ERROR came back     failed, resumes
 *  src    END sent, no LOADED (timeout, break)           failed, resumes:
 *         (COMMIT never sent, so the destination         the destination
 *         cannot run the guest on its own)               is in-doubt or
 *                                                        failed
 *  src    LOADED read, COMMIT sent or being sent, no     in-doubt
 *         COMMITTED (break, timeout, an ERROR)
 *  src    COMMITTED read                                 completed
 *  dst    before LOADED was sent                         failed, discards
 *  dst    LOADED sent, then an ERROR from the source     failed, discards
 *  dst    LOADED sent (or being sent), no COMMIT         in-doubt
 *         (break, io-timeout)
 *  dst    COMMIT read                                    runs (loaded hook),
 *                                                        COMMITTED sent
 *
 * Who may decide an in-doubt side: the embedder (or its management
 * layer), knowing both sides' mfd_handover. The rule: the destination may
 * run only if the source does not and never will (source committed:
 * abandon it; or source in-doubt: abandon it first); the source may
 * reclaim only if the destination has not run and never will (destination
 * failed or in-doubt: discard it first). A source that resumed (failed)
 * means the destination must be discarded; a destination that read
 * COMMIT runs, so an in-doubt source must be abandoned.
 */
typedef struct mfd_handover {
	int in_doubt;	    /* 1 while the embedder must decide */
	uint32_t loaded;    /* source: read LOADED; dest: sent LOADED */
	uint32_t commit;    /* source: sent COMMIT; dest: read COMMIT */
	uint32_t committed; /* source: read COMMITTED; dest: sent it */
	int cause;	    /* what broke the exchange (0 if nothing) */
} mfd_handover;

/* ------------------------------------------------------------------ */
/* Source                                                             */
/* ------------------------------------------------------------------ */

typedef struct mfd_source mfd_source;

/*
 * Hooks into the hypervisor. Called from the migration thread. Return 0, or
 * a negative value to fail the migration (reported as MFD_EHOOK).
 */
typedef struct mfd_source_hooks {
	void *opaque;
	/* Required: pause the vCPUs (and the guest's writers) for switchover.
	 */
	int (*stop)(void *opaque);
	/* Required: resume the vCPUs after a failed or cancelled migration
	 * that had stopped them. Never called after success. */
	int (*resume)(void *opaque);
	/* Optional: slow the guest to percent (0 = no throttle): let the
	 * vCPUs run only (100 - percent)% of the time, as QEMU's
	 * cpu-throttle does. Called by auto-converge with growing values,
	 * and with 0 when the migration ends (whatever the outcome). */
	int (*throttle)(void *opaque, int percent);
	/*
	 * Optional: the hypervisor's own dirty log (e.g. a KVM dirty bitmap).
	 * Called for every block at every dirty sync; OR the pages written
	 * since the last call into bitmap (bit i of word i/64 = page i of the
	 * block, npages bits). Pages may also be reported at any time with
	 * mfd_source_mark_dirty().
	 */
	int (*sync_dirty)(void *opaque, unsigned block, uint64_t *bitmap,
			  uint64_t npages);
	/*
	 * Optional: the handover broke after LOADED (see mfd_handover); the
	 * guest stays stopped until mfd_source_abandon() or
	 * mfd_source_reclaim(). Called once, just before mfd_source_wait()
	 * returns MFD_EINDOUBT; *h is valid during the call.
	 */
	void (*in_doubt)(void *opaque, const mfd_handover *h);
	/*
	 * Optional, dirty-limit: slow vCPU vcpu alone to percent (0 = none),
	 * as throttle() does for all. Called after a dirty sync for the vCPUs
	 * whose dirty rate (pages in the ranges of mfd_source_set_vcpu_range)
	 * is above vcpu-dirty-limit, with values that bring it there, and
	 * with 0 for each throttled vCPU when the migration ends.
	 */
	int (*throttle_vcpu)(void *opaque, unsigned vcpu, int percent);
	/*
	 * Optional, post-copy: the switch is made (SWITCH sent): the guest,
	 * stopped here, now runs on the destination and is never resumed
	 * here, whatever happens next: resume() is not called after this.
	 * A failure after it ends the migration with MFD_ELOSTGUEST (the
	 * cause in mfd_stats.error and mfd_source_error_text()), unless a
	 * broken connection pauses it (paused(), below) and a resume
	 * completes it.
	 */
	void (*postcopy)(void *opaque);
	/*
	 * Optional, resumable pre-copy (resume-timeout): the connections
	 * broke with cause (a negative code) and the migration is paused:
	 * the guest runs on here, dirty tracking goes on, and
	 * mfd_source_resume() may reconnect within resume-timeout; after it
	 * the migration fails as any other (mfd_source_wait()). After the
	 * post-copy switch the same (phase MFD_PHASE_POSTCOPY_PAUSED), but
	 * the guest stays stopped here and runs on the destination; without
	 * a resume in time it is lost (MFD_ELOSTGUEST). Called from the
	 * migration thread, once per pause.
	 */
	void (*paused)(void *opaque, int cause);
} mfd_source_hooks;

/* The config is copied; hooks are copied. */
MFD_API int mfd_source_new(mfd_source **out, const mfd_config *cfg,
			   const mfd_source_hooks *hooks);
/* Waits for (and cancels) a running migration first. */
MFD_API void mfd_source_free(mfd_source *src);

/*
 * Register guest RAM before starting. page_size is a power of two from
 * 4 KiB to 1 GiB; size a multiple of it; name unique, 1-255 bytes. Block
 * indices are given in registration order from 0. The destination must
 * register the same names and sizes in the same order.
 */
MFD_API int mfd_source_add_block(mfd_source *src, const char *name, void *host,
				 uint64_t size, uint32_t page_size);

/*
 * Report guest writes: pages [offset, offset+len) of block are dirty.
 * Thread-safe, lock-free, callable from the guest's own threads.
 */
MFD_API int mfd_source_mark_dirty(mfd_source *src, unsigned block,
				  uint64_t offset, uint64_t len);

/* vCPUs dirty-limit can tell apart (vcpu < MFD_MAX_VCPUS). */
#define MFD_MAX_VCPUS 256

/*
 * Dirty-limit's attribution: vCPU vcpu is the one that writes the pages
 * [offset, offset+len) of block (a guest whose vCPUs own memory ranges,
 * as the bench's writers do; a hypervisor with a per-vCPU dirty log, such
 * as the KVM dirty ring, gives each vCPU the ranges it wrote since the
 * last sync). Pages dirty at a sync count for every vCPU whose range
 * holds them, whichever tracker found them. Before mfd_source_start();
 * a vCPU may own several ranges. -EINVAL for a bad vcpu, block or range,
 * -ENOSPC past 4096 ranges, MFD_ESTATE while migrating.
 */
MFD_API int mfd_source_set_vcpu_range(mfd_source *src, unsigned vcpu,
				      unsigned block, uint64_t offset,
				      uint64_t len);

/*
 * Start migrating to uri ("tcp:HOST:PORT"). Returns once the migration
 * thread runs; errors while connecting are reported by mfd_source_wait().
 */
MFD_API int mfd_source_start(mfd_source *src, const char *uri);
/* Wait for the end of the migration: 0 on success, else the error. On any
 * error but MFD_EINDOUBT the guest runs on at the source (the resume hook
 * was called if the stop hook had been). MFD_EINDOUBT: the guest stays
 * stopped, the handle in MFD_PHASE_INDOUBT, until the embedder calls
 * mfd_source_abandon() or mfd_source_reclaim(). */
MFD_API int mfd_source_wait(mfd_source *src);
/*
 * In-doubt resolution (the table at mfd_handover), on the control thread
 * after mfd_source_wait() returned MFD_EINDOUBT; MFD_ESTATE otherwise.
 * abandon: the guest belongs to the destination now; the source never
 * resumes it (phase COMPLETED, error 0, devices told "completed").
 * reclaim: the guest runs here again: devices back to running, then the
 * resume hook, called inside this call on the caller's thread (phase
 * FAILED, error MFD_EINDOUBT). Returns 0, or MFD_EHOOK when resume failed.
 * Freeing an in-doubt handle decides nothing: the guest stays stopped.
 */
MFD_API int mfd_source_abandon(mfd_source *src);
MFD_API int mfd_source_reclaim(mfd_source *src);
/* What the source knows of the handover (any thread). size = sizeof(*h). */
MFD_API int mfd_source_get_handover(mfd_source *src, mfd_handover *h,
				    size_t size);
/*
 * Post-copy with postcopy = manual or auto (QEMU's migrate-start-postcopy):
 * asks the migration to switch to post-copy now: the current pre-copy
 * round ends where it is, and what the workers had queued but not begun
 * to send is taken back (it, and what the round had not reached, is sent
 * after the switch), unless pre-copy converges first. Any thread. 0,
 * MFD_ESTATE when no migration runs or the postcopy key is off.
 */
MFD_API int mfd_source_start_postcopy(mfd_source *src);
/*
 * Resumable pre-copy (QEMU's `migrate -r` / resume=true): reconnects a
 * paused migration (MFD_PHASE_PAUSED) to uri, the destination's listener
 * (the same URI as before, or another path to it, e.g. through a new
 * link). The new connections carry the session id of the first and
 * authenticate as it did (auth key, TLS); the destination sends what it
 * holds and pre-copy goes on. Waits until the destination accepted or
 * refused (each connection bounded by connect-timeout, the bitmap by
 * io-timeout). 0: pre-copy runs again. The same in
 * MFD_PHASE_POSTCOPY_PAUSED (post-copy, after the switch): the destination
 * says what it holds, and post-copy goes on with the pages it lacks and
 * the requests its guest waits for. A refusal (MFD_ESESSION: not the
 * session the destination waits for; MFD_EAUTH: the key) or a failed
 * connection leaves the migration paused: call again until
 * resume-timeout has passed. MFD_ESTATE when not paused. Any thread but
 * the hooks'.
 */
MFD_API int mfd_source_resume(mfd_source *src, const char *uri);
/* Start and wait. */
MFD_API int mfd_source_migrate(mfd_source *src, const char *uri);
/* Ask the migration to stop; mfd_source_wait() then returns -ECANCELED
 * (or 0 if it had already completed). MFD_ESTATE, and no effect, in
 * MFD_PHASE_POSTCOPY and MFD_PHASE_POSTCOPY_PAUSED: the guest runs on the
 * destination and needs the rest of its pages. Any thread. */
MFD_API int mfd_source_cancel(mfd_source *src);
/* Any thread. size = sizeof(*st) as the caller knows it. */
MFD_API int mfd_source_get_stats(mfd_source *src, mfd_stats *st, size_t size);
/*
 * The full reason of the first failure of the current or last migration,
 * e.g. "destination reported: destination: SETUP refused: ...: block 0:
 * ...", a TLS or connection failure, or a configuration error of
 * mfd_source_start(); "" while nothing failed. It is the text the library
 * logged at the failure (or, where it logged none, mfd_strerror() of the
 * code), so it says more than the code mfd_source_wait() returns. Any
 * thread; the text stays valid and unchanged until the next
 * mfd_source_start() or mfd_source_free().
 */
MFD_API const char *mfd_source_error_text(mfd_source *src);
/*
 * Record of round i (0-based) of the current or last migration; -ENOENT
 * when round i has not ended (yet). Any thread. size = sizeof(*rec).
 */
MFD_API int mfd_source_get_round(mfd_source *src, unsigned i,
				 mfd_round_stats *rec, size_t size);

/* ------------------------------------------------------------------ */
/* Destination                                                        */
/* ------------------------------------------------------------------ */

typedef struct mfd_dest mfd_dest;

typedef struct mfd_dest_hooks {
	void *opaque;
	/*
	 * Optional: run the guest here. All RAM (and device state) is in
	 * place and verified, and the source has committed (COMMIT read):
	 * it will never resume the guest. Called from the loader thread
	 * after COMMIT, or inside mfd_dest_run() after an in-doubt handover.
	 * (Before the two-phase handover it was called at LOADED; an
	 * embedder that resumed the guest here needs no change.) When this
	 * returns 0 the library answers COMMITTED and starts the
	 * announcement (below and multifd/announce.h); a negative return
	 * fails the load with MFD_EHOOK and the source stays in-doubt.
	 */
	int (*loaded)(void *opaque);
	/* (A lazy restore from a file, lazy-restore = on, calls loaded()
	 * before the pages are here, as postcopy_run() below: the memory
	 * is registered with userfaultfd and a guest thread that touches a
	 * page not yet read waits for it; a failure after it is
	 * MFD_ELOSTGUEST.) */
	/* Optional: the incoming migration failed with err; never resume. */
	void (*failed)(void *opaque, int err);
	/*
	 * Optional: announce round (0-based) of the guest's new location,
	 * for a hypervisor that does it itself (e.g. virtio-net's
	 * VIRTIO_NET_F_GUEST_ANNOUNCE). When set, the library calls it
	 * announce-rounds times on the announce-* schedule instead of sending
	 * the frames of mfd_dest_set_announce(). It is called from the
	 * library's announcement thread, after loaded() returned 0, while
	 * mfd_dest_wait() may already have returned: the exception to
	 * "Hooks are called from the migration thread" above; it is never
	 * called concurrently with another hook of the handle. A negative
	 * return ends the rounds (mfd_dest_announce_wait(): MFD_EHOOK); the
	 * migration has succeeded regardless.
	 */
	int (*announce)(void *opaque, unsigned round);
	/*
	 * Optional: LOADED was sent but no COMMIT (nor an ERROR) came back
	 * (see mfd_handover); the guest stays paused until mfd_dest_run()
	 * or mfd_dest_discard(). Called once from the loader thread, just
	 * before mfd_dest_wait() returns MFD_EINDOUBT.
	 */
	void (*in_doubt)(void *opaque, const mfd_handover *h);
	/*
	 * Post-copy (the source's postcopy key): run the guest now, at the
	 * switch, before all of its memory is here. Every block is
	 * registered with userfaultfd: a guest thread that touches a page
	 * not yet here waits until it is placed (the library requests it).
	 * Called from the loader thread; required when the source may switch
	 * (a session with post-copy is refused without it, MFD_EFEATURE). In
	 * post-copy loaded() is not called: the guest runs already; LOADED,
	 * COMMIT and COMMITTED still end the migration (docs/protocol.md
	 * 10.3). After a failure that follows this call the guest's memory
	 * is incomplete: failed() gets MFD_ELOSTGUEST and the embedder must
	 * stop the guest; its threads waiting for a page stay blocked (the
	 * registration stays until mfd_dest_free()).
	 */
	int (*postcopy_run)(void *opaque);
	/*
	 * Optional, resumable pre-copy (resume-timeout): the connections
	 * broke with cause and the load is paused: this side keeps what it
	 * received and waits on its listener for the source's resume, at
	 * most resume-timeout, then fails (failed()). After the post-copy
	 * switch the same (MFD_PHASE_POSTCOPY_PAUSED): the guest runs on
	 * here, its threads that fault on a missing page wait for the
	 * resume; without one, failed(MFD_ELOSTGUEST). Called from the
	 * loader thread, once per pause.
	 */
	void (*paused)(void *opaque, int cause);
} mfd_dest_hooks;

MFD_API int mfd_dest_new(mfd_dest **out, const mfd_config *cfg,
			 const mfd_dest_hooks *hooks);
MFD_API void mfd_dest_free(mfd_dest *dst);
/* Same rules as mfd_source_add_block(); the memory should be zero-filled
 * (fresh anonymous memory is). */
MFD_API int mfd_dest_add_block(mfd_dest *dst, const char *name, void *host,
			       uint64_t size, uint32_t page_size);
/*
 * Bind and listen on uri ("tcp:HOST:PORT"; port 0 picks a free port), then
 * accept and load one incoming migration in the library's thread.
 */
MFD_API int mfd_dest_start(mfd_dest *dst, const char *uri);
/* The URI actually bound (with the chosen port), after mfd_dest_start(). */
MFD_API int mfd_dest_get_uri(mfd_dest *dst, char *buf, size_t len);
/*
 * Wait until the incoming migration ends: 0 when loaded, else the error.
 * No watchdog is needed: once the source's main connection is admitted,
 * a source that stops making progress fails the load within io-timeout
 * (2 x io-timeout while the channels drain after END), and this returns
 * at most connect-timeout + close-timeout later (the ERROR sent, main
 * closed); docs/security.md states the bound. Before a main connection is
 * admitted it waits for one without a bound: mfd_dest_cancel() ends that.
 */
MFD_API int mfd_dest_wait(mfd_dest *dst);
/*
 * In-doubt resolution (the table at mfd_handover), on the control thread
 * after mfd_dest_wait() returned MFD_EINDOUBT; MFD_ESTATE otherwise.
 * run: the source has committed or been abandoned: the loaded hook runs
 * the guest (inside this call, on the caller's thread), then the
 * announcement starts (phase COMPLETED, error 0); MFD_EHOOK when the hook
 * failed (phase FAILED). discard: the guest must not run here (the source
 * resumed or was reclaimed): the failed hook is called with MFD_EINDOUBT
 * (phase FAILED).
 */
MFD_API int mfd_dest_run(mfd_dest *dst);
MFD_API int mfd_dest_discard(mfd_dest *dst);
/* What the destination knows of the handover (any thread). */
MFD_API int mfd_dest_get_handover(mfd_dest *dst, mfd_handover *h, size_t size);
/*
 * Cancels the incoming migration (any thread; 0, also when nothing runs).
 * After the post-copy switch too (phase postcopy or postcopy-paused): the
 * guest running here is given up, its memory incomplete (threads that
 * fault on a missing page stay blocked), and the source reports it lost
 * (MFD_ELOSTGUEST).
 */
MFD_API int mfd_dest_cancel(mfd_dest *dst);
MFD_API int mfd_dest_get_stats(mfd_dest *dst, mfd_stats *st, size_t size);
/* As mfd_source_error_text(), for the incoming migration: e.g. "setup
 * refused: ...: block 0: ..." when SETUP does not match the registered
 * blocks. Valid until mfd_dest_free(). */
MFD_API const char *mfd_dest_error_text(mfd_dest *dst);

/* ------------------------------------------------------------------ */
/* File images                                                        */
/* ------------------------------------------------------------------ */

/*
 * A source started on "file:PATH" saves the guest to the file PATH (made
 * or truncated; direct-io = on writes the pages with O_DIRECT), with the
 * same hooks, rounds and devices as a migration, and no peer: on success
 * the guest stays stopped, as after a migration; on failure it runs on
 * (resume hook). A destination started on "file:PATH" restores from it:
 * the image is checked against the registered blocks and devices and
 * every digest before the loaded hook runs the guest; a truncated,
 * incomplete, foreign or corrupt image fails the load with the reason in
 * mfd_dest_error_text(). The layout is docs/protocol.md section 11.
 */

/* One block of an image, as mfd_file_info() reads it. */
typedef struct mfd_file_block {
	char name[256];
	uint64_t size;
	uint32_t page_size;
	uint64_t bitmap_off; /* offsets in the file */
	uint64_t pages_off;
	uint64_t present;   /* pages written (the rest are holes: zero) */
	uint8_t digest[16]; /* block digest of its RAM (XXH3-128) */
	int bitmap_ok;	    /* 1: the bitmap matches its digest */
} mfd_file_block;

typedef struct mfd_file_info {
	uint32_t version;
	uint32_t nblocks;
	uint32_t ndevices;
	int complete;	    /* 1: the save ended (end record present) */
	uint64_t file_size; /* bytes, holes included */
	uint64_t allocated; /* bytes the file system holds for it */
	uint64_t header_len;
	uint64_t dev_off, dev_len;
	uint64_t end_off;
	mfd_file_block *blocks; /* nblocks of them */
} mfd_file_info;

/*
 * Reads the header, the end record and the bitmaps of the image at path
 * (not the pages) into *out (free with mfd_file_info_free()). 0; -errno
 * when it cannot be read; an image refused (bad magic, version, checksum,
 * truncated...) returns the code a restore would, with the reason in why
 * (when non-NULL). An image whose save did not complete is returned with
 * complete = 0 and no digests.
 */
MFD_API int mfd_file_info_read(const char *path, mfd_file_info **out, char *why,
			       size_t whylen);
MFD_API void mfd_file_info_free(mfd_file_info *info);

#ifdef __cplusplus
}
#endif

#endif /* MULTIFD_MULTIFD_H */
