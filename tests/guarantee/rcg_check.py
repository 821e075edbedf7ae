"""The invariant checker of the terminal-guarantee suite.

Pure functions over traces: what each publisher did (RunRecord) and what each
subscriber saw (SubTrace), so they can be tested on synthetic traces
(rcg_selftest.py) as well as run on real ones (guarantee.py).

Invariants (issue 9; docs/GUARANTEES.md):
  I1  every run with an accepted event has exactly one terminal at every
      subscriber that followed it to the end, of the expected kind;
  I2  per subscriber and run: seq order, no duplicate, no hole unless a `gap`
      followed by a `snap` explains it, nothing after the terminal; and the
      delivered events are exactly what the publisher had accepted;
  I3  the terminal arrives within the run's timeout plus a bound after the
      publisher's last event (and a synthesized one never fires early);
  I4  every invalid input answered with the right code (checked where it is
      sent; recorded as violations here), no valid event lost;
  I5  broker liveness, memory and /metrics (checked by guarantee.py, recorded
      here as violations).
"""

TERMINAL_TYPES = ("complete", "error")
SYNTH_KINDS = ("watchdog_timeout", "deadline_exceeded", "publisher_gone")
ALL_KINDS = ("complete", "error") + SYNTH_KINDS


class Violation:
    def __init__(self, inv, run, msg, sub=None):
        self.inv, self.run, self.msg, self.sub = inv, run, msg, sub

    def __repr__(self):
        where = f" run={self.run}" if self.run else ""
        who = f" sub={self.sub}" if self.sub else ""
        return f"[{self.inv}]{where}{who}: {self.msg}"


class RunRecord:
    """One run as its publisher saw it.

    events: one dict per publish attempt of a *valid* event, in send order:
      {k, type, t (wall ms when sent/acked), path, ack (None for PUSH, else
       {"seq", "dup", "epoch"} or {"error": code}), id}
    kinds: the terminal kinds acceptable for this run.
    timeout_ms / deadline_ms / grace_ms: what the broker should apply.
    """

    def __init__(self, run, scenario, conv=None, path="push"):
        self.run, self.scenario, self.conv, self.path = run, scenario, conv, path
        self.events = []
        self.kinds = set()
        self.timeout_ms = None  # idle timeout in force (phase timeout)
        self.deadline_ms = None
        self.grace_ms = None
        self.killed_at = None  # wall ms of SIGKILL
        self.closed_at = None  # wall ms of a graceful close
        self.first_t = None
        self.log = []  # (t, text): the publisher's full trace
        self.spans_restart = False
        self.lossy_tail = False  # PUSH killed: the last sends may not have left
        self.exempt_content = False  # content check not applicable (restart)

    def note(self, t, text):
        self.log.append((t, text))

    def last_valid_send_t(self):
        ts = [e["t"] for e in self.events if e.get("accepted", True)]
        return max(ts) if ts else None


class SubTrace:
    """What one subscriber saw: items (t, kind, payload) in arrival order.

    kind: "hello" {epoch} | "msg" {a server map} | "resume" {epoch, since}
          | "close" {code} | "subscribed" {target}
    covers(run, conv) says whether the subscription covers a run.
    """

    def __init__(self, name, kind, target=None):
        self.name, self.kind, self.target = name, kind, target
        self.items = []
        self.ended_at = None  # wall ms when the harness stopped it

    def covers(self, run, conv):
        if self.kind == "all":
            return True
        if self.kind == "conv":
            return conv == self.target
        return run == self.target

    def add(self, t, kind, payload):
        self.items.append((t, kind, payload))


def term_kind(ev):
    """complete | error | watchdog_timeout | deadline_exceeded | publisher_gone"""
    if ev.get("type") == "complete":
        return "complete"
    if ev.get("synthetic"):
        err = ev.get("error") or {}
        return err.get("code", "error")
    return "error"


def ev_marker(ev):
    d = ev.get("data")
    if isinstance(d, dict) and "k" in d:
        return d["k"]
    return None


class View:
    """One subscriber's view of one (epoch, run)."""

    def __init__(self):
        self.last = 0
        self.seen = False
        self.term = None  # the terminal ev map (from an ev or a snap)
        self.term_t = None  # arrival time
        self.term_count = 0
        self.gap_to = None  # pending gap, waiting for its snap
        self.evs = []  # (t, ev) in arrival order
        self.from_snap = False  # the view began with (or was filled by) a snap
        self.covered = set()  # seqs accounted for by a gap or a first snap


def replay_sub(sub, out, run_conv):
    """Replays a subscriber trace; returns {(epoch, run): [View, ...]} (a list:
    a run dropped from a since map on resume starts a new view) and appends
    I2 violations to out."""
    views = {}
    epoch = None

    def cur(key):
        lst = views.setdefault(key, [View()])
        return lst[-1]

    def bad(run, msg):
        out.append(Violation("I2", run, msg, sub.name))

    for t, kind, p in sub.items:
        if kind == "hello":
            epoch = p["epoch"]
            continue
        if kind == "resume":
            # runs of this epoch that the client left out of its since map
            # start a fresh view (the broker may send them again from scratch)
            since = p.get("since") or {}
            for (e, r), lst in views.items():
                if e == p.get("epoch") and r not in since and lst[-1].seen:
                    lst.append(View())
            continue
        if kind != "msg":
            continue
        op = p.get("op")
        if op not in ("ev", "snap", "gap"):
            continue
        run = p.get("run")
        e = p.get("epoch", epoch)
        v = cur((e, run))
        if op == "gap":
            frm, to = p.get("from"), p.get("to")
            if not isinstance(frm, int) or not isinstance(to, int) or frm > to:
                bad(run, f"malformed gap {p}")
                continue
            if frm > v.last + 1:
                bad(run, f"gap {frm}..{to} leaves a hole after seq {v.last}")
            if v.term is not None and to > v.term.get("seq", 0):
                bad(run, f"gap {frm}..{to} beyond the terminal seq {v.term.get('seq')}")
            v.gap_to = to
            v.covered.update(range(frm, to + 1))
            continue
        if op == "snap":
            s = p.get("seq", 0)
            v.covered.update(range(v.last + 1, s + 1))
            if v.gap_to is not None:
                if s < v.gap_to:
                    bad(run, f"snap seq {s} does not cover the gap up to {v.gap_to}")
                v.gap_to = None
            elif v.seen and s < v.last:
                bad(run, f"snap seq {s} goes back before seq {v.last} already seen")
            elif v.seen and s > v.last:
                bad(run, f"hole: snap jumped from seq {v.last} to {s} with no gap")
            if not v.seen:
                v.from_snap = True
                v.covered.update(range(1, s + 1))
            v.seen = True
            v.last = max(v.last, s)
            tm = p.get("terminal")
            if tm:
                if p.get("status") not in ("completed", "failed"):
                    bad(run, f"snap has a terminal but status {p.get('status')}")
                if v.term is None:
                    v.term, v.term_t = tm, t
                    v.term_count += 1
                    if tm.get("seq") != s:
                        bad(run, f"snap seq {s} but its terminal has seq {tm.get('seq')}")
            elif p.get("status") in ("completed", "failed"):
                bad(run, f"snap status {p.get('status')} without a terminal")
            continue
        # ev
        s = p.get("seq")
        if v.term is not None:
            bad(run, f"event seq {s} type {p.get('type')} after the terminal "
                     f"(seq {v.term.get('seq')})")
            if p.get("type") in TERMINAL_TYPES:
                v.term_count += 1
            continue
        if v.gap_to is not None:
            bad(run, f"event seq {s} after gap ..{v.gap_to} with no snap")
            v.gap_to = None
        if not isinstance(s, int):
            bad(run, f"event without an integer seq: {p}")
            continue
        if s <= v.last:
            bad(run, f"duplicate or out of order: seq {s} after seq {v.last}")
            continue
        if s != v.last + 1:
            bad(run, f"hole: seq {s} after seq {v.last} with no gap+snap")
        v.seen = True
        v.last = s
        v.evs.append((t, p))
        if p.get("type") in TERMINAL_TYPES:
            v.term, v.term_t = p, t
            v.term_count += 1
    for (e, run), lst in views.items():
        if lst[-1].gap_to is not None:
            bad(run, f"gap ..{lst[-1].gap_to} never followed by a snap")
    return views


def check(runs, subs, cfg, extra=None):
    """runs: {run_id: RunRecord}; subs: [SubTrace]; cfg: dict with bound_ms,
    tick_ms, restarts ([(t_term, t_ready, old_epoch, new_epoch, t_exit)]), end_t.
    Returns a list of Violations."""
    out = list(extra or [])
    bound = cfg.get("bound_ms", 1500)
    restarts = cfg.get("restarts", [])
    conv_of = {r.run: r.conv for r in runs.values()}
    all_views = {}
    for sub in subs:
        all_views[sub.name] = replay_sub(sub, out, conv_of)

    # The broker's own view of each (epoch, run): the union over subscribers
    # (any subscriber that saw an ev at seq s saw the same ev: cross-check).
    canon = {}  # (epoch, run) -> {seq: ev}
    covered = {}  # (epoch, run) -> seqs known only through gap/snap
    term_at = {}  # (epoch, run) -> terminal ev
    for sname, views in all_views.items():
        for key, lst in views.items():
            c = canon.setdefault(key, {})
            for v in lst:
                covered.setdefault(key, set()).update(v.covered)
                for t, ev in v.evs:
                    s = ev["seq"]
                    if s in c and _ev_sig(c[s]) != _ev_sig(ev):
                        out.append(Violation("I2", key[1], f"seq {s} differs between subscribers: "
                                             f"{_ev_sig(c[s])} vs {_ev_sig(ev)}", sname))
                    c.setdefault(s, ev)
                if v.term is not None:
                    prev = term_at.get(key)
                    if prev is not None and _ev_sig(prev) != _ev_sig(v.term):
                        out.append(Violation("I1", key[1], "two different terminals: "
                                             f"{_ev_sig(prev)} vs {_ev_sig(v.term)}", sname))
                    term_at.setdefault(key, v.term)

    def spans_restart(rec):
        if rec.first_t is None:
            return False
        end = max([rec.first_t] + [e["t"] for e in rec.events] +
                  [x for x in (rec.killed_at, rec.closed_at) if x])
        for (t_term, t_ready, *_) in restarts:
            # a run whose life overlaps the restart (plus its timeouts) may
            # lose its state: it starts again in the new epoch
            if rec.first_t <= t_ready + 200 and end + (rec.timeout_ms or 0) + bound >= t_term:
                return True
        return False

    for rec in runs.values():
        rec.spans_restart = rec.spans_restart or spans_restart(rec)

    epochs_of = {}
    for (e, r) in canon:
        epochs_of.setdefault(r, []).append(e)
    for r, eps in epochs_of.items():
        eps.sort(key=lambda e: _epoch_order(e, restarts))

    # ---- I1 / I3 / content, per run ----
    for rid, rec in runs.items():
        accepted = [e for e in rec.events if e.get("ack") is None or "seq" in e["ack"]]
        if not accepted and not rec.events:
            continue
        eps = epochs_of.get(rid, [])
        if not eps:
            if any(e.get("ack") and "seq" in e["ack"] for e in rec.events):
                out.append(Violation("I2", rid, "events were acknowledged but no subscriber "
                                     "ever saw the run"))
            elif rec.events and not rec.spans_restart and cfg.get("expect_all_seen", True):
                out.append(Violation("I1", rid, "no subscriber ever saw the run"))
            continue
        for e in eps:
            key = (e, rid)
            last_epoch = e == eps[-1]
            lost = rec.spans_restart and not last_epoch
            tm = term_at.get(key)
            if tm is None:
                if not lost and not (rec.spans_restart and _epoch_ended(e, restarts)):
                    out.append(Violation("I1", rid, f"no terminal in epoch {e} at any subscriber"))
                continue
            kind = term_kind(tm)
            ok_kinds = set(rec.kinds)
            if rec.spans_restart:
                ok_kinds |= set(SYNTH_KINDS)
            if kind not in ok_kinds:
                out.append(Violation("I1", rid, f"terminal kind {kind}, expected one of "
                                     f"{sorted(ok_kinds)}"))
            if tm.get("synthetic") and kind in SYNTH_KINDS:
                data = tm.get("data")
                err = tm.get("error") or {}
                if not err.get("message"):
                    out.append(Violation("I1", rid, "synthesized terminal without a message"))
                if not isinstance(data, dict) or "last_seq" not in data:
                    out.append(Violation("I1", rid, f"synthesized terminal data lacks last_seq: "
                                         f"{data}"))
                elif data.get("last_seq") != tm.get("seq", 0) - 1:
                    out.append(Violation("I1", rid, f"synthesized terminal data.last_seq "
                                         f"{data.get('last_seq')} != seq-1 ({tm.get('seq')})"))
            if not rec.spans_restart:
                _check_timing(rec, key, tm, kind, canon[key], all_views, cfg, out)
                _check_content(rec, key, canon[key], covered.get(key, set()), tm, cfg, out)

    # ---- I1 per subscriber: followed to the end -> exactly one terminal ----
    for sub in subs:
        views = all_views[sub.name]
        live = _live_intervals(sub)
        for (e, rid), lst in views.items():
            rec = runs.get(rid)
            if rec is None:
                continue  # a run of another harness phase (e.g. probes)
            for i, v in enumerate(lst):
                if v.term_count > 1:
                    out.append(Violation("I1", rid, f"{v.term_count} terminals", sub.name))
                if not v.seen or v.term is not None or i != len(lst) - 1:
                    continue  # a view replaced on resume need not end
                tm = term_at.get((e, rid))
                if tm is None:
                    continue  # reported above
                # followed it to the end: subscribed in this epoch at a
                # moment after the terminal was emitted (plus the bound)
                t_need = tm.get("ts", 0) + bound
                if any(ep == e and a <= t_need <= b for (a, b, ep) in live):
                    out.append(Violation("I1", rid, f"no terminal although subscribed in epoch "
                                         f"{e} until after it (terminal seq {tm.get('seq')})",
                                         sub.name))
    return out


def _epoch_order(e, restarts):
    order = [r[2] for r in restarts] + ([restarts[-1][3]] if restarts else [])
    return order.index(e) if e in order else len(order)


def _epoch_ended(e, restarts):
    return any(r[2] == e for r in restarts)


def _ev_sig(ev):
    return (ev.get("seq"), ev.get("type"), ev_marker(ev), bool(ev.get("synthetic")),
            (ev.get("error") or {}).get("code"))


def _live_intervals(sub):
    """[(from, to, epoch)] during which the subscriber had an acknowledged
    subscription open."""
    out = []
    start = None
    epoch = None
    for t, kind, p in sub.items:
        if kind == "hello":
            epoch = p["epoch"]
        elif kind == "subscribed":
            if start is None:
                start = t
        elif kind == "close":
            if start is not None:
                out.append((start, t, epoch))
            start = None
    if start is not None:
        out.append((start, sub.ended_at or float("inf"), epoch))
    return out


def _check_timing(rec, key, tm, kind, evs, all_views, cfg, out):
    bound = cfg.get("bound_ms", 1500)
    tick = cfg.get("tick_ms", 50)
    rid = rec.run
    nonsyn = [evs[s] for s in sorted(evs) if not evs[s].get("synthetic")]
    last_ev = None
    for ev in nonsyn:
        if ev.get("type") not in TERMINAL_TYPES:
            last_ev = ev
    # arrival of the terminal at the first subscriber that got it live
    arrivals = []
    for views in all_views.values():
        for v in views.get(key, []):
            if v.term is not None and v.evs and v.evs[-1][1] is v.term:
                arrivals.append(v.term_t)
    t_arr = min(arrivals) if arrivals else None
    pub_last = rec.last_valid_send_t()
    if kind in ("complete", "error") and not tm.get("synthetic"):
        sent = [e["t"] for e in rec.events if e["type"] in TERMINAL_TYPES]
        if t_arr is not None and sent and t_arr - min(sent) > bound:
            out.append(Violation("I3", rid, f"publisher terminal reached subscribers "
                                 f"{t_arr - min(sent)} ms after it was sent (bound {bound})"))
        return
    ts = tm.get("ts")
    if kind == "watchdog_timeout":
        to = (tm.get("data") or {}).get("timeout_ms") or rec.timeout_ms
        if last_ev is not None and to:
            idle = ts - last_ev.get("ts", ts)
            if idle < to - tick:
                out.append(Violation("I3", rid, f"watchdog fired after {idle} ms idle, before "
                                     f"the {to} ms timeout"))
            if idle > to + bound:
                out.append(Violation("I3", rid, f"watchdog fired after {idle} ms idle "
                                     f"(timeout {to} + bound {bound})"))
        if t_arr is not None and pub_last is not None and rec.timeout_ms:
            if t_arr - pub_last > rec.timeout_ms + bound:
                out.append(Violation("I3", rid, f"terminal arrived {t_arr - pub_last} ms after "
                                     f"the publisher's last event (timeout {rec.timeout_ms} + "
                                     f"bound {bound})"))
    elif kind == "publisher_gone":
        gone = rec.killed_at or rec.closed_at
        if gone is None:
            out.append(Violation("I3", rid, "publisher_gone but the publisher never went away"))
        else:
            if ts < gone - tick:
                out.append(Violation("I3", rid, f"publisher_gone at {ts}, before the publisher "
                                     f"went away at {gone}"))
            lim = (rec.grace_ms or 0) + bound
            if t_arr is not None and t_arr - gone > lim:
                out.append(Violation("I3", rid, f"publisher_gone arrived {t_arr - gone} ms after "
                                     f"the publisher went away (grace {rec.grace_ms} + bound "
                                     f"{bound})"))
    elif kind == "deadline_exceeded":
        first = nonsyn[0].get("ts") if nonsyn else None
        dl = rec.deadline_ms
        if first is not None and dl:
            age = ts - first
            if age < dl - tick:
                out.append(Violation("I3", rid, f"deadline_exceeded after {age} ms, before the "
                                     f"{dl} ms deadline"))
            if age > dl + bound:
                out.append(Violation("I3", rid, f"deadline_exceeded after {age} ms (deadline "
                                     f"{dl} + bound {bound})"))


def _check_content(rec, key, evs, covered, tm, cfg, out):
    """The events delivered are exactly the publisher's accepted ones: the
    i-th accepted event of the run (publish order, idempotent repeats and
    rejected events left out) carries seq i, every seq before the terminal
    reached a subscriber (or a gap/snap accounts for it), and an event the
    publisher sent but the broker never accepted must have raced the
    terminal (or died with a SIGKILLed publisher)."""
    rid = rec.run
    if rec.exempt_content:
        return
    expect = []
    ids = set()
    for e in rec.events:
        ack = e.get("ack")
        if ack is not None:
            if "seq" not in ack or ack.get("dup"):
                continue
        elif e.get("id") is not None and e["id"] in ids:
            continue
        if e.get("id") is not None:
            ids.add(e["id"])
        expect.append(e)
    # the publisher's own terminal fences the run
    if not tm.get("synthetic"):
        tk = ev_marker(tm)
        ks = [e["k"] for e in expect]
        if tk in ks:
            expect = expect[: ks.index(tk) + 1]
    for i, e in enumerate(expect):
        ack = e.get("ack")
        if ack is not None and ack.get("seq") != i + 1 and ack.get("epoch") == key[0]:
            out.append(Violation("I2", rid, f"k={e['k']} ({e['type']}) acked with seq "
                                 f"{ack.get('seq')}, but it is accepted event #{i + 1}"))
            return
    tseq = tm.get("seq", 0)
    n_acc = tseq - 1 if tm.get("synthetic") else tseq
    # one summary line when the seq order is not the publish order
    by_seq = [(s, ev_marker(evs[s])) for s in sorted(evs) if not evs[s].get("synthetic")]
    diff = [s for s, k in by_seq if s > len(expect) or expect[s - 1]["k"] != k]
    if diff:
        s0 = diff[0]
        lo = max(1, s0 - 2)
        got_w = [k for s, k in by_seq if lo <= s <= s0 + 4]
        sent = [e["k"] for e in rec.events if e.get("ack") is None or "dup" in e["ack"]
                or "error" in e["ack"]]
        sent_w = [k for k in sent if got_w and min(got_w) <= k <= max(got_w) + 1]
        out.append(Violation("I2", rid, f"accepted out of publish order: from seq {lo} the "
                             f"run holds k={got_w}, the publisher sent k={sent_w} in that "
                             f"order ({rec.path}, one connection)"))
    details = 0
    for s in sorted(evs):
        ev = evs[s]
        if details >= 3:
            break
        if ev.get("synthetic"):
            if s != tseq:
                out.append(Violation("I2", rid, f"synthetic event at seq {s} that is not the "
                                     f"terminal (seq {tseq})"))
            continue
        if s > len(expect):
            out.append(Violation("I2", rid, f"seq {s} (k={ev_marker(ev)}, {ev.get('type')}) "
                                 f"delivered but the publisher had only {len(expect)} "
                                 "accepted events"))
            continue
        e = expect[s - 1]
        if ev_marker(ev) != e["k"] or ev.get("type") != e["type"]:
            details += 1
            out.append(Violation("I2", rid, f"seq {s} delivered k={ev_marker(ev)} "
                                 f"({ev.get('type')}), expected k={e['k']} ({e['type']})"))
    if not tm.get("synthetic") and n_acc >= 1 and n_acc <= len(expect):
        if ev_marker(tm) != expect[n_acc - 1]["k"]:
            out.append(Violation("I2", rid, f"terminal k={ev_marker(tm)} at seq {tseq}, "
                                 f"expected k={expect[n_acc - 1]['k']}"))
    missing = [s for s in range(1, n_acc + 1) if s not in evs and s not in covered]
    if missing:
        e = expect[missing[0] - 1] if missing[0] <= len(expect) else {}
        out.append(Violation("I4", rid, f"{len(missing)} accepted event(s) never reached any "
                             f"subscriber and no gap explains it: seqs {_ranges(missing)} "
                             f"(first: k={e.get('k')} {e.get('type')}, "
                             f"acked {e.get('ack')})"))
    if n_acc > len(expect):
        out.append(Violation("I2", rid, f"the run has {n_acc} accepted events, the publisher "
                             f"sent only {len(expect)}"))
    lost = []
    race = cfg.get("race_ms", 250)
    for e in expect[n_acc:]:
        if e.get("ack") is not None:
            lost.append(e)  # acked yet beyond the terminal
        elif tm.get("synthetic") and e["t"] >= tm.get("ts", 0) - race:
            continue  # raced the synthesized terminal: rejected run_terminal
        elif rec.lossy_tail and rec.killed_at and e["t"] >= rec.killed_at - 100:
            continue  # still in the killed publisher's buffers
        else:
            lost.append(e)
    if lost:
        e = lost[0]
        out.append(Violation("I4", rid, f"{len(lost)} valid event(s) sent but never accepted: "
                             f"first k={e['k']} ({e['type']}) sent at {e['t']}, the terminal "
                             f"(seq {tseq}, ts {tm.get('ts')}) came after {n_acc} events"))


def _ranges(seqs):
    out = []
    for s in seqs:
        if out and out[-1][1] == s - 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    txt = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in out[:8])
    return txt + (" ..." if len(out) > 8 else "")
