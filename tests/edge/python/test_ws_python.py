#!/usr/bin/python3
"""Third-party client test of the edge: Python `websockets` + `msgpack`
(Debian python3-websockets, python3-msgpack) against a real runcastd.

Publishes with the `runcast pub` CLI (acknowledged, so every event has its
seq before the test goes on).  Run by CTest with RC_BINARY_DIR set; exits
non-zero on the first failure.
"""
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

try:
    import msgpack
    import websockets
except ImportError as e:  # not Debian's python3 or packages missing: skip
    print(f"skipping: {e} (needs python3-websockets and python3-msgpack)")
    sys.exit(77)

BIN = os.environ.get("RC_BINARY_DIR", ".")
RUNCASTD = os.path.join(BIN, "broker", "runcastd")
RUNCAST = os.path.join(BIN, "client", "runcast")
T = 5.0  # seconds: the longest one message may take


LISTENING = re.compile(rb"runcastd listening: ingest tcp://127\.0\.0\.1:(\d+), "
                       rb"ingest-ack tcp://127\.0\.0\.1:(\d+), http 127\.0\.0\.1:(\d+)")


class Broker:
    """runcastd on ports it picks itself (port 0, read back from its
    "runcastd listening" line), so that tests run side by side (ctest -j)
    never race for a port; a restart asks for the same ports again."""

    def __init__(self, extra=()):
        self.http = self.pull = self.rep = 0
        self.extra = list(extra)
        self.proc = None

    def start(self):
        # a restart's ports were ours a moment ago; another process may
        # still take one in between: retry a few times before giving up
        for _ in range(20):
            if self.spawn():
                return
            time.sleep(0.25)
        raise RuntimeError("runcastd did not start")

    def spawn(self):
        args = [RUNCASTD, "--http", f"127.0.0.1:{self.http}",
                "--ingest", f"tcp://127.0.0.1:{self.pull}",
                "--ingest-ack", f"tcp://127.0.0.1:{self.rep}",
                "--log-level", "error", "--shutdown-timeout", "2s"] + self.extra
        out = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, stdout=out)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                return False
            out.seek(0)
            m = LISTENING.search(out.read())
            if m:
                self.pull, self.rep, self.http = (int(g) for g in m.groups())
                break
            time.sleep(0.05)
        while time.time() < deadline:
            try:
                st, _ = self.get("/healthz")
                if st == 200:
                    return True
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError("runcastd did not become healthy")

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def get(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def publish(self, *events):
        lines = "".join(json.dumps(e) + "\n" for e in events)
        r = subprocess.run([RUNCAST, "pub", "--file", "-", "--ack",
                            "--ingest-ack", f"tcp://127.0.0.1:{self.rep}",
                            "--ingest", f"tcp://127.0.0.1:{self.pull}"],
                           input=lines.encode(), capture_output=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"runcast pub failed: {r.returncode} {r.stderr.decode()}")

    def url(self, q=""):
        return f"ws://127.0.0.1:{self.http}/ws{q}"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


async def recv(ws, timeout=T):
    """Next server message (array frames are flattened by the caller)."""
    m = await asyncio.wait_for(ws.recv(), timeout)
    return msgpack.unpackb(m, raw=False) if isinstance(m, bytes) else json.loads(m)


class Conn:
    """A subscriber: flattens coalesced array frames into single messages."""

    def __init__(self, ws):
        self.ws = ws
        self.pending = []

    async def next(self, timeout=T):
        while not self.pending:
            v = await recv(self.ws, timeout)
            self.pending = list(v) if isinstance(v, list) else [v]
        return self.pending.pop(0)

    async def quiet(self, timeout=0.3):
        try:
            v = await self.next(timeout)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected message {v}")

    async def send(self, msg):
        await self.ws.send(msgpack.packb(msg))

    async def request(self, msg):
        await self.send(msg)
        r = await self.next()
        check(r.get("op") == "ok", f"reply to {msg}: {r}")


async def connect(b, q="", **kw):
    ws = await websockets.connect(b.url(q), ping_interval=None, **kw)
    c = Conn(ws)
    h = await c.next()
    check(h["op"] == "hello", f"hello: {h}")
    return c, h


async def test_subscribe_run_conv_all(b):
    b.publish({"run": "p1", "conv": "pc", "type": "start"})
    cr, _ = await connect(b)
    cc, _ = await connect(b)
    ca, _ = await connect(b)
    await cr.request({"op": "sub", "run": "p1", "snapshot": False})
    await cc.request({"op": "sub", "conv": "pc"})
    s = await cc.next()
    check(s["op"] == "snap" and s["run"] == "p1", f"conv snap: {s}")
    await ca.request({"op": "sub", "all": True, "snapshot": False})
    b.publish({"run": "p1", "type": "delta", "text": "x"},
              {"run": "p2", "conv": "pc", "type": "start"},
              {"run": "p3", "type": "start"})
    ev = await cr.next()
    check(ev["op"] == "ev" and ev["run"] == "p1" and ev["seq"] == 2, f"run sub: {ev}")
    await cr.quiet()
    # p2 joined the conversation later: its start as ev#1 (or a snap at seq 1)
    got = {(m["run"], m["seq"]) for m in [await cc.next() for _ in range(2)]}
    check(got == {("p1", 2), ("p2", 1)}, f"conv sub: {got}")
    await cc.quiet()
    got = {(await ca.next())["run"] for _ in range(3)}
    check(got == {"p1", "p2", "p3"}, f"all sub: {got}")
    for c in (cr, cc, ca):
        await c.ws.close()


async def test_snapshot(b):
    b.publish({"run": "sn", "type": "start"},
              {"run": "sn", "type": "phase", "phase": "verify"},
              {"run": "sn", "type": "thinking", "text": "hm"},
              {"run": "sn", "type": "verification", "item": {"id": "v1", "status": "ok"}})
    c, _ = await connect(b)
    await c.request({"op": "sub", "run": "sn"})
    s = await c.next()
    check(s["op"] == "snap" and s["seq"] == 4, f"snap: {s}")
    check(s["phase"] == "verify" and s["thinking"] == "hm", f"snap: {s}")
    check(s["verification"][0]["id"] == "v1", f"snap: {s}")
    await c.ws.close()


async def test_resume_exact(b, epoch):
    b.publish({"run": "re", "type": "start"}, {"run": "re", "type": "delta", "text": "1"})
    c, _ = await connect(b)
    await c.request({"op": "sub", "run": "re", "since": 0, "epoch": epoch})
    check([(await c.next())["seq"] for _ in range(2)] == [1, 2], "replay")
    c.ws.transport.abort()  # abrupt: no close frame
    b.publish(*[{"run": "re", "type": "delta", "text": str(i)} for i in range(5)])
    c, _ = await connect(b)
    await c.request({"op": "sub", "run": "re", "since": 2, "epoch": epoch})
    seqs = [(await c.next())["seq"] for _ in range(5)]
    check(seqs == [3, 4, 5, 6, 7], f"resume: {seqs}")
    b.publish({"run": "re", "type": "delta", "text": "live"})
    check((await c.next())["seq"] == 8, "live after resume")
    await c.quiet()
    await c.ws.close()


async def test_resume_gap(b, epoch):
    b.publish({"run": "gp", "type": "start"},
              *[{"run": "gp", "type": "delta", "text": str(i)} for i in range(19)])
    c, _ = await connect(b)
    await c.request({"op": "sub", "run": "gp", "since": 1, "epoch": epoch})
    g = await c.next()
    check(g["op"] == "gap" and g["from"] == 2 and g["to"] == 15, f"gap: {g}")
    s = await c.next()
    check(s["op"] == "snap" and s["seq"] == 20, f"snap after gap: {s}")
    await c.ws.close()


async def test_terminal_once(b):
    cs = []
    for sub in ({"run": "tt"}, {"conv": "tc"}, {"all": True}):
        c, _ = await connect(b)
        await c.request(dict(op="sub", snapshot=False, **sub))
        cs.append(c)
    b.publish({"run": "tt", "conv": "tc", "type": "start", "timeouts": {"*": 300}})
    # no more events: the run's watchdog (300 ms) synthesizes the terminal
    for c in cs:
        terms = 0
        syn = None
        try:
            while True:
                v = await c.next(1.5)
                if v["op"] == "ev" and v["run"] == "tt" and v["type"] in ("complete", "error"):
                    terms += 1
                    syn = v.get("synthetic")
        except asyncio.TimeoutError:
            pass
        check(terms == 1 and syn is True, f"terminal once: {terms} {syn}")
        await c.ws.close()


async def test_slow_consumer(b):
    slow, _ = await connect(b, max_queue=1, read_limit=2**16)
    fast, _ = await connect(b)
    await slow.request({"op": "sub", "run": "sl", "snapshot": False})
    await fast.request({"op": "sub", "run": "sl", "snapshot": False})
    text = "y" * 4000
    n = 3000

    seqs = []

    async def fast_reader():
        while len(seqs) < n + 1:
            v = await fast.next(20)
            check(v["op"] == "ev", f"fast subscriber: {v}")
            seqs.append(v["seq"])
        return seqs

    reader = asyncio.ensure_future(fast_reader())
    loop = asyncio.get_event_loop()
    await loop.run_in_executor(None, lambda: b.publish({"run": "sl", "type": "start"}))
    # Publish in chunks paced on the fast subscriber, so its backlog stays one
    # chunk (~820 KB, under --ws-queue-max 1MiB) however slowly this machine
    # runs Python or a sanitizer build; the slow one never reads, so its
    # backlog still passes the bound.
    chunk, sent = 200, 1
    for i in range(0, n, chunk):
        k = min(chunk, n - i)
        await loop.run_in_executor(
            None, lambda k=k: b.publish(*[{"run": "sl", "type": "delta", "text": text}] * k))
        sent += k
        deadline = loop.time() + 20
        while len(seqs) < sent and not reader.done() and loop.time() < deadline:
            await asyncio.sleep(0.005)
    seqs = await reader
    check(seqs == list(range(1, n + 2)), "the fast subscriber got everything in order")
    # the slow one: in order, then err slow_consumer, then close 4008
    last, err = 0, False
    try:
        while True:
            v = await slow.next()
            if v["op"] == "ev":
                check(v["seq"] == last + 1 and not err, f"slow order {v['seq']} after {last}")
                last = v["seq"]
            elif v["op"] == "err":
                check(v["code"] == "slow_consumer", f"err: {v}")
                err = True
    except websockets.exceptions.ConnectionClosed as e:
        check(e.code == 4008, f"close code {e.code}")
    check(err, "a final err frame")
    check(last < n + 1, "the slow one did not get everything")


async def test_json_mode(b):
    ws = await websockets.connect(b.url("?format=json"), ping_interval=None)
    h = await asyncio.wait_for(ws.recv(), T)
    check(isinstance(h, str) and json.loads(h)["op"] == "hello", f"json hello {h!r}")
    await ws.send(json.dumps({"op": "sub", "run": "js", "req": "r1"}))
    ok = json.loads(await asyncio.wait_for(ws.recv(), T))
    check(ok == {"op": "ok", "req": "r1"}, f"json ok {ok}")
    b.publish({"run": "js", "type": "start", "data": {"n": [1, 2.5, None]}})
    ev = json.loads(await asyncio.wait_for(ws.recv(), T))
    check(ev["op"] == "ev" and ev["data"] == {"n": [1, 2.5, None]}, f"json ev {ev}")
    await ws.close()


async def test_bad_origin_and_garbage(b):
    try:
        await websockets.connect(b.url(), origin="http://evil.example", ping_interval=None)
        raise AssertionError("a foreign Origin was accepted")
    except websockets.exceptions.InvalidStatusCode as e:
        check(e.status_code == 403, f"status {e.status_code}")
    ws = await websockets.connect(b.url(), origin="http://localhost:8080", ping_interval=None)
    c = Conn(ws)
    await c.next()
    await ws.send(b"\xc1")
    e = await c.next()
    check(e["op"] == "err" and e["code"] == "malformed", f"garbage: {e}")
    await ws.send(b"\x00" * (70 * 1024))
    e = await c.next()
    check(e["op"] == "err" and e["code"] == "too_large", f"oversize: {e}")
    # a fragmented message (websockets sends an iterable as fragments)
    packed = msgpack.packb({"op": "ping", "req": 5})
    await ws.send([packed[:2], packed[2:5], packed[5:]])
    p = await c.next()
    check(p == {"op": "pong", "req": 5}, f"fragmented ping: {p}")
    await ws.close()


def metric(text, name):
    for line in text.splitlines():
        if not line.startswith("#") and line.rsplit(" ", 1)[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_metrics(b):
    st, before = b.get("/metrics")
    check(st == 200, "metrics status")
    c, _ = await connect(b)
    await c.request({"op": "sub", "run": "mt", "snapshot": False})
    b.publish({"run": "mt", "type": "start"}, {"run": "mt", "type": "complete"})
    for _ in range(2):
        await c.next()
    # counters move when a write completes, maybe just after the client read it
    for _ in range(200):
        st, after = b.get("/metrics")
        if (metric(after, "runcast_fanout_latency_seconds_count")
                - metric(before, "runcast_fanout_latency_seconds_count")) >= 2:
            break
        await asyncio.sleep(0.01)
    check(metric(after, "runcast_ws_connections") >= 1, "connections gauge")
    d = metric(after, "runcast_ws_sub_requests_total") - metric(before, "runcast_ws_sub_requests_total")
    check(d == 1, f"sub requests +{d}")
    d = (metric(after, "runcast_fanout_latency_seconds_count")
         - metric(before, "runcast_fanout_latency_seconds_count"))
    check(d == 2, f"latency samples +{d}")
    d = (metric(after, 'runcast_terminals_total{cause="complete"}')
         - metric(before, 'runcast_terminals_total{cause="complete"}'))
    check(d == 1, f"complete terminals +{d}")
    await c.ws.close()
    st, body = b.get("/runs/mt")
    check(st == 200 and json.loads(body)["status"] == "completed", f"/runs/mt {st} {body}")
    st, body = b.get("/runs?status=bogus")
    check(st == 400 and "error" in json.loads(body), f"bad query {st}")


async def test_restart(b):
    b.publish({"run": "rs", "type": "start"}, {"run": "rs", "type": "delta", "text": "a"})
    _, h = await connect(b)
    old = h["epoch"]
    b.stop()
    b.start()
    b.publish({"run": "rs", "type": "start"})
    c, h = await connect(b)
    check(h["epoch"] != old, "a new epoch after restart")
    await c.request({"op": "sub", "run": "rs", "since": 2, "epoch": old})
    s = await c.next()
    check(s["op"] == "snap" and s["epoch"] == h["epoch"] and s["seq"] == 1, f"restart snap {s}")
    await c.ws.close()


async def main():
    # --ws-write-timeout 120s: the slow-consumer test's reader never reads,
    # and its publishing is paced on the fast reader (slow under a sanitizer
    # build): the queue bound (4008) must come before the write timeout.
    b = Broker(["--watchdog-tick", "10ms", "--history-max-events", "5",
                "--ws-queue-max", "1MiB", "--ws-write-timeout", "120s"])
    b.start()
    try:
        _, h = await connect(b)
        epoch = h["epoch"]
        tests = [
            ("subscribe by run, conv, all", lambda: test_subscribe_run_conv_all(b)),
            ("snapshot", lambda: test_snapshot(b)),
            ("resume exact", lambda: test_resume_exact(b, epoch)),
            ("resume gap", lambda: test_resume_gap(b, epoch)),
            ("terminal once (synthesized)", lambda: test_terminal_once(b)),
            ("json mode", lambda: test_json_mode(b)),
            ("bad origin and garbage", lambda: test_bad_origin_and_garbage(b)),
            ("metrics and http", lambda: test_metrics(b)),
            ("slow consumer", lambda: test_slow_consumer(b)),
            ("restart", lambda: test_restart(b)),
        ]
        for name, t in tests:
            t0 = time.time()
            print(f"run  {name}", flush=True)
            await t()
            print(f"ok   {name} ({time.time() - t0:.2f}s)", flush=True)
    finally:
        b.stop()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # report and fail
        import traceback
        traceback.print_exc()
        print(f"FAIL {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
