#!/usr/bin/env bash
# Live migration of a running KVM guest (multifd-bench --vm kvm) with each
# dirty-log mode, 1 and 2 vCPUs, with and without a bandwidth limit; one
# compact line per run (docs/benchmarks.md). Run it under
# flock /tmp/mfd-bench.lock. Usage: bench/scripts/kvm.sh [BUILD_DIR] [REPEATS]
set -uo pipefail
build=${1:-build}
reps=${2:-1}
bench=$build/multifd-bench
kernel=$build/tests/guests/stamp.elf
echo "# $(date -u '+%F %T UTC') $(uname -r) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $bench --vm kvm --kernel $kernel --ram 64M --cmdline rate=2000 --dirty-log MODE --vcpus N [--max-bandwidth 16M]"
echo "# post-copy rows add: --postcopy manual --postcopy-after-ms 300 --max-postcopy-bandwidth 16M --verify off --device-transfer main"
for r in $(seq "$reps"); do
	for mode in bitmap ring; do
		for v in 1 2; do
			for bw in 16M 0; do
				out=$("$bench" --vm kvm --kernel "$kernel" --ram 64M \
					--cmdline rate=2000 --dirty-log $mode --vcpus $v \
					--max-bandwidth $bw --json 2>/dev/null)
				rc=$?
				[ $rc -eq 77 ] && { echo "skipped: $out"; exit 77; }
				jq -r --arg mode $mode --arg v $v --arg bw $bw --arg rc $rc '
					def n: if . == null then "-" else tostring end;
					"\($mode) vcpus=\($v) bw=\($bw) exit=\($rc) \(.status)\(if .reason then "; " + .reason else "" end)" +
					" | total \(.total_ms|n) ms, \(.rounds|n) rounds | downtime \(.downtime_ms|n) ms" +
					" | serial gap \(.serial_gap_ms|n) ms | work before/during/after \(.guest_rate_before|n)/\(.guest_rate_during|n)/\(.guest_rate_after|n)" +
					" | dirty log \(.dirty_syncs|n) syncs \(.dirty_sync_ms|n) ms" +
					(if .ring_entries then " ring full exits \(.ring_full_exits|n) overflows \(.ring_overflows|n)" else "" end) +
					" | bad \(.guest_bad_pages|n)"' <<<"$out" ||
					echo "$mode vcpus=$v bw=$bw exit=$rc: no report"
			done
		done
	done
	# Pre-copy against post-copy, same guest and link (bitmap mode).
	for v in 1 2; do
		for pc in off manual; do
			extra=(--verify off --device-transfer main)
			# The same 16 MB/s after the switch as before it.
			[ $pc = manual ] && extra+=(--postcopy manual --postcopy-after-ms 300 --max-postcopy-bandwidth 16M)
			out=$("$bench" --vm kvm --kernel "$kernel" --ram 64M \
				--cmdline rate=2000 --vcpus $v --max-bandwidth 16M \
				"${extra[@]}" --json 2>/dev/null)
			rc=$?
			jq -r --arg pc $pc --arg v $v --arg rc $rc '
				def n: if . == null then "-" else tostring end;
				"postcopy=\($pc) vcpus=\($v) bw=16M exit=\($rc) \(.status)\(if .reason then "; " + .reason else "" end)" +
				" | total \(.total_ms|n) ms, \(.rounds|n) rounds | downtime \(.downtime_ms|n) ms" +
				" | serial gap \(.serial_gap_ms|n) ms | work before/during/after \(.guest_rate_before|n)/\(.guest_rate_during|n)/\(.guest_rate_after|n)" +
				(if .postcopy then " | post-copy \(.postcopy_ms|n) ms, faults \(.dest_faults|n), requests \(.page_requests|n), p50/p99 \(.request_p50_ms|n)/\(.request_p99_ms|n) ms, blocktime \(.blocktime_ms|n) ms" else "" end) +
				" | bad \(.guest_bad_pages|n)"' <<<"$out" ||
				echo "postcopy=$pc vcpus=$v exit=$rc: no report"
		done
	done
done
