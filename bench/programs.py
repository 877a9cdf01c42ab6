#!/usr/bin/env python3
"""Run real programs (python3, sqlite3, sort, git, g++) under glibc and each LD_PRELOAD
allocator, interleaved, and report the median wall time and peak RSS of each.

Usually started by scripts/bench.sh (which installs the packages and builds first):

    scripts/bench.sh --programs                # 3 interleaved runs; docs/benchmarks.md
    scripts/bench.sh --programs --quick        # smoke run: 1 run, small inputs, nothing under docs/
    python3 bench/programs.py --programs sqlite3,sort --allocators glibc,nebula --runs 5 --no-docs

The inputs (a Python script, an SQL script, a text file, a git repository, a C++ file) are
generated once per invocation, deterministically, in a temporary directory that is deleted
at the end. Runs are interleaved as in bench/run.py and bench/idle.py: for run i, for each
program, every allocator runs once, in an order rotated by i and by the program. Before the
timed runs each program runs once under glibc, untimed (it warms the page cache, and its
output is the reference): every run's output (a sha256 of its stdout; of the object file
for g++) must equal it, or the run is a failure, not a figure.

Peak RSS is ru_maxrss of the program's own process (and of the processes it waited for:
g++ runs cc1plus and as), as wait4 returns it. Not the wait4 of this script: Linux keeps a
process's ru_maxrss across exec, so a program started straight from this Python process
(vfork or fork) would report at least this process's RSS. It is started instead through
GNU time (the `time` package, one of scripts/deps.sh's), a small C program that forks it,
waits with wait4 and writes the child's ru_maxrss; the allocator is set with env(1) in
between, so time(1) itself is never preloaded. Without /usr/bin/time, this script's own
os.wait4 is used and a note says the figures have that floor.

Writes the raw runs as JSON under bench/results/, the tables as the markdown fragment
docs/benchmarks-programs.md, and splices it into docs/benchmarks.md (bench/run.py includes
the fragment when it rewrites that file). Standard library only.
"""
import argparse
import datetime
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as runbench  # noqa: E402  bench/run.py: md_table, clean_env, splice, machine_info, ...
import idle  # noqa: E402  bench/idle.py: the same ALLOCATORS (name, environment, chart style)

ROOT = runbench.ROOT
REF = "glibc"
FRAGMENT = os.path.join(ROOT, "docs", "benchmarks-programs.md")
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
GNU_TIME = "/usr/bin/time"
TIME_FORMAT = "nm_time exit=%x maxrss_kib=%M"

# Input sizes: (full run, --quick). Chosen so that one run takes about 0.3-3 s under glibc
# on a 2-core machine.
SIZES = {
    "py_keys": (200000, 30000),       # dict of str keys -> tuples, through json and back
    "py_words": (400000, 60000),      # random strings sorted
    "py_rounds": (60, 8),             # rounds of 10,000 small dicts created and dropped
    "sql_rows": (200000, 20000),      # rows inserted in one transaction
    "sort_mib": (50, 6),              # MiB of random text lines
    "git_commits": (2000, 300),       # commits in the repository
    "cxx_functions": (200, 30),       # functions in the C++ file
}

PY_SCRIPT = r'''
import hashlib, json, random, sys

keys, words, rounds = (int(x) for x in sys.argv[1:4])
rng = random.Random(20261208)
h = hashlib.sha256()

# a big dict of str keys to tuples, serialised and parsed back
d = {}
for i in range(keys):
    k = "key-%d-%08x" % (i, rng.getrandbits(32))
    d[k] = (i, k[::-1], [i % 7, i % 11], i * 0.5)
text = json.dumps(d)
back = json.loads(text)
h.update(text[-1000:].encode())
h.update(str(len(back)).encode())
del d, text, back

# a list of random strings, sorted, then joined
alpha = "abcdefghijklmnopqrstuvwxyz0123456789"
blob = rng.randbytes(words * 16)
lst = ["".join(alpha[b % 36] for b in blob[i:i + 4 + blob[i] % 12]) for i in range(0, words * 16, 16)]
lst.sort()
h.update("\n".join(lst[::97]).encode())
del lst, blob

# many small objects created and dropped
total = 0
for r in range(rounds):
    objs = [{"a": i, "b": str(i * r), "c": (i, r), "d": [i] * (i % 5)} for i in range(10000)]
    total += sum(len(o["b"]) + len(o["d"]) for o in objs)
    del objs
print(keys, words, rounds, total, h.hexdigest())
'''

SQL_QUERIES = """
CREATE INDEX item_grp ON item(grp, qty);
CREATE INDEX item_name ON item(name);
SELECT count(*), sum(qty), round(avg(price), 4), min(name), max(name) FROM item;
SELECT g.label, count(*), sum(i.qty), round(sum(i.price * i.qty), 2)
  FROM item i JOIN grp g ON g.id = i.grp GROUP BY g.id ORDER BY 3 DESC, 1 LIMIT 10;
SELECT substr(name, 1, 2) AS p, count(*), max(price) FROM item GROUP BY p ORDER BY p LIMIT 20;
SELECT count(DISTINCT name), count(DISTINCT qty) FROM item;
SELECT a.id, b.id FROM item a JOIN item b ON a.name = b.name AND a.id < b.id ORDER BY 1, 2 LIMIT 10;
SELECT grp, qty, name FROM (SELECT grp, qty, name, rank() OVER (PARTITION BY grp ORDER BY qty DESC, name) AS r
  FROM item) WHERE r = 1 ORDER BY grp LIMIT 20;
"""


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, help="interleaved runs per program and allocator (default 3; 1 with --quick)")
    ap.add_argument("--programs", help="comma-separated subset of: " + ",".join(PROGRAM_NAMES))
    ap.add_argument("--allocators", help="comma-separated subset of: " + ",".join(a[0] for a in idle.ALLOCATORS))
    ap.add_argument("--quick", action="store_true", help="1 run, small inputs; writes nothing under docs/")
    ap.add_argument("--no-docs", action="store_true",
                    help="write nothing under docs/ (no fragment, docs/benchmarks.md untouched)")
    ap.add_argument("--build-dir", default="build", help="meson build directory (default build)")
    ap.add_argument("--nebula", help="nebula preload (default BUILD_DIR/preload/libnebula_preload.so)")
    ap.add_argument("--results-dir", default=os.path.join(ROOT, "bench", "results"), help="raw JSON goes here")
    ap.add_argument("--timeout", type=float, default=120, help="seconds before one run counts as failed")
    ap.add_argument("--from-json", metavar="FILE",
                    help="run nothing: tables and fragment from an earlier run's raw JSON")
    args = ap.parse_args()
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    build = args.build_dir if os.path.isabs(args.build_dir) else os.path.join(ROOT, args.build_dir)
    args.nebula = os.path.abspath(args.nebula or os.path.join(build, "preload", "libnebula_preload.so"))
    return args


# ---------------------------------------------------------------- inputs

def size(args, key):
    return SIZES[key][1 if args.quick else 0]


def write_sort_input(path, mib):
    """mib MiB of random lines, 8-80 characters of [0-9a-f], duplicates rare."""
    rng = random.Random(1)
    target = mib << 20
    with open(path, "w") as f:
        written = 0
        while written < target:
            hexs = rng.randbytes(1 << 19).hex()     # 1 MiB of characters at a time
            lens = rng.randbytes(len(hexs) // 8)
            lines, pos = [], 0
            for n in lens:
                n = 8 + n % 73
                if pos + n > len(hexs):
                    break
                lines.append(hexs[pos:pos + n])
                pos += n
            chunk = "\n".join(lines) + "\n"
            f.write(chunk)
            written += len(chunk)


def write_sql(path, rows):
    """Two tables filled by plain INSERT statements (as a dump would), in one transaction,
    then indexes and queries: the CLI parses every statement, sqlite's allocator works."""
    rng = random.Random(2)
    syll = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "qu", "xa", "po"]
    with open(path, "w") as f:
        f.write("PRAGMA cache_size = -65536;\nBEGIN;\n")
        f.write("CREATE TABLE grp(id INTEGER PRIMARY KEY, label TEXT);\n")
        f.write("CREATE TABLE item(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, qty INTEGER, price REAL);\n")
        for g in range(1000):
            f.write("INSERT INTO grp VALUES(%d, 'group-%03d-%s');\n" % (g, g, rng.choice(syll)))
        for i in range(rows):
            name = "".join(rng.choice(syll) for _ in range(2 + i % 5)) + "-%d" % rng.randrange(rows // 2)
            f.write("INSERT INTO item VALUES(%d, %d, '%s', %d, %d.%02d);\n" % (
                i, rng.randrange(1000), name, rng.randrange(500), rng.randrange(1000), rng.randrange(100)))
        f.write("COMMIT;\n")
        f.write(SQL_QUERIES)


# Layout: GIT_DIRS directories (4 at the top) of GIT_FILES files; GIT_CHANGED rewritten per
# commit. Wide directories, so that each commit's new trees have many entries: what
# rev-list --objects walks and log --stat compares.
GIT_DIRS, GIT_FILES, GIT_CHANGED = 16, 150, 16


def make_git_repo(repo, commits, env):
    """A repository of `commits` commits by git fast-import (fast, and deterministic: fixed
    names and dates): 8 x 8 directories of 6 files of 30-120 lines, and more added; each
    commit rewrites a few lines of GIT_CHANGED files (so new blobs and trees down three
    levels) and adds one every fifth commit; a branch and a tag every 200 commits so that
    --all has several refs. Then one pack with deltas, as a clone would have."""
    rng = random.Random(3)
    files = {}
    for d in range(GIT_DIRS):
        for k in range(GIT_FILES):
            path = "src%d/mod%d/file%d.txt" % (d % 4, d, k)
            files[path] = ["line %d of %s %08x" % (j, path, rng.getrandbits(32)) for j in range(10 + rng.randrange(40))]
    out = []

    def data(text):
        b = text.encode()
        out.append(b"data %d\n" % len(b))
        out.append(b)
        out.append(b"\n")

    for c in range(1, commits + 1):
        ts = 1700000000 + 3600 * c
        out.append(b"commit refs/heads/main\nmark :%d\n" % c)
        out.append(b"author Nebula Tester <tester@nebula.invalid> %d +0000\n" % ts)
        out.append(b"committer Nebula Committer <committer@nebula.invalid> %d +0000\n" % (ts + 60))
        data("commit %d\n\nRewrites a few lines of %d files.\n" % (c, GIT_CHANGED))
        changed = rng.sample(sorted(files), GIT_CHANGED)
        if c % 5 == 0:
            path = "src%d/mod%d/file%05d.txt" % (c % 4, c % GIT_DIRS, c)
            files[path] = ["new file %d line %d" % (c, j) for j in range(20 + c % 50)]
            changed.append(path)
        for path in changed:
            lines = files[path]
            for _ in range(1 + rng.randrange(6)):
                j = rng.randrange(len(lines))
                lines[j] = "line %d rewritten by commit %d %08x" % (j, c, rng.getrandbits(32))
            if rng.random() < 0.3:
                lines.insert(rng.randrange(len(lines)), "inserted by commit %d" % c)
            out.append(("M 100644 inline %s\n" % path).encode())
            data("\n".join(lines) + "\n")
        if c % 200 == 0:
            out.append(b"reset refs/heads/branch%d\nfrom :%d\n\n" % (c, c))
            out.append(b"tag v%d\nfrom :%d\ntagger Nebula Tester <tester@nebula.invalid> %d +0000\n" % (c, c, ts))
            data("tag %d\n" % c)
    subprocess.run(["git", "init", "-q", "-b", "main", repo], env=env, check=True)
    subprocess.run(["git", "fast-import", "--quiet"], input=b"".join(out), cwd=repo, env=env, check=True)
    subprocess.run(["git", "repack", "-a", "-d", "-q"], cwd=repo, env=env, check=True)


CXX_TYPES = 2
# Function bodies, one after another: each works on one of the record types through a
# different container, so the file instantiates every container for every type, and each
# function inlines some of that code (-O2).
CXX_BODIES = [
    """  std::map<std::string, Rec<%(t)d>> m;
  for (int i = 0; i < n; ++i) m["k" + std::to_string(i * %(f)d %% 97)].vals.push_back(i);
  return (long)m.size() + (long)m.begin()->second.vals.size();""",
    """  std::vector<Rec<%(t)d>> v(n);
  for (int i = 0; i < n; ++i) v[i].name = std::to_string((i * %(f)d) %% 101);
  std::sort(v.begin(), v.end());
  return (long)v.front().name.size();""",
    """  std::unordered_map<std::string, std::vector<Rec<%(t)d>>> u;
  for (int i = 0; i < n; ++i) u[std::to_string(i %% %(m)d)].emplace_back();
  return (long)u.size();""",
    """  std::map<int, std::string> m;
  for (int i = 0; i < n; ++i) m.emplace(i * %(f)d %% 89, std::string(i %% 13, 'a' + %(t)d));
  std::string s;
  for (auto &kv : m) s += kv.second;
  return (long)s.size();""",
]


def write_cxx(path, functions):
    """C++ with many template instantiations: `functions` functions over CXX_TYPES record
    types, through std::map, std::unordered_map, std::vector, std::sort and std::string."""
    parts = ["#include <algorithm>", "#include <map>", "#include <string>", "#include <unordered_map>",
             "#include <vector>", "",
             "template <int N> struct Rec {",
             "  std::string name; std::vector<int> vals; double weight = N;",
             "  bool operator<(const Rec &o) const { return name < o.name || (name == o.name && weight < o.weight); }",
             "};", ""]
    for f in range(functions):
        body = CXX_BODIES[f % len(CXX_BODIES)] % {"f": f, "t": (f // len(CXX_BODIES)) % CXX_TYPES, "m": 7 + f}
        parts.append("long fn%d(int n) {\n%s\n}\n" % (f, body))
    parts.append("long run_all(int n) {\n  long s = 0;")
    parts += ["  s += fn%d(n);" % f for f in range(functions)]
    parts.append("  return s;\n}\n")
    with open(path, "w") as f:
        f.write("\n".join(parts))


# ---------------------------------------------------------------- programs

PROGRAM_NAMES = ["python3", "python3-malloc", "sqlite3", "sort", "git-log", "git-rev-list", "g++"]


def programs(args, tmp):
    """[{name, what, argv, env, stdin, output (None: stdout), cwd, needs}] for the programs
    chosen and present; inputs are made by prepare()."""
    git_env = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": tmp, "TZ": "UTC"}
    keys, words, rounds = size(args, "py_keys"), size(args, "py_words"), size(args, "py_rounds")
    py_what = ("a dict of %s str keys to tuples through json.dumps/json.loads, %s random strings "
               "sorted, %d x 10,000 small dicts created and dropped; prints a checksum"
               % (format(keys, ","), format(words, ","), rounds))
    return [
        {"name": "python3", "exe": "python3",
         "argv": ["python3", os.path.join(tmp, "work.py"), str(keys), str(words), str(rounds)],
         "env": {"PYTHONHASHSEED": "0"}, "what": py_what + " (Python's default allocator, pymalloc, "
                                                          "serves objects up to 512 B itself)"},
        {"name": "python3-malloc", "exe": "python3",
         "argv": ["python3", os.path.join(tmp, "work.py"), str(keys), str(words), str(rounds)],
         "env": {"PYTHONHASHSEED": "0", "PYTHONMALLOC": "malloc"},
         "what": "the same script with PYTHONMALLOC=malloc: every object through malloc"},
        {"name": "sqlite3", "exe": "sqlite3", "argv": ["sqlite3", "-bail", ":memory:"],
         "stdin": os.path.join(tmp, "load.sql"),
         "what": "the CLI on an in-memory database: a dump-like script of %s INSERTs into two tables "
                 "in one transaction, two indexes, then aggregates, a join, a self-join, "
                 "a window function" % format(size(args, "sql_rows"), ",")},
        {"name": "sort", "exe": "sort", "argv": ["sort", os.path.join(tmp, "lines.txt")],
         "env": {"LC_ALL": "C", "TMPDIR": tmp},
         "what": "`sort` (LC_ALL=C, default buffer and threads) of %d MiB of random lines "
                 "(8-80 hex digits)" % size(args, "sort_mib")},
        {"name": "git-log", "exe": "git", "argv": ["git", "log", "--stat", "-n", "2000"],
         "cwd": os.path.join(tmp, "repo"), "env": git_env,
         "what": "`git log --stat -n 2000` in a generated repository of %s commits (%d files in %d "
                 "directories and more added, %d rewritten per commit; one pack)" % (
                     format(size(args, "git_commits"), ","), GIT_DIRS * GIT_FILES, GIT_DIRS, GIT_CHANGED)},
        {"name": "git-rev-list", "exe": "git", "argv": ["git", "rev-list", "--all", "--objects"],
         "cwd": os.path.join(tmp, "repo"), "env": git_env,
         "what": "`git rev-list --all --objects` in the same repository (every commit, tree and blob)"},
        {"name": "g++", "exe": "g++",
         "argv": ["g++", "-std=c++17", "-O2", "-frandom-seed=nebula", "-c", os.path.join(tmp, "gen.cpp"),
                  "-o", os.path.join(tmp, "out", "gen.o")],
         "output": os.path.join(tmp, "out", "gen.o"),
         "what": "`g++ -std=c++17 -O2 -c` of a generated file of %d functions over %d record types "
                 "(std::map, std::unordered_map, std::vector, std::sort, std::string); compared: the "
                 "object file. Peak RSS is the largest of g++, cc1plus and as" % (
                     size(args, "cxx_functions"), CXX_TYPES)},
    ]


def prepare(args, progs, tmp):
    """Generate the inputs the chosen programs need (each once)."""
    names = {p["name"] for p in progs}
    os.makedirs(os.path.join(tmp, "out"), exist_ok=True)
    if names & {"python3", "python3-malloc"}:
        with open(os.path.join(tmp, "work.py"), "w") as f:
            f.write(PY_SCRIPT)
    if "sqlite3" in names:
        write_sql(os.path.join(tmp, "load.sql"), size(args, "sql_rows"))
    if "sort" in names:
        write_sort_input(os.path.join(tmp, "lines.txt"), size(args, "sort_mib"))
    if names & {"git-log", "git-rev-list"}:
        env = runbench.clean_env()
        env.update(next(p for p in progs if p["name"].startswith("git-"))["env"])
        make_git_repo(os.path.join(tmp, "repo"), size(args, "git_commits"), env)
    if "g++" in names:
        write_cxx(os.path.join(tmp, "gen.cpp"), size(args, "cxx_functions"))


# ---------------------------------------------------------------- running

def run_one(prog, alloc_env, tmp, timeout):
    """One run: {wall_s, maxrss_kib, exit, sha256} or {error, ...}. The program's stdout goes
    to a file (hashed here, then removed); its stderr to another (its last line is kept for
    the report when the run fails)."""
    out_path = os.path.join(tmp, "out", "stdout")
    err_path = os.path.join(tmp, "out", "stderr")
    report_path = os.path.join(tmp, "out", "time")
    env = runbench.clean_env()
    env.update(prog.get("env", {}))
    if os.path.exists(GNU_TIME):
        # time(1) forks the program and reports its own wait4's ru_maxrss; env(1) sets the
        # allocator so that only the program (and what it runs) is preloaded.
        cmd = [GNU_TIME, "-o", report_path, "-f", TIME_FORMAT, "env"] + [
            "%s=%s" % kv for kv in alloc_env.items()] + prog["argv"]
    else:
        cmd = list(prog["argv"])
        env.update(alloc_env)
    for path in (prog.get("output"), report_path):
        if path and os.path.exists(path):
            os.unlink(path)   # nothing of an earlier run may pass for this one's
    stdin = open(prog["stdin"], "rb") if prog.get("stdin") else subprocess.DEVNULL
    timed_out = []

    def kill():
        timed_out.append(True)
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, env=env, cwd=prog.get("cwd"), stdin=stdin, stdout=out, stderr=err,
                             start_new_session=True)   # its own process group, to kill all on timeout
        # a timer rather than polling: nothing of this script runs while the program does
        timer = threading.Timer(timeout, kill)
        timer.start()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)   # reaped here; keep Popen from waiting again
    if prog.get("stdin"):
        stdin.close()
    # driver_maxrss_kib: what this script's wait4 says, kept to show why it is not used (at
    # least this Python process's RSS, carried over by the fork and exec of time(1))
    r = {"wall_s": round(wall, 4), "exit": p.returncode, "driver_maxrss_kib": ru.ru_maxrss}
    if os.path.exists(GNU_TIME):
        r["maxrss_kib"] = None
        try:
            with open(report_path) as f:
                for line in f:
                    if line.startswith("nm_time "):
                        r["maxrss_kib"] = int(line.split("maxrss_kib=")[1])
        except (OSError, ValueError, IndexError):
            pass
    else:
        r["maxrss_kib"] = ru.ru_maxrss
    with open(err_path, "rb") as f:
        err_text = f.read().decode(errors="replace")
    if timed_out:
        r["error"] = "timeout after %gs" % timeout
    elif "cannot be preloaded" in err_text:
        # ld.so only warns when it cannot preload; the run would silently measure glibc
        r["error"] = "preload failed: " + err_text.strip().splitlines()[0]
    elif p.returncode != 0:
        tail = [l for l in err_text.strip().splitlines() if not l.startswith("nm_time ")][-1:] or [""]
        r["error"] = "exit %d: %s" % (p.returncode, tail[0][:200])
    elif r["maxrss_kib"] is None:
        r["error"] = "no ru_maxrss from %s" % GNU_TIME
    try:
        r["sha256"] = file_sha256(prog.get("output") or out_path)
    except OSError as e:
        r.setdefault("error", "no output: %s" % e)
    for path in (out_path, prog.get("output")):
        if path and os.path.exists(path):
            os.unlink(path)   # sort's output is as large as its input
    return r


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_allocators(args):
    """[(name, environment)] from bench/idle.py's ALLOCATORS (same list, same environments),
    and notes for those whose LD_PRELOAD file is missing (skipped)."""
    known = [a[0] for a in idle.ALLOCATORS]
    wanted = args.allocators.split(",") if args.allocators else known
    unknown = [w for w in wanted if w not in known]
    if unknown:
        sys.exit("programs.py: unknown allocator(s) %s; known: %s" % (",".join(unknown), ",".join(known)))
    chosen, notes = [], []
    for name, env, _, _ in idle.ALLOCATORS:
        if name not in wanted:
            continue
        env = {k: v.replace("{nebula}", args.nebula) for k, v in env.items()}
        if env.get("LD_PRELOAD") and not os.path.exists(env["LD_PRELOAD"]):
            notes.append("%s skipped: %s not found" % (name, env["LD_PRELOAD"]))
            continue
        chosen.append((name, env))
    return chosen, notes


def version_of(exe):
    if exe == "sqlite3":   # "3.40.1 2022-12-28 14:03:47 <source hash>"
        out = runbench.sh([exe, "-version"])
        return "SQLite " + " ".join(out.split()[:2]) if out else "?"
    out = runbench.sh([exe, "--version"])
    return out.splitlines()[0] if out else "?"


# ---------------------------------------------------------------- figures

def summarise(records, prog_names, names):
    """{program: {allocator: {median_s, median_maxrss_kib, min_s, max_s, runs, ...} or
    {error}}}. A cell with any failed run is FAIL: a program an allocator breaks now and
    then has no figure, whatever its other runs did."""
    summary = {}
    for pn in prog_names:
        row = {}
        for a in names:
            recs = [r for r in records if r["program"] == pn and r["allocator"] == a]
            bad = [r for r in recs if "error" in r]
            if not recs or bad:
                row[a] = {"error": bad[0]["error"] if bad else "no result"}
                continue
            row[a] = {
                "runs": len(recs),
                "median_s": statistics.median(r["wall_s"] for r in recs),
                "min_s": min(r["wall_s"] for r in recs),
                "max_s": max(r["wall_s"] for r in recs),
                "median_maxrss_kib": statistics.median(r["maxrss_kib"] for r in recs),
            }
        ref = row.get(REF)
        for a in names:
            s = row[a]
            if "error" in s or not ref or "error" in ref:
                continue
            s["time_vs_glibc"] = s["median_s"] / ref["median_s"]
            s["rss_vs_glibc"] = s["median_maxrss_kib"] / ref["median_maxrss_kib"]
        summary[pn] = row
    return summary


def geomeans(summary, prog_names, names):
    """{allocator: {programs: n, rss: geomean of peak RSS / glibc, time: of time / glibc}},
    over the programs where the allocator and glibc both have figures."""
    out = {}
    for a in names:
        ok = [pn for pn in prog_names if "rss_vs_glibc" in summary[pn][a]]
        out[a] = {"programs": len(ok),
                  "rss": runbench.geomean(summary[pn][a]["rss_vs_glibc"] for pn in ok),
                  "time": runbench.geomean(summary[pn][a]["time_vs_glibc"] for pn in ok)}
    return out


def ratio(x):
    return "-" if x is None else "%.2f" % x


def geomean_table(gm, prog_names, names):
    rows = []
    for a in names:
        g = gm[a]
        n = "%d" % g["programs"] if g["programs"] == len(prog_names) else "%d of %d" % (g["programs"], len(prog_names))
        rows.append([a, n, ratio(g["rss"]), ratio(g["time"])])
    return runbench.md_table(["allocator", "programs", "peak RSS / glibc (geomean)", "time / glibc (geomean)"], rows)


def wide_table(summary, prog_names, names, value, fmt, key):
    """program x allocator: the median (value) and, in brackets, its ratio to glibc (key)."""
    rows = []
    for pn in prog_names:
        r = [pn]
        for a in names:
            s = summary[pn][a]
            if "error" in s:
                r.append("FAIL")
            elif key in s and a != REF:
                r.append((fmt + " (%.2f)") % (value(s), s[key]))
            else:
                r.append(fmt % value(s))
        rows.append(r)
    return runbench.md_table(["program"] + names, rows)


def time_table(summary, prog_names, names):
    return wide_table(summary, prog_names, names, lambda s: s["median_s"], "%.3f", "time_vs_glibc")


def rss_table(summary, prog_names, names):
    return wide_table(summary, prog_names, names, lambda s: s["median_maxrss_kib"] / 1024, "%.1f", "rss_vs_glibc")


def spread_table(summary, prog_names, names):
    rows = []
    for pn in prog_names:
        rows.append([pn] + ["FAIL" if "error" in summary[pn][a] else
                            "%.0f" % (100 * (summary[pn][a]["max_s"] - summary[pn][a]["min_s"])
                                      / summary[pn][a]["median_s"]) for a in names])
    return runbench.md_table(["program"] + names, rows)


# ---------------------------------------------------------------- markdown

HOW = """\
How to read it:

- **time** is the wall time of one whole run of the program, from start to exit (start-up,
  loading the preloaded library, the work, tearing down), in seconds; the median over the
  runs. In brackets: the allocator's median / glibc's median (below 1: faster than glibc).
- **peak RSS** is `ru_maxrss` of the program's own process, as wait4 reports it to its
  parent (GNU time, which forks it): the most resident memory the process ever had, in MiB.
  It includes everything in the process (code, libraries, stacks, the allocator's own
  memory), so it is what the program costs the machine, not only its live data. For g++ it
  is the largest of the driver, cc1plus and as (ru_maxrss of the processes waited for).
  Mapped files count as well as they are read (git maps its pack). Not the wait4 of
  bench/programs.py itself: Linux carries a process's ru_maxrss over exec, so a program
  started straight from the Python driver would report at least the driver's RSS.
  In brackets: the ratio to glibc's median (below 1: less memory than glibc).
- **geomean** is, per allocator, the geometric mean over the programs of its ratios to glibc
  (so each program weighs the same, whatever its size); "n of N" when some programs failed
  under it.
- The inputs are generated by the script once per invocation (same seeds: the same inputs
  every time), in a temporary directory it deletes at the end. Each program first runs once
  under glibc, untimed; every timed run's stdout (for g++: the object file) must have the same
  sha256 as that run's, and exit with status 0, or its cell is FAIL and the run is listed.
- Runs are interleaved (run i of every allocator on a program before run i+1 of any), in an
  order rotated by the run and the program. **spread** is (slowest - fastest) / median; a
  time difference smaller than the spread of its row is noise.
- Baselines are Debian's packaged builds, with their default settings, preloaded with
  LD_PRELOAD exactly as nebula is; glibc is the program without any preload.
"""


def render_fragment(meta, summary, prog_names, names, notes, failures, progs_info):
    m = meta["machine"]
    gm = geomeans(summary, prog_names, names)
    lines = [
        "## Real programs under each allocator",
        "",
        "Generated by `bench/programs.py` on %s, nebula git %s (allocator sources last changed in %s; "
        "preload sha256 %s...). Regenerate (this section, and its copy in docs/benchmarks.md) with:" % (
            meta["date"], meta["git"], meta.get("src_git", "?"), meta["nebula_so_sha256"] or "?"),
        "",
        "```sh", meta["command"], "```",
        "",
        "- %d interleaved run%s per program and allocator%s; the whole benchmark (inputs included) took %.0f s." % (
            meta["runs"], "" if meta["runs"] == 1 else "s", " (quick: small inputs)" if meta["quick"] else "",
            meta.get("total_s", 0)),
        "- Machine: %s, %s CPUs, %s RAM; Linux %s; %s; baselines: %s" % (
            m["cpu"], m["nproc"], m["memory"], m["kernel"], m["libc"], ", ".join(m["packages"]) or "?"),
        "- Programs: %s" % "; ".join("%s" % v for v in meta["versions"].values()),
        "- Load average (1/5/15 min) at start: %s; at end: %s" % (meta["loadavg_start"], meta["loadavg_end"]),
        "",
    ]
    for n in notes:
        lines += ["> Note: %s" % n, ""]
    if failures:
        lines += ["Failed runs (their cells are FAIL):", ""]
        lines += ["- %s" % f for f in failures]
        lines.append("")
    lines += ["### Geometric mean over the programs, ratio to glibc", "",
              geomean_table(gm, prog_names, names), "",
              "### Median wall time, s (in brackets: / glibc)", "",
              time_table(summary, prog_names, names), "",
              "### Median peak RSS (ru_maxrss), MiB (in brackets: / glibc)", "",
              rss_table(summary, prog_names, names), "",
              "### Spread of the runs: (max - min) / median time, %", "",
              spread_table(summary, prog_names, names), "",
              "### The programs", ""]
    lines += ["- **%s**: %s." % (pn, progs_info[pn]) for pn in prog_names]
    lines += ["", HOW]
    return "\n".join(lines)


def failure_list(records):
    return ["%s under %s, run %d: %s" % (r["program"], r["allocator"], r["run"] + 1, r["error"])
            for r in records if "error" in r]


def report(meta, records, summary, prog_names, names, notes, write_docs):
    gm = geomeans(summary, prog_names, names)
    print("\nMedian wall time, s (/ glibc)\n" + time_table(summary, prog_names, names))
    print("\nMedian peak RSS, MiB (/ glibc)\n" + rss_table(summary, prog_names, names))
    print("\nSpread, %\n" + spread_table(summary, prog_names, names))
    print("\nGeometric mean over the programs, ratio to glibc\n" + geomean_table(gm, prog_names, names))
    failures = failure_list(records)
    for f in failures:
        print("FAIL: " + f)
    for n in notes:
        print("note: " + n)
    if write_docs:
        fragment = render_fragment(meta, summary, prog_names, names, notes, failures, meta["programs"])
        with open(FRAGMENT, "w") as f:
            f.write(fragment)
        print("fragment: " + os.path.relpath(FRAGMENT, os.getcwd()))
        if os.path.exists(DOC):
            runbench.splice(DOC, runbench.PROGRAMS_BEGIN, runbench.PROGRAMS_END, fragment)
            print("report: " + os.path.relpath(DOC, os.getcwd()))


def main():
    args = parse_args()
    write_docs = not (args.quick or args.no_docs)
    if args.from_json:
        with open(args.from_json) as f:
            d = json.load(f)
        names = [a["name"] for a in d["meta"]["allocators"]]
        prog_names = list(d["meta"]["programs"])
        summary = summarise(d["records"], prog_names, names)
        report(d["meta"], d["records"], summary, prog_names, names, d.get("notes", []),
               write_docs and not d["meta"].get("quick"))
        return 0
    start = time.monotonic()
    allocs, notes = resolve_allocators(args)
    if not allocs:
        sys.exit("programs.py: no allocator to run")
    if not os.path.exists(GNU_TIME):
        notes.append("%s not found (Debian package `time`, installed by scripts/deps.sh): peak RSS is "
                     "this script's own os.wait4, which on Linux is at least the RSS of the Python "
                     "process that started the program" % GNU_TIME)
    names = [n for n, _ in allocs]
    wanted = args.programs.split(",") if args.programs else PROGRAM_NAMES
    bad = [w for w in wanted if w not in PROGRAM_NAMES]
    if bad:
        sys.exit("programs.py: unknown program(s) %s; known: %s" % (",".join(bad), ",".join(PROGRAM_NAMES)))

    tmp = tempfile.mkdtemp(prefix="nebula-programs-")
    try:
        progs = []
        for p in programs(args, tmp):
            if p["name"] not in wanted:
                continue
            if shutil.which(p["exe"]) is None:
                notes.append("%s skipped: `%s` not found" % (p["name"], p["exe"]))
                continue
            progs.append(p)
        for n in notes:
            print("note: " + n, file=sys.stderr)
        t = time.monotonic()
        prepare(args, progs, tmp)
        print("inputs generated in %.1f s under %s" % (time.monotonic() - t, tmp), file=sys.stderr, flush=True)

        # The untimed glibc run: reference output (and a warm page cache for every allocator).
        expected = {}
        for p in list(progs):
            r = run_one(p, {}, tmp, args.timeout)
            if "error" in r:
                notes.append("%s skipped: it fails under glibc (%s)" % (p["name"], r["error"]))
                progs.remove(p)
                continue
            expected[p["name"]] = r["sha256"]
            print("reference  %-14s %.3f s  %.1f MiB  sha256 %s" % (
                p["name"], r["wall_s"], r["maxrss_kib"] / 1024, r["sha256"][:12]), file=sys.stderr, flush=True)
        if not progs:
            sys.exit("programs.py: no program to run")
        prog_names = [p["name"] for p in progs]

        meta = dict(runbench.source_meta(args.nebula))
        meta.update({
            "runs": args.runs,
            "quick": args.quick,
            "sizes": {k: size(args, k) for k in SIZES},
            "allocators": [{"name": n, "env": e} for n, e in allocs],
            "programs": {p["name"]: p["what"] for p in progs},
            "argv": {p["name"]: p["argv"] for p in progs},
            "versions": {exe: version_of(exe) for exe in dict.fromkeys(p["exe"] for p in progs)},
            "expected_sha256": expected,
            "maxrss_via": GNU_TIME if os.path.exists(GNU_TIME) else "os.wait4",
        })

        records = []
        total = args.runs * len(progs) * len(allocs)
        width = max(len(n) for n in names)
        done = 0
        for i, p, pos, (name, env) in runbench.interleaved(args.runs, progs, allocs):
            r = run_one(p, env, tmp, args.timeout)
            if "error" not in r and r["sha256"] != expected[p["name"]]:
                r["error"] = "output differs from glibc's (sha256 %s, expected %s)" % (
                    r["sha256"][:12], expected[p["name"]][:12])
            r.update({"program": p["name"], "allocator": name, "run": i, "position": pos})
            records.append(r)
            done += 1
            status = r.get("error") or "%.3f s  %.1f MiB" % (r["wall_s"], r["maxrss_kib"] / 1024)
            print("[%*d/%d] run %d  %-14s %-*s %s" % (len(str(total)), done, total, i + 1, p["name"],
                                                     width, name, status), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    meta["loadavg_end"] = runbench.loadavg()
    meta["total_s"] = round(time.monotonic() - start, 1)
    summary = summarise(records, prog_names, names)

    os.makedirs(args.results_dir, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = os.path.join(args.results_dir, "programs-%s%s.json" % (stamp, "-quick" if args.quick else ""))
    with open(json_path, "w") as f:
        json.dump({"meta": meta, "notes": notes, "summary": summary, "geomeans": geomeans(summary, prog_names, names),
                   "records": records}, f, indent=1)
    report(meta, records, summary, prog_names, names, notes, write_docs)
    print("\nraw results: %s  (total %.0f s)" % (os.path.relpath(json_path, os.getcwd()), meta["total_s"]))
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
