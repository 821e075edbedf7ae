// A Node.js publisher for runcastd using the npm `nanomsg` binding (an
// independent implementation of the same SP wire protocol as nng) and
// @msgpack/msgpack.
//
//   node publish.js INGEST_URL INGEST_ACK_URL HTTP_HOSTPORT RUN
//
// Pushes start, a batch (phase + two deltas) and a tool event to the PULL
// socket, waits (HTTP API) until the broker applied them, then sends
// `complete` with an idempotency id as a request to the REP socket and
// prints the ack as one JSON line.
'use strict';
const nano = require('nanomsg');
const { encode, decode } = require('@msgpack/msgpack');

const [ingest, ingestAck, http, run] = process.argv.slice(2);
if (!run) {
  console.error('usage: node publish.js INGEST_URL INGEST_ACK_URL HTTP_HOSTPORT RUN');
  process.exit(2);
}
const now = () => Date.now();

async function waitSeq(want) {
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(`http://${http}/runs/${run}`);
      if (r.ok && (await r.json()).seq === want) return;
    } catch (e) { /* not there yet */ }
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`run ${run} never reached seq ${want}`);
}

async function main() {
  const push = nano.socket('push');
  push.connect(ingest);
  const events = [
    { run, conv: 'interop-node', type: 'start', ts: now(), timeouts: { '*': 30000 } },
    [
      { run, type: 'phase', phase: 'streaming', ts: now() },
      { run, type: 'delta', text: 'hello ', ts: now() },
      { run, type: 'delta', text: 'from node', ts: now() },
    ],
    { run, type: 'tool', ts: now(), tool: { id: 7, name: 'calc', status: 'done' } },
  ];
  // nanomsg queues sends until the connection is up.
  for (const e of events) push.send(Buffer.from(encode(e)));
  await waitSeq(5);
  push.close();

  const req = nano.socket('req');
  req.connect(ingestAck);
  const reply = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no ack within 5 s')), 5000);
    req.on('data', (buf) => { clearTimeout(t); resolve(decode(buf)); });
    req.send(Buffer.from(encode({ run, type: 'complete', id: 'node-complete-1', ts: now(),
                                  data: { ok: true } })));
  });
  req.close();
  console.log(JSON.stringify(reply));
}

main().catch((e) => { console.error('publish.js:', e.message); process.exit(1); });
