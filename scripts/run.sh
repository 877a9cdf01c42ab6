#!/usr/bin/env bash
# Builds nebula-memory (installing the Debian packages it needs) and runs real programs
# under the preload, next to the same run on glibc's malloc, and shows what happened.
#
#   ./scripts/run.sh                 the demo: sqlite3, python3 and sort, plain vs nebula
#   ./scripts/run.sh -- CMD [ARGS]   your own program under the preload
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
preload="$("$root/scripts/build.sh")"

if [ "${1:-}" = "--" ]; then
  shift
  echo "nebula: LD_PRELOAD=$preload $*" >&2
  LD_PRELOAD="$preload" exec "$@"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A sqlite3 workload of 300k rows, a python3 JSON round trip and a sort of 2M lines.
/usr/bin/python3 - "$work/load.sql" <<'PY'
import random, sys
r = random.Random(7)
with open(sys.argv[1], "w") as f:
    f.write("PRAGMA journal_mode=OFF;\nCREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v INTEGER, note TEXT);\nBEGIN;\n")
    for i in range(300000):
        f.write("INSERT INTO t VALUES(%d,'k%d',%d,'%s');\n" % (i, r.randrange(5000), r.randrange(10**6), "x" * r.randrange(1, 60)))
    f.write("COMMIT;\nCREATE INDEX tk ON t(k);\n")
    f.write("SELECT k, count(*), sum(v), max(length(note)) FROM t GROUP BY k ORDER BY k;\n")
    f.write("SELECT a.k, count(*) FROM t a JOIN t b ON a.k = b.k WHERE a.id < 2000 GROUP BY a.k ORDER BY 2 DESC, 1 LIMIT 20;\n")
PY
seq 1 2000000 | /usr/bin/python3 -c "import sys,random; l=sys.stdin.readlines(); random.Random(3).shuffle(l); sys.stdout.writelines(l)" > "$work/lines.txt"

declare -a names cmds
names+=("sqlite3 300k rows");  cmds+=("sqlite3 :memory: < '$work/load.sql'")
names+=("python3 json 200k");  cmds+=("/usr/bin/python3 -c 'import json; d=[{str(i): [i]*9, \"s\": \"v\"*(i%50)} for i in range(200000)]; s=json.dumps(d); print(len(s), len(json.loads(s)))'")
names+=("sort 2M lines");      cmds+=("sort -n '$work/lines.txt'")

measure() {  # $1 = preload or empty, $2 = command; prints "seconds maxrss_kb md5"
  local out="$work/out" tf="$work/time"
  env ${1:+LD_PRELOAD="$1"} /usr/bin/time -f "%e %M" -o "$tf" sh -c "$2" > "$out"
  echo "$(cat "$tf") $(md5sum < "$out" | cut -c1-12)"
}

printf '\nnebula-memory: real programs, glibc malloc vs LD_PRELOAD=%s\n\n' "${preload#$root/}"
printf '%-20s %10s %10s %12s %12s  %s\n' program "glibc s" "nebula s" "glibc RSS" "nebula RSS" "same output"
status=0
for i in "${!names[@]}"; do
  read -r gs gm gh <<<"$(measure "" "${cmds[$i]}")"
  read -r ns nm nh <<<"$(measure "$preload" "${cmds[$i]}")"
  same=yes; [ "$gh" = "$nh" ] || { same="NO ($gh vs $nh)"; status=1; }
  printf '%-20s %10s %10s %9s MiB %9s MiB  %s\n' "${names[$i]}" "$gs" "$ns" "$((gm / 1024))" "$((nm / 1024))" "$same"
done
printf '\nYour own program: ./scripts/run.sh -- ./app args   (or LD_PRELOAD=%s ./app)\n' "$preload"
exit $status
