#!/bin/sh
# Post-copy against pre-copy with auto-converge (issue 14's Done-when): a
# guest whose 4 writers dirty a hot set faster than the link sends, over a
# tbf-shaped veth link between two namespaces (netns.sh; RATE, default
# 1gbit), REPEATS pairs interleaved (postcopy=auto, then auto-converge).
# Prints one JSON line per run (a failed or crashed run too, run1.sh),
# "N of M ok", then per mode the median and p90 downtime, the median total
# time (and its ratio to RAM / link rate), the median guest slowdown (its
# work rate during the migration against before it) and, for post-copy,
# the page-request latency and blocktime. Every run takes flock
# ${MFD_BENCH_LOCK:-/tmp/mfd-bench.lock}. Needs root (netns.sh).
#
#   bench/scripts/postcopy_ab.sh [REPEATS] [extra bench args...]   (default 10)
D=$(dirname "$0")
. "$D/lib.sh"
B=${BENCH:-./build/multifd-bench}
RATE=${RATE:-1gbit}
R=${1:-10}
[ $# -gt 0 ] && shift
out=$(mktemp)
COMMON="--ram 2G --image mix --writers 4 --dirty-rate 512 --pattern hotset --channels 2 --verify off --guest-measure-ms 1000 --timeout 600 $*"
echo "### date: $(date -u '+%Y-%m-%d %H:%M UTC') kernel $(uname -r) cores $(nproc) load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "### $D/netns.sh --rate $RATE --bench $B -- --json $COMMON {--postcopy auto | --throttle auto-converge}"
i=1
while [ "$i" -le "$R" ]; do
  for m in postcopy auto-converge; do
    if [ $m = postcopy ]; then a="--postcopy auto"; else a="--throttle auto-converge"; fi
    # shellcheck disable=SC2086
    locked_run "$D/netns.sh" --rate "$RATE" --bench "$B" -- --json $COMMON $a 2>/dev/null |
      keep --argjson rep "$i" --arg m $m '{rep: $rep, mode: $m, status,
        memcmp_ok, error, rounds, forced, postcopy_round, downtime_ms,
        postcopy_downtime_ms, total_ms, ram_bytes, throttle_pct,
        guest_work_before, guest_work_during, guest_slowdown_pct,
        urgent_requests, urgent_pages, urgent_again_pages, lane_bytes, faults, request_p50_ms,
        request_p99_ms, request_max_ms, blocktime_ms}'
  done
  echo "### load after pair $i: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  i=$((i + 1))
done
runs_ok
case $RATE in *gbit) bps=$(( ${RATE%gbit} * 1000000000 )) ;; *mbit) bps=$(( ${RATE%mbit} * 1000000 )) ;; *) bps=0 ;; esac
printf "\n| mode | runs ok | downtime median | downtime p90 | total s median | total / (RAM / link) | guest slowdown median | request p50 / p99 median | blocktime median |\n|---|---|---|---|---|---|---|---|---|\n"
jq -L "$D" -rs --argjson bps "$bps" 'include "stats";
  def q9: sort | .[((length * 9 + 9) / 10 | floor) - 1];
  def r1: . * 10 | round / 10;
  group_by(.mode)[] | . as $all | oks as $ok |
  ($ok | map(if .mode == "postcopy" then .postcopy_downtime_ms else .downtime_ms end)) as $dt |
  "| \($all[0].mode) | \($ok | length) of \($all | length) | \($dt | med | r1) ms | \($dt | q9 | r1) ms | \($ok | map(.total_ms) | med / 1000 | r1) | \(if $bps > 0 then ($ok | map(.total_ms / 1000 / (.ram_bytes * 8 / $bps)) | med * 100 | round / 100) else "-" end) | \($ok | map(.guest_slowdown_pct) | med | r1) % | \(if $all[0].mode == "postcopy" then "\($ok | map(.request_p50_ms) | med) / \($ok | map(.request_p99_ms) | med) ms" else "-" end) | \(if $all[0].mode == "postcopy" then "\($ok | map(.blocktime_ms) | med | round) ms" else "-" end) |"' "$out"
rm -f "$out"
