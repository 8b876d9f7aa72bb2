# Sourced by the repeat scripts; D is their folder, out the file that
# collects one JSON line per run.

# One run of a command (the bench, or a wrapper of it) under the bench lock
# (the machine is shared; MFD_BENCH_LOCK moves it), printed as one JSON
# object even when it crashed (run1.sh).
locked_run() {
	flock "${MFD_BENCH_LOCK:-/tmp/mfd-bench.lock}" "$D/run1.sh" "$@"
}

# The run's JSON on stdin, projected by jq (arguments as given), appended to
# $out and shown.
keep() {
	jq -c "$@" | tee -a "$out"
}

# "runs: N of M ok" over $out (stats.jq's run_ok decides).
runs_ok() {
	echo
	jq -L "$D" -rs 'include "stats"; "runs: \(ok_of)"' "$out"
}
