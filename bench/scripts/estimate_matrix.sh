#!/bin/sh
# The downtime estimate against the measured downtime across the pre-copy
# matrix (issue 18): link loopback or 1 Gbit/s tbf (netns.sh), 1 or 4
# simulated devices, verify off or on, tracker manual or uffd-wp. REPEATS
# runs per cell, interleaved (every cell once, then again). Prints one JSON
# line per run (a failed or crashed run too, bench/scripts/run1.sh), "N of M
# ok", then per cell: runs ok, the median of |expected - measured| /
# measured, the medians of both, how many runs stayed within the limit,
# and the part the estimate said was largest. Every run takes flock
# ${MFD_BENCH_LOCK:-/tmp/mfd-bench.lock}. Needs root for the tbf cells.
#
#   bench/scripts/estimate_matrix.sh [REPEATS] [LINKS] [extra bench args...]
#     REPEATS default 10; LINKS "lo 1gbit" (default), "lo" or "1gbit"
D=$(dirname "$0")
. "$D/lib.sh"
B=${BENCH:-./build/multifd-bench}
R=${1:-10}
LINKS=${2:-lo 1gbit}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] && shift
out=$(mktemp)
COMMON="--ram 1G --image mix --writers 4 --dirty-rate 128 --pattern hotset --channels 2 --downtime-limit 300 --device-state 64M --device-precopy 0.9 $*"
echo "### date: $(date -u '+%Y-%m-%d %H:%M UTC') kernel $(uname -r) cores $(nproc) load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "### $B --json $COMMON --devices 1|4 --verify off|on --tracker manual|uffd-wp (1gbit: bench/scripts/netns.sh --rate 1gbit)"
i=1
while [ "$i" -le "$R" ]; do
  for link in $LINKS; do
    for dev in 1 4; do
      for verify in off on; do
        for tr in manual uffd-wp; do
          if [ "$link" = lo ]; then
            set -- $B
          else
            set -- "$D/netns.sh" --rate "$link" --bench "$B" --
          fi
          # shellcheck disable=SC2086
          locked_run "$@" --json $COMMON --devices $dev --verify $verify \
            --tracker $tr 2>/dev/null |
            keep --argjson rep "$i" --arg link "$link" --argjson dev $dev \
              --arg verify $verify --arg tr $tr '{rep: $rep, link: $link,
              devices: $dev, verify: $verify, tracker: $tr, status,
              memcmp_ok, error, rounds, forced, downtime_ms,
              expected_downtime_ms, expected_downtime_q_ms,
              estimate_error_pct, over_part,
              down_stop_ms, down_sync_ms, down_pages_ms, down_end_ms,
              down_ack_ms, device_downtime_ms, expected_stop_ms,
              expected_sync_ms, expected_ram_ms, expected_device_ms,
              expected_end_ms, measured_stop_ms, measured_sync_ms,
              measured_ram_ms, measured_device_ms, measured_end_ms,
              overrun_part, guest_slowdown_pct}'
        done
      done
    done
  done
  i=$((i + 1))
done
runs_ok
printf "\n| link | devices | verify | tracker | runs ok | median abs error | median measured ms | median expected ms | within 300 ms | largest expected part | overrun part |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
jq -L "$D" -rs 'include "stats";
  group_by([.link, .devices, .verify, .tracker])[] |
  . as $all | oks as $ok |
  ($ok | map(.estimate_error_pct | fabs) | med) as $err |
  "| \($all[0].link) | \($all[0].devices) | \($all[0].verify) | \($all[0].tracker) | \($ok | length) of \($all | length) | \(if $err == null then "-" else "\($err * 10 | round / 10) %" end) | \($ok | map(.downtime_ms) | med // "-" | tostring | .[0:6]) | \($ok | map(.expected_downtime_ms) | med // "-" | tostring | .[0:6]) | \($ok | map(select(.downtime_ms <= 300)) | length) of \($ok | length) | \($ok | map([["stop", .expected_stop_ms], ["sync", .expected_sync_ms], ["ram", .expected_ram_ms], ["device", .expected_device_ms], ["end", .expected_end_ms]] | max_by(.[1]) | .[0]) | group_by(.) | map("\(.[0]) \(length)") | join(", ")) | \($ok | map(.overrun_part // "none") | group_by(.) | map("\(.[0]) \(length)") | join(", ")) |"' "$out"
rm -f "$out"
