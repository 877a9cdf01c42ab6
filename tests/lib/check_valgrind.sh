#!/usr/bin/env bash
# valgrind's memcheck catches a user's use of memory the library took back (bump reset,
# pool free, stack pop) when poisoning is on, and reports nothing for correct use.
#   check_valgrind.sh CHILD
set -uo pipefail
child=$1
command -v valgrind >/dev/null || { echo "valgrind not installed: skipped"; exit 77; }
run() { valgrind --error-exitcode=99 --quiet "$child" "$1" 2>&1; }
out=$(run none); rc=$?
[ $rc -eq 0 ] || { echo "correct use: valgrind exit $rc (expected 0):"; echo "$out"; exit 1; }
for misuse in bump-after-reset pool-after-free stack-after-pop; do
  out=$(run "$misuse"); rc=$?
  if [ $rc -ne 99 ] || ! grep -q "Invalid write of size 1" <<<"$out"; then
    echo "$misuse: valgrind did not report the invalid write (exit $rc):"
    echo "$out"
    exit 1
  fi
  echo "$misuse: reported ($(grep -m1 -o 'Invalid write of size 1' <<<"$out"))"
done
