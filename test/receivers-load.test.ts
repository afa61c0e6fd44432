// Slow and dead receivers under 100 sessions (DESIGN §3.2, §3.3): 100 pusher sessions of 16 kHz PCM,
// each sending a 1 s 101 and a 102 every 200 ms (5 s of audio per second: the 5 s audio webhook
// fires every second per session) for ~20 s. A third of the uids point every consumer (transcript
// webhook and app, audio webhook and app) at a receiver that answers after 10 s, a third at a port
// where nothing listens, a third have no consumer at all. With a 2 MiB session buffer budget:
// queues stay bounded and their drops are counted, the process's RSS stays flat, every sample of
// every session is stored (the durable path does not feel the bad receivers), the uids without a
// consumer never queue a byte nor cause a request; on disconnect every session, task and queued
// byte is gone within the close grace although 10 s requests were in flight, and a 104 sent just
// before the disconnect is still POSTed.
import t, { type Test } from 'tap';
import { createHash, type Hash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { WebSocket } from 'ws';
import { parseWav } from '../src/formats/wav.js';
import { createStore } from '../src/store/index.js';
import { metricSum, parseMetrics, type PromSample } from '../scripts/lib/prom.js';
import { freePort } from '../scripts/lib/service.js';
import { startReceiver } from './support/receiver.js';
import { audioMsg, pusherMsg, startTestService, until, type TestService } from './support/service.js';

const RATE = 16000;
const SEC_BYTES = RATE * 2;
const TICK_MS = 200;
const BUDGET = 2 << 20;
const CLOSE_GRACE_MS = 2000;
const QUEUES = ['transcripts', 'audio_webhook', 'audio_apps'] as const;
const MiB = 2 ** 20;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const mib = (b: number) => (b / MiB).toFixed(1);

/** One second of noise-like PCM, the same for every message, marked per (session, second) below. */
function baseSecond(): Buffer {
  const s = new Int16Array(RATE);
  let x = 0x2545f491;
  for (let i = 0; i < s.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    s[i] = (x >> 16) & 0x7fff;
  }
  return Buffer.from(s.buffer);
}

interface Client {
  uid: string;
  ws: WebSocket;
  hash: Hash;
  bytes: number;
  seconds: number;
}

/** Opens `uids` as pusher sessions at 16 kHz PCM. */
async function openAll(svc: TestService, uids: string[]): Promise<Client[]> {
  const clients: Client[] = [];
  for (const uid of uids) {
    const ws = await svc.ws(`/v1/trigger/listen?uid=${uid}&sample_rate=${RATE}`);
    ws.on('error', () => {});
    clients.push({ uid, ws, hash: createHash('sha256'), bytes: 0, seconds: 0 });
  }
  return clients;
}

/**
 * Every TICK_MS, each client sends a 101 with the next 1 s of its audio (marked with its index and
 * second, so misplaced or reordered pieces show) and a 102 with one segment; for `ms` of wall time.
 */
async function drive(clients: Client[], ms: number, t0: number): Promise<number> {
  const base = baseSecond();
  const start = Date.now();
  let ticks = 0;
  for (let next = start; Date.now() - start < ms; next += TICK_MS) {
    await sleep(next - Date.now());
    clients.forEach((c, i) => {
      const k = c.seconds++;
      const pcm = Buffer.from(base);
      for (let p = 0; p < pcm.length; p += 2000) {
        pcm.writeUInt16LE(i, p);
        pcm.writeUInt16LE(k, p + 2);
      }
      c.hash.update(pcm);
      c.bytes += pcm.length;
      c.ws.send(audioMsg(t0 + k, pcm));
      const seg = { id: `s${k}`, text: `word ${k} of ${c.uid}`, speaker: 'SPEAKER_00', speaker_id: 0, is_user: false, person_id: null, start: k, end: k + 1 };
      c.ws.send(pusherMsg(102, JSON.stringify({ segments: [seg], memory_id: null })));
    });
    ticks++;
  }
  return ticks;
}

/** Waits until every client's audio is in the store, then checks it is exactly what was sent. */
async function checkStored(t: Test, svc: TestService, clients: Client[], ms: number): Promise<void> {
  const store = createStore({ STORE: 'local', STORE_DIR: join(svc.dir, 'store'), GCS_BUCKET: '', GCS_API_ENDPOINT: '' });
  const want = new Map(clients.map((c) => [c.uid, c.bytes]));
  await until(
    async () => {
      const got = new Map<string, number>();
      for (const o of await store.list('chunks/')) {
        const uid = o.name.split('/')[1]!;
        got.set(uid, (got.get(uid) ?? 0) + o.size);
      }
      return [...want].every(([uid, n]) => (got.get(uid) ?? 0) >= n);
    },
    ms,
    `the audio of all ${clients.length} sessions in the store`,
  );
  const bad: string[] = [];
  let objects = 0;
  for (const c of clients) {
    const names = (await store.list(`chunks/${c.uid}/`)).map((o) => o.name);
    objects += names.length;
    const h = createHash('sha256');
    let n = 0;
    for (const name of names) {
      if (!name.startsWith(`chunks/${c.uid}/_/`) || !name.endsWith('.wav')) bad.push(`${c.uid}: unexpected object ${name}`);
      const w = parseWav(await store.read(name));
      const pcm = Buffer.from(w.samples.buffer, w.samples.byteOffset, w.samples.byteLength);
      h.update(pcm);
      n += pcm.length;
    }
    if (n !== c.bytes) bad.push(`${c.uid}: ${n} bytes stored of ${c.bytes} sent`);
    else if (h.digest('hex') !== c.hash.copy().digest('hex')) bad.push(`${c.uid}: stored audio differs from what was sent`);
  }
  t.same(bad, [], `every sample of all ${clients.length} sessions stored, in order (${objects} chunks, ${mib(clients.reduce((s, c) => s + c.bytes, 0))} MiB)`);
}

interface Sample {
  at: number;
  depth: Record<string, number>;
  bytes: Record<string, number>;
  http: number;
}

function sampleOf(m: PromSample[], at: number): Sample {
  const by = (name: string) => Object.fromEntries(QUEUES.map((q) => [q, metricSum(m, name, { queue: q }) ?? 0]));
  return { at, depth: by('pusher_queue_depth'), bytes: by('pusher_queue_bytes'), http: metricSum(m, 'pusher_http_requests_total') ?? 0 };
}

const scrape = async (svc: TestService) => parseMetrics(await (await fetch(svc.url('/metrics'), { signal: AbortSignal.timeout(10_000) })).text());
const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);

t.test('a uid without a consumer collects nothing for it', async (t) => {
  t.setTimeout(60_000);
  const svc = await startTestService({ SESSION_BUFFER_BYTES: '2MiB', WEBHOOK_ALLOW_PRIVATE: '1' });
  t.teardown(() => svc.close());
  const clients = await openAll(svc, Array.from({ length: 20 }, (_, i) => `n${i}`));
  const samples: Sample[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      samples.push(sampleOf(await scrape(svc), Date.now()));
      await sleep(250);
    }
  })();
  await drive(clients, 5000, Math.floor(Date.now() / 1000) - 3600);
  await until(async () => (await svc.metricSum('pusher_transcripts_total')) >= clients.length * 25, 10_000, 'every 102 read by the shards');
  sampling = false;
  await sampler;
  t.ok(samples.length >= 10, `${samples.length} samples of /metrics`);
  t.same(samples.filter((s) => sum(s.bytes) !== 0 || sum(s.depth) !== 0), [], 'pusher_queue_bytes and pusher_queue_depth 0 throughout');
  t.equal(samples.at(-1)!.http, 0, 'no outgoing HTTP request counted');
  const m = await scrape(svc);
  t.equal(metricSum(m, 'pusher_queue_drops_total') ?? 0, 0, 'nothing dropped');
  for (const c of clients) c.ws.close(1000);
  await until(async () => (await svc.metricSum('pusher_sessions_active')) === 0, 10_000, 'the sessions closed');
  await checkStored(t, svc, clients, 30_000);
});

t.test('100 sessions: a third with a slow receiver, a third with a dead one, a third with none', async (t) => {
  t.setTimeout(150_000);
  const LOAD_MS = 20_000;
  const N = 100;
  const slow = await startReceiver();
  slow.answer({ status: 200, body: 'ok', delayMs: 10_000 });
  t.teardown(() => slow.close());
  const proc = await startReceiver();
  t.teardown(() => proc.close());
  const deadPort = await freePort(); // nothing listens there: connections are refused
  const dead = (p: string) => `http://127.0.0.1:${deadPort}${p}`;
  const kind = (i: number) => (['slow', 'dead', 'none'] as const)[i % 3]!;
  const uids = Array.from({ length: N }, (_, i) => `u${i}`);
  const users: Record<string, object> = {};
  uids.forEach((uid, i) => {
    const url = kind(i) === 'slow' ? (p: string) => slow.url(p) : dead;
    if (kind(i) === 'none') return;
    users[uid] = { transcript_webhook: url('/transcripts'), transcript_apps: [url('/app/transcripts')], audio_bytes_webhook: { url: url('/audio'), seconds: 5 }, audio_apps: [url('/app/audio')] };
  });
  const withConsumers = Object.keys(users).length;
  const slowUids = new Set(uids.filter((_, i) => kind(i) === 'slow'));
  const dir = t.testdir();
  const settingsFile = join(dir, 'settings.json');
  writeFileSync(settingsFile, JSON.stringify({ default: { private_cloud_sync: true }, users }));
  const svc = await startTestService({
    SETTINGS_FILE: settingsFile,
    PROCESS_CONVERSATION_URL: proc.url('/process'),
    WEBHOOK_ALLOW_PRIVATE: '1',
    SESSION_BUFFER_BYTES: String(BUDGET),
    CLOSE_GRACE_MS: String(CLOSE_GRACE_MS),
  });
  t.teardown(() => svc.close());
  const clients = await openAll(svc, uids);
  t.teardown(() => clients.forEach((c) => c.ws.terminate()));

  // The slow receiver's requests, tallied by uid as they come (their bodies are not kept).
  const slowByUid = new Map<string, number>();
  const tally = () => {
    for (const r of slow.requests.splice(0)) {
      const uid = r.query.get('uid') ?? '?';
      slowByUid.set(uid, (slowByUid.get(uid) ?? 0) + 1);
    }
  };
  const rss: { at: number; rss: number }[] = [];
  const samples: Sample[] = [];
  const start = Date.now();
  const rssTimer = setInterval(() => rss.push({ at: Date.now() - start, rss: process.memoryUsage().rss }), 250);
  t.teardown(() => clearInterval(rssTimer));
  let sampling = true;
  const sampler = (async () => {
    for (let next = Date.now(); sampling; next += 1000) {
      await sleep(next - Date.now());
      samples.push(sampleOf(await scrape(svc), Date.now() - start));
      tally();
    }
  })();
  const rssBefore = process.memoryUsage().rss;
  const ticks = await drive(clients, LOAD_MS, Math.floor(Date.now() / 1000) - 3600);
  const loadMs = Date.now() - start;
  clearInterval(rssTimer);
  const mem = process.memoryUsage();

  // The durable path kept up: everything sent is fsync'd while the bad receivers still hang.
  const sent = clients.reduce((s, c) => s + c.bytes, 0);
  let durableMs = 0;
  await until(
    async () => {
      durableMs = Date.now() - start - loadMs;
      return (await svc.metricSum('pusher_audio_bytes_durable_total')) >= sent;
    },
    10_000,
    `pusher_audio_bytes_durable_total to reach the ${sent} bytes sent`,
  );
  sampling = false;
  await sampler;
  tally();
  const m = await scrape(svc);
  t.comment(`${ticks} ticks of ${N} × (1 s 101 + 102) in ${loadMs} ms (${((ticks * N) / (loadMs / 1000)).toFixed(0)} s of audio/s); all durable ${durableMs} ms after the last send`);

  // Queues bounded.
  const maxOf = (f: (s: Sample) => number) => Math.max(...samples.map(f));
  const over: string[] = [];
  for (const s of samples) {
    if (s.depth.audio_webhook! > 20 * withConsumers) over.push(`${s.at} ms: audio_webhook depth ${s.depth.audio_webhook}`);
    if (s.depth.audio_apps! > 20 * withConsumers) over.push(`${s.at} ms: audio_apps depth ${s.depth.audio_apps}`);
    if (s.depth.transcripts! > 50 * withConsumers) over.push(`${s.at} ms: transcripts depth ${s.depth.transcripts}`);
    if (sum(s.bytes) > BUDGET * withConsumers) over.push(`${s.at} ms: ${sum(s.bytes)} bytes queued`);
  }
  t.ok(samples.length >= 15, `${samples.length} samples of /metrics, one a second`);
  t.same(over, [], `queue depths and bytes within their bounds (max depth ${QUEUES.map((q) => `${q} ${maxOf((s) => s.depth[q]!)}`).join(', ')}; max ${mib(maxOf((s) => sum(s.bytes)))} MiB held of a ${mib(BUDGET * withConsumers)} MiB budget)`);
  // The budget bites: the slow and dead third fill theirs (each session's 2 MiB), so it is what holds them.
  t.ok(maxOf((s) => sum(s.bytes)) > 0.5 * BUDGET * withConsumers, `the budget is what bounds the queues (max ${mib(maxOf((s) => sum(s.bytes)))} MiB held)`);
  const drops = Object.fromEntries(QUEUES.map((q) => [q, metricSum(m, 'pusher_queue_drops_total', { queue: q }) ?? 0]));
  const droppedBytes = Object.fromEntries(QUEUES.map((q) => [q, metricSum(m, 'pusher_queue_dropped_bytes_total', { queue: q }) ?? 0]));
  t.comment(`drops ${JSON.stringify(drops)}; dropped bytes ${JSON.stringify(droppedBytes)}`);
  for (const q of ['audio_webhook', 'audio_apps']) {
    t.ok(drops[q]! > 0 && droppedBytes[q]! > 0, `${q}: drops counted (${drops[q]} items, ${mib(droppedBytes[q]!)} MiB)`);
  }
  t.ok(droppedBytes.audio_webhook! % (5 * SEC_BYTES) === 0, 'audio_webhook drops are whole 5 s items');

  // RSS flat: the second half of the load against the first.
  const half = loadMs / 2;
  const first = rss.filter((r) => r.at < half).map((r) => r.rss);
  const second = rss.filter((r) => r.at >= half).map((r) => r.rss);
  const growth = Math.max(...second) - Math.max(...first);
  const figures = `RSS max ${mib(Math.max(...first))} MiB in the first half, ${mib(Math.max(...second))} MiB in the second: growth ${mib(growth)} MiB`;
  t.comment(figures);
  t.comment(`before the load: RSS ${mib(rssBefore)} MiB; at its end: RSS ${mib(mem.rss)} MiB, main heap ${mib(mem.heapUsed)} MiB, external ${mib(mem.external)} MiB (array buffers ${mib(mem.arrayBuffers)} MiB), shard heaps ${mib(metricSum(m, 'pusher_shard_heap_bytes') ?? 0)} MiB`);
  t.ok(growth < 64 * MiB, figures);

  // HTTP: only the configured consumers' targets; the slow receiver saw only slow uids, each of them.
  const http = m.filter((s) => s.name === 'pusher_http_requests_total');
  t.comment(`http: ${http.map((s) => `${s.labels.target}/${s.labels.result}=${s.value}`).join(' ')}`);
  const targets = new Set(http.map((s) => s.labels.target));
  t.same([...targets].sort(), ['audio_app', 'audio_webhook', 'transcript_app', 'transcript_webhook'], 'requests only for the configured consumers (no process job yet)');
  const refused = http.filter((s) => s.labels.result === 'refused').reduce((a, s) => a + s.value, 0);
  t.ok(refused >= 33 * 10, `the dead receivers' requests refused (${refused})`);
  t.ok(http.every((s) => ['2xx', 'refused', 'timeout', 'aborted'].includes(s.labels.result!)), 'no other outcome');
  t.same([...slowByUid.keys()].filter((u) => !slowUids.has(u)), [], 'the slow receiver saw only slow uids');
  t.same([...slowUids].filter((u) => !slowByUid.has(u)), [], `every slow uid reached it (${[...slowByUid.values()].reduce((a, b) => a + b, 0)} requests)`);
  t.equal(metricSum(m, 'pusher_rejected_total') ?? 0, 0, 'no session rejected');
  t.equal(metricSum(m, 'pusher_sessions_active'), N, 'all sessions still open');

  // A 104 from a slow-receiver session, then everyone disconnects with 10 s requests in flight.
  const inFlight = metricSum(m, 'pusher_session_tasks_active') ?? 0;
  const u0 = clients[0]!;
  u0.ws.send(pusherMsg(104, JSON.stringify({ conversation_id: 'load-c', language: 'en', finalization_job_id: 'load-f' })));
  const closedAt = Date.now();
  for (const c of clients) c.ws.close(1000);
  let closeMs = 0;
  await until(
    async () => {
      const x = await scrape(svc);
      closeMs = Date.now() - closedAt;
      return [metricSum(x, 'pusher_sessions_active'), metricSum(x, 'pusher_session_tasks_active'), metricSum(x, 'pusher_queue_depth'), metricSum(x, 'pusher_queue_bytes')].every((v) => v === 0);
    },
    CLOSE_GRACE_MS + 2000,
    `sessions, session tasks, queue depth and bytes back to 0 within CLOSE_GRACE_MS (${CLOSE_GRACE_MS} ms) + 2 s of the disconnect`,
  );
  t.pass(`sessions, tasks (${inFlight} before), queue depth and bytes at 0 ${closeMs} ms after the disconnect`);
  t.equal(await svc.metricSum('pusher_session_tasks_leaked_total'), 0, 'no task outlived the close grace');
  await until(() => proc.to('/process').length >= 1, 15_000, 'the POST of the 104 sent just before the disconnect');
  t.same(JSON.parse(proc.to('/process')[0]!.body.toString()), { uid: 'u0', conversation_id: 'load-c', language: 'en', finalization_job_id: 'load-f' }, 'the 104 of a slow-receiver session POSTed after it left');

  // Every sample of every session stored, whatever its receivers did.
  await checkStored(t, svc, clients, 60_000);
  t.equal(proc.to('/process').length, 1, 'the job POSTed once');
});
