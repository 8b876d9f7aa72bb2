#!/usr/bin/env bash
# Installs the build into a prefix inside the build tree, compiles
# examples/embed.c against the INSTALLED package with pkg-config only, and
# runs it: it must exit 0 and report identical memory.
# Usage: embed_installed.sh BUILD_DIR SOURCE_DIR [SANITIZERS]
set -euo pipefail
build=$1 src=$2 san=${3:-}
prefix=$build/test-install
rm -rf "$prefix"
command -v pkg-config >/dev/null || { echo "SKIP: pkg-config missing"; exit 77; }
cmake --install "$build" --prefix "$prefix" >/dev/null
pcdir=$(dirname "$(find "$prefix" -name multifd.pc | head -1)")
[ -f "$pcdir/multifd.pc" ] || { echo "FAIL: no multifd.pc installed"; exit 1; }
export PKG_CONFIG_PATH=$pcdir
flags=$(pkg-config --cflags --libs multifd)
echo "pkg-config --cflags --libs multifd: $flags"
case "$flags" in *"$prefix"*) ;; *) echo "FAIL: flags do not point into $prefix"; exit 1 ;; esac
extra=()
# A sanitizer build installs a sanitized library: the program needs the
# same runtime.
[ -n "$san" ] && extra=(-fsanitize="$san" -fno-omit-frame-pointer -g)
cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror "${extra[@]}" \
	-o "$build/embed-installed" "$src/examples/embed.c" $flags -lpthread
libdir=$(pkg-config --variable=libdir multifd)
# It must run from the installed library, not from the build tree.
deps=$(LD_LIBRARY_PATH=$libdir ldd "$build/embed-installed")
grep -q "$libdir/libmultifd.so" <<<"$deps" ||
	{ echo "FAIL: not linked against the installed library"; echo "$deps"; exit 1; }
out=$(LD_LIBRARY_PATH=$libdir "$build/embed-installed")
echo "$out"
grep -q "destination memory identical" <<<"$out"
