#!/usr/bin/env bash
# Builds nebula-memory and runs every test: unit tests (Criterion, library linked
# directly), the glibc-contract conformance checks and real programs under LD_PRELOAD
# (every strategy), then the library and unit tests again under AddressSanitizer+UBSan and
# ThreadSanitizer, and the NEBULA_MEM_CONFIG parser under libFuzzer for a bounded time.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export NEBULA_BUILD_DIR="${NEBULA_BUILD_DIR:-$root/build}"
scripts/build.sh >/dev/null
meson test -C "$NEBULA_BUILD_DIR" --print-errorlogs --num-processes 2 "$@"
if [ -x scripts/sanitize.sh ] && [ "${NEBULA_SKIP_SANITIZERS:-0}" != 1 ]; then
  scripts/sanitize.sh
fi
if [ "${NEBULA_SKIP_FUZZ:-0}" != 1 ]; then
  scripts/fuzz.sh "${NEBULA_FUZZ_TIME:-30}"
fi
echo "nebula: all tests passed"
