#!/usr/bin/env bash
# The layering check checked: on a copy of the sources it passes, and it
# fails, naming the file and the rule, on each wrong include planted in
# the copy (one at a time).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
check=$src/tests/layering.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for d in include multifd ramblock devstate bench tools examples tests; do
	[ -d "$src/$d" ] && cp -r "$src/$d" "$tmp/"
done
"$check" "$tmp" >/dev/null || { echo "FAIL: the unchanged copy fails"; "$check" "$tmp"; exit 1; }

plant() { # file, include line, text the report must contain
	cp "$tmp/$1" "$tmp/saved"
	sed -i "0,/^#include/s||$2\n#include|" "$tmp/$1"
	grep -qF "$2" "$tmp/$1" || { echo "FAIL: could not plant into $1"; exit 1; }
	local out rc=0
	out=$("$check" "$tmp") || rc=$?
	mv "$tmp/saved" "$tmp/$1"
	if [ $rc -ne 1 ]; then
		echo "FAIL: $1 with $2: exit $rc, expected 1"; echo "$out"; exit 1
	fi
	if ! grep -qF "$3" <<<"$out"; then
		echo "FAIL: $1 with $2: no line with '$3' in:"; echo "$out"; exit 1
	fi
	echo "refused as expected: $1: $2"
}

# file | planted include | what the report must say
while IFS="|" read -r file inc want; do
	plant "$file" "$inc" "$want"
done <<'CASES'
multifd/channels/tcp.c|#include "multifd/config.h"|channels (multifd/channels/tcp.c) may not include multifd/config.h (engine)
multifd/channels/tls.c|#include "multifd/wire.h"|may not include multifd/wire.h (engine)
devstate/reorder.c|#include "multifd/internal.h"|devstate (devstate/reorder.c) may not include multifd/internal.h (engine)
ramblock/scanner.c|#include "multifd/channels/channel.h"|ramblock (ramblock/scanner.c) may not include multifd/channels/channel.h (channels)
multifd/channels/rdma.c|#include "ramblock/ramblock.h"|channels (multifd/channels/rdma.c) may not include ramblock/ramblock.h (ramblock)
multifd/compress/zstd.c|#include "devstate/reorder.h"|compress (multifd/compress/zstd.c) may not include devstate/reorder.h (devstate)
multifd/common/log.c|#include "multifd/compress/codec.h"|common (multifd/common/log.c) may not include multifd/compress/codec.h (compress)
include/multifd/device.h|#include "multifd/common/log.h"|public (include/multifd/device.h) may not include multifd/common/log.h (common)
examples/embed.c|#include "multifd/internal.h"|top (examples/embed.c) may not include multifd/internal.h (engine)
tools/gen-config-doc.c|#include <multifd/config.h>|top (tools/gen-config-doc.c) may not include multifd/config.h (engine)
multifd/channels/uring.c|#include "multifd/nonexistent.h"|: multifd/nonexistent.h: no such header
CASES
echo "PASS: the layering check refuses every planted include"
