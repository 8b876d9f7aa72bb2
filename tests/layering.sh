#!/usr/bin/env bash
# The include rules of docs/architecture.md ("Layers"), checked on every
# #include of every C file: a file may include headers of its own layer and
# of the layers below it, never above or beside. Exit 0 when every include
# keeps the rules, 1 (and one line per offence) otherwise.
# Usage: layering.sh [SOURCE_ROOT]    (default: this script's repository)
set -uo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root" || exit 2

# The layer of a path relative to the root, in $layer.
layer_of() { # sets $layer
	case $1 in
	include/multifd/*) layer=public ;;
	multifd/common/* | multifd/compat/*) layer=common ;;
	multifd/compress/*) layer=compress ;;
	multifd/channels/*) layer=channels ;;
	multifd/*/*) layer=unplaced ;; # a new folder: give it a row below
	multifd/*) layer=engine ;;
	ramblock/*) layer=ramblock ;;
	devstate/*) layer=devstate ;;
	bench/* | tools/* | examples/*) layer=top ;;
	tests/*) layer=tests ;;
	*) layer=unplaced ;;
	esac
}

# Which layers a layer may include.
allowed() {
	case $1 in
	public) echo "public" ;;
	common) echo "public common" ;;
	ramblock | devstate | compress | channels) echo "public common $1" ;;
	engine) echo "public common ramblock devstate compress channels engine" ;;
	top) echo "public top" ;;
	# Tests reach the internals on purpose (their own include path).
	tests) echo "public common ramblock devstate compress channels engine tests" ;;
	*) echo "" ;;
	esac
}

# Single exceptions: "file-pattern header", each with its reason.
exception() {
	case "$1 $2" in
	# The simulated device is a library of its own (mfd_simdev) built on
	# the public API; its header is all its users see.
	"bench/"*" devstate/simdev.h") return 0 ;;
	# So is the fake vhost-vdpa device (mfd_fakevdpa, tests/fake_vdpa.c):
	# the bench's --devices-vdpa drives it.
	"bench/vdpa.c tests/fake_vdpa.h") return 0 ;;
	# mfd-zerobench measures the internal zero-page paths (links
	# multifd_internal and includes the source tree on purpose).
	"bench/zerobench.c multifd/compress/codec.h") return 0 ;;
	# mfd-digestbench likewise measures the internal digest builds.
	"bench/digestbench.c multifd/common/digest.h") return 0 ;;
	# mfd-wpcost times the uffd-wp tracker's kernel calls, whose
	# definitions Debian 12's headers lack (multifd/compat/linux.h).
	"bench/wpcost.c multifd/compat/linux.h") return 0 ;;
	# The KVM tests drive the bench's VMM (bench/kvm/, itself on the
	# public API only), and the test guests share its PVH structs.
	"tests/test_kvm.c bench/kvm/"*) return 0 ;;
	"tests/guests/"*" bench/kvm/pvh.h") return 0 ;;
	# The bench's simulated guest (bench/guest.c, on the public API
	# only) is tested on its own: its work rate is what the post-copy
	# and throttle comparisons report.
	"tests/test_bench_guest.c bench/guest.h" | \
	"tests/test_bench_guest.c bench/vm.h") return 0 ;;
	esac
	return 1
}

# Resolves an include to a path relative to the root (in $path); empty
# for a system header, "?name" for a quoted header that does not exist.
resolve() { # file, quote char, name
	local dir=${1%/*}
	path=
	if [ "$2" = '"' ] && [ -f "$dir/$3" ]; then
		path=$dir/$3
		while [[ $path =~ ^(.*/)?[^/]+/\.\./(.*)$ ]]; do
			path=${BASH_REMATCH[1]}${BASH_REMATCH[2]}
		done
	elif [ -f "include/$3" ]; then
		path=include/$3
	elif [ -f "$3" ]; then
		path=$3
	elif [ "$2" = '"' ]; then
		path="?$3"
	fi
}

bad=0
files=$(find include multifd ramblock devstate bench tools examples tests \
	-name '*.[ch]' 2>/dev/null | sort)
[ -n "$files" ] || { echo "layering: no sources under $root"; exit 2; }
re='^[[:space:]]*#[[:space:]]*include[[:space:]]*(["<])([^">]*)[">]'
for f in $files; do
	layer_of "$f"
	from=$layer
	ok=" $(allowed "$from") "
	while IFS=: read -r line text; do
		[[ $text =~ $re ]] || continue
		name=${BASH_REMATCH[2]}
		resolve "$f" "${BASH_REMATCH[1]}" "$name"
		[ -n "$path" ] || continue
		if [ "${path#\?}" != "$path" ]; then
			echo "layering: $f:$line: $name: no such header"
			bad=1
			continue
		fi
		layer_of "$path"
		case $ok in *" $layer "*) continue ;; esac
		exception "$f" "$path" && continue
		echo "layering: $f:$line: $from ($f) may not include $path ($layer)"
		bad=1
	done < <(grep -n -E '^[[:space:]]*#[[:space:]]*include' "$f")
done
[ $bad -eq 0 ] && echo "layering: $(wc -w <<<"$files") files keep the include rules"
exit $bad
