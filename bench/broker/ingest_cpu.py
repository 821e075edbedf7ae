#!/usr/bin/python3
"""Where runcastd's CPU goes during the batched phase of `runcast-bench ingest`.

Runs `runcast-bench ingest --json --spawn RUNCASTD` and, at the progress lines
that open and close the "broker via raw PUSH, batches" phase, reads every
runcastd thread's utime/stime (/proc/PID/task/*/stat) and voluntary /
nonvoluntary context switches (/proc/PID/task/*/status).  Prints the phase's
events/s and ratio to raw (from the bench's JSON), the broker's CPU per event
and switches per batch, and with -v the same per thread name.  With --perf
FILE it also runs `perf record -e cpu-clock -g` on runcastd over that window.

On a shared machine events/s move by +-30 % between identical runs: alternate
the binaries being compared and compare same-run ratios (docs/ARCHITECTURE.md,
"End to end, round 3").

usage: ingest_cpu.py [-v] [--perf FILE] [--bench PATH] [--broker-args STR] RUNCASTD
"""
import argparse
import collections
import glob
import json
import os
import subprocess
import sys

HZ = os.sysconf("SC_CLK_TCK")
PHASE_START = "broker via raw PUSH, batches"
PHASE_END = "publisher library, adaptive"


def runcastd_of(pid):
    """The runcastd child of the bench process, or None."""
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            kids = [int(x) for x in open(path).read().split()]
        except OSError:
            continue
        for k in kids:
            try:
                if open(f"/proc/{k}/comm").read().startswith("runcastd"):
                    return k
            except OSError:
                pass
    return None


def sample(pid):
    """tid -> (name, utime, stime, voluntary, nonvoluntary) for every thread."""
    out = {}
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            st = open(task + "/stat").read()
            name = st[st.index("(") + 1:st.rindex(")")]
            fields = st[st.rindex(")") + 2:].split()
            vol = nvol = 0
            for line in open(task + "/status"):
                if line.startswith("voluntary_ctxt_switches"):
                    vol = int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    nvol = int(line.split()[1])
            out[task.rsplit("/", 1)[1]] = (name, int(fields[11]), int(fields[12]), vol, nvol)
        except (OSError, ValueError, IndexError):
            pass
    return out


def figures(doc):
    """name -> value of every figure in the bench's JSON document."""
    found = {}

    def walk(o):
        if isinstance(o, dict):
            if "figures" in o and isinstance(o["figures"], list):
                for f in o["figures"]:
                    found[f["name"].strip()] = f["value"]
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(doc)
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runcastd")
    ap.add_argument("-v", action="store_true", help="per thread name")
    ap.add_argument("--perf", metavar="FILE")
    ap.add_argument("--bench", default=os.path.join(os.path.dirname(__file__), "..", "..", "build",
                                                    "bench", "runcast-bench", "runcast-bench"))
    ap.add_argument("--broker-args")
    a = ap.parse_args()
    cmd = [a.bench, "ingest", "--json", "--spawn", a.runcastd]
    if a.broker_args:
        cmd += ["--broker-args", a.broker_args]
    load = open("/proc/loadavg").read().split()[0]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = None
    s0 = s1 = None
    rec = None
    for line in p.stderr:
        if pid is None or PHASE_START in line:
            pid = runcastd_of(p.pid) or pid
        if PHASE_START in line and pid:
            s0 = sample(pid)
            if a.perf:
                rec = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-g", "-o", a.perf,
                                        "-p", str(pid)], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        elif PHASE_END in line and s0 is not None and s1 is None:
            s1 = sample(pid)
            if rec:
                rec.send_signal(2)
                rec.wait()
    doc = json.loads(p.stdout.read())
    p.wait()
    if s0 is None or s1 is None:
        sys.exit("did not see the batched phase (or runcastd)")
    fig = figures(doc)
    # the batched phase's events and batch size, as the bench ran them
    params = dict(kv.split("=", 1) for s in doc.get("scenarios", [])
                  for kv in str(s.get("params", "")).split() if "=" in kv)
    n = int(params.get("events_batched", 2000000))
    params["batch"] = int(params.get("batch", 64))
    batches = n / params["batch"]
    per = collections.defaultdict(lambda: [0, 0, 0, 0, 0])
    for tid, (name, ut, stt, vol, nvol) in s1.items():
        b = s0.get(tid, (name, 0, 0, 0, 0))
        g = per[name]
        g[0] += ut - b[1]
        g[1] += stt - b[2]
        g[2] += vol - b[3]
        g[3] += nvol - b[4]
        g[4] += 1
    tot = [sum(g[i] for g in per.values()) for i in range(4)]
    raw = fig.get("raw nng PUSH/PULL, batches", 0)
    brk = fig.get("broker, raw PUSH, batches", 0)
    lib = fig.get("broker, library, adaptive batches", 0)
    us = 1e6 / HZ / n
    print(f"{a.runcastd} load {load}: raw {raw:,.0f} ev/s, broker {brk:,.0f} "
          f"({brk / raw if raw else 0:.3f} of raw), library {lib:,.0f} "
          f"({lib / raw if raw else 0:.3f}); broker CPU {(tot[0] + tot[1]) * us:.3f} us/event "
          f"(user {tot[0] * us:.3f}, sys {tot[1] * us:.3f}); switches per batch "
          f"{tot[2] / batches:.2f} voluntary, {tot[3] / batches:.2f} nonvoluntary")
    raw1 = fig.get("raw nng PUSH/PULL, 1 event/msg", 0)
    brk1 = fig.get("broker, raw PUSH, 1 event/msg", 0)
    print(f"  1 event/message: raw {raw1:,.0f} ev/s, broker {brk1:,.0f} "
          f"({brk1 / raw1 if raw1 else 0:.3f} of raw)")
    if a.v:
        for name, g in sorted(per.items(), key=lambda kv: -(kv[1][0] + kv[1][1])):
            print(f"  {name:16s} x{g[4]:<2d} user {g[0] * us:.3f} sys {g[1] * us:.3f} us/event, "
                  f"switches per batch {g[2] / batches:.3f} / {g[3] / batches:.3f}")


if __name__ == "__main__":
    main()
