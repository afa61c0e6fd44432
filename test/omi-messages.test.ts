// Messages of any legal size (DESIGN §2.1): a 101 far larger than a ring is split at sample or
// frame boundaries, each piece with its own first-sample time; JSON larger than a ring record is
// joined by the shard; MAX_JSON_BYTES and MAX_MESSAGE_BYTES close with 1009. Omi's surface: GET
// /health and /ready, unknown query parameters. A client that never reads its replies is closed
// with 1008 instead of growing the server.
import t from 'tap';
import { join } from 'node:path';
import type { WebSocket } from 'ws';
import { parseLc3File } from '../src/formats/lc3file.js';
import { parseWav } from '../src/formats/wav.js';
import { parseObjectName } from '../src/spool/names.js';
import { createStore } from '../src/store/index.js';
import { audioMsg, closed, pusherMsg, startTestService, until, type TestService } from './support/service.js';

function pcm(s: Int16Array): Buffer {
  return Buffer.from(s.buffer, s.byteOffset, s.byteLength);
}

function storeOf(svc: TestService) {
  return createStore({ STORE: 'local', STORE_DIR: join(svc.dir, 'store'), GCS_BUCKET: '', GCS_API_ENDPOINT: '' });
}

/** Sends and waits until ws has handed the message to the socket. */
function send(ws: WebSocket, m: Buffer): Promise<void> {
  return new Promise((resolve, reject) => ws.send(m, (err) => (err ? reject(err) : resolve())));
}

t.test("Omi's probe paths answer; unknown query parameters never refuse a session", async (t) => {
  const svc = await startTestService();
  t.teardown(() => svc.close());
  t.same(await (await fetch(svc.url('/health'))).json(), { ok: true }, '/health as /healthz');
  const ready = await fetch(svc.url('/ready'));
  t.equal(ready.status, 200);
  t.same(await ready.json(), { ready: true }, '/ready as /readyz');
  const ws = await svc.ws('/v1/trigger/listen?uid=p&sample_rate=16000&client_kind=omi_glass&audio_timeline=2&utm_x=1&=&flag');
  const c = closed(ws);
  ws.close(1000);
  t.equal((await c).code, 1000);
  t.equal(await svc.metricSum('pusher_rejected_total'), 0);
});

t.test('a 101 of 60 s of PCM in one message: stored byte-exact, pieces stamped with their own times', async (t) => {
  const svc = await startTestService({ CHUNK_SECONDS: '2' });
  t.teardown(() => svc.close());
  const rate = 8000;
  const audio = Buffer.alloc(60 * rate * 2);
  for (let i = 0; i < audio.length / 2; i++) audio.writeInt16LE(((i * 37) % 65536) - 32768, i * 2);
  // A whole second near the server's clock: 101 timestamps further than MAX_CLOCK_SKEW_S away are replaced.
  const t0 = Math.floor(Date.now() / 1000) - 60;
  const ws = await svc.ws(`/v1/trigger/listen?uid=bigpcm&sample_rate=${rate}`);
  const msg = audioMsg(t0, audio);
  t.equal(msg.length, 960012);
  await send(ws, msg);
  const c = closed(ws);
  ws.close(1000);
  t.equal((await c).code, 1000, 'accepted: no 1009');
  const store = storeOf(svc);
  let names: string[] = [];
  await until(async () => (names = (await store.list('chunks/bigpcm/')).map((o) => o.name)).length === 30, 30000, '30 chunks of 2 s uploaded');
  // Each 2 s chunk is named by its first sample's time: the pieces carried t0 + offset / rate.
  t.same(
    names.map((n) => parseObjectName(n)!.startMs),
    Array.from({ length: 30 }, (_, k) => (t0 + 2 * k) * 1000),
    'chunk k starts at t0 + 2k s',
  );
  const stored = Buffer.concat(await Promise.all(names.map(async (n) => pcm(parseWav(await store.read(n)).samples))));
  t.ok(stored.equals(audio), 'every sample stored, in order');
  t.equal(await svc.metric('pusher_audio_bytes_received_total'), audio.length);
  t.equal(await svc.metric('pusher_pending_message_bytes'), 0, 'nothing held on the main thread once it is all in the ring');
});

t.test('LC3 at both endpoints: large messages split at frame boundaries, every frame kept', async (t) => {
  const svc = await startTestService();
  t.teardown(() => svc.close());
  // 3,000 distinct 40-byte frames (30 s at 10 ms) in one message; 2,000 30-byte frames in another.
  const frames = (n: number, size: number) => Buffer.concat(Array.from({ length: n }, (_, i) => Buffer.alloc(size, i % 251)));
  const pusherFrames = frames(3000, 40);
  const deviceFrames = frames(2000, 30);
  const p = await svc.ws('/v1/trigger/listen?uid=biglc3&codec=lc3&frame_us=10000&frame_bytes=40&sample_rate=16000');
  await send(p, audioMsg(1_700_000_100, pusherFrames));
  const d = await svc.ws('/v1/audio/stream?uid=bigdev');
  await send(d, deviceFrames);
  await until(async () => (await svc.metricSum('pusher_frames_received_total')) === 5000, 20000, 'all 5,000 frames received');
  for (const ws of [p, d]) {
    const c = closed(ws);
    ws.close(1000);
    t.equal((await c).code, 1000);
  }
  const store = storeOf(svc);
  for (const [uid, sent, size] of [['biglc3', pusherFrames, 40], ['bigdev', deviceFrames, 30]] as const) {
    let objs: string[] = [];
    await until(async () => (objs = (await store.list(`chunks/${uid}/`)).map((o) => o.name)).length > 0, 20000, `${uid} uploaded`);
    const got = Buffer.concat(
      (await Promise.all(objs.map(async (n) => parseLc3File(await store.read(n)).frames))).flat().map((f) => {
        t.equal(f.length, size);
        return Buffer.from(f);
      }),
    );
    t.ok(got.equals(sent), `${uid}: every frame stored as sent, in order`);
  }
});

t.test('JSON larger than a ring record is joined; past MAX_JSON_BYTES and MAX_MESSAGE_BYTES: 1009', async (t) => {
  const svc = await startTestService({ MAX_JSON_BYTES: '256KiB', MAX_MESSAGE_BYTES: '2MiB' });
  t.teardown(() => svc.close());
  const ws = await svc.ws('/v1/trigger/listen?uid=json');
  const segments = Array.from({ length: 1000 }, (_, i) => ({ id: `seg-${i}`, text: 'lorem ipsum dolor sit amet '.repeat(4), start: i, end: i + 1 }));
  const big = pusherMsg(102, JSON.stringify({ segments, memory_id: null }));
  t.ok(big.length > 100_000 && big.length < 256 * 1024, `a ${big.length}-byte transcript`);
  await send(ws, big);
  await until(async () => (await svc.metricSum('pusher_transcripts_total')) === 1, 10000, 'the large transcript parsed');
  const tooBig = pusherMsg(102, JSON.stringify({ segments: [{ text: 'x'.repeat(300 * 1024), start: 0, end: 1 }], memory_id: null }));
  const c = closed(ws);
  ws.send(tooBig);
  const r = await c;
  t.equal(r.code, 1009);
  t.match(r.reason, /MAX_JSON_BYTES/);

  const ws2 = await svc.ws('/v1/trigger/listen?uid=huge');
  const c2 = closed(ws2);
  ws2.send(audioMsg(1_700_000_000, Buffer.alloc(3 * 2 ** 20)));
  t.equal((await c2).code, 1009, 'a message past MAX_MESSAGE_BYTES');
  t.equal(await svc.metric('pusher_rejected_total', { reason: 'oversized' }), 2);
});

t.test('a client that never reads its replies is closed with 1008, counted', async (t) => {
  const svc = await startTestService({ SEND_BUFFER_BYTES: '64KiB' });
  t.teardown(() => svc.close());
  const ws = await svc.ws('/v1/trigger/listen?uid=deaf');
  ws.pause(); // stop reading the socket: replies pile up in the kernel, then in the server
  const c = closed(ws);
  // Every 104 is answered at once (no processing endpoint): ~190 bytes a reply.
  const m = pusherMsg(104, JSON.stringify({ conversation_id: 'c'.repeat(128) }));
  const sendSome = async () => {
    for (let i = 0; i < 2000; i++) ws.send(m);
    await new Promise<void>((r) => ws.send(pusherMsg(100), () => r()));
  };
  const deadline = Date.now() + 60000;
  while ((await svc.metric('pusher_rejected_total', { reason: 'not_reading' })) === 0) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the 1008 of a client that does not read');
    if (ws.readyState !== ws.OPEN) break;
    await sendSome();
  }
  t.equal(await svc.metric('pusher_rejected_total', { reason: 'not_reading' }), 1, 'closed for not reading');
  ws.resume();
  const r = await c;
  t.ok(r.code === 1008 || r.code === 1006, `closed (${r.code})`);
  await until(async () => (await svc.metricSum('pusher_sessions_active')) === 0, 10000, 'the session is gone');
});
