#!/bin/sh
# uring vs sockets, 2 GiB random image, 1/2/4 channels, REPEATS (default 5)
# interleaved repeats: each repeat runs every row, sockets then uring.
# Every command runs under flock /tmp/mfd-bench.lock (the machine is shared).
# Run from the worktree root after building into ./build. Prints one JSON
# line per run (a failed or crashed run too, with its status), then a
# Markdown table per row: how many runs were ok, and the medians of the ok
# runs with the min..max of each column.
D=$(dirname "$0")
. "$D/lib.sh"
B=${BENCH:-./build/multifd-bench}
R=${1:-5}
out=$(mktemp)
i=1
while [ $i -le "$R" ]; do
  for ch in 1 2 4; do
    for e in sockets uring; do
      locked_run $B --ram 2G --image random \
        --channels $ch --verify off --io-engine $e --json |
        keep --argjson rep $i --argjson ch $ch --arg e $e '{rep: $rep, channels: $ch, io_engine: $e, status, memcmp_ok, throughput_mbps, transfer_ms, src_cpu_s_per_gib, dst_cpu_s_per_gib, error}'
    done
  done
  i=$((i + 1))
done
runs_ok
printf "| channels | io-engine | runs | throughput MB/s median (min..max) | src CPU s/GiB median (min..max) | dst CPU s/GiB median (min..max) |\n|---|---|---|---|---|---|\n"
jq -L "$D" -rs 'include "stats";
  def col(f): [.[] | f] | "\(med | if . then . * 1000 | round / 1000 else "-" end) (\(min)..\(max))";
  group_by([.channels, .io_engine]) | sort_by(.[0].channels) | .[] |
  .[0].channels as $ch | .[0].io_engine as $e | ok_of as $n | oks |
  "| \($ch) | \($e) | \($n) | \(col(.throughput_mbps)) | \(col(.src_cpu_s_per_gib)) | \(col(.dst_cpu_s_per_gib)) |"' "$out"
rm -f "$out"
