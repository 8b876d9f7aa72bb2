#!/usr/bin/env bash
# Two-host migration on one machine: multifd-bench's destination and source
# in two network namespaces joined by a veth pair, optionally rate-shaped
# with tc tbf. The namespaces are created here and always removed (trap).
#
# Usage: bench/scripts/twohost.sh [--rate RATE] [--bench PATH] [--] [BENCH OPTION]...
#   --rate RATE   shape the link both ways: tbf rate RATE burst 256kb
#                 latency 50ms (e.g. 1gbit, 500mbit); default: unshaped
#   --bench PATH  multifd-bench binary (default build/multifd-bench)
# Every other option goes to both sides (so --ram, --blocks, --image,
# --seed, --set, --config are the same on both), except --timeline/--plot/
# --json which the source alone gets. Needs root (ip netns, tc).
#
# Example: bench/scripts/twohost.sh --rate 1gbit -- --ram 512M --channels 4 --plot /tmp/p.png
set -euo pipefail
. "$(dirname "$0")/veth.sh"
cd "$(dirname "$0")/../.."

rate= bench=build/multifd-bench
while [ $# -gt 0 ]; do
	case $1 in
	--rate) rate=$2; shift 2 ;;
	--bench) bench=$2; shift 2 ;;
	--) shift; break ;;
	*) break ;;
	esac
done
[ "$(id -u)" -eq 0 ] || { echo "twohost: needs root (ip netns, tc)" >&2; exit 2; }
[ -x "$bench" ] || { echo "twohost: $bench not built (cmake --build build)" >&2; exit 2; }
command -v ip >/dev/null || { echo "twohost: ip missing (apt-get install iproute2)" >&2; exit 2; }

both=() srconly=()
while [ $# -gt 0 ]; do
	case $1 in
	--timeline|--plot) srconly+=("$1" "$2"); shift 2 ;;
	--json) srconly+=("$1"); shift ;;
	*) both+=("$1"); shift ;;
	esac
done

# Names unique to this run, addresses in a private /30 (RFC 1918).
tag=mfd$$
ns_src=$tag-src ns_dst=$tag-dst
ip_src=10.213.0.1 ip_dst=10.213.0.2 port=4444
tmp=$(mktemp -d)
dpid=
cleanup() {
	[ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
	veth_down "$ns_src" "$ns_dst"
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

veth_up "$ns_src" "$ns_dst" "v$tag" "w$tag" "$ip_src/30" "$ip_dst/30" "$rate"
echo "twohost: $ns_src ($ip_src) <-veth-> $ns_dst ($ip_dst), link ${rate:-unshaped}" >&2

ip netns exec "$ns_dst" "$bench" dest --listen tcp:$ip_dst:$port "${both[@]}" \
	>"$tmp/dest.out" 2>"$tmp/dest.err" &
dpid=$!
# Wait until the destination listens (it prints "listening on URI").
for _ in $(seq 600); do
	grep -q "listening on" "$tmp/dest.err" 2>/dev/null && break
	kill -0 "$dpid" 2>/dev/null || break
	sleep 0.1
done
if ! grep -q "listening on" "$tmp/dest.err"; then
	echo "twohost: destination did not start:" >&2
	cat "$tmp/dest.err" >&2
	exit 1
fi

set +e
ip netns exec "$ns_src" "$bench" source --connect tcp:$ip_dst:$port "${both[@]}" "${srconly[@]}"
src_rc=$?
wait "$dpid"
dst_rc=$?
dpid=
set -e
echo "--- destination (exit $dst_rc):" >&2
grep -v "listening on" "$tmp/dest.err" >&2 || true
cat "$tmp/dest.out" >&2
[ $src_rc -eq 0 ] && [ $dst_rc -eq 0 ]
