#!/bin/bash
# sort_lines.sh INPUT TMPDIR
# Sorts INPUT (text lines) several ways and prints hashes and counts of the results. The
# integration tests run it plain and under LD_PRELOAD and compare the outputs.
set -euo pipefail
in=$1
export TMPDIR=$2 LC_ALL=C
echo "input $(wc -l < "$in") lines"
echo "sort $(sort "$in" | md5sum)"
# the first 64 MiB in other ways: numeric, unique, keyed with a small buffer (temp files
# and a merge), in parallel
head -c 64M "$in" > "$TMPDIR/part"
echo "sort-n $(sort -n "$TMPDIR/part" | md5sum)"
sort -u "$TMPDIR/part" > "$TMPDIR/unique"
echo "sort-u $(wc -l < "$TMPDIR/unique") $(md5sum < "$TMPDIR/unique")"
echo "sort-k $(sort -S 8M --parallel=2 -t ' ' -k2,2 -k1,1r "$TMPDIR/part" | md5sum)"
echo "uniq-c $(sort "$TMPDIR/part" | uniq -c | sort -rn -k1,1 -s | head -1000 | md5sum)"
rm -f "$TMPDIR/part" "$TMPDIR/unique"
