#!/bin/sh
# Page-request latency of post-copy on loopback with 1, 2 and 4 urgent
# lanes while the data channels send as fast as they can (no
# max-postcopy-bandwidth; pre-copy is held to 200 MB/s so that it does not
# converge): 4 writers dirty a hot set at 512 MB/s, the
# switch is asked for after round 0 (--postcopy manual), and the guest's
# writers fault on the destination until every page is there. REPEATS runs
# per lane count, interleaved. Prints one JSON line per run, "N of M ok",
# then per lane count the medians of the request latency p50 / p99 / max
# (p50 and p99 are upper bounds of buckets 12.5 % wide), requests, urgent
# pages and blocktime. Every run takes flock
# ${MFD_BENCH_LOCK:-/tmp/mfd-bench.lock}.
#
#   bench/scripts/postcopy_lanes.sh [REPEATS] [extra bench args...]   (default 3)
D=$(dirname "$0")
. "$D/lib.sh"
B=${BENCH:-./build/multifd-bench}
R=${1:-3}
[ $# -gt 0 ] && shift
out=$(mktemp)
COMMON="--ram 1G --image mix --writers 4 --dirty-rate 512 --pattern hotset --channels 2 --verify off --postcopy manual --max-bandwidth 200M --downtime-limit 1 --guest-measure-ms 500 $*"
echo "### date: $(date -u '+%Y-%m-%d %H:%M UTC') kernel $(uname -r) cores $(nproc) load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "### $B --json $COMMON --postcopy-lanes 1|2|4"
i=1
while [ "$i" -le "$R" ]; do
  for k in 1 2 4; do
    # shellcheck disable=SC2086
    locked_run $B --json $COMMON --postcopy-lanes $k 2>/dev/null |
      keep --argjson rep "$i" --argjson lanes $k '{rep: $rep, lanes: $lanes,
        status, memcmp_ok, error, postcopy_round, postcopy_downtime_ms,
        postcopy_ms, total_ms, urgent_requests, urgent_pages, urgent_again_pages, urgent_rt_threads, lane_bytes,
        faults, request_p50_ms, request_p99_ms, request_max_ms,
        blocktime_ms}'
  done
  i=$((i + 1))
done
echo "### end: $(date -u '+%H:%M UTC') load $(cut -d' ' -f1-3 /proc/loadavg)"
runs_ok
printf "\n| lanes | runs ok | request p50 | request p99 | request max | requests | urgent pages | blocktime | post-copy phase |\n|---|---|---|---|---|---|---|---|---|\n"
jq -L "$D" -rs 'include "stats";
  def r2: . * 100 | round / 100;
  group_by(.lanes)[] | . as $all | oks as $ok |
  "| \($all[0].lanes) | \($ok | length) of \($all | length) | \($ok | map(.request_p50_ms) | med) ms | \($ok | map(.request_p99_ms) | med) ms | \($ok | map(.request_max_ms) | med | r2) ms | \($ok | map(.urgent_requests) | med) | \($ok | map(.urgent_pages) | med) | \($ok | map(.blocktime_ms) | med | round) ms | \($ok | map(.postcopy_ms) | med | round) ms |"' "$out"
rm -f "$out"
