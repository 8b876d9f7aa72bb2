#!/bin/sh
# Pre-copy with a busy guest: runs multifd-bench RUNS times with the given
# options and prints one line per run (downtime and its parts, rounds, guest
# slowdown; a failed or crashed run too, with its status), then "N of M ok"
# and how many of the ok runs met the downtime limit.
# Usage: bench/scripts/precopy.sh RUNS [multifd-bench options...]
set -e
D=$(dirname "$0")
runs=$1
shift
bench=${BENCH:-build/multifd-bench}
echo "precopy.sh: $bench --json $*"
i=1
while [ "$i" -le "$runs" ]; do
	"$D/run1.sh" "$bench" --json "$@" 2>/dev/null
	i=$((i + 1))
done | python3 -c '
import json, sys
ok = met_n = n = 0
for line in sys.stdin:
    r = json.loads(line)
    n += 1
    # As stats.jq run_ok: completed, and memory equal where it was checked.
    good = r.get("status") == "ok" and r.get("memcmp_ok") is not False
    ok += good
    if not good:
        print("run %d: %s %s (exit %s, memcmp_ok %s)  <- failed: not counted" % (
            n, r.get("status"), r.get("error", ""), r.get("exit"),
            r.get("memcmp_ok")))
        continue
    lim = float(r.get("downtime_limit", "300ms").rstrip("ms"))
    met = r["downtime_ms"] <= lim
    met_n += met
    print("run %d: %s %s tracker=%s rounds=%d downtime=%.1f ms (sync %.1f, pages %.1f, end/verify %.1f, ack %.1f) expected=%.1f ms forced=%s throttle=%d%% dirty=%.0f MB/s total=%.0f ms slowdown=%.1f%% work before/during/after=%.1f/%.1f/%.1f M/s stop_hooks=%d%s" % (
        n, r["status"], r.get("error", ""), r["tracker"], r["rounds"], r["downtime_ms"],
        r["down_sync_ms"], r["down_pages_ms"], r["down_end_ms"], r["down_ack_ms"],
        r["expected_downtime_ms"], r["forced"], r["throttle_pct"], r["dirty_rate_mbps"],
        r["total_ms"], r.get("guest_slowdown_pct", 0), r.get("guest_work_before", 0),
        r.get("guest_work_during", 0), r.get("guest_work_after", 0), r["stop_hooks"],
        "" if met else "  <- over the limit"))
print("%d of %d ok" % (ok, n))
print("%d of %d ok runs completed with downtime within the limit" % (met_n, ok))
'
