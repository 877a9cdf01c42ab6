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
#
#   scripts/bench.sh --idle          # RSS over time (bench/idle.py, 3 interleaved runs): threads
#                                    # that allocate, free and go idle; writes the charts in
#                                    # docs/images/, docs/benchmarks-idle.md and its section in
#                                    # docs/benchmarks.md (about 4 minutes)
#   scripts/bench.sh --idle --quick  # smoke run of it, nothing written under docs/
#   scripts/bench.sh --idle --runs 5 --scenarios ring-exit --allocators glibc,nebula
#
# --idle (first argument only) builds just the first build below and runs bench/idle.py with
# the other arguments instead of bench/run.py; it also installs gnuplot-nox (for the charts)
# with apt-get if it is missing: only here, it is not one of scripts/deps.sh's packages.
# The full run does not run the idle benchmark; it keeps the section an earlier --idle run
# wrote (bench/run.py includes docs/benchmarks-idle.md).
#
#   scripts/bench.sh --programs      # real programs (python3, sqlite3, sort, git, g++) under
#                                    # each allocator (bench/programs.py, 3 interleaved runs;
#                                    # about 4 minutes): median time and peak RSS (ru_maxrss),
#                                    # writes docs/benchmarks-programs.md and its section in
#                                    # docs/benchmarks.md
#   scripts/bench.sh --programs --quick     # smoke run: 1 run, small inputs, nothing under docs/
#   scripts/bench.sh --programs --no-docs   # full run, tables printed, docs/ untouched
#
# --programs (first argument only), like --idle, builds just the first build below and runs
# bench/programs.py with the other arguments.
#
#   scripts/bench.sh --devmode       # what preset=development costs on real programs
#                                    # (bench/devmode.py, 3 interleaved runs; about 2 minutes):
#                                    # writes docs/benchmarks-devmode.md and its section in
#                                    # docs/benchmarks.md. Uses the main build (scripts/build.sh,
#                                    # tests on: it runs tests/programs/nm_cxx).
# Benchmarks are never part of the test suite. Leave the machine otherwise idle meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."

idle=0
if [ "${1:-}" = "--idle" ]; then
  idle=1
  shift
fi
programs=0
if [ "${1:-}" = "--programs" ]; then
  programs=1
  shift
fi
if [ "${1:-}" = "--devmode" ]; then
  shift
  bash scripts/build.sh >/dev/null
  exec python3 bench/devmode.py "$@"
fi

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

if [ "$programs" = 1 ]; then
  NM_BENCH_COMMAND="scripts/bench.sh --programs${*:+ $*}" exec python3 bench/programs.py --build-dir "$build_dir" "$@"
fi

if [ "$idle" = 1 ]; then
  if ! command -v gnuplot >/dev/null; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "bench.sh: installing gnuplot-nox (charts of the idle benchmark)" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y --no-install-recommends gnuplot-nox >/tmp/nebula-apt-gnuplot.log 2>&1 || {
      $SUDO apt-get update >/dev/null 2>&1 || true
      $SUDO apt-get install -y --no-install-recommends gnuplot-nox >/tmp/nebula-apt-gnuplot.log 2>&1 ||
        echo "bench.sh: gnuplot-nox not installed (see /tmp/nebula-apt-gnuplot.log): no charts" >&2
    }
  fi
  NM_BENCH_COMMAND="scripts/bench.sh --idle${*:+ $*}" exec python3 bench/idle.py --build-dir "$build_dir" "$@"
fi

configure_build "$build_dir-nocounters" -Dcounters=false

NM_BENCH_COMMAND="scripts/bench.sh${*:+ $*}" exec python3 bench/run.py --build-dir "$build_dir" \
  --nebula-nocounters "$build_dir-nocounters/preload/libnebula_preload.so" "$@"
