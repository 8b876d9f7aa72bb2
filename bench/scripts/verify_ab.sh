#!/bin/sh
# verify on against verify off on the pre-copy benchmark (2 GiB mix image,
# 4 hot-set writers at 256 MB/s, 2 channels, downtime-limit 300 ms),
# REPEATS (default 10) interleaved repeats: each repeat runs off, then on.
# Every command runs under flock /tmp/mfd-bench.lock (the machine is
# shared). Prints one JSON line per run (a failed or crashed run too), then
# per setting: runs ok, the median downtime and its parts (min..max), and
# the ratio of the medians on / off, measured in the same run; and the
# duration of round 0 and the final round's pages and MB/s (the final
# round's size varies from run to run, and grows with round 0's length).
# Usage: bench/scripts/verify_ab.sh [REPEATS] [more multifd-bench options]
D=$(dirname "$0")
. "$D/lib.sh"
B=${BENCH:-./build/multifd-bench}
R=${1:-10}
[ $# -gt 0 ] && shift
out=$(mktemp)
i=1
while [ $i -le "$R" ]; do
  for v in off on; do
    locked_run $B --ram 2G --image mix --writers 4 --dirty-rate 256 \
      --pattern hotset --channels 2 --downtime-limit 300 --verify $v \
      --guest-measure-ms 500 --tracker manual --json "$@" |
      keep --argjson rep $i --arg v $v '{rep: $rep, verify: $v, status, memcmp_ok, verified, downtime_ms, down_sync_ms, down_pages_ms, down_end_ms, down_ack_ms, verify_ms, dest_verify_ms, rounds, round0_ms: .round_stats[0].ms, final_pages: .round_stats[-1].pages, final_mbps: .round_stats[-1].mbps, total_ms, error}'
  done
  i=$((i + 1))
done
runs_ok
printf "| verify | runs | downtime ms median (min..max) | end/verify ms | ack ms | src digest ms | dst digest ms | round 0 ms | final pages | final MB/s |\n|---|---|---|---|---|---|---|---|---|---|\n"
jq -L "$D" -rs 'include "stats";
  def col(f): [.[] | f] | "\(med | if . then . * 10 | round / 10 else "-" end) (\(min)..\(max))";
  group_by(.verify) | reverse | .[] | .[0].verify as $v | ok_of as $n | oks |
  "| \($v) | \($n) | \(col(.downtime_ms)) | \(col(.down_end_ms)) | \(col(.down_ack_ms)) | \(col(.verify_ms)) | \(col(.dest_verify_ms)) | \(col(.round0_ms)) | \(col(.final_pages)) | \(col(.final_mbps)) |"' "$out"
jq -L "$D" -rs 'include "stats"; oks |
  ([.[] | select(.verify == "on") | .downtime_ms] | med) as $on |
  ([.[] | select(.verify == "off") | .downtime_ms] | med) as $off |
  "downtime median on / off: \($on * 10 | round / 10) / \($off * 10 | round / 10) ms = \($on / $off * 1000 | round / 1000)"' "$out"
rm -f "$out"
