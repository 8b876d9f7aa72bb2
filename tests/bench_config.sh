#!/usr/bin/env bash
# multifd-bench's configuration: precedence defaults < --config FILE <
# command line, --print-config output that loads again, and file errors
# that name the file and line. Usage: bench_config.sh PATH/TO/multifd-bench
set -euo pipefail
bench=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
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

# the printed config loads again and prints the same
"$bench" --config "$tmp/a.ini" --set max-rounds=5 --print-config >"$tmp/p.ini"
"$bench" --config "$tmp/p.ini" --print-config >"$tmp/q.ini"
cmp "$tmp/p.ini" "$tmp/q.ini" || fail "--print-config does not round-trip"

# a bad line: exit 2, message names file and line
printf '[migration]\n# comment\nchannels = 4\n\n\n\nchannels = 99\n' >"$tmp/bad.ini"
set +e
msg=$("$bench" --config "$tmp/bad.ini" --print-config 2>&1 >/dev/null)
rc=$?
set -e
[ $rc = 2 ] || fail "bad file exit status $rc"
[ "$msg" = "multifd-bench: $tmp/bad.ini:7: channels: 99 is out of range 1..64" ] ||
	fail "bad file message: $msg"
set +e
msg=$("$bench" --set channels=0 --print-config 2>&1 >/dev/null)
set -e
[ "$msg" = "multifd-bench: --set channels=0: channels: 0 is out of range 1..64" ] ||
	fail "--set message: $msg"
echo "bench_config: ok"
