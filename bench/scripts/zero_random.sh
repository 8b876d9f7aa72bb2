#!/bin/sh
# Zero image against random image, 2 GiB each, loopback, 2 channels,
# verify off, for several packet sizes, REPEATS interleaved (default 5):
# every repeat runs each packet size on the zero then the random image.
# Prints one JSON line per run, then per packet size the medians and the
# zero/random ratio of the median total times (issue 3's "below one
# fifth"). Every run takes /tmp/mfd-bench.lock (the machine is shared).
#
#   bench/scripts/zero_random.sh [REPEATS] [PACKET_PAGES...]   (default 5, 128 512 1024)
B=${BENCH:-./build/multifd-bench}
R=${1:-5}
[ $# -gt 0 ] && shift
PPS=${*:-128 512 1024}
out=$(mktemp)
i=1
while [ $i -le "$R" ]; do
  for pp in $PPS; do
    for img in zero random; do
      flock /tmp/mfd-bench.lock $B --ram 2G --image $img --channels 2 \
        --verify off --packet-pages $pp --json |
        jq -c --argjson rep $i '{rep: $rep, image, packet_pages, total_ms, transfer_ms, wire_bytes, packets, cpu_user_s, cpu_sys_s}' |
        tee -a "$out"
    done
  done
  i=$((i + 1))
done
echo
printf "| packet-pages | zero total ms median (min..max) | random total ms median (min..max) | zero/random (medians) | zero wire / RAM |\n|---|---|---|---|---|\n"
jq -L "$(dirname "$0")" -rs 'include "stats";
  def col(f): [.[] | f] | "\(med | . * 10 | round / 10) (\(min)..\(max))";
  group_by(.packet_pages) | .[] |
  (map(select(.image == "zero"))) as $z | (map(select(.image == "random"))) as $r |
  "| \(.[0].packet_pages) | \($z | col(.total_ms)) | \($r | col(.total_ms)) | \((([$z[].total_ms] | med) / ([$r[].total_ms] | med)) * 1000 | round / 1000) | \((($z[0].wire_bytes / 2147483648) * 10000 | round) / 100)% |"' "$out"
rm -f "$out"
