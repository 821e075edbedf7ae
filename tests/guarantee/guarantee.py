#!/usr/bin/python3
"""The terminal-guarantee suite (issue 9): fault injection against a real
runcastd, with the invariants of docs/GUARANTEES.md checked at the end.

    guarantee.py --short                 the CI form (about a minute of load)
    guarantee.py --duration 1800         a soak (docs/SOAK.md)
    guarantee.py --seed 1234 --short     replay a schedule (timing still varies)
    guarantee.py --self-test             the checker against synthetic traces

It starts runcastd (found under $RC_BINARY_DIR, or --runcastd) with short
timeouts on free ports, then runs concurrently, on a schedule drawn from
--seed: publisher processes (rc_chaos_pub, driven line by line and
SIGKILLed at will) that complete or fail runs over PUSH and REQ with batches,
die mid-run, stop without a terminal, chatter past the deadline, repeat
terminals and idempotency ids, send invalid terminals then a valid retry, and
send invalid input; WebSocket subscribers by run, conversation and to all,
late joiners, abrupt droppers that resume with `since`, a slow consumer
closed with 4008 that resumes, a resume after retention expired, invalid
WebSocket input; and a SIGTERM + restart of the broker under load.

On a violation it prints the seed and each offending run's full trace as the
publisher and every subscriber saw it, and exits 1.  Needs Debian's
python3-websockets and python3-msgpack (run it with /usr/bin/python3).
"""

import argparse
import asyncio
import base64
import json
import logging
import os
import random
import re
import signal
import socket
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import msgpack  # noqa: E402
import websockets  # noqa: E402

import rcg_check as C  # noqa: E402


def now():
    return int(time.time() * 1000)


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}]", *a, flush=True)


# runcastd's first line on stdout, with the ports it bound
LISTENING = re.compile(r"runcastd listening: ingest tcp://127\.0\.0\.1:(\d+), "
                       r"ingest-ack tcp://127\.0\.0\.1:(\d+), http 127\.0\.0\.1:(\d+)")


def find_binary(name, hint):
    if hint:
        return hint
    roots = [os.environ.get("RC_BINARY_DIR")]
    here = os.path.dirname(os.path.abspath(__file__))
    roots.append(os.path.join(here, "..", "..", "build"))
    for root in roots:
        if not root or not os.path.isdir(root):
            continue
        for dirpath, _, files in os.walk(root):
            if name in files and os.access(os.path.join(dirpath, name), os.X_OK):
                return os.path.join(dirpath, name)
    return None


def sanitized_build(exe):
    """True for an ASan/UBSan or TSan build (from its CMakeCache)."""
    d = os.path.dirname(os.path.abspath(exe))
    for _ in range(5):
        cache = os.path.join(d, "CMakeCache.txt")
        if os.path.exists(cache):
            with open(cache) as f:
                m = re.search(r"^RUNCAST_SANITIZE:\w+=(\w*)", f.read(), re.M)
            return bool(m and m.group(1))
        d = os.path.dirname(d)
    return False


# ---------------------------------------------------------------------------
# Harness state


class Harness:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.rng = random.Random(self.seed)
        self.runs = {}  # run id -> RunRecord
        self.subs = []  # SubTrace
        self.violations = []  # Violations found while running (I4, I5)
        self.restarts = []  # (t_term, t_ready, old_epoch, new_epoch, t_exit)
        self.epoch = None  # the broker's current epoch (from hello)
        self.broker_up = asyncio.Event()
        self.stopping = False
        self.restart_at = None
        # what the harness did, per epoch: rejections by code, dups, sends
        self.tally = {}  # epoch -> {"rejected": {code: n}, "dup": n}
        self.tasks = set()
        self.n_run = 0
        self.run_subs = []
        self.ambiguous = []  # (run, extra kind allowed, why): see note_gaps
        self.ended_by = {}  # run -> terminal kind its subscribers saw

    def ms(self, v):
        """A scenario duration, stretched in sanitizer builds (their broker is
        several times slower; the suite there is about memory errors)."""
        return int(v * self.cfg["scale"])

    def tal(self, epoch):
        return self.tally.setdefault(epoch, {"rejected": {}, "dup": 0})

    def count_reject(self, code, epoch=None):
        if os.environ.get("RCG_DEBUG"):
            print("count_reject", code, epoch if epoch is not None else self.epoch, now())
        t = self.tal(epoch if epoch is not None else self.epoch)
        t["rejected"][code] = t["rejected"].get(code, 0) + 1

    def violate(self, inv, run, msg, sub=None):
        v = C.Violation(inv, run, msg, sub)
        log("VIOLATION", v)
        self.violations.append(v)

    def new_run_id(self, prefix):
        self.n_run += 1
        return f"{prefix}-{self.seed % 100000}-{self.n_run}"

    def spawn(self, coro):
        t = asyncio.ensure_future(coro)
        self.tasks.add(t)
        t.add_done_callback(self._done)
        return t

    def _done(self, t):
        self.tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            e = t.exception()
            import traceback
            traceback.print_exception(type(e), e, e.__traceback__)
            self.violate("H", None, f"harness task failed: {e!r}")


# ---------------------------------------------------------------------------
# The broker process


class Broker:
    def __init__(self, h, exe, logdir):
        self.h = h
        self.exe = exe
        self.logdir = logdir
        # 0 until the first start: runcastd picks free ports itself and says
        # which (so that harnesses run side by side never race for one);
        # restarts ask for the same ports, which the clients know
        self.p_pull = self.p_rep = self.p_http = 0
        self.proc = None
        self.n = 0
        self.expect_exit = False
        self.stderr_path = None

    @property
    def pull_url(self):
        return f"tcp://127.0.0.1:{self.p_pull}"

    @property
    def rep_url(self):
        return f"tcp://127.0.0.1:{self.p_rep}"

    @property
    def http(self):
        return f"http://127.0.0.1:{self.p_http}"

    @property
    def ws(self):
        return f"ws://127.0.0.1:{self.p_http}/ws"

    def argv(self):
        c = self.h.cfg
        return [self.exe,
                "--ingest", self.pull_url, "--ingest-ack", self.rep_url,
                "--http", f"127.0.0.1:{self.p_http}",
                "--watchdog", f"{c['watchdog_ms']}ms",
                "--publisher-grace", f"{c['grace_ms']}ms",
                "--run-deadline", f"{c['deadline_ms']}ms",
                "--retention", f"{c['retention_ms']}ms",
                "--tombstone-ttl", f"{c['tombstone_ms']}ms",
                "--watchdog-tick", f"{c['tick_ms']}ms",
                "--ws-queue-max", c["ws_queue_max"],
                "--history-max-bytes", c["history_max"],
                "--shutdown-timeout", f"{c['shutdown_ms']}ms",
                "--ws-heartbeat", "1s",
                "--http-runs-limit", str(c["runs_limit"]),
                "--log-level", "info"]

    async def start(self):
        # a restart's ports were this broker's a moment ago, but another
        # process may take one in between (its exit code is then 1, "cannot
        # listen"): try again for a while before calling it a failure
        for attempt in range(20):
            if await self.spawn(last=attempt == 19):
                return
            await asyncio.sleep(0.25)

    async def spawn(self, last):
        self.n += 1
        self.stderr_path = os.path.join(self.logdir, f"runcastd.{self.n}.log")
        err = open(self.stderr_path, "wb")
        # the old process stays in self.proc (exited, expected) until the new
        # one replaces it: clearing expect_exit before that, across the await,
        # let the watcher report the old one's clean exit as a crash
        proc = await asyncio.create_subprocess_exec(
            *self.argv(), stdin=asyncio.subprocess.DEVNULL, stdout=err, stderr=err)
        err.close()
        t0 = now()
        limit = 30000 if self.h.cfg["sanitized"] else 10000
        while True:
            with open(self.stderr_path, "rb") as f:
                m = LISTENING.search(f.read().decode(errors="replace"))
            if m:
                self.p_pull, self.p_rep, self.p_http = (int(g) for g in m.groups())
                break
            if proc.returncode is not None:
                if proc.returncode == 1 and not last:
                    return False  # a port taken: the caller tries again
                raise RuntimeError(f"runcastd exited at start ({proc.returncode}):\n"
                                   + self.stderr_tail())
            if now() - t0 > limit:
                raise RuntimeError("runcastd did not say where it listens:\n"
                                   + self.stderr_tail())
            await asyncio.sleep(0.02)
        self.proc = proc
        self.expect_exit = False
        while now() - t0 < limit:
            if self.proc.returncode is not None:
                raise RuntimeError(f"runcastd exited at start ({self.proc.returncode}):\n"
                                   + self.stderr_tail())
            try:
                st, _ = await self.get("/healthz", timeout=2)
                if st == 200:
                    return True
            except Exception:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError("runcastd did not become healthy:\n" + self.stderr_tail())

    async def get(self, path, timeout=5):
        def do():
            try:
                with urllib.request.urlopen(self.http + path, timeout=timeout) as r:
                    return r.status, r.read()
            except urllib.error.HTTPError as e:
                return e.code, e.read()
        return await asyncio.to_thread(do)

    async def metrics(self):
        st, body = await self.get("/metrics", timeout=self.h.cfg["stall_ms"] / 1000)
        if st != 200:
            raise RuntimeError(f"/metrics answered {st}")
        return parse_metrics(body.decode())

    def stderr_tail(self, n=40):
        try:
            with open(self.stderr_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def sanitizer_report(self):
        try:
            with open(self.stderr_path, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            return None
        for pat in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                    "WARNING: ThreadSanitizer"):
            i = text.find(pat)
            if i >= 0:
                return text[max(0, i - 200): i + 3000]
        return None

    async def sigterm(self):
        self.expect_exit = True
        t0 = now()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = await asyncio.wait_for(self.proc.wait(),
                                        self.h.cfg["shutdown_ms"] / 1000 + 10)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            rc = "hung"
        return rc, now() - t0


def parse_metrics(text):
    """{name: {labels-tuple: value}} from Prometheus text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)', line)
        if not m:
            continue
        labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or "")))
        try:
            val = float(m.group(4))
        except ValueError:
            continue
        out.setdefault(m.group(1), {})[labels] = val
    return out


def metric(ms, name, **labels):
    """The value of a metric (summed over unspecified labels); None if absent."""
    series = ms.get(name)
    if series is None:
        return None
    total = 0.0
    found = False
    for lab, v in series.items():
        d = dict(lab)
        if all(d.get(k) == str(v2) for k, v2 in labels.items()):
            total += v
            found = True
    return total if found else None


# ---------------------------------------------------------------------------
# Publishers: rc_chaos_pub driven over stdin/stdout


class Pub:
    def __init__(self, h, kind):
        self.h = h
        self.kind = kind  # push | req
        self.proc = None
        self.dead = False

    async def start(self):
        self.proc = await asyncio.create_subprocess_exec(
            self.h.chaos_exe, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=1 << 24)
        url = self.h.broker.rep_url if self.kind == "req" else self.h.broker.pull_url
        r = await self.cmd(f"dial {self.kind} {url}")
        if r.get("op") != "dialed":
            raise RuntimeError(f"chaos_pub dial: {r}")
        await self.cmd(f"timeout {self.h.cfg['req_timeout_ms']}")
        if self.kind == "push":
            # nng 1.5.2 drops what is still queued at nng_close: on a loaded
            # machine its writer may not have run within the 100 ms default,
            # and a lost last message is then miscounted (I4, I5)
            await self.cmd(f"linger {self.h.cfg['linger_ms']}")

    async def cmd(self, line, timeout=30):
        if self.dead:
            return {"op": "dead"}
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            self.dead = True
            return {"op": "dead"}
        return json.loads(raw)

    async def send(self, data):
        return await self.cmd(("req " if self.kind == "req" else "send ")
                              + base64.b64encode(data).decode())

    async def junk(self, n, byte=0xC1):
        return await self.cmd(f"{'reqjunk' if self.kind == 'req' else 'sendjunk'} {n} {byte}")

    def kill(self):
        if self.proc and self.proc.returncode is None:
            self.proc.kill()
        self.dead = True
        return now()

    async def close(self):
        r = await self.cmd("close")
        return r.get("t", now())

    async def finish(self):
        if self.proc is None:
            return
        if self.proc.returncode is None and not self.dead:
            try:
                self.proc.stdin.write(b"exit\n")
                await self.proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def decode_ack(reply):
    if reply.get("op") != "reply":
        return None
    try:
        return msgpack.unpackb(base64.b64decode(reply["b64"]), raw=False, strict_map_key=False)
    except Exception as e:  # noqa: BLE001
        return {"undecodable": repr(e)}


# ---------------------------------------------------------------------------
# Runs: one scenario per run, publishing through a Pub


PHASES = ["routing", "planning", "execute", "verify", "repair", "streaming"]


class RunCtx:
    """Publishes the events of one run and records what happened."""

    def __init__(self, h, scenario, pub, conv=None):
        self.h = h
        self.pub = pub
        self.rng = random.Random(h.rng.random())
        rid = h.new_run_id(scenario[:4])
        self.rec = C.RunRecord(rid, scenario, conv=conv, path=pub.kind)
        self.rec.pub_pid = pub.proc.pid if pub.proc else None
        self.rec.timeout_ms = h.cfg["watchdog_ms"]
        self.rec.deadline_ms = h.cfg["deadline_ms"]
        self.rec.grace_ms = h.cfg["grace_ms"]
        h.runs[rid] = self.rec
        self.k = 0
        self.phase = None

    @property
    def run(self):
        return self.rec.run

    def ev(self, typ, **kw):
        """A valid event of this run, with its marker k in data."""
        self.k += 1
        e = {"run": self.run, "type": typ, "ts": now(), "data": {"k": self.k}}
        if self.rec.conv and (self.k == 1 or self.rng.random() < 0.3):
            e["conv"] = self.rec.conv
        if typ == "phase":
            self.phase = kw.pop("phase", None) or self.rng.choice(PHASES)
            e["phase"] = self.phase
        elif typ in ("thinking", "delta"):
            e["text"] = kw.pop("text", None) or f"{typ} chunk {self.k} " * self.rng.randint(1, 4)
        elif typ == "tool":
            e["tool"] = {"id": f"t{self.rng.randint(1, 3)}", "name": "search",
                         "status": self.rng.choice(["running", "done"])}
        elif typ == "verification":
            e["item"] = {"id": f"v{self.rng.randint(1, 2)}", "label": "tests pass",
                         "status": self.rng.choice(["pending", "ok"])}
        elif typ == "error":
            e["error"] = {"code": "backend_failed", "message": "the model provider said no"}
        e.update(kw)
        if self.pub.kind == "req" and "id" not in e:
            e["id"] = f"i{self.k}"  # REQ retries must be idempotent
        return e

    def filler(self):
        return self.ev(self.rng.choice(["thinking", "delta", "tool", "verification",
                                        "heartbeat", "phase", "x-progress", "delta"]))

    async def publish(self, events, expect=None, raw=None):
        """Publishes events (one message: a map, or an array when batched).
        expect: per event, None for valid, else the set of acceptable error
        codes.  Returns the ack results (REQ) or None (PUSH)."""
        h = self.h
        expect = expect or [None] * len(events)
        if raw is None:
            obj = events[0] if len(events) == 1 and self.rng.random() < 0.5 else events
            raw = msgpack.packb(obj, use_bin_type=True)
        if self.rec.first_t is None:
            self.rec.first_t = now()
        for attempt in range(40):
            r = await self.pub.send(raw)
            t = r.get("t", now())
            self._t0 = r.get("t0", t)
            if r.get("op") == "sent":
                self._pipe_t = r.get("pipe_t")
                for e, x in zip(events, expect):
                    self._note_sent(e, x, t, None)
                return None
            if r.get("op") == "dead":
                return None
            if r.get("op") == "noreply":
                self.rec.note(t, f"no reply ({r.get('err')}), retrying")
                await asyncio.sleep(0.2)
                continue
            ack = decode_ack(r)
            if not isinstance(ack, dict) or "results" not in ack:
                h.violate("I4", self.run, f"undecodable ack {ack!r}")
                return None
            res = ack["results"]
            if (len(res) == 1 and len(events) != 1 and isinstance(res[0], dict)
                    and "error" in res[0]):
                code = res[0]["error"].get("code")
                if code in ("shutting_down", "overloaded"):
                    self.rec.note(t, f"whole message {code}, retrying")
                    await asyncio.sleep(0.2)
                    continue
            retry = any(isinstance(x, dict) and (x.get("error") or {}).get("code") in
                        ("shutting_down", "overloaded") for x in res)
            if retry:
                self.rec.note(t, f"ack asks to retry: {res}")
                await asyncio.sleep(0.2)
                continue
            if len(res) != len(events):
                h.violate("I4", self.run, f"ack has {len(res)} results for {len(events)} events: "
                          f"{ack}")
                return res
            for e, x, rr in zip(events, expect, res):
                self._note_sent(e, x, t, rr, ack.get("epoch"))
            return res
        h.violate("I5", self.run, "publish retried 40 times without an answer")
        return None

    def _note_sent(self, e, exp, t, res, epoch=None):
        h = self.h
        k = (e.get("data") or {}).get("k") if isinstance(e, dict) else None
        desc = f"k={k} {e.get('type') if isinstance(e, dict) else '?'}"
        if res is None:  # PUSH
            self.rec.note(t, f"sent {desc}" + (f" (invalid, expect {sorted(exp)})" if exp else ""))
            if exp is None:
                self.rec.events.append({"k": k, "type": e["type"], "t": t, "path": "push",
                                        "ack": None, "id": e.get("id"), "t0": self._t0,
                                        "pipe_t": getattr(self, "_pipe_t", None) or 0})
            else:
                h.count_reject(sorted(exp)[0])
            return
        self.rec.note(t, f"acked {desc}: {res}")
        err = (res.get("error") or {}) if isinstance(res, dict) else {}
        code = err.get("code")
        if exp is None:
            if code is not None:
                # run_terminal: the run ended first (a watchdog when the
                # publisher really went quiet, which the checker judges)
                if code == "run_terminal":
                    h.count_reject(code, epoch)
                    self.rec.events.append({"k": k, "type": e["type"], "t": t, "path": "req",
                                            "ack": {"error": code}, "id": e.get("id"),
                                            "t0": self._t0})
                    return
                h.violate("I4", self.run, f"valid event {desc} rejected: {res}")
                h.count_reject(code, epoch)
                return
            if res.get("dup"):
                h.tal(epoch)["dup"] += 1
            self.rec.events.append({"k": k, "type": e["type"], "t": t, "path": "req",
                                    "ack": {"seq": res.get("seq"), "dup": bool(res.get("dup")),
                                            "epoch": epoch}, "id": e.get("id"), "t0": self._t0})
            return
        if code is None:
            h.violate("I4", self.run, f"invalid event {desc} accepted (expected "
                      f"{sorted(exp)}): {res}")
            return
        h.count_reject(code, epoch)
        if code not in exp:
            h.violate("I4", self.run, f"invalid event {desc} answered {code}, expected "
                      f"{sorted(exp)}: {res}")

    async def pace(self, lo=0.0, hi=0.06):
        await asyncio.sleep(self.rng.uniform(lo, hi))

    async def body(self, n):
        """n filler events in batches of 1..8, paced well under the watchdog."""
        sent = 0
        while sent < n:
            b = min(n - sent, self.rng.choice([1, 1, 2, 3, 5, 8]))
            await self.publish([self.filler() for _ in range(b)])
            sent += b
            await self.pace()

    def start_ev(self, timeouts=None, deadline=None):
        """A `start` with per-run watchdog overrides, recorded in the run's
        record so invariant 3 judges the run by the timeouts it really has
        (timeouts: {"*": ms} sets the idle timeout; other keys are phases,
        which the caller records itself)."""
        kw = {}
        if timeouts:
            kw["timeouts"] = timeouts
            if "*" in timeouts and len(timeouts) == 1:
                self.rec.timeout_ms = timeouts["*"]
        if deadline:
            kw["deadline"] = deadline
            self.rec.deadline_ms = deadline
        return self.ev("start", **kw)

    def long_start(self, deadline=None):
        """The `start` of a run whose expected terminal is not the watchdog
        (nor the deadline unless given): idle timeout and deadline so long
        that only a stall of seconds could let them win the race against the
        cause under test."""
        c = self.h.cfg
        return self.start_ev(timeouts={"*": c["long_idle_ms"]},
                             deadline=deadline or c["long_deadline_ms"])

    def note_gaps(self):
        """The expected terminal is decided by the scenario, with per-run
        timeouts that leave seconds between it and any competing cause; but
        a loaded machine can stall the harness itself.  So the competing
        causes are judged from what the harness observed (send completions,
        acks, the kill or close moment), never from planned times: when the
        observed timings bring a competing cause within `race_ms` of firing
        first, it is accepted too and counted (Harness.ambiguous, printed
        as a summary line) instead of failing the run."""
        h, rec = self.h, self.rec
        evs = rec.events
        margin = h.cfg["race_ms"] + 3 * h.cfg["tick_ms"]
        allowed = []
        # the watchdog: silence from one message's completion to the start
        # of the next, or from the last event to the moment publisher_gone
        # is due (end + grace: the broker must still notice the close)
        gaps = [b.get("t0", b["t"]) - a["t"] for a, b in zip(evs, evs[1:])]
        end = rec.killed_at or rec.closed_at
        if end and evs:
            gaps.append(end - evs[-1]["t"] + (rec.grace_ms or 0))
        if ("watchdog_timeout" not in rec.kinds and gaps and rec.timeout_ms
                and max(gaps) >= rec.timeout_ms - margin):
            allowed.append(("watchdog_timeout", f"publisher gap of {max(gaps)} ms vs idle "
                            f"timeout {rec.timeout_ms} ms"))
        # the deadline: the run's observed life (first send to its last
        # event, or to publisher_gone being due)
        if evs and rec.first_t and rec.deadline_ms and "deadline_exceeded" not in rec.kinds:
            last = max(evs[-1]["t"], (end + (rec.grace_ms or 0)) if end else 0)
            if last - rec.first_t >= rec.deadline_ms - margin:
                allowed.append(("deadline_exceeded", f"run lived {last - rec.first_t} ms vs "
                                f"deadline {rec.deadline_ms} ms"))
        for kind, why in allowed:
            rec.kinds.add(kind)
            rec.note(now(), f"{why}: {kind} allowed too")
            h.ambiguous.append((rec.run, kind, why))


async def with_pub(h, kind, fn):
    pub = Pub(h, kind)
    await pub.start()
    try:
        await fn(pub)
    finally:
        await pub.finish()


def pick_conv(h):
    return h.rng.choice([None, "c0", "c1", "c2", "c3"])


async def sc_good(h, kind):
    """A well-formed run to complete or error, batched."""
    async def go(pub):
        r = RunCtx(h, "good", pub, conv=pick_conv(h))
        fail = r.rng.random() < 0.25
        r.rec.kinds = {"error" if fail else "complete"}
        # a long idle timeout: the harness stalling between two sends must
        # not turn the expected complete/error into a watchdog terminal
        await r.publish([r.long_start()])
        await r.body(r.rng.randint(3, 30))
        last = [r.filler() for _ in range(r.rng.randint(0, 3))]
        await r.publish(last + [r.ev("error" if fail else "complete")])
        r.note_gaps()
        # late events after the terminal (rejected, run_terminal) sometimes
        if r.rng.random() < 0.2 and not h.in_quiet():
            await r.publish([r.ev("delta")])
    await with_pub(h, kind, go)


async def sc_kill(h, kind):
    """SIGKILL mid-run: publisher_gone for every run on that connection."""
    async def go(pub):
        runs = [RunCtx(h, "kill", pub, conv=pick_conv(h)) for _ in range(h.rng.choice([1, 1, 2, 3]))]
        # idle timeout of seconds, grace of 150 ms: publisher_gone wins by
        # seconds however late the harness gets to the kill
        for r in runs:
            await r.publish([r.long_start()])
        for _ in range(h.rng.randint(2, 12)):
            for r in runs:
                await r.publish([r.filler() for _ in range(r.rng.choice([1, 2, 4]))])
            await runs[0].pace(0, 0.04)
        await asyncio.sleep(h.rng.uniform(0, 0.03))
        t = pub.kill()
        for r in runs:
            r.rec.killed_at = t
            r.rec.kinds = {"publisher_gone"}
            r.rec.lossy_tail = kind == "push"
            r.rec.note(t, "SIGKILL")
            r.note_gaps()
    await with_pub(h, kind, go)


async def sc_stop(h, kind, close):
    """Stops without a terminal: keeps the connection (watchdog_timeout) or
    closes it cleanly (publisher_gone)."""
    async def go(pub):
        r = RunCtx(h, "close" if close else "hold", pub, conv=pick_conv(h))
        if close:
            # idle timeout of seconds, grace 150 ms: publisher_gone by seconds
            await r.publish([r.long_start()])
            await r.body(r.rng.randint(2, 15))
        elif r.rng.random() < 0.5:
            # per-run override, phase-specific: the last phase decides; the
            # other phases get seconds, so a stall before `execute` is no race
            to = h.ms(r.rng.choice([300, 500]))
            await r.publish([r.start_ev(timeouts={"execute": to, "*": h.cfg["long_idle_ms"]},
                                        deadline=h.cfg["long_deadline_ms"])])
            r.rec.timeout_ms = h.cfg["long_idle_ms"]
            await r.body(r.rng.randint(1, 6))
            await r.publish([r.ev("phase", phase="execute")])
            r.rec.timeout_ms = to
            await r.publish([r.ev("tool")])
        else:
            # the broker's own --watchdog (short); only the deadline is long
            await r.publish([r.start_ev(deadline=h.cfg["long_deadline_ms"])])
            await r.body(r.rng.randint(2, 15))
        if close:
            await asyncio.sleep(r.rng.uniform(0, 0.03))
            t = await pub.close()
            r.rec.closed_at = t
            r.rec.kinds = {"publisher_gone"}
            r.rec.note(t, "closed the connection")
        else:
            r.rec.kinds = {"watchdog_timeout"}
            r.rec.note(now(), "went silent, connection kept open")
        r.note_gaps()
        # keep the connection open well past the expected terminal
        wait = r.rec.grace_ms if close else r.rec.timeout_ms
        await asyncio.sleep((wait + h.cfg["bound_ms"]) / 1000)
    await with_pub(h, kind, go)


async def sc_chatter(h, kind):
    """Keeps sending non-terminal events past the run deadline."""
    async def go(pub):
        r = RunCtx(h, "chat", pub, conv=pick_conv(h))
        r.rec.kinds = {"deadline_exceeded"}
        # idle timeout of seconds: only the deadline can end it (None: the
        # broker's --run-deadline)
        dl = r.rng.choice([None, h.ms(1200), h.ms(1600)])
        await r.publish([r.start_ev(timeouts={"*": h.cfg["long_idle_ms"]}, deadline=dl)])
        end = r.rec.first_t + r.rec.deadline_ms + 600 + h.cfg["race_ms"]
        while now() < end:
            res = await r.publish([r.ev(r.rng.choice(["heartbeat", "delta", "thinking"]))])
            if res and (res[0].get("error") or {}).get("code") == "run_terminal":
                break
            await r.pace(0.03, 0.09)
        r.note_gaps()
    await with_pub(h, kind, go)


async def sc_dups(h, kind):
    """Idempotent retries, an invalid terminal then a valid retry, a duplicate
    terminal and late events."""
    async def go(pub):
        r = RunCtx(h, "dups", pub, conv=pick_conv(h))
        r.rec.kinds = {"complete"}
        await r.publish([r.long_start()])
        evs = [r.ev("delta", id=f"d{i}") for i in range(4)]
        for e in evs:
            await r.publish([e])
        # retry of an earlier id: acked with the original seq, not delivered
        again = dict(evs[1])
        res = await r.publish([again])
        if kind == "req":
            first = next(e for e in r.rec.events if e["id"] == evs[1]["id"])
            if not res or not res[0].get("dup") or res[0].get("seq") != first["ack"]["seq"]:
                h.violate("I4", r.run, f"retry of id {evs[1]['id']} answered {res}, expected "
                          f"dup with seq {first['ack']['seq']}")
        else:
            h.tal(h.epoch)["dup"] += 1
        # an invalid terminal: logged CRITICAL, the run stays open
        bad = {"run": r.run, "type": "error", "ts": now(), "id": "term-bad"}
        if r.rng.random() < 0.5:
            bad = {"run": r.run, "type": "complete", "text": 5, "id": "term-bad"}
            codes = {"bad_field"}
        else:
            codes = {"missing_field"}
        await r.publish([bad], expect=[codes])
        await r.pace()
        await r.publish([r.ev("delta")])
        term = r.ev("complete", id="term")
        await r.publish([term])
        # a second terminal and a late event: run_terminal
        for late in (r.ev("error"), r.ev("delta")):
            res = await r.publish([late], expect=[{"run_terminal"}])
            if kind == "push":
                pass
        # the terminal retried with its id: dup of the original or run_terminal
        res = await r.publish([term], expect=[None]) if kind == "req" else None
        if kind == "req" and res:
            x = res[0]
            tseq = next(e["ack"]["seq"] for e in r.rec.events if e["id"] == "term"
                        and "seq" in e["ack"])
            if not ((x.get("dup") and x.get("seq") == tseq)
                    or (x.get("error") or {}).get("code") == "run_terminal"):
                h.violate("I4", r.run, f"retried terminal answered {x}")
        r.note_gaps()
    await with_pub(h, kind, go)


async def sc_batch_mixed(h):
    """One REQ batch mixing good and bad events: each answered on its own."""
    async def go(pub):
        r = RunCtx(h, "mix", pub, conv=pick_conv(h))
        r.rec.kinds = {"complete"}
        evs = [r.ev("delta"),
               {"run": r.run, "type": "bogus", "id": "b1"},
               r.ev("tool"),
               {"type": "delta", "text": "no run"},
               {"run": r.run, "type": "phase", "id": "b2"},
               {"run": r.run, "type": "delta", "text": 7, "id": "b3"},
               r.ev("thinking"),
               r.ev("complete")]
        exp = [None, {"unknown_type"}, None, {"missing_field"}, {"missing_field"},
               {"bad_field"}, None, None]
        await r.publish(evs, expect=exp, raw=msgpack.packb(evs))
    await with_pub(h, "req", go)


def invalid_inputs(h, run):
    """(label, bytes, acceptable codes) for the nng sockets."""
    good = {"run": run, "type": "delta", "text": "x"}
    pk = msgpack.packb(good)
    deep = "leaf"
    for _ in range(40):
        deep = [deep]
    s_run, s_type, s_delta, s_text = (msgpack.packb(x) for x in ("run", "type", "delta", "text"))
    bad_utf8 = b"\x83" + s_run + msgpack.packb(run) + s_type + s_delta + s_text + b"\xa2\xff\xfe"
    return [
        ("garbage", b"\xc1\xc1\xc1\xc1", {"malformed"}),
        ("truncated", pk[:-3], {"malformed"}),
        ("trailing bytes", pk + b"\x00", {"malformed"}),
        ("top-level int", msgpack.packb(42), {"not_a_map"}),
        ("top-level string", msgpack.packb("event"), {"not_a_map"}),
        ("array of non-maps", msgpack.packb([42]), {"not_a_map"}),
        ("type not a string", msgpack.packb({"run": run, "type": 5}), {"bad_field"}),
        ("unknown type", msgpack.packb({"run": run, "type": "bogus"}), {"unknown_type"}),
        ("missing type", msgpack.packb({"run": run}), {"missing_field"}),
        ("bad run id", msgpack.packb({"run": "bad run!", "type": "delta"}), {"bad_field"}),
        ("run id too long", msgpack.packb({"run": "r" * 200, "type": "delta"}),
         {"bad_field", "too_large"}),
        ("bad utf-8", bad_utf8, {"bad_utf8"}),
        ("data too deep", msgpack.packb({"run": run, "type": "delta", "data": deep}),
         {"too_deep"}),
        ("event over 64 KiB", msgpack.packb({"run": run, "type": "delta", "text": "y" * 70000}),
         {"too_large"}),
        ("batch over 1024 events", msgpack.packb([good] * 1025), {"too_large"}),
        ("error without error map", msgpack.packb({"run": run, "type": "error"}),
         {"missing_field"}),
    ]


async def sc_invalid(h, kind):
    """Invalid input on the nng sockets: answered (REQ) or counted (PUSH)."""
    async def go(pub):
        run = h.new_run_id("inv")
        items = invalid_inputs(h, run)
        h.rng.shuffle(items)
        for label, raw, codes in items[: h.rng.randint(4, len(items))]:
            r = await pub.send(raw)
            if kind == "push":
                if r.get("op") != "sent":
                    h.violate("I4", run, f"{label}: send failed {r}")
                # counted by reason in /metrics (checked at the end); where two
                # codes are acceptable, runcastd answers bad_field (REQ shows it)
                h.count_reject(sorted(codes)[0] if len(codes) == 1 else
                               ("bad_field" if "bad_field" in codes else sorted(codes)[0]))
                continue
            ack = decode_ack(r)
            if not isinstance(ack, dict) or not ack.get("results"):
                h.violate("I4", run, f"{label}: no proper ack: {r} {ack}")
                continue
            res = ack["results"]
            code = (res[0].get("error") or {}).get("code")
            if code in ("shutting_down", "overloaded"):
                continue
            h.count_reject(code or "none", ack.get("epoch"))
            if ack.get("ok") is not False or code not in codes:
                h.violate("I4", run, f"{label}: answered {ack}, expected {sorted(codes)}")
    await with_pub(h, kind, go)
    # a well-formed batch over the 4 MiB message limit, on a connection of
    # its own (a broker may drop the connection of such a sender)
    if h.rng.random() < 0.5:
        async def big(pub):
            await pub.cmd("linger 1500")
            run = h.new_run_id("inv")
            one = {"run": run, "type": "delta", "text": "b" * 60000}
            raw = msgpack.packb([one] * 80)  # 80 events of 60 KB: 4.8 MB
            r = await pub.send(raw)
            if kind == "req":
                ack = decode_ack(r)
                res = (ack or {}).get("results") if isinstance(ack, dict) else None
                code = ((res or [{}])[0].get("error") or {}).get("code")
                if code in ("shutting_down", "overloaded"):
                    return
                h.count_reject(code or "none", (ack or {}).get("epoch"))
                if code != "too_large":
                    h.violate("I4", run, f"4.8 MB batch answered {r.get('op')} {ack}, "
                              f"expected too_large")
            else:
                h.count_reject("too_large")
        await with_pub(h, kind, big)


async def sc_firehose_slow(h):
    """A run that floods (12 MiB) while one subscriber stops reading: that
    subscriber is closed 4008 and resumes exactly; nobody else suffers."""
    conv = None

    async def go(pub):
        r = RunCtx(h, "fire", pub, conv=conv)
        r.rec.kinds = {"complete"}
        slow = SlowSub(h, r.run)
        h.spawn(slow.run())
        await slow.subscribed.wait()
        await r.publish([r.start_ev(timeouts={"*": h.cfg["long_idle_ms"]}, deadline=30000)])
        # incompressible text (a server could negotiate permessage-deflate)
        chunks = [base64.b64encode(r.rng.randbytes(6144)).decode() for _ in range(16)]
        # 12 MiB: over the queue limit plus the in-flight frame plus the
        # socket buffers (a loopback send buffer autotunes up to 4 MiB)
        for _ in range(h.cfg["firehose_batches"]):
            await r.publish([r.ev("delta", text=c) for c in chunks])
        # once the others have it all, the slow one reads again: it must find
        # a 4008 close at the end of what it was sent, then resume
        await h.wait_seen(r.run, r.k, 20)
        # its connection may still be catching up with its mailbox: give the
        # broker time to queue everything for it before it reads again
        await asyncio.sleep(h.ms(2000) / 1000)
        t0 = now()
        while not slow.resumed.is_set() and now() - t0 < 8000:
            await r.publish([r.ev("heartbeat")])
            slow.may_read.set()
            await asyncio.sleep(0.3)
        if not slow.resumed.is_set():
            h.violate("I5", r.run, "the slow consumer was not closed (4008) although "
                      f"{h.cfg['firehose_batches'] * 16 * 8} KiB were queued for it",
                      slow.trace.name)
        await r.publish([r.ev("complete")])
        r.note_gaps()
        await slow.done.wait()
    await with_pub(h, "push", go)


async def sc_retention_resume(h):
    """A run subscriber that drops, then resumes after retention expired:
    gap + snap holding the terminal."""
    async def go(pub):
        r = RunCtx(h, "reten", pub, conv=pick_conv(h))
        r.rec.kinds = {"complete"}
        s = RunSub(h, r.run, drop_after_seq=3, resume_after_ms=h.cfg["retention_ms"] + 1500)
        h.spawn(s.run())
        await s.subscribed.wait()
        await r.publish([r.long_start()])
        await r.publish([r.ev("phase", phase="routing")])
        await r.publish([r.ev("delta")])
        await asyncio.wait_for(s.dropped.wait(), 10)
        await r.body(6)
        await r.publish([r.ev("complete")])
        r.note_gaps()
        s.terminal_sent_at = now()
        await s.done.wait()
        if not s.saw_gap:
            h.violate("I2", r.run, "resume after retention expired got no gap", s.trace.name)
        # history freed, tombstone kept: late events are still fenced
        await r.publish([r.ev("delta")], expect=[{"run_terminal"}])
    await with_pub(h, "req", go)


# ---------------------------------------------------------------------------
# Subscribers


def decode_frame(msg):
    if isinstance(msg, bytes):
        obj = msgpack.unpackb(msg, raw=False, strict_map_key=False)
    else:
        obj = json.loads(msg)
    return obj if isinstance(obj, list) else [obj]


class Subscriber:
    """A WebSocket subscriber that records everything and resumes after any
    close with `since` (+ epoch) until stopped."""

    def __init__(self, h, name, kind, target=None, fmt="msgpack", drops=False):
        self.h = h
        self.kind, self.target, self.fmt, self.drops = kind, target, fmt, drops
        self.trace = C.SubTrace(name, kind, target)
        h.subs.append(self.trace)
        self.last = {}  # (epoch, run) -> last seq seen
        self.ended = set()  # (epoch, run) terminated
        self.ended_at = {}
        self.epoch = None
        self.ws = None
        self.req = 0
        self.stop = False
        self.subscribed = asyncio.Event()
        self.done = asyncio.Event()
        self.rng = random.Random(h.rng.random())
        self.closes = []

    def url(self):
        return self.h.broker.ws + ("?format=json" if self.fmt == "json" else "")

    def pack(self, obj):
        return json.dumps(obj) if self.fmt == "json" else msgpack.packb(obj)

    def sub_msg(self):
        self.req += 1
        m = {"op": "sub", "req": self.req}
        if self.kind == "all":
            m["all"] = True
        else:
            m[self.kind] = self.target
        seen = {r: s for (e, r), s in self.last.items() if e == self.epoch_prev}
        if self.kind == "run":
            if self.target in seen:
                m["since"] = seen[self.target]
                m["epoch"] = self.epoch_prev
        elif seen:
            # leave out runs that ended long ago (keeps the frame small)
            old = now() - self.h.cfg["retention_ms"] - 5000
            m["since"] = {r: s for r, s in seen.items()
                          if self.ended_at.get((self.epoch_prev, r), now()) > old}
            m["epoch"] = self.epoch_prev
        return m

    async def connect(self, **kw):
        while not self.stop:
            await self.h.broker_up.wait()
            try:
                ws = await websockets.connect(self.url(), max_size=1 << 24, open_timeout=10,
                                              ping_interval=None, compression=None, **kw)
                return ws
            except (OSError, websockets.exceptions.WebSocketException, asyncio.TimeoutError):
                await asyncio.sleep(0.1)
        return None

    async def run(self):
        self.epoch_prev = None
        try:
            while not self.stop:
                ws = await self.connect()
                if ws is None:
                    break
                self.ws = ws
                try:
                    await self.session(ws)
                except websockets.exceptions.ConnectionClosed as e:
                    code = e.rcvd.code if e.rcvd else 1006
                    self.trace.add(now(), "close", {"code": code})
                    self.closes.append((now(), code))
                    await self.after_close(code)
                finally:
                    self.ws = None
                await asyncio.sleep(self.rng.uniform(0.02, 0.2))
        finally:
            self.trace.ended_at = now()
            self.done.set()

    async def after_close(self, code):
        pass

    async def session(self, ws):
        hello = decode_frame(await asyncio.wait_for(ws.recv(), 10))[0]
        if hello.get("op") != "hello":
            self.h.violate("I5", None, f"first frame is not hello: {hello}", self.trace.name)
        self.epoch = hello.get("epoch")
        self.trace.add(now(), "hello", {"epoch": self.epoch})
        msg = self.sub_msg()
        if "since" in msg:
            since = msg["since"] if isinstance(msg["since"], dict) else {self.target: msg["since"]}
            self.trace.add(now(), "resume", {"epoch": msg.get("epoch"), "since": since})
        elif self.epoch_prev is not None:
            self.trace.add(now(), "resume", {"epoch": self.epoch_prev, "since": {}})
        await ws.send(self.pack(msg))
        drop_at = now() + self.rng.uniform(300, 2000) if self.drops else None
        while True:
            if self.stop:
                await ws.close()
                return
            timeout = 0.2
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout)
            except asyncio.TimeoutError:
                raw = None
            if raw is not None:
                self.on_frame(raw, msg)
            if drop_at and now() >= drop_at:
                # abrupt: no close frame
                ws.transport.abort()
                self.trace.add(now(), "close", {"code": 1006, "by": "harness"})
                self.epoch_prev = self.epoch
                return

    def on_frame(self, raw, msg):
        t = now()
        for m in decode_frame(raw):
            if not isinstance(m, dict):
                self.h.violate("I2", None, f"non-map server message {m!r}", self.trace.name)
                continue
            op = m.get("op")
            if op == "ok" and m.get("req") == msg["req"]:
                self.trace.add(t, "subscribed", {})
                self.subscribed.set()
                continue
            if op == "err":
                self.trace.add(t, "msg", m)
                if m.get("req") == msg["req"]:
                    self.h.violate("I5", self.target, f"sub refused: {m}", self.trace.name)
                continue
            if op in ("hb", "pong"):
                continue
            for big in ("text", "thinking", "output"):  # keep traces small (soaks)
                if isinstance(m.get(big), str) and len(m[big]) > 64:
                    m[big] = f"<{len(m[big])} chars>"
            self.trace.add(t, "msg", m)
            if op in ("ev", "snap"):
                key = (m.get("epoch", self.epoch), m.get("run"))
                self.last[key] = max(self.last.get(key, 0), m.get("seq", 0))
                if (op == "ev" and m.get("type") in C.TERMINAL_TYPES) or \
                        (op == "snap" and m.get("terminal")):
                    self.ended.add(key)
                    self.ended_at[key] = t
                    self.on_terminal(key)
        self.epoch_prev = self.epoch

    def on_terminal(self, key):
        pass


class RunSub(Subscriber):
    """A subscriber to one run: may subscribe before the run exists or late
    (snapshot), may drop once and resume (after retention expired if asked);
    leaves a little after the terminal."""

    def __init__(self, h, run, fmt=None, drop_after_seq=None, resume_after_ms=None):
        super().__init__(h, f"run:{run}", "run", run,
                         fmt=fmt or h.rng.choice(["msgpack", "msgpack", "json"]))
        self.drop_after_seq = drop_after_seq
        self.resume_after_ms = resume_after_ms
        self.saw_gap = False
        self.dropped = asyncio.Event()
        self.terminal_sent_at = None
        h.run_subs.append(self)

    def on_frame(self, raw, msg):
        super().on_frame(raw, msg)
        for _, kind, m in self.trace.items[-5:]:
            if kind == "msg" and m.get("op") == "gap":
                self.saw_gap = True

    def on_terminal(self, key):
        async def leave():
            await asyncio.sleep(0.3)
            self.stop = True
        self.h.spawn(leave())

    async def session(self, ws):
        if self.drop_after_seq is None:
            return await super().session(ws)
        # drop abruptly once seq >= drop_after_seq, then wait before resuming
        orig = self.drops
        self.drops = False
        task = asyncio.ensure_future(super().session(ws))
        while not task.done():
            await asyncio.sleep(0.02)
            if max([s for (e, r), s in self.last.items()] or [0]) >= self.drop_after_seq:
                ws.transport.abort()
                self.trace.add(now(), "close", {"code": 1006, "by": "harness"})
                self.epoch_prev = self.epoch
                self.drop_after_seq = None
                self.dropped.set()
                break
        try:
            await task
        except websockets.exceptions.ConnectionClosed:
            pass
        self.drops = orig
        while self.terminal_sent_at is None and not self.h.stopping:
            await asyncio.sleep(0.05)
        if self.resume_after_ms:
            await asyncio.sleep(self.resume_after_ms / 1000)


class SlowSub(RunSub):
    """Stops reading (tiny socket buffers) until the broker closes it as a
    slow consumer (4008), then resumes with since and must lose nothing."""

    def __init__(self, h, run):
        super().__init__(h, run, fmt="msgpack")
        self.trace.name = f"slow:{run}"
        self.may_read = asyncio.Event()
        self.resumed = asyncio.Event()
        self.closed_4008 = False
        self.first = True
        self.slow_phase = False

    async def connect(self, **kw):
        if not self.first:
            return await super().connect()
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", self.h.broker.p_http))
        s.setblocking(False)
        return await super().connect(sock=s, max_queue=1, read_limit=4096)

    async def session(self, ws):
        if not self.first:
            self.resumed.set()
            return await Subscriber.session(self, ws)
        self.first = False
        self.slow_phase = True
        hello = decode_frame(await asyncio.wait_for(ws.recv(), 10))[0]
        self.epoch = hello.get("epoch")
        self.trace.add(now(), "hello", {"epoch": self.epoch})
        msg = self.sub_msg()
        await ws.send(self.pack(msg))
        while not self.subscribed.is_set():
            self.on_frame(await asyncio.wait_for(ws.recv(), 10), msg)
        # stop reading until the firehose is done
        await self.may_read.wait()
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), 3)
            except asyncio.TimeoutError:
                # drained what there was and the connection is still open
                got_err = any(kind == "msg" and p.get("op") == "err" and
                              p.get("code") == "slow_consumer"
                              for t, kind, p in self.trace.items)
                if got_err:
                    self.h.violate("I5", self.target, "the slow consumer got `err` "
                                   "slow_consumer, but no 4008 close followed within 3 s: the "
                                   "connection stays open and receives nothing more",
                                   self.trace.name)
                else:
                    self.h.violate("I5", self.target, "the slow consumer was never closed "
                                   f"although {self.h.cfg['firehose_batches'] * 128} KiB were "
                                   "queued for it", self.trace.name)
                # resume on a new connection, as a client would after a timeout
                self.slow_phase = False
                ws.transport.abort()
                self.trace.add(now(), "close", {"code": 1006, "by": "harness"})
                self.epoch_prev = self.epoch
                return
            self.on_frame(raw, msg)

    async def after_close(self, code):
        if self.slow_phase:
            self.slow_phase = False
            if code == 4008:
                self.closed_4008 = True
            else:
                self.h.violate("I5", self.target, f"slow consumer closed with {code}, expected "
                               "4008", self.trace.name)
        self.epoch_prev = self.epoch


# ---------------------------------------------------------------------------
# WebSocket abuse


async def ws_abuse(h):
    """Invalid client input on WebSockets: each answered with an err frame of
    the right code; the connection keeps working; repeated abuse closes 4400;
    a foreign Origin is refused with 403."""
    url = h.broker.ws

    async def expect(ws, codes, label):
        t0 = now()
        while now() - t0 < 5000:
            for m in decode_frame(await asyncio.wait_for(ws.recv(), 5)):
                if m.get("op") == "err":
                    if codes and m.get("code") not in codes:
                        h.violate("I4", None, f"ws {label}: err code {m.get('code')}, "
                                  f"expected {sorted(codes)}")
                    return m
                if m.get("op") == "pong":
                    return m
        h.violate("I4", None, f"ws {label}: no answer")

    cases = [
        ("garbage bytes", b"\xc1\xc1\xc1", {"malformed"}),
        ("truncated msgpack", msgpack.packb({"op": "sub", "all": True})[:-2], {"malformed"}),
        ("not a map", msgpack.packb(42), {"not_a_map"}),
        ("unknown op", msgpack.packb({"op": "bogus"}), {"unknown_op"}),
        ("op of the wrong type", msgpack.packb({"op": 5}), {"bad_field"}),
        ("sub without target", msgpack.packb({"op": "sub"}), {"missing_field", "bad_field"}),
        ("sub with a bad run id", msgpack.packb({"op": "sub", "run": "bad id!"}), {"bad_field"}),
        ("unsub of nothing", msgpack.packb({"op": "unsub", "run": "never-subscribed"}),
         {"not_subscribed"}),
    ]
    try:
        async with websockets.connect(url, max_size=1 << 24, ping_interval=None) as ws:
            decode_frame(await ws.recv())  # hello
            for label, raw, codes in h.rng.sample(cases, len(cases)):
                await ws.send(raw)
                await expect(ws, codes, label)
            # a fragmented ping is one message
            p = msgpack.packb({"op": "ping", "req": 77})
            await ws.send(iter([p[:2], p[2:5], p[5:]]))
            m = await expect(ws, None, "fragmented ping")
            if not m or m.get("op") != "pong" or m.get("req") != 77:
                h.violate("I4", None, f"fragmented ping answered {m}")
            # oversize frame (> 64 KiB): err too_large, or a 1009 close
            try:
                await ws.send(msgpack.packb({"op": "ping", "pad": "p" * 70000}))
                m = await expect(ws, {"too_large"}, "oversize frame")
            except websockets.exceptions.ConnectionClosed as e:
                if not e.rcvd or e.rcvd.code not in (1009,):
                    h.violate("I4", None, f"oversize frame closed with {e.rcvd}")
                return
            await ws.send(msgpack.packb({"op": "ping", "req": 78}))
            m = await expect(ws, None, "ping after abuse")
            if not m or m.get("op") != "pong":
                h.violate("I4", None, f"connection unusable after invalid input: {m}")
        # JSON mode: invalid JSON and a binary frame on a text connection
        async with websockets.connect(url + "?format=json", ping_interval=None,
                                      compression=None) as ws:
            decode_frame(await ws.recv())
            for label, raw, codes in (("invalid JSON", '{"op": "sub", all: tru', {"malformed"}),
                                      ("JSON array", '[1, 2]', {"not_a_map"}),
                                      ("JSON unknown op", '{"op": "bogus"}', {"unknown_op"})):
                await ws.send(raw)
                await expect(ws, codes, label)
            await ws.send('{"op": "ping", "req": "j1"}')
            m = await expect(ws, None, "JSON ping")
            if not m or m.get("op") != "pong" or m.get("req") != "j1":
                h.violate("I4", None, f"JSON-mode ping answered {m}")
        # repeated abuse: closed 4400
        async with websockets.connect(url, ping_interval=None) as ws:
            await ws.recv()
            code = None
            try:
                for _ in range(64):
                    await ws.send(b"\xc1")
                    await asyncio.sleep(0.005)
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            except websockets.exceptions.ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd else 1006
            except asyncio.TimeoutError:
                code = "none"
            if code != 4400:
                h.violate("I4", None, f"repeated abuse closed with {code}, expected 4400")
        # foreign origin
        try:
            async with websockets.connect(url, origin="http://evil.example",
                                          ping_interval=None):
                h.violate("I4", None, "foreign Origin was accepted")
        except websockets.exceptions.InvalidStatusCode as e:
            if e.status_code != 403:
                h.violate("I4", None, f"foreign Origin answered {e.status_code}, expected 403")
    except (OSError, websockets.exceptions.ConnectionClosed) as e:
        if not h.in_restart():
            h.violate("I4", None, f"ws abuse connection failed: {e!r}")


# ---------------------------------------------------------------------------
# Orchestration


def in_quiet(self):
    """Near a restart: no scenario whose rejections could straddle it (the
    /metrics check needs each rejection in a known epoch)."""
    return self.restart_at is not None and self.restart_at - 4000 <= now() <= self.restart_at


async def wait_seen(self, run, seq, timeout):
    """Waits until some subscriber has received seq of run."""
    t0 = now()
    while now() - t0 < timeout * 1000:
        for s in self.subs:
            for t, kind, p in reversed(s.items[-50:]):
                if kind == "msg" and p.get("run") == run and p.get("seq", 0) >= seq:
                    return True
        await asyncio.sleep(0.05)
    return False


def in_restart(self):
    return not self.broker_up.is_set()


Harness.in_quiet = in_quiet
Harness.in_restart = in_restart
Harness.wait_seen = wait_seen

SCENARIOS = [  # (weight, name, rejects: not scheduled near a restart)
    (6, "good_push", False), (6, "good_req", False),
    (2, "kill_push", False), (2, "kill_req", False),
    (2, "hold", False), (2, "close", False),
    (1.5, "chatter", True), (2, "dups", True),
    (1, "mixed", True), (1.5, "invalid", True),
]


def run_scenario(h, name):
    kind = "req" if name.endswith("_req") or h.rng.random() < 0.4 else "push"
    if name.startswith("good"):
        return sc_good(h, kind)
    if name.startswith("kill"):
        return sc_kill(h, kind)
    if name == "hold":
        return sc_stop(h, kind, close=False)
    if name == "close":
        return sc_stop(h, kind, close=True)
    if name == "chatter":
        return sc_chatter(h, kind)
    if name == "dups":
        return sc_dups(h, kind)
    if name == "mixed":
        return sc_batch_mixed(h)
    return sc_invalid(h, kind)


async def scheduler(h, t_end):
    """Launches scenarios until t_end, at most cfg['concurrency'] at once."""
    active = set()
    counts = {}
    # every scenario once first (seeded order), so even a short run (the mock
    # self-test's 8 s) exercises each fault it must catch; then weighted
    first = [n for _, n, _ in SCENARIOS]
    h.rng.shuffle(first)
    while now() < t_end:
        active = {t for t in active if not t.done()}
        if len(active) < h.cfg["concurrency"] and h.broker_up.is_set():
            pool = [(w, n) for w, n, rej in SCENARIOS if not (rej and h.in_quiet())]
            if first and first[-1] in [n for _, n in pool]:
                name = first.pop()
            else:
                name = h.rng.choices([n for _, n in pool], [w for w, _ in pool])[0]
            counts[name] = counts.get(name, 0) + 1
            t = h.spawn(run_scenario(h, name))
            active.add(t)
            # some runs get their own subscriber (before start or late)
            if h.rng.random() < 0.25:
                h.spawn(late_run_sub(h, t))
        await asyncio.sleep(h.rng.uniform(0.02, 0.15))
    if active:
        await asyncio.wait(active, timeout=60)
    return counts


async def late_run_sub(h, task):
    """Subscribes by run to the newest run, at a random moment."""
    await asyncio.sleep(h.rng.uniform(0, 0.3))
    cands = [r for r in h.runs.values() if not r.run.startswith("inv")]
    if not cands:
        return
    rec = cands[-1]
    s = RunSub(h, rec.run)
    await s.run()


async def watcher(h):
    """I5: the broker never crashes or stalls."""
    while not h.stopping:
        b = h.broker
        if b.proc and b.proc.returncode is not None and not b.expect_exit:
            h.violate("I5", None, f"runcastd exited unexpectedly ({b.proc.returncode}):\n"
                      + b.stderr_tail())
            h.stopping = True
            return
        if h.broker_up.is_set():
            t0 = now()
            try:
                st, _ = await b.get("/healthz", timeout=h.cfg["stall_ms"] / 1000)
                if st != 200 and h.broker_up.is_set() and not b.expect_exit:
                    h.violate("I5", None, f"/healthz answered {st}")
            except Exception as e:  # noqa: BLE001
                if h.broker_up.is_set() and not b.expect_exit:
                    h.violate("I5", None, f"/healthz failed after {now() - t0} ms: {e!r}")
        await asyncio.sleep(0.5)


async def restart(h):
    """SIGTERM under load, then a restart: a new epoch."""
    b = h.broker
    old = h.epoch
    try:
        h.pre_restart_metrics = await b.metrics()
    except Exception as e:  # noqa: BLE001
        h.violate("I5", None, f"/metrics before restart failed: {e!r}")
    h.broker_up.clear()
    t_term = now()
    log("SIGTERM runcastd under load")
    rc, ms = await b.sigterm()
    if rc != 0:
        h.violate("I5", None, f"runcastd exited {rc} after SIGTERM ({ms} ms):\n"
                  + b.stderr_tail())
    elif ms > h.cfg["shutdown_ms"] + h.cfg["bound_ms"]:
        h.violate("I5", None, f"runcastd took {ms} ms to exit after SIGTERM "
                  f"(--shutdown-timeout {h.cfg['shutdown_ms']} ms)")
    rep = b.sanitizer_report()
    if rep:
        h.violate("I5", None, "sanitizer report from runcastd:\n" + rep)
    await asyncio.sleep(h.rng.uniform(0.1, 0.5))
    await b.start()
    new = await probe_epoch(h)
    t_ready = now()
    h.epoch = new
    h.restarts.append((t_term, t_ready, old, new, t_term + ms))
    h.broker_up.set()
    log(f"runcastd restarted: epoch {old} -> {new}")
    h.spawn(check_restart_seen(h, t_term, t_ready, new))
    if new == old:
        h.violate("I5", None, f"the restarted broker kept epoch {old}")


async def check_restart_seen(h, t_term, t_ready, new):
    """Subscribers connected at the SIGTERM were closed with 1001, and
    everyone who connects afterwards is greeted with the new epoch."""
    await asyncio.sleep(3)
    for s in h.steady:
        closes = [(t, p) for t, kind, p in s.trace.items
                  if kind == "close" and t_term - 50 <= t <= t_ready + 1000]
        if closes and not any(p.get("code") == 1001 for t, p in closes):
            h.violate("I5", None, f"closed with {[p.get('code') for t, p in closes]} at the "
                      f"broker's SIGTERM, expected 1001", s.trace.name)
    for s in h.subs:
        for t, kind, p in s.items:
            if kind == "hello" and t > t_ready and p.get("epoch") != new:
                h.violate("I5", None, f"hello after the restart carries epoch {p.get('epoch')}, "
                          f"not {new}", s.name)


async def probe_epoch(h):
    async with websockets.connect(h.broker.ws, ping_interval=None) as ws:
        hello = decode_frame(await asyncio.wait_for(ws.recv(), 10))[0]
        return hello.get("epoch")


def check_counters(h, ms, epoch, runs_final, terms_final, label):
    """I5: /metrics counts equal what the harness did in this epoch."""
    acc = metric(ms, "runcast_events_accepted_total")
    exp_acc = sum(n for n in runs_final.values())
    if acc is None:
        h.violate("I5", None, "/metrics has no runcast_events_accepted_total")
    elif acc != exp_acc:
        h.violate("I5", None, f"{label}: events accepted {acc:.0f}, but the runs' last seqs "
                  f"seen by subscribers add up to {exp_acc}")
    for cause in C.ALL_KINDS:
        v = metric(ms, "runcast_terminals_total", cause=cause)
        if v is None and "runcast_terminals_total" in ms:
            v = 0.0
        want = terms_final.get(cause, 0)
        if v is None:
            h.violate("I5", None, "/metrics has no runcast_terminals_total")
            break
        if v != want:
            h.violate("I5", None, f"{label}: terminals{{cause={cause}}} {v:.0f}, subscribers "
                      f"saw {want}")
    tal = h.tal(epoch)
    want_rej = {k: (n, n) for k, n in tal["rejected"].items()}
    lo, hi = h.push_run_terminal(epoch)
    n0 = tal["rejected"].get("run_terminal", 0)
    want_rej["run_terminal"] = (n0 + lo, n0 + hi)
    for code, (lo, hi) in sorted(want_rej.items()):
        v = metric(ms, "runcast_events_rejected_total", reason=code)
        if v is None and "runcast_events_rejected_total" in ms:
            v = 0.0  # the family is there, this reason never happened
        if v is None:
            h.violate("I5", None, "/metrics has no runcast_events_rejected_total")
            break
        if not lo <= v <= hi:
            h.violate("I5", None, f"{label}: events rejected{{reason={code}}} {v:.0f}, the "
                      f"harness caused {lo if lo == hi else f'{lo}..{hi}'}")
            if code == "run_terminal":
                # which runs the PUSH share comes from, to find the one that differs
                for run, (a, b) in sorted(h.push_run_terminal_by_run(epoch).items()):
                    log(f"  run_terminal expected from PUSH: {run} {a if a == b else f'{a}..{b}'}")
                    if os.environ.get("RCG_DEBUG"):
                        rec = h.runs[run]
                        log(f"    publisher pid {getattr(rec, 'pub_pid', None)}, "
                            f"delivered {h.delivered.get((epoch, run))} events "
                            f"{[(e['type'], e.get('id'), e['t']) for e in rec.events]}")
                log(f"  run_terminal answered to REQ/acked publishers: {n0}")
    series = ms.get("runcast_events_rejected_total", {})
    for lab, v in series.items():
        code = dict(lab).get("reason")
        if v and code not in want_rej:
            h.violate("I5", None, f"{label}: events rejected{{reason={code}}} {v:.0f}, the "
                      f"harness caused none")
    dup = metric(ms, "runcast_events_dup_total")
    if dup is not None and dup != tal["dup"]:
        h.violate("I5", None, f"{label}: events dup {dup:.0f}, the harness repeated "
                  f"{tal['dup']} ids")


def push_run_terminal(self, epoch):
    """PUSH events sent to a run after its terminal, each rejected
    run_terminal: (low, high).  Exact, except for runs that spanned a broker
    restart: what was sent while the broker went down may have been lost."""
    by_run = self.push_run_terminal_by_run(epoch)
    return sum(a for a, _ in by_run.values()), sum(b for _, b in by_run.values())


def push_run_terminal_by_run(self, epoch):
    """push_run_terminal's (low, high) per run, runs with none left out."""
    out = {}
    for rec in self.runs.values():
        lo = hi = 0
        if rec.path != "push" or (epoch, rec.run) not in self.delivered:
            continue
        acc = self.delivered[(epoch, rec.run)] - (1 if (epoch, rec.run) in self.synth_of else 0)
        evs = [e for e in rec.events if e["path"] == "push"]
        if rec.spans_restart:
            r = [x for x in self.restarts if x[3] == epoch]
            if not r:
                continue
            t_term, t_ready, t_exit = r[0][0], r[0][1], r[0][4]
            # sure to arrive: sent once the broker was back over a connection
            # made after the old one exited; until the publisher notices
            # that its old connection died, a send can still go into it
            # a repeated id whose first copy is in the same set is answered
            # `dup` (counted apart), never run_terminal: not in the low
            # bound; the high bound keeps it (if the first copy was itself
            # rejected, the id is unknown and the repeat is run_terminal too)
            sure = [e for e in evs if e["t"] > t_ready and e.get("pipe_t", t_exit) >= t_exit]
            sure_ids = [e["id"] for e in sure if e.get("id") is not None]
            lo += max(0, len(sure) - (len(sure_ids) - len(set(sure_ids))) - acc)
            hi += max(0, len([e for e in evs if e["t"] >= t_term - 50]) - acc)
            if hi:
                out[rec.run] = (lo, hi)
            continue
        ids = [e["id"] for e in evs if e.get("id") is not None]
        n = len(evs) - (len(ids) - len(set(ids))) - acc
        tail = 0
        if rec.lossy_tail and rec.killed_at:
            # still in the SIGKILLed publisher's buffers: maybe never read
            tail = min(n, len([e for e in evs if e["t"] >= rec.killed_at - 100]))
        # after a restart, a publisher may send into its connection to the
        # old broker before noticing it died (seen: a run's `start`, sent
        # 100 ms after the new broker came up, lost that way): such sends
        # are not sure to arrive either
        unsure = 0
        r = [x for x in self.restarts if x[3] == epoch]
        if r:
            unsure = len([e for e in evs if e.get("pipe_t", r[0][4]) < r[0][4]])
        lo += max(0, n - tail - unsure)
        hi += n
        if hi:
            out[rec.run] = (lo, hi)
    return out


Harness.push_run_terminal = push_run_terminal
Harness.push_run_terminal_by_run = push_run_terminal_by_run


def push_count_self_test():
    """push_run_terminal_by_run on the shapes that once miscounted."""
    import types
    T = 1_000_000
    ep0, ep1 = 1, 2
    restarts = [(T, T + 500, None, ep1, T + 400)]  # (t_term, t_ready, _, epoch, t_exit)

    def dups_run(name, first_t, spans):
        rec = C.RunRecord(name, "dups")
        rec.first_t = first_t
        rec.spans_restart = spans
        pipe_t = T + 450  # a connection made after the old broker exited
        for i, (typ, eid) in enumerate([("start", None), ("delta", "d0"), ("delta", "d1"),
                                        ("delta", "d1"), ("delta", None), ("complete", "t")]):
            rec.events.append({"type": typ, "id": eid, "t": first_t + i, "path": "push",
                               "pipe_t": pipe_t})
        return rec

    cases = [
        # started right after the restart (spans it by the checker's margin):
        # the repeated d1 is a dup, so no run_terminal is sure; at most one
        ("restart-spanning run with a repeated id", dups_run("a", T + 600, True), (0, 1)),
        ("run with a repeated id", dups_run("b", T + 5000, False), (0, 0)),
    ]
    n_fail = 0
    for name, rec, want in cases:
        fake = types.SimpleNamespace(runs={rec.run: rec}, delivered={(ep1, rec.run): 5},
                                     synth_of=set(), restarts=restarts)
        got = push_run_terminal_by_run(fake, ep1).get(rec.run, (0, 0))
        ok = got == want
        n_fail += not ok
        print(f"{'ok ' if ok else 'FAIL'} push count: {name}: expected {want}, got {got}")
    print(f"push count self-test: {len(cases) - n_fail} passed, {n_fail} failed")
    return 1 if n_fail else 0


async def get_runs(h):
    try:
        st, body = await h.broker.get(f"/runs?limit={h.cfg['runs_limit']}", timeout=10)
        lst = json.loads(body)
    except Exception as e:  # noqa: BLE001
        h.violate("I5", None, f"GET /runs failed: {e!r}")
        return {}
    if isinstance(lst, dict):
        lst = lst.get("runs", [])
    return {x.get("run"): x for x in lst if isinstance(x, dict)}


def check_runs_api(h, got):
    """GET /runs (taken once every run had ended, before the tombstones
    expired) agrees with what the subscribers saw: last seq and status."""
    for (e, rid), n in h.delivered.items():
        if e != h.epoch or rid not in h.runs:
            continue
        x = got.get(rid)
        if x is None:
            continue  # tombstone already expired
        elif x.get("seq") != n:
            h.violate("I5", rid, f"GET /runs says seq {x.get('seq')}, subscribers saw up to {n}")
        elif x.get("status") not in ("completed", "failed"):
            h.violate("I5", rid, f"GET /runs says status {x.get('status')} after the terminal")


def mem_of(h, ms):
    for name in ("runcast_memory_allocated_bytes", "runcast_jemalloc_allocated_bytes"):
        v = metric(ms, name)
        if v:
            return v, name
    try:
        with open(f"/proc/{h.broker.proc.pid}/status") as f:
            m = re.search(r"VmRSS:\s+(\d+) kB", f.read())
            return int(m.group(1)) * 1024, "VmRSS"
    except (OSError, AttributeError):
        return None, None


def print_trace(h, rid, max_lines=200):
    rec = h.runs.get(rid)
    print(f"---- run {rid}" + (f" ({rec.scenario}, {rec.path}, conv {rec.conv}, expected "
                                 f"{sorted(rec.kinds)}, timeout {rec.timeout_ms} ms, deadline "
                                 f"{rec.deadline_ms} ms)" if rec else ""))

    def clip(lines):
        if h.args.full_traces or len(lines) <= max_lines:
            return lines
        half = max_lines // 2
        return lines[:half] + [f"    ... {len(lines) - 2 * half} lines ..."] + lines[-half:]

    if rec:
        print("  publisher:")
        print("\n".join(clip([f"    {t} {text}" for t, text in rec.log])))
    for s in h.subs:
        mine = [i for i, (t, kind, p) in enumerate(s.items)
                if kind == "msg" and p.get("run") == rid]
        if not mine:
            continue
        lines = []
        for t, kind, p in s.items[mine[0]: mine[-1] + 2]:
            if kind == "msg" and p.get("run") == rid:
                q = {k: v for k, v in p.items() if k not in ("text", "thinking", "output")}
                if "terminal" in q:
                    q["terminal"] = {k: v for k, v in q["terminal"].items() if k != "text"}
                lines.append(f"    {t} {json.dumps(q, default=repr)[:300]}")
            elif kind in ("hello", "close", "subscribed"):
                lines.append(f"    {t} <{kind} {json.dumps(p, default=repr)[:100]}>")
            elif kind == "resume":
                since = p.get("since") or {}
                lines.append(f"    {t} <resume epoch {p.get('epoch')} since[{rid}]="
                             f"{since.get(rid)}>")
        print(f"  subscriber {s.name}:")
        print("\n".join(clip(lines)))


async def main_async(args):
    h = Harness(args)
    exe = find_binary("runcastd", args.runcastd)
    h.chaos_exe = find_binary("rc_chaos_pub", args.chaos_pub)
    if not exe or not h.chaos_exe:
        print(f"runcastd ({exe}) or rc_chaos_pub ({h.chaos_exe}) not found: set RC_BINARY_DIR "
              "or pass --runcastd / --chaos-pub")
        return 2
    san = sanitized_build(exe)
    scale = args.scale or (2.5 if san else 1.0)
    h.cfg = {
        "watchdog_ms": int(600 * scale), "grace_ms": int(150 * scale),
        "deadline_ms": int(2500 * scale), "retention_ms": 3000, "scale": scale,
        "tombstone_ms": 4000,
        "tick_ms": 10, "shutdown_ms": 3000, "ws_queue_max": "1MiB", "history_max": "768KiB",
        "bound_ms": args.bound_ms or (4000 if san else 1500),
        "stall_ms": 20000 if san else 5000, "req_timeout_ms": 5000,
        "concurrency": args.concurrency or (4 if san else 6), "sanitized": san,
        "race_ms": 600 if san else 250, "runs_limit": 100000,
        # an upper bound: chaos_pub returns as soon as the last write completed
        "linger_ms": 4000 if san else 2000,
        # per-run overrides (in `start`) for runs whose expected terminal is
        # not the watchdog / the deadline: seconds of margin against stalls
        "long_idle_ms": int(5000 * scale), "long_deadline_ms": int(20000 * scale),
        "firehose_batches": 28 if args.light else 96,
    }
    h.delivered = {}  # (epoch, run) -> events accepted (its last seq, synthetic included)
    h.synth_of = set()  # (epoch, run) ended by a synthesized terminal
    logdir = args.logdir or os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                         f"rc-guarantee-{os.getpid()}")
    os.makedirs(logdir, exist_ok=True)
    log(f"seed {h.seed}  duration {args.duration} s  runcastd {exe}"
        f"{' (sanitized)' if san else ''}  logs {logdir}")
    h.broker = Broker(h, exe, logdir)
    await h.broker.start()
    h.epoch = await probe_epoch(h)
    h.broker_up.set()
    await asyncio.sleep(0.3)
    base_ms = await h.broker.metrics()
    base_mem, mem_name = mem_of(h, base_ms)
    log(f"runcastd up, epoch {h.epoch}, {mem_name} {base_mem}")

    h.spawn(watcher(h))
    steady = [Subscriber(h, "all-mp", "all"), Subscriber(h, "all-json", "all", fmt="json"),
              Subscriber(h, "conv-c0", "conv", "c0"), Subscriber(h, "conv-c1", "conv", "c1",
                                                                   fmt="json")]
    droppers = [Subscriber(h, "drop-all", "all", drops=True),
                Subscriber(h, "drop-c2", "conv", "c2", drops=True, fmt="json")]
    h.steady = steady
    for s in steady + droppers:
        h.spawn(s.run())
    for s in steady + droppers:
        await asyncio.wait_for(s.subscribed.wait(), 10)

    t0 = now()
    dur = args.duration * 1000
    t_end = t0 + dur
    n_restarts = 0 if args.no_restart else (args.restarts if args.restarts is not None else
                                             max(1, int(args.duration // 600)))
    restart_times = [t0 + int(dur * (0.6 if n_restarts == 1 else (i + 1) / (n_restarts + 1)))
                     for i in range(n_restarts)]
    h.restart_at = restart_times[0] if restart_times else None
    sched = h.spawn(scheduler(h, t_end))
    specials = [(0.25, ws_abuse), (0.35, sc_retention_resume), (0.8, ws_abuse)]
    if not args.no_firehose:
        specials.append((0.15, sc_firehose_slow))
    for frac, fn in specials:
        async def later(frac=frac, fn=fn):
            await asyncio.sleep(dur * frac / 1000)
            await fn(h)
        h.spawn(later())
    for i, t_r in enumerate(restart_times):
        h.restart_at = t_r
        await asyncio.sleep(max(0, t_r - now()) / 1000)
        await restart(h)
        if i + 1 < len(restart_times):
            h.restart_at = restart_times[i + 1]
    counts = await sched
    log(f"load done: {sum(counts.values())} scenarios {counts}")
    # drain: wait until every run has ended at the all-subscribers (runs
    # lost with the restarted broker's state never do: bounded wait)
    t_drain = now() + h.cfg["deadline_ms"] + 2 * h.cfg["bound_ms"]
    while now() < t_drain:
        ended = {r for s in steady[:2] for (e, r) in s.ended}
        if all(rid in ended for rid, rec in h.runs.items() if rec.events):
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)
    # let retention and the tombstones expire: every run retired, then measure
    await asyncio.sleep((h.cfg["retention_ms"] + 1500) / 1000)
    mid_ms = await h.broker.metrics()
    h.mid_runs = await get_runs(h)
    await asyncio.sleep(h.cfg["tombstone_ms"] / 1000)

    for s in steady + droppers:
        s.stop = True
    await asyncio.sleep(0.5)
    for s in steady + droppers:
        s.trace.ended_at = s.trace.ended_at or now()

    violations = C.check(h.runs, h.subs, {"bound_ms": h.cfg["bound_ms"],
                                          "tick_ms": max(h.cfg["tick_ms"] * 3, 30),
                                          "restarts": h.restarts,
                                          "race_ms": h.cfg["race_ms"]})
    # events the broker accepted per (epoch, run): the highest seq any
    # subscriber learnt (ev or snap), less a synthesized terminal
    canon = {}
    for s in h.subs:
        for t, kind, p in s.items:
            if kind == "msg" and p.get("op") in ("ev", "snap"):
                key = (p.get("epoch"), p.get("run"))
                canon[key] = max(canon.get(key, 0), p.get("seq", 0))
                tm = p if p.get("op") == "ev" else (p.get("terminal") or {})
                if tm.get("synthetic"):
                    h.synth_of.add(key)
    for key, n in canon.items():
        h.delivered[key] = n
        if key[1] not in h.runs:
            h.violate("I4", key[1], f"events delivered for a run the harness never "
                      f"published validly (epoch {key[0]})")
    final_ms = await h.broker.metrics()
    runs_final = {k[1]: n for k, n in h.delivered.items() if k[0] == h.epoch}
    terms = {}
    seen_t = set()
    for s in h.subs:
        for t, kind, p in s.items:
            if kind != "msg":
                continue
            tm = p if (p.get("op") == "ev" and p.get("type") in C.TERMINAL_TYPES) else \
                (p.get("terminal") if p.get("op") == "snap" else None)
            if tm and tm.get("epoch", p.get("epoch")) == h.epoch:
                key = tm.get("run")
                if key not in seen_t:
                    seen_t.add(key)
                    k = C.term_kind(tm)
                    terms[k] = terms.get(k, 0) + 1
            if tm and tm.get("run"):
                h.ended_by.setdefault(tm["run"], C.term_kind(tm))
    if h.ambiguous:
        # runs where the harness's own stalls made a second terminal cause
        # plausible (note_gaps): accepted, counted, never a failure
        won = sum(1 for rid, kind, _ in h.ambiguous if h.ended_by.get(rid) == kind)
        log(f"timing: {len(h.ambiguous)} run(s) where observed harness gaps made a second "
            f"terminal cause plausible (both accepted); {won} ended by it: " +
            ", ".join(f"{rid} +{kind} ({why})" for rid, kind, why in h.ambiguous[:8]) +
            (" ..." if len(h.ambiguous) > 8 else ""))
    else:
        log("timing: no run came within the race margin of a second terminal cause")
    check_counters(h, final_ms, h.epoch, runs_final, terms, f"epoch {h.epoch}")
    check_runs_api(h, h.mid_runs)
    for name in ("runcast_history_bytes", "runcast_history_events"):
        v = metric(mid_ms, name)
        if v:
            h.violate("I5", None, f"{name} is {v:.0f} after every run's retention expired")
    for name, lab in (("runcast_runs", {"status": "pending"}),
                      ("runcast_runs", {"status": "running"}), ("runcast_runs_active", {}),
                      ("runcast_runs_retained", {}), ("runcast_runs_tombstoned", {})):
        v = metric(final_ms, name, **lab)
        if v:
            h.violate("I5", None, f"{name}{lab or ''} is {v:.0f} after every run's tombstone "
                      "expired")
    for status, causes in (("completed", ("complete",)),
                           ("failed", ("error",) + C.SYNTH_KINDS)):
        v = metric(final_ms, "runcast_runs", status=status)
        want = sum(terms.get(c, 0) for c in causes)
        if v is not None and v != want:
            h.violate("I5", None, f"runcast_runs{{status={status}}} {v:.0f}, subscribers saw "
                      f"{want} such terminals")
    mem, _ = mem_of(h, final_ms)
    n_runs = len(h.runs)
    if base_mem and mem and not san:
        slack = 4 * 1024 * 1024
        log(f"memory ({mem_name}): start {base_mem / 2**20:.1f} MiB, after every run retired "
            f"{mem / 2**20:.1f} MiB ({n_runs} runs)")
        if mem > base_mem + slack and mem_name != "VmRSS":  # RSS rarely shrinks
            h.violate("I5", None, f"memory did not return: {mem_name} {mem} bytes after all "
                      f"runs retired, {base_mem} at start (slack {slack})")
    h.stopping = True
    rc, ms = await h.broker.sigterm()
    if rc != 0:
        h.violate("I5", None, f"runcastd exited {rc} at the end:\n" + h.broker.stderr_tail())
    rep = h.broker.sanitizer_report()
    if rep:
        h.violate("I5", None, "sanitizer report from runcastd:\n" + rep)
    for t in list(h.tasks):
        t.cancel()

    violations = h.violations + violations
    n_ev = sum(h.delivered.values())
    log(f"{n_runs} runs, {n_ev} events delivered (union), {len(h.subs)} subscribers, "
        f"restarts {len(h.restarts)}")
    if not violations:
        log(f"OK: every invariant held (seed {h.seed})")
        return 0
    print(f"\n==== {len(violations)} VIOLATION(S), seed {h.seed} ====")
    for v in violations:
        print(v)
    shown = []
    for v in violations:
        if v.run and v.run not in shown and len(shown) < 10:
            shown.append(v.run)
            print_trace(h, v.run)
    print(f"==== seed {h.seed}; broker logs in {logdir} ====")
    return 1


# (bug injected into mock_broker.py, invariants of which at least one must fire)
MOCK_CASES = [
    (None, None),
    ("dup-terminal", {"I1", "I2"}),
    ("no-watchdog", {"I1"}),
    ("early-watchdog", {"I3"}),
    ("drop-event", {"I2", "I4"}),
    ("resume-dup", {"I2"}),
    ("wrong-code", {"I4", "I5"}),
    ("count-off", {"I5"}),
]


async def mock_self_test(args):
    """The harness against mock_broker.py: clean it must pass; with each
    injected bug it must fail on the right invariant."""
    here = os.path.dirname(os.path.abspath(__file__))
    mock = os.path.join(here, "mock_broker.py")
    chaos = find_binary("rc_chaos_pub", args.chaos_pub)
    if not chaos:
        print("rc_chaos_pub not found: set RC_BINARY_DIR or pass --chaos-pub")
        return 2
    sem = asyncio.Semaphore(4)
    results = []

    async def one(bug, want):
        async with sem:
            env = dict(os.environ)
            env.pop("RC_MOCK_BUG", None)
            if bug:
                env["RC_MOCK_BUG"] = bug
            # the firehose and slow consumer need a broker faster than the mock
            extra = ["--duration", "10" if bug is None else "8", "--no-firehose"]
            p = await asyncio.create_subprocess_exec(
                sys.executable, os.path.abspath(__file__), "--runcastd", mock, "--chaos-pub",
                chaos, "--seed", str(args.seed), *extra, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await p.communicate()
            text = out.decode(errors="replace")
            found = set(re.findall(r"^\[(I\d)\]", text, re.M))
            if want is None:
                ok = p.returncode == 0
            else:
                ok = p.returncode == 1 and bool(found & want)
            print(f"{'ok ' if ok else 'FAIL'} mock bug {bug or '(none)'}: exit {p.returncode}, "
                  f"violations {sorted(found)}, expected "
                  f"{'none' if want is None else 'one of ' + str(sorted(want))}", flush=True)
            if not ok:
                print("\n".join(text.splitlines()[:80]))
            results.append(ok)

    await one(*MOCK_CASES[0])  # alone: the Python mock is timing-sensitive
    await asyncio.gather(*(one(b, w) for b, w in MOCK_CASES[1:]))
    n_fail = results.count(False)
    print(f"harness self-test: {len(results) - n_fail} passed, {n_fail} failed")
    return 1 if n_fail else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--duration", type=float, default=None, help="seconds of load")
    ap.add_argument("--short", action="store_true", help="the CI form (about a minute)")
    ap.add_argument("--self-test", action="store_true",
                    help="the invariant checker against synthetic traces")
    ap.add_argument("--mock-self-test", action="store_true",
                    help="the harness against mock_broker.py, clean and with injected bugs")
    ap.add_argument("--runcastd")
    ap.add_argument("--chaos-pub")
    ap.add_argument("--logdir")
    ap.add_argument("--bound-ms", type=int, default=None,
                    help="slack on every timing bound (default 1500, 4000 sanitized)")
    ap.add_argument("--concurrency", type=int, default=None)
    ap.add_argument("--scale", type=float, default=None,
                    help="stretch every timeout (default 1, 2.5 in sanitizer builds)")
    ap.add_argument("--full-traces", action="store_true",
                    help="print offending traces whole (default: first and last 100 lines)")
    ap.add_argument("--no-restart", action="store_true", help="never restart the broker")
    ap.add_argument("--restarts", type=int, default=None,
                    help="broker restarts during the load (default 1, or one per 10 minutes)")
    ap.add_argument("--no-firehose", action="store_true",
                    help="leave out the firehose and its slow consumer")
    ap.add_argument("--light", action="store_true",
                    help="a smaller firehose (for the Python mock broker)")
    args = ap.parse_args()
    if args.self_test:
        import rcg_selftest
        return rcg_selftest.main() or push_count_self_test()
    if args.seed is None:
        env = os.environ.get("RC_GUARANTEE_SEED")
        args.seed = int(env) if env else random.SystemRandom().randrange(1, 1 << 31)
    if args.mock_self_test:
        return asyncio.run(mock_self_test(args))
    if args.duration is None:
        args.duration = 45 if args.short else 45
    # cancelled websockets tasks at exit are expected; their GC warnings are noise
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
