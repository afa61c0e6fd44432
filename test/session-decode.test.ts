// Decode only for listeners (src/session/session.ts): a storage-only LC3 session checks frame
// sizes and stores the frames as sent, with no decoder state; a PCM listener (the PCM tap, an
// audio app, the audio-bytes webhook) makes it decode, from the next record on.
import t from 'tap';
import { wavToLc3 } from '../src/codec/transcode.js';
import { parseLc3File } from '../src/formats/lc3file.js';
import { encodeWav } from '../src/formats/wav.js';
import { HttpClient } from '../src/http/client.js';
import { newQueueCounters } from '../src/consumers/session-consumers.js';
import type { SessionInit, ShardEvent } from '../src/session/protocol.js';
import { newCounters, Session, type PcmTap, type SessionDeps, type SessionSink } from '../src/session/session.js';
import { Code } from '../src/shard/ring.js';
import { Lc3Decoder, Lc3Module } from '../wasm/lc3.js';
import { join } from 'node:path';
import { testSignal } from './support/audio.js';
import { startTestService, until } from './support/service.js';

const FB = 30;
const frames = parseLc3File(wavToLc3(encodeWav(16000, 1, testSignal(16000, 0.3)), { bitrate: 24000, frameUs: 10000 })).frames;

function init(over: Partial<SessionInit> = {}): SessionInit {
  return { id: 1, uid: 'u1', endpoint: 'device', ack: false, conversationId: null, sync: true, consumers: null, codec: 'lc3', sampleRate: 16000, frameUs: 10000, frameBytes: FB, ...over };
}

function setup(o: { sink?: boolean; pcmTap?: PcmTap; consumers?: SessionInit['consumers']; http?: HttpClient } = {}) {
  const mod = new Lc3Module();
  const events: ShardEvent[] = [];
  const stored: Buffer[] = [];
  const sink: SessionSink = {
    audio: (d, off, len) => void stored.push(Buffer.from(d.subarray(off, off + len))),
    conversation: () => {},
    close: async () => {},
  };
  const deps: SessionDeps = {
    lc3: mod,
    emit: (e) => events.push(e),
    counters: newCounters(),
    ...(o.sink === false ? {} : { sink }),
    ...(o.pcmTap ? { pcmTap: o.pcmTap } : {}),
    ...(o.http ? { consumers: { http: o.http, counters: newQueueCounters(), budgetBytes: 0 } } : {}),
  };
  const s = new Session(0, init(o.consumers ? { consumers: o.consumers } : {}), deps);
  const send = (bytes: Uint8Array) => s.handle(Code.FRAMES, Date.now(), bytes, 0, bytes.length);
  return { s, mod, events, stored, c: deps.counters, send };
}

/** PCM of frames[from ..] on a fresh decoder: what a decoder started at that frame yields. */
function fresh(from: number, n: number): Int16Array[] {
  const d = new Lc3Decoder({ frameUs: 10000, sampleRate: 16000 }, new Lc3Module());
  const out = frames.slice(from, from + n).map((f) => d.decode(f).slice());
  d.close();
  return out;
}

t.test('storage only: no decoder, the frames stored as sent, frames received = stored, none decoded', async (t) => {
  const r = setup();
  for (const f of frames.slice(0, 10)) r.send(f);
  r.send(Buffer.concat(frames.slice(10, 14))); // several frames in one record
  t.notOk(r.s.hasDecoder, 'no decoder state');
  t.equal(r.mod.live, 0, 'pusher_decoders_active would read 0');
  t.notOk(r.s.wantsPcm);
  t.same(Buffer.concat(r.stored), Buffer.concat(frames.slice(0, 14)), 'the sink got the bytes as sent');
  t.match(r.c, { framesReceived: 14, framesStored: 14, framesDecoded: 0, decodeErrors: 0 });
  t.equal(r.c.latency.reduce((a, b) => a + b, 0), 11, 'latency still measured per record');
  // Frame sizes are still checked: a record that is not whole frames closes the session.
  r.send(new Uint8Array(FB + 1));
  t.same(r.events, [{ t: 'close', slot: 0, code: 1007, reason: 'audio is not whole 30-byte LC3 frames (31 bytes)' }]);
  r.send(frames[14]!);
  t.equal(r.c.framesReceived, 14, 'nothing is taken after that');
  await r.s.close(100);
});

t.test('without private cloud sync nothing is stored, and still nothing decoded', async (t) => {
  const r = setup({ sink: false });
  for (const f of frames.slice(0, 5)) r.send(f);
  t.match(r.c, { framesReceived: 5, framesStored: 0, framesDecoded: 0 });
  t.equal(r.mod.live, 0);
  await r.s.close(100);
});

t.test('a PCM tap switched on mid-session starts the decoder at the next record; off frees it', async (t) => {
  const tapped: Int16Array[] = [];
  const tap: PcmTap = (_s, pcm) => {
    for (let i = 0; i < pcm.length; i += 160) tapped.push(pcm.slice(i, i + 160));
  };
  const r = setup();
  for (const f of frames.slice(0, 5)) r.send(f);
  t.equal(r.mod.live, 0, 'storage only so far');
  r.s.setPcmTap(tap);
  t.ok(r.s.wantsPcm);
  t.equal(r.mod.live, 0, 'the decoder is created by audio, not by the switch');
  r.send(frames[5]!);
  r.send(Buffer.concat(frames.slice(6, 10)));
  t.ok(r.s.hasDecoder);
  t.equal(r.mod.live, 1);
  t.same(tapped, fresh(5, 5), 'the PCM of a decoder started at frame 5, bit for bit (its first frame fades in from silence)');
  r.s.setPcmTap(undefined);
  r.send(frames[10]!);
  t.notOk(r.s.hasDecoder, 'nobody listens: decoder freed at the next record');
  t.equal(r.mod.live, 0);
  t.match(r.c, { framesReceived: 11, framesStored: 11, framesDecoded: 5 });
  r.s.setPcmTap(tap);
  r.send(frames[11]!);
  t.same(tapped.slice(5), fresh(11, 1), 'switched on again: a cold start again');
  t.same(Buffer.concat(r.stored), Buffer.concat(frames.slice(0, 12)), 'storage never missed a frame');
  await r.s.close(100);
  t.equal(r.mod.live, 0, 'close frees it');
});

t.test('audio consumers decode, a transcript-only consumer does not', async (t) => {
  const http = new HttpClient({ allowPrivate: true });
  t.teardown(() => http.close());
  const none = { transcriptWebhook: null, transcriptApps: [], audioBytesWebhook: null, audioApps: [] };
  const cases = [
    { name: 'audio app', consumers: { ...none, audioApps: ['http://127.0.0.1:9/app'] }, decodes: true },
    { name: 'audio-bytes webhook', consumers: { ...none, audioBytesWebhook: { url: 'http://127.0.0.1:9/w', seconds: 5 } }, decodes: true },
    { name: 'transcript webhook only', consumers: { ...none, transcriptWebhook: 'http://127.0.0.1:9/t' }, decodes: false },
  ];
  for (const k of cases) {
    const r = setup({ http, consumers: k.consumers });
    for (const f of frames.slice(0, 3)) r.send(f);
    t.equal(r.s.wantsPcm, k.decodes, `${k.name}: wants PCM`);
    t.equal(r.c.framesDecoded, k.decodes ? 3 : 0, `${k.name}: frames decoded`);
    t.equal(r.mod.live, k.decodes ? 1 : 0, `${k.name}: decoders`);
    t.equal(r.c.framesStored, 3, `${k.name}: stored either way`);
    await r.s.close(100);
    t.equal(r.mod.live, 0);
  }
});

t.test('PCM16 sessions: no decoder, no LC3 frame counts, the tap sees no PCM16 (as before)', async (t) => {
  const tapped: number[] = [];
  const mod = new Lc3Module();
  const counters = newCounters();
  const got: number[] = [];
  const sink: SessionSink = { audio: (_d, _o, len, n) => void got.push(len, n), conversation: () => {}, close: async () => {} };
  const s = new Session(0, init({ endpoint: 'pusher', codec: 'pcm16', sampleRate: 8000, frameUs: 0, frameBytes: 0 }), {
    lc3: mod,
    emit: () => {},
    counters,
    sink,
    pcmTap: (_s, pcm) => void tapped.push(pcm.length),
  });
  const b = Buffer.alloc(8 + 320);
  b.writeDoubleLE(1_700_000_000, 0);
  s.handle(Code.AUDIO, Date.now(), b, 0, b.length);
  t.same(got, [320, 160], '160 samples handed to the sink');
  t.same(tapped, []);
  t.match(counters, { framesReceived: 0, framesStored: 0, framesDecoded: 0, audioBytes: 320 });
  t.equal(mod.live, 0);
  await s.close(100);
});

t.test('LC3 parameters no decoder could take are refused when the session opens', async (t) => {
  t.throws(() => setupWith({ sampleRate: 44100 }), /sample rate 44100/);
  t.throws(() => setupWith({ frameBytes: 10 }), /frame size 10 bytes/);
  function setupWith(over: Partial<SessionInit>) {
    return new Session(0, init(over), { lc3: new Lc3Module(), emit: () => {}, counters: newCounters() });
  }
});

t.test('the running service: a storage-only session has no decoder, an audio app makes one', async (t) => {
  const dir = t.testdir({ 'settings.json': JSON.stringify({ default: { private_cloud_sync: true }, users: { listener: { audio_apps: ['http://127.0.0.1:9/app'] } } }) });
  const svc = await startTestService({ SETTINGS_FILE: join(dir, 'settings.json') });
  t.teardown(() => svc.close());
  const storage = await svc.ws('/v1/audio/stream?uid=storage');
  const listener = await svc.ws('/v1/audio/stream?uid=listener');
  for (const f of frames.slice(0, 25)) storage.send(f);
  for (const f of frames.slice(0, 15)) listener.send(f);
  await until(async () => (await svc.metricSum('pusher_frames_received_total')) === 40, 20000, 'all 40 frames to reach the shards');
  t.equal(await svc.metricSum('pusher_frames_stored_total'), 40, 'every frame stored');
  t.equal(await svc.metricSum('pusher_frames_decoded_total'), 15, "only the listener's frames decoded");
  t.equal(await svc.metricSum('pusher_decoders_active'), 1, 'one decoder: the listener’s; none for the storage-only session');
  storage.close();
  listener.close();
  await until(async () => (await svc.metricSum('pusher_sessions_active')) === 0, 20000, 'both sessions to close');
  t.equal(await svc.metricSum('pusher_decoders_active'), 0, 'no decoder left');
});
