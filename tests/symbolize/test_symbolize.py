#!/usr/bin/env python3
"""Tests scripts/nebula-symbolize against frames printed by the probe program.

usage: test_symbolize.py SCRIPT PROBE PROBE_NODEBUG PROBE_SOURCE

PROBE prints two frames in the nebula report format: the call in nm_symbolize_probe_caller
and a call inlined into nm_symbolize_probe_inline_caller. The expected lines come from
markers in PROBE_SOURCE. Exits 0 when every check passes, 1 otherwise, 77 (skip) when no
symbolizer is installed.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

SCRIPT, PROBE, PROBE_NODEBUG, SOURCE = sys.argv[1:5]
SOURCE_NAME = os.path.basename(SOURCE)
failures = []


def check(cond, what, detail=""):
    if cond:
        print("ok   %s" % what)
    else:
        print("FAIL %s%s" % (what, ("\n" + detail) if detail else ""))
        failures.append(what)


def marker_line(marker):
    with open(SOURCE) as f:
        for n, line in enumerate(f, 1):
            if "/* %s */" % marker in line:
                return n
    sys.exit("test_symbolize: marker %s not in %s" % (marker, SOURCE))


def symbolize(args=(), stdin=b"", env=None):
    """Runs the script; returns (exit status, stdout bytes, stderr text)."""
    proc = subprocess.run([sys.executable, SCRIPT] + list(args), input=stdin,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                          timeout=120)
    return proc.returncode, proc.stdout, proc.stderr.decode(errors="replace")


def run_probe(path):
    out = subprocess.run([path], stdout=subprocess.PIPE, check=True, timeout=60).stdout
    return out.decode()


def location_re(line):
    return r" at (?:\S*/)?%s:%d$" % (re.escape(SOURCE_NAME), line)


CALL = marker_line("PROBE-CALL")
INLINED_CALL = marker_line("PROBE-INLINED-CALL")
INLINE_SITE = marker_line("PROBE-INLINE-SITE")

if not (shutil.which("addr2line") or shutil.which("llvm-symbolizer")):
    print("skip: neither addr2line nor llvm-symbolizer is on PATH")
    sys.exit(77)

report = run_probe(PROBE)
frames = report.splitlines()
FRAME_FORMAT = re.compile(r"^    #\d+ 0x[0-9a-f]{16} (\S+\+0x[0-9a-f]+|\?\?) \((/.+)\+0x[0-9a-f]+\)$")
check(len(frames) == 2 and all(FRAME_FORMAT.match(f) for f in frames),
      "probe prints two frames in the report format", report)
check("nm_symbolize_probe_caller+0x" in frames[0],
      "probe frame #0 names nm_symbolize_probe_caller", report)
check(FRAME_FORMAT.match(frames[0]).group(2) == os.path.realpath(PROBE),
      "probe frame's module is the probe program", report)


def check_symbolized(out, label):
    """out: the script's output for the probe's report (text)."""
    lines = out.splitlines()
    detail = "input:\n%s\noutput:\n%s" % (report, out)
    check(len(lines) == 3, "%s: 2 frames + 1 inline line" % label, detail)
    if len(lines) != 3:
        return
    check(lines[0].startswith(frames[0]) and re.search(location_re(CALL), lines[0]),
          "%s: frame #0 -> %s:%d (the call, not the next line)" % (label, SOURCE_NAME, CALL),
          detail)
    check(lines[1].startswith(frames[1]) and re.search(location_re(INLINED_CALL), lines[1]),
          "%s: inlined frame -> %s:%d" % (label, SOURCE_NAME, INLINED_CALL), detail)
    check(re.match(r"^     +inlined in nm_symbolize_probe_inline_caller" + location_re(INLINE_SITE),
                   lines[2]) is not None,
          "%s: inline level -> inlined in nm_symbolize_probe_inline_caller at %s:%d"
          % (label, SOURCE_NAME, INLINE_SITE), detail)


# 1. The probe's frames, piped on stdin, default symbolizer.
rc, out, err = symbolize(stdin=report.encode())
check(rc == 0, "stdin: exit 0", err)
check_symbolized(out.decode(), "stdin")

# 2. Each symbolizer that is installed, forced.
for tool, exe in (("addr2line", "addr2line"), ("llvm", "llvm-symbolizer")):
    if not shutil.which(exe):
        print("skip --symbolizer=%s: %s not on PATH" % (tool, exe))
        continue
    rc, out, err = symbolize(["--symbolizer=%s" % tool], stdin=report.encode())
    check(rc == 0, "--symbolizer=%s: exit 0" % tool, err)
    check_symbolized(out.decode(), "--symbolizer=%s" % tool)

with tempfile.TemporaryDirectory() as tmp:
    # 3. File argument, '-' and stdin give the same output; several files concatenate.
    report_file = os.path.join(tmp, "report.txt")
    with open(report_file, "w") as f:
        f.write(report)
    rc_file, out_file, err = symbolize([report_file])
    check(rc_file == 0, "file argument: exit 0", err)
    check_symbolized(out_file.decode(), "file argument")
    _, out_stdin, _ = symbolize(stdin=report.encode())
    _, out_dash, _ = symbolize(["-"], stdin=report.encode())
    check(out_file == out_stdin == out_dash, "file, '-' and stdin give the same output")
    _, out_two, _ = symbolize([report_file, "-"], stdin=report.encode())
    check(out_two == out_file + out_file, "FILE - concatenates")

    # 4. Non-frame lines, and lines that merely resemble frames, pass through byte for byte.
    probe = os.path.realpath(PROBE)
    passthrough = (
        "nebula: out of memory: 1048576 bytes requested\n"
        "\n"
        "  backtrace:\n"
        "    #0\n"
        "    #0 0x00007f3a1c2d4a12\n"
        "    #0 0xZZ007f3a1c2d4a12 foo+0x1 (%s+0x1200)\n"
        "    #x 0x00007f3a1c2d4a12 foo+0x1 (%s+0x1200)\n"
        "    #1 0x00007f3a1c2d4a12 foo+0x1 (%s)\n"
        "    #1 0x00007f3a1c2d4a12 foo+0x1 (%s+0xnothex)\n"
        "    #1 0x00007f3a1c2d4a12 foo+0x1 %s+0x1200\n"
        "    #2 0x0000000000000001 foo+0x1 (+0x1200)\n"
        "see issue#4 (%s+0x1200)\n"
        "tabs\tand trailing spaces   \n"
        "crlf line\r\n"
        "    #9 0x00007f3a1c2d4a12 ?? (/nonexistent/dir/libgone.so+0x4a12)\n"
        "    #9 0x00007f3a1c2d4a12 gone+0x2 (/nonexistent/dir/libgone.so+0x4a12)\n"
        "    #9 0x00007f3a1c2d4a12 ?? (%s+0x10)\n"
        "    #9 0x00007f3a1c2d4a12 ?? (relative/missing+0x10)\n"
        "    #9 0x00007f3a1c2d4a12 ?? ([vdso]+0x10)\n"
        "    #9 0x00007f3a1c2d4a12 ?? (%s+0x10)\n"
        "    #9 0x00007f3a1c2d4a12 big+0x1 (%s+0xffffffffffffffff)\n"
        % (probe, probe, probe, probe, probe, probe, tmp, "/dev/null", probe)
    ).encode() + b"not utf-8: \xff\xfe\n" + b"no newline at end"
    rc, out, err = symbolize(stdin=passthrough)
    check(rc == 0, "passthrough: exit 0", err)
    check(out == passthrough, "non-frame lines, look-alikes, missing modules pass through",
          "in:\n%r\nout:\n%r" % (passthrough, out))
    rc, out, err = symbolize(stdin=b"")
    check(rc == 0 and out == b"", "empty input: empty output, exit 0", err)

    # 5. A frame among other text is rewritten in place; the rest is untouched.
    mixed = "nebula: invalid free of 0x1000\n" + report + "nebula: aborting\n"
    rc, out, err = symbolize(stdin=mixed.encode())
    lines = out.decode().splitlines()
    check(rc == 0 and len(lines) == 5 and lines[0] == "nebula: invalid free of 0x1000"
          and lines[-1] == "nebula: aborting", "frames among other report lines", out.decode())
    if len(lines) == 5:
        check_symbolized("\n".join(lines[1:4]) + "\n", "mixed report")

    # 6. '??' frames: resolved when the module has line information...
    unnamed = re.sub(r" \S+\+0x[0-9a-f]+ \(", " ?? (", report)
    check(unnamed.count(" ?? (") == 2, "'??' variant of the probe report", unnamed)
    rc, out, err = symbolize(stdin=unnamed.encode())
    check(rc == 0, "'??' frames: exit 0", err)
    out_lines = out.decode().splitlines()
    check(len(out_lines) == 3 and re.search(location_re(CALL), out_lines[0]) is not None,
          "'??' frame with debug info -> %s:%d" % (SOURCE_NAME, CALL), out.decode())

    # ...and passed through, named or '??', when it has none (addr2line says ??:0 / ??:?).
    nodebug = run_probe(PROBE_NODEBUG)
    nodebug_unnamed = re.sub(r" \S+\+0x[0-9a-f]+ \(", " ?? (", nodebug)
    check(len(nodebug.splitlines()) == 2, "nodebug probe prints two frames", nodebug)
    for tool, exe in (("addr2line", "addr2line"), ("llvm", "llvm-symbolizer")):
        if not shutil.which(exe):
            continue
        for text, label in ((nodebug, "named"), (nodebug_unnamed, "'??'")):
            rc, out, err = symbolize(["--symbolizer=" + tool], stdin=text.encode())
            check(rc == 0 and out.decode() == text,
                  "--symbolizer=%s: %s frames without debug info pass through" % (tool, label),
                  "in:\n%s\nout:\n%s" % (text, out.decode()))

    # 7. Symbolizer choice from PATH: addr2line first, llvm-symbolizer when it is alone.
    real = {name: shutil.which(name) for name in ("addr2line", "llvm-symbolizer")}
    log = os.path.join(tmp, "calls.log")

    def fake_path(names):
        d = tempfile.mkdtemp(dir=tmp)
        for name in names:
            wrapper = os.path.join(d, name)
            with open(wrapper, "w") as f:
                f.write("#!/bin/sh\necho %s >> '%s'\nexec '%s' \"$@\"\n" % (name, log, real[name]))
            os.chmod(wrapper, 0o755)
        return d

    def calls_with(names, args=()):
        if os.path.exists(log):
            os.unlink(log)
        env = dict(os.environ, PATH=fake_path(names))
        rc, out, err = symbolize(list(args), stdin=report.encode(), env=env)
        called = open(log).read().split() if os.path.exists(log) else []
        return rc, out.decode(), err, called

    if real["addr2line"] and real["llvm-symbolizer"]:
        rc, out, err, called = calls_with(["addr2line", "llvm-symbolizer"])
        check(rc == 0 and called == ["addr2line"],
              "both on PATH: addr2line is used, one call per module", "%s %s" % (called, err))
        check_symbolized(out, "both on PATH")
        rc, out, err, called = calls_with(["addr2line", "llvm-symbolizer"], ["--symbolizer=llvm"])
        check(rc == 0 and called == ["llvm-symbolizer"], "--symbolizer=llvm forces llvm-symbolizer",
              "%s %s" % (called, err))
    if real["llvm-symbolizer"]:
        rc, out, err, called = calls_with(["llvm-symbolizer"])
        check(rc == 0 and called == ["llvm-symbolizer"], "only llvm-symbolizer on PATH: used",
              "%s %s" % (called, err))
        check_symbolized(out, "llvm-symbolizer alone")
        rc, out, err, called = calls_with(["llvm-symbolizer"], ["--symbolizer=addr2line"])
        check(rc == 1 and "addr2line" in err and out == "",
              "--symbolizer=addr2line without addr2line: exit 1 with a message", err)
    rc, out, err, called = calls_with([])
    check(rc == 1 and "binutils" in err and out == "",
          "no symbolizer on PATH: exit 1 with a message", err)

    # 8. Usage.
    rc, out, err = symbolize(["--help"])
    check(rc == 0 and b"usage: nebula-symbolize" in out and b"--symbolizer" in out,
          "--help: usage on stdout, exit 0", out.decode())
    for args, what in ((["--frobnicate"], "unknown option"),
                       (["--symbolizer=gdb"], "bad --symbolizer value"),
                       (["--symbolizer"], "--symbolizer without a value"),
                       ([os.path.join(tmp, "no-such-report.txt")], "missing input file")):
        rc, out, err = symbolize(args)
        check(rc == 2 and out == b"" and "nebula-symbolize:" in err and "usage:" in err,
              "%s: exit 2 with a message" % what, "rc=%d err=%s" % (rc, err))

check(os.access(SCRIPT, os.X_OK), "scripts/nebula-symbolize is executable")

if failures:
    print("\n%d check(s) failed" % len(failures))
    sys.exit(1)
print("\nall checks passed")
