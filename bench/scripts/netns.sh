#!/usr/bin/env bash
# Runs multifd-bench across two network namespaces joined by a veth pair,
# optionally shaped with tc tbf on both ends, so source and destination talk
# over a link that is not loopback. Only the namespaces and the veth pair
# this script creates are ever touched, and they are always removed (trap).
#
#   bench/scripts/netns.sh [--rate 1gbit] [--bench PATH] -- [multifd-bench args...]
#
# The bench gets --uri tcp:10.231.0.1:0 --dest-netns mfd-dst-$$
# --source-netns mfd-src-$$ in front of the given arguments. Needs root
# (CAP_NET_ADMIN, CAP_SYS_ADMIN for setns).
set -euo pipefail
. "$(dirname "$0")/veth.sh"

rate=""
bench="$(dirname "$0")/../../build/multifd-bench"
while [ $# -gt 0 ]; do
	case "$1" in
	--rate) rate="$2"; shift 2 ;;
	--bench) bench="$2"; shift 2 ;;
	--) shift; break ;;
	*) echo "usage: $0 [--rate R] [--bench PATH] -- [bench args]" >&2; exit 2 ;;
	esac
done

ns_src="mfd-src-$$"
ns_dst="mfd-dst-$$"
if_src="mfds$$"
if_dst="mfdd$$"
addr_src=10.231.0.2
addr_dst=10.231.0.1

cleanup() {
	# Deleting a namespace removes the veth end inside it and its peer.
	veth_down "$ns_src" "$ns_dst"
}
trap cleanup EXIT INT TERM

veth_up "$ns_src" "$ns_dst" "$if_src" "$if_dst" "$addr_src/24" "$addr_dst/24" "$rate"
echo "# netns.sh: $ns_src ($addr_src) <-> $ns_dst ($addr_dst), rate ${rate:-unshaped}" >&2

"$bench" --uri "tcp:$addr_dst:0" --dest-netns "$ns_dst" --source-netns "$ns_src" "$@"
