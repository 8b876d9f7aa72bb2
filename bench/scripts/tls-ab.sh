#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# A/B of TLS cost between two builds, alternating in one run so both see
# the same machine: tls=psk with the base build, tls=psk with the new one,
# plain TCP with the new one. Prints "label MB/s cpu-seconds" per migration.
#
# Usage: bench/scripts/tls-ab.sh BASE_BENCH NEW_BENCH [ROUNDS] (default 4 rounds;
# 1 GiB random image, 2 channels). Run under flock /tmp/mfd-bench.lock.
set -euo pipefail
base=${1:?base multifd-bench}
new=${2:?new multifd-bench}
rounds=${3:-4}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl rand -hex 32 >"$tmp/psk"
chmod 600 "$tmp/psk"
psk=(--set tls=psk --set "tls-psk-file=$tmp/psk")
for ((i = 1; i <= rounds; i++)); do
	for v in base new plain; do
		case $v in
		base) b=$base a=("${psk[@]}") ;;
		new) b=$new a=("${psk[@]}") ;;
		plain) b=$new a=() ;;
		esac
		"$b" --ram 1G --image random --channels 2 "${a[@]}" --json |
			jq -r --arg v "$v" '"\($v) \(.throughput_mbps) \(.cpu_user_s + .cpu_sys_s)"'
	done
done
