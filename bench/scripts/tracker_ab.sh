#!/bin/sh
# The uffd-wp tracker's cost to the guest against manual marking (issue
# 18: "uffd-wp's slowdown at most 5 points above manual's in the same
# runs"): the pre-copy benchmark (2 GiB mix, 4 hot-set writers at
# 256 MB/s, 2 channels, downtime-limit 300 ms, verify off), REPEATS
# interleaved pairs (manual, then uffd-wp). Prints one JSON line per run (a
# failed or crashed run too), "N of M ok", then per tracker the median
# guest slowdown (min..max), and the median of the per-pair differences
# (uffd-wp - manual, points), which cancels what the two runs of a pair
# share (the machine's load at the time). Every run takes flock
# ${MFD_BENCH_LOCK:-/tmp/mfd-bench.lock}.
#
#   bench/scripts/tracker_ab.sh [REPEATS] [extra bench args...]  (default 10)
D=$(dirname "$0")
. "$D/lib.sh"
B=${BENCH:-./build/multifd-bench}
R=${1:-10}
[ $# -gt 0 ] && shift
out=$(mktemp)
COMMON="--ram 2G --image mix --writers 4 --dirty-rate 256 --pattern hotset --channels 2 --downtime-limit 300 --verify off --guest-measure-ms 500 $*"
echo "### date: $(date -u '+%Y-%m-%d %H:%M UTC') kernel $(uname -r) cores $(nproc) load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "### $B --json $COMMON --tracker manual|uffd-wp"
i=1
while [ "$i" -le "$R" ]; do
  for t in manual uffd-wp; do
    # shellcheck disable=SC2086
    locked_run $B --json $COMMON --tracker $t 2>/dev/null |
      keep --argjson rep "$i" --arg t $t '{rep: $rep, tracker: $t, status,
        memcmp_ok, error, rounds, downtime_ms, total_ms,
        round0_ms: .round_stats[0].ms, guest_work_before,
        guest_work_during, guest_slowdown_pct}'
  done
  i=$((i + 1))
done
echo "### end: $(date -u '+%H:%M UTC') load $(cut -d' ' -f1-3 /proc/loadavg)"
runs_ok
printf "\n| tracker | runs ok | guest slowdown median (min..max) | total ms median | downtime ms median |\n|---|---|---|---|---|\n"
jq -L "$D" -rs 'include "stats";
  group_by(.tracker)[] | . as $all | oks as $ok |
  ($ok | map(.guest_slowdown_pct)) as $s |
  def r1: . * 10 | round / 10;
  "| \($all[0].tracker) | \($ok | length) of \($all | length) | \($s | med | r1) % (\($s | min)..\($s | max)) | \($ok | map(.total_ms) | med | round) | \($ok | map(.downtime_ms) | med | r1) |"' "$out"
jq -L "$D" -rs 'include "stats";
  [group_by(.rep)[] | select(length == 2 and all(.[]; .status == "ok")) |
   (map(select(.tracker == "uffd-wp"))[0].guest_slowdown_pct -
    map(select(.tracker == "manual"))[0].guest_slowdown_pct)] as $d |
  "\nuffd-wp - manual, per pair: median \($d | med * 10 | round / 10) points over \($d | length) pairs (\($d | map(. * 10 | round / 10) | join(", ")))"' "$out"
rm -f "$out"
