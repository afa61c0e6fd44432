// DESIGN §2.3, §3.3 end to end: what a client sends ends up, byte for byte, in playable objects in
// the store — through acks, conversation switches, a store outage, a full spool and kill -9.
import t from 'tap';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { wavToLc3 } from '../src/codec/transcode.js';
import { parseLc3File } from '../src/formats/lc3file.js';
import { encodeWav, parseWav } from '../src/formats/wav.js';
import { testSignal } from './support/audio.js';
import { FakeGcs } from './support/fake-gcs.js';
import { closed, startTestService, until } from './support/service.js';

const frames = parseLc3File(wavToLc3(encodeWav(16000, 1, testSignal(16000, 1)), { bitrate: 24000, frameUs: 10000 })).frames;

/** Frames of `uid` in the store (local directory or fake GCS), in conversation-then-time order. */
function storedFrames(objects: { name: string; data: Buffer }[], uid: string): { frames: Buffer[]; chunks: number } {
  const mine = objects.filter((o) => o.name.startsWith(`chunks/${uid}/`) && o.name.endsWith('.lc3'));
  const start = (n: string) => Number(n.slice(n.lastIndexOf('/') + 1, -'.lc3'.length));
  mine.sort((a, b) => start(a.name) - start(b.name));
  const out: Buffer[] = [];
  for (const o of mine) for (const f of parseLc3File(o.data).frames) out.push(Buffer.from(f));
  return { frames: out, chunks: mine.length };
}

function localObjects(dir: string): { name: string; data: Buffer }[] {
  const out: { name: string; data: Buffer }[] = [];
  const walk = (d: string) => {
    if (!existsSync(d)) return;
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (e.endsWith('.lc3') || e.endsWith('.wav')) out.push({ name: relative(dir, p), data: readFileSync(p) });
    }
  };
  walk(dir);
  return out;
}

/** Streams `n` frames at full speed; returns the acks seen (cumulative frames). */
function stream(ws: WebSocket, from: number, n: number, switchAt?: { at: number; id: string }): void {
  for (let i = from; i < from + n; i++) {
    if (switchAt && i === switchAt.at) ws.send(JSON.stringify({ type: 'conversation', id: switchAt.id }));
    ws.send(frames[i % frames.length]!);
  }
}

function lastAck(ws: WebSocket): { frames: number } {
  const state = { frames: 0 };
  ws.on('message', (d: Buffer) => {
    if (d.readUInt32LE(0) === 202) state.frames = (JSON.parse(d.subarray(4).toString()) as { frames: number }).frames;
  });
  return state;
}

t.test('stored chunks are playable by dlc3 and hold exactly the frames sent, across switches', async (t) => {
  const svc = await startTestService({ CHUNK_SECONDS: '1', FSYNC_MS: '50' });
  t.teardown(() => svc.close());
  const N = 20;
  const PER = 250;
  const socks = await Promise.all(Array.from({ length: N }, (_, i) => svc.ws(`/v1/audio/stream?uid=s${i}&ack=1`)));
  const acks = socks.map(lastAck);
  socks.forEach((ws, i) => stream(ws, 0, PER, { at: 120, id: `conv-${i}` }));
  await until(() => acks.every((a) => a.frames === PER), 30000, 'every frame acked');
  await Promise.all(socks.map((ws) => { const c = closed(ws); ws.close(); return c; }));
  const storeDir = join(svc.dir, 'store');
  await until(async () => (await svc.uploader.stats()).spool_files === 0 && localObjects(storeDir).length >= N * 4, 30000, 'uploaded');
  const objects = localObjects(storeDir);
  let mismatched = 0;
  for (let i = 0; i < N; i++) {
    const got = storedFrames(objects, `s${i}`);
    const want = Array.from({ length: PER }, (_, k) => frames[k % frames.length]!);
    if (got.frames.length !== PER || got.frames.some((f, k) => !f.equals(want[k]!))) {
      if (mismatched++ === 0) t.comment(`s${i}: ${got.frames.length} frames in ${got.chunks} chunks; first bad at ${got.frames.findIndex((f, k) => !f.equals(want[k]!))}`);
    }
  }
  t.equal(mismatched, 0, 'concatenated stored frames equal the frames sent, byte for byte, for every session');
  const names = objects.map((o) => o.name);
  t.ok(names.some((n) => /^chunks\/s0\/_\/\d+\.\d{3}\.lc3$/.test(n)), 'audio before the first switch kept under "_"');
  t.ok(names.some((n) => /^chunks\/s0\/conv-0\/\d+\.\d{3}\.lc3$/.test(n)), 'audio after the switch under its conversation');
  // Every stored chunk decodes with Debian's dlc3 to exactly its frames' worth of samples.
  const dir = t.testdir();
  let bad = 0;
  for (const o of objects.filter((x) => x.name.startsWith('chunks/s1/') || x.name.startsWith('chunks/s2/'))) {
    const f = join(dir, 'c.lc3');
    writeFileSync(f, o.data);
    execFileSync('dlc3', [f, join(dir, 'c.wav')], { stdio: 'ignore' });
    const { header, frames: fr } = parseLc3File(o.data);
    if (parseWav(readFileSync(join(dir, 'c.wav'))).samples.length !== header.nsamples || header.nsamples !== fr.length * 160 - 40) bad++;
  }
  t.equal(bad, 0, 'dlc3 plays every chunk, sample-exact');
  const meta = JSON.parse(readFileSync(join(storeDir, `${names.find((n) => n.startsWith('chunks/s3/'))}.meta.json`), 'utf8'));
  t.match(meta, { metadata: { codec: /lc3/, sample_rate: '16000', frames: /\d+/, duration: /\d/, sha256: /^[0-9a-f]{64}$/ } });
  t.ok((await svc.metric('pusher_audio_bytes_durable_total')) >= N * PER * 30);
  t.ok((await svc.metric('pusher_audio_bytes_uploaded_total')) > 0);
});

t.test('store outage during live sessions: nothing lost, everything uploaded after recovery', async (t) => {
  const gcs = await FakeGcs.start({ buckets: ['audio'] });
  t.teardown(() => gcs.stop());
  const svc = await startTestService({ STORE: 'gcs', GCS_BUCKET: 'audio', GCS_API_ENDPOINT: gcs.url, CHUNK_SECONDS: '1', FSYNC_MS: '100' });
  t.teardown(() => svc.close());
  const N = 200;
  const outageS = Number(process.env.OUTAGE_S ?? 8);
  gcs.outage('status');
  const socks = await Promise.all(Array.from({ length: N }, (_, i) => svc.ws(`/v1/audio/stream?uid=o${i}`)));
  // Real time: 10 frames every 100 ms per session through the outage.
  let sent = 0;
  const end = Date.now() + outageS * 1000;
  while (Date.now() < end) {
    for (const ws of socks) stream(ws, sent, 10);
    sent += 10;
    await new Promise((r) => setTimeout(r, 100));
  }
  t.ok((await svc.metric('pusher_uploads_total', { result: 'error' })) > 0, 'uploads failed during the outage');
  t.equal(gcs.objects('audio').length, 0, 'nothing reached the store');
  await Promise.all(socks.map((ws) => { const c = closed(ws); ws.close(); return c; }));
  gcs.outage(false);
  const objects = () => gcs.objects('audio').map((o) => ({ name: o.name, data: o.data }));
  await until(async () => {
    const s = await svc.uploader.stats();
    return s.spool_files === 0 && storedFrames(objects(), `o${N - 1}`).frames.length === sent;
  }, 120_000 + outageS * 5_000, 'everything uploaded after the outage'); // the backlog: 200 chunks per outage second
  let lost = 0;
  for (let i = 0; i < N; i++) lost += sent - storedFrames(objects(), `o${i}`).frames.length;
  t.equal(lost, 0, `zero frames lost (${N} sessions × ${sent} frames)`);
  t.ok((await svc.metric('pusher_upload_retries_total')) > 0);
});

t.test('spool full: sessions are paused, /readyz fails, nothing is dropped; resumes when space returns', async (t) => {
  const gcs = await FakeGcs.start({ buckets: ['audio'] });
  t.teardown(() => gcs.stop());
  const svc = await startTestService({ STORE: 'gcs', GCS_BUCKET: 'audio', GCS_API_ENDPOINT: gcs.url, CHUNK_SECONDS: '1', FSYNC_MS: '50', SPOOL_MAX_BYTES: '48KiB' });
  t.teardown(() => svc.close());
  gcs.outage('status'); // nothing leaves the spool
  const ws = await svc.ws('/v1/audio/stream?uid=full');
  // Keep streaming until the server stops reading (bounded: 60 s).
  let sent = 0;
  const deadline = Date.now() + 60000;
  while ((await svc.metric('pusher_sockets_paused')) === 0 && Date.now() < deadline) {
    stream(ws, sent, 100);
    sent += 100;
    await new Promise((r) => setTimeout(r, 20));
  }
  t.equal(await svc.metric('pusher_sockets_paused'), 1, 'the socket is paused at the spool limit');
  const ready = await fetch(svc.url('/readyz'));
  t.equal(ready.status, 503);
  t.match(await ready.json(), { ready: false, reason: /spool full/ });
  t.ok(svc.quota.bytes >= 48 * 1024);
  t.ok(svc.quota.bytes < 256 * 1024, `the spool stays near its limit (${svc.quota.bytes} bytes)`);
  t.equal(ws.readyState, ws.OPEN, 'the session is paused, not dropped');
  const stored = () => storedFrames(gcs.objects('audio').map((o) => ({ name: o.name, data: o.data })), 'full').frames.length;
  gcs.outage(false);
  const c = closed(ws);
  ws.close(); // everything already sent must still arrive: the close waits for the paused messages
  await c;
  await until(() => stored() === sent, 120000, 'all stored').catch(() => {});
  t.equal(stored(), sent, `every frame stored, none dropped (${sent})`);
  await until(async () => (await fetch(svc.url('/readyz'))).status === 200, 30000, 'ready again');
  t.equal(await svc.metric('pusher_sockets_paused'), 0);
});

const bin = fileURLToPath(new URL('../bin/lc3-pusher.cjs', import.meta.url));

function startChild(env: Record<string, string>): Promise<{ child: ChildProcess; port: number }> {
  // PORT=0: the kernel picks a free port and the listening line (level info) says which, so there
  // is no race with other tests for a port.
  const child = spawn(process.execPath, [bin, 'serve'], { env: { ...process.env, ...env, LOG_LEVEL: 'info', PORT: '0', HOST: '127.0.0.1', SHARDS: '2', SLOTS_PER_SHARD: '64' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let port = 0;
  child.stdout!.on('data', (d: Buffer) => {
    if (port) return;
    out += d.toString();
    const m = /"msg":"listening".*?"port":(\d+)|"port":(\d+)[^\n]*"msg":"listening"/.exec(out);
    if (m) port = Number(m[1] ?? m[2]);
  });
  child.stderr!.resume();
  const healthy = () => port > 0 && fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false);
  return until(healthy, 30000, 'child listening').then(
    () => ({ child, port }),
    (err: Error) => {
      child.kill('SIGKILL');
      throw err;
    },
  );
}

t.test('kill -9 mid-stream, restart: every acked frame ends up in the store', async (t) => {
  const dir = t.testdir();
  const env = { SPOOL_DIR: join(dir, 'spool'), STORE_DIR: join(dir, 'store'), FSYNC_MS: '50', CHUNK_SECONDS: '2', LOG_LEVEL: 'warn' };
  const a = await startChild(env);
  const N = 10;
  const socks = await Promise.all(
    Array.from({ length: N }, (_, i) => new Promise<WebSocket>((res, rej) => {
      const ws = new WebSocket(`ws://127.0.0.1:${a.port}/v1/audio/stream?uid=k${i}&ack=1`);
      ws.on('open', () => res(ws));
      ws.on('error', rej);
    })),
  );
  const acks = socks.map(lastAck);
  let sent = 0;
  while (acks.some((x) => x.frames < 300)) {
    for (const ws of socks) stream(ws, sent, 20);
    sent += 20;
    await new Promise((r) => setTimeout(r, 20));
  }
  a.child.kill('SIGKILL');
  await new Promise((r) => a.child.once('exit', r));
  const acked = acks.map((x) => x.frames);
  t.ok(acked.every((n) => n >= 300), 'acks were received before the kill');

  const b = await startChild(env);
  t.teardown(() => b.child.kill('SIGKILL'));
  const storeDir = join(dir, 'store');
  let missing = 0;
  await until(() => {
    const objects = localObjects(storeDir);
    missing = 0;
    for (let i = 0; i < N; i++) {
      const got = storedFrames(objects, `k${i}`).frames;
      for (let k = 0; k < acked[i]!; k++) if (!got[k]?.equals(frames[k % frames.length]!)) { missing++; break; }
    }
    return missing === 0;
  }, 60000, 'acked frames in the store').catch(() => {});
  t.equal(missing, 0, 'every session: all acked frames are in the store, in order, byte for byte');
  const exited = new Promise((r) => b.child.once('exit', r));
  b.child.kill('SIGTERM');
  await exited;
});
