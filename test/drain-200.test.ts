// SIGTERM during 200 live sessions (DESIGN §5), against the compiled service in its own process:
// every client gets 1001, every byte the server received is stored or left sealed in the spool
// (and at least what was acknowledged), the process exits 0 within DRAIN_TIMEOUT_S, and the log
// tells the story: draining (200 sessions), sessions closed, drained (uploaded N, left in spool M), stopped.
import t from 'tap';
import { WebSocket } from 'ws';
import { addCounts, auditSpool, auditStore } from '../scripts/lib/store-audit.js';
import { startService } from '../scripts/lib/service.js';

const CLIENTS = 200;
const DRAIN_TIMEOUT_S = 20;
/** Each client sends one message per tick: 10 LC3 frames (300 B) or 100 ms of 16 kHz PCM (3,200 B). */
const TICK_MS = 100;
const STREAM_MS = 2000;

interface Client {
  uid: string;
  ws: WebSocket;
  sent: number;
  acked: number;
  close: Promise<{ code: number; reason: string }>;
}

type Line = Record<string, unknown> & { level: string; msg: string; thread: string };

function connect(base: string, i: number): Promise<Client> {
  const device = i % 2 === 0;
  const uid = device ? `dev${i}` : `pcm${i}`;
  const path = device ? `/v1/audio/stream?uid=${uid}&ack=1` : `/v1/trigger/listen?uid=${uid}&sample_rate=16000&ack=1`;
  const ws = new WebSocket(`${base}${path}`);
  const c: Client = { uid, ws, sent: 0, acked: 0, close: new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }))) };
  ws.on('message', (data: Buffer) => {
    if (data.readUInt32LE(0) === 202) c.acked = Math.max(c.acked, (JSON.parse(data.subarray(4).toString()) as { bytes: number }).bytes);
  });
  const audio = device ? Buffer.alloc(300, i) : Buffer.alloc(3200, i);
  const send = () => {
    if (ws.readyState !== ws.OPEN) return;
    let msg = audio;
    if (!device) {
      msg = Buffer.alloc(12 + audio.length);
      msg.writeUInt32LE(101, 0);
      msg.writeDoubleLE(Date.now() / 1000, 4);
      audio.copy(msg, 12);
    }
    ws.send(msg);
    c.sent += audio.length; // sent while OPEN: the server reads it before our answer to its close frame
  };
  const timer = setInterval(send, TICK_MS);
  void c.close.then(() => clearInterval(timer));
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(c));
    ws.once('error', reject);
  });
}

async function waitFor(what: string, ms: number, fn: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test('SIGTERM during 200 live sessions', async (t) => {
  const svc = await startService({
    env: { _TAPJS_PROCESSINFO_COVERAGE_: '0', SHARDS: '2', SLOTS_PER_SHARD: '256', LOG_LEVEL: 'info', DRAIN_TIMEOUT_S: String(DRAIN_TIMEOUT_S), FSYNC_MS: '100' },
  });
  t.teardown(() => svc.stop(1000));
  // Our own copy of what it prints from here on; 'close' means every line has arrived.
  let out = '';
  svc.proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const closedStdio = new Promise<void>((resolve) => svc.proc.once('close', () => resolve()));

  const base = svc.baseUrl.replace('http', 'ws');
  const clients: Client[] = [];
  for (let i = 0; i < CLIENTS; i += 20) clients.push(...(await Promise.all(Array.from({ length: 20 }, (_, k) => connect(base, i + k)))));
  await waitFor('a durable ack on every session', 20000, () => clients.every((c) => c.acked > 0));
  await new Promise((r) => setTimeout(r, STREAM_MS)); // live traffic at the moment of the signal

  const t0 = Date.now();
  svc.proc.kill('SIGTERM');
  const exit = await Promise.race([svc.exited, new Promise<string>((r) => setTimeout(() => r('still running'), (DRAIN_TIMEOUT_S + 10) * 1000))]);
  const ms = Date.now() - t0;
  t.equal(exit, 0, 'exit 0');
  t.ok(ms < DRAIN_TIMEOUT_S * 1000, `exited ${ms} ms after SIGTERM (DRAIN_TIMEOUT_S ${DRAIN_TIMEOUT_S})`);
  const codes = await Promise.all(clients.map((c) => c.close));
  t.same([...new Set(codes.map((c) => `${c.code} ${c.reason}`))], ['1001 server is draining'], 'every client got 1001');
  await closedStdio;

  // The story.
  const lines = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line);
  const one = (msg: string) => {
    const found = lines.filter((l) => l.msg === msg);
    t.equal(found.length, 1, `one "${msg}" line`);
    return found[0] ?? ({} as Line);
  };
  t.match(one('draining'), { level: 'info', thread: 'main', why: 'SIGTERM', sessions: CLIENTS });
  t.match(one('sessions closed'), { closed: CLIENTS, terminated: 0 });
  const spool = one('drained');
  t.match(spool, { uploaded: Number, uploadedBytes: Number, leftInSpool: Number, leftInSpoolBytes: Number });
  t.match(one('stopped'), { signal: 'SIGTERM' });
  const order = ['draining', 'sessions closed', 'drained', 'stopped'].map((m) => lines.findIndex((l) => l.msg === m));
  t.same([...order].sort((a, b) => a - b), order, 'in that order');
  t.notOk(lines.some((l) => l.level === 'error' || l.level === 'fatal'), 'no errors');
  const closes = lines.filter((l) => l.msg === 'session closed');
  t.equal(closes.length, CLIENTS, 'one close line per session');
  t.ok(closes.every((l) => l.closedBy === 'drain' && l.code === 1001), 'all closed by the drain');

  // The audit: what the server received (its close lines) is stored or sealed in the spool.
  const seen = new Set<string>();
  const store = auditStore(svc.storeDir, seen);
  const left = auditSpool(svc.spoolDir, seen);
  t.same([...store.errors, ...left.errors], [], 'every object parses');
  t.equal(store.uncommitted, 0, 'no half-written objects');
  t.equal(store.objects, spool.uploaded, `"uploaded ${String(spool.uploaded)}" is what the store holds`);
  t.equal(left.objects, spool.leftInSpool, `"left in spool ${String(spool.leftInSpool)}" is what the spool holds`);
  const kept = addCounts(store.perKey, left.perKey);
  const received = new Map(closes.map((l) => [l.uid as string, l.bytes as number]));
  const problems: string[] = [];
  for (const c of clients) {
    const k = kept[`${c.uid}/_`]?.bytes ?? 0;
    const r = received.get(c.uid) ?? -1;
    if (r !== c.sent) problems.push(`${c.uid}: sent ${c.sent}, the server received ${r}`);
    if (k !== r) problems.push(`${c.uid}: received ${r}, kept ${k}`);
    if (k < c.acked) problems.push(`${c.uid}: acked ${c.acked}, kept only ${k}`);
  }
  t.same(problems, [], 'per session: sent = received = stored + spooled ≥ acked');
  const total = clients.reduce((s, c) => s + c.sent, 0);
  t.ok(total > CLIENTS * 300 * 5, `${total} audio bytes in all`);
});
