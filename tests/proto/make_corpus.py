#!/usr/bin/python3
"""Regenerates the fuzz seed corpus in tests/proto/corpus/ (small files).

Files named regress_* are inputs the fuzzers once failed on, kept by hand.

Run with Debian's python3 (python3-msgpack): /usr/bin/python3 make_corpus.py
"""
import json
import os
import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def mp(v):
    return msgpack.packb(v, use_bin_type=True)


events = {
    "start": {"run": "run-1", "conv": "c-1", "type": "start", "ts": 1700000000000,
              "timeouts": {"*": 120000, "execute": 600000}, "deadline": 3600000},
    "phase": {"run": "run-1", "type": "phase", "phase": "planning", "id": 7},
    "thinking": {"run": "run-1", "type": "thinking", "text": "Let me look at the logs."},
    "delta": {"run": "run-1", "type": "delta", "text": "The answer is", "id": "d-1"},
    "tool": {"run": "run-1", "type": "tool",
             "tool": {"id": "t1", "name": "grep", "status": "running", "args": ["-r", "x"]}},
    "verification": {"run": "run-1", "type": "verification",
                     "item": {"id": 1, "label": "tests pass", "status": "pass"}},
    "heartbeat": {"run": "run-1", "type": "heartbeat"},
    "complete": {"run": "run-1", "type": "complete", "data": {"tokens": 1234, "b": b"\x00\x01"}},
    "error": {"run": "run-1", "type": "error",
              "error": {"code": "E_TOOL", "message": "tool failed"}},
    "custom": {"run": "run-1", "type": "x-progress", "data": [1, 2.5, None, True, {"k": "v"}]},
}
for name, ev in events.items():
    write("publish", name, mp(ev))
write("publish", "batch", mp(list(events.values())))
write("publish", "bad_elements", mp([{"run": "a b", "type": "start"}, 5, {"type": "delta"}]))
write("publish", "deep_data", mp({"run": "r", "type": "delta", "data": [[[[[[[[[1]]]]]]]]]}))
write("publish", "ext", b"\x83\xa3run\xa1r\xa4type\xa5start\xa4data\xd6\xff\x00\x00\x00\x01")

clients = {
    "sub_run": {"op": "sub", "run": "run-1", "since": 12, "epoch": 1700000000, "req": 1},
    "sub_conv": {"op": "sub", "conv": "c-1", "since": {"run-1": 3, "run-2": 0}, "epoch": 5},
    "sub_all": {"op": "sub", "all": True, "snapshot": False, "req": "abc"},
    "unsub": {"op": "unsub", "run": "run-1", "req": [1, 2]},
    "ping": {"op": "ping", "req": {"id": 9}},
    "bad": {"op": "sub", "run": "r", "conv": "c"},
}
for name, m in clients.items():
    write("client", name, mp(m))

jsons = {
    "event": events["tool"],
    "sub": clients["sub_conv"],
    "numbers": [0, -1, 1.5, 1e300, -0.0, 9007199254740993, -9223372036854775808],
    "strings": ["", "\u00e9\u20ac\U0001F600", "a\"b\\c\n", "\u0000"],
    "nested": {"a": {"b": {"c": [[], {}, None, True, False]}}},
}
for name, v in jsons.items():
    write("json", name, json.dumps(v).encode())
