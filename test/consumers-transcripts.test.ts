// Realtime transcript fan-out against real HTTP receivers on 127.0.0.1 (DESIGN §3.3).
import t, { type Test } from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpClient } from '../src/http/client.js';
import { newQueueCounters, SessionConsumers, type ConsumerSettings, type QueueCounters } from '../src/consumers/session-consumers.js';
import { TaskScope } from '../src/session/task-scope.js';

interface Got {
  method: string;
  path: string;
  search: string;
  query: URLSearchParams;
  type: string | undefined;
  body: string;
  at: number;
}
type Reply = number | 'hang' | { status: number; delayMs: number };

/** A real HTTP receiver; `reply(n, req)` answers the n-th request (1-based). */
async function receiver(t: Test, reply: (n: number, g: Got) => Reply = () => 200) {
  const got: Got[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let open = 0;
  let maxOpen = 0;
  const server = createServer((req, res) => {
    open++;
    maxOpen = Math.max(maxOpen, open);
    res.on('close', () => open--);
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const u = new URL(req.url!, 'http://x');
      const g: Got = { method: req.method!, path: u.pathname, search: u.search, query: u.searchParams, type: req.headers['content-type'], body: Buffer.concat(parts).toString(), at: Date.now() };
      got.push(g);
      const r = reply(got.length, g);
      if (r === 'hang') return;
      const { status, delayMs } = typeof r === 'number' ? { status: r, delayMs: 0 } : r;
      const tm = setTimeout(() => (timers.delete(tm), res.writeHead(status).end('answer')), delayMs);
      timers.add(tm);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const tm of timers) clearTimeout(tm);
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, got, maxOpen: () => maxOpen };
}

/** A port nobody listens on (connection refused). */
async function deadUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const none: ConsumerSettings = { transcriptWebhook: null, transcriptApps: [], audioBytesWebhook: null, audioApps: [] };

function rig(t: Test, settings: Partial<ConsumerSettings>, extra: { budgetBytes?: number; transcriptTickMs?: number } = {}) {
  const scope = new TaskScope();
  const http = new HttpClient({ allowPrivate: true });
  const counters: QueueCounters = newQueueCounters();
  const errors: string[] = [];
  const c = new SessionConsumers({
    uid: 'u1',
    sampleRate: 16000,
    settings: { ...none, ...settings },
    scope,
    http,
    counters,
    budgetBytes: extra.budgetBytes ?? 20 << 20,
    onError: (m) => errors.push(m),
    ...(extra.transcriptTickMs !== undefined ? { transcriptTickMs: extra.transcriptTickMs } : {}),
  });
  t.teardown(async () => {
    await scope.close(2000);
    await http.close();
  });
  return { scope, http, counters, errors, c };
}

t.test('request shapes: webhook and apps, one POST each per tick with both pushes in order', async (t) => {
  const r = await receiver(t);
  const { c, scope, counters } = rig(t, { transcriptWebhook: `${r.url}/hook?token=abc`, transcriptApps: [`${r.url}/app1`, `${r.url}/app2?x=1&uid=spoof`] });
  t.ok(c.wantsTranscripts);
  t.notOk(c.wantsPcm);
  const t0 = Date.now();
  c.transcript([{ text: 'hello', speaker: 'SPEAKER_00', start: 0, end: 1.5 }]);
  c.transcript([]); // nothing to send: ignored
  c.transcript([{ text: 'wörld "quoted"', start: 1.5, end: 2 }, { text: 'third' }]);
  t.equal(counters.depth.transcripts, 2);
  await until('one POST to each of the 3 receivers', () => r.got.length >= 3, 5000);
  t.ok(Date.now() - t0 >= 900, 'sent at the 1 s tick, not at once');
  const segs = '[{"text":"hello","speaker":"SPEAKER_00","start":0,"end":1.5},{"text":"wörld \\"quoted\\"","start":1.5,"end":2},{"text":"third"}]';
  const by = new Map(r.got.map((g) => [g.path, g]));
  const hook = by.get('/hook')!;
  t.same([hook.method, hook.search, hook.type], ['POST', '?token=abc&uid=u1', 'application/json']);
  t.equal(hook.body, `{"segments":${segs},"session_id":"u1"}`);
  const app1 = by.get('/app1')!;
  t.same([app1.method, app1.search, app1.type], ['POST', '?uid=u1', 'application/json']);
  t.equal(app1.body, `{"session_id":"u1","segments":${segs}}`);
  const app2 = by.get('/app2')!;
  t.equal(app2.search, '?x=1&uid=u1', 'existing query kept, uid set once');
  t.equal(app2.body, app1.body);
  t.same(JSON.parse(hook.body), { segments: JSON.parse(segs), session_id: 'u1' });
  await until('the round to settle (gauges back to 0)', () => counters.bytes.transcripts === 0, 5000);
  t.equal(counters.depth.transcripts, 0);
  // Nothing queued: the next tick sends nothing and no timer stays armed.
  await new Promise((res) => setTimeout(res, 1300));
  t.equal(r.got.length, 3, 'an empty tick sends nothing');
  t.equal(scope.active, 0, 'idle: no timer, no task');
  c.transcript([{ text: 'later' }]);
  await until('the second round', () => r.got.length >= 6, 5000);
  t.same(r.got.slice(3).map((g) => JSON.parse(g.body).segments), [[{ text: 'later' }], [{ text: 'later' }], [{ text: 'later' }]], 'only the new segments');
  t.same(counters.drops.transcripts, 0);
});

t.test('slow receiver: no second round while one is in flight; the queue stays at 50, drops counted', async (t) => {
  const r = await receiver(t, (n) => ({ status: 200, delayMs: n === 1 ? 1500 : 0 }));
  const { c, counters } = rig(t, { transcriptWebhook: `${r.url}/hook` }, { transcriptTickMs: 100 });
  const msg = (i: number): unknown[] => [{ text: `m${i}`, i }];
  c.transcript(msg(0));
  await until('the first (slow) round to reach the receiver', () => r.got.length === 1, 5000);
  let dropped = 0;
  let maxDepth = 0;
  for (let i = 1; i <= 60; i++) {
    c.transcript(msg(i));
    if (i <= 10) dropped += Buffer.byteLength(JSON.stringify(msg(i)).slice(1, -1));
    maxDepth = Math.max(maxDepth, counters.depth.transcripts!);
  }
  t.equal(maxDepth, 50, 'bounded at 50 messages');
  await new Promise((res) => setTimeout(res, 500)); // several ticks while the round hangs
  t.equal(r.got.length, 1, 'ticks during the round start nothing');
  t.same([counters.depth.transcripts, counters.drops.transcripts, counters.droppedBytes.transcripts], [50, 10, dropped]);
  await until('the next round after the slow one', () => r.got.length === 2, 5000);
  const second = JSON.parse(r.got[1]!.body) as { segments: { i: number }[] };
  t.same(
    second.segments.map((s) => s.i),
    Array.from({ length: 50 }, (_, k) => k + 11),
    'the newest 50 messages, in order; the oldest 10 were dropped',
  );
  t.equal(r.maxOpen(), 1, 'never two rounds at once');
  await until('gauges back to 0', () => counters.bytes.transcripts === 0 && counters.depth.transcripts === 0, 5000);
});

t.test('dead receiver: rounds fail fast, one log line, nothing retried or kept', async (t) => {
  const { c, counters, errors, http } = rig(t, { transcriptWebhook: `${await deadUrl()}/hook` }, { transcriptTickMs: 50 });
  for (let i = 0; i < 3; i++) {
    c.transcript([{ text: `t${i}` }]);
    await until(`round ${i + 1} to be refused`, () => (http.stats().find((s) => s.target === 'transcript_webhook')?.results.refused ?? 0) > i, 5000);
  }
  await until('gauges back to 0', () => counters.bytes.transcripts === 0, 5000);
  t.equal(http.stats().find((s) => s.target === 'transcript_webhook')!.results.refused, 3, 'one request per round, no retries');
  t.equal(errors.length, 1, 'one line for the bad spell');
  t.match(errors[0], /^transcript_webhook 127\.0\.0\.1:\d+: ECONNREFUSED/);
  t.equal(counters.drops.transcripts, 0);
});

t.test('small budget: transcripts bounded by bytes too', async (t) => {
  const r = await receiver(t, () => 'hang');
  const { c, counters } = rig(t, { transcriptWebhook: `${r.url}/hook` }, { budgetBytes: 1000, transcriptTickMs: 50 });
  c.transcript([{ text: 'x'.repeat(100) }]);
  await until('the first round to hang at the receiver', () => r.got.length === 1, 5000);
  const held = c.bytes; // the hanging round's bytes stay charged
  const one = Buffer.byteLength(JSON.stringify({ text: 'y'.repeat(100), i: 10 }));
  let maxBytes = 0;
  for (let i = 10; i < 40; i++) {
    c.transcript([{ text: 'y'.repeat(100), i }]);
    maxBytes = Math.max(maxBytes, c.bytes, counters.bytes.transcripts!);
  }
  t.ok(maxBytes <= 1000, `within the budget (max ${maxBytes})`);
  const fit = Math.floor((1000 - held) / one);
  t.equal(counters.depth.transcripts, fit, 'as many as fit beside the round in flight');
  t.equal(counters.drops.transcripts, 30 - fit, 'the oldest dropped for bytes');
  const before = counters.droppedBytes.transcripts;
  const huge = [{ text: 'z'.repeat(2000) }];
  c.transcript(huge);
  t.equal(counters.droppedBytes.transcripts! - before!, Buffer.byteLength(JSON.stringify(huge[0])), 'larger than the budget: dropped itself');
  t.equal(counters.depth.transcripts, fit, 'and nothing else evicted for it');
});

t.test('close: scope.close(2000) aborts a hanging round, leaks nothing, gauges back to 0', async (t) => {
  const r = await receiver(t, () => 'hang');
  const { c, counters, scope, http } = rig(t, { transcriptWebhook: `${r.url}/hook`, transcriptApps: [`${r.url}/app`] }, { transcriptTickMs: 50 });
  c.transcript([{ text: 'a' }]);
  await until('both POSTs of the round to hang at the receiver', () => r.got.length === 2, 5000);
  c.transcript([{ text: 'b' }]); // queued behind the round
  t.ok(counters.bytes.transcripts! > 0 && counters.depth.transcripts === 1);
  const t0 = Date.now();
  t.equal(await scope.close(2000), 0, 'no leaked tasks');
  t.ok(Date.now() - t0 < 1000, 'aborted at once, not at the grace deadline');
  t.same([counters.bytes.transcripts, counters.depth.transcripts, scope.active, c.bytes], [0, 0, 0, 0]);
  const aborted = http.stats().reduce((n, s) => n + (s.results.aborted ?? 0), 0);
  t.equal(aborted, 2, 'both requests aborted');
  c.transcript([{ text: 'after' }]); // ignored
  c.close(); // idempotent after the scope's close
  t.same([counters.depth.transcripts, scope.active], [0, 0]);
});

t.test('close() before the scope: timer cleared, queue released', async (t) => {
  const r = await receiver(t);
  const { c, counters, scope } = rig(t, { transcriptWebhook: `${r.url}/hook` });
  c.transcript([{ text: 'a' }]);
  t.equal(scope.active, 1, 'the tick timer');
  c.close();
  t.same([scope.active, counters.depth.transcripts, counters.bytes.transcripts], [0, 0, 0]);
  await new Promise((res) => setTimeout(res, 1200));
  t.equal(r.got.length, 0, 'nothing sent after close');
  t.equal(await scope.close(2000), 0);
});

t.test('invalid URLs are reported and ignored', async (t) => {
  const r = await receiver(t);
  const { c, errors } = rig(t, { transcriptWebhook: 'not a url', transcriptApps: [`${r.url}/ok`] }, { transcriptTickMs: 50 });
  t.same(errors, ['transcript_webhook: invalid URL, ignored']);
  t.ok(c.wantsTranscripts, 'the valid app remains');
  c.transcript([{ text: 'a' }]);
  await until('the app POST', () => r.got.length === 1, 5000);
  const only = rig(t, { transcriptApps: ['::'] });
  t.notOk(only.c.wantsTranscripts, 'no valid target: no consumer');
  t.equal(only.scope.active, 0);
});

t.test('a scope closed before construction: nothing starts', async (t) => {
  const scope = new TaskScope();
  await scope.close(10);
  const counters = newQueueCounters();
  const http = new HttpClient({ allowPrivate: true });
  t.teardown(() => http.close());
  const c = new SessionConsumers({ uid: 'u', sampleRate: 16000, settings: { ...none, transcriptWebhook: 'http://127.0.0.1:9/' }, scope, http, counters, budgetBytes: 0 });
  c.transcript([{ text: 'x' }]);
  t.same([counters.depth.transcripts, scope.active], [0, 0]);
});
