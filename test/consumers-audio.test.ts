// Audio fan-out (audio-bytes webhook, realtime audio apps) against real HTTP receivers on
// 127.0.0.1 (DESIGN §3.3): shapes, cadence by audio, retries, bounds, budget, close.
import t, { type Test } from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpClient } from '../src/http/client.js';
import { newQueueCounters, SessionConsumers, type ConsumerSettings, type QueueCounters } from '../src/consumers/session-consumers.js';
import { TaskScope } from '../src/session/task-scope.js';
import { periodBuffers } from '../src/consumers/audio.js';

interface Got {
  method: string;
  path: string;
  search: string;
  type: string | undefined;
  body: Buffer;
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
      const g: Got = { method: req.method!, path: u.pathname, search: u.search, type: req.headers['content-type'], body: Buffer.concat(parts), at: Date.now() };
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

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `n` bytes of distinguishable PCM (a byte pattern that does not repeat with any period used here). */
function pcm(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) b[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
  return b;
}

const none: ConsumerSettings = { transcriptWebhook: null, transcriptApps: [], audioBytesWebhook: null, audioApps: [] };

interface RigOptions {
  sampleRate?: number;
  budgetBytes?: number;
  retryDelaysMs?: readonly number[];
}

function rig(t: Test, settings: Partial<ConsumerSettings>, o: RigOptions = {}) {
  const scope = new TaskScope();
  const http = new HttpClient({ allowPrivate: true });
  const counters: QueueCounters = newQueueCounters();
  const errors: string[] = [];
  const c = new SessionConsumers({
    uid: 'u1',
    sampleRate: o.sampleRate ?? 16000,
    settings: { ...none, ...settings },
    scope,
    http,
    counters,
    budgetBytes: o.budgetBytes ?? 20 << 20,
    onError: (m) => errors.push(m),
    ...(o.retryDelaysMs ? { retryDelaysMs: o.retryDelaysMs } : {}),
  });
  t.teardown(async () => {
    await scope.close(2000);
    await http.close();
  });
  const stat = (target: string, result: string): number => (http.stats().find((s) => s.target === target)?.results as Record<string, number> | undefined)?.[result] ?? 0;
  return { scope, http, counters, errors, c, stat };
}

const S16 = 16000 * 2; // bytes per second of PCM16 mono at 16 kHz

t.test('shapes and cadence: 12 s at once → webhook 2 × 5 s (2 s left, not sent on close), apps 3 × 4 s', async (t) => {
  const hook = await receiver(t);
  const apps = await receiver(t);
  const { c, counters, scope } = rig(t, { audioBytesWebhook: { url: `${hook.url}/bytes?key=k`, seconds: 5 }, audioApps: [`${apps.url}/a1`, `${apps.url}/a2?x=y`] });
  t.ok(c.wantsPcm);
  t.notOk(c.wantsTranscripts);
  const audio = pcm(12 * S16);
  c.pcm(audio, 0, audio.length);
  await until('2 webhook POSTs', () => hook.got.length >= 2, 5000);
  await until('3 × 2 app POSTs', () => apps.got.length >= 6, 5000);
  for (const g of hook.got) t.same([g.method, g.path, g.search, g.type], ['POST', '/bytes', '?key=k&sample_rate=16000&uid=u1', 'application/octet-stream']);
  t.ok(hook.got[0]!.body.equals(audio.subarray(0, 5 * S16)), 'item 1: seconds 0-5, exact bytes');
  t.ok(hook.got[1]!.body.equals(audio.subarray(5 * S16, 10 * S16)), 'item 2: seconds 5-10');
  for (const path of ['/a1', '/a2']) {
    const mine = apps.got.filter((g) => g.path === path);
    t.equal(mine.length, 3, `${path}: every 4 s of audio`);
    t.same(mine.map((g) => g.search), path === '/a1' ? Array(3).fill('?sample_rate=16000&uid=u1') : Array(3).fill('?x=y&sample_rate=16000&uid=u1'));
    t.same(mine.map((g) => g.type), Array(3).fill('application/octet-stream'));
    mine.forEach((g, i) => t.ok(g.body.equals(audio.subarray(i * 4 * S16, (i + 1) * 4 * S16)), `${path} item ${i + 1}: exact bytes in order`));
  }
  await until('both senders idle', () => counters.depth.audio_webhook === 0 && counters.depth.audio_apps === 0 && scope.active === 0, 5000);
  t.equal(counters.bytes.audio_apps, 0, 'apps: 12 s is exactly 3 periods, nothing pending');
  t.equal(counters.bytes.audio_webhook, 5 * S16, 'webhook: the collecting buffer (pre-sized to one period) holds the last 2 s');
  c.close();
  await pause(300);
  t.equal(hook.got.length, 2, 'the partial 2 s were discarded, not sent');
  t.same([counters.bytes.audio_webhook, counters.bytes.audio_apps, counters.depth.audio_webhook, c.bytes], [0, 0, 0, 0]);
  t.same([counters.drops.audio_webhook, counters.drops.audio_apps], [0, 0]);
  c.pcm(audio, 0, audio.length); // after close: ignored
  t.equal(c.bytes, 0);
});

t.test('records of any size and offset: cut by sample count exactly, in order', async (t) => {
  const hook = await receiver(t);
  const { c, counters } = rig(t, { audioBytesWebhook: { url: `${hook.url}/b`, seconds: 0.5 } }, { sampleRate: 8000 });
  const period = 4000 * 2;
  const audio = pcm(3 * period + 1234, 7);
  const frame = new Uint8Array(2000); // records arrive as views into a larger buffer (a ring slot)
  for (let p = 0; p < audio.length; ) {
    const n = Math.min(333, audio.length - p); // odd sizes: a record may even split a sample
    frame.set(audio.subarray(p, p + n), 17);
    c.pcm(frame, 17, n);
    p += n;
  }
  await until('3 webhook POSTs', () => hook.got.length >= 3, 5000);
  hook.got.forEach((g, i) => t.ok(g.body.equals(audio.subarray(i * period, (i + 1) * period)), `item ${i + 1}: exact bytes`));
  t.equal(hook.got[0]!.search, '?sample_rate=8000&uid=u1');
  await pause(200);
  t.equal(hook.got.length, 3);
  await until('the sender to release the last item', () => counters.bytes.audio_webhook === period, 5000);
});

t.test('retries: 500, 500, 200 → delivered once, after 1 s and 5 s', async (t) => {
  const hook = await receiver(t, (n) => (n <= 2 ? 500 : 200));
  const { c, counters, errors } = rig(t, { audioBytesWebhook: { url: `${hook.url}/b`, seconds: 1 } }, { sampleRate: 8000 });
  const audio = pcm(16000, 3);
  c.pcm(audio, 0, audio.length);
  await until('the third attempt (after 1 s + 5 s of backoff)', () => hook.got.length === 3, 12_000);
  const [a, b, d] = hook.got;
  t.ok(b!.at - a!.at >= 950 && b!.at - a!.at < 3000, `first retry after 1 s (${b!.at - a!.at} ms)`);
  t.ok(d!.at - b!.at >= 4950 && d!.at - b!.at < 8000, `second retry after 5 s (${d!.at - b!.at} ms)`);
  for (const g of hook.got) t.ok(g.body.equals(audio), 'the same item each time');
  await until('the delivered item released', () => counters.bytes.audio_webhook === 0, 5000);
  t.same([counters.drops.audio_webhook, counters.depth.audio_webhook], [0, 0]);
  const host = new URL(hook.url).host;
  t.same(errors, [`audio_webhook ${host}: HTTP 500`, `audio_webhook ${host}: recovered`], 'one line going bad, one recovering');
});

t.test('retries: 400 → not retried, dropped and counted; 429 and 408 → retried; 503 forever → given up after 3 retries', async (t) => {
  const codes: Record<string, number[]> = { '/400': [400], '/429': [429, 408, 200], '/503': [503, 503, 503, 503, 503] };
  const seen: Record<string, number> = {};
  const r = await receiver(t, (_n, g) => codes[g.path]![(seen[g.path] = (seen[g.path] ?? 0) + 1) - 1]!);
  const audio = pcm(16000, 5);
  const run = async (path: string) => {
    const x = rig(t, { audioBytesWebhook: { url: `${r.url}${path}`, seconds: 1 } }, { sampleRate: 8000, retryDelaysMs: [30, 30, 30] });
    x.c.pcm(audio, 0, audio.length);
    await until(`${path}: the item to settle`, () => x.counters.bytes.audio_webhook === 0 && x.scope.active === 0, 5000);
    await pause(150); // time for a retry that must not come
    return x.counters;
  };
  const c400 = await run('/400');
  t.equal(seen['/400'], 1, '400: one attempt');
  t.same([c400.drops.audio_webhook, c400.droppedBytes.audio_webhook], [1, 16000], '400: dropped and counted');
  const c429 = await run('/429');
  t.equal(seen['/429'], 3, '429, then 408, were retried');
  t.same([c429.drops.audio_webhook, c429.droppedBytes.audio_webhook], [0, 0]);
  const c503 = await run('/503');
  t.equal(seen['/503'], 4, '503: the first try and 3 retries');
  t.same([c503.drops.audio_webhook, c503.droppedBytes.audio_webhook], [1, 16000], 'given up: dropped and counted');
});

t.test('dead webhook (connection refused): retried, then dropped; the queue stays at 20', async (t) => {
  const { c, counters, stat, errors } = rig(t, { audioBytesWebhook: { url: `${await deadUrl()}/b`, seconds: 1 } }, { sampleRate: 8000, retryDelaysMs: [100, 100, 100] });
  const one = 16000;
  const audio = pcm(one, 9);
  c.pcm(audio, 0, one);
  await until('the first attempt to be refused', () => stat('audio_webhook', 'refused') >= 1, 5000);
  let maxDepth = 0;
  for (let i = 0; i < 25; i++) {
    c.pcm(audio, 0, one);
    maxDepth = Math.max(maxDepth, counters.depth.audio_webhook!);
  }
  t.equal(maxDepth, 20, 'bounded at 20 items');
  t.same([counters.drops.audio_webhook, counters.droppedBytes.audio_webhook], [5, 5 * one], '26 items: 1 in flight, 20 queued, 5 of the oldest dropped');
  await until('the first item to be given up after 1 + 3 attempts', () => counters.drops.audio_webhook === 6, 5000);
  const refused = stat('audio_webhook', 'refused');
  t.ok(refused === 4 || refused === 5, `1 + 3 attempts for the first item (and maybe the next item's first: ${refused})`);
  t.equal(errors.length, 1, 'one line for the bad spell');
  t.match(errors[0], /ECONNREFUSED/);
});

t.test('slow apps: one item in flight, 20 queued, drops counted; not retried', async (t) => {
  const apps = await receiver(t, () => ({ status: 200, delayMs: 600 }));
  const { c, counters } = rig(t, { audioApps: [`${apps.url}/a`] }, { sampleRate: 8000 });
  const four = 4 * 8000 * 2;
  const audio = pcm(four, 11);
  c.pcm(audio, 0, four);
  await until('the first (slow) POST to reach the app', () => apps.got.length === 1, 5000);
  let maxDepth = 0;
  for (let i = 0; i < 30; i++) {
    c.pcm(audio, 0, four);
    maxDepth = Math.max(maxDepth, counters.depth.audio_apps!);
  }
  t.equal(maxDepth, 20);
  t.same([counters.drops.audio_apps, counters.droppedBytes.audio_apps], [10, 10 * four]);
  await pause(300);
  t.equal(apps.got.length, 1, 'one at a time');
  await until('the second item after the slow one', () => apps.got.length === 2, 5000);
  t.equal(apps.maxOpen(), 1);
  const failing = await receiver(t, () => 500);
  const f = rig(t, { audioApps: [`${failing.url}/a`] }, { sampleRate: 8000 });
  f.c.pcm(audio, 0, four);
  await until('the failing app to answer', () => f.counters.bytes.audio_apps === 0 && f.scope.active === 0, 5000);
  await pause(1300);
  t.equal(failing.got.length, 1, 'apps are not retried');
  t.equal(f.counters.drops.audio_apps, 0, 'a failed app POST is not a queue drop (it is in the HTTP figures)');
  t.equal(f.stat('audio_app', '5xx'), 1);
});

t.test('small budget: collecting buffer + in flight + queue never exceed it', async (t) => {
  const hook = await receiver(t, () => 'hang');
  const period = 16000; // 1 s at 8 kHz
  const { c, counters } = rig(t, { audioBytesWebhook: { url: `${hook.url}/b`, seconds: 1 } }, { sampleRate: 8000, budgetBytes: 50_000 });
  const audio = pcm(period, 13);
  c.pcm(audio, 0, 100);
  t.equal(c.bytes, period, 'the collecting buffer counts from its allocation');
  c.pcm(audio, 100, period - 100);
  await until('the first item to hang at the receiver', () => hook.got.length === 1, 5000);
  let max = 0;
  for (let i = 0; i < 10; i++) {
    c.pcm(audio, 0, period);
    max = Math.max(max, c.bytes, counters.bytes.audio_webhook!);
  }
  c.pcm(audio, 0, 1);
  max = Math.max(max, c.bytes);
  t.ok(max <= 50_000, `within the budget (max ${max})`);
  t.equal(counters.depth.audio_webhook, 1, 'room for one queued item beside the one in flight and the collector');
  t.same([counters.drops.audio_webhook, counters.droppedBytes.audio_webhook], [9, 9 * period]);
  t.equal(c.bytes, 3 * period);
});

t.test('small budget: no room beside what is in flight → the period is skipped and counted', async (t) => {
  const hook = await receiver(t, () => 'hang');
  const apps = await receiver(t, () => 'hang');
  const period = 4 * 2000 * 2; // 4 s at 2 kHz: both consumers cut 16000-byte items
  const { c, counters } = rig(t, { audioBytesWebhook: { url: `${hook.url}/b`, seconds: 4 }, audioApps: [`${apps.url}/a`] }, { sampleRate: 2000, budgetBytes: 40_000 });
  const audio = pcm(3 * period, 8);
  c.pcm(audio, 0, period);
  await until('both first items to hang at their receivers', () => hook.got.length === 1 && apps.got.length === 1, 5000);
  t.equal(c.bytes, 2 * period, 'two items in flight');
  c.pcm(audio, period, 2 * period);
  t.equal(c.bytes, 2 * period, 'no room for a collecting buffer: nothing allocated');
  t.same([counters.drops.audio_webhook, counters.drops.audio_apps, counters.droppedBytes.audio_webhook], [2, 2, 2 * period]);
});

t.test('small budget: a growing buffer refused mid-period is let go, the period skipped', async (t) => {
  const hook = await receiver(t);
  const apps = await receiver(t, () => 'hang');
  const limit = 1_400_000;
  const period = 40 * S16; // 1.28 MB: grows past the 1 MiB pre-size at 32.8 s
  const { c, counters } = rig(t, { audioBytesWebhook: { url: `${hook.url}/b`, seconds: 40 }, audioApps: [`${apps.url}/a`] }, { budgetBytes: limit });
  const audio = pcm(period + S16, 12);
  let max = 0;
  for (let p = 0; p < audio.length; p += 64000) {
    c.pcm(audio, p, Math.min(64000, audio.length - p));
    max = Math.max(max, c.bytes);
    if (p === 64000 * 10) await until('the first app item to hang', () => apps.got.length === 1, 5000);
  }
  t.ok(max <= limit, `within the budget (max ${max})`);
  t.same([counters.drops.audio_webhook, counters.droppedBytes.audio_webhook], [1, period], 'the 40 s period could not be held: dropped');
  await pause(100);
  t.equal(hook.got.length, 0);
  t.equal(counters.bytes.audio_webhook, 1 << 20, 'the next period collects again (pre-sized buffer)');
});

t.test('a period larger than the whole budget is not collected at all', async (t) => {
  const hook = await receiver(t);
  const { c, counters, errors, scope } = rig(t, { audioBytesWebhook: { url: `${hook.url}/b`, seconds: 5 } }, { sampleRate: 8000, budgetBytes: 64_000 });
  t.match(errors, [/audio_webhook: 5 s of audio exceed the session buffer budget \(64000 bytes\)/]);
  const audio = pcm(12 * 16000, 2);
  c.pcm(audio, 0, audio.length);
  t.same([c.bytes, counters.bytes.audio_webhook, scope.active], [0, 0, 0], 'nothing allocated, nothing sent');
  t.same([counters.drops.audio_webhook, counters.droppedBytes.audio_webhook], [2, 2 * 80_000], 'each period counted as a drop');
  await pause(100);
  t.equal(hook.got.length, 0);
});

t.test('a long period grows its buffer by doubling past the 1 MiB pre-size', async (t) => {
  const hook = await receiver(t);
  const { c, counters } = rig(t, { audioBytesWebhook: { url: `${hook.url}/b`, seconds: 40 } }, { sampleRate: 16000 });
  const period = 40 * S16; // 1.28 MB
  const audio = pcm(period + 10, 4);
  c.pcm(audio, 0, 1);
  t.equal(c.bytes, 1 << 20, 'pre-sized to 1 MiB');
  for (let p = 1; p < audio.length; p += 65536) c.pcm(audio, p, Math.min(65536, audio.length - p));
  await until('the 40 s item', () => hook.got.length === 1, 5000);
  t.ok(hook.got[0]!.body.equals(audio.subarray(0, period)), 'exact bytes across the growth');
  await until('released', () => counters.bytes.audio_webhook === 1 << 20, 5000); // the next period's buffer (10 bytes in)
});

t.test('close: scope.close(2000) with requests hanging → 0 leaked tasks, gauges back to 0', async (t) => {
  const hook = await receiver(t, () => 'hang');
  const apps = await receiver(t, () => 'hang');
  const { c, counters, scope, stat } = rig(t, { audioBytesWebhook: { url: `${hook.url}/b`, seconds: 5 }, audioApps: [`${apps.url}/a`], transcriptWebhook: `${hook.url}/t` });
  const audio = pcm(11 * S16, 6);
  c.pcm(audio, 0, audio.length); // webhook: 2 items (1 in flight) + 1 s; apps: 2 items (1 in flight) + 3 s
  c.transcript([{ text: 'x' }]);
  await until('both receivers to hold a request', () => hook.got.length === 1 && apps.got.length === 1, 5000);
  t.same([counters.depth.audio_webhook, counters.depth.audio_apps, counters.depth.transcripts], [1, 1, 1]);
  t.ok(c.bytes > 0);
  const t0 = Date.now();
  t.equal(await scope.close(2000), 0, 'no leaked tasks');
  t.ok(Date.now() - t0 < 1000, `aborted at once (${Date.now() - t0} ms)`);
  t.equal(scope.active, 0);
  for (const k of ['depth', 'bytes'] as const) t.same(counters[k], { transcripts: 0, audio_webhook: 0, audio_apps: 0 }, `${k} gauges back to 0`);
  t.same(counters.drops, { transcripts: 0, audio_webhook: 0, audio_apps: 0 }, 'closing is not dropping');
  t.equal(c.bytes, 0);
  t.equal(stat('audio_webhook', 'aborted') + stat('audio_app', 'aborted'), 2);
  await pause(200);
  t.same([hook.got.length, apps.got.length], [1, 1], 'nothing sent after close');
});

t.test('close() while a retry waits: the wait ends, nothing is sent again', async (t) => {
  const hook = await receiver(t, () => 503);
  const { c, counters, scope } = rig(t, { audioBytesWebhook: { url: `${hook.url}/b`, seconds: 1 } }, { sampleRate: 8000 });
  c.pcm(pcm(16000), 0, 16000);
  await until('the first failed attempt', () => hook.got.length === 1, 5000);
  await pause(50);
  t.equal(scope.active, 2, 'the sender task and its 1 s retry timer');
  c.close();
  await until('the sender to end', () => scope.active === 0, 1000);
  t.same([counters.bytes.audio_webhook, counters.drops.audio_webhook], [0, 0]);
  await pause(1200);
  t.equal(hook.got.length, 1);
});

t.test('no consumer configured: wantsPcm=false and pcm() allocates nothing', async (t) => {
  const { c, counters, scope } = rig(t, {});
  t.notOk(c.wantsPcm);
  t.notOk(c.wantsTranscripts);
  const audio = pcm(12 * S16);
  for (let i = 0; i < 10; i++) c.pcm(audio, 0, audio.length);
  c.transcript([{ text: 'x' }]);
  t.same([c.bytes, scope.active], [0, 0]);
  for (const k of ['depth', 'bytes', 'drops'] as const) t.same(counters[k], { transcripts: 0, audio_webhook: 0, audio_apps: 0 });
  // Only a transcript consumer: audio is still not collected.
  const tr = rig(t, { transcriptWebhook: 'http://127.0.0.1:9/t' });
  t.notOk(tr.c.wantsPcm);
  tr.c.pcm(audio, 0, audio.length);
  t.equal(tr.c.bytes, 0);
  // A configured audio consumer allocates nothing before its first audio.
  const lazy = rig(t, { audioApps: ['http://127.0.0.1:9/a'] });
  t.ok(lazy.c.wantsPcm);
  t.equal(lazy.c.bytes, 0);
  // Invalid URLs only: reported, no consumer.
  const bad = rig(t, { audioBytesWebhook: { url: 'nope', seconds: 5 }, audioApps: ['::'] });
  t.notOk(bad.c.wantsPcm);
  t.same(bad.errors, ['audio_webhook: invalid URL, ignored', 'audio_app: invalid URL, ignored']);
});

t.test('period buffers are pooled: taken back when sent (2xx) or dropped unsent, never after a failure; reuse changes no byte sent', async (t) => {
  const idle = (): number => periodBuffers.idleBytes;
  // Sent: 1 s periods at 12 kHz (24,000 bytes, a size no other test uses), one after the other.
  const hook = await receiver(t);
  const a = rig(t, { audioBytesWebhook: { url: `${hook.url}/b`, seconds: 1 } }, { sampleRate: 12000 });
  const period = 24000;
  const audio = pcm(6 * period, 21);
  const before = idle();
  for (let k = 0; k < 6; k++) {
    a.c.pcm(audio, k * period, period);
    await until(`POST ${k + 1} to be answered and released`, () => hook.got.length === k + 1 && a.counters.bytes.audio_webhook === 0 && a.scope.active === 0, 5000);
  }
  hook.got.forEach((g, i) => t.ok(g.body.equals(audio.subarray(i * period, (i + 1) * period)), `item ${i + 1}: exact bytes though its buffer was reused`));
  t.equal(idle() - before, period, 'one buffer went round all six periods');

  // Dropped unsent: a slow app, 30 periods pushed while the first is in flight → 10 evicted.
  const apps = await receiver(t, () => ({ status: 200, delayMs: 500 }));
  const b = rig(t, { audioApps: [`${apps.url}/a`] }, { sampleRate: 11025 });
  const four = 4 * 11025 * 2;
  const chunk = pcm(four, 22);
  b.c.pcm(chunk, 0, four);
  await until('the first (slow) app POST', () => apps.got.length === 1, 5000);
  const beforeDrops = idle();
  const realAlloc = Buffer.allocUnsafeSlow;
  let fresh = 0;
  Buffer.allocUnsafeSlow = (n: number) => ((fresh += n === four ? 1 : 0), realAlloc(n));
  try {
    for (let i = 0; i < 30; i++) b.c.pcm(chunk, 0, four);
  } finally {
    Buffer.allocUnsafeSlow = realAlloc;
  }
  t.equal(b.counters.drops.audio_apps, 10);
  t.equal(fresh, 21, '20 to fill the queue and 1 more: from then on each period takes the buffer the last eviction gave back (30 without the pool)');
  t.equal(idle() - beforeDrops, four, 'the last evicted buffer waits in the pool');

  // Failed: a 500 with no retries is not given back (its bytes may still be in a socket write).
  const failing = await receiver(t, () => 500);
  const f = rig(t, { audioApps: [`${failing.url}/a`] }, { sampleRate: 10000 });
  const period10 = 4 * 10000 * 2;
  const beforeFail = idle();
  f.c.pcm(pcm(period10, 23), 0, period10);
  await until('the failing app to answer', () => f.counters.bytes.audio_apps === 0 && f.scope.active === 0, 5000);
  t.equal(idle(), beforeFail, 'the failed buffer stays out of the pool');
});
