#!/usr/bin/python3
"""A small stand-in for runcastd, used only to test the guarantee harness
itself (`guarantee.py --runcastd tests/guarantee/mock_broker.py`).

It speaks the same wire protocol (SP over TCP for PULL and REP, WebSocket with
msgpack or JSON frames, /healthz, /metrics) with the same options, in one
asyncio loop.  `--bug NAME` injects one broker fault, so the harness can be
shown to catch it:

  dup-terminal     a synthesized terminal is emitted twice
  no-watchdog      runs that go silent never end
  early-watchdog   the watchdog fires at half the idle timeout
  drop-event       every 50th accepted event is not delivered
  resume-dup       a resume replays the event at `since` again
  wrong-code       unknown event types are answered bad_field
  count-off        events_accepted on /metrics counts one too many
"""

import argparse
import http
import logging
import asyncio
import json
import os
import random
import re
import signal
import struct
import sys
import time

import msgpack
import websockets

TYPES = {"start", "phase", "thinking", "delta", "tool", "verification", "heartbeat",
         "complete", "error"}
ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def now():
    return int(time.time() * 1000)


def dur(s):
    m = re.match(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$", s)
    v = float(m.group(1))
    return int(v * {"ms": 1, None: 1, "s": 1000, "m": 60000, "h": 3600000}[m.group(2)])


def size(s):
    m = re.match(r"^(\d+)(KiB|MiB|GiB)?$", s)
    return int(m.group(1)) * {None: 1, "KiB": 1024, "MiB": 1 << 20, "GiB": 1 << 30}[m.group(2)]


class Reject(Exception):
    def __init__(self, code, field=None):
        self.code, self.field = code, field


def depth(v, d=0):
    if d > 32:
        raise Reject("too_deep", "data")
    if isinstance(v, dict):
        for x in v.values():
            depth(x, d + 1)
    elif isinstance(v, list):
        for x in v:
            depth(x, d + 1)


def validate(e, raw_len, bug):
    if not isinstance(e, dict):
        raise Reject("not_a_map")
    if raw_len > 65536:
        raise Reject("too_large")
    if "run" not in e:
        raise Reject("missing_field", "run")
    if not isinstance(e["run"], str) or not ID_RE.match(e["run"]):
        raise Reject("bad_field", "run")
    if "type" not in e:
        raise Reject("missing_field", "type")
    t = e["type"]
    if not isinstance(t, str):
        raise Reject("bad_field", "type")
    if t not in TYPES and not t.startswith("x-"):
        raise Reject("bad_field" if bug == "wrong-code" else "unknown_type", "type")
    if "text" in e and not isinstance(e["text"], str):
        raise Reject("bad_field", "text")
    if t == "phase" and not isinstance(e.get("phase"), str):
        raise Reject("missing_field", "phase")
    if t == "error" and not isinstance(e.get("error"), dict):
        raise Reject("missing_field", "error")
    depth(e.get("data"))


class Run:
    def __init__(self, b, rid):
        self.b, self.id = b, rid
        self.seq = 0
        self.hist = []  # ev maps
        self.ids = {}
        self.term = None
        self.conv = None
        self.created = now()
        self.last = now()
        self.phase = None
        self.timeouts = {}
        self.deadline = b.a.run_deadline
        self.pipe = None
        self.gone_at = None
        self.subs = set()
        self.ended_at = None
        self.freed = False

    def timeout(self):
        to = self.timeouts.get(self.phase or "", self.timeouts.get("*", self.b.a.watchdog))
        return to

    def accept(self, e, pipe):
        b = self.b
        if self.term is not None:
            if e.get("id") is not None and e["id"] in self.ids and not self.freed:
                b.m["dup"] += 1
                return {"seq": self.ids[e["id"]], "dup": True}
            raise Reject("run_terminal")
        if e.get("id") is not None and e["id"] in self.ids:
            b.m["dup"] += 1
            return {"seq": self.ids[e["id"]], "dup": True}
        self.seq += 1
        if e.get("id") is not None:
            self.ids[e["id"]] = self.seq
        if e.get("conv") and not self.conv:
            self.conv = e["conv"]
        if e["type"] == "start":
            self.timeouts = dict(e.get("timeouts") or {})
            if e.get("deadline"):
                self.deadline = e["deadline"]
        if e["type"] == "phase":
            self.phase = e["phase"]
        self.last = now()
        self.pipe, self.gone_at = pipe, None
        ev = {"op": "ev", "run": self.id, "epoch": b.epoch, "seq": self.seq, "type": e["type"],
              "ts": self.last}
        if self.conv:
            ev["conv"] = self.conv
        for k in ("phase", "id", "text", "tool", "item", "data", "error"):
            if k in e:
                ev[k] = e[k]
        if "ts" in e:
            ev["pts"] = e["ts"]
        b.m["accepted"] += 1
        self.emit(ev)
        if e["type"] in ("complete", "error"):
            self.end(e["type"])
        return {"seq": self.seq}

    def synth(self, code, msg):
        self.seq += 1
        self.b.m["accepted"] += 1
        ev = {"op": "ev", "run": self.id, "epoch": self.b.epoch, "seq": self.seq, "type": "error",
              "ts": now(), "synthetic": True, "error": {"code": code, "message": msg},
              "data": {"phase": self.phase, "idle_ms": now() - self.last,
                       "last_seq": self.seq - 1}}
        if self.conv:
            ev["conv"] = self.conv
        self.emit(ev)
        if self.b.a.bug == "dup-terminal":
            self.emit(dict(ev))
        self.end(code)

    def end(self, cause):
        self.term = self.hist[-1]
        self.ended_at = now()
        self.b.m["terms"][cause] = self.b.m["terms"].get(cause, 0) + 1

    def emit(self, ev):
        self.hist.append(ev)
        if self.b.a.bug == "drop-event" and self.b.m["accepted"] % 50 == 0:
            return
        for c in list(self.subs):
            c.push(ev)

    def snap(self):
        s = {"op": "snap", "run": self.id, "epoch": self.b.epoch, "seq": self.seq,
             "status": "running" if self.term is None else
             ("completed" if self.term["type"] == "complete" else "failed"),
             "created_at": self.created, "last_event_at": self.last, "thinking": "",
             "output": "", "tools": [], "verification": [], "phases": []}
        if self.conv:
            s["conv"] = self.conv
        if self.term is not None:
            s["terminal"] = self.term
        return s

    def attach(self, c, since, epoch, snapshot):
        bug = self.b.a.bug
        if since is not None and epoch is not None and epoch != self.b.epoch:
            snapshot = True  # seqs of another epoch mean nothing here
        if since is not None and (epoch is None or epoch == self.b.epoch):
            first = self.hist[0]["seq"] if self.hist else self.seq + 1
            if since + 1 >= first:
                start = since if bug == "resume-dup" and since > 0 else since + 1
                for ev in self.hist:
                    if ev["seq"] >= start:
                        c.push(ev)
            else:
                c.push({"op": "gap", "run": self.id, "from": since + 1, "to": first - 1})
                c.push(self.snap())
        elif snapshot and self.seq > 0:
            c.push(self.snap())
        if self.term is None:
            self.subs.add(c)


class Conn:
    def __init__(self, b, ws, fmt):
        self.b, self.ws, self.fmt = b, ws, fmt
        self.q = asyncio.Queue()
        self.queued = 0
        self.closed = False
        self.kinds = []  # ("run"|"conv"|"all", target)
        self.errors = 0

    def push(self, m):
        if self.closed:
            return
        data = json.dumps(m) if self.fmt == "json" else msgpack.packb(m)
        self.queued += len(data)
        if self.queued + self.ws.transport.get_write_buffer_size() > self.b.a.ws_queue_max:
            self.closed = True
            self.b.m["slow"] += 1
            asyncio.ensure_future(self.ws.close(4008, "slow consumer"))
            return
        self.q.put_nowait(data)

    async def sender(self):
        while True:
            data = await self.q.get()
            self.queued -= len(data)
            await self.ws.send(data)

    def covers(self, run):
        for k, t in self.kinds:
            if k == "all" or (k == "conv" and run.conv == t) or (k == "run" and run.id == t):
                return True
        return False


class Broker:
    def __init__(self, a):
        self.a = a
        self.epoch = a.epoch or random.randrange(1, 1 << 40)
        self.runs = {}
        self.conns = set()
        self.waiting = []
        self.m = {"accepted": 0, "dup": 0, "rejected": {}, "terms": {}, "slow": 0}
        self.closing = False

    def reject(self, code):
        self.m["rejected"][code] = self.m["rejected"].get(code, 0) + 1
        if os.environ.get("RCG_DEBUG"):
            print("reject", code, now(), file=sys.stderr, flush=True)

    def ingest(self, data, pipe):
        """Returns the ack results."""
        try:
            obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
        except UnicodeDecodeError:
            self.reject("bad_utf8")
            return [{"error": {"code": "bad_utf8", "message": "utf8"}}]
        except msgpack.ExtraData:
            self.reject("malformed")
            return [{"error": {"code": "malformed", "message": "trailing bytes"}}]
        except Exception:
            self.reject("malformed")
            return [{"error": {"code": "malformed", "message": "not msgpack"}}]
        if len(data) > 4 << 20 or (isinstance(obj, list) and len(obj) > 1024):
            self.reject("too_large")
            return [{"error": {"code": "too_large", "message": "batch"}}]
        if not isinstance(obj, (dict, list)):
            self.reject("not_a_map")
            return [{"error": {"code": "not_a_map", "message": "top level"}}]
        evs = obj if isinstance(obj, list) else [obj]
        out = []
        for e in evs:
            try:
                if self.closing:
                    raise Reject("shutting_down")
                validate(e, len(msgpack.packb(e)) if isinstance(e, dict) else 0, self.a.bug)
                r = self.runs.get(e["run"])
                if r is None:
                    r = self.runs[e["run"]] = Run(self, e["run"])
                    if e.get("conv"):
                        r.conv = e["conv"]
                    for c in self.conns:
                        if c.covers(r):
                            r.attach(c, None, None, False)
                out.append(r.accept(e, pipe))
            except Reject as x:
                self.reject(x.code)
                if x.code == "run_terminal":
                    print("run_terminal", e.get("run"), e.get("type"), (e.get("data") or {}).get("k"), file=sys.stderr, flush=True)
                out.append({"error": {"code": x.code, "message": x.code,
                                      **({"field": x.field} if x.field else {})}})
            except UnicodeDecodeError:
                self.reject("bad_utf8")
                out.append({"error": {"code": "bad_utf8", "message": "utf8"}})
        return out

    def pipe_closed(self, pipe):
        for r in self.runs.values():
            if r.pipe is pipe and r.term is None:
                r.gone_at = now()

    async def watchdog(self):
        a = self.a
        while True:
            await asyncio.sleep(a.watchdog_tick / 1000)
            t = now()
            for r in list(self.runs.values()):
                if r.term is None:
                    if a.bug == "no-watchdog":
                        continue
                    to = r.timeout() / (2 if a.bug == "early-watchdog" else 1)
                    if r.gone_at and a.publisher_grace and t - max(r.gone_at, r.last) >= \
                            min(a.publisher_grace, to):
                        r.synth("publisher_gone", "publisher connection closed")
                    elif t - r.last >= to:
                        r.synth("watchdog_timeout", f"no event for {to} ms")
                    elif r.deadline and t - r.created >= r.deadline:
                        r.synth("deadline_exceeded", "deadline")
                elif not r.freed and t - r.ended_at >= a.retention:
                    r.freed = True
                    r.hist = [r.term]
                    r.ids = {}
                elif r.freed and t - r.ended_at >= a.retention + a.tombstone_ttl:
                    del self.runs[r.id]

    async def sp_listener(self, url, proto, rep):
        host, port = url[len("tcp://"):].rsplit(":", 1)

        async def handle(rd, wr):
            pipe = object()
            try:
                wr.write(b"\x00SP\x00" + struct.pack(">H", proto) + b"\x00\x00")
                await rd.readexactly(8)
                while True:
                    n = struct.unpack(">Q", await rd.readexactly(8))[0]
                    body = await rd.readexactly(n)
                    if rep:
                        hdr, body = body[:4], body[4:]
                        res = self.ingest(body, pipe)
                        ack = msgpack.packb({"ok": all("seq" in x for x in res),
                                             "epoch": self.epoch, "results": res})
                        wr.write(struct.pack(">Q", len(ack) + 4) + hdr + ack)
                    else:
                        self.ingest(body, pipe)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                self.pipe_closed(pipe)
                wr.close()
        return await asyncio.start_server(handle, host, int(port), reuse_address=True)

    async def ws_handler(self, ws, path):
        fmt = "json" if "format=json" in path else "msgpack"
        c = Conn(self, ws, fmt)
        self.conns.add(c)
        snd = asyncio.ensure_future(c.sender())
        c.push({"op": "hello", "epoch": self.epoch, "server": "mock", "hb_ms": 1000})
        try:
            async for raw in ws:
                try:
                    m = json.loads(raw) if isinstance(raw, str) else \
                        msgpack.unpackb(raw, raw=False, strict_map_key=False)
                except Exception:
                    self.ws_err(c, "malformed", None)
                    continue
                if not isinstance(m, dict):
                    self.ws_err(c, "not_a_map", None)
                    continue
                op = m.get("op")
                req = m.get("req")
                if not isinstance(op, str):
                    self.ws_err(c, "bad_field", req)
                elif op == "ping":
                    c.push({"op": "pong", **({"req": req} if req is not None else {})})
                elif op in ("sub", "unsub"):
                    self.ws_sub(c, m, op, req)
                else:
                    self.ws_err(c, "unknown_op", req)
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            snd.cancel()
            self.conns.discard(c)
            for r in self.runs.values():
                r.subs.discard(c)

    def ws_err(self, c, code, req):
        c.errors += 1
        c.push({"op": "err", "code": code, "message": code,
                **({"req": req} if req is not None else {})})
        if c.errors >= 16:
            asyncio.ensure_future(c.ws.close(4400, "abuse"))

    def ws_sub(self, c, m, op, req):
        if m.get("all") is True:
            kind, target = "all", None
        elif "run" in m:
            kind, target = "run", m["run"]
        elif "conv" in m:
            kind, target = "conv", m["conv"]
        else:
            return self.ws_err(c, "missing_field", req)
        if target is not None and (not isinstance(target, str) or not ID_RE.match(target)):
            return self.ws_err(c, "bad_field", req)
        if op == "unsub":
            if (kind, target) not in c.kinds:
                return self.ws_err(c, "not_subscribed", req)
            c.kinds.remove((kind, target))
            c.push({"op": "ok", "req": req})
            return
        c.kinds.append((kind, target))
        c.push({"op": "ok", "req": req})
        since = m.get("since")
        snapshot = m.get("snapshot", since is None)
        for r in list(self.runs.values()):
            if kind == "all" or (kind == "conv" and r.conv == target) or \
                    (kind == "run" and r.id == target):
                s = since.get(r.id) if isinstance(since, dict) else since
                if isinstance(since, dict) and s is None:
                    r.attach(c, None, None, True)
                else:
                    r.attach(c, s, m.get("epoch"), snapshot)

    async def process_request(self, path, headers):
        if path.startswith("/healthz"):
            return http.HTTPStatus.OK, [("Content-Type", "application/json")], b'{"status":"ok"}'
        if path.startswith("/runs"):
            lst = [{"run": r.id, "seq": r.seq, "conv": r.conv,
                    "status": r.snap()["status"]} for r in self.runs.values()]
            return http.HTTPStatus.OK, [("Content-Type", "application/json")], \
                json.dumps(lst).encode()
        if path.startswith("/metrics"):
            active = sum(1 for r in self.runs.values() if r.term is None)
            ended = {"completed": self.m["terms"].get("complete", 0)}
            ended["failed"] = sum(self.m["terms"].values()) - ended["completed"]
            lines = [f'runcast_runs{{status="running"}} {active}',
                     f'runcast_runs{{status="completed"}} {ended["completed"]}',
                     f'runcast_runs{{status="failed"}} {ended["failed"]}',
                     f"runcast_runs_active {active}",
                     f"runcast_runs_tombstoned {len(self.runs) - active}",
                     f"runcast_events_accepted_total "
                     f"{self.m['accepted'] + (1 if self.a.bug == 'count-off' else 0)}",
                     f"runcast_events_dup_total {self.m['dup']}"]
            for k, v in self.m["rejected"].items():
                lines.append(f'runcast_events_rejected_total{{reason="{k}"}} {v}')
            for k in ("complete", "error", "watchdog_timeout", "deadline_exceeded",
                      "publisher_gone"):
                lines.append(f'runcast_terminals_total{{cause="{k}"}} '
                             f'{self.m["terms"].get(k, 0)}')
            return http.HTTPStatus.OK, [("Content-Type", "text/plain")], ("\n".join(lines) + "\n").encode()
        return None


async def main():
    logging.basicConfig(level=logging.ERROR)
    ap = argparse.ArgumentParser()
    for o in ("ingest", "ingest-ack", "http", "watchdog", "publisher-grace", "run-deadline",
              "retention", "watchdog-tick", "ws-queue-max", "history-max-bytes",
              "shutdown-timeout", "ws-heartbeat", "log-level", "bug", "epoch", "http-runs-limit",
              "tombstone-ttl"):
        ap.add_argument("--" + o)
    a = ap.parse_args()
    for o in ("watchdog", "publisher_grace", "run_deadline", "retention", "watchdog_tick",
              "tombstone_ttl"):
        setattr(a, o, dur(getattr(a, o) or "100ms"))
    a.ws_queue_max = size(a.ws_queue_max or "4MiB")
    a.epoch = int(a.epoch) if a.epoch else None
    a.bug = a.bug or os.environ.get("RC_MOCK_BUG")
    b = Broker(a)
    pull = await b.sp_listener(a.ingest, 0x51, False)
    rep = await b.sp_listener(a.ingest_ack, 0x31, True)
    host, port = a.http.rsplit(":", 1)
    # the list is read at each handshake: its own origin is added once the
    # port is known (port 0: the kernel picks it, as runcastd does)
    origins = [None, "http://localhost"]
    wss = await websockets.serve(b.ws_handler, host, int(port), max_size=65536,
                                 process_request=b.process_request, origins=origins,
                                 reuse_address=True)
    port = wss.sockets[0].getsockname()[1]
    origins.append(f"http://{host}:{port}")
    # runcastd's first line, which the harness reads the ports from
    print(f"runcastd listening: ingest tcp://{host}:{pull.sockets[0].getsockname()[1]}, "
          f"ingest-ack tcp://{host}:{rep.sockets[0].getsockname()[1]}, http {host}:{port}",
          flush=True)
    wd = asyncio.ensure_future(b.watchdog())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    b.closing = True
    pull.close()
    rep.close()
    await asyncio.sleep(0.05)
    for c in list(b.conns):
        await c.ws.close(1001, "shutting down")
    wss.close()
    wd.cancel()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
