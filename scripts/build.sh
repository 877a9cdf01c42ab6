#!/usr/bin/env bash
# Builds nebula-memory (release) into ${NEBULA_BUILD_DIR:-build}, installing Debian
# packages it needs first. Prints the path of the preload library.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${NEBULA_BUILD_DIR:-$root/build}"
"$root/scripts/deps.sh"
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$root" --buildtype=release "$@" >/dev/null
else
  meson configure "$build" "$@" >/dev/null 2>&1 || true
fi
ninja -C "$build" >/dev/null
echo "$build/preload/libnebula_preload.so"
