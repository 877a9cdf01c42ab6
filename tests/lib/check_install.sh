#!/usr/bin/env bash
# The library as users get it: every public header compiles on its own, clean under
# -Wall -Wextra -Wpedantic -Werror with gcc and clang (C11, and included from C++17);
# `meson install` ships headers, libnebula-memory.so/.a and nebula-memory.pc; the examples
# build against the installed copy with `pkg-config --cflags --libs nebula-memory`, shared
# and static, and run.
#   check_install.sh SOURCE_ROOT BUILD_ROOT
set -euo pipefail
src=$1
build=$2
tmp=$(mktemp -d /tmp/nebula-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "check_install: $*" >&2; exit 1; }

compilers=()
for cc in gcc clang; do command -v "$cc" >/dev/null && compilers+=("$cc"); done
[ ${#compilers[@]} -gt 0 ] || fail "no C compiler"

headers=()
for h in "$src"/include/nebula/*.h; do headers+=("nebula/$(basename "$h")"); done
for cc in "${compilers[@]}"; do
  for h in "${headers[@]}"; do
    printf '#include <%s>\n#include <%s>\nint main(void) { return 0; }\n' "$h" "$h" >"$tmp/h.c"
    "$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror -I"$src/include" -c -o /dev/null "$tmp/h.c" \
      || fail "$h does not compile on its own with $cc -std=c11 -Wpedantic -Werror (or is not idempotent)"
  done
  cxx=g++
  [ "$cc" = clang ] && cxx=clang++
  if command -v "$cxx" >/dev/null; then
    printf '#include <nebula/memory.h>\nint main() { return 0; }\n' >"$tmp/h.cc"
    "$cxx" -std=c++17 -Wall -Wextra -Werror -I"$src/include" -c -o /dev/null "$tmp/h.cc" \
      || fail "nebula/memory.h does not compile as C++17 with $cxx"
  fi
  echo "headers: ${#headers[@]} clean with $cc"
done

meson install -C "$build" --no-rebuild --destdir "$tmp/root" >"$tmp/install.log" 2>&1 \
  || { cat "$tmp/install.log" >&2; fail "meson install failed"; }
pc=$(find "$tmp/root" -name nebula-memory.pc | head -1)
[ -n "$pc" ] || fail "no nebula-memory.pc installed"
prefix=$(sed -n 's/^prefix=//p' "$pc")
for f in include/nebula/memory.h; do
  [ -f "$tmp/root$prefix/$f" ] || fail "$f not installed under $prefix"
done
so=$(find "$tmp/root" -name 'libnebula-memory.so*' | head -1)
ar=$(find "$tmp/root" -name 'libnebula-memory.a' | head -1)
[ -n "$so" ] && [ -n "$ar" ] || fail "libnebula-memory.so and .a must both be installed"
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
pkg() { pkg-config --define-variable=prefix="$tmp/root$prefix" "$@" nebula-memory; }
cflags=$(pkg --cflags)
libs=$(pkg --libs)
static_libs=$(pkg --libs --static)
libdir=$(pkg --variable=libdir)
echo "pkg-config: cflags '$cflags' libs '$libs'"

shopt -s nullglob
examples=("$src"/examples/*.c)
[ ${#examples[@]} -gt 0 ] || fail "no examples in $src/examples"
for ex in "${examples[@]}"; do
  name=$(basename "$ex" .c)
  gcc -std=c11 -Wall -Wextra -Werror $cflags -o "$tmp/$name" "$ex" $libs -Wl,-rpath,"$libdir" \
    || fail "examples/$name.c does not build against the installed library"
  "$tmp/$name" >"$tmp/$name.out" 2>&1 || { cat "$tmp/$name.out" >&2; fail "examples/$name exited non-zero (shared)"; }
  gcc -std=c11 -Wall -Wextra -Werror $cflags -o "$tmp/$name-static" "$ex" "$libdir/libnebula-memory.a" \
    $(echo "$static_libs" | sed 's/-lnebula-memory//') \
    || fail "examples/$name.c does not link statically"
  "$tmp/$name-static" >"$tmp/$name-static.out" 2>&1 || fail "examples/$name exited non-zero (static)"
  echo "example $name: ok (shared and static), $(wc -l <"$tmp/$name.out") lines of output"
done
