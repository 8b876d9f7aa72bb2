#!/usr/bin/env bash
# Quick start, command 2: install what is missing, build, and run the whole
# test suite: a -Werror build, an ASan+UBSan build and a TSan build, each
# running every test through ctest, then the mutation smoke check and a
# short fuzz run. Exit status 0 only if all pass.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc)
status=0

run() { # name, cmake args...
	local dir=build-test-$1
	shift
	echo "=== $dir: configure and build"
	if ! cmake -S . -B "$dir" -DMFD_WERROR=ON "$@" >/dev/null ||
		! cmake --build "$dir" -j"$jobs" >"$dir.log" 2>&1; then
		cat "$dir.log" 2>/dev/null
		echo "=== $dir: BUILD FAILED"
		status=1
		return
	fi
	echo "=== $dir: ctest"
	(cd "$dir" && ctest --output-on-failure -j"$jobs" --timeout 900) || status=1
}

run release -DCMAKE_BUILD_TYPE=RelWithDebInfo
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	run asan -DCMAKE_BUILD_TYPE=Debug -DMFD_SANITIZE=address,undefined
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:history_size=4:suppressions=$PWD/tests/tsan.supp \
	run tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMFD_SANITIZE=thread

# Mutation smoke check: every planted bug in tests/mutations/ must make its
# named test fail (about 1-2 minutes on 2 cores, one release build reused).
echo "=== mutations: tests/mutations/run.sh"
MFD_MUTATION_DIR=$PWD/build-test-mutations tests/mutations/run.sh || status=1

# A short libFuzzer run of every target (docs/security.md), 20 s each.
fuzz() {
	local dir=build-test-fuzz
	echo "=== $dir: configure and build"
	if ! CC=clang cmake -S . -B "$dir" -DMFD_FUZZ=ON -DMFD_WERROR=ON \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null ||
		! cmake --build "$dir" -j"$jobs" --target fuzz_hello fuzz_ctl \
			fuzz_pages fuzz_auth fuzz_decompress fuzz_reorder fuzz_grammar \
			fuzz_rdma fuzz_vdpa fuzz_postcopy fuzz_fileimg \
			>"$dir.log" 2>&1; then
		cat "$dir.log" 2>/dev/null
		echo "=== $dir: BUILD FAILED"
		status=1
		return
	fi
	# 11 targets x 20 s: the CI step stays near 4 minutes plus the build.
	for t in hello ctl pages auth decompress reorder grammar rdma vdpa postcopy \
		fileimg; do
		local work=$dir/work-$t
		mkdir -p "$work"
		echo "=== fuzz_$t: 20 s"
		if ! "$dir/tests/fuzz/fuzz_$t" -max_total_time=20 -max_len=9000 \
			-artifact_prefix="$dir/crash-$t-" "$work" \
			tests/fuzz/corpus/$t >"$dir/fuzz_$t.log" 2>&1; then
			tail -40 "$dir/fuzz_$t.log"
			echo "=== fuzz_$t: FINDING (reproducer in $dir/crash-$t-*)"
			status=1
		fi
	done
}
ASAN_OPTIONS=detect_leaks=1 fuzz

if [ $status -eq 0 ]; then echo "=== all test builds passed"; else echo "=== FAILURES above"; fi
exit $status
