// The shard's logic run on the test thread (in production it runs inside a worker, where the
// coverage tool cannot see it): records in → sessions, decoding, events, close cascade.
import t from 'tap';
import { wavToLc3 } from '../src/codec/transcode.js';
import { parseLc3File } from '../src/formats/lc3file.js';
import { encodeWav } from '../src/formats/wav.js';
import type { SessionInit, ShardEvent } from '../src/session/protocol.js';
import type { PcmTap, SessionSink } from '../src/session/session.js';
import { HttpClient } from '../src/http/client.js';
import { scopeCounters } from '../src/session/task-scope.js';
import { Arena, Code, PART, RingProducer } from '../src/shard/ring.js';
import { ShardCore } from '../src/shard/shard-core.js';
import { createShard, pcmFileTap } from '../src/shard/shard-main.js';
import { Lc3Module } from '../wasm/lc3.js';
import { testSignal } from './support/audio.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MessageChannel } from 'node:worker_threads';

const lc3 = wavToLc3(encodeWav(16000, 1, testSignal(16000, 0.2)), { bitrate: 24000, frameUs: 10000 });
const frames = parseLc3File(lc3).frames;

function init(over: Partial<SessionInit> = {}): SessionInit {
  return { id: 1, uid: 'u1', endpoint: 'device', ack: false, conversationId: null, sync: false, consumers: null, codec: 'lc3', sampleRate: 16000, frameUs: 10000, frameBytes: 30, ...over };
}

function rig(opts: { http?: HttpClient; sink?: SessionSink; faultsAllowed?: boolean; pcmTap?: PcmTap } = {}) {
  const arena = new Arena({ slots: 8, ringBytes: 4096 });
  const p = new RingProducer(arena);
  const events: ShardEvent[] = [];
  const mod = new Lc3Module();
  const core = new ShardCore({
    shard: 0,
    arena,
    emit: (e) => events.push(e),
    graceMs: 200,
    lc3: mod,
    ...(opts.sink ? { sinkFor: () => opts.sink } : {}),
    ...(opts.http ? { http: opts.http } : {}),
    ...(opts.pcmTap ? { pcmTap: opts.pcmTap } : {}),
    faultsAllowed: opts.faultsAllowed ?? false,
  });
  const write = (slot: number, code: number, payload: Uint8Array | string) => {
    const b = typeof payload === 'string' ? Buffer.from(payload) : payload;
    t.ok(p.write(slot, code, Date.now(), b, 0, b.length), 'record written');
  };
  const open = (slot: number, i: SessionInit) => write(slot, Code.OPEN, JSON.stringify(i));
  return { arena, p, core, events, mod, write, open };
}

function audio101(ts: number, bytes: Uint8Array): Buffer {
  const b = Buffer.alloc(8 + bytes.length);
  b.writeDoubleLE(ts, 0);
  Buffer.from(bytes).copy(b, 8);
  return b;
}

t.test('with a PCM listener, device and pusher audio are decoded and handed to the sink as received', async (t) => {
  const got: { len: number; frames: number; first: number }[] = [];
  const tapped: number[] = [];
  const convs: string[] = [];
  let sinkClosed = 0;
  const sink: SessionSink = {
    audio: (_d, _o, len, f, first) => got.push({ len, frames: f, first }),
    conversation: (id) => convs.push(id),
    close: async () => void sinkClosed++,
  };
  const r = rig({ sink, pcmTap: (_s, pcm) => tapped.push(pcm.length) });
  r.open(0, init());
  for (const f of frames.slice(0, 10)) r.write(0, Code.FRAMES, f);
  r.open(1, init({ id: 2, endpoint: 'pusher' }));
  r.write(1, Code.AUDIO, audio101(1_700_000_000.25, Buffer.concat(frames.slice(0, 4))));
  r.write(1, Code.AUDIO, audio101(0, Buffer.concat(frames.slice(4, 6)))); // no usable timestamp → arrival
  r.write(1, Code.CONVERSATION, 'conv-2');
  r.write(1, Code.TRANSCRIPT, JSON.stringify({ segments: [{ text: 'hi', start: 0, end: 1 }], memory_id: 'm' }));
  r.write(1, Code.SPEAKER_SAMPLE, JSON.stringify({ person_id: 'p', conversation_id: 'c', segment_ids: ['s1'] }));
  r.write(1, Code.PROCESS, JSON.stringify({ conversation_id: 'c9', language: 'en' }));
  r.open(2, init({ id: 3, codec: 'pcm16', sampleRate: 8000, frameUs: 0, frameBytes: 0 }));
  r.write(2, Code.FRAMES, new Uint8Array(320));
  r.write(0, Code.FRAMES, new Uint8Array(30).fill(0xff)); // corrupt frame → concealed
  r.core.drain();
  const s = r.core.stats();
  t.equal(s.sessions, 3);
  t.equal(s.decoders, 2);
  t.equal(s.framesDecoded, 10 + 6 + 1);
  t.equal(s.framesReceived, 10 + 6 + 1);
  t.equal(s.framesStored, 10 + 6 + 1, 'every LC3 frame handed to the sink');
  t.same(tapped, [...Array(11).fill(160), 4 * 160, 2 * 160], 'one tap per record, the PCM of all its frames (none for the PCM16 session)');
  t.equal(s.decodeErrors, 1);
  t.equal(s.plcFrames, 1);
  t.equal(s.audioBytes, 11 * 30 + 6 * 30 + 320);
  // Slot by slot in the order they became ready; in order within a slot.
  t.same(got.map((g) => g.frames), [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4, 2, 160]);
  t.equal(got[11]!.first, 1_700_000_000_250, 'first-sample time from the 101 timestamp');
  t.ok(got[12]!.first > 1_700_000_000_250, 'arrival time when the timestamp is unusable');
  t.same(convs, ['conv-2']);
  t.same(
    r.events.map((e) => e.t),
    ['log', 'job'],
    'the 105 with an unknown segment is logged, the 104 becomes a job event',
  );
  t.match(r.events[1], { t: 'job', slot: 1, kind: 'process', msg: { conversation_id: 'c9', language: 'en' } });
  t.ok(s.latency.reduce((a, b) => a + b, 0) > 0);
  for (const slot of [0, 1, 2]) t.same(await r.core.close(slot), { leaked: 0 });
  t.same(await r.core.close(5), { leaked: 0 }, 'closing an unused slot is harmless');
  t.equal(sinkClosed, 3);
  t.equal(r.core.stats().decoders, 0);
  t.equal(r.mod.live, 0);
});

t.test('protocol errors close only the offending session, with a code and reason', async (t) => {
  const r = rig();
  const bad: [number, Uint8Array | string, number, RegExp][] = [
    [Code.TRANSCRIPT, '{', 1007, /not valid JSON/],
    [Code.TRANSCRIPT, '[]', 1007, /segments/],
    [Code.TRANSCRIPT, '{"segments":[],"memory_id":5}', 1007, /memory_id/],
    [Code.PROCESS, '{"conversation_id":5}', 1007, /104/],
    [Code.SPEAKER_SAMPLE, '{"person_id":"p","conversation_id":"c","segment_ids":[1]}', 1007, /105/],
    [Code.CONVERSATION, 'a/b', 1007, /must match/],
    [Code.CONVERSATION, Uint8Array.of(0xc3), 1007, /UTF-8/],
    [77, 'x', 1003, /unknown record code 77/],
  ];
  bad.forEach(([code, payload], i) => {
    r.open(i, init({ id: i + 1, endpoint: 'pusher' }));
    r.write(i, code, payload);
    r.write(i, Code.FRAMES, frames[0]!); // ignored after the failure
  });
  r.core.drain();
  t.equal(r.events.length, bad.length);
  bad.forEach(([, , code, re], i) => {
    const e = r.events.find((x) => 'slot' in x && x.slot === i) as Extract<ShardEvent, { t: 'close' }>;
    t.equal(e.code, code);
    t.match(e.reason, re);
  });
  t.equal(r.core.stats().framesReceived, 0, 'nothing processed after a protocol error');
  // A session whose init cannot be set up (no such LC3 rate) is refused with 1011.
  const r2 = rig();
  r2.open(0, init({ sampleRate: 44100 }));
  r2.write(0, Code.FRAMES, frames[0]!);
  r2.core.drain();
  t.match(r2.events[0], { t: 'close', slot: 0, code: 1011, reason: /session setup failed/ });
  t.equal(r2.core.stats().sessions, 0);
});

t.test('104 and 105 become job events for the main thread; the session keeps no task for them', async (t) => {
  const r = rig();
  r.open(0, init({ endpoint: 'pusher', codec: 'pcm16', frameBytes: 0, frameUs: 0 }));
  r.write(0, Code.PROCESS, '{"conversation_id":"quick","language":"de","finalization_job_id":"f1","byok_keys":{"k":"v"}}');
  r.write(0, Code.PROCESS, '{"conversation_id":"nolang"}');
  // Audio of conversation c9 from unix 1000 s, then a transcript placing segment s1 at 2–4 s.
  r.write(0, Code.CONVERSATION, 'c9');
  r.write(0, Code.AUDIO, audio101(1000, new Uint8Array(3200)));
  r.write(0, Code.TRANSCRIPT, JSON.stringify({ segments: [{ id: 's1', text: 'a', start: 2, end: 4 }, { id: 's2', text: 'b', start: 5, end: 7.5 }], memory_id: 'stale' }));
  r.write(0, Code.SPEAKER_SAMPLE, '{"person_id":"p1","conversation_id":"c9","segment_ids":["s1","s2"]}');
  r.write(0, Code.SPEAKER_SAMPLE, '{"person_id":"p1","conversation_id":"c9","segment_ids":["nope"]}');
  r.core.drain();
  const jobs = r.events.filter((e) => e.t === 'job');
  t.same(jobs, [
    { t: 'job', slot: 0, session: 1, uid: 'u1', kind: 'process', msg: { conversation_id: 'quick', language: 'de', finalization_job_id: 'f1', byok_keys: { k: 'v' } } },
    { t: 'job', slot: 0, session: 1, uid: 'u1', kind: 'process', msg: { conversation_id: 'nolang', language: 'en' } },
    {
      t: 'job',
      slot: 0,
      session: 1,
      uid: 'u1',
      kind: 'speaker_sample',
      msg: { person_id: 'p1', conversation_id: 'c9', segment_ids: ['s1', 's2'], storage_conversation_id: 'c9', start_ms: 1_002_000, end_ms: 1_007_500 },
    },
  ]);
  t.equal(r.core.stats().speakerUnresolved, 1, 'the unknown segment is counted, not sent');
  t.equal(r.core.stats().tasks, 0, 'no task waits for a job: the reply is the main thread\'s');
  t.same(await r.core.close(0), { leaked: 0 });
});

t.test('a JSON message split into PART records is joined before it is parsed', async (t) => {
  const r = rig();
  r.open(0, init({ endpoint: 'pusher' }));
  const body = JSON.stringify({ conversation_id: 'big', language: 'en', pad: 'x'.repeat(3000) });
  const b = Buffer.from(body);
  t.ok(r.p.write(0, Code.PROCESS | PART, Date.now(), b, 0, 1000));
  t.ok(r.p.write(0, Code.PROCESS | PART, Date.now(), b, 1000, 1000));
  r.core.drain();
  t.ok(r.p.write(0, Code.PROCESS, Date.now(), b, 2000, b.length - 2000));
  r.core.drain();
  const job = r.events.find((e) => e.t === 'job') as Extract<ShardEvent, { t: 'job' }>;
  t.equal(job.msg.pad, 'x'.repeat(3000));
  await r.core.close(0);
});

t.test('session parameters larger than one record arrive as OPEN parts and are joined', async (t) => {
  const r = rig();
  const apps = Array.from({ length: 32 }, (_, i) => `http://127.0.0.1:9/${'a'.repeat(300)}/${i}`);
  const big = Buffer.from(JSON.stringify(init({ endpoint: 'pusher', consumers: { transcriptWebhook: null, transcriptApps: [], audioBytesWebhook: null, audioApps: apps } })));
  t.ok(big.length > 4096, `${big.length} bytes of session parameters, more than the 4 KiB ring`);
  for (let off = 0; off < big.length; off += 1000) {
    const n = Math.min(1000, big.length - off);
    t.ok(r.p.write(0, off + n < big.length ? Code.OPEN | PART : Code.OPEN, Date.now(), big, off, n));
    r.core.drain();
  }
  r.write(0, Code.FRAMES, frames[0]!);
  r.core.drain();
  t.equal(r.core.stats().sessions, 1);
  t.equal(r.core.stats().framesReceived, 1, 'the session opened with its parameters and takes audio');
  await r.core.close(0);
});

t.test('positive control: leak_on_close leaves tasks and decoders alive (only when allowed)', async (t) => {
  // A session with a transcript webhook runs a 1 s batching timer in its scope; its audio app
  // makes it decode (a decoder exists from its first frame).
  const http = new HttpClient({ allowPrivate: true });
  t.teardown(() => http.close());
  const consumers = { transcriptWebhook: 'http://127.0.0.1:9/t', transcriptApps: [], audioBytesWebhook: null, audioApps: ['http://127.0.0.1:9/a'] };
  const denied = rig({ http });
  t.notOk(denied.core.setFaults({ leakOnClose: true }), 'faults refused unless allowed');
  const clean = rig({ http });
  const base = scopeCounters.tasks + scopeCounters.timers;
  const tr = JSON.stringify({ segments: [{ id: 'a', text: 'hi', start: 0, end: 1 }], memory_id: null });
  clean.open(0, init({ endpoint: 'pusher', consumers }));
  clean.write(0, Code.TRANSCRIPT, tr);
  clean.core.drain();
  t.ok(scopeCounters.tasks + scopeCounters.timers > base, 'the session has a live timer or task');
  await clean.core.close(0);
  t.equal(scopeCounters.tasks + scopeCounters.timers, base, 'closing it stopped them');
  const r = rig({ http, faultsAllowed: true });
  t.ok(r.core.setFaults({ leakOnClose: true }));
  r.open(0, init({ endpoint: 'pusher', consumers }));
  r.write(0, Code.TRANSCRIPT, tr);
  r.write(0, Code.FRAMES, frames[0]!);
  r.core.drain();
  t.equal(r.core.stats().decoders, 1, 'the audio app made the session decode');
  await r.core.close(0);
  t.equal(r.core.stats().sessions, 1, 'the closed session is still held');
  t.ok(scopeCounters.tasks + scopeCounters.timers > base, 'the task outlived its session');
  t.equal(r.core.stats().decoders, 1, 'and so did the decoder');
  // A storage-only session has neither: the leak shows as the session still held.
  r.open(1, init({ id: 2 }));
  r.write(1, Code.FRAMES, frames[0]!);
  r.core.drain();
  await r.core.close(1);
  t.equal(r.core.stats().sessions, 2, 'both leaked sessions are counted');
  t.equal(r.core.stats().decoders, 1, 'the storage-only one never had a decoder');
});

t.test('a waiting slot is reported drained; the drop_drained fault loses that report (when allowed)', async (t) => {
  for (const drop of [false, true]) {
    const r = rig({ faultsAllowed: true });
    t.ok(r.core.setFaults({ dropDrained: drop }));
    r.open(0, init());
    r.write(0, Code.AUDIO, frames[0]!);
    r.p.markWaiting(0); // the main thread has messages waiting for room in this ring
    r.core.drain();
    t.same(r.events.filter((e) => e.t === 'drained'), drop ? [] : [{ t: 'drained', slot: 0 }], drop ? 'lost wake-up' : 'drained reported');
    await r.core.close(0);
  }
});

t.test('the drain loop wakes on the doorbell and stops cleanly', async (t) => {
  const r = rig({ faultsAllowed: true });
  r.core.setFaults({ drainDelayMs: 1 });
  r.core.start();
  r.core.start();
  r.open(0, init());
  r.write(0, Code.FRAMES, frames[0]!);
  r.p.ring();
  const deadline = Date.now() + 5000;
  while (r.core.stats().framesReceived < 1 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 5));
  t.equal(r.core.stats().framesReceived, 1, 'the first frame was drained');
  r.core.setFaults({ drainDelayMs: 0 });
  r.write(0, Code.FRAMES, frames[1]!);
  r.p.ring();
  while (r.core.stats().framesReceived < 2 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 5));
  t.equal(r.core.stats().framesReceived, 2, 'the second frame was drained');
  await r.core.stop();
  t.equal(r.core.stats().sessions, 0);
});

t.test('createShard wires events, faults and the PCM tap', async (t) => {
  const dir = t.testdir();
  const arena = new Arena({ slots: 2, ringBytes: 4096 });
  const p = new RingProducer(arena);
  const { port1, port2 } = new MessageChannel();
  const events: ShardEvent[] = [];
  port1.on('message', (e: ShardEvent) => events.push(e));
  const api = await createShard({ shard: 0, sab: arena.sab, slots: 2, ringBytes: 4096, graceMs: 100, events: port2, faultsAllowed: true, faults: { drainDelayMs: 0 }, pcmTapDir: dir });
  const i = Buffer.from(JSON.stringify(init({ endpoint: 'pusher' })));
  p.write(0, Code.OPEN, Date.now(), i, 0, i.length);
  p.write(0, Code.FRAMES, Date.now(), frames[0]!, 0, 30);
  p.write(0, Code.PROCESS, Date.now(), Buffer.from('{"conversation_id":"x"}'), 0, 23);
  p.ring();
  const deadline = Date.now() + 5000;
  while (events.length < 1 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 5));
  t.equal(events[0]!.t, 'job');
  t.ok(api.setFaults({ leakOnClose: false }));
  t.equal(api.stats().framesDecoded, 1);
  t.equal(readFileSync(join(dir, 'u1-1.pcm')).length, 320, 'one frame of PCM tapped');
  t.same(await api.close(0), { leaked: 0 });
  const prof = JSON.parse(await api.profile(0.05));
  t.ok(Array.isArray(prof.nodes), 'a .cpuprofile');
  await api.stop();
  port1.close();
  t.type(pcmFileTap(join(dir, 'x')), 'function');
});
