// The speaker-sample job end to end: its JobSpec, the executor, the piscina worker
// (workers/speaker-sample-job.ts, loaded from source here) and the local store.
import t from 'tap';
import { join } from 'node:path';
import { Piscina } from 'piscina';
import { parseWav } from '../src/formats/wav.js';
import { speakerSampleExecutor, speakerSampleJobSpec, type SpeakerSampleJobRequest } from '../src/jobs/speaker-sample-executor.js';
import type { Job, JobOutcome } from '../src/jobs/types.js';
import { createStore, type StoreConfig } from '../src/store/index.js';
import { workerUrl } from '../src/util/worker-url.js';
import { T0 } from './support/spool.js';
import { chunkPcm, concat, signal, storeSession, withDeadline } from './support/speaker-sample.js';

const DEADLINE_MS = 60_000;

function request(over: Partial<SpeakerSampleJobRequest> = {}): SpeakerSampleJobRequest {
  return {
    personId: 'person-1',
    storageConversationId: '_',
    conversationId: 'conv-1',
    segmentIds: ['s1', 's2'],
    startMs: T0 + 1500,
    endMs: T0 + 2500,
    requestId: 'req-1',
    ...over,
  };
}

function jobOf(uid: string, r: SpeakerSampleJobRequest, id = 'j1'): Job {
  const spec = speakerSampleJobSpec(uid, r, 120);
  return { ...spec, id, createdMs: T0, attempts: 0, notBefore: spec.notBefore! };
}

const live = (): AbortSignal => new AbortController().signal;

t.test('speakerSampleJobSpec', async (t) => {
  const r = request();
  const spec = speakerSampleJobSpec('alice', r, 120);
  t.same(spec, {
    kind: 'speaker_sample',
    uid: 'alice',
    key: 'alice\nperson-1\nconv-1\ns1,s2',
    notBefore: T0 + 2500 + 120_000,
    payload: { personId: 'person-1', storageConversationId: '_', conversationId: 'conv-1', segmentIds: ['s1', 's2'], startMs: T0 + 1500, endMs: T0 + 2500, requestId: 'req-1' },
  });
  t.not((spec.payload as { segmentIds: string[] }).segmentIds, r.segmentIds, 'the payload owns its segment list');
});

t.test('executor → piscina worker → stored WAV; not ready → retry, then give up; impossible → terminal', async (t) => {
  const dir = t.testdir();
  const cfg: StoreConfig = { STORE: 'local', STORE_DIR: join(dir, 'store') };
  const store = createStore(cfg);
  const names = await storeSession(dir, store, { uid: 'alice', conversationId: '_', t0: T0, pcm: signal(16000, 4), chunkSeconds: 2, lc3: { frameUs: 10000, sampleRate: 16000, frameBytes: 40 } });
  let clock = 0;
  const exec = speakerSampleExecutor({ store: cfg, retryMs: 50, maxWaitMs: 10_000, now: () => clock });
  t.teardown(() => exec.close());
  const run = (job: Job, signal = live()): Promise<JobOutcome> => withDeadline(exec(job, signal), DEADLINE_MS, `job ${job.id}`);

  const job = jobOf('alice', request());
  clock = job.notBefore;
  const out = await run(job);
  t.same(out, { ok: true, reply: { object: 'alice/people_profiles/person-1/req-1.wav', samples: 16000 } });
  const all = concat(await Promise.all(names.map((n) => chunkPcm(store, n))));
  const wav = parseWav(await store.read('alice/people_profiles/person-1/req-1.wav'));
  t.equal(wav.sampleRate, 16000);
  t.same(wav.samples, all.subarray(1500 * 16, 2500 * 16), 'the joined samples, via the worker');
  t.same(await run(job), out, 'a rerun is the same');

  // The audio after 4 s is not stored (yet): retry, until maxWaitMs past notBefore.
  const late = jobOf('alice', request({ startMs: T0 + 3500, endMs: T0 + 5000, requestId: 'req-2' }), 'j2');
  clock = late.notBefore + 9_999;
  t.match(await run(late), { ok: false, terminal: false, error: /not stored yet/, retryAfterMs: 50 });
  clock = late.notBefore + 10_000;
  t.match(await run(late), { ok: false, terminal: true, error: /^gave up after 10 s: .*not stored yet/ });

  // Impossible requests: terminal at once.
  t.match(await run(jobOf('alice', request({ personId: '../x' }), 'j3')), { ok: false, terminal: true, error: /invalid personId/ });
  t.match(await run({ ...job, id: 'j4', payload: { ...job.payload, startMs: 'soon' } }), { ok: false, terminal: true, error: /numeric startMs/ });
  t.match(await run({ ...job, id: 'j5', kind: 'process' }), { ok: false, terminal: true, error: /not a speaker_sample job/ });

  // Aborted (shutdown): not an outcome of the job itself.
  const ac = new AbortController();
  ac.abort();
  t.same(await run(job, ac.signal), { ok: false, terminal: false, error: 'aborted' });
  const ac2 = new AbortController();
  const pending = run(jobOf('alice', request({ requestId: 'req-6' }), 'j6'), ac2.signal);
  ac2.abort();
  t.match(await pending, { ok: false, terminal: false }, 'aborted while queued or running');

  await exec.close();
  t.match(await run(job), { ok: false, terminal: false, error: /closed/ });
  await exec.close(); // twice is fine
});

t.test('a given pool is used and left open; store errors in the worker are retried', async (t) => {
  const dir = t.testdir();
  const pool = new Piscina({ filename: workerUrl('speaker-sample-job').href, minThreads: 0, maxThreads: 1 });
  t.teardown(() => pool.destroy());
  const bad = speakerSampleExecutor({ store: { STORE: 'nope' }, pool, retryMs: 7, now: () => 0 });
  const job = jobOf('alice', request());
  const out = await withDeadline(bad(job, live()), DEADLINE_MS, 'bad store');
  t.match(out, { ok: false, terminal: false, error: /STORE must be "local" or "gcs"/, retryAfterMs: 7 });
  await bad.close(); // leaves the given pool open: the next executor runs on it

  const cfg: StoreConfig = { STORE: 'local', STORE_DIR: join(dir, 'store') };
  await storeSession(dir, createStore(cfg), { uid: 'bob', conversationId: 'c', t0: T0, pcm: signal(8000, 3), chunkSeconds: 1, sampleRate: 8000 });
  const good = speakerSampleExecutor({ store: cfg, pool, maxSeconds: 0.5 });
  const r = await withDeadline(good(jobOf('bob', request({ storageConversationId: 'c' })), live()), DEADLINE_MS, 'good');
  t.same(r, { ok: true, reply: { object: 'bob/people_profiles/person-1/req-1.wav', samples: 4000 } }, 'clipped to maxSeconds = 0.5');
  await good.close();
});
