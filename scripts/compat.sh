#!/usr/bin/env bash
# Runs the glibc-contract conformance program (tests/conformance/nm_conform) against
# glibc's malloc (no preload), jemalloc, mimalloc, tcmalloc (their Debian packages, by
# LD_PRELOAD) and nebula, every check in its own process with a timeout, and writes the
# result table into docs/compatibility.md.
#
#   ./scripts/compat.sh                 all checks, all allocators; rewrites the generated
#                                       part of docs/compatibility.md
#   ./scripts/compat.sh CHECK...        only these checks; prints the table, writes nothing
#
# Environment: NEBULA_BUILD_DIR (default build/), NEBULA_COMPAT_TIMEOUT (seconds per check,
# default 70), NEBULA_COMPAT_ALLOCATORS (default "glibc jemalloc mimalloc tcmalloc nebula").
#
# Only the part of docs/compatibility.md between the "compat:begin" and "compat:end"
# markers is regenerated; everything around it (the design notes) is kept.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export NEBULA_BUILD_DIR="${NEBULA_BUILD_DIR:-$root/build}"
preload="$(scripts/build.sh)"
build="$NEBULA_BUILD_DIR"
conform="$build/tests/conformance/nm_conform"
dllib="$build/tests/conformance/libnm_conform_dl.so"
if [ ! -x "$conform" ]; then
  echo "compat: $conform was not built; tests/meson.build needs subdir('conformance')" \
       "and the 'tests' option on" >&2
  exit 1
fi

libdir=/usr/lib/x86_64-linux-gnu
declare -A lib=(
  [glibc]=""
  [jemalloc]="$libdir/libjemalloc.so.2"
  [mimalloc]="$libdir/libmimalloc.so.2"
  [tcmalloc]="$libdir/libtcmalloc_minimal.so.4"
  [nebula]="$preload"
)
declare -A pkg=([jemalloc]=libjemalloc2 [mimalloc]=libmimalloc2.0 [tcmalloc]=libtcmalloc-minimal4)
read -r -a allocators <<< "${NEBULA_COMPAT_ALLOCATORS:-glibc jemalloc mimalloc tcmalloc nebula}"
timeout_s="${NEBULA_COMPAT_TIMEOUT:-70}"
for a in "${allocators[@]}"; do
  if [ -n "${lib[$a]+x}" ] && [ -n "${lib[$a]}" ] && [ ! -f "${lib[$a]}" ]; then
    echo "compat: ${lib[$a]} is missing (scripts/deps.sh installs it)" >&2
    exit 1
  fi
done

if [ $# -gt 0 ]; then
  checks=("$@")
  write_doc=0
else
  mapfile -t checks < <("$conform" --list)
  write_doc=1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

sig_name() { local n=$(( $1 - 128 )); kill -l "$n" 2>/dev/null | sed 's/^/SIG/' || echo "signal $n"; }

# Markdown-safe one-liner of at most $2 characters.
cell_text() {
  local s="$1" max="$2"
  s="$(printf '%s' "$s" | tr -d '\r' | tr '\t' ' ' | sed 's/|/\\|/g')"
  if [ "${#s}" -gt "$max" ]; then s="${s:0:max}…"; fi
  printf '%s' "$s"
}

# Runs one check under one allocator; sets $verdict (pass/FAIL/hang/crash) and $reason.
run_one() {
  local alloc="$1" check="$2" out="$work/out" rc=0
  local -a envs=(env -u MALLOC_PERTURB_ -u MALLOC_CHECK_ -u LD_PRELOAD "NM_CONFORM_DL=$dllib")
  [ -n "${lib[$alloc]}" ] && envs+=("LD_PRELOAD=${lib[$alloc]}")
  # (in a subshell that outlives the command, so bash's own "Segmentation fault" notice goes
  # to /dev/null instead of our output)
  ( "${envs[@]}" timeout -k 5 "$timeout_s" "$conform" "$check" >"$out" 2>&1 </dev/null
    exit $? ) 2>/dev/null || rc=$?
  local line
  line="$(grep -m1 -E "^(FAIL|HANG|CRASH) $check: " "$out" || true)"
  if [ "$rc" -eq 77 ]; then
    verdict=skipped
    reason="$(grep -m1 -E "^SKIP " "$out" | sed -E "s/^SKIP $check: //" || true)"
  elif [ "$rc" -eq 0 ]; then
    verdict=pass
    reason="$(grep -m1 -E "^PASS " "$out" | sed -E "s/^PASS $check ?//" || true)"
  elif [ -n "$line" ] && [ "${line:0:4}" = HANG ]; then
    verdict=hang
    reason="${line#HANG "$check": }"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    verdict=hang
    reason="killed by timeout after ${timeout_s} s"
  elif [ -n "$line" ] && [ "${line:0:4}" = FAIL ]; then
    verdict=FAIL
    reason="${line#FAIL "$check": }"
  elif [ "$rc" -gt 128 ] || [ -n "$line" ]; then
    # CRASH line: "SIGSEGV while: <what the check was doing>"; the allocator's own message
    # (an abort reason), if it printed one, is the first other line.
    verdict=crash
    local first
    first="$(grep -m1 -v -E "^(PASS|CRASH $check: |nebula: dlopen)" "$out" | head -c 300 || true)"
    if [ -n "$line" ]; then reason="${line#CRASH "$check": }"; else reason="$(sig_name "$rc")"; fi
    reason="$reason${first:+; the allocator printed: $first}"
  else
    verdict=FAIL
    reason="exit status $rc: $(grep -m1 -v '^$' "$out" | head -c 300 || true)"
  fi
}

declare -A verdicts reasons
declare -A npass
for a in "${allocators[@]}"; do npass[$a]=0; done
for c in "${checks[@]}"; do
  for a in "${allocators[@]}"; do
    run_one "$a" "$c"
    verdicts[$c,$a]="$verdict"
    reasons[$c,$a]="$reason"
    [ "$verdict" = pass ] && npass[$a]=$(( npass[$a] + 1 ))
    printf 'compat: %-28s %-9s %-5s %s\n' "$c" "$a" "$verdict" "$(cell_text "$reason" 150)" >&2
  done
done

versions() {
  echo "- glibc: $(ldd --version 2>&1 | head -1)"
  for a in jemalloc mimalloc tcmalloc; do
    echo "- $a: Debian package ${pkg[$a]} $(dpkg-query -W -f='${Version}' "${pkg[$a]}" 2>/dev/null || echo '?')" \
         "(\`${lib[$a]}\`)"
  done
  # the commit of the tree the build directory was configured from
  local src
  src="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["directories"]["source"])' \
         "$build/meson-info/meson-info.json" 2>/dev/null || echo "$root")"
  echo "- nebula: commit $(git -C "$src" describe --always --dirty 2>/dev/null || echo 'unknown')" \
       "(\`$(basename "$preload")\`, release build)"
  echo "- machine: Linux $(uname -r) $(uname -m), $(nproc) CPUs"
}

table() {
  printf '| check |'
  for a in "${allocators[@]}"; do printf ' %s |' "$a"; done
  printf '\n|---|'
  for a in "${allocators[@]}"; do printf -- '---|'; done
  printf '\n'
  for c in "${checks[@]}"; do
    printf '| `%s` |' "$c"
    for a in "${allocators[@]}"; do
      local v="${verdicts[$c,$a]}" r="${reasons[$c,$a]}"
      case "$v" in
        pass) printf ' pass |' ;;
        skipped) printf ' skipped: %s |' "$(cell_text "$r" 110)" ;;
        hang) printf ' **hang**: %s |' "$(cell_text "$r" 110)" ;;
        crash) printf ' **crash**: %s |' "$(cell_text "$r" 110)" ;;
        *) printf ' **FAIL**: %s |' "$(cell_text "$r" 110)" ;;
      esac
    done
    printf '\n'
  done
  printf '| **checks passed** |'
  for a in "${allocators[@]}"; do printf ' **%d / %d** |' "${npass[$a]}" "${#checks[@]}"; done
  printf '\n'
}

details() {
  for a in "${allocators[@]}"; do
    local any=0
    for c in "${checks[@]}"; do
      [ "${verdicts[$c,$a]}" = pass ] && continue
      [ "${verdicts[$c,$a]}" = skipped ] && continue
      if [ "$any" -eq 0 ]; then echo; echo "**$a**"; echo; any=1; fi
      echo "- \`$c\` — ${verdicts[$c,$a]}: $(cell_text "${reasons[$c,$a]}" 600)"
    done
  done
}

glibc_behaviour() {
  for c in "${checks[@]}"; do
    echo "- \`$c\` — $("$conform" --describe "$c")"
  done
}

generated() {
  echo "<!-- compat:begin — generated by scripts/compat.sh; edits here are overwritten -->"
  echo
  echo "## Results"
  echo
  echo "Produced on $(date -u '+%Y-%m-%d %H:%M UTC') by \`./scripts/compat.sh\`, which runs"
  echo "\`${conform#"$root"/} CHECK\` once per check and allocator, as its own process,"
  echo "with \`LD_PRELOAD=<allocator>\` (none for glibc) and \`timeout -k 5 $timeout_s\`; each check"
  echo "also has its own watchdog that reports a hang as \`HANG\`."
  echo
  versions
  echo
  echo "pass: the check held. **FAIL**: the line the check printed (what was wrong). **hang**:"
  echo "the watchdog or the timeout ended it, with what the check was waiting for. **crash**:"
  echo "killed by a signal, with what the check was doing and the allocator's own message, if"
  echo "it printed one. skipped: the system could not run the check."
  echo
  table
  echo
  echo "### Every failure in full"
  details
  echo
  echo "## What glibc 2.36 does, check by check"
  echo
  echo "This is the contract: nebula replaces glibc's malloc under programs written and tested"
  echo "against it, so where C leaves a choice open, it does what glibc does."
  echo "(\`nm_conform --describe CHECK\` prints the same text.)"
  echo
  glibc_behaviour
  echo
  echo "<!-- compat:end -->"
}

if [ "$write_doc" -eq 0 ]; then
  table
  details
  exit 0
fi

doc="$root/docs/compatibility.md"
generated > "$work/generated.md"
if [ -f "$doc" ] && grep -q '^<!-- compat:begin' "$doc" && grep -q '^<!-- compat:end -->' "$doc"; then
  awk -v gen="$work/generated.md" '
    /^<!-- compat:begin/ { while ((getline l < gen) > 0) print l; skip = 1; next }
    /^<!-- compat:end -->/ { skip = 0; next }
    !skip { print }' "$doc" > "$work/doc.md"
else
  {
    echo "# Compatibility: the glibc malloc contract"
    echo
    echo "Programs run under \`LD_PRELOAD=libnebula_preload.so\` were written and tested against"
    echo "glibc's malloc. \`tests/conformance/nm_conform\` has one named check per point of that"
    echo "contract (docs/design.md and issue 9 list the points); \`meson test --suite conformance\`"
    echo "runs each under the nebula preload, and \`scripts/compat.sh\` runs each against glibc,"
    echo "jemalloc, mimalloc, tcmalloc and nebula and regenerates the tables below."
    echo "A check that glibc fails would be a wrong check: glibc passes all of them."
    echo
    cat "$work/generated.md"
  } > "$work/doc.md"
fi
mv "$work/doc.md" "$doc"
echo "compat: wrote $doc" >&2
