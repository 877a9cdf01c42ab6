#!/usr/bin/env bash
# Installs the Debian packages nebula-memory needs to build, test and benchmark.
# Safe to run again: it installs only what is missing.
set -euo pipefail

packages=(
  build-essential g++ clang meson ninja-build pkg-config   # build
  libcriterion-dev libunwind-dev                            # tests, backtraces
  libclang-rt-dev                                           # libFuzzer (scripts/fuzz.sh)
  libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4          # benchmark baselines
  python3 libpython3.11-testsuite sqlite3 git coreutils     # real programs under the preload
  time procps valgrind gdb                                  # measurement, checks, hang backtraces
  binutils                                                  # addr2line for scripts/nebula-symbolize
  prometheus                                                # promtool checks the Prometheus dump
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "nebula: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/nebula-apt.log 2>&1; then
  $SUDO apt-get update >/dev/null 2>&1 || true
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/nebula-apt.log 2>&1 || {
    echo "nebula: apt-get install failed, see /tmp/nebula-apt.log" >&2; tail -20 /tmp/nebula-apt.log >&2; exit 1; }
fi
