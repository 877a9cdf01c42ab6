#!/usr/bin/env bash
# Fuzzes the NEBULA_MEM_CONFIG parser with libFuzzer (clang, AddressSanitizer + UBSan) for a
# bounded time, starting from the seed corpus in tests/fuzz/corpus. Exits non-zero on a
# crash, a hang, a sanitizer report or a broken invariant (tests/fuzz/fuzz_config.c); the
# input that caused it is left in $dir/fuzz-artifacts/.
#
# Usage: scripts/fuzz.sh [SECONDS]        (default 60, or NEBULA_FUZZ_TIME)
# Environment: NEBULA_FUZZ_BUILD_DIR (default build-fuzz), NEBULA_FUZZ_JOBS (parallel fuzzing
# processes, default 1), NEBULA_FUZZ_ARGS (more libFuzzer flags).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
dir=${NEBULA_FUZZ_BUILD_DIR:-build-fuzz}
seconds=${1:-${NEBULA_FUZZ_TIME:-60}}
jobs=${NEBULA_FUZZ_JOBS:-1}

log() { printf 'fuzz: %s\n' "$*" >&2; }

case "$seconds" in '' | *[!0-9]*) log "SECONDS must be a whole number, not '$seconds'"; exit 2 ;; esac

if [ ! -f "$dir/meson-private/coredata.dat" ]; then
  log "configuring $dir with clang"
  CC=clang CXX=clang++ meson setup "$dir" -Dbuildtype=debugoptimized -Dtests=true \
    >"$root/$dir.setup.log" 2>&1 || { tail -20 "$root/$dir.setup.log" >&2; exit 1; }
  mv "$root/$dir.setup.log" "$dir/fuzz-setup.log"
fi
if ! ninja -C "$dir" tests/fuzz/fuzz_config >"$dir/fuzz-build.log" 2>&1; then
  tail -20 "$dir/fuzz-build.log" >&2
  log "BUILD FAILED: clang must link -fsanitize=fuzzer (libclang-rt-dev; scripts/deps.sh installs it)"
  exit 1
fi

# New inputs go to a corpus in the build dir; the committed seeds are only read. libFuzzer
# runs in the build dir, where -jobs writes its fuzz-N.log files.
mkdir -p "$dir/fuzz-corpus" "$dir/fuzz-artifacts"

export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:allocator_may_return_null=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

log "running for ${seconds}s ($jobs job(s)); log: $dir/fuzz.log"
args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096
      -print_final_stats=1 -dict="$root/tests/fuzz/config.dict" -artifact_prefix=fuzz-artifacts/)
[ "$jobs" -gt 1 ] && args+=(-jobs="$jobs" -workers="$jobs")
# shellcheck disable=SC2206
[ -n "${NEBULA_FUZZ_ARGS:-}" ] && args+=($NEBULA_FUZZ_ARGS)

status=0
(cd "$dir" && ./tests/fuzz/fuzz_config "${args[@]}" fuzz-corpus "$root/tests/fuzz/corpus") \
  >"$dir/fuzz.log" 2>&1 || status=$?
grep -E '^(#[0-9]+ +DONE|stat::|Done [0-9]+ runs)' "$dir/fuzz.log" >&2 || tail -5 "$dir/fuzz.log" >&2
if [ $status -ne 0 ]; then
  grep -E -A30 'ERROR: (libFuzzer|AddressSanitizer)|runtime error|check failed' "$dir/fuzz.log" \
    | head -60 >&2 || true
  log "FAILED (status $status); reproducer in $dir/fuzz-artifacts/, full log $dir/fuzz.log"
  exit 1
fi
log "clean: no crash, hang or sanitizer report in ${seconds}s"
