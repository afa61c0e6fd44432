// Speaker sample extraction from real stored chunks (made by the real spool, uploaded by the real
// uploader into a local store): sample-exact cuts and joins, clipping, coverage, WAV sessions,
// bad requests, the stored WAV, idempotence.
import t from 'tap';
import { createHash } from 'node:crypto';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeLc3 } from '../src/codec/transcode.js';
import { parseWav } from '../src/formats/wav.js';
import { extractSpeakerSample, speakerSampleObjectName, type SpeakerSampleRequest } from '../src/jobs/speaker-sample.js';
import { createStore } from '../src/store/index.js';
import { ObjectNotFoundError, StoreError, type ObjectStore } from '../src/store/types.js';
import { T0 } from './support/spool.js';
import { chunkPcm, concat, copyObject, decodeWholeLc3, signal, storeSession } from './support/speaker-sample.js';

const LC3_16K = { frameUs: 10000, sampleRate: 16000, frameBytes: 40 };
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function req(over: Partial<SpeakerSampleRequest> & Pick<SpeakerSampleRequest, 'startMs' | 'endMs'>): SpeakerSampleRequest {
  return { uid: 'alice', storageConversationId: 'conv-1', personId: 'person-1', requestId: 'req-1', ...over };
}

/** A local store with one LC3 session of `seconds` in `chunkSeconds` chunks at T0. */
async function lc3Store(dir: string, seconds: number, chunkSeconds: number, lc3 = LC3_16K, conversationId = 'conv-1') {
  const store = createStore({ STORE: 'local', STORE_DIR: join(dir, 'store') });
  const pcm = signal(lc3.sampleRate, seconds);
  const names = await storeSession(dir, store, { uid: 'alice', conversationId, t0: T0, pcm, chunkSeconds, lc3 });
  return { store, pcm, names };
}

/** Signal-to-noise ratio (dB) of `got` against `want`. */
function snr(want: Int16Array, got: Int16Array): number {
  let s = 0;
  let n = 0;
  for (let i = 0; i < want.length; i++) {
    s += want[i]! ** 2;
    n += (want[i]! - got[i]!) ** 2;
  }
  return 10 * Math.log10(s / Math.max(n, 1));
}

t.test('a range inside one chunk: the exact samples, stored as a playable WAV with its metadata', async (t) => {
  const dir = t.testdir({ tmp: {} });
  const { store, pcm, names } = await lc3Store(dir, 6, 2);
  t.same(names, ['chunks/alice/conv-1/1732623456.789.lc3', 'chunks/alice/conv-1/1732623458.789.lc3', 'chunks/alice/conv-1/1732623460.789.lc3']);
  const whole = await chunkPcm(store, names[0]!);
  // The reference decode agrees with the project's dlc3-exact transcoder where that one has samples.
  const dlc3 = decodeLc3(await store.read(names[0]!)).pcm;
  t.equal(whole.length, 32000);
  t.same(whole.subarray(0, dlc3.length), dlc3, 'reference decode = dlc3 decode (plus the codec-delay tail)');

  const r = await extractSpeakerSample(store, req({ startMs: T0 + 300, endMs: T0 + 1700 }), { tmpDir: join(dir, 'tmp') });
  const object = 'alice/people_profiles/person-1/req-1.wav';
  t.same(r, { ready: true, object, samples: 1400 * 16, sampleRate: 16000, startMs: T0 + 300, endMs: T0 + 1700 });
  t.equal(speakerSampleObjectName('alice', 'person-1', 'req-1'), object);
  const buf = await store.read(object);
  const wav = parseWav(buf);
  t.equal(wav.sampleRate, 16000);
  t.equal(wav.channels, 1);
  t.equal(wav.samples.length, 1400 * 16);
  t.same(wav.samples, whole.subarray(300 * 16, 1700 * 16), 'sample-exact cut');
  t.ok(snr(pcm.subarray(300 * 16, 1700 * 16), wav.samples) > 10, 'and in time with the audio that was sent');
  const st = (await store.stat(object))!;
  t.equal(st.contentType, 'audio/wav');
  t.same(st.metadata, {
    codec: 'pcm16',
    sample_rate: '16000',
    frames: '22400',
    duration: '1.400',
    person_id: 'person-1',
    conversation_id: 'conv-1',
    storage_conversation_id: 'conv-1',
    request_id: 'req-1',
    start_ms: String(T0 + 300),
    end_ms: String(T0 + 1700),
    sha256: sha(buf),
  });
  t.same(readdirSync(join(dir, 'tmp')), [], 'the temporary file is gone');
});

t.test('spanning chunks: joined sample-exactly (10 ms frames; 7.5 ms frames with names rounded to the ms)', async (t) => {
  const dir = t.testdir({ a: {}, b: {} });
  const { store, names } = await lc3Store(join(dir, 'a'), 6, 2);
  const all = concat(await Promise.all(names.map((n) => chunkPcm(store, n))));
  const r = await extractSpeakerSample(store, req({ startMs: T0 + 1500, endMs: T0 + 4500, conversationId: 'conv-9' }));
  t.match(r, { ready: true, samples: 3000 * 16 });
  const wav = parseWav(await store.read('alice/people_profiles/person-1/req-1.wav'));
  t.same(wav.samples, all.subarray(1500 * 16, 4500 * 16), 'three chunks, two joins');
  t.equal((await store.stat('alice/people_profiles/person-1/req-1.wav'))!.metadata.conversation_id, 'conv-9');

  // 7.5 ms frames, 0.5 s chunks: 67 frames = 502.5 ms each, so every other name is rounded up.
  const f75 = { frameUs: 7500, sampleRate: 16000, frameBytes: 30 };
  const b = await lc3Store(join(dir, 'b'), 2, 0.5, f75);
  t.same(
    b.names.map((n) => n.split('/').at(-1)),
    ['1732623456.789.lc3', '1732623457.292.lc3', '1732623457.794.lc3', '1732623458.297.lc3'],
    'chunk names: T0, +503, +1005, +1508',
  );
  const all75 = concat(await Promise.all(b.names.map((n) => chunkPcm(b.store, n))));
  t.equal(all75.length, (3 * 67 + 66) * 120, '267 frames of 120 samples');
  const r2 = await extractSpeakerSample(b.store, req({ startMs: T0 + 400, endMs: T0 + 1600, requestId: 'r75' }));
  t.match(r2, { ready: true, samples: 1200 * 16 });
  const wav2 = parseWav(await b.store.read('alice/people_profiles/person-1/r75.wav'));
  t.same(wav2.samples, all75.subarray(400 * 16, 1600 * 16), 'no sample lost or doubled at the rounded joins');
});

t.test('a long range is clipped to maxSeconds around its middle', async (t) => {
  const dir = t.testdir();
  const { store, names } = await lc3Store(dir, 14, 4);
  t.equal(names.length, 4);
  const all = concat(await Promise.all(names.map((n) => chunkPcm(store, n))));
  const r = await extractSpeakerSample(store, req({ startMs: T0 + 1000, endMs: T0 + 13000 }));
  t.same(r, { ready: true, object: 'alice/people_profiles/person-1/req-1.wav', samples: 160000, sampleRate: 16000, startMs: T0 + 2000, endMs: T0 + 12000 });
  t.same(parseWav(await store.read('alice/people_profiles/person-1/req-1.wav')).samples, all.subarray(2000 * 16, 12000 * 16));

  const r2 = await extractSpeakerSample(store, req({ startMs: T0 + 5001, endMs: T0 + 9000, requestId: 'r2' }), { maxSeconds: 2 });
  t.match(r2, { ready: true, samples: 32000, startMs: T0 + 6001, endMs: T0 + 8001 }, 'middle 7000.5 → starts at round(6000.5)');
  t.same(parseWav(await store.read('alice/people_profiles/person-1/r2.wav')).samples, all.subarray(6001 * 16, 8001 * 16));
  // A short range is left alone (fractional ms are rounded).
  const r3 = await extractSpeakerSample(store, req({ startMs: T0 + 100.4, endMs: T0 + 200.6, requestId: 'r3' }));
  t.match(r3, { ready: true, samples: 101 * 16, startMs: T0 + 100, endMs: T0 + 201 });
});

t.test('audio not stored yet → ready: false, until it is', async (t) => {
  const dir = t.testdir({ full: {}, tmp: {} });
  const full = await lc3Store(join(dir, 'full'), 6, 2);
  const store = createStore({ STORE: 'local', STORE_DIR: join(dir, 'partial') });
  await copyObject(full.store, store, full.names[0]!, join(dir, 'tmp'));
  await copyObject(full.store, store, full.names[2]!, join(dir, 'tmp'));

  const r = await extractSpeakerSample(store, req({ startMs: T0 + 1500, endMs: T0 + 4500 }));
  t.match(r, { ready: false, reason: /not stored yet/ }, 'the middle chunk is missing');
  t.equal(await store.stat('alice/people_profiles/person-1/req-1.wav'), null, 'nothing stored');
  t.match(await extractSpeakerSample(store, req({ startMs: T0 + 500, endMs: T0 + 1500 })), { ready: true }, 'a covered range is fine');
  t.match(await extractSpeakerSample(store, req({ startMs: T0 + 3000, endMs: T0 + 5000 })), { ready: false }, 'starts in the hole');
  t.match(await extractSpeakerSample(store, req({ startMs: T0 + 5000, endMs: T0 + 7000 })), { ready: false, reason: /after/ }, 'runs past the end');
  t.match(await extractSpeakerSample(store, req({ startMs: T0 - 2000, endMs: T0 - 500 })), { ready: false, reason: /no stored audio/ }, 'before any audio');
  t.match(await extractSpeakerSample(store, req({ startMs: T0, endMs: T0 + 500, storageConversationId: 'other' })), { ready: false, reason: /no stored audio/ });

  await copyObject(full.store, store, full.names[1]!, join(dir, 'tmp')); // uploaded at last
  const all = concat(await Promise.all(full.names.map((n) => chunkPcm(full.store, n))));
  t.match(await extractSpeakerSample(store, req({ startMs: T0 + 1500, endMs: T0 + 4500, requestId: 'r2' })), { ready: true });
  t.same(parseWav(await store.read('alice/people_profiles/person-1/r2.wav')).samples, all.subarray(1500 * 16, 4500 * 16));

  // Up to a frame (+1 ms rounding) past the stored audio is tolerated (silence), more is not.
  const r3 = await extractSpeakerSample(store, req({ startMs: T0 + 5000, endMs: T0 + 6005, requestId: 'r3' }));
  t.match(r3, { ready: true, samples: 1005 * 16 });
  const w3 = parseWav(await store.read('alice/people_profiles/person-1/r3.wav')).samples;
  t.same(w3.subarray(0, 1000 * 16), all.subarray(5000 * 16, 6000 * 16));
  t.ok(w3.subarray(1000 * 16).every((v) => v === 0), 'the 5 ms past the end are silent');
  t.match(await extractSpeakerSample(store, req({ startMs: T0 + 5000, endMs: T0 + 6030, requestId: 'r4' })), { ready: false });
  t.match(await extractSpeakerSample(store, req({ startMs: T0 - 30, endMs: T0 + 500, requestId: 'r4' })), { ready: false }, 'starts 30 ms early');
});

t.test('PCM sessions: WAV chunks are cut and joined losslessly', async (t) => {
  const dir = t.testdir();
  const store = createStore({ STORE: 'local', STORE_DIR: join(dir, 'store') });
  const pcm = signal(16000, 3);
  const names = await storeSession(dir, store, { uid: 'alice', conversationId: '_', t0: T0, pcm, chunkSeconds: 1, sampleRate: 16000 });
  t.same(names.map((n) => n.split('/').slice(2).join('/')), ['_/1732623456.789.wav', '_/1732623457.789.wav', '_/1732623458.789.wav']);
  const r = await extractSpeakerSample(store, req({ storageConversationId: '_', conversationId: 'conv-1', startMs: T0 + 700, endMs: T0 + 2300 }));
  t.same(r, { ready: true, object: 'alice/people_profiles/person-1/req-1.wav', samples: 1600 * 16, sampleRate: 16000, startMs: T0 + 700, endMs: T0 + 2300 });
  const wav = parseWav(await store.read('alice/people_profiles/person-1/req-1.wav'));
  t.same(wav.samples, pcm.subarray(700 * 16, 2300 * 16), 'the very samples that were sent');
  t.match((await store.stat('alice/people_profiles/person-1/req-1.wav'))!.metadata, { conversation_id: 'conv-1', storage_conversation_id: '_' });

  // A second session in the same conversation at another rate: a range across both cannot be one WAV.
  await storeSession(dir, store, { uid: 'alice', conversationId: '_', t0: T0 + 3000, pcm: signal(8000, 1), chunkSeconds: 1, sampleRate: 8000 });
  t.match(await extractSpeakerSample(store, req({ storageConversationId: '_', startMs: T0 + 2500, endMs: T0 + 3500, requestId: 'r2' })), {
    failed: true,
    reason: /different sample rates/,
  });
  t.match(await extractSpeakerSample(store, req({ storageConversationId: '_', startMs: T0 + 3100, endMs: T0 + 3900, requestId: 'r3' })), {
    ready: true,
    sampleRate: 8000,
    samples: 800 * 8,
  });
});

t.test('bad ids and ranges fail without touching the store', async (t) => {
  const untouchable = new Proxy({} as ObjectStore, {
    get: () => () => Promise.reject(new Error('the store must not be used')),
  });
  const ok = { startMs: T0, endMs: T0 + 1000 };
  for (const bad of [
    { uid: 'a/b' },
    { uid: '' },
    { storageConversationId: '..' },
    { personId: 'p.q' },
    { requestId: 'x'.repeat(129) },
    { conversationId: 'c d' },
    { requestId: 7 as unknown as string },
  ]) {
    t.match(await extractSpeakerSample(untouchable, req({ ...ok, ...bad })), { failed: true, reason: /^invalid/ }, JSON.stringify(bad));
  }
  for (const range of [
    { startMs: T0, endMs: T0 },
    { startMs: T0 + 10, endMs: T0 },
    { startMs: NaN, endMs: T0 },
    { startMs: -5, endMs: 10 },
    { startMs: T0, endMs: Infinity },
  ]) {
    t.match(await extractSpeakerSample(untouchable, req(range)), { failed: true, reason: /invalid range/ }, JSON.stringify(range));
  }
  t.match(await extractSpeakerSample(untouchable, req({ startMs: T0, endMs: T0 + 0.2 })), { failed: true, reason: /shorter than a millisecond/ });
  t.match(await extractSpeakerSample(untouchable, req(ok), { maxSeconds: 0 }), { failed: true, reason: /maxSeconds/ });
  t.rejects(extractSpeakerSample(untouchable, req(ok)), /must not be used/, 'store errors are thrown (the caller retries)');
});

t.test('idempotent: the same request gives the same object, without a second upload', async (t) => {
  const dir = t.testdir();
  const { store } = await lc3Store(dir, 2, 1);
  let puts = 0;
  const counting: ObjectStore = Object.assign(Object.create(store) as ObjectStore, {
    putFile: (...a: Parameters<ObjectStore['putFile']>) => {
      puts++;
      return store.putFile(...a);
    },
  });
  const request = req({ startMs: T0 + 200, endMs: T0 + 1800 });
  const r1 = await extractSpeakerSample(counting, request);
  const b1 = await store.read('alice/people_profiles/person-1/req-1.wav');
  const r2 = await extractSpeakerSample(counting, request);
  t.same(r2, r1);
  t.ok((await store.read('alice/people_profiles/person-1/req-1.wav')).equals(b1));
  t.equal(puts, 1, 'the second run found the object in place');
  // Something else under the name (a crash mid-way, an older version): replaced.
  const other = join(dir, 'other.wav');
  writeFileSync(other, 'not the sample');
  await store.putFile('alice/people_profiles/person-1/req-1.wav', other, { contentType: 'audio/wav', metadata: {}, size: 14, sha256: sha(Buffer.from('not the sample')) });
  t.same(await extractSpeakerSample(counting, request), r1);
  t.ok((await store.read('alice/people_profiles/person-1/req-1.wav')).equals(b1));
  t.equal(puts, 2);
});

t.test('chunks without usable metadata are inspected; undecodable chunks fail the request', async (t) => {
  const dir = t.testdir({ tmp: {} });
  const { store, names } = await lc3Store(dir, 2, 1);
  const bytes = await store.read(names[0]!);
  const path = join(dir, 'tmp', 'c.lc3');
  writeFileSync(path, bytes);
  // The same chunk under another conversation, stored with no audio metadata at all.
  await store.putFile(`chunks/alice/bare/${names[0]!.split('/').at(-1)}`, path, { contentType: 'audio/lc3', metadata: {}, size: bytes.length, sha256: sha(bytes) });
  const r = await extractSpeakerSample(store, req({ storageConversationId: 'bare', startMs: T0 + 100, endMs: T0 + 900 }));
  t.match(r, { ready: true, samples: 800 * 16 });
  t.same(parseWav(await store.read('alice/people_profiles/person-1/req-1.wav')).samples, decodeWholeLc3(bytes).pcm.subarray(100 * 16, 900 * 16));

  // Garbage that claims to be a 1 s LC3 chunk.
  const junk = join(dir, 'tmp', 'junk');
  writeFileSync(junk, 'definitely not an lc3 file');
  await store.putFile('chunks/alice/junk/1732623456.789.lc3', junk, {
    contentType: 'audio/lc3',
    metadata: { codec: 'lc3', sample_rate: '16000', frames: '100', duration: '1.000', frame_us: '10000' },
    size: 26,
    sha256: sha(Buffer.from('definitely not an lc3 file')),
  });
  t.match(await extractSpeakerSample(store, req({ storageConversationId: 'junk', startMs: T0 + 100, endMs: T0 + 900 })), { failed: true, reason: /not an \.lc3 file/ });
  // ...and garbage without metadata counts as no audio.
  await store.putFile('chunks/alice/junk2/1732623456.789.lc3', junk, { contentType: 'audio/lc3', metadata: {}, size: 26, sha256: sha(Buffer.from('definitely not an lc3 file')) });
  t.match(await extractSpeakerSample(store, req({ storageConversationId: 'junk2', startMs: T0 + 100, endMs: T0 + 900 })), { ready: false });
});

t.test('a chunk that vanishes while read → not ready; metadata promising more audio than stored → failed', async (t) => {
  const dir = t.testdir({ tmp: {} });
  const { store, names } = await lc3Store(dir, 2, 1);
  const vanishing: ObjectStore = Object.assign(Object.create(store) as ObjectStore, {
    read: (name: string) => Promise.reject(new ObjectNotFoundError(name)),
  });
  t.match(await extractSpeakerSample(vanishing, req({ startMs: T0 + 100, endMs: T0 + 900 })), { ready: false, reason: /disappeared/ });
  const failing: ObjectStore = Object.assign(Object.create(store) as ObjectStore, {
    read: () => Promise.reject(new StoreError('read failed: ECONNRESET')),
  });
  await t.rejects(extractSpeakerSample(failing, req({ startMs: T0 + 100, endMs: T0 + 900 })), /ECONNRESET/);

  const bytes = await store.read(names[0]!);
  const path = join(dir, 'tmp', 'c.lc3');
  writeFileSync(path, bytes);
  await store.putFile('chunks/alice/liar/1732623456.789.lc3', path, {
    contentType: 'audio/lc3',
    metadata: { codec: 'lc3', sample_rate: '16000', frames: '200', duration: '2.000', frame_us: '10000' },
    size: bytes.length,
    sha256: sha(bytes),
  });
  t.match(await extractSpeakerSample(store, req({ storageConversationId: 'liar', startMs: T0 + 500, endMs: T0 + 1800 })), {
    failed: true,
    reason: /hold less audio/,
  });
});
