#!/usr/bin/env python3
"""Run nm_bench under glibc and each LD_PRELOAD allocator, interleaved, and report medians.

Usually started by scripts/bench.sh (which installs deps and builds first):

    scripts/bench.sh                       # full run, writes docs/benchmarks.md
    scripts/bench.sh --quick               # smoke run: 1/20 of the ops, no markdown
    scripts/bench.sh --workloads pairs-64,random --allocators glibc,nebula --runs 7

Runs are interleaved: for run i in 1..N, for each workload, every allocator runs once, in
an order rotated by i and by the workload, so slow drifts of the machine (other load,
thermal, page cache) spread over all allocators instead of landing on one.

Every table shows time and peak RSS (VmHWM) side by side, and a summary gives, per
allocator, the geometric mean of peak RSS across the workloads and its ratio to glibc's.

Standard library only.
"""
import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import re
import shlex
import statistics
import tempfile
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBDIR = "/usr/lib/x86_64-linux-gnu"

# (name, environment) pairs, in column order. "{nebula}" is replaced by the built preload's
# path, "{nebula_nocounters}" by that of the build with the statistics counters compiled out
# (-Dcounters=false). An entry whose LD_PRELOAD file is missing is skipped with a note. To
# compare nebula strategies, add a line such as
#     ("nebula-foo", {"LD_PRELOAD": "{nebula}", "NEBULA_MEM_CONFIG": "strategy=foo"}),
ALLOCATORS = [
    ("glibc", {}),
    ("jemalloc", {"LD_PRELOAD": LIBDIR + "/libjemalloc.so.2"}),
    ("mimalloc", {"LD_PRELOAD": LIBDIR + "/libmimalloc.so.2"}),
    ("tcmalloc", {"LD_PRELOAD": LIBDIR + "/libtcmalloc_minimal.so.4"}),
    ("nebula", {"LD_PRELOAD": "{nebula}"}),
    ("nebula-throughput", {"LD_PRELOAD": "{nebula}", "NEBULA_MEM_CONFIG": "strategy=throughput"}),
    ("nebula-compact", {"LD_PRELOAD": "{nebula}", "NEBULA_MEM_CONFIG": "strategy=compact"}),
    ("nebula-nocounters", {"LD_PRELOAD": "{nebula_nocounters}"}),
]

# Reference columns for the ratios, and the targets for nebula.
REF_GLIBC, REF_MIMALLOC, SUBJECT = "glibc", "mimalloc", "nebula"
MIMALLOC_TARGET = 1.25
RSS_TARGET = 1.0  # geometric mean over the workloads of nebula's peak RSS / glibc's
SMALL_MAX = 1024  # pairs-N / batch-N with N <= this are the "small-size" workloads
# nebula with the statistics counters compiled out, and the target for what they may cost.
NOCOUNTERS = "nebula-nocounters"
COUNTERS_TARGET = 1.02  # nebula median / nebula-nocounters median

# Variables that would change what an allocator does; never inherited from the caller.
SCRUB_PREFIXES = ("LD_PRELOAD", "MALLOC_", "GLIBC_TUNABLES", "JE_MALLOC_CONF", "MALLOC_CONF",
                  "MIMALLOC_", "TCMALLOC_", "NEBULA_")

LINE_RE = re.compile(r"workload=(\S+) ops=(\d+) seconds=([0-9.]+) maxrss_kb=(\d+)")
EXTRA_RE = re.compile(r"\b(cpu_seconds|preempt)=([0-9.]+)")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="interleaved runs per workload and allocator (default 5)")
    ap.add_argument("--workloads", help="comma-separated subset (default: all of `nm_bench --list`)")
    ap.add_argument("--allocators", help="comma-separated subset of: " + ",".join(n for n, _ in ALLOCATORS)
                    + ", and NAME=PATH for any other preload library")
    ap.add_argument("--out", help="markdown report (default docs/benchmarks.md; none with --quick)")
    ap.add_argument("--quick", action="store_true", help="1/20 of the ops: a smoke run")
    ap.add_argument("--build-dir", default="build", help="meson build directory (default build)")
    ap.add_argument("--bench-bin", help="nm_bench binary (default BUILD_DIR/bench/nm_bench)")
    ap.add_argument("--nebula", help="nebula preload (default BUILD_DIR/preload/libnebula_preload.so)")
    ap.add_argument("--nebula-nocounters",
                    help="nebula preload built with -Dcounters=false "
                         "(default BUILD_DIR-nocounters/preload/libnebula_preload.so)")
    ap.add_argument("--lib-bench", help="nm_lib_bench binary (default BUILD_DIR/bench/nm_lib_bench)")
    ap.add_argument("--no-lib", action="store_true", help="skip the library allocators' benchmark")
    ap.add_argument("--results-dir", default=os.path.join(ROOT, "bench", "results"), help="raw JSON goes here")
    ap.add_argument("--timeout", type=float, default=300, help="seconds before one run counts as failed")
    ap.add_argument("--pair-instructions", action="store_true",
                    help="run nothing else: print instructions per malloc(64)+free pair for each "
                         "allocator (cachegrind), as a markdown table")
    ap.add_argument("--from-json", metavar="FILE",
                    help="run nothing: print the tables of an earlier run's raw JSON (and write --out if given)")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    build = args.build_dir if os.path.isabs(args.build_dir) else os.path.join(ROOT, args.build_dir)
    args.bench_bin = os.path.abspath(args.bench_bin or os.path.join(build, "bench", "nm_bench"))
    args.lib_bench = os.path.abspath(args.lib_bench or os.path.join(build, "bench", "nm_lib_bench"))
    args.nebula = os.path.abspath(args.nebula or os.path.join(build, "preload", "libnebula_preload.so"))
    args.nebula_nocounters = os.path.abspath(
        args.nebula_nocounters or os.path.join(build.rstrip("/") + "-nocounters", "preload", "libnebula_preload.so"))
    if args.out is None and not args.quick and not args.from_json and not args.pair_instructions:
        args.out = os.path.join(ROOT, "docs", "benchmarks.md")
    return args


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def file_digest(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()[:12]
    except OSError:
        return None


def interleaved(runs, items, allocs):
    """(run, item, position, (name, env)) in the order every benchmark here runs them: for
    run i, for each item (workload, scenario, program), every allocator once, in an order
    rotated by i and by the item, so slow drifts of the machine spread over all of them."""
    for i in range(runs):
        for ii, item in enumerate(items):
            k = (i + ii) % len(allocs)
            for pos, alloc in enumerate(allocs[k:] + allocs[:k]):
                yield i, item, pos, alloc


def source_meta(nebula):
    """The header fields bench/idle.py and bench/programs.py report: date, command, the
    commit (marked when the allocator's sources differ from it), the last commit that
    changed the allocator, the preload's digest, the machine, the load at the start."""
    rev = sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    if rev and sh(["git", "-C", ROOT, "status", "--porcelain", "--", "src", "preload", "include",
                   "meson.build", "meson_options.txt"]):
        rev += " + uncommitted changes in src/, preload/ or include/"
    command = os.environ.get("NM_BENCH_COMMAND") or " ".join(
        shlex.quote(x) for x in ["python3", os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "command": command,
        "git": rev or "?",
        # the last commit that changed the allocator (HEAD may only have changed bench/ or docs/)
        "src_git": sh(["git", "-C", ROOT, "log", "-1", "--format=%h %cs", "--", "src", "preload",
                       "include", "meson.build", "meson_options.txt"]) or "?",
        "nebula_so_sha256": file_digest(nebula),
        "machine": machine_info(argparse.Namespace(nebula=nebula, nebula_nocounters=nebula)),
        "loadavg_start": loadavg(),
    }


def machine_info(args):
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = "%.1f GiB" % (kb / 1048576)
    except (OSError, ValueError, IndexError):
        pass
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        libc = ""
    pkgs = sh(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n",
               "libjemalloc2", "libmimalloc2.0", "libtcmalloc-minimal4"])
    rev = sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    # Only the allocator's own sources count as "dirty" (not bench/ or tests/).
    if rev and sh(["git", "-C", ROOT, "status", "--porcelain", "--", "src", "preload", "include",
                   "meson.build", "meson_options.txt"]):
        rev += " + uncommitted changes in src/, preload/ or include/"
    return {
        "cpu": model,
        "nproc": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "libc": libc,
        "packages": [p for p in pkgs.splitlines() if p],
        "nebula_rev": rev,
        "nebula_so_sha256": file_digest(args.nebula),
        "nebula_nocounters_so_sha256": file_digest(args.nebula_nocounters),
        "compiler": sh(["cc", "--version"]).splitlines()[0] if sh(["cc", "--version"]) else "",
    }


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def list_workloads(bench_bin):
    out = subprocess.run([bench_bin, "--list"], capture_output=True, text=True, check=True).stdout
    return [(w, int(n)) for w, n in (line.split() for line in out.splitlines() if line.strip())]


def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith(SCRUB_PREFIXES)}


def resolve_allocators(args):
    wanted = args.allocators.split(",") if args.allocators else None
    # NAME=PATH adds a preload built elsewhere (mimalloc 3, snmalloc, ...) as its own column.
    extra = [tuple(w.split("=", 1)) for w in wanted or [] if "=" in w]
    wanted = [w for w in wanted or [] if "=" not in w] + [n for n, _ in extra] if wanted else None
    table = ALLOCATORS + [(n, {"LD_PRELOAD": os.path.abspath(p)}) for n, p in extra]
    known = [n for n, _ in table]
    if wanted:
        unknown = [w for w in wanted if w not in known]
        if unknown:
            sys.exit("run.py: unknown allocator(s) %s; known: %s (or NAME=PATH of a preload)"
                     % (",".join(unknown), ",".join(known)))
    chosen, notes = [], []
    for name, env in table:
        if wanted and name not in wanted:
            continue
        env = {k: v.replace("{nebula}", args.nebula).replace("{nebula_nocounters}", args.nebula_nocounters)
               for k, v in env.items()}
        pre = env.get("LD_PRELOAD")
        if pre and not os.path.exists(pre):
            notes.append("%s skipped: %s not found" % (name, pre))
            continue
        chosen.append((name, env))
    return chosen, notes


def run_one(args, workload, env):
    cmd = [args.bench_bin, workload] + (["--quick"] if args.quick else [])
    full_env = clean_env()
    full_env.update(env)
    try:
        p = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": "timeout after %gs" % args.timeout}
    # ld.so only warns when it cannot preload; the run would silently measure glibc.
    if "cannot be preloaded" in p.stderr:
        return {"error": "preload failed: " + p.stderr.strip().splitlines()[0]}
    m = LINE_RE.search(p.stdout)
    if p.returncode != 0 or not m:
        tail = (p.stderr.strip() or p.stdout.strip()).splitlines()[-1:] or [""]
        return {"error": "exit %d: %s" % (p.returncode, tail[0])}
    r = {"ops": int(m.group(2)), "seconds": float(m.group(3)), "maxrss_kb": int(m.group(4))}
    for k, v in EXTRA_RE.findall(p.stdout):
        r[k] = float(v) if k == "cpu_seconds" else int(v)
    return r


IREFS_RE = re.compile(r"I\s+refs:\s+([0-9,]+)")


def count_instructions(args, workload, env):
    """Instructions one run executes under valgrind's cachegrind (1/20 of the ops, as --quick):
    unlike time on a shared machine, the same binary gives the same count every time, so a
    cost of one or two percent can be seen at all. None when valgrind is missing or fails."""
    return count_instructions_ops(args, workload, env, "--quick")


def pair_instructions(args, allocs, size=64, ops=(200000, 400000)):
    """{allocator: instructions per malloc(size)+free pair}: cachegrind counts of pairs-SIZE
    at two op counts, differenced, so start-up and exit cancel out. Deterministic. The key
    LOOP_KEY holds the benchmark loop's own share (nm_bench's run_pairs), the same for all."""
    out = {}
    loop = []
    for name, env in allocs:
        counts = []
        for n in ops:
            a = argparse.Namespace(**vars(args))
            a.quick = False
            c = count_instructions_ops(a, "pairs-%d" % size, env, n, loop_fn="run_pairs" if not out else None)
            if isinstance(c, tuple):
                c, l = c
                loop.append(l)
            counts.append(c)
        out[name] = None if None in counts else round((counts[1] - counts[0]) / (ops[1] - ops[0]), 1)
        print("pair instructions  %-18s %s" % (name, out[name]), file=sys.stderr, flush=True)
    if len(loop) == 2 and None not in loop:
        out[LOOP_KEY] = round((loop[1] - loop[0]) / (ops[1] - ops[0]), 1)
    return out


LOOP_KEY = "(benchmark loop)"


def function_instructions(out_file, fn):
    """Instructions a cachegrind output file counts in function fn (every file's)."""
    total, inside = 0, False
    with open(out_file) as f:
        for line in f:
            if line.startswith("fn="):
                inside = line[3:].strip() == fn
            elif inside and line[:1].isdigit():
                total += int(line.split()[1])
    return total


def count_instructions_ops(args, workload, env, ops, loop_fn=None):
    """count_instructions for an explicit op count (or "--quick"); with loop_fn, (count,
    instructions of the benchmark's function loop_fn)."""
    if shutil.which("valgrind") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        # env(1) as the client, so LD_PRELOAD reaches the benchmark and not valgrind's launcher.
        cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no",
               "--cachegrind-out-file=%s/cg.%%p" % tmp if loop_fn else "--cachegrind-out-file=/dev/null",
               "--trace-children=yes", "env"] + ["%s=%s" % kv for kv in env.items()] + [
               args.bench_bin, workload, str(ops)]
        try:
            p = subprocess.run(cmd, env=clean_env(), capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            return None
        counts = IREFS_RE.findall(p.stderr)
        if p.returncode != 0 or not counts:
            return None
        n = int(counts[-1].replace(",", ""))
        if not loop_fn:
            return n
        # env execs the benchmark: the last process's file is the benchmark's.
        files = sorted(os.listdir(tmp), key=lambda f: int(f.split(".")[-1]))
        loop = function_instructions(os.path.join(tmp, files[-1]), loop_fn) if files else None
        return n, loop or None


PAIR_TITLE = "Instructions per malloc(64)+free pair (cachegrind)"
PAIR_NOTE = ("pairs-64 at 200,000 and 400,000 pairs under valgrind's cachegrind, differenced: the same "
             "count on every run, whatever else the machine does. nebula-throughput serves 64 bytes "
             "from bump regions; both nebula columns include every production free check "
             "(docs/diagnostics.md, \"Heap misuse\"). The benchmark loop's own instructions (nm_bench's "
             "run_pairs: the two calls, the store into the block, the loop test) are counted apart, "
             "in the same run, and taken off in the last column.")


def pair_table(pairs):
    """Markdown: instructions per malloc(64)+free pair, per allocator, with and without the
    benchmark loop's share."""
    loop = pairs.get(LOOP_KEY)
    rows = ["| allocator | instructions per malloc(64)+free pair | of which malloc and free |", "|---|---|---|"]
    for name, n in pairs.items():
        if name == LOOP_KEY:
            continue
        own = "-" if n is None or loop is None else "%.1f" % (n - loop)
        rows.append("| %s | %s | %s |" % (name, "-" if n is None else "%.1f" % n, own))
    if loop is not None:
        rows.append("| %s | %.1f | |" % (LOOP_KEY, loop))
    return "\n".join(rows)


def measure_counter_instructions(args, workloads, allocs):
    """{workload: {allocator: instructions}} for nebula and nebula-nocounters."""
    envs = dict(allocs)
    if SUBJECT not in envs or NOCOUNTERS not in envs:
        return {}
    out = {}
    for w in workloads:
        out[w] = {a: count_instructions(args, w, envs[a]) for a in (SUBJECT, NOCOUNTERS)}
        print("instructions  %-11s %s" % (w, "  ".join("%s %s" % (a, n) for a, n in out[w].items())),
              file=sys.stderr, flush=True)
    return out


# The library allocators (nm_lib_bench): each pattern's nebula variant (linked in, no
# preload) against its -malloc variant under each malloc.
LIB_PATTERNS = [("arena", "arena-bump", "per-request arena: bump reset vs free each"),
                ("pool", "pool-pool", "pool reuse: 64-byte objects"),
                ("stack", "stack-stack", "stack scopes: marker release vs free each")]
LIB_MALLOCS = ("glibc", "jemalloc", "mimalloc", "tcmalloc")


def run_lib(args, allocs):
    """{pattern: {variant: [seconds...]}}, interleaved rounds; {} without the binary."""
    if args.no_lib or not os.access(args.lib_bench, os.X_OK):
        return {}
    envs = [(a, e) for a, e in allocs if a in LIB_MALLOCS]
    out = {}
    for i in range(args.runs):
        for pattern, ours, _ in LIB_PATTERNS:
            row = out.setdefault(pattern, {})
            variants = [("nebula", ours, {})] + [(a, pattern + "-malloc", e) for a, e in envs]
            k = i % len(variants)
            for name, workload, env in variants[k:] + variants[:k]:
                full = clean_env()
                full.update(env)
                cmd = [args.lib_bench, workload] + (["--quick"] if args.quick else [])
                try:
                    p = subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=args.timeout)
                    m = LINE_RE.search(p.stdout)
                    secs = float(m.group(3)) if p.returncode == 0 and m else None
                except subprocess.TimeoutExpired:
                    secs = None
                row.setdefault(name, []).append(secs)
                print("lib  run %d  %-6s %-9s %s" % (i + 1, pattern, name, "FAIL" if secs is None else "%.4f s" % secs),
                      file=sys.stderr, flush=True)
    return out


def lib_table(lib):
    if not lib:
        return None
    cols = ["nebula"] + [a for a in LIB_MALLOCS if any(a in lib[p] for p in lib)]
    rows = []
    for pattern, _, what in LIB_PATTERNS:
        if pattern not in lib:
            continue
        med = {}
        for a in cols:
            ok = [x for x in lib[pattern].get(a, []) if x is not None]
            med[a] = statistics.median(ok) if ok else None
        mallocs = [med[a] for a in cols[1:] if med[a]]
        best = min(mallocs) if mallocs else None
        rows.append([what] + ["FAIL" if med[a] is None else "%.4f" % med[a] for a in cols]
                    + ["-" if not (best and med["nebula"]) else "%.2f" % (med["nebula"] / best)])
    return ("The library allocators (bench/nm_lib_bench.c) in the pattern each is made for, "
            "against malloc doing the same work: median seconds of the measured part; the "
            "malloc columns run the -malloc variant under that allocator. Last column: nebula "
            "/ the fastest malloc (< 1 is faster).\n\n"
            + md_table(["pattern"] + [c if c == "nebula" else c + " malloc" for c in cols]
                       + ["nebula / best malloc"], rows))


def summarise(records, workloads, allocs, instructions=None):
    """{workload: {allocator: {...medians...}}}"""
    summary = {}
    for w in workloads:
        row = {}
        for a in allocs:
            ok = [r for r in records if r["workload"] == w and r["allocator"] == a and "seconds" in r]
            fails = [r["error"] for r in records if r["workload"] == w and r["allocator"] == a and "error" in r]
            if not ok:
                row[a] = {"error": fails[0] if fails else "no result"}
                continue
            secs = [r["seconds"] for r in ok]
            rss = [r["maxrss_kb"] for r in ok if r.get("maxrss_kb")]
            row[a] = {
                "median_s": statistics.median(secs),
                "min_s": min(secs),
                "max_s": max(secs),
                "ops": ok[0]["ops"],
                "median_maxrss_kb": statistics.median(rss) if rss else None,
                "median_cpu_s": statistics.median(r.get("cpu_seconds", r["seconds"]) for r in ok),
                "median_preempt": statistics.median(r.get("preempt", 0) for r in ok),
                "runs": len(ok),
                "failed_runs": len(fails),
            }
        for ref in (REF_GLIBC, REF_MIMALLOC):
            base = row.get(ref, {}).get("median_s")
            base_cpu = row.get(ref, {}).get("median_cpu_s")
            for a in allocs:
                if "median_s" in row[a] and base:
                    row[a]["vs_" + ref] = row[a]["median_s"] / base
                if "median_cpu_s" in row[a] and base_cpu:
                    row[a]["cpu_vs_" + ref] = row[a]["median_cpu_s"] / base_cpu
            base_rss = row.get(ref, {}).get("median_maxrss_kb")
            for a in allocs:
                if row[a].get("median_maxrss_kb") and base_rss:
                    row[a]["rss_vs_" + ref] = row[a]["median_maxrss_kb"] / base_rss
        for a, n in ((instructions or {}).get(w) or {}).items():
            if n and a in row:
                row[a]["instructions"] = n
        summary[w] = row
    return summary


def is_small(workload):
    m = re.fullmatch(r"(pairs|batch)-(\d+)", workload)
    return bool(m) and int(m.group(2)) <= SMALL_MAX


def md_table(header, rows):
    """Markdown table, aligned for the terminal too; numeric columns right-aligned."""
    cols = list(zip(header, *rows))
    widths = [max(len(str(x)) for x in col) for col in cols]
    numeric = [all(re.fullmatch(r"[-0-9.]+|FAIL", str(x)) for x in col[1:]) for col in cols]

    def fmt(r):
        return "| " + " | ".join(str(c).rjust(w) if num else str(c).ljust(w)
                                 for c, w, num in zip(r, widths, numeric)) + " |"
    sep = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2))
                         for w, num in zip(widths, numeric)) + "|"
    return "\n".join([fmt(header), sep] + [fmt(r) for r in rows])


def geomean(xs):
    xs = list(xs)
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def rss_geomeans(summary, workloads, allocs):
    """[(allocator, n, geomean RSS KiB, glibc's geomean over the same workloads, RSS ratio,
    geomean of the time ratios to glibc)]: per allocator, over the workloads where both it
    and glibc have a peak RSS, so the two geomeans are over the same set. Without a glibc
    column: the allocator's own geomean over the workloads it finished, no ratios."""
    rows = []
    have_ref = REF_GLIBC in allocs
    for a in allocs:
        ws = [w for w in workloads if summary[w][a].get("median_maxrss_kb")
              and (not have_ref or summary[w][REF_GLIBC].get("median_maxrss_kb"))]
        if not ws:
            rows.append((a, 0, None, None, None, None))
            continue
        g = geomean(summary[w][a]["median_maxrss_kb"] for w in ws)
        ref = geomean(summary[w][REF_GLIBC]["median_maxrss_kb"] for w in ws) if have_ref else None
        times = [summary[w][a]["vs_" + REF_GLIBC] for w in ws if summary[w][a].get("vs_" + REF_GLIBC)]
        rows.append((a, len(ws), g, ref, g / ref if ref else None,
                     geomean(times) if have_ref and len(times) == len(ws) else None))
    return rows


def rss_geomean_text(summary, workloads, allocs):
    """(title, text): the geometric mean of peak RSS across the workloads, per allocator,
    against glibc's; the verdict on nebula's. None when nothing has a peak RSS."""
    rows = rss_geomeans(summary, workloads, allocs)
    if not any(g for _, _, g, _, _, _ in rows):
        return None
    table = []
    for a, n, g, ref, ratio, tr in rows:
        verdict = ""
        if a == SUBJECT and ratio is not None:
            verdict = ("<= glibc: goal met" if ratio <= RSS_TARGET
                       else "**above glibc by %.1f%%**" % (100 * (ratio - 1)))
        elif a == SUBJECT:
            verdict = "no ratio (no glibc column or no common workload)"
        table.append([a, n, "-" if g is None else "%.2f" % (g / 1024), "-" if ref is None else "%.2f" % (ref / 1024),
                      "-" if ratio is None else "%.3f" % ratio, "-" if tr is None else "%.3f" % tr, verdict])
    text = ("Geometric mean over the workloads of each allocator's median peak RSS (VmHWM), and "
            "glibc's over the same workloads (those both finished). Goal for %s: RSS ratio <= %.2f. "
            "The last-but-one column is the geometric mean of the time ratios to glibc over the "
            "same workloads, for comparison.\n\n" % (SUBJECT, RSS_TARGET)
            + md_table(["allocator", "workloads", "geomean peak RSS MiB", "glibc geomean MiB",
                        "RSS ratio to glibc", "time ratio to glibc (geomean)", "verdict"], table))
    sub = next((r for r in rows if r[0] == SUBJECT), None)
    if sub and sub[4] is not None:
        text += ("\n\n%s peak-RSS geomean %.2f MiB, glibc %.2f MiB, over %d workload%s: ratio %.3f (%s)."
                 % (SUBJECT, sub[2] / 1024, sub[3] / 1024, sub[1], "" if sub[1] == 1 else "s", sub[4],
                    "goal met" if sub[4] <= RSS_TARGET else "goal not met"))
    return ("Peak RSS: geometric mean across workloads", text)


def time_and_rss(out, summary, workloads, allocs):
    """Appends the table of median seconds and median peak RSS side by side, per allocator."""
    hdr = ["workload"]
    for a in allocs:
        hdr += [a + " s", a + " MiB"]
    rows = []
    for w in workloads:
        cells = [w]
        for a in allocs:
            st = summary[w][a]
            if "error" in st:
                cells += ["FAIL", "FAIL"]
            else:
                kb = st.get("median_maxrss_kb")
                cells += ["%.4f" % st["median_s"], "-" if not kb else "%.1f" % (kb / 1024)]
        rows.append(cells)
    out.append(("Median seconds and median peak RSS (MiB, VmHWM), side by side", md_table(hdr, rows)))


def tables(summary, workloads, allocs):
    out = []
    # Targets for nebula.
    if SUBJECT in allocs:
        rows = []
        for w in workloads:
            s = summary[w][SUBJECT]
            g, mi = s.get("vs_" + REF_GLIBC), s.get("vs_" + REF_MIMALLOC)
            verdict = []
            if "error" in s:
                verdict.append("FAILED (%s)" % s["error"])
            else:
                if g is not None:
                    verdict.append("beats glibc" if g < 1 else "**slower than glibc**")
                if is_small(w) and mi is not None:
                    verdict.append("within %.2fx of mimalloc" % MIMALLOC_TARGET if mi <= MIMALLOC_TARGET
                                   else "**over %.2fx mimalloc**" % MIMALLOC_TARGET)
            cg, cm = s.get("cpu_vs_" + REF_GLIBC), s.get("cpu_vs_" + REF_MIMALLOC)
            rss, rg = s.get("median_maxrss_kb"), s.get("rss_vs_" + REF_GLIBC)
            rows.append([w, "FAIL" if "error" in s else "%.4f" % s["median_s"],
                         "-" if g is None else "%.2f" % g, "-" if mi is None else "%.2f" % mi,
                         "-" if cg is None else "%.2f" % cg, "-" if cm is None else "%.2f" % cm,
                         "FAIL" if "error" in s else "-" if rss is None else "%.1f" % (rss / 1024),
                         "-" if rg is None else "%.2f" % rg,
                         "; ".join(verdict)])
        out.append(("Targets: nebula vs glibc (must be < 1 everywhere) and vs mimalloc "
                    "(must be <= %.2f on pairs-/batch- sizes <= %d B)" % (MIMALLOC_TARGET, SMALL_MAX),
                    md_table(["workload", "nebula s", "/glibc", "/mimalloc", "cpu /glibc", "cpu /mimalloc",
                              "peak RSS MiB", "RSS /glibc", "verdict (on wall-clock medians)"], rows)))

    # What the statistics counters cost: nebula against the same sources built without them.
    if SUBJECT in allocs and NOCOUNTERS in allocs:
        rows, ratios = [], []
        for w in workloads:
            s, n = summary[w][SUBJECT], summary[w][NOCOUNTERS]
            r = s["median_s"] / n["median_s"] if "median_s" in s and n.get("median_s") else None
            cr = s["median_cpu_s"] / n["median_cpu_s"] if "median_cpu_s" in s and n.get("median_cpu_s") else None
            ir = s["instructions"] / n["instructions"] if s.get("instructions") and n.get("instructions") else None
            judged = ir if ir is not None else r
            if r is None:
                verdict = "FAILED (%s)" % ("; ".join("%s: %s" % (a, summary[w][a]["error"])
                                                     for a in (SUBJECT, NOCOUNTERS) if "error" in summary[w][a])
                                           or "no time")
            elif judged <= COUNTERS_TARGET:
                verdict = "within %g%%" % (100 * (COUNTERS_TARGET - 1))
                ratios.append((judged, w))
            else:
                verdict = "**over %g%%: %.1f%%**" % (100 * (COUNTERS_TARGET - 1), 100 * (judged - 1))
                ratios.append((judged, w))
            rows.append([w, "FAIL" if "error" in s else "%.4f" % s["median_s"],
                         "FAIL" if "error" in n else "%.4f" % n["median_s"],
                         "-" if r is None else "%.3f" % r, "-" if cr is None else "%.3f" % cr,
                         "-" if ir is None else "%.4f" % ir, verdict])
        text = ("nebula against %s, the same sources built with `-Dcounters=false` (the per-operation "
                "statistics counters compiled out). Target: the counters cost at most %g%%, i.e. "
                "nebula / %s <= %.2f. The verdict is on instructions executed (valgrind's cachegrind, "
                "1/20 of the ops), which are the same at every run; wall-clock medians on a shared "
                "machine move by more than 2%% between runs of one binary, so they are shown but "
                "not judged (the verdict falls back to them without valgrind).\n\n"
                % (NOCOUNTERS, 100 * (COUNTERS_TARGET - 1), NOCOUNTERS, COUNTERS_TARGET)
                + md_table(["workload", "nebula s", "nocounters s", "time ratio", "cpu ratio",
                            "instructions ratio", "verdict"], rows))
        if ratios:
            worst = max(ratios)
            text += ("\n\nOver %d workload%s: median ratio %.3f, worst %.3f (%s); %d over the %g%% target."
                     % (len(ratios), "" if len(ratios) == 1 else "s", statistics.median(r for r, _ in ratios),
                        worst[0], worst[1], sum(r > COUNTERS_TARGET for r, _ in ratios),
                        100 * (COUNTERS_TARGET - 1)))
        out.append(("Statistics counters: cost", text))

    def wide(title, value, fmt, extra_ops=False):
        hdr = ["workload"] + (["ops"] if extra_ops else []) + allocs
        rows = []
        for w in workloads:
            ops = next((summary[w][a]["ops"] for a in allocs if "ops" in summary[w][a]), "-")
            cells = []
            for a in allocs:
                st = summary[w][a]
                v = None if "error" in st else value(st)
                cells.append("FAIL" if "error" in st else "-" if v is None else fmt % v)
            rows.append([w] + ([ops] if extra_ops else []) + cells)
        out.append((title, md_table(hdr, rows)))

    rss = rss_geomean_text(summary, workloads, allocs)
    if rss:
        out.append(rss)
    time_and_rss(out, summary, workloads, allocs)
    wide("Median seconds (measured part only)", lambda s: s["median_s"], "%.4f", extra_ops=True)
    wide("Median ns per op", lambda s: s["median_s"] * 1e9 / s["ops"], "%.1f")
    wide("Ratio to glibc (median / glibc median; < 1 is faster)", lambda s: s.get("vs_" + REF_GLIBC), "%.2f")
    wide("Ratio to mimalloc (median / mimalloc median; < 1 is faster)",
         lambda s: s.get("vs_" + REF_MIMALLOC), "%.2f")
    wide("Median CPU seconds of the measured part (all threads)", lambda s: s["median_cpu_s"], "%.4f")
    wide("Median peak RSS, MiB (whole process, VmHWM)",
         lambda s: s["median_maxrss_kb"] / 1024 if s.get("median_maxrss_kb") else None, "%.1f")
    wide("Peak RSS ratio to glibc (median / glibc median; < 1 is smaller)",
         lambda s: s.get("rss_vs_" + REF_GLIBC), "%.2f")
    wide("Spread of the runs: (max - min) / median, %",
         lambda s: 100 * (s["max_s"] - s["min_s"]) / s["median_s"] if s["median_s"] else None, "%.0f")
    wide("Median preemptions in the measured part (involuntary context switches)",
         lambda s: s["median_preempt"], "%g")
    return out


HOW_TO_READ = """\
## How to read it

- Each cell is the **median** of the runs of one allocator on one workload. Runs are
  interleaved (run i of every allocator on a workload happens before run i+1 of any) and the
  allocator order is rotated, so drift of the machine spreads evenly.
- **seconds** is only the measured loop of `nm_bench` (CLOCK_MONOTONIC), not process start-up,
  the allocator's initialisation, or the set-up/tear-down of a working set.
- **ratio** = allocator median / reference median. Below 1 means faster than the reference
  (glibc, or mimalloc); 0.50 is twice as fast, 2.00 twice as slow.
- **CPU seconds** is the CPU time of the process over the measured part (both threads for
  prodcons). When other work shares the machine, wall-clock time also counts the time
  the benchmark waited for a CPU; CPU time does not, so it is the steadier figure then. The
  targets table gives both ratios; the verdict uses the wall-clock medians.
- **peak RSS** is the whole process's peak resident set (VmHWM; `ru_maxrss` is not used as
  Linux carries it over from the python parent across exec), so it includes the ~1 MiB of
  the program and libc: how much memory an allocator holds at its worst, not just live data.
- **spread** is (slowest - fastest) / median over the runs, and **preemptions** how often
  the kernel took the CPU away during the measured part; where either is large, differences
  of a similar size in that row are noise. The batch-256/1024/4096 rows are
  short for every allocator but glibc (a few ms), because their op counts are sized so
  that glibc, which is very slow there, takes about a second.
- The workloads (see `bench/nm_bench.c`): **pairs-N** malloc(N)+free in a loop;
  **batch-N** 1000 mallocs of N then 1000 frees in allocation order; **random** a
  10000-slot working set, each step frees a random slot and allocates 16 B - 32 KiB (skewed
  small), touching every page; **prodcons** one thread mallocs 16-512 B blocks and a second
  thread frees them (cross-thread free), blocks passed 256 at a time through a lock-free
  ring; **realloc** 16 buffers grown side by side by +16..64 B up to 4 KiB, then x1.5 up to
  8 KiB - 1 MiB, then shrunk to a quarter and freed; **request-2m/64m** a request's
  objects (16 B - 16 KiB) allocated, then all freed in allocation order.
- Workloads shaped like real programs: **larson** 4 threads each replace random blocks
  (16 B - 1 KiB) in a 1000-slot array, and hand their arrays to the next thread 8 times per
  run, so blocks are freed by another thread (a server); **espresso** one thread, sizes
  8 B - 4 KiB skewed small and some 16-64 KiB, 4000 long-lived blocks (replaced, or grown
  with realloc) and 64 short-lived temporaries, a quarter of the long-lived freed at once
  every 50,000 steps; **cache-scratch** / **cache-thrash** (after Hoard's) 4 threads
  allocate an 8-byte object, write it 1000 times and free it, over and over: with objects
  handed out by the main thread first (scratch: passive false sharing) or not (thrash:
  active); **scale-1/2/4/8** the same total of malloc(64)+free pairs, in batches of 16,
  split over 1, 2, 4 or 8 threads. Threads beyond the machine's CPUs (nproc above) take
  turns, so there the times show oversubscription as well as scaling.
- **Peak RSS: geometric mean** is, per allocator, the geometric mean over the workloads of
  its median peak RSS, next to glibc's over the same workloads; the goal is nebula's ratio
  <= 1. Like the RSS columns, it counts the ~1 MiB of program and libc in every workload,
  which pulls all ratios toward 1 on the small ones.
- **nebula-nocounters** is nebula built from the same sources with `-Dcounters=false`
  (scripts/bench.sh builds it next to the other, in build-bench-nocounters), so the
  per-operation statistics counters are compiled out; nebula / nebula-nocounters is what the
  counters cost. Its verdict is on instructions executed (cachegrind), because on a shared
  machine the wall-clock medians of one binary move by more than the 2% being judged; a
  time difference of a few percent is within the noise where the spread of that row is of
  the same size.
- Baselines are Debian's packaged builds (versions above), loaded with LD_PRELOAD exactly as
  nebula is; glibc is the program without any preload.
"""


# bench/idle.py's section (RSS over time), included verbatim between these markers; idle.py
# replaces what is between them in docs/benchmarks.md when it runs on its own.
IDLE_FRAGMENT = os.path.join(ROOT, "docs", "benchmarks-idle.md")
IDLE_BEGIN, IDLE_END = "<!-- begin: bench/idle.py, docs/benchmarks-idle.md -->", "<!-- end: bench/idle.py -->"
# bench/devmode.py's section (what the development preset costs), likewise.
DEVMODE_FRAGMENT = os.path.join(ROOT, "docs", "benchmarks-devmode.md")
DEVMODE_BEGIN, DEVMODE_END = ("<!-- begin: bench/devmode.py, docs/benchmarks-devmode.md -->",
                              "<!-- end: bench/devmode.py -->")
# bench/programs.py's section (real programs under each allocator), likewise.
PROGRAMS_FRAGMENT = os.path.join(ROOT, "docs", "benchmarks-programs.md")
PROGRAMS_BEGIN, PROGRAMS_END = ("<!-- begin: bench/programs.py, docs/benchmarks-programs.md -->",
                                "<!-- end: bench/programs.py -->")


def splice(doc, begin, end, fragment):
    """Put the fragment into doc between the markers begin and end: replacing an earlier copy,
    or before "## Library allocators against malloc" (else "## How to read it", else at the
    end)."""
    with open(doc) as f:
        text = f.read()
    block = "%s\n%s\n%s\n" % (begin, fragment.strip(), end)
    b, e = text.find(begin), text.find(end)
    if b >= 0 and e > b:
        text = text[:b] + block + text[e + len(end):].lstrip("\n")
    else:
        for anchor in ("\n## Library allocators against malloc", "\n## How to read it"):
            i = text.find(anchor)
            if i >= 0:
                text = text[:i + 1] + block + "\n" + text[i + 1:]
                break
        else:
            text = text.rstrip("\n") + "\n\n" + block
    with open(doc, "w") as f:
        f.write(text)


def render_markdown(meta, summary, workloads, allocs, notes, lib=None):
    m = meta["machine"]
    lines = ["# Benchmarks", "",
             "Generated by `bench/run.py` on %s. Do not edit by hand: rerun the command below." % meta["date"],
             "",
             "- Machine: %s, %s CPUs (nproc), %s RAM; Linux %s; %s" % (
                 m["cpu"], m["nproc"], m["memory"], m["kernel"], m["libc"]),
             "- Baselines: %s" % (", ".join(m["packages"]) or "unknown versions"),
             "- Not among them: mimalloc 3 and snmalloc. Debian 12 packages mimalloc 2.0.9 only and no "
             "snmalloc, and this machine reaches no source host (Debian's and npm's registries only), "
             "so neither can be built here; bench/run.py takes any preload with --allocators NAME=PATH.",
             "- nebula: git %s; preload sha256 %s...%s; compiler: %s" % (
                 m["nebula_rev"] or "?", m["nebula_so_sha256"] or "?",
                 "; %s preload sha256 %s..." % (NOCOUNTERS, m["nebula_nocounters_so_sha256"])
                 if NOCOUNTERS in allocs and m.get("nebula_nocounters_so_sha256") else "",
                 m["compiler"] or "?"),
             "- Runs per workload and allocator: %d%s" % (meta["runs"], " (quick: 1/20 of the ops)" if meta["quick"] else ""),
             "- Load average (1/5/15 min) at start: %s; at end: %s (other work on the machine adds noise)"
             % (meta["loadavg_start"], meta["loadavg_end"]),
             "",
             "Command:", "", "```sh", meta["command"], "```", ""]
    for n in notes:
        lines.append("> Note: %s" % n)
    if notes:
        lines.append("")
    for title, table in tables(summary, workloads, allocs):
        lines += ["## " + title, "", table, ""]
    if meta.get("pairs"):
        lines += ["## " + PAIR_TITLE, "", PAIR_NOTE, "", pair_table(meta["pairs"]), ""]
    # in the order splice() gives them when each script adds its section for the first time
    for fragment, begin, end in ((IDLE_FRAGMENT, IDLE_BEGIN, IDLE_END),
                                 (DEVMODE_FRAGMENT, DEVMODE_BEGIN, DEVMODE_END),
                                 (PROGRAMS_FRAGMENT, PROGRAMS_BEGIN, PROGRAMS_END)):
        if os.path.exists(fragment):
            with open(fragment) as f:
                lines += [begin, f.read().strip(), end, ""]
    if lib_table(lib):
        lines += ["## Library allocators against malloc", "", lib_table(lib), ""]
    lines.append(HOW_TO_READ)
    return "\n".join(lines)


def report(meta, summary, workloads, names, notes, out, lib=None):
    for title, table in tables(summary, workloads, names):
        print("\n" + title + "\n" + table)
    if meta.get("pairs"):
        print("\n" + PAIR_TITLE + "\n" + pair_table(meta["pairs"]))
    if lib_table(lib):
        print("\nLibrary allocators against malloc\n" + lib_table(lib))
    for n in notes:
        print("note: " + n)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            f.write(render_markdown(meta, summary, workloads, names, notes, lib))
        print("report: " + os.path.relpath(out, os.getcwd()))


def main():
    args = parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            d = json.load(f)
        names = [a["name"] for a in d["meta"]["allocators"]]
        workloads = list(dict.fromkeys(r["workload"] for r in d["records"]))
        summary = summarise(d["records"], workloads, names, d.get("instructions"))   # recomputed: same code as a live run
        report(d["meta"], summary, workloads, names, d.get("notes", []), args.out, d.get("lib"))
        return 0
    if not os.access(args.bench_bin, os.X_OK):
        sys.exit("run.py: %s not found; build first (scripts/bench.sh does)" % args.bench_bin)
    all_workloads = list_workloads(args.bench_bin)
    known = [w for w, _ in all_workloads]
    if args.workloads:
        workloads = args.workloads.split(",")
        bad = [w for w in workloads if w not in known and not re.fullmatch(r"(pairs|batch)-\d+", w)]
        if bad:
            sys.exit("run.py: unknown workload(s) %s; known: %s" % (",".join(bad), ",".join(known)))
    else:
        workloads = known
    allocs, notes = resolve_allocators(args)
    for n in notes:
        print("note: " + n, file=sys.stderr)
    if not allocs:
        sys.exit("run.py: no allocator to run")
    if args.pair_instructions:
        print(pair_table(pair_instructions(args, allocs)))
        return 0
    names = [n for n, _ in allocs]

    command = os.environ.get("NM_BENCH_COMMAND") or " ".join(
        shlex.quote(x) for x in ["python3", os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    meta = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "command": command,
        "runs": args.runs,
        "quick": args.quick,
        "bench_bin": args.bench_bin,
        "allocators": [{"name": n, "env": e} for n, e in allocs],
        "machine": machine_info(args),
    }

    meta["loadavg_start"] = loadavg()
    records = []
    total = args.runs * len(workloads) * len(allocs)
    name_width = max(len(n) for n in names)
    done = 0
    for i, w, pos, (name, env) in interleaved(args.runs, workloads, allocs):
        r = run_one(args, w, env)
        r.update({"workload": w, "allocator": name, "run": i, "position": pos})
        records.append(r)
        done += 1
        status = r["error"] if "error" in r else "%.4f s  %d KiB" % (r["seconds"], r["maxrss_kb"])
        print("[%*d/%d] run %d  %-11s %-*s %s" % (len(str(total)), done, total, i + 1, w,
                                                  name_width, name, status),
              file=sys.stderr, flush=True)

    instructions = measure_counter_instructions(args, workloads, allocs)
    if not args.quick:
        meta["pairs"] = pair_instructions(args, allocs)
    lib = run_lib(args, allocs)
    meta["loadavg_end"] = loadavg()
    summary = summarise(records, workloads, names, instructions)

    os.makedirs(args.results_dir, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = os.path.join(args.results_dir, "bench-%s%s.json" % (stamp, "-quick" if args.quick else ""))
    with open(json_path, "w") as f:
        json.dump({"meta": meta, "notes": notes, "summary": summary, "records": records,
                   "instructions": instructions, "lib": lib}, f, indent=1)

    report(meta, summary, workloads, names, notes, args.out, lib)
    print("\nraw results: " + os.path.relpath(json_path, os.getcwd()))
    failed = [r for r in records if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
