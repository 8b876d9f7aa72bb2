#!/bin/sh
# uring vs sockets, 2 GiB random image, same run, interleaved.
# Run from the worktree root after building into ./build, under
# flock /tmp/mfd-bench.lock; prints the Markdown table of docs/benchmarks.md.
B=./build/multifd-bench
printf "| channels | io-engine | throughput MB/s | transfer ms | src CPU s/GiB | dst CPU s/GiB | process CPU s (rusage) |\n|---|---|---|---|---|---|---|\n"
for ch in 1 2 4; do
  for e in sockets uring; do
    $B --ram 2G --image random --channels $ch --verify off --io-engine $e --json |
      jq -r '"| \(.channels) | \(.io_engine) | \(.throughput_mbps) | \(.transfer_ms) | \(.src_cpu_s_per_gib) | \(.dst_cpu_s_per_gib) | \(.cpu_user_s + .cpu_sys_s) |"'
  done
done
