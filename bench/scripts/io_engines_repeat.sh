#!/bin/sh
# uring vs sockets, 2 GiB random image, 1/2/4 channels, REPEATS (default 5)
# interleaved repeats: each repeat runs every row, sockets then uring.
# Every command runs under flock /tmp/mfd-bench.lock (the machine is shared).
# Run from the worktree root after building into ./build. Prints one JSON
# line per run, then a Markdown table of the medians per row with the
# min..max of each column.
B=./build/multifd-bench
R=${1:-5}
out=$(mktemp)
i=1
while [ $i -le "$R" ]; do
  for ch in 1 2 4; do
    for e in sockets uring; do
      flock /tmp/mfd-bench.lock $B --ram 2G --image random --channels $ch \
        --verify off --io-engine $e --json |
        jq -c --argjson rep $i '{rep: $rep, channels, io_engine, throughput_mbps, transfer_ms, src_cpu_s_per_gib, dst_cpu_s_per_gib}' |
        tee -a "$out"
    done
  done
  i=$((i + 1))
done
echo
printf "| channels | io-engine | runs | throughput MB/s median (min..max) | src CPU s/GiB median (min..max) | dst CPU s/GiB median (min..max) |\n|---|---|---|---|---|---|\n"
jq -L "$(dirname "$0")" -rs 'include "stats";
  def col(f): [.[] | f] | "\(med | . * 1000 | round / 1000) (\(min)..\(max))";
  group_by([.channels, .io_engine]) | sort_by(.[0].channels) | .[] |
  "| \(.[0].channels) | \(.[0].io_engine) | \(length) | \(col(.throughput_mbps)) | \(col(.src_cpu_s_per_gib)) | \(col(.dst_cpu_s_per_gib)) |"' "$out"
rm -f "$out"
