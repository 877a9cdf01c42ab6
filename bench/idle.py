#!/usr/bin/env python3
"""Run nm_idle_bench under glibc and each LD_PRELOAD allocator, sampling its RSS over time.

Usually started by scripts/bench.sh (which installs gnuplot-nox, builds, then runs this):

    scripts/bench.sh --idle                  # 3 interleaved runs; docs/benchmarks.md + charts
    scripts/bench.sh --idle --quick          # smoke run: 1/8 of the memory, nothing written to docs/
    python3 bench/idle.py --scenarios ring-exit --allocators glibc,nebula --runs 1 --no-docs

Each run of a scenario under an allocator is sampled from the outside: VmRSS and VmSize from
/proc/PID/status every --interval seconds (default 0.025), and the program's own phase marks
(`mark=freed ...` lines, with its RSS, VmSize and VmHWM read at that instant) are placed on
the same clock. Runs are interleaved as in bench/run.py: for run i, for each scenario, every
allocator runs once, in an order rotated by i and by the scenario.

Reported per scenario and allocator (medians over the runs): RSS after freeing (at the end
of the idle phase / after the last round / at the end), peak RSS (VmHWM), and both as a ratio
to glibc. Writes the raw samples as JSON under bench/results/, one PNG chart per scenario
(RSS over time of the median run, one line per allocator; gnuplot) under docs/images/, and
the tables as the markdown fragment docs/benchmarks-idle.md, which it also splices into
docs/benchmarks.md (bench/run.py includes the fragment when it rewrites that file).

Standard library only (gnuplot is run as a program; without it, no charts and a note).
"""
import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as runbench  # noqa: E402  bench/run.py: md_table, clean_env, sh, file_digest, ...

ROOT = runbench.ROOT
LIBDIR = runbench.LIBDIR

# (name, environment, chart colour, chart dash type), in column order. "{nebula}" is the
# built preload's path; an entry whose LD_PRELOAD file is missing is skipped with a note.
ALLOCATORS = [
    ("glibc", {}, "#404040", 1),
    ("jemalloc", {"LD_PRELOAD": LIBDIR + "/libjemalloc.so.2"}, "#1f77b4", 1),
    ("mimalloc", {"LD_PRELOAD": LIBDIR + "/libmimalloc.so.2"}, "#2ca02c", 1),
    ("tcmalloc", {"LD_PRELOAD": LIBDIR + "/libtcmalloc_minimal.so.4"}, "#9467bd", 1),
    ("nebula", {"LD_PRELOAD": "{nebula}"}, "#d62728", 1),
    ("nebula-compact", {"LD_PRELOAD": "{nebula}", "NEBULA_MEM_CONFIG": "strategy=compact"}, "#ff7f0e", 2),
    ("nebula-throughput", {"LD_PRELOAD": "{nebula}", "NEBULA_MEM_CONFIG": "strategy=throughput"},
     "#e377c2", 4),
]
REF = "glibc"

# Per scenario: what it does; the mark whose RSS is "after freeing"; the mark that is t = 0 on
# the chart; the marks drawn as labelled vertical lines (at the median over the allocators'
# plotted runs; they fall at nearly the same time for all once aligned); extra columns.
SCENARIOS = {
    "idle-alive": {
        "what": "16 threads each allocate 24 MiB in mixed small blocks (16..4096 B, every byte "
                "written) and free all of it themselves, in a shuffled order; the main thread "
                "then calls `malloc_trim(0)`, and everything stays idle for 1.5 s with the "
                "threads alive (blocked on a barrier); then the threads exit.",
        "after": "idle_end", "after_label": "RSS at idle end (1.5 s after free + trim)",
        "anchor": "freed", "xlabel": "time since all blocks were freed, s",
        "vlines": [("freed", "freed, malloc\\_trim"), ("idle_end", "idle end"), ("exited", "threads exit")],
    },
    "idle-no-trim": {
        "what": "The same as idle-alive without `malloc_trim`: freed memory has to go back by "
                "time alone (1.5 s idle, threads alive).",
        "after": "idle_end", "after_label": "RSS at idle end (1.5 s after free)",
        "anchor": "freed", "xlabel": "time since all blocks were freed, s",
        "vlines": [("freed", "freed"), ("idle_end", "idle end"), ("exited", "threads exit")],
    },
    "ring-exit": {
        "what": "64 threads in a ring, 8 rounds: thread i allocates 2 MiB of mixed blocks that "
                "thread (i+1) % 64 frees (cross-thread frees; a thread exits as soon as it has "
                "freed its share, so some owners are gone before their blocks are freed). Every "
                "thread of a round has exited before the next round starts; RSS is read after "
                "each round's joins, then 100 ms pause. It must not creep up round after round.",
        "after": "round8", "after_label": "RSS after round 8",
        "anchor": "start", "xlabel": "time since start, s (dots: end of each round)",
        "vlines": [],
    },
    "exited-threads": {
        "what": "1000 threads created one after another, at most 4 alive at once; each "
                "allocates 4 MiB of mixed blocks, frees all of it and exits. RSS and VmSize "
                "(address space) 0.5 s after the last join.",
        "after": "end", "after_label": "RSS at the end (0.5 s after the last join)",
        "anchor": "start", "xlabel": "time since start, s (dots: every 100 threads joined)",
        "vlines": [],
    },
    "handoff-idle": {
        "what": "The main thread allocates 64 MiB in mixed small blocks and hands them to 4 "
                "worker threads, which free them all (in a shuffled order) and then go on "
                "working for 6 s, each allocating and freeing 1 MiB of its own again and "
                "again; the main thread makes no allocator call meanwhile (idle, alive: a "
                "thread that built a structure for others and waits). Freed memory has to "
                "go back through the other threads' activity alone.",
        "after": "idle_end", "after_label": "RSS when the workers are done (6 s after the free)",
        "anchor": "freed", "xlabel": "time since the workers freed the main thread blocks, s",
        "vlines": [("freed", "freed by the workers"), ("idle_end", "workers done")],
    },
}

MARK_RE = re.compile(r"^mark=(\S+)((?: \S+=\S+)*)\s*$")
FRAGMENT = os.path.join(ROOT, "docs", "benchmarks-idle.md")
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
IMAGES = os.path.join(ROOT, "docs", "images")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="interleaved runs per scenario and allocator (default 3)")
    ap.add_argument("--scenarios", help="comma-separated subset of: " + ",".join(SCENARIOS))
    ap.add_argument("--allocators", help="comma-separated subset of: " + ",".join(a[0] for a in ALLOCATORS))
    ap.add_argument("--interval", type=float, default=0.025, help="RSS sampling period, s (default 0.025)")
    ap.add_argument("--quick", action="store_true",
                    help="1/8 of the memory and shorter waits; writes nothing under docs/")
    ap.add_argument("--no-docs", action="store_true",
                    help="write nothing under docs/ (no fragment, no charts, docs/benchmarks.md untouched)")
    ap.add_argument("--build-dir", default="build", help="meson build directory (default build)")
    ap.add_argument("--bench-bin", help="nm_idle_bench binary (default BUILD_DIR/bench/nm_idle_bench)")
    ap.add_argument("--nebula", help="nebula preload (default BUILD_DIR/preload/libnebula_preload.so)")
    ap.add_argument("--results-dir", default=os.path.join(ROOT, "bench", "results"), help="raw JSON goes here")
    ap.add_argument("--timeout", type=float, default=60, help="seconds before one run counts as failed")
    ap.add_argument("--from-json", metavar="FILE",
                    help="run nothing: tables, charts and fragment from an earlier run's raw JSON")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    if args.interval <= 0:
        ap.error("--interval must be > 0")
    build = args.build_dir if os.path.isabs(args.build_dir) else os.path.join(ROOT, args.build_dir)
    args.bench_bin = os.path.abspath(args.bench_bin or os.path.join(build, "bench", "nm_idle_bench"))
    args.nebula = os.path.abspath(args.nebula or os.path.join(build, "preload", "libnebula_preload.so"))
    return args


# ---------------------------------------------------------------- running

def resolve_allocators(args):
    known = [a[0] for a in ALLOCATORS]
    wanted = args.allocators.split(",") if args.allocators else known
    unknown = [w for w in wanted if w not in known]
    if unknown:
        sys.exit("idle.py: unknown allocator(s) %s; known: %s" % (",".join(unknown), ",".join(known)))
    chosen, notes = [], []
    for name, env, _, _ in ALLOCATORS:
        if name not in wanted:
            continue
        env = {k: v.replace("{nebula}", args.nebula) for k, v in env.items()}
        pre = env.get("LD_PRELOAD")
        if pre and not os.path.exists(pre):
            notes.append("%s skipped: %s not found" % (name, pre))
            continue
        chosen.append((name, env))
    return chosen, notes


def read_status(path):
    """(VmRSS, VmSize) in KiB, or None once the process is gone or a zombie (no Vm lines)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    rss = re.search(r"^VmRSS:\s+(\d+)", text, re.M)
    size = re.search(r"^VmSize:\s+(\d+)", text, re.M)
    if not rss or not size:
        return None
    return int(rss.group(1)), int(size.group(1))


def parse_marks(stdout, t0):
    """[{name, t (s since t0, the driver's clock), rss_kib, vmsize_kib, hwm_kib, ...}]"""
    marks = []
    for line in stdout.splitlines():
        m = MARK_RE.match(line.strip())
        if not m:
            continue
        d = {"name": m.group(1)}
        for kv in m.group(2).split():
            k, v = kv.split("=", 1)
            try:
                d[k] = float(v) if "." in v else int(v)
            except ValueError:
                d[k] = v
        if "mono_s" in d:
            d["t"] = d["mono_s"] - t0
        if d["name"] == "round":
            d["name"] = "round%d" % d.get("round", 0)
        elif d["name"] == "threads":
            d["name"] = "threads%d" % d.get("threads", 0)
        marks.append(d)
    return marks


def run_one(args, scenario, env):
    cmd = [args.bench_bin, scenario] + (["--quick"] if args.quick else [])
    full_env = runbench.clean_env()
    full_env.update(env)
    samples = []
    t0 = time.monotonic()   # CLOCK_MONOTONIC, the clock of the program's mono_s
    p = subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    status = "/proc/%d/status" % p.pid
    timed_out = False
    while p.poll() is None:
        t = time.monotonic()
        st = read_status(status)
        if st is None:
            break
        samples.append([round(t - t0, 4), st[0], st[1]])
        if t - t0 > args.timeout:
            p.kill()
            timed_out = True
            break
        time.sleep(max(0.0, args.interval - (time.monotonic() - t)))
    out, err = p.communicate()
    wall = time.monotonic() - t0
    r = {"samples": samples, "wall_s": round(wall, 3)}
    if timed_out:
        r["error"] = "timeout after %gs" % args.timeout
        return r
    if "cannot be preloaded" in err:
        r["error"] = "preload failed: " + err.strip().splitlines()[0]
        return r
    marks = parse_marks(out, t0)
    r["marks"] = marks
    if p.returncode != 0 or not marks or marks[-1]["name"] != "end":
        tail = (err.strip() or out.strip()).splitlines()[-1:] or [""]
        r["error"] = "exit %d: %s" % (p.returncode, tail[0])
    return r


# ---------------------------------------------------------------- figures

def mark_of(rec, name):
    return next((m for m in rec.get("marks", []) if m["name"] == name), None)


def run_metrics(scenario, rec):
    """The figures of one run, in KiB (None where a mark is missing)."""
    def rss(name):
        m = mark_of(rec, name)
        return m["rss_kib"] if m else None
    end = mark_of(rec, "end") or {}
    out = {
        "after_kib": rss(SCENARIOS[scenario]["after"]),
        "peak_kib": end.get("hwm_kib"),
        "sampled_peak_kib": max((s[1] for s in rec["samples"]), default=None),
        "start_kib": rss("start"),
        "end_vmsize_kib": end.get("vmsize_kib"),
    }
    if scenario.startswith("idle-"):
        out["freed_kib"] = rss("trimmed") if mark_of(rec, "trimmed") else rss("freed")
        out["exited_kib"] = rss("exited")
    elif scenario == "ring-exit":
        rounds = [rss("round%d" % i) for i in range(1, 9)]
        out["rounds_kib"] = rounds
        out["round1_kib"] = rounds[0]
        # creep: mean of the last 3 rounds - mean of the first 3 (one round's reading moves by
        # 10-20 MiB under some allocators, so round 8 - round 1 alone is mostly noise)
        out["creep_kib"] = (statistics.mean(rounds[-3:]) - statistics.mean(rounds[:3])
                            if None not in rounds else None)
        out["max_round_kib"] = max((x for x in rounds if x is not None), default=None)
    elif scenario == "exited-threads":
        out["threads100_kib"] = rss("threads100")
    elif scenario == "handoff-idle":
        out["allocated_kib"] = rss("allocated")
        out["freed_kib"] = rss("freed")
    return out


def summarise(records, scenarios, names):
    """{scenario: {allocator: {metric: median, ..., "runs": n, "median_run": index}}}"""
    summary = {}
    for sc in scenarios:
        row = {}
        for a in names:
            recs = [r for r in records if r["scenario"] == sc and r["allocator"] == a]
            ok = [r for r in recs if "error" not in r]
            if not ok:
                row[a] = {"error": next((r["error"] for r in recs if "error" in r), "no result")}
                continue
            mets = [run_metrics(sc, r) for r in ok]
            st = {"runs": len(ok), "failed_runs": len(recs) - len(ok)}
            for k in mets[0]:
                if k == "rounds_kib":
                    st[k] = [statistics.median(m[k][i] for m in mets if m[k][i] is not None)
                             if any(m[k][i] is not None for m in mets) else None for i in range(8)]
                    continue
                vals = [m[k] for m in mets if m[k] is not None]
                st[k] = statistics.median(vals) if vals else None
            # the run plotted: the one whose "after" figure is the median (lower middle if even)
            order = sorted(range(len(ok)), key=lambda i: (mets[i]["after_kib"] is None, mets[i]["after_kib"] or 0))
            st["median_run"] = ok[order[(len(order) - 1) // 2]]["run"]
            row[a] = st
        base = row.get(REF, {})
        for a in names:
            for k in ("after_kib", "peak_kib", "end_vmsize_kib"):
                if row[a].get(k) is not None and base.get(k):
                    row[a][k.replace("_kib", "_vs_glibc")] = row[a][k] / base[k]
        summary[sc] = row
    return summary


def mib(kib):
    return "-" if kib is None else "%.1f" % (kib / 1024)


def ratio(x):
    return "-" if x is None else "%.2f" % x


def scenario_table(sc, row, names):
    if sc.startswith("idle-"):
        hdr = ["allocator", ("after free + trim" if sc == "idle-alive" else "right after free") + ", MiB",
               "idle end, MiB", "/glibc", "peak, MiB", "peak /glibc", "after threads exit, MiB"]
        cols = [lambda s: mib(s["freed_kib"]), lambda s: mib(s["after_kib"]), lambda s: ratio(s.get("after_vs_glibc")),
                lambda s: mib(s["peak_kib"]), lambda s: ratio(s.get("peak_vs_glibc")), lambda s: mib(s["exited_kib"])]
    elif sc == "ring-exit":
        hdr = ["allocator", "after round 1, MiB", "after round 8, MiB", "/glibc", "creep: rounds 6-8 - rounds 1-3, MiB",
               "highest after a round, MiB", "peak, MiB", "peak /glibc"]
        cols = [lambda s: mib(s["round1_kib"]), lambda s: mib(s["after_kib"]), lambda s: ratio(s.get("after_vs_glibc")),
                lambda s: mib(s["creep_kib"]),
                lambda s: mib(s["max_round_kib"]), lambda s: mib(s["peak_kib"]), lambda s: ratio(s.get("peak_vs_glibc"))]
    elif sc == "handoff-idle":
        hdr = ["allocator", "allocated, MiB", "right after the workers' frees, MiB", "workers done, MiB", "/glibc",
               "peak, MiB", "peak /glibc"]
        cols = [lambda s: mib(s["allocated_kib"]), lambda s: mib(s["freed_kib"]), lambda s: mib(s["after_kib"]),
                lambda s: ratio(s.get("after_vs_glibc")), lambda s: mib(s["peak_kib"]),
                lambda s: ratio(s.get("peak_vs_glibc"))]
    else:
        hdr = ["allocator", "after 100 threads, MiB", "end, MiB", "/glibc", "peak, MiB", "peak /glibc",
               "VmSize at end, MiB", "VmSize /glibc"]
        cols = [lambda s: mib(s["threads100_kib"]), lambda s: mib(s["after_kib"]), lambda s: ratio(s.get("after_vs_glibc")),
                lambda s: mib(s["peak_kib"]), lambda s: ratio(s.get("peak_vs_glibc")),
                lambda s: mib(s["end_vmsize_kib"]), lambda s: ratio(s.get("end_vmsize_vs_glibc"))]
    rows = []
    for a in names:
        s = row[a]
        if "error" in s:
            rows.append([a] + ["FAIL"] * len(cols))
        else:
            rows.append([a] + [c(s) for c in cols])
    return runbench.md_table(hdr, rows)


def summary_table(summary, scenarios, names, key):
    """allocator x scenario: the median of one figure (after_kib or peak_kib) and its ratio."""
    hdr = ["allocator"]
    for sc in scenarios:
        hdr += [sc + ", MiB", "/glibc"]
    rows = []
    for a in names:
        r = [a]
        for sc in scenarios:
            s = summary[sc][a]
            r += ["FAIL", "-"] if "error" in s else [mib(s[key]), ratio(s.get(key.replace("_kib", "_vs_glibc")))]
        rows.append(r)
    return runbench.md_table(hdr, rows)


# ---------------------------------------------------------------- charts

def chart(sc, records, summary, names, path, meta):
    """One PNG: RSS over time of each allocator's median run. Returns None or an error string."""
    gp = shutil.which("gnuplot")
    if gp is None:
        return "gnuplot not found (Debian: gnuplot-nox); no chart"
    cfg = SCENARIOS[sc]
    style = {a[0]: (a[2], a[3]) for a in ALLOCATORS}
    blocks, plots, vtimes = [], [], {}
    for i, a in enumerate(names):
        st = summary[sc][a]
        if "error" in st:
            continue
        rec = next(r for r in records if r["scenario"] == sc and r["allocator"] == a and r["run"] == st["median_run"])
        anchor = mark_of(rec, cfg["anchor"])
        t0 = anchor["t"] if anchor else 0.0
        # the samples, with the marks' own readings merged in (exact instants)
        series = sorted([(t, rss) for t, rss, _ in rec["samples"]] + [(m["t"], m["rss_kib"]) for m in rec["marks"]])
        data = "\n".join("%.4f %.2f" % (t - t0, rss / 1024) for t, rss in series)
        pts = [(m["t"] - t0, m["rss_kib"] / 1024) for m in rec["marks"] if m["name"] not in ("start", "end")]
        for m in rec["marks"]:
            vtimes.setdefault(m["name"], []).append(m["t"] - t0)
        blocks.append("$d%d << EOD\n%s\nEOD\n$m%d << EOD\n%s\nEOD" % (
            i, data or "0 0", i, "\n".join("%.4f %.2f" % p for p in pts) or "0 NaN"))
        colour, dash = style[a]
        plots.append("$d%d using 1:2 with lines lw 2 dt %d lc rgb '%s' title '%s'" % (i, dash, colour, a))
        plots.append("$m%d using 1:2 with points pt 7 ps 0.7 lc rgb '%s' notitle" % (i, colour))
    if not plots:
        return "no successful run to chart"
    vl = []
    for j, (name, label) in enumerate(cfg["vlines"]):
        if name in vtimes:
            x = statistics.median(vtimes[name])
            vl.append("set arrow from %.4f, graph 0 to %.4f, graph 1 nohead dt 3 lw 1 lc rgb '#808080' back" % (x, x))
            vl.append("set label '%s' at %.4f, graph %.2f offset 0.5,0 left font ',9' tc rgb '#606060'" % (
                label, x, 0.97 - 0.05 * j))
    script = "\n".join([
        "set terminal pngcairo size 1100,600 enhanced font 'DejaVu Sans,11'",
        "set output '%s'" % path,
        "set title \"%s: RSS over time (median of %d runs per allocator)\\n{/*0.8 %s}\"" % (
            sc, meta["runs"], "nebula %s, %s" % (meta["git"], meta["date"])),
        "set xlabel '%s'" % cfg["xlabel"],
        "set ylabel 'RSS, MiB'",
        "set yrange [0:*]",
        "set xrange [0:*]" if cfg["anchor"] == "start" else "set xrange [*:*]",
        "set grid xtics ytics lc rgb '#dddddd'",
        "set key outside right top box opaque",
        "set border 3", "set xtics nomirror", "set ytics nomirror",
    ] + vl + blocks + ["plot " + ", \\\n     ".join(plots), ""])
    try:
        p = subprocess.run([gp], input=script, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return "gnuplot failed: %s" % e
    if p.returncode != 0:
        return "gnuplot failed: %s" % (p.stderr.strip().splitlines()[-1:] or ["?"])[0]
    return None


# ---------------------------------------------------------------- markdown

HOW = """\
How to read it:

- Every figure is the **median over the runs** of the RSS (VmRSS) of the whole process, in
  MiB, so it includes the program, libc and the allocator's own start-up memory (about
  1-7 MiB, see `start` in the raw JSON). **after** is the scenario's "after freeing" figure
  (its column is named in each table); **peak** is VmHWM at the end, the exact peak rather
  than the highest 25 ms sample. **/glibc** = allocator median / glibc median (below 1:
  less memory than glibc).
- The RSS figures in the tables are read by the program itself at each phase mark; the
  charts are the RSS sampled from outside every 25 ms (bench/idle.py reading
  /proc/PID/status) during the run of each allocator whose "after" figure is the median
  one, with the phase marks as dots or dotted lines. The idle charts put t = 0 where the
  last block was freed, so the 1.5 s idle phase lines up for every allocator; the
  allocation phase, of different length for each, is at negative times.
- `malloc_trim(0)` is whatever the process resolves it to: nebula exports one; jemalloc,
  mimalloc and tcmalloc do not, so under them glibc's runs (on glibc's heap, which they do
  not use): for them idle-alive and idle-no-trim do the same.
- The block tables of the program are mmap'ed directly and unmapped once their blocks are
  freed, so they are not in the "after" figures. Thread stacks are glibc's (not malloc's)
  and the same for every allocator.
- ring-exit: under some allocators (glibc, jemalloc, nebula) the reading after one round
  moves by 10-20 MiB from run to run, depending on which threads were still running when
  others exited; the creep column therefore compares the means of the last and the first
  three rounds, not round 8 with round 1.
- Baselines are Debian's packaged builds, with their default settings (jemalloc, for one,
  returns freed pages by a time-based decay of about 10 s, longer than these idle phases).
"""


def render_fragment(meta, summary, scenarios, names, notes, images):
    m = meta["machine"]
    lines = [
        "## Memory over time: threads that allocate, free and go idle",
        "",
        "Generated by `bench/idle.py` on %s, nebula git %s (allocator sources last changed in %s; "
        "preload sha256 %s...). Regenerate (charts, this section, and its copy in "
        "docs/benchmarks.md) with:" % (
            meta["date"], meta["git"], meta.get("src_git", "?"), meta["nebula_so_sha256"] or "?"),
        "",
        "```sh", meta["command"], "```",
        "",
        "- Program: `bench/nm_idle_bench.c`, one scenario per run, under glibc and LD_PRELOAD of "
        "each allocator; %d interleaved runs per scenario and allocator%s." % (
            meta["runs"], " (quick: 1/8 of the memory)" if meta["quick"] else ""),
        "- Machine: %s, %s CPUs, %s RAM; Linux %s; %s; baselines: %s" % (
            m["cpu"], m["nproc"], m["memory"], m["kernel"], m["libc"], ", ".join(m["packages"]) or "?"),
        "- Load average (1/5/15 min) at start: %s; at end: %s" % (meta["loadavg_start"], meta["loadavg_end"]),
        "",
    ]
    for n in notes:
        lines += ["> Note: %s" % n, ""]
    lines += ["### Summary: RSS after freeing, MiB (median; what \"after\" is: see each scenario)", "",
              summary_table(summary, scenarios, names, "after_kib"), "",
              "### Summary: peak RSS (VmHWM), MiB (median)", "",
              summary_table(summary, scenarios, names, "peak_kib"), ""]
    for sc in scenarios:
        lines += ["### %s" % sc, "", SCENARIOS[sc]["what"], ""]
        if images.get(sc):
            lines += ["![%s: RSS over time per allocator](%s)" % (sc, images[sc]), ""]
        lines += ["\"After\" here: %s." % SCENARIOS[sc]["after_label"], "",
                  scenario_table(sc, summary[sc], names), ""]
    lines.append(HOW)
    return "\n".join(lines)


def report(meta, records, summary, scenarios, names, notes, write_docs):
    for sc in scenarios:
        print("\n%s  (after = %s)\n%s" % (sc, SCENARIOS[sc]["after_label"], scenario_table(sc, summary[sc], names)))
    print("\nRSS after freeing, MiB\n" + summary_table(summary, scenarios, names, "after_kib"))
    print("\nPeak RSS, MiB\n" + summary_table(summary, scenarios, names, "peak_kib"))
    images = {}
    if write_docs:
        os.makedirs(IMAGES, exist_ok=True)
        for sc in scenarios:
            path = os.path.join(IMAGES, "%s.png" % sc)
            err = chart(sc, records, summary, names, path, meta)
            if err:
                notes = notes + ["%s: %s" % (sc, err)]
                print("note: %s: %s" % (sc, err), file=sys.stderr)
            else:
                images[sc] = os.path.relpath(path, os.path.dirname(FRAGMENT))
                print("chart: " + os.path.relpath(path, os.getcwd()))
        fragment = render_fragment(meta, summary, scenarios, names, notes, images)
        with open(FRAGMENT, "w") as f:
            f.write(fragment)
        print("fragment: " + os.path.relpath(FRAGMENT, os.getcwd()))
        if os.path.exists(DOC):
            runbench.splice(DOC, runbench.IDLE_BEGIN, runbench.IDLE_END, fragment)
            print("report: " + os.path.relpath(DOC, os.getcwd()))
    for n in notes:
        print("note: " + n)


def main():
    args = parse_args()
    write_docs = not (args.quick or args.no_docs)
    if args.from_json:
        with open(args.from_json) as f:
            d = json.load(f)
        names = [a["name"] for a in d["meta"]["allocators"]]
        scenarios = list(dict.fromkeys(r["scenario"] for r in d["records"]))
        summary = summarise(d["records"], scenarios, names)
        report(d["meta"], d["records"], summary, scenarios, names, d.get("notes", []),
               write_docs and not d["meta"].get("quick"))
        return 0
    if not os.access(args.bench_bin, os.X_OK):
        sys.exit("idle.py: %s not found; build first (scripts/bench.sh --idle does)" % args.bench_bin)
    scenarios = args.scenarios.split(",") if args.scenarios else list(SCENARIOS)
    bad = [s for s in scenarios if s not in SCENARIOS]
    if bad:
        sys.exit("idle.py: unknown scenario(s) %s; known: %s" % (",".join(bad), ",".join(SCENARIOS)))
    allocs, notes = resolve_allocators(args)
    for n in notes:
        print("note: " + n, file=sys.stderr)
    if not allocs:
        sys.exit("idle.py: no allocator to run")
    names = [n for n, _ in allocs]

    meta = dict(runbench.source_meta(args.nebula), runs=args.runs, quick=args.quick, interval_s=args.interval,
                bench_bin=args.bench_bin, allocators=[{"name": n, "env": e} for n, e in allocs])

    records = []
    total = args.runs * len(scenarios) * len(allocs)
    width = max(len(n) for n in names)
    done = 0
    for i, sc, pos, (name, env) in runbench.interleaved(args.runs, scenarios, allocs):
        r = run_one(args, sc, env)
        r.update({"scenario": sc, "allocator": name, "run": i, "position": pos})
        records.append(r)
        done += 1
        if "error" in r:
            status = r["error"]
        else:
            mt = run_metrics(sc, r)
            status = "after %s MiB  peak %s MiB  %.1f s  %d samples" % (
                mib(mt["after_kib"]), mib(mt["peak_kib"]), r["wall_s"], len(r["samples"]))
        print("[%*d/%d] run %d  %-14s %-*s %s" % (len(str(total)), done, total, i + 1, sc,
                                                 width, name, status), file=sys.stderr, flush=True)
    meta["loadavg_end"] = runbench.loadavg()
    summary = summarise(records, scenarios, names)

    os.makedirs(args.results_dir, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = os.path.join(args.results_dir, "idle-%s%s.json" % (stamp, "-quick" if args.quick else ""))
    with open(json_path, "w") as f:
        json.dump({"meta": meta, "notes": notes, "summary": summary, "records": records}, f)
    report(meta, records, summary, scenarios, names, notes, write_docs)
    print("\nraw results: " + os.path.relpath(json_path, os.getcwd()))
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
