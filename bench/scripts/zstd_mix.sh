#!/bin/sh
# 1 GiB mix image over a 1 Gbit/s tbf-shaped veth link (bench/scripts/netns.sh),
# 2 channels, verify off: none, zstd at the defaults (level 1), and zstd
# level 3 with zstd-long=27, REPEATS interleaved (default 3). Prints one
# JSON line per run, then each codec's median total time and its ratio to
# none's median (issue 3: zstd at most 0.55 of none). Every run takes
# /tmp/mfd-bench.lock. Needs root (network namespaces).
#
#   bench/scripts/zstd_mix.sh [REPEATS]
D=$(dirname "$0")
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
    flock /tmp/mfd-bench.lock "$D/netns.sh" --rate 1gbit -- --ram 1G \
      --image mix --channels 2 --verify off $args --json | grep -v '^#' |
      jq -c --argjson rep $i --arg c $c '{rep: $rep, codec: $c, total_ms, wire_bytes, raw_pages, zero_pages, compression_ratio, compress_cpu_s, decompress_cpu_s, throughput_mbps, memcmp_ok}' |
      tee -a "$out"
  done
  i=$((i + 1))
done
echo
printf "| codec | runs | total ms median (min..max) | wire MB median | vs none (medians) | src compress CPU s median |\n|---|---|---|---|---|---|\n"
jq -L "$(dirname "$0")" -rs 'include "stats";
  ([.[] | select(.codec == "none") | .total_ms] | med) as $none |
  group_by(.codec) | sort_by(.[0].rep) | .[] |
  "| \(.[0].codec) | \(length) | \([.[].total_ms] | med) (\([.[].total_ms] | min)..\([.[].total_ms] | max)) | \(([.[].wire_bytes] | med) / 1e6 | . * 10 | round / 10) | \((([.[].total_ms] | med) / $none) * 1000 | round / 1000) | \([.[].compress_cpu_s] | med) |"' "$out"
rm -f "$out"
