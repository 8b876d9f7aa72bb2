#!/bin/sh
# Device state against RAM, in the same runs: 4 simulated devices x
# DEVSIZE (default 256M) of state, 512 MiB mix RAM, 4 channels, verify
# off, --warm-host 2 before every run (host memory warmed, as in issue 15's
# first measurement), REPEATS interleaved (default 10). Every repeat runs,
# without restore cost, device-transfer multifd (the devices show their
# state memory: placed chunks, received straight into it), multifd-copy
# (multifd with --device-placed off: every chunk through the reorder
# buffer and the device's load() copy, the path before placed chunks) and
# main; then, with 2 ms/MiB, multifd and main. Prints one JSON line per run (a failed or crashed run too,
# bench/scripts/run1.sh; a run whose device state differs fails), then "N of M ok"
# and the medians of the ok runs: device-state throughput (device bytes /
# the device part of the downtime), RAM throughput of the same runs (RAM
# bytes on the wire / transfer time), the per-run ratio device/RAM, and
# the downtime. Every run takes flock ${MFD_BENCH_LOCK:-/tmp/mfd-bench.lock}
# (the machine is shared; point MFD_BENCH_LOCK elsewhere when the caller
# holds the lock for the whole series).
#
#   bench/scripts/devstate_repeat.sh [REPEATS] [DEVSIZE]     (default 10 256M)
D=$(dirname "$0")
. "$D/lib.sh"
B=${BENCH:-./build/multifd-bench}
R=${1:-10}
S=${2:-256M}
out=$(mktemp)
echo "### date: $(date -u '+%Y-%m-%d %H:%M UTC') kernel $(uname -r) cores $(nproc) load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "### $B --ram 512M --image mix --channels 4 --verify off --warm-host 2 --devices 4 --device-state $S --device-transfer multifd|main [--device-placed off] --device-load-ms-per-mib 0|2 --json"
i=1
while [ "$i" -le "$R" ]; do
  for cost in 0 2; do
    xs="multifd multifd-copy main"
    [ "$cost" = 0 ] || xs="multifd main"
    for x in $xs; do
      case $x in
      multifd-copy) t="multifd --device-placed off" ;;
      *) t=$x ;;
      esac
      # shellcheck disable=SC2086
      locked_run $B \
        --ram 512M --image mix --channels 4 --verify off --warm-host 2 \
        --devices 4 --device-state "$S" --device-transfer $t \
        --device-load-ms-per-mib $cost --json |
        keep --argjson rep "$i" --arg x $x --argjson cost $cost '{rep: $rep, device_transfer: $x, cost: $cost, status, memcmp_ok, devices_equal, device_throughput_mbps, ram_throughput_mbps, ratio: (if (.ram_throughput_mbps // 0) > 0 then .device_throughput_mbps / .ram_throughput_mbps else null end), device_downtime_ms, downtime_ms, dest_device_load_ms, dest_device_buffer_peak, dest_device_buffer_waits, dest_device_placed_bytes, src_cpu_s, dst_cpu_s, error}'
    done
  done
  i=$((i + 1))
done
runs_ok
printf "| restore ms/MiB | transfer | runs | device MB/s median (min..max) | RAM MB/s median | device/RAM median | downtime ms median (min..max) |\n|---|---|---|---|---|---|---|\n"
jq -L "$D" -rs 'include "stats";
  def col(f): [.[] | f] | "\(med | if . then . * 10 | round / 10 else "-" end) (\(min)..\(max))";
  def m(f): [.[] | f] | med | if . then . * 1000 | round / 1000 else "-" end;
  group_by([.cost, .device_transfer]) | .[] |
  .[0].cost as $c | .[0].device_transfer as $x | ok_of as $n | oks |
  "| \($c) | \($x) | \($n) | \(col(.device_throughput_mbps)) | \(m(.ram_throughput_mbps)) | \(if $x != "main" then m(.ratio) else "-" end) | \(col(.downtime_ms)) |"' "$out"
jq -L "$D" -rs 'include "stats"; oks |
  def md(c; x; f): [.[] | select(.cost == c and .device_transfer == x) | f] | med;
  def ratio(a; b): if a and b then a / b * 1000 | round / 1000 else "-" end;
  "multifd/main device throughput (medians, no restore cost): \(ratio(md(0; "multifd"; .device_throughput_mbps); md(0; "main"; .device_throughput_mbps)))",
  "multifd-copy/main device throughput (medians, no restore cost): \(ratio(md(0; "multifd-copy"; .device_throughput_mbps); md(0; "main"; .device_throughput_mbps)))",
  "multifd/multifd-copy device throughput (medians, no restore cost): \(ratio(md(0; "multifd"; .device_throughput_mbps); md(0; "multifd-copy"; .device_throughput_mbps)))",
  "multifd/main downtime (medians, 2 ms/MiB): \(ratio(md(2; "multifd"; .downtime_ms); md(2; "main"; .downtime_ms)))"' "$out"
echo "### end: $(date -u '+%H:%M UTC') load $(cut -d' ' -f1-3 /proc/loadavg)"
rm -f "$out"
