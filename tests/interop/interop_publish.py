#!/usr/bin/python3
"""Publishing to runcastd with third-party tools from documented bytes.

    interop_publish.py nngcat|nanocat|node [tcp|ipc]

Starts its own runcastd on free ports, then, with the named tool only:
  * pushes the committed .msgpack files in data/ (one event, then a batch of
    three) to the PULL socket, and one heartbeat given as printf bytes;
  * sends `complete` (with an idempotency id) as a request to the REP
    socket and checks the ack {ok, epoch, results: [{seq}]};
  * repeats that request and checks the broker answers dup with the same seq;
and checks with an independent subscriber (Python websockets + msgpack,
binary frames) that exactly those events arrived, in order, seq 1..6.

`node` runs node/publish.js (npm `nanomsg` binding + @msgpack/msgpack)
instead: it pushes start, a batch and a tool event, then sends complete as
a request; the same subscriber checks what arrived.  The binding is
installed with `npm ci` from the committed lockfile when node_modules is
missing; if it cannot be built here, the test says so and is skipped.

With `ipc`, the broker's PULL socket (fire-and-forget) listens on an ipc://
socket file instead of tcp:// (the other framing of the SP wire protocol,
read by the broker's stream reader); the REP socket stays on tcp.

Exit 0 on success, 1 on a failed check, 77 when the tool is not installed
or the nanomsg binding does not build (the CTest registration marks 77 as
skipped).
"""
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import msgpack
import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("RC_BINARY_DIR", os.path.join(HERE, "..", "..", "build"))
RUNCASTD = os.path.join(BIN, "broker", "runcastd")

# {"run": RUN, "type": "heartbeat"} as bash printf escapes: fixmap of 2
# entries (0x82), fixstr "run" (0xa3), fixstr RUN (0xa0 | its length),
# fixstr "type" (0xa4), fixstr "heartbeat" (0xa9).
HEARTBEAT_PRINTF = r"\x82\xa3run\x%02x%s\xa4type\xa9heartbeat"


def fail(msg):
    print("FAIL:", msg, flush=True)
    sys.exit(1)


def start_broker(tmp, transport="tcp"):
    log = open(os.path.join(tmp, "runcastd.log"), "w+")
    ingest = f"ipc://{tmp}/ingest.sock" if transport == "ipc" else "tcp://127.0.0.1:0"
    p = subprocess.Popen(
        [RUNCASTD, "--ingest", ingest, "--ingest-ack", "tcp://127.0.0.1:0",
         "--http", "127.0.0.1:0", "--log-level", "warn", "--shutdown-timeout", "1s"],
        stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 10
    while time.time() < deadline:
        log.seek(0)
        m = re.search(r"runcastd listening: ingest (\S+), ingest-ack (\S+), http (\S+)", log.read())
        if m:
            return p, m.group(1), m.group(2), m.group(3)
        if p.poll() is not None:
            break
        time.sleep(0.05)
    p.kill()
    log.seek(0)
    fail("runcastd did not start: " + log.read())


def tool_cmd(tool, kind, url, path, raw=False):
    if tool == "nngcat":
        cmd = ["nngcat", "--" + kind, "--dial", url, "--file", path]
        if kind == "req":
            cmd += ["--raw", "--recv-timeout", "5"]
    else:
        cmd = ["nanocat", "--" + kind, "--connect", url, "--file", path]
        if kind == "req":
            cmd += ["--raw", "--recv-timeout", "5"]
        else:
            cmd += ["--delay", "0.2"]  # nanocat sends once connected; give it the dial
    return cmd


def run_tool(cmd):
    r = subprocess.run(cmd, capture_output=True, timeout=20)
    if r.returncode != 0:
        fail(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.decode(errors='replace')}")
    return r.stdout


def run_state(http, run):
    try:
        with urllib.request.urlopen(f"http://{http}/runs/{run}", timeout=5) as f:
            return json.loads(f.read())
    except Exception:
        return None


async def subscribe(http, run, want):
    """Collects the run's events (binary msgpack frames) until the terminal."""
    evs = []
    async with websockets.connect(f"ws://{http}/ws", max_size=None) as ws:
        hello = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5), raw=False)
        if hello.get("op") != "hello":
            fail(f"first frame is not hello: {hello}")
        await ws.send(msgpack.packb({"op": "sub", "run": run, "since": 0, "req": 1}))
        while True:
            frame = await asyncio.wait_for(ws.recv(), 10)
            if not isinstance(frame, bytes):
                fail("binary frames expected")
            msg = msgpack.unpackb(frame, raw=False)
            for m in msg if isinstance(msg, list) else [msg]:
                if m.get("op") == "err":
                    fail(f"subscription refused: {m}")
                if m.get("op") == "ev":
                    evs.append(m)
                    if m["type"] in ("complete", "error") or len(evs) >= want:
                        return evs


def node_ready():
    """Installs the npm packages from the lockfile if needed; True when the
    nanomsg binding loads."""
    nd = os.path.join(HERE, "node")
    if shutil.which("node") is None or shutil.which("npm") is None:
        print("SKIP: node/npm are not installed")
        sys.exit(77)
    probe = ["node", "-e", "require('nanomsg'); require('@msgpack/msgpack')"]
    if subprocess.run(probe, cwd=nd, capture_output=True).returncode == 0:
        return
    r = subprocess.run(["npm", "ci", "--foreground-scripts", "--no-audit", "--no-fund"], cwd=nd,
                       capture_output=True, timeout=600)
    if r.returncode != 0 or subprocess.run(probe, cwd=nd, capture_output=True).returncode != 0:
        tail = (r.stdout + r.stderr).decode(errors="replace")[-2000:]
        print("SKIP: the npm `nanomsg` binding did not build here (npm ci in tests/interop/node "
              "failed), so the Node.js publisher test cannot run:\n" + tail)
        sys.exit(77)


def main_node(transport):
    node_ready()
    run = "interop-node"
    with tempfile.TemporaryDirectory() as tmp:
        broker, ingest, ack, http = start_broker(tmp, transport)
        try:
            out = run_tool(["node", os.path.join(HERE, "node", "publish.js"), ingest, ack, http,
                            run])
            a = json.loads(out.decode().strip().splitlines()[-1])
            if not (a.get("ok") is True and a["results"] == [{"seq": 6}]):
                fail(f"unexpected ack: {a}")
            evs = asyncio.run(subscribe(http, run, 6))
            types = [e["type"] for e in evs]
            if types != ["start", "phase", "delta", "delta", "tool", "complete"]:
                fail(f"events: {types}")
            if [e["seq"] for e in evs] != [1, 2, 3, 4, 5, 6]:
                fail(f"seqs: {[e['seq'] for e in evs]}")
            if evs[4]["tool"] != {"id": 7, "name": "calc", "status": "done"}:
                fail(f"tool: {evs[4]}")
            if evs[5].get("data") != {"ok": True} or evs[5].get("id") != "node-complete-1":
                fail(f"complete: {evs[5]}")
            print(f"PASS: node (npm nanomsg, PUSH over {transport}): 5 pushed + 1 acknowledged event arrived in order "
                  f"(epoch {a['epoch']})")
        finally:
            broker.terminate()
            try:
                broker.wait(5)
            except subprocess.TimeoutExpired:
                broker.kill()


def main():
    if (len(sys.argv) not in (2, 3) or sys.argv[1] not in ("nngcat", "nanocat", "node")
            or sys.argv[2:] not in ([], ["tcp"], ["ipc"])):
        print(__doc__)
        sys.exit(2)
    tool = sys.argv[1]
    transport = sys.argv[2] if len(sys.argv) == 3 else "tcp"
    if tool == "node":
        return main_node(transport)
    if shutil.which(tool) is None:
        print(f"SKIP: {tool} is not installed (Debian package "
              f"{'nng-utils' if tool == 'nngcat' else 'nanomsg-utils'})")
        sys.exit(77)
    run = "interop-" + tool
    data = os.path.join(HERE, "data")
    with tempfile.TemporaryDirectory() as tmp:
        broker, ingest, ack, http = start_broker(tmp, transport)
        try:
            # 1. PUSH: one event, a batch of three, and printf bytes.
            run_tool(tool_cmd(tool, "push", ingest, os.path.join(data, f"{tool}_start.msgpack")))
            run_tool(tool_cmd(tool, "push", ingest, os.path.join(data, f"{tool}_batch.msgpack")))
            hb = os.path.join(tmp, "hb.msgpack")
            fmt = HEARTBEAT_PRINTF % (0xA0 | len(run), run)
            subprocess.run(["bash", "-c", f"printf '{fmt}' > {hb}"], check=True)
            run_tool(tool_cmd(tool, "push", ingest, hb))
            # PUSH is fire-and-forget: wait until the broker applied all five
            # before the terminal goes over the other socket.
            deadline = time.time() + 10
            st = None
            while time.time() < deadline:
                st = run_state(http, run)
                if st and st.get("seq") == 5:
                    break
                time.sleep(0.05)
            if not st or st.get("seq") != 5:
                fail(f"pushed events did not all arrive: {st}")

            # 2. REQ: complete, acknowledged; then the same request again.
            complete = os.path.join(data, f"{tool}_complete.msgpack")
            acks = []
            for _ in range(2):
                out = run_tool(tool_cmd(tool, "req", ack, complete))
                try:
                    acks.append(msgpack.unpackb(out, raw=False))
                except Exception as e:
                    fail(f"reply is not one msgpack value ({e}): {out!r}")
            a, b = acks
            if not (a.get("ok") is True and a.get("epoch") and a["results"] == [{"seq": 6}]):
                fail(f"unexpected ack: {a}")
            if not (b.get("ok") is True and b["results"][0].get("seq") == 6
                    and b["results"][0].get("dup") is True):
                fail(f"a repeated id must be acknowledged as dup with the same seq: {b}")

            # 3. An independent subscriber sees exactly these events.
            evs = asyncio.run(subscribe(http, run, 6))
            types = [e["type"] for e in evs]
            seqs = [e["seq"] for e in evs]
            if types != ["start", "phase", "delta", "tool", "heartbeat", "complete"]:
                fail(f"events: {types}")
            if seqs != [1, 2, 3, 4, 5, 6]:
                fail(f"seqs: {seqs}")
            if evs[2].get("text") != f"hello from {tool}":
                fail(f"delta text: {evs[2]}")
            if evs[5].get("data") != {"answer": 42} or evs[5].get("id") != f"{tool}-complete-1":
                fail(f"complete: {evs[5]}")
            if any(e.get("epoch") != a["epoch"] for e in evs):
                fail("epoch of the events differs from the ack's")
            print(f"PASS: {tool} (PUSH over {transport}): 5 pushed + 1 acknowledged event arrived in order; "
                  f"repeat acknowledged as dup (epoch {a['epoch']})")
        finally:
            broker.terminate()
            try:
                broker.wait(5)
            except subprocess.TimeoutExpired:
                broker.kill()


if __name__ == "__main__":
    main()
