/* SPDX-License-Identifier: MIT */
/*
 * Wire protocol v1: encode, decode and validate, as pure functions.
 * docs/protocol.md is the normative description; this file follows it.
 *
 * Every multi-byte field is little-endian and fixed-width. Decoders never
 * trust a length: they check it against what they were given and against
 * the negotiated limits before anything touches guest memory.
 */
#ifndef MULTIFD_WIRE_H
#define MULTIFD_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multifd/common/le.h"

#define MFD_PROTO_VERSION 1

#define MFD_MAGIC_HELLO 0x4844464dU /* "MFDH" */
#define MFD_MAGIC_CTL	0x4344464dU /* "MFDC" */
#define MFD_MAGIC_PKT	0x5044464dU /* "MFDP" */

/* Limits that hold for every peer of protocol v1. */
#define MFD_MAX_BLOCKS	     256
#define MFD_MAX_NAME	     255
#define MFD_MAX_CHANNELS     64
#define MFD_MAX_PACKET_PAGES 1024
#define MFD_MIN_PAGE_SIZE    4096U
#define MFD_MAX_PAGE_SIZE    (1U << 30)
#define MFD_MAX_CTL_PAYLOAD  (1U << 20)
#define MFD_MAX_ERROR_TEXT   512
#define MFD_DIGEST_SIZE	     16
/* Page digests per chunk digest of a block digest (5.5). */
#define MFD_DIGEST_CHUNK_PAGES 64

/* Feature bits, negotiated in the handshake. */
#define MFD_FEAT_VERIFY (1ULL << 0) /* per-block digests in END */
#define MFD_FEAT_ZSTD	(1ULL << 1) /* PAGES may carry zstd payloads */
/* Device state follows: DEVICES after SETUP, DEVICE packets or DEVICE_DATA
 * messages (multifd/devwire.h); devsave.c / devload.c. */
#define MFD_FEAT_DEVICES (1ULL << 2)
#define MFD_FEAT_AUTH	 (1ULL << 3) /* HMAC challenge-response (auth.h) */
/* Post-copy: urgent lanes, DISCARD, SWITCH, PAGE_REQ (multifd/pcwire.h,
 * protocol section 10). Excludes MFD_FEAT_VERIFY. */
#define MFD_FEAT_POSTCOPY (1ULL << 4)
/* Two-phase handover: LOADED, COMMIT, COMMITTED (docs/protocol.md 7.6).
 * Required by both sides: a peer without it is refused. */
#define MFD_FEAT_COMMIT (1ULL << 6)
/* Degraded channels: a data channel lost in pre-copy is dropped and its
 * pages re-sent on the others, both sides say so with CHAN_LOST
 * (docs/protocol.md 7.7; multifd/degrade.h). */
#define MFD_FEAT_DEGRADE (1ULL << 7)
/* Resumable pre-copy: both sides keep their state for resume-timeout when
 * the connections break; a RESUME connection of the same session gets the
 * destination's RECEIVED bitmap (docs/protocol.md 7.8; multifd/resume.h). */
#define MFD_FEAT_RESUME (1ULL << 8)
/* Round cost: the destination answers every pre-copy round's barrier with
 * ROUND, its u64 the time from that barrier to the answer (docs/protocol.md
 * 5.4): the source times its rounds' tails to predict the end exchange. */
#define MFD_FEAT_ROUND_COST (1ULL << 9)
/* Verify's END digests are XXH3-128 over 64-page chunk digests
 * (docs/protocol.md 5.5). Asked for with MFD_FEAT_VERIFY and required
 * with it: a peer with the flat digests of an older build is refused at
 * setup, not failed at END with MFD_EVERIFY. */
#define MFD_FEAT_VERIFY_CHUNKS (1ULL << 10)
#define MFD_FEATURES_KNOWN                                                     \
	(MFD_FEAT_VERIFY | MFD_FEAT_ZSTD | MFD_FEAT_AUTH | MFD_FEAT_DEVICES |  \
	 MFD_FEAT_POSTCOPY | MFD_FEAT_COMMIT | MFD_FEAT_DEGRADE |              \
	 MFD_FEAT_RESUME | MFD_FEAT_ROUND_COST | MFD_FEAT_VERIFY_CHUNKS)
/* What this engine implements: a destination refuses the rest of the known
 * features in the hello (MFD_EFEATURE). All of them now. */
#define MFD_FEATURES_OFFERED MFD_FEATURES_KNOWN

/* ---------------------------------------------------------------- */
/* Handshake: first bytes of every connection.                       */
/* ---------------------------------------------------------------- */

enum mfd__role {
	MFD_ROLE_MAIN = 1,
	MFD_ROLE_DATA = 2,
	MFD_ROLE_URGENT = 3, /* post-copy urgent lane (MFD_FEAT_POSTCOPY) */
	MFD_ROLE_RESUME = 4, /* main channel of a paused session (RESUME) */
};

/* Urgent lanes a session may open (SETUP postcopy_lanes). */
#define MFD_MAX_URGENT_LANES 8

#define MFD_HELLO_SIZE 40
struct mfd__hello {
	uint32_t magic;	  /* MFD_MAGIC_HELLO */
	uint16_t version; /* MFD_PROTO_VERSION */
	uint16_t role;	  /* enum mfd__role */
	uint16_t channel; /* data: 0..nchannels-1; main: 0 */
	uint16_t nchannels;
	uint32_t reserved; /* 0 */
	uint8_t session[16];
	uint64_t features;
};

#define MFD_HELLO_REPLY_SIZE 24
struct mfd__hello_reply {
	uint32_t magic;	  /* MFD_MAGIC_HELLO */
	uint16_t version; /* MFD_PROTO_VERSION */
	uint16_t status;  /* 0 accepted, 1 refused */
	int32_t error;	  /* 0 or the (negative) reason for refusal */
	uint32_t reserved;
	uint64_t features; /* features accepted */
};

void mfd__hello_encode(const struct mfd__hello *h, uint8_t out[MFD_HELLO_SIZE]);
/* Checks magic (MFD_EBADMAGIC), version (MFD_EVERSION), role and channel
 * against nchannels (MFD_EROLE; URGENT only with MFD_FEAT_POSTCOPY and a
 * channel below MFD_MAX_URGENT_LANES), reserved (MFD_EFLAGS), nchannels in
 * 1..MFD_MAX_CHANNELS (MFD_EROLE), unknown features, or VERIFY together
 * with POSTCOPY (MFD_EFEATURE). */
int mfd__hello_decode(const uint8_t in[MFD_HELLO_SIZE], struct mfd__hello *h);

void mfd__hello_reply_encode(const struct mfd__hello_reply *r,
			     uint8_t out[MFD_HELLO_REPLY_SIZE]);
/* Checks magic, version, status in {0,1}, reserved. */
int mfd__hello_reply_decode(const uint8_t in[MFD_HELLO_REPLY_SIZE],
			    struct mfd__hello_reply *r);

/* ---------------------------------------------------------------- */
/* Main channel control messages: 16-byte header + payload.          */
/* ---------------------------------------------------------------- */

enum mfd__ctl_type {
	MFD_CTL_SETUP = 1,	 /* src->dst: block list and parameters */
	MFD_CTL_SETUP_OK = 2,	 /* dst->src: empty payload */
	MFD_CTL_ROUND = 3,	 /* src->dst: a round ended */
	MFD_CTL_END = 4,	 /* src->dst: all pages sent, digests */
	MFD_CTL_LOADED = 5,	 /* dst->src: everything in place, verified */
	MFD_CTL_ERROR = 6,	 /* either way: the migration failed */
	MFD_CTL_DEVICES = 7,	 /* src->dst: device list (MFD_FEAT_DEVICES) */
	MFD_CTL_DEVICE_DATA = 8, /* src->dst: a device chunk, `main` mode */
	/* Post-copy (MFD_FEAT_POSTCOPY, multifd/pcwire.h). */
	MFD_CTL_DISCARD = 9,   /* src->dst: stale pre-copy pages to drop */
	MFD_CTL_SWITCH = 10,   /* src->dst: the destination runs the guest */
	MFD_CTL_PAGE_REQ = 11, /* dst->src on an urgent lane: a fault */
	/* Two-phase handover (MFD_FEAT_COMMIT), empty payloads. */
	MFD_CTL_COMMIT = 12,	/* src->dst: after LOADED; never resumes */
	MFD_CTL_COMMITTED = 13, /* dst->src: the guest runs here */
	/* Resume (MFD_FEAT_RESUME): dst->src, the received bitmap. */
	MFD_CTL_RECEIVED = 14,
	MFD_CTL_DISCARDED = 15, /* dst->src: a DISCARD applied (post-copy) */
	/* Degraded channels (MFD_FEAT_DEGRADE): either way, 8 bytes. */
	MFD_CTL_CHAN_LOST = 16,
};

#define MFD_CTL_HDR_SIZE 16
/* RECEIVED: 24 fixed bytes, then 8 per run (multifd/resume.h). */
#define MFD_RECEIVED_FIXED 24
struct mfd__ctl_hdr {
	uint32_t magic;	   /* MFD_MAGIC_CTL */
	uint16_t type;	   /* enum mfd__ctl_type */
	uint16_t flags;	   /* 0 */
	uint32_t length;   /* payload bytes that follow */
	uint32_t reserved; /* 0 */
};

void mfd__ctl_hdr_encode(const struct mfd__ctl_hdr *h,
			 uint8_t out[MFD_CTL_HDR_SIZE]);
/* Checks magic, known type, flags/reserved zero, and length against the
 * type: exact for fixed-size payloads, <= MFD_MAX_CTL_PAYLOAD otherwise. */
int mfd__ctl_hdr_decode(const uint8_t in[MFD_CTL_HDR_SIZE],
			struct mfd__ctl_hdr *h);

struct mfd__block_desc {
	char name[MFD_MAX_NAME + 1]; /* NUL-terminated */
	uint64_t size;
	uint32_t page_size;
};

struct mfd__setup {
	uint32_t nblocks;
	uint32_t packet_pages; /* max pages per packet, 1..MFD_MAX_PACKET_PAGES
				*/
	uint32_t nchannels;    /* 1..MFD_MAX_CHANNELS */
	/* zstd-long of the source: 0, or with MFD_FEAT_ZSTD a window log
	 * MFD_ZSTD_LONG_MIN..MFD_ZSTD_LONG_MAX (compress/codec.h). */
	uint32_t zstd_window_log;
	/* 1..MFD_MAX_URGENT_LANES with MFD_FEAT_POSTCOPY, else 0 (byte 13) */
	uint32_t postcopy_lanes;
	uint64_t features;
	struct mfd__block_desc *blocks; /* nblocks entries */
};

/* Returns the payload size setup needs. */
size_t mfd__setup_size(const struct mfd__setup *s);
/* Encodes into out (cap bytes); returns bytes written or -ENOSPC. */
int mfd__setup_encode(const struct mfd__setup *s, uint8_t *out, size_t cap);
/*
 * Decodes len bytes. blocks must have room for MFD_MAX_BLOCKS entries.
 * Checks: nblocks 1..MFD_MAX_BLOCKS, packet_pages, nchannels, the zstd
 * window log (with MFD_FEAT_ZSTD only), postcopy_lanes (1..8 with
 * MFD_FEAT_POSTCOPY, else 0), known features, each name 1..255 bytes
 * without NUL, unique names, page size a power of two in [4 KiB, 1 GiB], size a
 * non-zero multiple of page size, and that len is exactly consumed
 * (MFD_ELENGTH).
 */
int mfd__setup_decode(const uint8_t *in, size_t len, struct mfd__setup *s,
		      struct mfd__block_desc *blocks);

#define MFD_ROUND_SIZE 16
struct mfd__round {
	uint32_t round;
	uint32_t reserved;
	uint64_t pages; /* pages sent in this round */
};
void mfd__round_encode(const struct mfd__round *r, uint8_t out[MFD_ROUND_SIZE]);
int mfd__round_decode(const uint8_t in[MFD_ROUND_SIZE], struct mfd__round *r);

/*
 * ROUND from the destination (protocol 5.4, 7.7): the same 16 bytes. With
 * MFD_FEAT_ROUND_COST, end_us (bytes 4..7) is what the destination expects
 * its own END work to cost beyond the barrier (its devices' arcs out of
 * RESUMING), in microseconds, and cost_ns (bytes 8..15) its time from the
 * round's barrier to this answer, at most MFD_MAX_ROUND_COST_NS
 * (MFD_EFLAGS); without it both are 0 (MFD_EFLAGS).
 */
struct mfd__round_answer {
	uint32_t round;
	uint32_t end_us;
	uint64_t cost_ns;
};
#define MFD_MAX_ROUND_COST_NS (3600ULL * 1000000000ULL)
void mfd__round_answer_encode(const struct mfd__round_answer *a,
			      uint8_t out[MFD_ROUND_SIZE]);
int mfd__round_answer_decode(const uint8_t in[MFD_ROUND_SIZE], bool cost,
			     struct mfd__round_answer *a);

/*
 * CHAN_LOST (protocol 7.7): u16 channel, u16 reserved, u32 round. From the
 * destination, round is the last round whose SYNC it applied on that
 * channel (MFD_ROUND_NONE: none); from the source, the round it was
 * sending when it dropped the channel (informational).
 */
#define MFD_CHAN_LOST_SIZE 8
#define MFD_ROUND_NONE	   0xffffffffU
struct mfd__chan_lost {
	uint16_t channel;
	uint16_t reserved;
	uint32_t round;
};
void mfd__chan_lost_encode(const struct mfd__chan_lost *m,
			   uint8_t out[MFD_CHAN_LOST_SIZE]);
/* Checks reserved (MFD_EFLAGS) and channel < nchannels (MFD_EROLE). */
int mfd__chan_lost_decode(const uint8_t in[MFD_CHAN_LOST_SIZE],
			  uint32_t nchannels, struct mfd__chan_lost *m);

struct mfd__end {
	uint32_t final_round;
	uint32_t nblocks;
	uint64_t total_pages;		     /* all rounds, all channels */
	uint64_t total_packets;		     /* all rounds, all channels */
	uint8_t (*digests)[MFD_DIGEST_SIZE]; /* nblocks, or NULL (no verify) */
};
/* Payload: u32 final_round, u32 nblocks, u64 total_pages,
 * u64 total_packets, u32 has_digests, u32 reserved, then nblocks digests
 * when has_digests. */
size_t mfd__end_size(uint32_t nblocks, int with_digests);
int mfd__end_encode(const struct mfd__end *e, uint8_t *out, size_t cap);
/* digests must have room for MFD_MAX_BLOCKS; e->digests is set to it or
 * NULL when the message carries none. */
int mfd__end_decode(const uint8_t *in, size_t len, struct mfd__end *e,
		    uint8_t (*digests)[MFD_DIGEST_SIZE]);

struct mfd__error_msg {
	int32_t code; /* negative */
	char text[MFD_MAX_ERROR_TEXT + 1];
};
/* Payload: i32 code, u32 text length, text (no NUL). Text is truncated to
 * MFD_MAX_ERROR_TEXT. */
int mfd__error_encode(const struct mfd__error_msg *m, uint8_t *out, size_t cap);
/* Checks code < 0, text length fits; non-printable bytes become '?'. */
int mfd__error_decode(const uint8_t *in, size_t len, struct mfd__error_msg *m);

/* ---------------------------------------------------------------- */
/* Data channel packets: 32-byte header, offsets, payload.            */
/* ---------------------------------------------------------------- */

enum mfd__pkt_type {
	MFD_PKT_PAGES = 1,  /* count normal + zero_count zero pages */
	MFD_PKT_SYNC = 2,   /* end of round `round` on this channel */
	MFD_PKT_DONE = 3,   /* no more packets on this channel */
	MFD_PKT_DEVICE = 4, /* a device-state chunk (multifd/devwire.h) */
};

#define MFD_PKT_HDR_SIZE 32
struct mfd__pkt_hdr {
	uint32_t magic; /* MFD_MAGIC_PKT */
	uint16_t type;	/* enum mfd__pkt_type */
	uint16_t flags; /* PAGES: 0 or MFD_PKT_F_ZSTD; else 0 */
	uint32_t round;
	uint32_t block;	      /* PAGES: block index */
	uint32_t count;	      /* PAGES: pages with payload;
				 SYNC: PAGES packets sent in the round on this
				 channel */
	uint32_t zero_count;  /* PAGES: zero pages (offsets only) */
	uint32_t payload_len; /* PAGES: bytes of payload after the offsets */
	uint32_t seq;	      /* per-channel packet number, from 0 */
};

/* PAGES flag: the payload is the zstd stream of the channel (flushed), and
 * payload_len its compressed length. Only with MFD_FEAT_ZSTD. */
#define MFD_PKT_F_ZSTD 0x0001
/* PAGES flag: a page of the post-copy round, placed through userfaultfd.
 * Only with MFD_FEAT_POSTCOPY (protocol 10.2). */
#define MFD_PKT_F_POSTCOPY 0x0002
#define MFD_PKT_F_KNOWN	   (MFD_PKT_F_ZSTD | MFD_PKT_F_POSTCOPY)

void mfd__pkt_encode(const struct mfd__pkt_hdr *h,
		     uint8_t out[MFD_PKT_HDR_SIZE]);
/* Checks magic (MFD_EBADMAGIC), type (MFD_ETYPE), flags (MFD_EFLAGS: only
 * MFD_PKT_F_KNOWN, only on PAGES);
 * SYNC/DONE must have block, zero_count, payload_len zero (MFD_ELENGTH). */
int mfd__pkt_decode(const uint8_t in[MFD_PKT_HDR_SIZE], struct mfd__pkt_hdr *h);

/*
 * The grammar of one data connection (docs/protocol.md 7.2, 7.3), checked
 * on each header as it is read:
 *
 *     data: hello ( PAGES* SYNC )+ DONE      DEVICE anywhere before DONE
 *
 * seq counts every packet from 0 (MFD_EROUND); PAGES and SYNC carry the
 * channel's current round (MFD_EROUND); SYNC counts the round's PAGES
 * (MFD_ECOUNT) and is not for a round after the final one once END has
 * announced it (MFD_EROUND); DONE comes directly after a SYNC, DEVICE
 * packets aside, and after the final round's SYNC when that is known
 * (MFD_EROUND); nothing comes after DONE (MFD_EUNEXPECTED). A pure step
 * function: no I/O, no allocation, so tests and the fuzzer drive it.
 *
 * Post-copy (protocol 10.3): the engine sets postcopy_round from SWITCH
 * before it steps a PAGES with MFD_PKT_F_POSTCOPY (MFD_EUNEXPECTED
 * before); such a PAGES must be of that round (MFD_EROUND), an unflagged
 * PAGES of that round or later is MFD_EFLAGS, no SYNC comes after it
 * (MFD_EROUND), nor a DEVICE packet in it (MFD_EUNEXPECTED). An urgent
 * lane (mfd__grammar_init_urgent) is `hello PAGES* DONE`: flagged PAGES
 * of the post-copy round only, DONE counting them (MFD_ECOUNT), SYNC and
 * DEVICE MFD_EUNEXPECTED.
 */
struct mfd_data_grammar {
	uint32_t seq;		 /* next packet number */
	uint32_t round;		 /* current round */
	uint32_t round_packets;	 /* PAGES of the current round so far */
	uint32_t final_round;	 /* from END; MFD_ROUND_UNKNOWN before */
	uint32_t postcopy_round; /* from SWITCH; MFD_ROUND_UNKNOWN before */
	bool synced;		 /* a SYNC and no PAGES since */
	bool done;
	bool urgent; /* a post-copy urgent lane */
};
#define MFD_ROUND_UNKNOWN UINT32_MAX
void mfd__grammar_init(struct mfd_data_grammar *g);
void mfd__grammar_init_urgent(struct mfd_data_grammar *g);
/* 0 and g advanced past h, or the refusal's code with g unchanged. A
 * SYNC advances the round at once; the caller waits at the barrier. */
int mfd__grammar_step(struct mfd_data_grammar *g, const struct mfd__pkt_hdr *h);

/* What the destination knows after setup. */
struct mfd__wire_limits {
	uint32_t nblocks;
	uint32_t packet_pages;
	const struct mfd__block_desc *blocks;
	uint64_t features; /* negotiated */
};

/* Largest count * page_size a compressed packet may carry. */
static inline uint64_t mfd__zstd_max_raw(const struct mfd__wire_limits *lim)
{
	return (uint64_t)lim->packet_pages * MFD_MIN_PAGE_SIZE;
}
/* Largest compressed payload for raw bytes of pages: raw + raw/128 + 1024
 * (above ZSTD_compressBound plus a frame header). */
static inline uint64_t mfd__zstd_bound(uint64_t raw)
{
	return raw + raw / 128 + 1024;
}

/*
 * Validates a decoded PAGES header against the limits: MFD_PKT_F_POSTCOPY
 * only with the feature negotiated (MFD_EFLAGS), block index
 * (MFD_EBLOCK), count + zero_count in 1..packet_pages (MFD_ECOUNT),
 * payload_len == count * page_size of the block (MFD_ELENGTH). With
 * MFD_PKT_F_ZSTD instead: the feature negotiated (MFD_EFLAGS), count >= 1,
 * count * page_size <= mfd__zstd_max_raw() and 1 <= payload_len <=
 * mfd__zstd_bound(count * page_size) (MFD_ELENGTH).
 */
int mfd__pkt_validate(const struct mfd__pkt_hdr *h,
		      const struct mfd__wire_limits *lim);

/* Bytes of the offsets array that follows a PAGES header. */
static inline size_t mfd__pkt_offsets_size(const struct mfd__pkt_hdr *h)
{
	return ((size_t)h->count + h->zero_count) * sizeof(uint64_t);
}

/*
 * Converts the offsets array (count + zero_count u64 LE, as received) to
 * host order in place and validates each: page-aligned and < block size
 * (MFD_EOFFSET), strictly increasing within the normal pages and within
 * the zero pages (MFD_EOFFSET). h must have passed mfd__pkt_validate().
 */
int mfd__pkt_offsets_decode(const struct mfd__pkt_hdr *h, uint64_t *offsets,
			    const struct mfd__wire_limits *lim);
/* Converts host-order offsets to wire order in place (source side). */
void mfd__pkt_offsets_encode(uint64_t *offsets, size_t n);

#endif /* MULTIFD_WIRE_H */
