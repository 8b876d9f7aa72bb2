#!/usr/bin/env bash
# multifd-bench dest / source --vm kvm: a running KVM guest moves between
# two processes over loopback. The destination must report the guest
# running there with 0 bad pages and its serial sequence continuing at the
# source's last + 1; a destination with a different vCPU count must be
# refused, leaving the guest running on the source with 0 bad pages.
# Skips (77) where /dev/kvm is not usable.
# Usage: bench_kvm_twohost.sh PATH/TO/multifd-bench PATH/TO/stamp.elf
set -uo pipefail
bench=$1
kernel=$2
tmp=$(mktemp -d)
dpid=
trap '[ -n "$dpid" ] && kill "$dpid" 2>/dev/null; rm -rf "$tmp"' EXIT

field() { jq -r ".$2" "$1"; }

# run NAME DEST_VCPUS: one destination, one source; JSON in $tmp/NAME.*.json
run() {
	local name=$1 dvcpus=$2 uri
	"$bench" dest --vm kvm --vcpus "$dvcpus" --listen tcp:127.0.0.1:0 \
		--guest-measure-ms 400 --json >"$tmp/$name.dest.json" \
		2>"$tmp/$name.dest.err" &
	dpid=$!
	for _ in $(seq 100); do
		uri=$(sed -n 's/.*listening on //p' "$tmp/$name.dest.err")
		[ -n "$uri" ] && break
		kill -0 "$dpid" 2>/dev/null || break
		sleep 0.1
	done
	if [ -z "$uri" ]; then
		wait "$dpid"
		local rc=$?
		dpid=
		if [ $rc -eq 77 ] || grep -q 'not usable here' "$tmp/$name.dest.json"; then
			echo "SKIP: $(cat "$tmp/$name.dest.json")"
			exit 77
		fi
		echo "FAIL: $name: the destination never listened (exit $rc)"
		cat "$tmp/$name.dest.err"
		exit 1
	fi
	"$bench" source --vm kvm --vcpus 2 --kernel "$kernel" --connect "$uri" \
		--guest-measure-ms 400 --json >"$tmp/$name.src.json" \
		2>"$tmp/$name.src.err"
	src_rc=$?
	wait "$dpid"
	dst_rc=$?
	dpid=
}

fail() { echo "FAIL: $*"; cat "$tmp"/*.json "$tmp"/*.err; exit 1; }

run ok 2
[ $src_rc -eq 77 ] && { echo "SKIP: $(cat "$tmp/ok.src.json")"; exit 77; }
[ $src_rc -eq 0 ] || fail "source exit $src_rc"
[ $dst_rc -eq 0 ] || fail "destination exit $dst_rc"
[ "$(field "$tmp/ok.src.json" status)" = ok ] || fail "source status"
[ "$(field "$tmp/ok.dest.json" role)" = destination ] || fail "dest role"
[ "$(field "$tmp/ok.dest.json" guest_runs_on)" = destination ] ||
	fail "the guest does not run on the destination"
[ "$(field "$tmp/ok.dest.json" guest_bad_pages)" = 0 ] || fail "bad pages"
last=$(field "$tmp/ok.src.json" serial_last_seq_source)
first=$(field "$tmp/ok.dest.json" serial_first_seq_dest)
[ "$first" = $((last + 1)) ] ||
	fail "serial: source ended at $last, destination began at $first"
[ "$(field "$tmp/ok.dest.json" serial_lines_after)" -gt 0 ] ||
	fail "no serial output on the destination"
[ "$(field "$tmp/ok.src.json" downtime_ms)" != null ] || fail "no downtime"

# A destination with one vCPU: SETUP refused, the guest stays on the source.
run mismatch 1
[ $src_rc -ne 0 ] || fail "mismatch: the source succeeded"
[ $dst_rc -ne 0 ] || fail "mismatch: the destination succeeded"
[ "$(field "$tmp/mismatch.src.json" guest_runs_on)" = source ] ||
	fail "mismatch: the guest does not run on the source"
[ "$(field "$tmp/mismatch.src.json" guest_bad_pages)" = 0 ] ||
	fail "mismatch: bad pages on the source"
[ "$(field "$tmp/mismatch.src.json" serial_lines_after)" -gt 0 ] ||
	fail "mismatch: the source guest stopped printing"
echo "ok: serial $last -> $first; mismatch refused: $(field "$tmp/mismatch.src.json" reason)"
