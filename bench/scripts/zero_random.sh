#!/bin/sh
# Zero image against random image, 2 GiB each, loopback, 2 channels,
# verify off, for several packet sizes, REPEATS interleaved (default 5):
# every repeat runs each packet size on the zero then the random image.
# Prints one JSON line per run (a failed or crashed run too, with its
# status), then per packet size how many runs were ok, the medians of the
# ok runs and the zero/random ratio of those medians (issue 3's "below one
# fifth"). Every run takes /tmp/mfd-bench.lock (the machine is shared).
#
#   bench/scripts/zero_random.sh [REPEATS] [PACKET_PAGES...]   (default 5, 128 512 1024)
D=$(dirname "$0")
. "$D/lib.sh"
B=${BENCH:-./build/multifd-bench}
R=${1:-5}
[ $# -gt 0 ] && shift
PPS=${*:-128 512 1024}
out=$(mktemp)
i=1
while [ $i -le "$R" ]; do
  for pp in $PPS; do
    for img in zero random; do
      locked_run $B --ram 2G --image $img \
        --channels 2 --verify off --packet-pages $pp --json |
        keep --argjson rep $i --arg img $img --argjson pp $pp '{rep: $rep, image: $img, packet_pages: $pp, status, memcmp_ok, total_ms, transfer_ms, wire_bytes, packets, cpu_user_s, cpu_sys_s, error}'
    done
  done
  i=$((i + 1))
done
runs_ok
printf "| packet-pages | zero runs | zero total ms median (min..max) | random runs | random total ms median (min..max) | zero/random (medians) | zero wire / RAM |\n|---|---|---|---|---|---|---|\n"
jq -L "$D" -rs 'include "stats";
  def col(f): [.[] | f] | "\(med | if . then . * 10 | round / 10 else "-" end) (\(min)..\(max))";
  def ratio(a; b): if a and b then (a / b) * 1000 | round / 1000 else "-" end;
  group_by(.packet_pages) | .[] |
  (map(select(.image == "zero"))) as $za | (map(select(.image == "random"))) as $ra |
  ($za | oks) as $z | ($ra | oks) as $r |
  "| \(.[0].packet_pages) | \($za | ok_of) | \($z | col(.total_ms)) | \($ra | ok_of) | \($r | col(.total_ms)) | \(ratio([$z[].total_ms] | med; [$r[].total_ms] | med)) | \(if $z[0] then (($z[0].wire_bytes / 2147483648) * 10000 | round) / 100 else "-" end)% |"' "$out"
rm -f "$out"
