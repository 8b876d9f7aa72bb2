#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The cost of TLS: multifd-bench without TLS, with tls=cert (mutual, X.509
# certificates made here with the openssl command) and with tls=psk, one
# after the other in each run, so that every ratio compares migrations
# measured seconds apart on the same machine.
#
# Usage: bench/scripts/tls.sh [--build DIR] [--runs K] [-- extra multifd-bench args]
# (defaults: build, 3 runs, --ram 2G --image random --channels 2)
set -euo pipefail

build=build
runs=3
extra=()
while (($#)); do
	case $1 in
	--build) build=${2:?}; shift 2 ;;
	--runs) runs=${2:?}; shift 2 ;;
	--) shift; extra=("$@"); break ;;
	-h | --help) sed -n 3,11p "$0"; exit 0 ;;
	*) echo "tls.sh: unknown option '$1'" >&2; exit 2 ;;
	esac
done
for cmd in openssl jq; do
	command -v "$cmd" >/dev/null || { echo "tls.sh: '$cmd' is not installed" >&2; exit 1; }
done
bench=$build/multifd-bench
[[ -x $bench ]] || { echo "tls.sh: $bench not found: build first" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A CA, a destination certificate for 127.0.0.1 and a source certificate.
cert() { # name, subjectAltName, issuer (empty: self-signed CA)
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-subj "/CN=$1" -keyout "$tmp/$1.key" -out "$tmp/$1.csr" 2>/dev/null
	if [[ -z $3 ]]; then
		openssl x509 -req -in "$tmp/$1.csr" -signkey "$tmp/$1.key" -days 1 \
			-extfile <(printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n') \
			-out "$tmp/$1.pem" 2>/dev/null
	else
		openssl x509 -req -in "$tmp/$1.csr" -CA "$tmp/$3.pem" -CAkey "$tmp/$3.key" \
			-CAcreateserial -days 1 -extfile <(printf 'subjectAltName=%s\n' "$2") \
			-out "$tmp/$1.pem" 2>/dev/null
	fi
}
cert ca "" ""
cert dest "IP:127.0.0.1" ca
cert src "DNS:source" ca
openssl rand -hex 32 >"$tmp/psk"

base=(--ram 2G --image random --channels 2 "${extra[@]}")
# One config for both sides (the bench passes --set to both): the
# destination presents dest.pem and requires a client certificate; the
# source presents dest.pem too (it is signed by the same CA).
cert_set=(--set tls=cert --set "tls-ca=$tmp/ca.pem" --set "tls-cert=$tmp/dest.pem"
	--set "tls-key=$tmp/dest.key" --set tls-verify-peer=on)
psk_set=(--set tls=psk --set "tls-psk-file=$tmp/psk")

run() { # label, args...
	local label=$1 json
	shift
	json=$("$bench" --json "${base[@]}" "$@")
	jq -r --arg l "$label" '"\($l) \(.throughput_mbps) \(.cpu_user_s + .cpu_sys_s) \(.total_ms)"' <<<"$json"
}

echo "tls.sh: kernel TLS ULP available: $(grep -qw tls /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null && echo yes || echo no) ($(cat /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null))"
MFD_LOG=2 "$bench" --ram 64M --image random --channels 1 "${cert_set[@]}" 2>&1 >/dev/null |
	grep -m1 'kTLS' | sed 's/^/tls.sh: /' || true
echo "tls.sh: $bench --json ${base[*]} [plain | tls=cert mutual | tls=psk]"
for ((i = 1; i <= runs; i++)); do
	read -r _ tp cp ttp < <(run plain)
	read -r _ tc cc ttc < <(run cert "${cert_set[@]}")
	read -r _ tk ck ttk < <(run psk "${psk_set[@]}")
	awk -v i="$i" -v tp="$tp" -v cp="$cp" -v tc="$tc" -v cc="$cc" -v tk="$tk" -v ck="$ck" 'BEGIN {
		printf "run %d: plain %7.1f MB/s cpu %.3f s | cert %7.1f MB/s cpu %.3f s (x%.2f tput, x%.2f cpu) | psk %7.1f MB/s cpu %.3f s (x%.2f tput, x%.2f cpu)\n",
			i, tp, cp, tc, cc, tc / tp, cc / cp, tk, ck, tk / tp, ck / cp }'
done
