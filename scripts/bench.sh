#!/usr/bin/env bash
# Quick start, command 1: install what is missing, build, and run the
# default benchmark: a real migration of a simulated VM over loopback.
# Extra arguments go to multifd-bench (see `build/multifd-bench --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
cmake --build build -j"$(nproc)" --target multifd-bench >/dev/null
exec build/multifd-bench "$@"
