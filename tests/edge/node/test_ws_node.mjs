// Third-party client test of the edge: Node.js `ws` + `@msgpack/msgpack`
// against a real runcastd (publishing with the `runcast pub` CLI).
import { spawn, spawnSync } from "node:child_process";
import path from "node:path";
import WebSocket from "ws";
import { decode, encode } from "@msgpack/msgpack";

const BIN = process.env.RC_BINARY_DIR || ".";
const RUNCASTD = path.join(BIN, "broker", "runcastd");
const RUNCAST = path.join(BIN, "client", "runcast");
const T = 5000;

function check(cond, what) {
  if (!cond) throw new Error(what);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// runcastd on ports it picks itself (port 0, read back from its "runcastd
// listening" line), so that tests run side by side (ctest -j) never race
// for a port.
const LISTENING = /runcastd listening: ingest tcp:\/\/127\.0\.0\.1:(\d+), ingest-ack tcp:\/\/127\.0\.0\.1:(\d+), http 127\.0\.0\.1:(\d+)/;

class Broker {
  async start(extra = []) {
    this.proc = spawn(RUNCASTD, ["--http", "127.0.0.1:0",
      "--ingest", "tcp://127.0.0.1:0", "--ingest-ack", "tcp://127.0.0.1:0",
      "--log-level", "error", ...extra], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    this.proc.stdout.on("data", (d) => { out += d.toString(); });
    for (let i = 0; i < 200 && !this.http; i++) {
      const m = LISTENING.exec(out);
      if (m) [this.pull, this.rep, this.http] = m.slice(1).map(Number);
      else if (this.proc.exitCode !== null) throw new Error(`runcastd exited: ${this.proc.exitCode}`);
      else await sleep(50);
    }
    check(this.http, "runcastd did not say where it listens");
    for (let i = 0; i < 200; i++) {
      try {
        const r = await fetch(`http://127.0.0.1:${this.http}/healthz`);
        if (r.status === 200) return;
      } catch (e) { /* not yet */ }
      await sleep(50);
    }
    throw new Error("runcastd did not become healthy");
  }
  stop() {
    this.proc.kill("SIGTERM");
  }
  publish(...events) {
    const r = spawnSync(RUNCAST, ["pub", "--file", "-", "--ack",
      "--ingest-ack", `tcp://127.0.0.1:${this.rep}`, "--ingest", `tcp://127.0.0.1:${this.pull}`],
      { input: events.map((e) => JSON.stringify(e) + "\n").join(""), timeout: 60000 });
    if (r.status !== 0) throw new Error(`runcast pub: ${r.status} ${r.stderr}`);
  }
  url(q = "") {
    return `ws://127.0.0.1:${this.http}/ws${q}`;
  }
}

// A subscriber that flattens coalesced array frames and records the close code.
class Conn {
  constructor(url, opts = {}) {
    this.q = [];
    this.waiters = [];
    this.closeCode = null;
    this.ws = new WebSocket(url, opts);
    this.ws.binaryType = "nodebuffer";
    this.opened = new Promise((resolve, reject) => {
      this.ws.on("open", resolve);
      this.ws.on("unexpected-response", (req, res) => reject(new Error(`status ${res.statusCode}`)));
      this.ws.on("error", reject);
    });
    this.ws.on("message", (data, isBinary) => {
      const v = isBinary ? decode(data) : JSON.parse(data.toString());
      for (const m of Array.isArray(v) ? v : [v]) this.push(m);
    });
    this.ws.on("close", (code) => {
      this.closeCode = code;
      this.push(null);
    });
  }
  push(m) {
    const w = this.waiters.shift();
    if (w) w(m);
    else this.q.push(m);
  }
  next(ms = T) {
    if (this.q.length) return Promise.resolve(this.q.shift());
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("timeout")), ms);
      this.waiters.push((m) => { clearTimeout(t); resolve(m); });
    });
  }
  async quiet(ms = 300) {
    try {
      const m = await this.next(ms);
      throw new Error(`unexpected ${JSON.stringify(m)}`);
    } catch (e) {
      if (e.message !== "timeout") throw e;
      this.waiters.shift();
    }
  }
  send(m) {
    this.ws.send(encode(m));
  }
  async request(m) {
    this.send(m);
    const r = await this.next();
    check(r && r.op === "ok", `reply to ${JSON.stringify(m)}: ${JSON.stringify(r)}`);
  }
}

async function connect(b, q = "", opts = {}) {
  const c = new Conn(b.url(q), opts);
  await c.opened;
  const h = await c.next();
  check(h.op === "hello", `hello ${JSON.stringify(h)}`);
  c.hello = h;
  return c;
}

async function main() {
  const b = new Broker();
  await b.start(["--ws-max-conns", "5"]);
  try {
    // subscribe + live + resume exact
    b.publish({ run: "n1", conv: "nc", type: "start" });
    let c = await connect(b);
    const epoch = c.hello.epoch;
    await c.request({ op: "sub", run: "n1", since: 0, epoch });
    check((await c.next()).seq === 1, "replay 1");
    b.publish({ run: "n1", type: "delta", text: "a" });
    const ev = await c.next();
    check(ev.op === "ev" && ev.seq === 2 && ev.text === "a", `live ${JSON.stringify(ev)}`);
    c.ws.terminate(); // abrupt
    b.publish(...[0, 1, 2].map((i) => ({ run: "n1", type: "delta", text: `${i}` })));
    c = await connect(b);
    await c.request({ op: "sub", run: "n1", since: 2, epoch });
    const seqs = [];
    for (let i = 0; i < 3; i++) seqs.push((await c.next()).seq);
    check(JSON.stringify(seqs) === "[3,4,5]", `resume ${seqs}`);
    await c.quiet();
    console.log("ok   subscribe, live, resume exact");

    // conv and all
    const cc = await connect(b);
    await cc.request({ op: "sub", conv: "nc" });
    const s0 = await cc.next();
    check(s0.op === "snap" && s0.run === "n1", `conv snap ${JSON.stringify(s0)}`);
    b.publish({ run: "n2", conv: "nc", type: "start" }, { run: "n3", type: "start" });
    const m = await cc.next(); // n2 joined later: ev#1 (or its snap at seq 1)
    check(m.run === "n2" && m.seq === 1, `conv ${JSON.stringify(m)}`);
    await cc.quiet();
    cc.ws.close();
    console.log("ok   conv subscription");

    // snapshot
    const cs = await connect(b);
    await cs.request({ op: "sub", run: "n1" });
    const s = await cs.next();
    check(s.op === "snap" && s.seq === 5 && s.output === "a012", `snap ${JSON.stringify(s)}`);
    cs.ws.close();
    console.log("ok   snapshot");

    // JSON mode
    const cj = new Conn(b.url("?format=json"));
    await cj.opened;
    check((await cj.next()).op === "hello", "json hello");
    cj.ws.send(JSON.stringify({ op: "ping", req: [1, "x"] }));
    const p = await cj.next();
    check(p.op === "pong" && JSON.stringify(p.req) === '[1,"x"]', `json pong ${JSON.stringify(p)}`);
    cj.ws.close();
    console.log("ok   json mode");

    // garbage and bad origin
    c.ws.send(Buffer.from([0xc1]));
    const e = await c.next();
    check(e.op === "err" && e.code === "malformed", `garbage ${JSON.stringify(e)}`);
    let refused = false;
    try {
      await connect(b, "", { origin: "https://evil.example" });
    } catch (err) {
      refused = /403/.test(err.message);
    }
    check(refused, "a foreign Origin is refused with 403");
    console.log("ok   garbage and bad origin");

    // over --ws-max-conns (5): close 4429
    for (let i = 0; i < 100; i++) { // wait until only `c` is left open
      const t = await (await fetch(`http://127.0.0.1:${b.http}/metrics`)).text();
      if (/^runcast_ws_connections 1$/m.test(t)) break;
      await sleep(20);
    }
    const extra = [];
    for (let i = 0; i < 4; i++) extra.push(await connect(b));
    const over = new Conn(b.url());
    await over.opened;
    while ((await over.next()) !== null) { /* until close */ }
    check(over.closeCode === 4429, `close code ${over.closeCode}`);
    for (const x of extra) x.ws.close();
    console.log("ok   connection limit 4429");

    // /metrics
    const r = await fetch(`http://127.0.0.1:${b.http}/metrics`);
    const text = await r.text();
    check(/^runcast_ws_refused_total\{reason="max_conns"\} 1$/m.test(text), "metrics max_conns");
    check(/^runcast_ws_refused_total\{reason="origin"\} 1$/m.test(text), "metrics origin");
    console.log("ok   metrics");
    c.ws.close();
  } finally {
    b.stop();
  }
}

main().then(() => process.exit(0), (e) => {
  console.log(`FAIL ${e.stack || e}`);
  process.exit(1);
});
