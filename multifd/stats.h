/* SPDX-License-Identifier: MIT */
/*
 * The counters behind mfd_stats, for both sides. Each is declared once in
 * MFD__STATS: the struct, its reset and the public snapshot are generated
 * from that list. Writers use relaxed atomics (one store or add per packet
 * or per event); mfd_*_get_stats() may read them from any thread at any
 * time, so the reset uses the same atomic stores.
 *
 * A counter one side never writes reads 0 there. Fields of mfd_stats that
 * are not counters (error, channels, ram_bytes, device state) are filled by
 * each side after the snapshot.
 */
#ifndef MULTIFD_STATS_H
#define MULTIFD_STATS_H

#include <stdint.h>

#include "multifd/multifd.h"

/* X(type, name): name is also the field of mfd_stats it is reported as. */
#define MFD__STATS(X)                                                          \
	X(int, phase)                                                          \
	X(uint32_t, round)                                                     \
	X(uint64_t, wire_bytes)                                                \
	X(uint64_t, pages)                                                     \
	X(uint64_t, zero_pages)                                                \
	X(uint64_t, raw_pages)                                                 \
	X(uint64_t, packets)                                                   \
	X(uint64_t, pending_bytes)                                             \
	X(uint64_t, compressed_bytes)                                          \
	X(uint64_t, compress_in_bytes)                                         \
	X(uint64_t, compress_ns)                                               \
	X(uint64_t, cpu_ns) /* of the threads that ended */                    \
	X(uint64_t, setup_ns)                                                  \
	X(uint64_t, transfer_ns)                                               \
	X(uint64_t, total_ns)                                                  \
	X(uint64_t, downtime_ns)                                               \
	X(uint64_t, verify_ns)                                                 \
	X(uint64_t, register_ns)                                               \
	X(uint64_t, bandwidth_bps)                                             \
	X(uint64_t, down_sync_ns)                                              \
	X(uint64_t, down_pages_ns)                                             \
	X(uint64_t, down_end_ns)                                               \
	X(uint64_t, down_ack_ns)                                               \
	X(uint64_t, expected_downtime_ns)                                      \
	X(uint64_t, expected_stop_ns)                                          \
	X(uint64_t, expected_sync_ns)                                          \
	X(uint64_t, expected_ram_ns)                                           \
	X(uint64_t, expected_device_ns)                                        \
	X(uint64_t, expected_end_ns)                                           \
	X(uint64_t, down_stop_ns)                                              \
	X(uint32_t, over_part)                                                 \
	X(uint64_t, down_device_ns)                                            \
	X(uint32_t, overrun_part)                                              \
	X(uint64_t, expected_downtime_q_ns)                                    \
	X(uint32_t, vcpus_throttled)                                           \
	X(uint32_t, vcpu_throttle_max_pct)                                     \
	X(uint64_t, dirty_rate_bps)                                            \
	X(uint32_t, throttle_pct)                                              \
	X(uint32_t, throttle_max_pct)                                          \
	X(uint32_t, forced)                                                    \
	X(uint32_t, channels_lost)                                             \
	X(int, tracker)                                                        \
	X(uint32_t, postcopy_round)                                            \
	X(uint64_t, urgent_pages)                                              \
	X(uint64_t, urgent_requests)                                           \
	X(uint64_t, lane_bytes)                                                \
	X(uint64_t, postcopy_ns)                                               \
	X(uint32_t, resumes)                                                   \
	X(uint64_t, resume_bytes)                                              \
	X(uint64_t, resume_inflight_bytes)                                     \
	X(uint64_t, urgent_again_pages)                                        \
	X(uint32_t, urgent_rt_threads)

struct mfd__stats {
#define MFD__STATS_FIELD(type, name) type name;
	MFD__STATS(MFD__STATS_FIELD)
#undef MFD__STATS_FIELD
};

#define STAT_SET(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELAXED)
#define STAT_GET(field)	   __atomic_load_n(&(field), __ATOMIC_RELAXED)
#define STAT_ADD(field, v) __atomic_fetch_add(&(field), (v), __ATOMIC_RELAXED)

/* Every counter to 0, with atomic stores. */
void mfd__stats_reset(struct mfd__stats *st);
/* Every counter into its field of out (the rest of out is left alone). */
void mfd__stats_snapshot(const struct mfd__stats *st, mfd_stats *out);

#endif /* MULTIFD_STATS_H */
