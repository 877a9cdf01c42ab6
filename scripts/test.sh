#!/usr/bin/env bash
# Builds nebula-memory and runs every test: unit tests (Criterion, library linked
# directly), integration tests (real programs under LD_PRELOAD), then the library and
# unit tests again under AddressSanitizer+UBSan and ThreadSanitizer.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export NEBULA_BUILD_DIR="${NEBULA_BUILD_DIR:-$root/build}"
scripts/build.sh >/dev/null
meson test -C "$NEBULA_BUILD_DIR" --print-errorlogs --num-processes 2 "$@"
if [ -x scripts/sanitize.sh ] && [ "${NEBULA_SKIP_SANITIZERS:-0}" != 1 ]; then
  scripts/sanitize.sh
fi
echo "nebula: all tests passed"
