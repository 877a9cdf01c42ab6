#!/usr/bin/env python3
"""What the development preset costs: real, allocation-heavy programs under the preload in
production and in development, interleaved, with medians and ratios.

    python3 bench/devmode.py                 # 3 runs; writes docs/benchmarks-devmode.md
    python3 bench/devmode.py --runs 5 --no-docs
    scripts/bench.sh --devmode               # the same, after installing and building

The goal (issue 16): preset=development within about 3x of production's time on
allocation-heavy programs. Columns: production (the default), development (its default
alloc_backtrace=sample: the call site of every block, a whole backtrace for 1 block in 256),
development with alloc_backtrace=full (a whole backtrace for every block: what development
cost before sampling), and glibc as the reference. Each program's output is compared with
glibc's run: a run whose output differs is a failure, not a figure.

The fragment docs/benchmarks-devmode.md is also spliced into docs/benchmarks.md (between
bench/run.py's devmode markers). Standard library only.
"""
import argparse
import datetime
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as runbench  # noqa: E402  bench/run.py: md_table, clean_env, splice

ROOT = runbench.ROOT
FRAGMENT = os.path.join(ROOT, "docs", "benchmarks-devmode.md")
DOC = os.path.join(ROOT, "docs", "benchmarks.md")

CONFIGS = [
    ("glibc", None),
    ("production", ""),
    ("development", "preset=development"),
    ("development, full", "preset=development,alloc_backtrace=full"),
]
GOAL = 3.0

PY_SCRIPT = r"""
import json
rows = []
for i in range(120000):
    d = {"id": i, "name": "item-%d" % i, "tags": [str(i % 7), str(i % 11)], "v": i * 0.5}
    rows.append(d)
    if len(rows) > 20000:
        rows = rows[10000:]
text = json.dumps(rows)
back = json.loads(text)
words = {}
for r in back:
    for t in r["tags"]:
        words[t] = words.get(t, 0) + 1
print(len(back), sorted(words.items())[:3], len(text))
"""

SQL = """
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v REAL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 150000)
INSERT INTO t SELECT x, printf('name-%d-%s', x, hex(randomblob(8))), x * 0.25 FROM c;
CREATE INDEX t_name ON t(name);
SELECT count(*), sum(v) FROM t WHERE name LIKE 'name-1%';
SELECT count(DISTINCT substr(name, 1, 8)) FROM t;
"""


def programs(build):
    return [
        # PYTHONMALLOC=malloc: every object through malloc (pymalloc would hide most of them).
        ("python3 (dicts, json; PYTHONMALLOC=malloc)", ["/usr/bin/python3", "-c", PY_SCRIPT], None,
         {"PYTHONMALLOC": "malloc"}),
        ("sqlite3 (150k rows, index)", ["sqlite3", ":memory:"], SQL, {}),
        ("C++ containers (nm_cxx 4 40)", [os.path.join(build, "tests", "programs", "nm_cxx"), "4", "40"], None, {}),
        ("sort (400k lines)", ["sort"], "sort-input", {}),
    ]


def sort_input(path):
    if not os.path.exists(path):
        with open(path, "w") as f:
            x = 12345
            for i in range(400000):
                x = (x * 1103515245 + 12345) & 0x7FFFFFFF
                f.write("%08x line %d %s\n" % (x, i, "abc" * (x % 5)))
    return path


def run_once(argv, stdin, env):
    start = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(argv, input=stdin, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=600)
    seconds = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return p.returncode, p.stdout, seconds, after.ru_maxrss if after.ru_maxrss > before.ru_maxrss else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--no-docs", action="store_true", help="print only; leave docs/ alone")
    args = ap.parse_args()
    build = os.path.join(ROOT, args.build_dir)
    preload = os.path.join(build, "preload", "libnebula_preload.so")
    if not os.path.exists(preload):
        sys.exit("devmode: %s is missing: build first (scripts/build.sh)" % preload)
    progs = programs(build)
    results = os.path.join(ROOT, "bench", "results")
    os.makedirs(results, exist_ok=True)
    sort_path = sort_input(os.path.join(results, "devmode-sort-input.txt"))
    times = {(p[0], c[0]): [] for p in progs for c in CONFIGS}
    failures = []

    def one(prog, config):
        name, argv, stdin, extra = prog
        env = runbench.clean_env()
        env.update(extra)
        if config is not None:
            env["LD_PRELOAD"] = preload
            env["NEBULA_MEM_CONFIG"] = config
        data = None
        run_argv = list(argv)
        if stdin == "sort-input":
            run_argv.append(sort_path)
        elif stdin is not None:
            data = stdin.encode()
        return run_once(run_argv, data, env)

    # A glibc run first, untimed: the output every timed run must match (and warm caches).
    expected = {}
    for prog in progs:
        rc, out, _, _ = one(prog, None)
        if rc != 0:
            sys.exit("devmode: %s fails plain (exit %d)" % (prog[0], rc))
        expected[prog[0]] = out
    for r in range(args.runs):
        for pi, prog in enumerate(progs):
            name = prog[0]
            order = CONFIGS[(r + pi) % len(CONFIGS):] + CONFIGS[:(r + pi) % len(CONFIGS)]
            for cname, config in order:
                rc, out, seconds, _ = one(prog, config)
                if rc != 0:
                    failures.append("%s under %s: exit %d" % (name, cname, rc))
                    continue
                if out != expected[name]:
                    failures.append("%s under %s: output differs from glibc's" % (name, cname))
                    continue
                times[(name, cname)].append(seconds)
                print("run %d  %-30s %-20s %.3f s" % (r + 1, name, cname, seconds), flush=True)

    header = ["program"] + ["%s, s" % c[0] for c in CONFIGS] + ["development / production",
                                                                 "full / production"]
    rows = []
    ratios = []
    for name, _, _, _ in progs:
        med = {c: statistics.median(times[(name, c)]) if times[(name, c)] else None for c, _ in CONFIGS}
        def ratio(a, b):
            return "%.2fx" % (med[a] / med[b]) if med[a] and med[b] else "-"
        if med["development"] and med["production"]:
            ratios.append(med["development"] / med["production"])
        rows.append([name] + ["%.3f" % med[c] if med[c] else "-" for c, _ in CONFIGS] +
                    [ratio("development", "production"), ratio("development, full", "production")])
    table = runbench.md_table(header, rows)
    worst = max(ratios) if ratios else float("nan")
    lines = ["## What the development preset costs", "",
             "Generated by `bench/devmode.py` on %s (%d interleaved runs, medians). Real programs,"
             " each run plain (glibc) and preloaded in production, development (alloc_backtrace=sample,"
             " its default) and development with alloc_backtrace=full; every preloaded run's output"
             " matched glibc's." % (datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                                   args.runs), "",
             table, "",
             "Goal: development within %.0fx of production on each program; worst here: %.2fx." % (GOAL, worst),
             "A whole backtrace costs about 1.5 us (libgcc's unwinder); sampling keeps one for about"
             " 1 block in 256 and the call site for the others. The guard's remaining cost (canary,"
             " junk, fill, quarantine, the checks on free) is what is left of the ratio.", ""]
    if failures:
        lines += ["> Failures: " + "; ".join(failures), ""]
    text = "\n".join(lines)
    print("\n" + text)
    if not args.no_docs:
        with open(FRAGMENT, "w") as f:
            f.write(text)
        runbench.splice(DOC, runbench.DEVMODE_BEGIN, runbench.DEVMODE_END, text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
