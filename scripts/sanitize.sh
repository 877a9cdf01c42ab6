#!/usr/bin/env bash
# Builds libnebula_memory, the preload and the unit tests under sanitizers and runs the unit
# suite in each build; fails on any report.
#
#   build-asan   AddressSanitizer + UndefinedBehaviorSanitizer: every unit test
#   build-tsan   ThreadSanitizer: the thread tests (Criterion's runner cannot run under TSan,
#                Snaipe/Criterion#274; tests/unit/meson.build builds them without it there)
#
# Usage: scripts/sanitize.sh [asan|tsan]...   (default: both)
# Environment: CC/CXX as usual (gcc by default; NEBULA_TSAN_CC=clang to use clang for TSan).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# Sanitizer runtimes: stop at the first report. The tests ask for impossible sizes on
# purpose (the contract says NULL + ENOMEM), so the runtimes must return NULL too, not abort.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export TSAN_OPTIONS="halt_on_error=1:allocator_may_return_null=1:second_deadlock_stack=1"

log() { printf 'sanitize: %s\n' "$*" >&2; }

# setup DIR OPTIONS...: configure a build dir (again, if it exists) with these options.
setup() {
  local dir=$1
  shift
  if [ -f "$dir/meson-private/coredata.dat" ]; then
    meson configure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@" >/dev/null
  fi
}

# preload_usable NAME DIR: the sanitizer build's preload is built without the sanitizer (a
# sanitizer runtime must come first in a process; a sanitized preload crashed every
# uninstrumented program it was preloaded into). Check it: no sanitizer runtime needed, and
# sort and python3 under it give the plain runs' output.
preload_usable() {
  local name=$1 so=$PWD/$2/preload/libnebula_preload.so
  if ldd "$so" | grep -Eq 'lib(a|t|ub)san'; then
    log "$name: $so needs a sanitizer runtime: it cannot be preloaded into ordinary programs"
    return 1
  fi
  local want got
  want=$(seq 1 200000 | sort -R --random-source=/dev/zero | sort -n | md5sum)
  got=$(seq 1 200000 | LD_PRELOAD=$so sort -R --random-source=/dev/zero | LD_PRELOAD=$so sort -n | md5sum) || got="failed"
  if [ "$want" != "$got" ]; then
    log "$name: sort under $so: '$got', plain '$want'"
    return 1
  fi
  local py='import json; print(len(json.dumps([{str(i): [i] * 9} for i in range(50000)])))'
  want=$(/usr/bin/python3 -c "$py")
  got=$(LD_PRELOAD=$so NEBULA_MEM_CONFIG=stats=exit,stats_signal=none /usr/bin/python3 -c "$py" 2>"$2/preload-stats.txt") || got="failed"
  if [ "$want" != "$got" ] || ! grep -q '^nebula: statistics of pid' "$2/preload-stats.txt"; then
    log "$name: python3 under $so: '$got', plain '$want' (or the preload did not run: $2/preload-stats.txt)"
    return 1
  fi
  log "$name: the preload built here runs sort and python3 as glibc does"
}

# run NAME DIR [WRAPPER]: build everything in DIR (the preload must compile too) and run
# the unit suite.
run() {
  local name=$1 dir=$2 wrapper=${3:-}
  log "$name: building in $dir"
  if ! ninja -C "$dir" >"$dir/sanitize-build.log" 2>&1; then
    tail -40 "$dir/sanitize-build.log" >&2
    log "$name: BUILD FAILED (full log: $dir/sanitize-build.log)"
    return 1
  fi
  preload_usable "$name" "$dir" || return 1
  log "$name: running the unit and lib suites"
  local args=(-C "$dir" --suite unit --suite lib --print-errorlogs --no-rebuild)
  [ -n "$wrapper" ] && args+=(--wrapper "$wrapper")
  if meson test "${args[@]}"; then
    log "$name: clean"
    return 0
  fi
  log "$name: FAILED (logs: $dir/meson-logs/testlog.txt)"
  return 1
}

asan() {
  setup build-asan -Dbuildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false \
    -Dtests=true
  run asan build-asan
}

tsan() {
  local cc=${NEBULA_TSAN_CC:-${CC:-cc}}
  local cxx=c++
  case "$cc" in clang*) cxx=clang++ ;; esac
  if [ ! -f build-tsan/meson-private/coredata.dat ]; then
    CC=$cc CXX=$cxx meson setup build-tsan -Dbuildtype=debugoptimized -Db_sanitize=thread \
      -Db_lundef=false -Dtests=true >/dev/null
  else
    setup build-tsan -Dbuildtype=debugoptimized -Db_sanitize=thread -Db_lundef=false -Dtests=true
  fi
  # TSan's fixed shadow layout breaks with the high mmap randomization of recent kernels
  # ("unexpected memory mapping"): run the tests without ASLR when setarch can do that.
  local wrapper=""
  if command -v setarch >/dev/null 2>&1 && setarch "$(uname -m)" -R true 2>/dev/null; then
    wrapper="setarch $(uname -m) -R"
  fi
  run tsan build-tsan "$wrapper"
}

which=("$@")
[ ${#which[@]} -eq 0 ] && which=(asan tsan)
status=0
for w in "${which[@]}"; do
  case "$w" in
    asan) asan || status=1 ;;
    tsan) tsan || status=1 ;;
    *) log "unknown sanitizer '$w' (asan, tsan)"; exit 2 ;;
  esac
done
if [ $status -eq 0 ]; then log "all clean"; else log "reports found"; fi
exit $status
