#!/bin/sh
# Dirty-limit against auto-converge on a mixed guest (issue 18): 4 writers
# that dirty a hot set and 4 readers that only compute, max-bandwidth below
# the dirty rate so that pre-copy needs a throttle. REPEATS pairs,
# interleaved (dirty-limit, then auto-converge). Prints one JSON line per
# run (a failed or crashed run too, bench/scripts/run1.sh), "N of M ok",
# then per mode the medians of the readers' and the writers' slowdown
# (work rate during migration against before it), rounds and total time.
# Every run takes flock ${MFD_BENCH_LOCK:-/tmp/mfd-bench.lock}.
#
#   bench/scripts/throttle_ab.sh [REPEATS] [extra bench args...]   (default 5)
D=$(dirname "$0")
. "$D/lib.sh"
B=${BENCH:-./build/multifd-bench}
R=${1:-5}
[ $# -gt 0 ] && shift
out=$(mktemp)
COMMON="--ram 512M --image mix --writers 4 --readers 4 --guest-load 10 --dirty-rate 256 --pattern hotset --channels 2 --downtime-limit 300 --verify off --max-bandwidth 100000000 --vcpu-dirty-limit 10 --max-rounds 40 --guest-measure-ms 1000 $*"
echo "### date: $(date -u '+%Y-%m-%d %H:%M UTC') kernel $(uname -r) cores $(nproc) load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "### $B --json $COMMON --throttle dirty-limit|auto-converge"
i=1
while [ "$i" -le "$R" ]; do
  for m in dirty-limit auto-converge; do
    # shellcheck disable=SC2086
    locked_run $B --json $COMMON --throttle $m 2>/dev/null |
      keep --argjson rep "$i" --arg m $m '{rep: $rep, mode: $m, status,
        memcmp_ok, error, rounds, forced, downtime_ms, total_ms,
        throttle_pct, vcpu_throttle_max_pct, guest_work_before,
        guest_work_during, guest_slowdown_pct, reader_work_before,
        reader_work_during, reader_slowdown_pct}'
  done
  i=$((i + 1))
done
runs_ok
printf "\n| throttle | runs ok | readers' slowdown median (min..max) | writers' slowdown median | rounds median | total ms median | highest throttle |\n|---|---|---|---|---|---|---|\n"
jq -L "$D" -rs 'include "stats";
  group_by(.mode)[] | . as $all | oks as $ok |
  ($ok | map(.reader_slowdown_pct)) as $r |
  def r1: . * 10 | round / 10;
  "| \($all[0].mode) | \($ok | length) of \($all | length) | \($r | med | r1) % (\($r | min)..\($r | max)) | \($ok | map(.guest_slowdown_pct) | med | r1) % | \($ok | map(.rounds) | med) | \($ok | map(.total_ms) | med | round) | \($ok | map([.throttle_pct, .vcpu_throttle_max_pct] | max) | max) % |"' "$out"
rm -f "$out"
