"""Self-test of the invariant checker on synthetic traces: each clean trace
must pass, and each broken one must be caught by the right invariant.
Run by `guarantee.py --self-test` (CTest: guarantee_checker)."""

import rcg_check as C

T0 = 1_800_000_000_000
EPOCH = 7


def ev(seq, typ, k=None, ts=None, run="r1", **kw):
    m = {"op": "ev", "run": run, "epoch": EPOCH, "seq": seq, "type": typ,
         "ts": ts if ts is not None else T0 + seq * 10}
    if k is not None:
        m["data"] = {"k": k}
    m.update(kw)
    return m


def synth(seq, code, ts, run="r1"):
    return ev(seq, "error", ts=ts, run=run, synthetic=True,
              error={"code": code, "message": f"Terminal event never received: {code}"},
              data={"phase": "execute", "idle_ms": 300, "last_seq": seq - 1})


def record(n, kinds=("complete",), path="push", term=True, timeout=300, run="r1"):
    r = C.RunRecord(run, "test", path=path)
    r.kinds = set(kinds)
    r.timeout_ms = timeout
    r.grace_ms = 150
    r.deadline_ms = 2000
    r.first_t = T0
    for k in range(1, n + 1):
        typ = "complete" if (term and k == n) else "delta"
        e = {"k": k, "type": typ, "t": T0 + k * 10 - 2, "path": path, "ack": None, "id": None}
        if path == "req":
            e["ack"] = {"seq": k, "epoch": EPOCH}
        r.events.append(e)
    return r


def sub_with(msgs, name="s1", kind="all", end=T0 + 100_000):
    s = C.SubTrace(name, kind)
    s.add(T0 - 100, "hello", {"epoch": EPOCH})
    s.add(T0 - 90, "subscribed", {})
    for m in msgs:
        s.add(m.get("ts", T0) + 1, "msg", m)
    s.ended_at = end
    return s


def clean_msgs(n=5):
    return [ev(k, "complete" if k == n else "delta", k=k) for k in range(1, n + 1)]


def run_case(name, runs, subs, expect, cfg=None):
    cfg = cfg or {"bound_ms": 1000, "tick_ms": 20}
    got = C.check(runs, subs, cfg)
    invs = sorted({v.inv for v in got})
    ok = invs == sorted(set(expect))
    print(f"{'ok ' if ok else 'FAIL'} {name}: expected {sorted(set(expect))}, got {invs}")
    if not ok:
        for v in got:
            print("     ", v)
    return ok


def main():
    results = []
    R = lambda rec: {rec.run: rec}  # noqa: E731

    results.append(run_case("clean push run", R(record(5)), [sub_with(clean_msgs())], []))
    results.append(run_case("clean req run", R(record(5, path="req")),
                            [sub_with(clean_msgs())], []))
    m = clean_msgs()
    results.append(run_case("duplicate event", R(record(5)),
                            [sub_with(m[:3] + [m[2]] + m[3:])], ["I2"]))
    results.append(run_case("hole", R(record(5)), [sub_with(m[:2] + m[3:])], ["I2", "I4"]))
    snap = {"op": "snap", "run": "r1", "epoch": EPOCH, "seq": 3, "status": "running",
            "ts": T0 + 30}
    gap = {"op": "gap", "run": "r1", "from": 2, "to": 3, "ts": T0 + 30}
    results.append(run_case("gap then snap explains a hole", R(record(5)),
                            [sub_with(m[:1] + [gap, snap] + m[3:]),
                             sub_with(m, name="s2")], []))
    results.append(run_case("gap without snap", R(record(5)),
                            [sub_with(m[:1] + [gap] + m[3:]), sub_with(m, name="s2")], ["I2"]))
    results.append(run_case("snap jumping without gap", R(record(5)),
                            [sub_with(m[:1] + [snap] + m[3:]), sub_with(m, name="s2")], ["I2"]))
    results.append(run_case("event after the terminal", R(record(5)),
                            [sub_with(m + [ev(6, "delta", k=6)])], ["I2"]))
    results.append(run_case("second terminal", R(record(5)),
                            [sub_with(m + [ev(6, "complete", k=6)])], ["I1", "I2"]))
    results.append(run_case("no terminal anywhere", R(record(5)), [sub_with(m[:4])], ["I1"]))
    results.append(run_case("one subscriber misses the terminal", R(record(5)),
                            [sub_with(m), sub_with(m[:4], name="s2")], ["I1"]))
    late = sub_with(m[:4], name="s3", end=T0 + 45)  # left before the terminal
    results.append(run_case("subscriber that left early is not blamed", R(record(5)),
                            [sub_with(m), late], []))
    rec = record(5, kinds=("error",))
    results.append(run_case("wrong terminal kind", R(rec), [sub_with(m)], ["I1"]))
    # watchdog: last event at ts T0+40, timeout 300
    wd = clean_msgs(5)[:4] + [synth(5, "watchdog_timeout", T0 + 40 + 310)]
    rec = record(4, kinds=("watchdog_timeout",), term=False)
    results.append(run_case("watchdog on time", R(rec), [sub_with(wd)], []))
    early = clean_msgs(5)[:4] + [synth(5, "watchdog_timeout", T0 + 40 + 150)]
    results.append(run_case("watchdog early", R(rec), [sub_with(early)], ["I3"]))
    latewd = clean_msgs(5)[:4] + [synth(5, "watchdog_timeout", T0 + 40 + 3000)]
    results.append(run_case("watchdog late", R(rec), [sub_with(latewd)], ["I3"]))
    rec = record(4, kinds=("publisher_gone",), term=False)
    rec.killed_at = T0 + 45
    pg = clean_msgs(5)[:4] + [synth(5, "publisher_gone", T0 + 45 + 160)]
    results.append(run_case("publisher_gone after kill", R(rec), [sub_with(pg)], []))
    rec2 = record(4, kinds=("publisher_gone",), term=False)
    results.append(run_case("publisher_gone without the publisher leaving", R(rec2),
                            [sub_with(pg)], ["I3"]))
    bad_synth = clean_msgs(5)[:4] + [synth(5, "watchdog_timeout", T0 + 40 + 310)]
    bad_synth[-1]["data"]["last_seq"] = 2
    rec = record(4, kinds=("watchdog_timeout",), term=False)
    results.append(run_case("synthesized terminal with wrong last_seq", R(rec),
                            [sub_with(bad_synth)], ["I1"]))
    rec = record(6, path="req")
    msgs6 = clean_msgs(6)
    results.append(run_case("acked event lost", R(rec),
                            [sub_with(msgs6[:4] + msgs6[5:])], ["I2", "I4"]))
    rec = record(5)
    swapped = [ev(1, "delta", k=1), ev(2, "delta", k=3), ev(3, "delta", k=2),
               ev(4, "delta", k=4), ev(5, "complete", k=5)]
    results.append(run_case("events reordered", R(rec), [sub_with(swapped)], ["I2"]))
    # resume: a run left out of the since map may be sent again from a snap
    s = sub_with(m[:3])
    s.add(T0 + 35, "close", {"code": 1006})
    s.add(T0 + 36, "hello", {"epoch": EPOCH})
    s.add(T0 + 37, "resume", {"epoch": EPOCH, "since": {}})
    s.add(T0 + 38, "subscribed", {})
    fresh = dict(snap, seq=3)
    for x in [fresh] + m[3:]:
        s.add(T0 + 40, "msg", x)
    results.append(run_case("resume with the run forgotten", R(record(5)), [s], []))
    s = sub_with(m[:3])
    s.add(T0 + 35, "close", {"code": 1006})
    s.add(T0 + 36, "hello", {"epoch": EPOCH})
    s.add(T0 + 37, "resume", {"epoch": EPOCH, "since": {"r1": 3}})
    s.add(T0 + 38, "subscribed", {})
    for x in m[2:]:
        s.add(T0 + 40, "msg", x)
    results.append(run_case("resume replaying an event already seen", R(record(5)), [s],
                            ["I2"]))
    # the terminal only in a snap after gap (resume after retention expired)
    tsnap = {"op": "snap", "run": "r1", "epoch": EPOCH, "seq": 5, "status": "completed",
             "terminal": m[4], "ts": T0 + 5000}
    s = sub_with(m[:2])
    s.add(T0 + 25, "close", {"code": 1006})
    s.add(T0 + 4000, "hello", {"epoch": EPOCH})
    s.add(T0 + 4001, "resume", {"epoch": EPOCH, "since": {"r1": 2}})
    s.add(T0 + 4002, "subscribed", {})
    s.add(T0 + 4003, "msg", {"op": "gap", "run": "r1", "from": 3, "to": 4})
    s.add(T0 + 4004, "msg", tsnap)
    results.append(run_case("terminal learnt from gap+snap", R(record(5)),
                            [s, sub_with(m, name="s2")], []))
    n_fail = results.count(False)
    print(f"checker self-test: {len(results) - n_fail} passed, {n_fail} failed")
    return 1 if n_fail else 0
