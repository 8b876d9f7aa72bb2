#!/bin/sh
# Cold destination memory, controlled: 2 GiB random image, loopback,
# 4 channels, verify off, REPEATS interleaved (default 10). Every repeat
# runs, in this order:
#   prealloc     destination RAM populated when the VM is created
#                (--dest-populate on; not part of the migration's time)
#   cold         --dest-populate off --warm-host WARM: right before the
#                migration the bench touches and frees WARM GiB so that
#                the host backs free pages (the cold runs say so: this is
#                how every cold number in docs/benchmarks.md is taken;
#                a pass the host had to back is repeated, up to 4, so
#                the run starts on backed memory or says it could not)
#   cold-ahead   the same with the library's dest-prefault = ahead
#   cold-nowarm  --dest-populate off without --warm-host: what the
#                first touch costs after whatever ran before (odd
#                repeats only: it is there to show the spread)
# Prints one JSON line per run (a failed or crashed run too, bench/scripts/run1.sh),
# then "N of M ok", the medians of the ok runs and the ratio of each
# median total to the preallocated one. Every run takes flock
# ${MFD_BENCH_LOCK:-/tmp/mfd-bench.lock} (the machine is shared; point
# MFD_BENCH_LOCK elsewhere when the caller holds the lock for the series).
#
#   bench/scripts/cold_repeat.sh [REPEATS] [WARM_GIB]      (default 10 4)
D=$(dirname "$0")
. "$D/lib.sh"
B=${BENCH:-./build/multifd-bench}
R=${1:-10}
W=${2:-4}
out=$(mktemp)
echo "### date: $(date -u '+%Y-%m-%d %H:%M UTC') kernel $(uname -r) cores $(nproc) load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "### $B --ram 2G --image random --channels 4 --verify off --json, warm $W GiB"
i=1
while [ "$i" -le "$R" ]; do
  cfgs="prealloc cold cold-ahead"
  [ $((i % 2)) = 1 ] && cfgs="$cfgs cold-nowarm"
  for cfg in $cfgs; do
    case $cfg in
    prealloc) args="--dest-populate on --warm-host $W" ;;
    cold) args="--dest-populate off --warm-host $W" ;;
    cold-ahead) args="--dest-populate off --warm-host $W --set dest-prefault=ahead" ;;
    cold-nowarm) args="--dest-populate off" ;;
    esac
    # shellcheck disable=SC2086
    locked_run $B \
      --ram 2G --image random --channels 4 --verify off --json $args |
      keep --argjson rep "$i" --arg cfg "$cfg" '{rep: $rep, cfg: $cfg, status, memcmp_ok, total_ms, transfer_ms, dest_populate_ms, warm_host_ms, warm_host_passes, warm_host_last_ms_per_gib, host_reported_mib, minor_faults, first_touch_ms_per_gib, dest_fault_ms_est, steal_ms, src_cpu_s, dst_cpu_s, error}'
  done
  i=$((i + 1))
done
runs_ok
printf "| run | runs | total ms median (min..max) | / prealloc median | minor faults median | first touch ms/GiB median | est. fault ms median | steal ms median | warm passes median | host reported MiB median (max) | dest CPU s median |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
jq -L "$D" -rs 'include "stats";
  def col(f): [.[] | f] | "\(med | if . then . * 10 | round / 10 else "-" end) (\(min)..\(max))";
  def m(f): [.[] | f | numbers] | med | if . then . * 10 | round / 10 else "-" end;
  ([.[] | select(.cfg == "prealloc" and run_ok) | .total_ms] | med) as $p |
  group_by(.cfg) | sort_by(.[0].cfg) | .[] |
  .[0].cfg as $c | ok_of as $n | oks |
  "| \($c) | \($n) | \(col(.total_ms)) | \(([.[].total_ms] | med) as $t | if $t and $p then $t / $p * 1000 | round / 1000 else "-" end) | \(m(.minor_faults)) | \(m(.first_touch_ms_per_gib)) | \(m(.dest_fault_ms_est)) | \(m(.steal_ms)) | \(m(.warm_host_passes)) | \(m(.host_reported_mib)) (\([.[].host_reported_mib | numbers] | max // "-")) | \(m(.dst_cpu_s)) |"' "$out"
echo "### end: $(date -u '+%H:%M UTC') load $(cut -d' ' -f1-3 /proc/loadavg)"
rm -f "$out"
