// An Omi-protocol client end to end, as the Omi listen service drives the pusher, unchanged: the
// query parameters it adds, a heartbeat every 20 s, 103, one 101 per second carrying 1 s of 16 kHz
// PCM (32,012 bytes), a 102 every second, a 104 and a 105; then, as after a reconnect, 30 s of PCM
// (960,012 bytes) in a single 101. Real receivers on loopback for every webhook, app and the
// processing endpoint. Every sample must be stored, in order; every consumer gets what Omi's would.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { WebSocket } from 'ws';
import { parseWav } from '../src/formats/wav.js';
import { createStore } from '../src/store/index.js';
import { testSignal } from './support/audio.js';
import { startReceiver } from './support/receiver.js';
import { audioMsg, closed, pusherMsg, startTestService, until } from './support/service.js';

const RATE = 16000;
const LIVE_SECONDS = 22;
const FLUSH_SECONDS = 30;

function pcmBytes(s: Int16Array): Buffer {
  return Buffer.from(s.buffer, s.byteOffset, s.byteLength);
}

function nextReply(ws: WebSocket, header: number, ms: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${header} reply within ${ms} ms`)), ms);
    const on = (d: Buffer) => {
      if (d.readUInt32LE(0) !== header) return;
      clearTimeout(timer);
      ws.off('message', on);
      resolve(JSON.parse(d.subarray(4).toString()) as Record<string, unknown>);
    };
    ws.on('message', on);
  });
}

t.test('an unchanged Omi listen client: every message handled, every sample stored in order', async (t) => {
  const rx = await startReceiver();
  t.teardown(() => rx.close());
  const dir = t.testdir();
  const settingsFile = join(dir, 'settings.json');
  writeFileSync(
    settingsFile,
    JSON.stringify({
      users: {
        omi1: {
          transcript_webhook: rx.url('/transcripts'),
          transcript_apps: [rx.url('/app/transcripts?app=a1')],
          audio_bytes_webhook: { url: rx.url('/audio'), seconds: 5 },
          audio_apps: [rx.url('/app/audio')],
        },
      },
    }),
  );
  const svc = await startTestService({
    SETTINGS_FILE: settingsFile,
    PROCESS_CONVERSATION_URL: rx.url('/process'),
    WEBHOOK_ALLOW_PRIVATE: '1',
    SPEAKER_SAMPLE_MIN_AGE_S: '1',
  });
  t.teardown(() => svc.close());

  const signal = testSignal(RATE, LIVE_SECONDS + FLUSH_SECONDS);
  const all = pcmBytes(signal);
  const t0 = Math.floor(Date.now() / 1000) - 60;
  const q = `uid=omi1&sample_rate=${RATE}&client_kind=omi_app&audio_timeline=2&some_future_param=x`;

  // The live part, at real time.
  const ws = await svc.ws(`/v1/trigger/listen?${q}`);
  ws.send(pusherMsg(100));
  ws.send(pusherMsg(103, 'conv1'));
  let processReply: Promise<Record<string, unknown>> | undefined;
  for (let k = 0; k < LIVE_SECONDS; k++) {
    const second = all.subarray(k * RATE * 2, (k + 1) * RATE * 2);
    const msg = audioMsg(t0 + k, second);
    if (k === 0) t.equal(msg.length, 32012, '1 s of 16 kHz PCM is one 32,012-byte 101');
    ws.send(msg);
    const seg = { id: `s${k}`, text: `word ${k}`, speaker: 'SPEAKER_00', speaker_id: 0, is_user: false, person_id: null, start: k, end: k + 1 };
    ws.send(pusherMsg(102, JSON.stringify({ segments: [seg], memory_id: 'stale-memory' })));
    if (k === 20) ws.send(pusherMsg(100));
    if (k === 10) {
      processReply = nextReply(ws, 201, 15000);
      ws.send(pusherMsg(104, JSON.stringify({ conversation_id: 'conv1', language: 'en', finalization_job_id: 'f1', dispatch_generation: 3, byok_keys: { openai: 'k' } })));
    }
    if (k === 12) ws.send(pusherMsg(105, JSON.stringify({ person_id: 'person1', conversation_id: 'conv1', segment_ids: ['s3', 's4'] })));
    await new Promise((r) => setTimeout(r, 1000));
  }
  t.same(await processReply, { conversation_id: 'conv1', success: true }, '104 answered with 201 success');
  // Transcripts go out on a 1 s tick; what is queued when the session closes is stale and dropped.
  await until(() => rx.to('/transcripts').some((r) => r.body.includes('"s21"')), 3000, 'the last transcript batch');
  const c1 = closed(ws);
  ws.close(1000);
  t.equal((await c1).code, 1000, 'the live session closed normally (no 1009 for its 32 KB messages)');

  // After a reconnect: 30 s buffered on the client, flushed as one 101.
  const ws2 = await svc.ws(`/v1/trigger/listen?${q}`);
  ws2.send(pusherMsg(103, 'conv1'));
  const big = audioMsg(t0 + LIVE_SECONDS, all.subarray(LIVE_SECONDS * RATE * 2));
  t.equal(big.length, 960012);
  ws2.send(big);
  await new Promise<void>((r) => ws2.send(pusherMsg(100), () => r()));
  // The webhook and app items of the flush go out one after another while the client stays
  // connected (a session's queued items are its own: they go when it closes).
  await until(() => rx.to('/audio').length === 10 && rx.to('/app/audio').length === 12, 20000, 'webhook and app posts of the flushed 30 s');
  const c2 = closed(ws2);
  ws2.close(1000);
  t.equal((await c2).code, 1000, 'the 960,012-byte message was accepted');

  // Every sample stored, in order, under the conversation the 103 named (never memory_id's).
  const store = createStore({ STORE: 'local', STORE_DIR: join(svc.dir, 'store'), GCS_BUCKET: '', GCS_API_ENDPOINT: '' });
  let objects: { name: string }[] = [];
  const wanted = all.length;
  let stored = Buffer.alloc(0);
  await until(
    async () => {
      objects = (await store.list('chunks/omi1/')).filter((o) => o.name.endsWith('.wav'));
      const parts = await Promise.all(objects.map(async (o) => pcmBytes(parseWav(await store.read(o.name)).samples)));
      stored = Buffer.concat(parts);
      return stored.length >= wanted;
    },
    60000,
    'all audio uploaded',
  );
  t.ok(objects.every((o) => o.name.startsWith('chunks/omi1/conv1/')), `all chunks under conv1 (${objects.map((o) => o.name).join(', ')})`);
  t.equal(stored.length, wanted, 'as many samples stored as sent');
  t.ok(stored.equals(all), 'every sample stored, in order');

  // Transcripts: batched per second, every segment once, in order, to the webhook and the app.
  const hooks = rx.to('/transcripts');
  t.ok(hooks.length >= 5, `transcript webhook called ${hooks.length} times`);
  for (const r of hooks) {
    t.equal(r.method, 'POST');
    t.equal(r.query.get('uid'), 'omi1');
    t.match(r.contentType, /^application\/json/);
    t.same(Object.keys(JSON.parse(r.body.toString())), ['segments', 'session_id']);
  }
  const ids = (path: string) => rx.to(path).flatMap((r) => (JSON.parse(r.body.toString()) as { segments: { id: string }[] }).segments.map((s) => s.id));
  const expectIds = Array.from({ length: LIVE_SECONDS }, (_, k) => `s${k}`);
  t.same(ids('/transcripts'), expectIds, 'webhook: every segment once, in order');
  t.same(ids('/app/transcripts'), expectIds, 'app: every segment once, in order');
  const app = rx.to('/app/transcripts')[0]!;
  t.equal(app.query.get('app'), 'a1', 'the app URL keeps its own query');
  t.equal(app.query.get('uid'), 'omi1');
  t.same(Object.keys(JSON.parse(app.body.toString())), ['session_id', 'segments']);
  t.equal(JSON.parse(app.body.toString()).session_id, 'omi1');

  // Audio: the webhook every 5 s of audio, the app every 4 s, PCM16LE at the session's rate.
  const sec = RATE * 2;
  const audio = rx.to('/audio');
  t.same(audio.map((r) => r.body.length), new Array(4 + 6).fill(5 * sec), '4 webhook posts from 22 s live, 6 from the 30 s flush');
  for (const r of [...audio, ...rx.to('/app/audio')]) {
    t.equal(r.query.get('sample_rate'), String(RATE));
    t.equal(r.query.get('uid'), 'omi1');
    t.equal(r.contentType, 'application/octet-stream');
  }
  const expectAudio = Buffer.concat([all.subarray(0, 20 * sec), all.subarray(LIVE_SECONDS * sec, (LIVE_SECONDS + 30) * sec)]);
  t.ok(Buffer.concat(audio.map((r) => r.body)).equals(expectAudio), 'webhook audio is the PCM sent, in order');
  t.same(rx.to('/app/audio').map((r) => r.body.length), new Array(5 + 7).fill(4 * sec), 'app: every 4 s of audio');

  // 104: one POST with the message's fields passed through.
  const proc = rx.to('/process');
  t.equal(proc.length, 1, 'one processing POST');
  t.same(JSON.parse(proc[0]!.body.toString()), { uid: 'omi1', conversation_id: 'conv1', language: 'en', finalization_job_id: 'f1', dispatch_generation: 3, byok_keys: { openai: 'k' } });

  // 105: the segments' 2 s (3–5 s of the conversation's audio) as a WAV under people_profiles.
  let sample: { name: string }[] = [];
  await until(async () => (sample = await store.list('omi1/people_profiles/person1/')).length > 0, 60000, 'speaker sample stored');
  t.match(sample[0]!.name, /^omi1\/people_profiles\/person1\/[A-Za-z0-9_-]+\.wav$/);
  const wav = parseWav(await store.read(sample[0]!.name));
  t.equal(wav.sampleRate, RATE);
  t.ok(pcmBytes(wav.samples).equals(all.subarray(3 * sec, 5 * sec)), 'the sample is exactly the segments\' audio');

  t.equal(await svc.metricSum('pusher_rejected_total'), 0, 'nothing rejected');
  t.equal(await svc.metricSum('pusher_queue_drops_total'), 0, 'nothing dropped for fast receivers');
  await until(async () => (await svc.metricSum('pusher_session_tasks_active')) === 0, 5000, 'session tasks gone');
});
