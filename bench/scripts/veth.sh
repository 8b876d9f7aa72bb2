# Sourced by the bench scripts that need two hosts on one machine
# (netns.sh, twohost.sh, qemu_compare.sh): builds and removes two network
# namespaces joined by a veth pair, optionally shaped with tc tbf on both
# ends (docs/benchmarks.md, "Links that are not loopback"). Only the
# namespaces named by the caller are ever touched.

# veth_up NS_SRC NS_DST IF_SRC IF_DST ADDR_SRC/PREFIX ADDR_DST/PREFIX [RATE]
veth_up() {
	local ns_src=$1 ns_dst=$2 if_src=$3 if_dst=$4 a_src=$5 a_dst=$6
	local rate=${7:-} ns
	ip netns add "$ns_src"
	ip netns add "$ns_dst"
	ip link add "$if_src" netns "$ns_src" type veth peer name "$if_dst" \
		netns "$ns_dst"
	ip -n "$ns_src" addr add "$a_src" dev "$if_src"
	ip -n "$ns_dst" addr add "$a_dst" dev "$if_dst"
	for ns in "$ns_src" "$ns_dst"; do
		ip -n "$ns" link set lo up
	done
	ip -n "$ns_src" link set "$if_src" up
	ip -n "$ns_dst" link set "$if_dst" up
	if [ -n "$rate" ]; then
		ip netns exec "$ns_src" tc qdisc add dev "$if_src" root tbf \
			rate "$rate" burst 256kb latency 50ms
		ip netns exec "$ns_dst" tc qdisc add dev "$if_dst" root tbf \
			rate "$rate" burst 256kb latency 50ms
	fi
}

# veth_down NS_SRC NS_DST: deleting a namespace removes the veth end inside
# it and its peer. Never fails (for traps).
veth_down() {
	ip netns del "$1" 2>/dev/null || true
	ip netns del "$2" 2>/dev/null || true
}
