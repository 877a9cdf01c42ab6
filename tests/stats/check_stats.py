#!/usr/bin/env python3
"""Checks statistics dumps of the nebula preload, for test_stats.c.

  check_stats.py json FILE... [--pid PID] [--quiescent]
      Each FILE holds one JSON dump (a stats_file): it parses, has the schema
      nebula-memory/stats version 1 with every documented key, and its numbers agree with
      each other (see check_json). Prints "json ok files=N".
  check_stats.py json-lines FILE --pid PID [--min N]
      FILE is a program's stderr with JSON dumps on it: every line that contains
      "schema" must be a whole dump on a line of its own ({"schema"... up to its newline)
      and parse, at least N of them; every other line must be a known nebula message.
      Prints "json-lines ok dumps=N".
  check_stats.py text FILE --pid PID [--min N] [--exact N] [--allow LINE]...
      FILE is a program's stderr with text dumps on it: each dump has every line of the
      text format in order, well formed, and ends with the class table; other lines must be
      known nebula messages (or a prefix given with --allow). Prints "text ok dumps=N".
  check_stats.py quiesce BASE FINAL CHILD_STDOUT
      BASE and FINAL are the JSON dumps a quiesce run made before and after its blocks;
      CHILD_STDOUT is what the child knows about them. Asserts the counts equal. Prints
      "quiesce ok ...".
  check_stats.py prometheus FILE
      A strict parser of the Prometheus text exposition format (used when neither promtool
      nor prometheus_client is installed). Prints "prometheus ok families=N samples=M".

Exit 0 when every check holds, 1 with one line per problem on stderr otherwise.
"""
import json
import math
import re
import sys

WRAP = 1 << 60   # a counter this high is a negative number wrapped around

problems = []


def problem(msg):
    problems.append(msg)


def finish(ok_line):
    if problems:
        for p in problems[:40]:
            print("FAIL: " + p, file=sys.stderr)
        if len(problems) > 40:
            print(f"FAIL: ... and {len(problems) - 40} more", file=sys.stderr)
        sys.exit(1)
    print(ok_line)
    sys.exit(0)


def opt(args, name, conv=str, default=None, many=False):
    out = [] if many else default
    i = 0
    while i < len(args):
        if args[i] == name:
            v = conv(args[i + 1])
            if many:
                out.append(v)
            else:
                out = v
            del args[i:i + 2]
        else:
            i += 1
    return out


def flag(args, name):
    if name in args:
        args.remove(name)
        return True
    return False


# ---------------------------------------------------------------- JSON

LINE_KEYS = ["allocs", "frees", "remote_frees", "live_blocks", "bytes_in_use"]
PROCESS_KEYS = ["bytes_in_use", "live_blocks", "allocs", "frees", "page_bytes", "page_bytes_peak",
                "mapped_bytes", "dirty_bytes", "purged_bytes", "segments_mapped",
                "segments_unmapped", "rss_bytes", "threads", "heaps"]
BUMP_KEYS = ["regions_live", "regions_pinned", "regions_made", "regions_recycled", "region_bytes"]
CLASS_KEYS = ["class", "size"] + LINE_KEYS + ["pages", "peak_page_bytes", "capacity_blocks"]
BACKENDS = ["pool", "large", "bump", "system"]


def want_keys(where, obj, keys):
    if not isinstance(obj, dict):
        problem(f"{where}: not an object")
        return False
    ok = True
    for k in keys:
        if k not in obj:
            problem(f"{where}: no key '{k}'")
            ok = False
        elif not isinstance(obj[k], int) or isinstance(obj[k], bool):
            problem(f"{where}.{k}: not an integer: {obj[k]!r}")
            ok = False
        elif obj[k] < 0 or obj[k] >= WRAP:
            problem(f"{where}.{k} = {obj[k]}: out of range (a negative count wrapped around?)")
            ok = False
    return ok


def live_of(line):
    gone = line["frees"] + line["remote_frees"]
    return line["allocs"] - gone if line["allocs"] > gone else 0


def check_json(d, where, pid=None, quiescent=False):
    """The numbers of one dump agree with each other. Holds for any dump (every figure of a
    dump comes from one snapshot of the counters); quiescent adds what holds only when no
    thread allocates while the dump is taken and every remote free has been collected."""
    n0 = len(problems)
    if not isinstance(d, dict):
        problem(f"{where}: not an object")
        return
    top = ["schema", "version", "pid", "monotonic_ms", "strategy_route", "process", "budgets",
           "backends", "total", "classes"]
    for k in top:
        if k not in d:
            problem(f"{where}: no key '{k}'")
    # docs/statistics.md: "A new field may appear within version 1": extra keys are fine.
    if len(problems) > n0:
        return
    if d["schema"] != "nebula-memory/stats" or d["version"] != 1:
        problem(f"{where}: schema {d['schema']!r} version {d['version']!r}")
    if pid is not None and d["pid"] != pid:
        problem(f"{where}: pid {d['pid']}, expected {pid}")
    want_keys(where + ".strategy_route", d["strategy_route"], ["pool_max", "large_max", "bump_region"])
    want_keys(where + ".process", d["process"], PROCESS_KEYS)
    if not isinstance(d["budgets"], list):
        problem(f"{where}.budgets: not a list")
    else:
        for i, b in enumerate(d["budgets"]):
            if isinstance(b, dict) and isinstance(b.get("key"), str):
                want_keys(f"{where}.budgets[{i}]", {k: v for k, v in b.items() if k != "key"},
                          ["limit", "used", "peak"])
            else:
                problem(f"{where}.budgets[{i}]: no string 'key'")
    be = d["backends"]
    if not isinstance(be, dict) or sorted(be) != sorted(BACKENDS):
        problem(f"{where}.backends: keys {sorted(be) if isinstance(be, dict) else be!r}")
        return
    for name in BACKENDS:
        want_keys(f"{where}.backends.{name}", be[name], LINE_KEYS + (BUMP_KEYS if name == "bump" else []))
    want_keys(where + ".total", d["total"], LINE_KEYS)
    if not isinstance(d["classes"], list):
        problem(f"{where}.classes: not a list")
        return
    for i, c in enumerate(d["classes"]):
        want_keys(f"{where}.classes[{i}]", c, CLASS_KEYS)
    if len(problems) > n0:
        return

    p, tot, cls = d["process"], d["total"], d["classes"]
    pool, large, bump, system = (be[n] for n in BACKENDS)
    # total = pool + bump + system (pool includes large)
    for k in LINE_KEYS:
        s = pool[k] + bump[k] + system[k]
        if tot[k] != s:
            problem(f"{where}: total.{k} = {tot[k]} but pool + bump + system = {s}")
    # process mirrors total
    for pk, tk in [("bytes_in_use", "bytes_in_use"), ("live_blocks", "live_blocks"), ("allocs", "allocs")]:
        if p[pk] != tot[tk]:
            problem(f"{where}: process.{pk} = {p[pk]} but total.{tk} = {tot[tk]}")
    if p["frees"] != tot["frees"] + tot["remote_frees"]:
        problem(f"{where}: process.frees = {p['frees']} but total frees + remote frees = "
                f"{tot['frees'] + tot['remote_frees']}")
    # one line per class, in order, sizes increasing; live and bytes from the counts
    last_c, last_s = -1, 0
    for c in cls:
        w = f"{where}: class {c['class']} ({c['size']} B)"
        if c["class"] <= last_c or c["size"] <= last_s:
            problem(f"{w}: classes out of order or repeated")
        last_c, last_s = c["class"], c["size"]
        if c["allocs"] == 0 and c["pages"] == 0:
            problem(f"{w}: listed with no allocation and no page")
        if c["live_blocks"] != live_of(c):
            problem(f"{w}: live_blocks {c['live_blocks']} != allocs - frees - remote_frees "
                    f"({c['allocs']} - {c['frees']} - {c['remote_frees']}, clamped at 0)")
        if c["bytes_in_use"] != c["live_blocks"] * c["size"]:
            problem(f"{w}: bytes_in_use {c['bytes_in_use']} != live_blocks * size "
                    f"({c['live_blocks']} * {c['size']})")
        if c["size"] > d["strategy_route"]["pool_max"] and c["allocs"] > 0:
            problem(f"{w}: a class above pool_max {d['strategy_route']['pool_max']} has blocks")
    # pool = classes + large
    for k in ["allocs", "live_blocks", "bytes_in_use"]:
        s = sum(c[k] for c in cls) + large[k]
        if pool[k] != s:
            problem(f"{where}: backends.pool.{k} = {pool[k]} but classes + large = {s}")
    for name, line in [("large", large), ("bump", bump), ("system", system)]:
        if line["live_blocks"] != live_of(line):
            problem(f"{where}: backends.{name}.live_blocks {line['live_blocks']} != allocs - frees - "
                    f"remote_frees ({line['allocs']} - {line['frees']} - {line['remote_frees']}, clamped)")
    if system["remote_frees"] != 0:
        problem(f"{where}: backends.system.remote_frees = {system['remote_frees']} (system frees "
                f"are counted by the freeing thread)")
    # bump: its bytes are its live regions
    if bump["region_bytes"] != d["strategy_route"]["bump_region"]:
        problem(f"{where}: bump.region_bytes {bump['region_bytes']} != strategy_route.bump_region "
                f"{d['strategy_route']['bump_region']}")
    if bump["bytes_in_use"] != bump["regions_live"] * bump["region_bytes"]:
        problem(f"{where}: bump.bytes_in_use {bump['bytes_in_use']} != regions_live * region_bytes "
                f"({bump['regions_live']} * {bump['region_bytes']})")
    if not bump["regions_pinned"] <= bump["regions_live"] <= bump["regions_made"]:
        problem(f"{where}: bump regions pinned {bump['regions_pinned']}, live {bump['regions_live']}, "
                f"made {bump['regions_made']}: expected pinned <= live <= made")
    if p["threads"] > p["heaps"]:
        problem(f"{where}: process.threads {p['threads']} > heaps {p['heaps']}")
    if p["segments_unmapped"] > p["segments_mapped"]:
        problem(f"{where}: segments_unmapped {p['segments_unmapped']} > mapped {p['segments_mapped']}")

    if not quiescent:
        return
    for name, line in [("total", tot)] + [(f"backends.{n}", be[n]) for n in BACKENDS] + \
            [(f"class {c['class']} ({c['size']} B)", c) for c in cls]:
        if line["allocs"] < line["frees"] + line["remote_frees"]:
            problem(f"{where}: {name}: more frees ({line['frees']} + {line['remote_frees']} remote) "
                    f"than allocations ({line['allocs']})")
        elif line["live_blocks"] != line["allocs"] - line["frees"] - line["remote_frees"]:
            problem(f"{where}: {name}: live_blocks {line['live_blocks']} != allocs - frees - "
                    f"remote_frees = {line['allocs'] - line['frees'] - line['remote_frees']}")
    for c in cls:
        if c["live_blocks"] > c["capacity_blocks"]:
            problem(f"{where}: class {c['class']} ({c['size']} B): {c['live_blocks']} live blocks "
                    f"in pages holding {c['capacity_blocks']}")
        if c["capacity_blocks"] * c["size"] > c["peak_page_bytes"]:
            problem(f"{where}: class {c['class']} ({c['size']} B): its pages hold "
                    f"{c['capacity_blocks']} blocks, more than its peak of {c['peak_page_bytes']} bytes")
    if p["page_bytes"] > p["page_bytes_peak"]:
        problem(f"{where}: page_bytes {p['page_bytes']} > page_bytes_peak {p['page_bytes_peak']}")
    if p["page_bytes"] > p["mapped_bytes"]:
        problem(f"{where}: page_bytes {p['page_bytes']} > mapped_bytes {p['mapped_bytes']}")


def load_json(path, where):
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        problem(f"{where}: {e}")
        return None
    if not text.endswith("}\n") or text.count("\n") != 1:
        problem(f"{where}: a dump is one line ending with a newline; got {len(text)} bytes, "
                f"{text.count(chr(10))} newlines, ending {text[-40:]!r}")
    try:
        return json.loads(text)
    except ValueError as e:
        problem(f"{where}: not JSON: {e}; text: {text[:300]!r}...")
        return None


def cmd_json(args):
    pid = opt(args, "--pid", int)
    quiescent = flag(args, "--quiescent")
    for path in args:
        d = load_json(path, path)
        if d is not None:
            check_json(d, path, pid, quiescent)
    finish(f"json ok files={len(args)}")


# ---------------------------------------------------------------- stderr streams

KNOWN_MESSAGES = [
    "nebula: statistics dump skipped: another one is in progress",
]


def cmd_json_lines(args):
    pid = opt(args, "--pid", int)
    minimum = opt(args, "--min", int, 1)
    allow = opt(args, "--allow", str, many=True)
    path = args[0]
    with open(path, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8", errors="replace")
    dumps = 0
    for no, line in enumerate(text.split("\n"), 1):
        if line == "":
            continue
        if line.startswith('{"schema"'):
            try:
                d = json.loads(line)
            except ValueError as e:
                problem(f"{path}:{no}: a dump line is not JSON: {e}: {line[:200]!r}...{line[-100:]!r}")
                continue
            dumps += 1
            check_json(d, f"{path}:{no}", pid)
        elif '"schema"' in line or "nebula-memory/stats" in line:
            problem(f"{path}:{no}: a dump that does not start its line (interleaved output?): {line[:200]!r}")
        elif line in KNOWN_MESSAGES or any(line.startswith(a) for a in allow):
            continue
        else:
            problem(f"{path}:{no}: unexpected line {line[:200]!r}")
    if dumps < minimum:
        problem(f"{path}: {dumps} dumps, expected at least {minimum}")
    finish(f"json-lines ok dumps={dumps}")


SIZE = r"(?:\d+ B|\d+\.\d (?:KiB|MiB|GiB|TiB|PiB))"
TEXT_HEAD = re.compile(r"nebula: statistics of pid (\d+)")
TEXT_PROCESS = re.compile(
    rf"  process: {SIZE} in use in (\d+) blocks; pages {SIZE} \(peak {SIZE}\), mapped {SIZE}, "
    rf"purged {SIZE}, RSS {SIZE}; (\d+) threads, (\d+) heaps")
TEXT_BUDGET = re.compile(rf"  budget: (budget|pool_budget|bump_budget|system_budget)=\d+[KMGT]?, "
                         rf"{SIZE} in use, peak {SIZE}")
TEXT_BACKEND_HEAD = "  backend         allocs         frees  remote frees        live      in use"
TEXT_BUMP = re.compile(
    rf"  bump regions: (\d+) live \({SIZE}\), (\d+) pinned \(left behind by their thread, kept by "
    rf"live blocks: {SIZE}\), (\d+) made, (\d+) recycled whole")
TEXT_CLASS_HEAD = ("  class     size        allocs         frees  remote frees        live      in use"
                   "  pages   peak pages  utilization")
TEXT_CLASS = re.compile(rf" +(\d+) +({SIZE}) +(\d+) +(\d+) +(\d+) +(\d+) +({SIZE}) +(\d+) +({SIZE}) +(\d+%|-)")


def text_line_re(name):
    return re.compile(rf"  {name} +(\d+) +(\d+) +(\d+) +(\d+) +({SIZE})")


def check_text_dump(lines, i, where, pid):
    """Checks the dump starting at lines[i]; returns the index after it."""
    def get(k):
        return lines[k] if k < len(lines) else "<end of output>"
    m = TEXT_HEAD.fullmatch(get(i))
    if pid is not None and int(m.group(1)) != pid:
        problem(f"{where}:{i + 1}: pid {m.group(1)}, expected {pid}")
    i += 1
    if not TEXT_PROCESS.fullmatch(get(i)):
        problem(f"{where}:{i + 1}: malformed process line: {get(i)!r}")
        return i
    proc = TEXT_PROCESS.fullmatch(get(i))
    i += 1
    while TEXT_BUDGET.fullmatch(get(i)):
        i += 1
    if get(i) != TEXT_BACKEND_HEAD:
        problem(f"{where}:{i + 1}: expected the backend header, got {get(i)!r}")
        return i
    i += 1
    vals = {}
    for name in BACKENDS + ["total"]:
        m = text_line_re(name).fullmatch(get(i))
        if not m:
            problem(f"{where}:{i + 1}: malformed or missing '{name}' line: {get(i)!r}")
            return i
        a, f, r, live = (int(m.group(k)) for k in range(1, 5))
        vals[name] = (a, f, r, live)
        if name != "pool" and name != "total" and live != (a - f - r if a > f + r else 0):
            problem(f"{where}:{i + 1}: {name}: live {live} != allocs - frees - remote ({a} - {f} - {r})")
        i += 1
    for k in range(4):
        s = vals["pool"][k] + vals["bump"][k] + vals["system"][k]
        if vals["total"][k] != s:
            problem(f"{where}: total column {k + 1} = {vals['total'][k]} but pool + bump + system = {s}")
    if int(proc.group(1)) != vals["total"][3]:
        problem(f"{where}: process line says {proc.group(1)} blocks, total line {vals['total'][3]}")
    m = TEXT_BUMP.fullmatch(get(i))
    if not m:
        problem(f"{where}:{i + 1}: malformed or missing bump regions line: {get(i)!r}")
        return i
    i += 1
    if get(i) != TEXT_CLASS_HEAD:
        problem(f"{where}:{i + 1}: expected the class table header, got {get(i)!r}")
        return i
    i += 1
    rows, last = 0, -1
    class_allocs = 0
    while i < len(lines) and TEXT_CLASS.fullmatch(lines[i]):
        m = TEXT_CLASS.fullmatch(lines[i])
        c, a, f, r, live = int(m.group(1)), int(m.group(3)), int(m.group(4)), int(m.group(5)), int(m.group(6))
        if c <= last:
            problem(f"{where}:{i + 1}: class {c} after class {last}")
        last = c
        if live != (a - f - r if a > f + r else 0):
            problem(f"{where}:{i + 1}: class {c}: live {live} != allocs - frees - remote ({a} - {f} - {r})")
        class_allocs += a
        rows += 1
        i += 1
    if class_allocs + vals["large"][0] != vals["pool"][0]:
        problem(f"{where}: pool allocs {vals['pool'][0]} != class rows {class_allocs} + large {vals['large'][0]}")
    if rows == 0:
        problem(f"{where}:{i + 1}: a class table without rows (every program here allocates)")
    return i


def cmd_text(args):
    pid = opt(args, "--pid", int)
    minimum = opt(args, "--min", int, 1)
    exact = opt(args, "--exact", int)
    allow = opt(args, "--allow", str, many=True)
    path = args[0]
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", errors="replace")
    if text and not text.endswith("\n"):
        problem(f"{path}: does not end with a newline (a dump cut short?): {text[-200:]!r}")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    dumps = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        if TEXT_HEAD.fullmatch(line):
            dumps += 1
            n = len(problems)
            i = check_text_dump(lines, i, path, pid)
            if len(problems) > n and len(problems) > 40:
                break
        elif "statistics of pid" in line:
            problem(f"{path}:{i + 1}: a dump header in the middle of a line (interleaved output?): {line[:200]!r}")
            i += 1
        elif line in KNOWN_MESSAGES or any(line.startswith(a) for a in allow):
            i += 1
        else:
            problem(f"{path}:{i + 1}: unexpected line (outside any dump, or a dump cut short): {line[:200]!r}")
            i += 1
    if exact is not None and dumps != exact:
        problem(f"{path}: {dumps} dumps, expected exactly {exact}")
    if dumps < minimum:
        problem(f"{path}: {dumps} dumps, expected at least {minimum}")
    finish(f"text ok dumps={dumps}")


# ---------------------------------------------------------------- quiescence

def parse_child(path):
    groups, kinds, head = [], {}, {}
    with open(path) as f:
        for line in f:
            words = line.split()
            if not words:
                continue
            kv = {k: v for k, v in (w.split("=", 1) for w in words[1:] if "=" in w)}
            if words[0] == "quiesce":
                head = kv
            elif words[0] == "group":
                groups.append({k: (v if k == "kind" else int(v)) for k, v in kv.items()})
            elif words[0] == "kind":
                kinds[words[1]] = {k: int(v) for k, v in kv.items()}
    return head, groups, kinds


def cmd_quiesce(args):
    base_path, final_path, child_path = args[:3]
    base = load_json(base_path, "first dump")
    final = load_json(final_path, "second dump")
    head, groups, kinds = parse_child(child_path)
    if base is None or final is None or not groups or set(kinds) != {"class", "large", "bump", "system"}:
        problem(f"missing input: dumps {base is not None}/{final is not None}, child groups "
                f"{len(groups)}, kinds {sorted(kinds)}")
        finish("")
    check_json(base, "first dump", quiescent=True)
    check_json(final, "second dump", quiescent=True)
    if base["pid"] != final["pid"]:
        problem(f"the dumps name pids {base['pid']} and {final['pid']}")
    want_threads = int(head.get("dump_threads", -1))
    if want_threads >= 0 and final["process"]["threads"] != want_threads:
        problem(f"second dump: process.threads {final['process']['threads']}, the program has "
                f"{want_threads} threads with a heap")

    def delta(a, b, k):
        return b[k] - a[k]

    # per backend: counts from the dumps' difference; bytes too (nothing of these kinds is
    # live in the first dump but what the program made before, which the difference removes)
    expect = {
        "pool": {k: -1 if min(kinds["class"][k], kinds["large"][k]) < 0 else
                 kinds["class"][k] + kinds["large"][k] for k in kinds["class"]},
        "large": kinds["large"],
        "system": kinds["system"],
        "bump": kinds["bump"],
    }
    fields = [("allocs", "allocs"), ("frees", "frees"), ("remote_frees", "remote"),
              ("live_blocks", "live")]
    for name in BACKENDS:
        b, f = base["backends"][name], final["backends"][name]
        for jk, ck in fields:
            got = delta(b, f, jk)
            if expect[name][ck] < 0:
                continue   # the program does not know this one
            if got != expect[name][ck]:
                problem(f"backends.{name}.{jk} grew by {got}; the program made {expect[name][ck]} "
                        f"(first dump {b[jk]}, second {f[jk]})")
        if name != "bump":
            got = delta(b, f, "bytes_in_use")
            if got != expect[name]["bytes"]:
                problem(f"backends.{name}.bytes_in_use grew by {got}; the program's live blocks of "
                        f"this backend have {expect[name]['bytes']} usable bytes (first dump "
                        f"{b['bytes_in_use']}, second {f['bytes_in_use']})")
        else:
            # bump bytes are its live regions: an upper bound of its live blocks' bytes
            if f["bytes_in_use"] < expect["bump"]["bytes"] + 0:
                problem(f"backends.bump.bytes_in_use {f['bytes_in_use']} < the {expect['bump']['bytes']} "
                        f"usable bytes of the program's live bump blocks")
            if expect["bump"]["live"] > 0 and f["regions_live"] < 1:
                problem("live bump blocks but no live bump region")
    # per pool class: the group's blocks all have the class size as usable size
    bcls = {c["size"]: c for c in base["classes"]}
    fcls = {c["size"]: c for c in final["classes"]}
    per_class = {}
    for g in groups:
        if g["kind"] != "class":
            continue
        if g["usable_min"] != g["usable_max"] and g["live"] > 0:
            problem(f"group of {g['size']} B: usable sizes {g['usable_min']}..{g['usable_max']} differ")
        size = g["usable_min"]
        acc = per_class.setdefault(size, {"allocs": 0, "frees": 0, "remote": 0, "live": 0, "bytes": 0})
        for k in acc:
            acc[k] = -1 if acc[k] < 0 or g[k] < 0 else acc[k] + g[k]
    zero = {k: 0 for k in CLASS_KEYS}
    for size, acc in sorted(per_class.items()):
        if size not in fcls:
            problem(f"no class of size {size} in the second dump (the program holds {acc['live']} "
                    f"blocks with that usable size)")
            continue
        b, f = bcls.get(size, zero), fcls[size]
        for jk, ck in fields + [("bytes_in_use", "bytes")]:
            got = delta(b, f, jk)
            if acc[ck] >= 0 and got != acc[ck]:
                problem(f"class of {size} B: {jk} grew by {got}; the program made {acc[ck]} "
                        f"(first dump {b[jk]}, second {f[jk]})")
    # large: the group's usable size is its page bytes
    for g in groups:
        if g["kind"] == "large" and g["live"] and g["usable_min"] % 65536:
            problem(f"large group of {g['size']} B: usable size {g['usable_min']} is not whole slices")
    # classes the program did not touch did not move
    touched = set(per_class)
    for size, f in fcls.items():
        if size in touched or head.get("threads") == "realloc":
            continue   # realloc moves blocks through classes the program does not track
        b = bcls.get(size, zero)
        if f["allocs"] != b["allocs"] or f["live_blocks"] != b["live_blocks"]:
            problem(f"class of {size} B, which the program did not use between the dumps, went from "
                    f"{b['allocs']} allocs / {b['live_blocks']} live to {f['allocs']} / {f['live_blocks']}")
    summary = " ".join(f"{n}:+{delta(base['backends'][n], final['backends'][n], 'live_blocks')}live"
                       for n in BACKENDS)
    finish(f"quiesce ok {summary}")


# ---------------------------------------------------------------- Prometheus

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|Inf|inf|NaN|nan)")


def parse_labels(s, where):
    """s starts after '{'; returns (labels dict, rest after '}') or None."""
    labels = {}
    i = 0
    while True:
        if i < len(s) and s[i] == "}":
            return labels, s[i + 1:]
        m = LABEL_NAME.match(s, i)
        if not m:
            problem(f"{where}: bad label name at {s[i:i + 30]!r}")
            return None
        name = m.group(0)
        if name.startswith("__"):
            problem(f"{where}: reserved label name {name!r}")
        i = m.end()
        if s[i:i + 2] != '="':
            problem(f"{where}: expected =\" after label {name!r}")
            return None
        i += 2
        val = []
        while i < len(s) and s[i] != '"':
            if s[i] == "\\":
                if i + 1 >= len(s) or s[i + 1] not in '\\"n':
                    problem(f"{where}: bad escape in the value of label {name!r}")
                    return None
                val.append({"\\": "\\", '"': '"', "n": "\n"}[s[i + 1]])
                i += 2
            elif s[i] == "\n":
                problem(f"{where}: newline in a label value")
                return None
            else:
                val.append(s[i])
                i += 1
        if i >= len(s):
            problem(f"{where}: unterminated value of label {name!r}")
            return None
        i += 1
        if name in labels:
            problem(f"{where}: label {name!r} twice")
        labels[name] = "".join(val)
        if i < len(s) and s[i] == ",":
            i += 1
        elif i < len(s) and s[i] == "}":
            continue
        else:
            problem(f"{where}: expected , or }} after a label, got {s[i:i + 20]!r}")
            return None


def cmd_prometheus(args):
    path = args[0]
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        problem(f"{path}: not UTF-8: {e}")
        finish("")
    if not text:
        problem(f"{path}: empty")
    elif not text.endswith("\n"):
        problem(f"{path}: the last line has no newline")
    types, helps, seen_series = {}, {}, set()
    family_done = set()          # families whose group of lines has ended
    current = None               # the family of the last line
    samples = 0
    for no, line in enumerate(text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"), 1):
        where = f"{path}:{no}"
        if line.strip() == "":
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 2 and parts[1] in ("HELP", "TYPE"):
                if len(parts) < 3 or not METRIC_NAME.fullmatch(parts[2]):
                    problem(f"{where}: {parts[1]} without a valid metric name: {line!r}")
                    continue
                name = parts[2]
                if name in family_done or (name != current and name in types and parts[1] == "HELP"):
                    problem(f"{where}: {parts[1]} for {name} after its samples or group ended")
                if current is not None and current != name:
                    family_done.add(current)
                current = name
                if parts[1] == "TYPE":
                    if len(parts) != 4 or parts[3] not in TYPES:
                        problem(f"{where}: bad TYPE line {line!r}")
                    if name in types:
                        problem(f"{where}: a second TYPE line for {name}")
                    if (name, "sampled") in seen_series:
                        problem(f"{where}: TYPE for {name} after its first sample")
                    types[name] = parts[3] if len(parts) == 4 else "?"
                else:
                    if name in helps:
                        problem(f"{where}: a second HELP line for {name}")
                    if len(parts) < 4 or not parts[3].strip():
                        problem(f"{where}: HELP without text for {name}")
                    else:
                        h = parts[3]
                        if re.search(r"\\[^\\n]", h) or h.endswith("\\") and not h.endswith("\\\\"):
                            problem(f"{where}: bad escape in HELP text")
                    helps[name] = True
            continue
        m = METRIC_NAME.match(line)
        if not m:
            problem(f"{where}: a sample without a valid metric name: {line!r}")
            continue
        name = m.group(0)
        rest = line[m.end():]
        labels = {}
        if rest.startswith("{"):
            r = parse_labels(rest[1:], where)
            if r is None:
                continue
            labels, rest = r
        if not rest.startswith(" "):
            problem(f"{where}: no space before the value: {line!r}")
            continue
        fields = rest.split(" ")[1:]
        if len(fields) not in (1, 2) or not FLOAT.fullmatch(fields[0]):
            problem(f"{where}: bad value/timestamp {rest.strip()!r}")
            continue
        if len(fields) == 2 and not re.fullmatch(r"-?\d+", fields[1]):
            problem(f"{where}: bad timestamp {fields[1]!r}")
        value = float(fields[0])
        # the family a sample belongs to (histograms and summaries have suffixed samples)
        family = name
        for suffix in ("_bucket", "_count", "_sum"):
            base = name[:-len(suffix)] if name.endswith(suffix) else None
            if base and types.get(base) in ("histogram", "summary"):
                family = base
        if family in family_done:
            problem(f"{where}: sample of {family} after its group ended (families must be contiguous)")
        if current is not None and current != family:
            family_done.add(current)
        current = family
        t = types.get(family)
        if t is None:
            problem(f"{where}: sample of {family} with no TYPE line before it")
        if t == "counter" and (value < 0 or math.isnan(value)):
            problem(f"{where}: counter {name} has value {fields[0]}")
        key = (name, tuple(sorted(labels.items())))
        if key in seen_series:
            problem(f"{where}: duplicate series {name}{labels}")
        seen_series.add(key)
        seen_series.add((family, "sampled"))
        samples += 1
    # A family with HELP and TYPE but no sample is valid (parsers drop it): not checked.
    finish(f"prometheus ok families={len(types)} samples={samples}")


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmd = args.pop(0)
    {"json": cmd_json, "json-lines": cmd_json_lines, "text": cmd_text, "quiesce": cmd_quiesce,
     "prometheus": cmd_prometheus}[cmd](args)


if __name__ == "__main__":
    main()
