#!/usr/bin/env bash
# The repeat scripts of bench/ with a fake multifd-bench whose run number
# FAIL_AT fails (crashes without output, or reports status "failed" with
# numbers that would move a median): each script must print "N-1 of N ok"
# and leave the failed run out of its medians and ratios. Run number n of
# the fake reports n * 100 for every time and throughput, so each expected
# median below names exactly the runs it is made of.
#   tests/bench_scripts.sh SOURCE_DIR
set -uo pipefail
src=$(cd "${1:?source dir}" && pwd)
command -v jq >/dev/null || { echo "jq not installed: skipped"; exit 77; }
command -v flock >/dev/null || { echo "flock not installed: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export MFD_BENCH_LOCK=$tmp/lock
mkdir -p "$tmp/build" "$tmp/bin"

cat >"$tmp/build/multifd-bench" <<'FAKE'
#!/usr/bin/env bash
n=$(($(cat "$FAKE_STATE" 2>/dev/null || echo 0) + 1))
echo "$n" >"$FAKE_STATE"
v=$((n * 100))
status=ok memcmp=true rc=0
if [ "$n" = "${FAIL_AT:-0}" ]; then
	[ "$FAIL_MODE" = crash ] && { echo "# run $n: about to crash"; exit 139; }
	status=failed memcmp=false rc=1
fi
echo "# a comment line"
cat <<JSON
{"status":"$status","memcmp_ok":$memcmp,"total_ms":$v,"transfer_ms":$v,"downtime_ms":$v,"throughput_mbps":$v,"effective_mbps":$v,"wire_bytes":2147483648,"packets":1,"cpu_user_s":1,"cpu_sys_s":1,"src_cpu_s":1,"dst_cpu_s":1,"src_cpu_s_per_gib":$v,"dst_cpu_s_per_gib":$v,"raw_pages":1,"zero_pages":1,"compression_ratio":1,"compress_cpu_s":1,"decompress_cpu_s":1,"tracker":"manual","rounds":3,"down_sync_ms":1,"down_pages_ms":1,"down_end_ms":1,"down_ack_ms":1,"expected_downtime_ms":1,"forced":false,"throttle_pct":0,"dirty_rate_mbps":1,"stop_hooks":1,"downtime_limit":"1000000ms","device_throughput_mbps":$v,"ram_throughput_mbps":$v,"device_downtime_ms":$v,"devices_equal":true,"warm_host_passes":1,"host_reported_mib":$n,"steal_ms":0}
JSON
exit $rc
FAKE
# netns.sh / twohost.sh stand-in: everything after "--" is the bench's.
cat >"$tmp/build/wrap" <<FAKE
#!/usr/bin/env bash
while [ \$# -gt 0 ] && [ "\$1" != -- ]; do shift; done
shift
exec "$tmp/build/multifd-bench" "\$@"
FAKE
# iperf3 stand-in: a server that listens, a client at 8 Gbit/s (1000 MB/s).
cat >"$tmp/bin/iperf3" <<'FAKE'
#!/usr/bin/env bash
port=0
for ((i = 1; i <= $#; i++)); do [ "${!i}" = -p ] && { j=$((i + 1)); port=${!j}; }; done
if [ "$1" = -s ]; then
	exec python3 -c 'import socket,sys,time
s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1]))); s.listen(1); time.sleep(600)' "$port"
fi
echo '{"end":{"sum_received":{"bits_per_second":8e9}}}'
FAKE
chmod +x "$tmp/build/multifd-bench" "$tmp/build/wrap" "$tmp/bin/iperf3"
export BENCH=$tmp/build/multifd-bench

fails=0
# run NAME FAIL_AT FAIL_MODE CMD...: output in $tmp/NAME.out
run() {
	local name=$1
	export FAIL_AT=$2 FAIL_MODE=$3 FAKE_STATE=$tmp/$name.state
	shift 3
	rm -f "$FAKE_STATE"
	(cd "$src" && "$@") >"$tmp/$name.out" 2>&1
}
expect() { # NAME TEXT: the output holds TEXT (a fixed string)
	if grep -qF -- "$2" "$tmp/$1.out"; then
		echo "ok   $1: $2"
	else
		echo "FAIL $1: no '$2' in:"
		sed 's/^/     /' "$tmp/$1.out"
		fails=$((fails + 1))
	fi
}

# zero_random: 2 repeats x (zero, random); run 2 (random, rep 1) crashes.
# Zero: runs 1, 3 -> median 200; random: run 4 only -> 400; ratio 0.5.
run zero_random 2 crash bench/scripts/zero_random.sh 2 128
expect zero_random "runs: 3 of 4 ok"
expect zero_random "| 128 | 2 of 2 ok | 200 (100..300) | 1 of 2 ok | 400 (400..400) | 0.5 |"

# io_engines_repeat: 2 repeats x 3 channel counts x 2 engines; run 3
# (2 channels, sockets, rep 1) reports failed with throughput 300. Left
# out, that row is run 9 alone (900); counted, it would be 600.
run io_engines 3 json bench/scripts/io_engines_repeat.sh 2
expect io_engines "runs: 11 of 12 ok"
expect io_engines "| 2 | sockets | 1 of 2 ok | 900 (900..900) |"
expect io_engines "| 1 | sockets | 2 of 2 ok | 400 (100..700) |"

# precopy: 3 runs, run 2 crashes.
run precopy 2 crash bench/scripts/precopy.sh 3
expect precopy "2 of 3 ok"
expect precopy "2 of 2 ok runs completed with downtime within the limit"

# zstd_mix: 2 repeats x 3 codecs through the netns stand-in; run 1 (none,
# rep 1) crashes: none is run 4 alone (400), zstd runs 2 and 5 (350).
NETNS=$tmp/build/wrap run zstd_mix 1 crash bench/scripts/zstd_mix.sh 2
expect zstd_mix "runs: 5 of 6 ok"
expect zstd_mix "| none | 1 of 2 ok | 400 (400..400) |"
expect zstd_mix "| zstd | 2 of 2 ok | 350 (200..500) | 2147.5 | 0.875 |"

# ceiling: 3 runs against a 1000 MB/s ceiling; run 2 fails. Ratios of
# runs 1 and 3: 0.10 and 0.30, median 0.2 (0.2 with run 2 too: so the
# ratios line must list only two).
PATH=$tmp/bin:$PATH run ceiling 2 json bench/scripts/ceiling.sh --build "$tmp/build" --runs 3 --iperf-time 1
expect ceiling "2 of 3 ok"
expect ceiling "ratios of the ok runs: 0.10 0.30 (median 0.2)"
expect ceiling "ratio=0.2"

# tuning-sweep: 18 configurations once each; run 5 crashes.
TWOHOST=$tmp/build/wrap run tuning_sweep 5 crash bench/scripts/tuning-sweep.sh 256M 1
expect tuning_sweep "17 of 18 ok"

# tuning-sweep2, io-engine section: 4 configurations x 2; run 2 (random
# sockets, second repeat) fails: 1 of 2, and no median from one run.
run tuning_sweep2 2 json python3 bench/scripts/tuning-sweep2.py io-engine 2
expect tuning_sweep2 "$(printf '%-28s %s' "random sockets" "1 of 2 ok")"
expect tuning_sweep2 "$(printf '%-28s %s' "random uring" "MEDIAN 3 350.0")"
if grep -q "random sockets.*MEDIAN" "$tmp/tuning_sweep2.out"; then
	echo "FAIL tuning_sweep2: a median of one ok run"
	fails=$((fails + 1))
fi

# devstate_repeat: 2 repeats x (multifd, multifd-copy, main without
# restore cost; multifd, main with): runs 1-5, 6-10. Run 2 (multifd-copy,
# rep 1) crashes: that row is run 7 alone. multifd: runs 1, 6 (350);
# main: 3, 8 (550); with restore cost multifd 4, 9 and main 5, 10.
run devstate 2 crash bench/scripts/devstate_repeat.sh 2
expect devstate "runs: 9 of 10 ok"
expect devstate "| 0 | multifd | 2 of 2 ok | 350 (100..600) | 350 | 1 | 350 (100..600) |"
expect devstate "| 0 | multifd-copy | 1 of 2 ok | 700 (700..700) | 700 | 1 | 700 (700..700) |"
expect devstate "| 0 | main | 2 of 2 ok | 550 (300..800) | 550 | - | 550 (300..800) |"
expect devstate "multifd/main device throughput (medians, no restore cost): 0.636"
expect devstate "multifd-copy/main device throughput (medians, no restore cost): 1.273"
expect devstate "multifd/multifd-copy device throughput (medians, no restore cost): 0.5"
expect devstate "multifd/main downtime (medians, 2 ms/MiB): 0.867"

# cold_repeat: 2 repeats (prealloc, cold, cold-ahead, cold-nowarm; then
# without cold-nowarm): runs 1-4, 5-7. Run 6 (cold, rep 2) fails: cold
# is run 2 alone, 200 against prealloc's median of runs 1, 5 (300).
run cold 6 json bench/scripts/cold_repeat.sh 2 3
expect cold "runs: 6 of 7 ok"
expect cold "| cold | 1 of 2 ok | 200 (200..200) | 0.667 | - | - | - | 0 | 1 | 2 (2) | 1 |"
expect cold "| cold-ahead | 2 of 2 ok | 500 (300..700) | 1.667 |"

[ $fails -eq 0 ] && echo "all bench scripts count failed runs" || echo "$fails check(s) failed"
exit $((fails > 0))
