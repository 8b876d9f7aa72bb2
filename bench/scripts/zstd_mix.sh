#!/bin/sh
# 1 GiB mix image over a 1 Gbit/s tbf-shaped veth link (bench/scripts/netns.sh),
# 2 channels, verify off: none, zstd at the defaults (level 1), and zstd
# level 3 with zstd-long=27, REPEATS interleaved (default 3). Prints one
# JSON line per run (a failed or crashed run too, with its status), then
# per codec how many runs were ok, the median total time of the ok runs and
# its ratio to none's median (issue 3: zstd at most 0.55 of none). Every
# run takes /tmp/mfd-bench.lock. Needs root (network namespaces).
#
#   bench/scripts/zstd_mix.sh [REPEATS]      ($NETNS replaces bench/scripts/netns.sh)
D=$(dirname "$0")
. "$D/lib.sh"
NETNS=${NETNS:-$D/netns.sh}
R=${1:-3}
out=$(mktemp)
i=1
while [ $i -le "$R" ]; do
  for c in none zstd zstd-l3-long27; do
    case $c in
    none) args="--compression none" ;;
    zstd) args="--compression zstd" ;;
    *) args="--compression zstd --zstd-level 3 --zstd-long 27" ;;
    esac
    # shellcheck disable=SC2086
    locked_run "$NETNS" --rate 1gbit -- --ram 1G \
      --image mix --channels 2 --verify off $args --json |
      keep --argjson rep $i --arg c $c '{rep: $rep, codec: $c, status, memcmp_ok, total_ms, wire_bytes, raw_pages, zero_pages, compression_ratio, compress_cpu_s, decompress_cpu_s, throughput_mbps, error}'
  done
  i=$((i + 1))
done
runs_ok
printf "| codec | runs | total ms median (min..max) | wire MB median | vs none (medians) | src compress CPU s median |\n|---|---|---|---|---|---|\n"
jq -L "$D" -rs 'include "stats";
  ([.[] | select(.codec == "none")] | oks | [.[].total_ms] | med) as $none |
  group_by(.codec) | sort_by(.[0].rep) | .[] |
  .[0].codec as $c | ok_of as $n | oks |
  ([.[].total_ms] | med) as $t |
  "| \($c) | \($n) | \($t // "-") (\([.[].total_ms] | min)..\([.[].total_ms] | max)) | \(((([.[].wire_bytes] | med) // 0) / 1e6) * 10 | round / 10) | \(if $t and $none then ($t / $none) * 1000 | round / 1000 else "-" end) | \([.[].compress_cpu_s] | med) |"' "$out"
rm -f "$out"
