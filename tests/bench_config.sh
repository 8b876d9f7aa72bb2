#!/usr/bin/env bash
# multifd-bench's configuration: precedence defaults < --config FILE <
# command line (--KEY and --set in order, the last wins), the library's
# range check and message, --print-config output that loads again, and file
# errors that name the file and line. Usage: bench_config.sh PATH/TO/multifd-bench
set -euo pipefail
bench=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
refused() { # what, expected stderr (a glob), options: exit 2 and that message
	local what=$1 want=$2 msg rc
	shift 2
	set +e
	msg=$("$bench" "$@" --print-config 2>&1 >/dev/null)
	rc=$?
	set -e
	[ $rc = 2 ] || fail "$what: exit status $rc"
	# shellcheck disable=SC2053 # want is a glob on purpose
	[[ $msg == $want ]] || fail "$what: message: $msg"
}
val() { # key, config text on stdin -> value
	awk -v k="$1" -F' = ' '$1 == k { print $2 }'
}

# defaults (the bench turns verify on)
out=$("$bench" --print-config)
[ "$(val channels <<<"$out")" = 2 ] || fail "default channels"
[ "$(val verify <<<"$out")" = on ] || fail "bench default verify"

# file over defaults
printf '[migration]\nchannels = 4\nverify = off\ndowntime-limit = 2s\n' >"$tmp/a.ini"
out=$("$bench" --config "$tmp/a.ini" --print-config)
[ "$(val channels <<<"$out")" = 4 ] || fail "file channels"
[ "$(val verify <<<"$out")" = off ] || fail "file verify"
[ "$(val downtime-limit <<<"$out")" = 2000ms ] || fail "file time suffix"
[ "$(val packet-pages <<<"$out")" = 512 ] || fail "untouched default"

# command line over file, whatever the order of the options; last wins
out=$("$bench" --set migration.channels=6 --config "$tmp/a.ini" --print-config)
[ "$(val channels <<<"$out")" = 6 ] || fail "--set over file"
out=$("$bench" --config "$tmp/a.ini" --channels 8 --set channels=7 --print-config)
[ "$(val channels <<<"$out")" = 7 ] || fail "last setting wins"
out=$("$bench" --config "$tmp/a.ini" --set channels=7 --channels 8 --print-config)
[ "$(val channels <<<"$out")" = 8 ] || fail "--channels after --set"

# every library key is an option --KEY: one ordered list with --set, the
# last setting wins whichever route it took
out=$("$bench" --max-rounds 5 --set max-rounds=3 --print-config)
[ "$(val max-rounds <<<"$out")" = 3 ] || fail "--set after --max-rounds"
out=$("$bench" --set max-rounds=3 --max-rounds 5 --print-config)
[ "$(val max-rounds <<<"$out")" = 5 ] || fail "--max-rounds after --set"
out=$("$bench" --set migration.max-rounds=3 --max-rounds 5 --max-rounds 7 \
	--print-config)
[ "$(val max-rounds <<<"$out")" = 7 ] || fail "--max-rounds twice"
out=$("$bench" --tracker uffd-wp --dirty-tracker manual --print-config)
[ "$(val dirty-tracker <<<"$out")" = manual ] || fail "--tracker alias order"
out=$("$bench" --dirty-tracker manual --tracker uffd-wp --print-config)
[ "$(val dirty-tracker <<<"$out")" = uffd-wp ] || fail "--tracker alias"
# a key with no shorthand before this change
out=$("$bench" --cpu-throttle-max 60 --print-config)
[ "$(val cpu-throttle-max <<<"$out")" = 60 ] || fail "--cpu-throttle-max"
# --help lists every key of the table
help=$("$bench" --help)
while read -r key; do
	grep -q -- "^  --$key " <<<"$help" || fail "--help lacks --$key"
done < <("$bench" --print-config | awk -F' = ' '/^[a-z]/ { print $1 }')

# the one range check is the library's, with its own message
refused "--channels 100" "multifd-bench: --channels 100: channels: 100 is out of range 1..64" \
	--channels 100
refused "--io-engine" "multifd-bench: --io-engine carrier-pigeon: io-engine: *" \
	--io-engine carrier-pigeon
# a bad value that a later setting would replace still fails: every
# setting is checked when it is applied
refused "bad value before a good one" "multifd-bench: --channels 100: *" \
	--channels 100 --set channels=4

# the printed config loads again and prints the same
"$bench" --config "$tmp/a.ini" --set max-rounds=5 --print-config >"$tmp/p.ini"
"$bench" --config "$tmp/p.ini" --print-config >"$tmp/q.ini"
cmp "$tmp/p.ini" "$tmp/q.ini" || fail "--print-config does not round-trip"

# a bad line: exit 2, message names file and line
printf '[migration]\n# comment\nchannels = 4\n\n\n\nchannels = 99\n' >"$tmp/bad.ini"
refused "bad file" "multifd-bench: $tmp/bad.ini:7: channels: 99 is out of range 1..64" \
	--config "$tmp/bad.ini"
refused "--set" "multifd-bench: --set channels=0: channels: 0 is out of range 1..64" \
	--set channels=0
echo "bench_config: ok"
