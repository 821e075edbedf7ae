#!/usr/bin/env python3
"""Renders docs/BENCHMARKS.md from BENCHMARKS.md.in and the outputs of
run-all.sh:  mkdoc.py OUT_DIR > docs/BENCHMARKS.md

Placeholders: @@STATUS@@, @@MACHINE@@, @@TABLE:name@@ (runcast-bench output
name.txt, Markdown tables as printed), @@MICRO@@ (bench_*.txt as code blocks).
"""
import os
import re
import sys

out = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
tpl = open(os.path.join(here, "BENCHMARKS.md.in")).read()


def read(name):
    p = os.path.join(out, name)
    return open(p).read() if os.path.exists(p) else None


machine = read("machine.txt") or ""
facts = {}
runs = []
for line in machine.splitlines():
    if line.startswith("== "):
        runs.append(line[3:])
    elif line.startswith("   exit") and runs:
        runs[-1] += " -> " + line.strip()
    elif ":" in line and not line.startswith(" "):
        k, v = line.split(":", 1)
        facts[k.strip()] = v.strip()
mach = "\n".join(
    [
        f"- cores: {facts.get('nproc', '?')} ({facts.get('cpu', '?')})",
        f"- memory: {facts.get('memory', '?')}",
        f"- kernel: {facts.get('kernel', '?')} (`uname -r`)",
        f"- nng: {facts.get('nng', '?')} (Debian)",
        f"- taken: {facts.get('date', '?')}; load average before: {facts.get('load before', '?')}, at the end: {facts.get('load at end', '?')}",
        "",
        "Load average (1 min) when each program started:",
        "",
    ]
    + [f"    {r}" for r in runs]
)
tpl = tpl.replace("@@MACHINE@@", mach)
tpl = tpl.replace(
    "@@STATUS@@",
    f"Figures below were taken on {facts.get('date', '?')}.",
)


def table(m):
    name = m.group(1)
    t = read(name + ".txt")
    if t is None:
        return f"*(no output for `{name}`)*"
    lines = t.splitlines()
    if lines and lines[0].startswith("runcast-bench "):
        lines = lines[1:]
    text = "\n".join(lines).strip()
    # scenario headings become level 4 under the section headings of the .in
    text = re.sub(r"^### ", "#### ", text, flags=re.M)
    return text


tpl = re.sub(r"@@TABLE:([A-Za-z0-9_.-]+)@@", table, tpl)


def note(m):
    t = read("notes/" + m.group(1) + ".md")
    return t.strip() if t else ""


# hand-written analysis kept next to the results (OUT/notes/NAME.md)
tpl = re.sub(r"@@NOTE:([A-Za-z0-9_.-]+)@@", note, tpl)
tpl = tpl.replace("@@SUMMARY@@", (read("notes/summary.md") or "*(no summary)*").strip())

micro = []
for name in ["bench_proto", "bench_actors", "bench_broker", "bench_edge_raw", "bench_edge_w1"]:
    t = read(name + ".txt")
    if t is None:
        continue
    cmd = name.replace("bench_edge_", "bench_edge ")
    micro.append(f"`{cmd}`:\n\n```\n{t.rstrip()}\n```\n")
tpl = tpl.replace("@@MICRO@@", "\n".join(micro) if micro else "*(none ran)*")
sys.stdout.write(tpl)
