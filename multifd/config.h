/* SPDX-License-Identifier: MIT */
/*
 * Configuration: one table of keys (config.c) drives parsing, defaults,
 * range checks and docs/config.md. The engine reads the typed struct.
 */
#ifndef MULTIFD_CONFIG_H
#define MULTIFD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multifd/multifd.h"
#include "multifd/channels/opts.h"

#define MFD_CFG_PATH_MAX 1024
/* Room for a path value, terminator included. */
#define MFD__CFG_PATH_MAX 512

struct mfd_config {
	uint32_t channels;	     /* data channels */
	uint32_t packet_pages;	     /* max pages per packet */
	bool verify;		     /* per-block digests at the end */
	uint32_t max_rounds;	     /* pre-copy rounds before switchover */
	uint64_t downtime_limit_ms;  /* switchover when expected <= this */
	uint64_t stop_cost_ms;	     /* declared stop hook cost, 0 = measure */
	uint32_t downtime_quantile;  /* percent: the budget's confidence */
	uint64_t connect_timeout_ms; /* connect + handshake */
	uint32_t max_pending;	     /* destination: connections before hello */
	uint64_t io_timeout_ms;	     /* a channel silent this long fails */
	bool degraded_channels;	     /* MFD_FEAT_DEGRADE: go on without one */
	uint64_t resume_timeout_ms;  /* MFD_FEAT_RESUME: paused this long */
	uint64_t close_timeout_ms; /* ERROR sent: wait for the peer to close */
	uint32_t compression;	   /* enum mfd__codec_id */
	uint32_t zstd_level;
	uint32_t zstd_long; /* window log, 0 = off */
	uint32_t io_engine; /* enum mfd__io_engine */
	bool direct_io;	    /* file: URIs: pages written with O_DIRECT */
	bool lazy_restore;  /* file: URIs: the guest runs before its pages */
	uint32_t file_hole_min; /* file: URIs: shortest zero run left a hole */
	char auth_key_file[MFD_CFG_PATH_MAX]; /* "" = no authentication */
	/* TLS (multifd/channels/tls.c); texts are "" when unset. */
	uint32_t tls;			  /* enum mfd__tls_mode */
	char tls_ca[MFD__CFG_PATH_MAX];	  /* CA bundle to verify the peer */
	char tls_cert[MFD__CFG_PATH_MAX]; /* own certificate chain (PEM) */
	char tls_key[MFD__CFG_PATH_MAX];  /* own private key (PEM) */
	char tls_psk_file[MFD__CFG_PATH_MAX];
	char tls_hostname[256];	     /* name the source checks; "" = URI host */
	bool tls_verify_peer;	     /* destination requires a client cert */
	uint32_t dirty_tracker;	     /* enum mfd__tracker_kind */
	uint64_t max_bandwidth;	     /* bytes/s before switchover, 0 = any */
	bool auto_converge;	     /* throttle the guest when needed */
	bool dirty_limit;	     /* throttle only the fast vCPUs */
	uint32_t vcpu_dirty_limit;   /* MB/s per vCPU under dirty-limit */
	uint32_t throttle_initial;   /* percent */
	uint32_t throttle_increment; /* percent per step */
	uint32_t throttle_max;	     /* percent */
	uint32_t throttle_threshold; /* dirty > this % of sent: too fast */
	uint64_t precopy_timeout_ms; /* 0 = none */
	uint32_t timeout_policy;     /* enum mfd__timeout_policy */
	/* Device state (multifd/devsave.c, devload.c). */
	uint32_t device_transfer;   /* enum mfd__dev_transfer_cfg */
	uint64_t device_buffer_max; /* destination reorder bound, bytes */
	uint32_t device_chunk_size; /* source chunk bytes */
	uint32_t dest_prefault;	    /* enum mfd__prefault_cfg */
	/* Post-copy (multifd/postcopy_src.c, postcopy_dst.c). */
	uint32_t postcopy; /* enum mfd__postcopy_mode (converge.h) */
	uint32_t postcopy_lanes;
	uint32_t postcopy_after_rounds;
	uint64_t max_postcopy_bandwidth; /* bytes/s after the switch, 0 = any */
	bool postcopy_pacing; /* pace the data channels after the switch */
	uint32_t postcopy_bulk_nice;	   /* data channels' threads after it */
	uint32_t postcopy_urgent_priority; /* request path's SCHED_FIFO */
	/* Destination self-announcement (multifd/announce.c). */
	uint64_t announce_initial_ms; /* before round 1 */
	uint64_t announce_max_ms;     /* longest delay between rounds */
	uint32_t announce_rounds;
	uint64_t announce_step_ms; /* each delay grows by this */
};

enum mfd__prefault_cfg {
	MFD__PREFAULT_OFF = 0,
	MFD__PREFAULT_AHEAD = 1, /* ramblock/prefault.c */
};

enum mfd__dev_transfer_cfg {
	MFD__DEVXFER_MAIN = 0,	  /* DEVICE_DATA on the main channel */
	MFD__DEVXFER_MULTIFD = 1, /* DEVICE packets over the data channels */
};

enum mfd__timeout_policy {
	MFD__POLICY_FORCE = 0,	/* switch over anyway */
	MFD__POLICY_CANCEL = 1, /* stop migrating, the guest runs on */
};

enum mfd__cfg_type {
	MFD__CFG_UINT, /* integer, optional K/M/G suffix when .size */
	MFD__CFG_BOOL,
	MFD__CFG_MS,   /* time: plain number = ms, or "ms"/"s" suffix */
	MFD__CFG_ENUM, /* one of .choices, stored as its index (uint32) */
	MFD__CFG_PATH, /* file name, stored as given; "" = none; max = length */
	MFD__CFG_STR,  /* text of at most .max bytes; "" = unset */
};

struct mfd__cfg_key {
	const char *section;
	const char *name;
	enum mfd__cfg_type type;
	bool size; /* accepts K/M/G (powers of 1024) */
	const char *def;
	uint64_t min, max;
	bool or_zero;  /* 0 (off) is valid too, outside [min, max] */
	size_t offset; /* in struct mfd_config */
	size_t width;  /* sizeof the field */
	const char *doc;
	const char *const *choices; /* MFD__CFG_ENUM: names, NULL-terminated */
};

/* The table, terminated by an entry with name == NULL. */
extern const struct mfd__cfg_key mfd__cfg_keys[];

/* Fills cfg with every default. */
void mfd__config_defaults(struct mfd_config *cfg);
/* Finds "key" or "section.key"; NULL when unknown. */
const struct mfd__cfg_key *mfd__config_find(const char *key);
/*
 * Parses value for k into cfg. On error returns MFD_ECONFIG and, when err
 * is non-NULL, writes a one-line reason (e.g. "channels: 99 is out of range
 * 1..64").
 */
int mfd__config_parse(struct mfd_config *cfg, const struct mfd__cfg_key *k,
		      const char *value, char *err, size_t errlen);

/* The channels' options under cfg: the one place the engine hands its
 * config to the channels. Texts point into cfg. */
struct mfd__chan_opts mfd__config_chan_opts(const struct mfd_config *cfg);

#endif /* MULTIFD_CONFIG_H */
