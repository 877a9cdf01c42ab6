#!/usr/bin/env python3
"""The layers of src/ and preload/ point one way (docs/design.md, "Layers").

Every `#include "FOLDER/..."` in a .c or .h file under src/FOLDER/ or preload/ is an arrow
from its folder to FOLDER. An arrow may only go down this order (a folder may include its
own files and anything below it):

    preload, lib      the entry points: the interposer, the library API
    diag              reports, budgets, the guard, statistics dumps
    heap              per-thread heaps, the router, the malloc family
    bump              bump regions
    pool              segments, pages, size classes, the ownership map
    system            the next allocator (glibc) and the bootstrap arena
    os                mmap and friends, the clock
    config            NEBULA_MEM_CONFIG's grammar and keys (a leaf: only util below)
    util              formatting, locks

src/nm_types.h, the types every layer shares, may include util/ only.

Prints every arrow that goes up (with the file and line) and exits 1 if there is one;
"--graph" prints the folder graph. Standard library only.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORDER = [("preload", "lib"), ("diag",), ("heap",), ("bump",), ("pool",), ("system",), ("os",),
         ("config",), ("util",)]
RANK = {name: i for i, names in enumerate(ORDER) for name in names}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/')


def sources():
    for top in ("src", "preload"):
        base = os.path.join(ROOT, top)
        for dirpath, _, files in os.walk(base):
            for f in sorted(files):
                if f.endswith((".c", ".h")):
                    path = os.path.join(dirpath, f)
                    rel = os.path.relpath(path, base)
                    folder = "preload" if top == "preload" else rel.split(os.sep)[0]
                    if top == "src" and os.sep not in rel:
                        folder = None   # src/nm_types.h: shared types, below everything
                    yield path, folder


def main():
    bad, graph = [], {}
    for path, folder in sources():
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                target = m.group(1)
                if folder is None and target != "util":
                    bad.append("%s:%d: src/nm_types.h includes %s/: the shared types include util/ only"
                               % (os.path.relpath(path, ROOT), lineno, target))
                    continue
                if folder is None:
                    continue
                if target not in RANK:
                    bad.append("%s:%d: includes %s/, a folder this check does not know: add it to ORDER"
                               % (os.path.relpath(path, ROOT), lineno, target))
                    continue
                if folder not in RANK:
                    bad.append("%s: folder %s is not in ORDER" % (os.path.relpath(path, ROOT), folder))
                    continue
                if target != folder:
                    graph.setdefault(folder, set()).add(target)
                if RANK[target] < RANK[folder] or (RANK[target] == RANK[folder] and target != folder):
                    bad.append("%s:%d: %s/ includes %s/, which is above it (or beside it)"
                               % (os.path.relpath(path, ROOT), lineno, folder, target))
    if "--graph" in sys.argv:
        for f in sorted(graph, key=lambda k: RANK.get(k, 99)):
            print("%-8s -> %s" % (f, ", ".join(sorted(graph[f], key=lambda k: RANK.get(k, 99)))))
    for b in bad:
        print("check-layers: " + b)
    if bad:
        print("check-layers: %d arrow(s) point up; order: %s" % (len(bad), " > ".join("/".join(n) for n in ORDER)))
        return 1
    print("check-layers: every include points down (%d folders)" % len(graph))
    return 0


if __name__ == "__main__":
    sys.exit(main())
