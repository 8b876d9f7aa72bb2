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
for r in $(seq "$reps"); do
	for mode in bitmap ring; do
		for v in 1 2; do
			for bw in 16M 0; do
				out=$("$bench" --vm kvm --kernel "$kernel" --ram 64M \
					--cmdline rate=2000 --dirty-log $mode --vcpus $v \
					--max-bandwidth $bw 2>/dev/null)
				rc=$?
				[ $rc -eq 77 ] && { echo "skipped: $out"; exit 77; }
				res=$(sed -n 's/^result: //p' <<<"$out")
				tot=$(sed -n 's/^migration: total \([0-9.]*\) ms.*rounds \([0-9]*\).*/\1 ms, \2 rounds/p' <<<"$out")
				down=$(sed -n 's/^downtime: \([0-9.]*\) ms.*/\1/p' <<<"$out")
				sync=$(sed -n 's/^dirty log: .*: \([0-9]*\) syncs, \([0-9.]*\) ms in them.*/\1 syncs \2 ms/p' <<<"$out")
				rate=$(sed -n 's/^guest work (pages verified\/s): before \([0-9]*\), during \([0-9]*\), after \([0-9]*\).*/\1\/\2\/\3/p' <<<"$out")
				gap=$(sed -n 's/.*gap \([0-9.]*\) ms.*/\1/p' <<<"$out")
				bad=$(sed -n 's/^guest bad pages: \([0-9]*\).*/\1/p' <<<"$out")
				printf '%-6s vcpus=%s bw=%-3s exit=%s %s | total %s | downtime %s ms | serial gap %s ms | work before/during/after %s | dirty log %s | bad %s\n' \
					$mode $v $bw $rc "$res" "$tot" "$down" "${gap:--}" "$rate" "$sync" "$bad"
			done
		done
	done
done
