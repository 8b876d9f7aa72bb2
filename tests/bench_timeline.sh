#!/usr/bin/env bash
# multifd-bench --timeline: one row per 100 ms interval, time strictly
# increasing, bytes never decreasing, and the last row is the end of the
# run. Usage: bench_timeline.sh PATH/TO/multifd-bench
set -euo pipefail
bench=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bench" --ram 256M --dest-populate off --timeline "$tmp/t.csv" --json >"$tmp/r.json"
head -1 "$tmp/t.csv" | grep -qx 'time_s,bytes_sent,throughput_mbps,pending_bytes,dirty_rate_mbps,phase,round,expected_downtime_ms,budget_ms,over_part' ||
	{ echo "FAIL: header"; exit 1; }
wall=$(sed -n 's/.*"wall_ms": *\([0-9.]*\).*/\1/p' "$tmp/r.json")
[ -n "$wall" ] || { echo "FAIL: no wall_ms in the report"; exit 1; }
awk -F, -v wall="$wall" '
NR == 1 { next }
{
	n++
	t = $1 + 0
	if (n == 1 && t != 0) { print "FAIL: first row at " t; bad = 1 }
	if (n > 1 && t <= last) { print "FAIL: time not increasing at row " n; bad = 1 }
	if (n > 1 && $2 + 0 < bytes) { print "FAIL: bytes decreasing at row " n; bad = 1 }
	# one row per interval: every row but the last is taken at a distinct
	# multiple of 100 ms (or late, covering the slots it missed)
	slot[n] = int(t / 0.1 + 1e-6)
	last = t; bytes = $2 + 0; phase = $6
}
END {
	for (i = 2; i < n; i++)
		if (slot[i] <= slot[i - 1]) { print "FAIL: rows " i - 1 " and " i " in the same 100 ms interval"; bad = 1 }
	# rows: t=0, one per elapsed 100 ms (none lost, none extra), the end
	max = int(last / 0.1) + 2
	if (n > max) { print "FAIL: " n " rows for " last " s (at most " max ")"; bad = 1 }
	if (n < 2) { print "FAIL: " n " rows"; bad = 1 }
	if (phase != "completed") { print "FAIL: last phase " phase; bad = 1 }
	if (last * 1000 > wall + 1 ) { print "FAIL: last row " last " s after the run (" wall " ms)"; bad = 1 }
	if (bad) exit 1
	printf "bench_timeline: ok, %d rows over %.3f s\n", n, last
}' "$tmp/t.csv"
