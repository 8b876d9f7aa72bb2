#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The restore against fio reading the *same image*: one 1-channel save of
# the 2 GiB mix image, then, for direct I/O off and on, fio's sequential
# read of that file (512k, 1 job, its page cache dropped first:
# invalidate=1; holes read as zeros) and the bench's cold restore of it
# (--restore-cache cold), back to back, each under the bench lock. The
# image's holes split it into one extent per run of non-zero pages, so
# this separates what the file's layout costs from what the restore's
# I/O costs (docs/benchmarks.md, issue 19). Both rates: 2 GiB / time.
set -euo pipefail

build=build dir=/var/tmp reps=2 engine=uring
while (($#)); do
	case $1 in
	--build) build=${2:?}; shift 2 ;;
	--dir) dir=${2:?}; shift 2 ;;
	--reps) reps=${2:?}; shift 2 ;;
	--io-engine) engine=${2:?}; shift 2 ;;
	-h | --help)
		echo "Usage: $0 [--build DIR] [--dir D] [--reps N] [--io-engine E]"
		exit 0 ;;
	*) echo "$0: unknown argument $1" >&2; exit 2 ;;
	esac
done
bench=$build/multifd-bench
lock=${MFD_BENCH_LOCK:-/tmp/mfd-bench.lock}
img=$dir/mfd-file-frag.img
trap 'rm -f "$img"' EXIT
line='"direct \($d): fio read of the image \($f) MB/s, restore '
line+='\(.restore_mbps // 0 | floor) MB/s, ratio '
line+='\(((.restore_mbps // 0) / ($f | tonumber)) * 100 | round / 100), '
line+='\(.status)"'
echo "start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
flock "$lock" "$bench" --ram 2G --image mix --channels 1 --direct-io off \
	--save "$img" --io-engine "$engine" --json 2>/dev/null |
	jq -c '{save_ms, save_written_bytes}'
for d in 0 1; do
	dio=off
	[ $d = 1 ] && dio=on
	for _ in $(seq "$reps"); do
		f=$(flock "$lock" fio --name=r --filename="$img" --rw=read \
			--bs=512k --numjobs=1 --ioengine=psync --direct=$d \
			--invalidate=1 --output-format=json 2>/dev/null |
			jq '.jobs[0].read.bw_bytes / 1e6 | floor')
		j=$(flock "$lock" "$bench" --ram 2G --image mix --channels 1 \
			--direct-io $dio --restore "$img" --restore-cache cold \
			--io-engine "$engine" --json 2>/dev/null || echo '{}')
		jq -r --arg f "$f" --arg d "$dio" "$line" <<<"$j"
	done
done
echo "end $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
