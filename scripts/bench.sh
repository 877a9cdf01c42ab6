#!/usr/bin/env bash
# Benchmarks nebula against glibc, jemalloc, mimalloc and tcmalloc.
#
#   scripts/bench.sh                 # full run (5 interleaved runs), writes docs/benchmarks.md
#   scripts/bench.sh --quick         # smoke run, 1/20 of the ops, no markdown
#   scripts/bench.sh --runs 9 --workloads pairs-64,random --allocators glibc,mimalloc,nebula
#
# Installs the packages (scripts/deps.sh), builds a release build in its own directory
# (build-bench by default, NEBULA_BENCH_BUILD_DIR to change; tests off, so a half-written
# test elsewhere cannot stop it) and a second one with the statistics counters compiled out
# (-Dcounters=false, in the same directory name + "-nocounters"; it is the nebula-nocounters
# column, which measures what the counters cost), then runs bench/run.py with the arguments
# given here.
# Benchmarks are never part of the test suite. Leave the machine otherwise idle meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

# quiet CMD...: runs CMD, showing its output only when it fails (meson and ninja print their
# errors on stdout).
quiet() {
  local out
  if ! out=$("$@" 2>&1); then
    printf '%s\n' "$out" >&2
    echo "bench.sh: failed: $*" >&2
    exit 1
  fi
}

# configure_build DIR OPTION...: a release build in DIR, reusing DIR when it is set up
# (--reconfigure rather than `meson configure`, which rejects options added to
# meson_options.txt since DIR was set up).
configure_build() {
  local dir=$1
  shift
  if [ -f "$dir/build.ninja" ]; then
    quiet meson setup --reconfigure "$dir" --buildtype=release -Db_ndebug=if-release -Dtests=false "$@"
  else
    quiet meson setup "$dir" --buildtype=release -Db_ndebug=if-release -Dtests=false "$@"
  fi
  quiet ninja -C "$dir"
}

build_dir=${NEBULA_BENCH_BUILD_DIR:-build-bench}
configure_build "$build_dir" -Dcounters=true
configure_build "$build_dir-nocounters" -Dcounters=false

NM_BENCH_COMMAND="scripts/bench.sh${*:+ $*}" exec python3 bench/run.py --build-dir "$build_dir" \
  --nebula-nocounters "$build_dir-nocounters/preload/libnebula_preload.so" "$@"
