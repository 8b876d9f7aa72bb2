#!/usr/bin/env bash
# Installs what multifd needs from Debian 12 packages, and nothing when all
# is present (a dpkg query, no network). Run as root (or with sudo).
set -euo pipefail

PKGS=(
	# build
	gcc g++ make cmake pkg-config clang clang-format
	# libraries
	libxxhash-dev libcmocka-dev liburing-dev libzstd-dev libinih-dev
	libssl-dev libibverbs-dev librdmacm-dev
	# benchmarks, namespaces, plots
	iperf3 fio jq iproute2 gnuplot-nox
	# sanitizer runtimes for clang (fuzzing)
	libclang-rt-14-dev
)

missing=()
for p in "${PKGS[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
