#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# QEMU's multifd against ours, same image, same link, same run (issue 3).
#
# Writes multifd-bench's mix image to a file, backs a QEMU source's guest RAM
# with it (the guest never runs: -S, TCG), and migrates it with multifd
# (2 channels, compression none and zstd level 1) to a QEMU destination in a
# second network namespace, over a veth pair shaped with tc tbf on both ends
# exactly like bench/scripts/netns.sh. Then multifd-bench migrates the same image
# over the very same veth pair. QEMU and multifd-bench runs are interleaved
# (none, zstd, none, zstd per repeat) so each tool's zstd/none ratio comes
# from the same run. Before timing, one pass per codec with the destination's
# RAM backed by a shared file checks that QEMU really moved the image (cmp).
#
#   bench/scripts/qemu_compare.sh [R] [--rate 1gbit] [--ram 1G] [--channels 2]
#                         [--downtime-ms MS] [--zstd-level N]
#                         [--mfd-zstd-args "ARGS"] [--no-verify-pass]
#
# R repeats (default 3). --zstd-level sets both tools' level (default 1,
# QEMU's); --mfd-zstd-args adds options to multifd-bench's zstd runs only.
# Needs root. Installs qemu-system-x86 with apt-get if missing. Only the
# namespaces, veth pair, files and QEMU processes this script creates are
# touched, and they are removed at exit (trap).
set -euo pipefail
. "$(dirname "$0")/veth.sh"

prog=qemu_compare.sh
cd "$(dirname "$0")/../.."

reps=3
rate=1gbit
ram=1G
channels=2
zstd_level=1
downtime_ms=300000
mfd_zstd_args=""
verify_pass=1
while (($#)); do
	case $1 in
	--rate) rate=${2:?}; shift 2 ;;
	--ram) ram=${2:?}; shift 2 ;;
	--channels) channels=${2:?}; shift 2 ;;
	--downtime-ms) downtime_ms=${2:?}; shift 2 ;;
	--zstd-level) zstd_level=${2:?}; shift 2 ;;
	--mfd-zstd-args) mfd_zstd_args=${2?}; shift 2 ;;
	--mfd-zstd-args=*) mfd_zstd_args=${1#*=}; shift ;;
	--no-verify-pass) verify_pass=0; shift ;;
	-h | --help) sed -n '4,/^[^#]/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
	[0-9]*) reps=$1; shift ;;
	*) echo "$prog: unknown argument '$1'" >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "$prog: needs root (netns, tc)" >&2; exit 1; }

# --- dependencies --------------------------------------------------------
if ! command -v qemu-system-x86_64 >/dev/null; then
	echo "# $prog: installing qemu-system-x86" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		qemu-system-x86 >&2
fi
command -v tc >/dev/null || { echo "$prog: tc (iproute2) missing" >&2; exit 1; }
bench=build/multifd-bench
if [ ! -x "$bench" ]; then
	echo "# $prog: building the release bench" >&2
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >&2
	cmake --build build -j2 >&2
fi

# --- state and cleanup ---------------------------------------------------
work=$(mktemp -d /var/tmp/mfd-qemucmp.XXXXXX)
ns_src="qcmp-src-$$"
ns_dst="qcmp-dst-$$"
if_src="qcs$$"
if_dst="qcd$$"
addr_src=10.232.0.2
addr_dst=10.232.0.1
qemu_pids=()

cleanup() {
	local p
	for p in "${qemu_pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${qemu_pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	veth_down "$ns_src" "$ns_dst"
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the image -----------------------------------------------------------
img="$work/mix.img"
"$bench" --ram "$ram" --image mix --seed 1 --dump-image "$img" >&2
cat "$img" >/dev/null # in the page cache before any timing

# --- the link (as bench/scripts/netns.sh builds it) ------------------------------
veth_up "$ns_src" "$ns_dst" "$if_src" "$if_dst" "$addr_src/24" "$addr_dst/24" "$rate"

# --- QMP driver ----------------------------------------------------------
cat >"$work/qmp.py" <<'EOF'
# Drives one QEMU migration over QMP. Timing comes from QEMU's own MIGRATION
# events (capability "events"): each carries the wall-clock time at which
# QEMU changed state, so no tight polling competes with the migration for
# the two cores.
import json, socket, sys, time

class Qmp:
    def __init__(self, path, timeout=30.0):
        end = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                break
            except OSError:
                s.close()
                if time.monotonic() > end:
                    raise
                time.sleep(0.05)
        self.f = s.makefile("rw")
        self.events = []
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def read(self):
        line = self.f.readline()
        if not line:
            raise RuntimeError("QMP connection closed")
        r = json.loads(line)
        if "event" in r:
            self.events.append(r)
        return r

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            r = self.read()
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError("%s: %s" % (name, r["error"]))

    def migration_state(self, states):
        """Waits for a MIGRATION event with a status in states; returns
        (status, event time in seconds)."""
        i = 0
        while True:
            while i < len(self.events):
                e = self.events[i]
                i += 1
                st = e.get("data", {}).get("status")
                if e["event"] == "MIGRATION" and st in states:
                    ts = e["timestamp"]
                    return st, ts["seconds"] + ts["microseconds"] / 1e6
            self.read()

def main():
    src_sock, dst_sock, comp, level, channels, dest, port, downtime, out = sys.argv[1:10]
    src, dst = Qmp(src_sock), Qmp(dst_sock)
    for q in (src, dst):
        q.cmd("migrate-set-capabilities",
              capabilities=[{"capability": "multifd", "state": True},
                            {"capability": "events", "state": True}])
        q.cmd("migrate-set-parameters", **{
            "multifd-channels": int(channels),
            "multifd-compression": comp,
            "multifd-zstd-level": int(level),
            "max-bandwidth": 10 * 1024**3,
            "downtime-limit": int(downtime)})
    uri = "tcp:%s:%s" % (dest, port)
    dst.cmd("migrate-incoming", uri=uri)
    src.cmd("migrate", uri=uri)
    final = ("completed", "failed", "cancelled")
    _, t_start = src.migration_state(("setup",))
    st, t_src = src.migration_state(final)
    dst_st, t_dst = (None, None)
    if st == "completed":
        # The destination completes once it has loaded everything (what
        # multifd-bench's total_ms, ended by the destination's
        # acknowledgement, also covers); QEMU's total-time ends earlier,
        # when the source has handed everything to its sockets.
        dst_st, t_dst = dst.migration_state(final)
    # QEMU 7.2 sets "completed" before it stores total-time: re-query.
    info = src.cmd("query-migrate")
    for _ in range(250):
        if st != "completed" or info.get("total-time"):
            break
        time.sleep(0.02)
        info = src.cmd("query-migrate")
    ram = info.get("ram", {})
    params = src.cmd("query-migrate-parameters")
    ms = lambda t: round((t - t_start) * 1000, 1) if t else None
    res = {"tool": "qemu", "compression": comp,
           "multifd_zstd_level": params.get("multifd-zstd-level"),
           "multifd_channels": params.get("multifd-channels"),
           "status": st, "dest_status": dst_st,
           "total_time_ms": info.get("total-time"),
           "event_src_done_ms": ms(t_src),
           "event_dest_done_ms": ms(t_dst),
           "setup_time_ms": info.get("setup-time"),
           "downtime_ms": info.get("downtime"),
           "ram_transferred": ram.get("transferred"),
           "ram_total": ram.get("total"),
           "multifd_bytes": ram.get("multifd-bytes"),
           "normal_pages": ram.get("normal"),
           "duplicate_pages": ram.get("duplicate"),
           "mbps": ram.get("mbps")}
    if st != "completed":
        res["error"] = info.get("error-desc")
    with open(out, "w") as f:
        f.write(json.dumps(res) + "\n")
    for q in (src, dst):
        try:
            q.cmd("quit")
        except Exception:
            pass

main()
EOF

# shellcheck disable=SC2054 # commas belong to -machine
qemu_common=(-machine pc,memory-backend=ram -accel tcg -m "$ram" -S
	-nodefaults -display none -serial none -monitor none)

# Bytes the source end of the veth has sent (data direction), for wire
# bytes both tools agree on: QEMU 7.2 counts multifd pages uncompressed.
tx_bytes() {
	ip -n "$ns_src" -s -j link show dev "$if_src" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["bytes"])'
}

# addkey JSON_LINE KEY VALUE -> JSON_LINE with "KEY": VALUE after "tool"
addkey() {
	python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d[sys.argv[2]]=int(sys.argv[3]); print(json.dumps(d))' "$1" "$2" "$3"
}

# qemu_pass COMP DEST_RAM_FILE|"" -> prints the result JSON line
qemu_pass() {
	local comp=$1 dst_file=$2 dst_mem p1 p2 rc=0 tx0
	if [ -n "$dst_file" ]; then
		rm -f "$dst_file"
		truncate -s "$ram" "$dst_file"
		dst_mem="memory-backend-file,id=ram,size=$ram,mem-path=$dst_file,share=on"
	else
		dst_mem="memory-backend-ram,id=ram,size=$ram"
	fi
	rm -f "$work/src.qmp" "$work/dst.qmp" "$work/res.json"
	ip netns exec "$ns_dst" qemu-system-x86_64 "${qemu_common[@]}" \
		-object "$dst_mem" -qmp "unix:$work/dst.qmp,server=on,wait=off" \
		-incoming defer 2>"$work/dst.err" &
	p1=$!
	ip netns exec "$ns_src" qemu-system-x86_64 "${qemu_common[@]}" \
		-object "memory-backend-file,id=ram,size=$ram,mem-path=$img,share=off" \
		-qmp "unix:$work/src.qmp,server=on,wait=off" 2>"$work/src.err" &
	p2=$!
	qemu_pids=("$p1" "$p2")
	tx0=$(tx_bytes)
	python3 "$work/qmp.py" "$work/src.qmp" "$work/dst.qmp" "$comp" \
		"$zstd_level" "$channels" "$addr_dst" 4444 "$downtime_ms" \
		"$work/res.json" || rc=$?
	# quit was sent; give QEMU a moment, then make sure.
	for p in "$p1" "$p2"; do
		for _ in $(seq 50); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	qemu_pids=()
	if [ "$rc" != 0 ] || [ ! -s "$work/res.json" ]; then
		echo "$prog: QEMU pass ($comp) failed; stderr:" >&2
		cat "$work/src.err" "$work/dst.err" >&2
		return 1
	fi
	addkey "$(cat "$work/res.json")" link_tx_bytes $(($(tx_bytes) - tx0))
}

ours_pass() {
	local comp=$1 extra=() tx0 line
	if [ "$comp" = zstd ]; then
		# shellcheck disable=SC2206 # word splitting intended
		extra=(--zstd-level "$zstd_level" $mfd_zstd_args)
	fi
	# Same link as QEMU: the namespaces above, the arguments bench/scripts/netns.sh
	# would add.
	tx0=$(tx_bytes)
	line=$("$bench" --uri "tcp:$addr_dst:0" --dest-netns "$ns_dst" \
		--source-netns "$ns_src" --ram "$ram" --image mix --seed 1 \
		--channels "$channels" --verify off --compression "$comp" \
		"${extra[@]}" --json)
	line=$(addkey "$line" link_tx_bytes $(($(tx_bytes) - tx0)))
	echo "{\"tool\": \"multifd\", ${line#\{}"
}

field() { # field JSON_LINE KEY
	python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

echo "### date: $(date -u '+%Y-%m-%d %H:%M UTC') kernel $(uname -r) cores $(nproc) load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "### $(qemu-system-x86_64 --version | head -1)"
echo "### link: veth $ns_src <-> $ns_dst, tbf rate $rate burst 256kb latency 50ms both ends;" \
	"image: multifd-bench --ram $ram --image mix --seed 1 ($(stat -c %s "$img") bytes)"
echo "### qemu: multifd channels $channels, zstd level $zstd_level, max-bandwidth 10 GiB/s," \
	"downtime-limit $downtime_ms ms, TCG, guest paused (-S)"
echo "### ours: $bench --ram $ram --image mix --seed 1 --channels $channels --verify off" \
	"--compression none|zstd (zstd: --zstd-level $zstd_level${mfd_zstd_args:+ $mfd_zstd_args}) --json," \
	"on the same namespaces"

# Context: how far zstd level 1 gets on the whole image in one stream.
if command -v zstd >/dev/null; then
	echo "zstd -b$zstd_level on the image file (one core, whole file):" \
		"$(zstd -b"$zstd_level" -i2 "$img" 2>&1 | tr '\r' '\n' | grep -e '->' | tail -1 | sed 's/^.*: *//')"
fi

# --- did QEMU move the image? -------------------------------------------
if [ "$verify_pass" = 1 ]; then
	for comp in none zstd; do
		line=$(qemu_pass "$comp" "$work/dst.img")
		if cmp "$img" "$work/dst.img" >/dev/null; then
			verdict="identical"
		else
			verdict="DIFFERENT ($(cmp -l "$img" "$work/dst.img" | wc -l) bytes differ)"
		fi
		echo "verify-pass qemu $comp: $line"
		echo "verify-pass qemu $comp: destination RAM file vs image (cmp, $(stat -c %s "$work/dst.img") bytes): $verdict"
		rm -f "$work/dst.img"
	done
fi

# --- timed runs, interleaved ---------------------------------------------
q_ratios=()
qw_ratios=()
m_ratios=()
for r in $(seq "$reps"); do
	qn=$(qemu_pass none "")
	echo "rep $r: $qn"
	qz=$(qemu_pass zstd "")
	echo "rep $r: $qz"
	mn=$(ours_pass none)
	echo "rep $r: $mn"
	mz=$(ours_pass zstd)
	echo "rep $r: $mz"
	for l in "$qn" "$qz"; do
		[ "$(field "$l" status)" = completed ] || { echo "$prog: QEMU migration not completed" >&2; exit 1; }
	done
	for l in "$mn" "$mz"; do
		[ "$(field "$l" status)" = ok ] || { echo "$prog: multifd-bench failed" >&2; exit 1; }
		[ "$(field "$l" memcmp_ok)" = True ] || { echo "$prog: multifd-bench destination differs" >&2; exit 1; }
	done
	qr=$(python3 -c "print('%.3f' % ($(field "$qz" total_time_ms) / $(field "$qn" total_time_ms)))")
	qw=$(python3 -c "print('%.3f' % ($(field "$qz" event_dest_done_ms) / $(field "$qn" event_dest_done_ms)))")
	mr=$(python3 -c "print('%.3f' % ($(field "$mz" total_ms) / $(field "$mn" total_ms)))")
	q_ratios+=("$qr")
	qw_ratios+=("$qw")
	m_ratios+=("$mr")
	echo "rep $r: zstd/none total time: qemu $qr ($(field "$qz" total_time_ms) / $(field "$qn" total_time_ms) ms)," \
		"qemu to destination completed $qw ($(field "$qz" event_dest_done_ms) / $(field "$qn" event_dest_done_ms) ms)," \
		"multifd $mr ($(field "$mz" total_ms) / $(field "$mn" total_ms) ms);" \
		"link bytes none/zstd: qemu $(field "$qn" link_tx_bytes)/$(field "$qz" link_tx_bytes)," \
		"multifd $(field "$mn" link_tx_bytes)/$(field "$mz" link_tx_bytes)"
done

median() {
	printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'
}
qm=$(median "${q_ratios[@]}")
qwm=$(median "${qw_ratios[@]}")
mm=$(median "${m_ratios[@]}")
echo "median zstd/none over $reps repeats: qemu total-time $qm (${q_ratios[*]})," \
	"qemu migrate to destination completed $qwm (${qw_ratios[*]})," \
	"multifd total_ms $mm (${m_ratios[*]})"
python3 -c "
for what, q in (('total-time', $qm), ('destination completed', $qwm)):
    m = $mm
    d = 100 * (1 - m / q)
    print('multifd / qemu (%s), medians: %.3f: multifd zstd/none is %.1f%% %s than QEMU 7.2\'s'
          % (what, m / q, abs(d), 'lower' if d >= 0 else 'higher'))"
