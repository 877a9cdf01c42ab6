#!/usr/bin/env bash
# Benchmarks nebula against glibc, jemalloc, mimalloc and tcmalloc.
#
#   scripts/bench.sh                 # full run (5 interleaved runs), writes docs/benchmarks.md
#   scripts/bench.sh --quick         # smoke run, 1/20 of the ops, no markdown
#   scripts/bench.sh --runs 9 --workloads pairs-64,random --allocators glibc,mimalloc,nebula
#
# Installs the packages (scripts/deps.sh), builds a release build in its own directory
# (build-bench by default, NEBULA_BENCH_BUILD_DIR to change; tests off, so a half-written
# test elsewhere cannot stop it), then runs bench/run.py with the arguments given here.
# Benchmarks are never part of the test suite. Leave the machine otherwise idle meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

build_dir=${NEBULA_BENCH_BUILD_DIR:-build-bench}
if [ -f "$build_dir/build.ninja" ]; then
  meson configure "$build_dir" --buildtype=release -Db_ndebug=if-release -Dtests=false >/dev/null
else
  meson setup "$build_dir" --buildtype=release -Db_ndebug=if-release -Dtests=false >/dev/null
fi
ninja -C "$build_dir" >/dev/null

NM_BENCH_COMMAND="scripts/bench.sh${*:+ $*}" exec python3 bench/run.py --build-dir "$build_dir" "$@"
