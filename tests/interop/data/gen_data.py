#!/usr/bin/python3
"""Regenerates the committed .msgpack files used by the interop tests.

Each file is one publish message exactly as a third-party tool sends it
(see docs/PROTOCOL.md): one event map, or an array of them (a batch).
Run from this folder: /usr/bin/python3 gen_data.py
"""
import msgpack

TS = 1764230400000  # fixed publisher time, so the bytes never change


def write(name, obj):
    with open(name, "wb") as f:
        f.write(msgpack.packb(obj, use_bin_type=True))


for tool in ("nngcat", "nanocat"):
    run = "interop-" + tool
    write(f"{tool}_start.msgpack",
          {"run": run, "conv": "interop", "type": "start", "ts": TS,
           "timeouts": {"*": 30000}})
    write(f"{tool}_batch.msgpack", [
        {"run": run, "type": "phase", "phase": "execute", "ts": TS},
        {"run": run, "type": "delta", "text": f"hello from {tool}", "ts": TS},
        {"run": run, "type": "tool", "ts": TS,
         "tool": {"id": "t1", "name": "grep", "status": "done"}},
    ])
    write(f"{tool}_complete.msgpack",
          {"run": run, "type": "complete", "id": f"{tool}-complete-1", "ts": TS,
           "data": {"answer": 42}})
