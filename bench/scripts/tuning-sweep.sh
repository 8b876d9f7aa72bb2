#!/usr/bin/env bash
# The measurements behind docs/tuning.md: multifd-bench over bench/scripts/twohost.sh
# (two namespaces, veth, optionally tbf-shaped) and over loopback, one line
# per run. Run under the benchmark lock:
#   flock /tmp/mfd-bench.lock bench/scripts/tuning-sweep.sh [RAM] [REPEATS]
# Needs root (namespaces) and jq. Each run's status and memcmp_ok are
# printed (a crashed run too, bench/scripts/run1.sh), and "N of M ok" at the end.
# $BENCH and $TWOHOST replace build/multifd-bench and bench/scripts/twohost.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
ram=${1:-256M} reps=${2:-2}
bench=${BENCH:-build/multifd-bench}
twohost=${TWOHOST:-bench/scripts/twohost.sh}
fields='"\(.throughput_mbps) \(.total_ms // 0|floor) \((.downtime_ms // 0)*10|floor/10) \(.rounds) \(((.cpu_user_s // 0) + (.cpu_sys_s // 0))*1000|floor) \(.status) \(.memcmp_ok)"'
nruns=0 nok=0
echo "# $(date -u +%F) $(uname -r) $(nproc) cores, --ram $ram, image random, $reps run(s) each"
echo "link      channels packet_pages  MB/s  total_ms downtime_ms rounds src_cpu_ms status memcmp_ok"
run() { # link channels packet-pages
	local ra=()
	case $1 in
	loopback) ;;
	veth) ra=(--) ;;
	*) ra=(--rate "$1" --) ;;
	esac
	for _ in $(seq "$reps"); do
		if [ "$1" = loopback ]; then
			j=$(bench/scripts/run1.sh "$bench" --ram "$ram" --channels "$2" --packet-pages "$3" --json 2>/dev/null)
		else
			j=$(bench/scripts/run1.sh "$twohost" "${ra[@]}" --ram "$ram" --channels "$2" --packet-pages "$3" --json 2>/dev/null)
		fi
		nruns=$((nruns + 1))
		if jq -e -L bench/scripts 'include "stats"; run_ok' <<<"$j" >/dev/null; then
			nok=$((nok + 1))
		fi
		printf '%-9s %8s %12s  %s\n' "$1" "$2" "$3" "$(jq -r "$fields" <<<"$j")"
	done
}
for c in 1 2 4; do run 1gbit $c 128; done
for p in 32 512; do run 1gbit 2 $p; done
for c in 1 4; do run 300mbit $c 128; done
for c in 1 2 4; do run veth $c 128; done
for c in 1 2 4 8; do run loopback $c 128; done
for p in 16 32 512 1024; do run loopback 2 $p; done
echo "$nok of $nruns ok"
