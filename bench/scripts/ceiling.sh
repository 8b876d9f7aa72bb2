#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Migration throughput as a fraction of the raw loopback TCP ceiling, both
# measured in the same run (see BENCHMARKING: a ratio measured in one run
# says more than an absolute number on a shared, noisy machine).
#
# For each run: iperf3 with as many streams as the bench has channels, then
# multifd-bench --json, then iperf3 again; the ceiling of a run is the mean
# of the iperf3 measurements just before and just after it (with --runs K,
# the measurement after run i is also the one before run i+1).
set -euo pipefail

prog=ceiling.sh

usage() {
	cat <<EOF
Usage: bench/scripts/ceiling.sh [--build DIR] [--runs K] [--iperf-time S]
                        [--save FILE] [-- extra multifd-bench args]

Measure multifd-bench throughput against the raw loopback TCP ceiling
(iperf3 -P CHANNELS -l 1M), both in the same run.

  --build DIR       build directory holding multifd-bench (default: build)
  --runs K          migrations to run (default 1); prints each ratio and
                    the median
  --iperf-time S    seconds per iperf3 measurement (default 5)
  --save FILE       append each run's bench JSON (one line) to FILE
  -- ARGS           passed to multifd-bench after the defaults
                    (--ram 2G --image random --channels 2)

The last line is machine-readable: ratio=R (the median with --runs).
EOF
}

die() {
	echo "$prog: $*" >&2
	exit 1
}

build=build
runs=1
iperf_time=5
save=
extra=()
while (($#)); do
	case $1 in
	--build) build=${2:?--build needs a directory}; shift 2 ;;
	--build=*) build=${1#*=}; shift ;;
	--runs) runs=${2:?--runs needs a count}; shift 2 ;;
	--runs=*) runs=${1#*=}; shift ;;
	--iperf-time) iperf_time=${2:?--iperf-time needs seconds}; shift 2 ;;
	--iperf-time=*) iperf_time=${1#*=}; shift ;;
	--save) save=${2:?--save needs a file}; shift 2 ;;
	--save=*) save=${1#*=}; shift ;;
	-h | --help) usage; exit 0 ;;
	--) shift; extra=("$@"); break ;;
	*) echo "$prog: unknown option '$1'" >&2; usage >&2; exit 2 ;;
	esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "$prog: --runs: '$runs' is not a positive integer" >&2; exit 2; }
[[ $iperf_time =~ ^[1-9][0-9]*$ ]] || { echo "$prog: --iperf-time: '$iperf_time' is not a positive integer" >&2; exit 2; }

for cmd in iperf3 jq; do
	command -v "$cmd" >/dev/null 2>&1 ||
		die "'$cmd' is not installed (Debian package $cmd; scripts/deps.sh installs it)"
done
bench=$build/multifd-bench
[[ -x $bench ]] ||
	die "$bench not found: build first (cmake -S . -B $build && cmake --build $build) or pass --build DIR"

bench_args=(--ram 2G --image random --channels 2 "${extra[@]}")

# The iperf3 stream count follows the bench's channel count (last one wins,
# as in getopt).
channels=2
for ((i = 0; i < ${#bench_args[@]}; i++)); do
	case ${bench_args[i]} in
	--channels) channels=${bench_args[i + 1]:-} ;;
	--channels=*) channels=${bench_args[i]#*=} ;;
	esac
done
[[ $channels =~ ^[1-9][0-9]*$ ]] || die "cannot read the channel count from '${bench_args[*]}'"

tmp=$(mktemp -d)
server_pid=
cleanup() {
	if [[ -n $server_pid ]]; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Whether some socket listens on TCP port $1 (IPv4 or IPv6), from /proc so
# that no extra tool is needed.
listening() {
	local hex
	hex=$(printf '%04X' "$1")
	awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { found = 1 }
		END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# An iperf3 server on a free loopback port: try random ports until one
# starts listening.
start_server() {
	local attempt i
	for attempt in {1..20}; do
		port=$((30000 + RANDOM % 30000))
		listening "$port" && continue
		iperf3 -s -B 127.0.0.1 -p "$port" >"$tmp/server.log" 2>&1 &
		server_pid=$!
		for i in {1..50}; do
			listening "$port" && return 0
			kill -0 "$server_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
		server_pid=
	done
	die "could not start an iperf3 server on loopback after $attempt attempts: $(tail -n 3 "$tmp/server.log" 2>/dev/null)"
}

# Prints the loopback TCP ceiling in MB/s (bytes/s / 1e6).
measure_ceiling() {
	local out=$tmp/iperf.json bps
	if ! iperf3 -c 127.0.0.1 -p "$port" -P "$channels" -l 1M -t "$iperf_time" -J >"$out" 2>&1; then
		die "iperf3 client failed: $(jq -r '.error // empty' "$out" 2>/dev/null || head -c 300 "$out")"
	fi
	bps=$(jq -er '.end.sum_received.bits_per_second' "$out") ||
		die "no sum_received in iperf3 output: $(jq -r '.error // empty' "$out" 2>/dev/null)"
	awk -v b="$bps" 'BEGIN { printf "%.1f", b / 8 / 1e6 }'
}

# Runs the bench once; prints its JSON object (bench/scripts/run1.sh: a crashed
# run is a failed record, counted and left out of the ratios).
run_bench() {
	"$(dirname "$0")/run1.sh" "$bench" --json "${bench_args[@]}"
}

start_server
echo "$prog: $channels stream(s)/channel(s); bench: $bench --json ${bench_args[*]}"

ratios=()
nok=0
before=$(measure_ceiling)
for ((run = 1; run <= runs; run++)); do
	json=$(run_bench)
	[[ -z $save ]] || printf '%s\n' "$json" >>"$save"
	after=$(measure_ceiling)
	if ! jq -e -L "$(dirname "$0")" 'include "stats"; run_ok' <<<"$json" >/dev/null; then
		printf 'run %d: FAILED: status %s, memcmp_ok %s, exit %s: %s (not counted)\n' "$run" \
			"$(jq -r '.status' <<<"$json")" "$(jq -r '.memcmp_ok' <<<"$json")" \
			"$(jq -r '.exit' <<<"$json")" "$(jq -r '.error // empty' <<<"$json")"
		before=$after
		continue
	fi
	nok=$((nok + 1))
	tput=$(jq -r '.throughput_mbps' <<<"$json")
	read -r ceiling ratio < <(awk -v a="$before" -v b="$after" -v t="$tput" \
		'BEGIN { c = (a + b) / 2; printf "%.1f %.2f\n", c, (c > 0 ? t / c : 0) }')
	ratios+=("$ratio")
	printf 'run %d: tcp ceiling %s MB/s (before %s, after %s)\n' "$run" "$ceiling" "$before" "$after"
	printf '       migration throughput %s MB/s, effective %s MB/s, total %s ms, downtime %s ms, cpu %s+%s s\n' \
		"$tput" "$(jq -r '.effective_mbps' <<<"$json")" \
		"$(jq -r '.total_ms' <<<"$json")" "$(jq -r '.downtime_ms' <<<"$json")" \
		"$(jq -r '.cpu_user_s' <<<"$json")" "$(jq -r '.cpu_sys_s' <<<"$json")"
	printf '       ratio %s\n' "$ratio"
	before=$after
done

echo "$nok of $runs ok"
if ((nok == 0)); then
	echo "ratio=null"
	exit 1
fi
median=$(printf '%s\n' "${ratios[@]}" | jq -L "$(dirname "$0")" -rs 'include "stats"; med | . * 100 | round / 100')
if ((runs > 1)); then
	echo "ratios of the ok runs: ${ratios[*]} (median $median)"
fi
echo "ratio=$median"
