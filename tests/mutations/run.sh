#!/usr/bin/env bash
# Mutation smoke check: each tests/mutations/*.mut plants one known bug in a
# scratch copy of the tree and names the test that must catch it. Fails if
# a mutation survives (its test passes), if its test fails on the unmutated
# tree (it would catch nothing), or if a mutation no longer applies (the
# code it targets moved: refresh the .mut file).
#
# A .mut file holds:
#   file: PATH          one source file, relative to the tree
#   sed:  EXPR          one sed expression; it must change that file
#   test: BINARY [PAT]  a test binary (tests/BINARY) and optionally a cmocka
#                       pattern of cases to run ($MFD_TEST_FILTER)
# and # comments.
#
# Usage: tests/mutations/run.sh [NAME...]   (default: every .mut)
# Scratch: $MFD_MUTATION_DIR (default build-mutations/ in the tree): a copy
# of the tracked files and one release build dir, reused between runs.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
mdir=$src/tests/mutations
work=${MFD_MUTATION_DIR:-$src/build-mutations}
tree=$work/tree
build=$work/build
jobs=$(nproc)
tmo=${MFD_MUTATION_TIMEOUT:-120}

if [ $# -gt 0 ]; then
	muts=()
	for n in "$@"; do muts+=("$mdir/${n%.mut}.mut"); done
else
	muts=("$mdir"/*.mut)
fi

field() { # file key -> value (first line "key: value")
	sed -n "s/^$2: //p" "$1" | head -1
}

# The tracked files as they are in the working tree (uncommitted edits
# included); tar keeps mtimes, so unchanged files are not rebuilt.
mkdir -p "$tree" "$build"
(cd "$src" && git ls-files -z -co --exclude-standard | tar --null -T - -cf -) | tar -xf - -C "$tree"

files=()
for m in "${muts[@]}"; do
	[ -f "$m" ] || { echo "mutation $m: no such file"; exit 2; }
	f=$(field "$m" file)
	[ -f "$tree/$f" ] || { echo "mutation $(basename "$m"): file $f is gone: refresh it"; exit 1; }
	files+=("$f")
done

restore() { # file: the tree's pristine copy, newer than any mutant object
	cp "$src/$1" "$tree/$1"
	touch "$tree/$1"
}

cmake -S "$tree" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
build_test() { # binary -> 0 or build log on failure
	if ! cmake --build "$build" -j"$jobs" --target "$1" >"$build/mut-build.log" 2>&1; then
		tail -30 "$build/mut-build.log"
		return 1
	fi
}
run_test() { # binary [pattern] -> test's exit status
	(cd "$build/tests" &&
		MFD_TEST_FILTER=${2:-} timeout "$tmo" "./$1" >"$build/mut-test.log" 2>&1)
}

status=0
# Each named test must pass on the unmutated tree first.
for f in "${files[@]}"; do restore "$f"; done
declare -A baseline=()
for m in "${muts[@]}"; do
	t=$(field "$m" test)
	[ -n "${baseline[$t]:-}" ] && continue
	read -r bin pat <<<"$t"
	build_test "$bin" || { echo "=== $bin: BUILD FAILED (unmutated)"; exit 1; }
	if run_test "$bin" "${pat:-}"; then
		baseline[$t]=ok
	else
		rc=$?
		tail -20 "$build/mut-test.log"
		echo "=== $t: fails on the unmutated tree (exit $rc): it cannot catch anything"
		exit 1
	fi
done

for m in "${muts[@]}"; do
	name=$(basename "$m" .mut)
	f=$(field "$m" file)
	expr=$(field "$m" sed)
	t=$(field "$m" test)
	read -r bin pat <<<"$t"
	restore "$f"
	sed -i -e "$expr" "$tree/$f"
	if cmp -s "$src/$f" "$tree/$f"; then
		echo "=== mutation $name: NO LONGER APPLIES (sed changed nothing in $f): refresh tests/mutations/$name.mut"
		status=1
		continue
	fi
	t0=$(date +%s)
	if ! build_test "$bin"; then
		echo "=== mutation $name: does not build: refresh tests/mutations/$name.mut"
		status=1
	elif run_test "$bin" "${pat:-}"; then
		echo "=== mutation $name: SURVIVED ($t passed with it)"
		status=1
	else
		rc=$?
		why="exit $rc"
		[ $rc -eq 124 ] && why="timed out after ${tmo}s"
		[ $rc -eq 77 ] && { echo "=== mutation $name: test skipped (exit 77): not a catch"; status=1; restore "$f"; continue; }
		echo "=== mutation $name: caught by $t ($why, $(($(date +%s) - t0)) s)"
	fi
	restore "$f"
done
# Leave the build matching the unmutated tree.
build_test "$bin" >/dev/null 2>&1 || true
[ $status -eq 0 ] && echo "=== mutations: all ${#muts[@]} caught" || echo "=== mutations: FAILURES above"
exit $status
