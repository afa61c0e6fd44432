// GcsStore under injected faults: every failure rejects in bounded time, and the store works again after.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { BUCKET, failure, gcsRig, isChunk } from './support/gcs-rig.js';

const { fake, store, source, small, large } = await gcsRig(t);

// Every fault: the put rejects (retryable), then, with the fault gone, the same put succeeds.
const faults: { name: string; inject: () => void; onlyLarge?: boolean; permanent?: boolean }[] = [
  { name: '503 on the next request', inject: () => fake.failNext(1) },
  { name: '503 on the next upload chunk', inject: () => fake.failNext(1, { only: isChunk }), onlyLarge: true },
  { name: '429 on the next request', inject: () => fake.failNext(1, { status: 429 }) },
  { name: 'failure probability 1', inject: () => fake.failureProbability(1, 7) },
  { name: 'connection reset when the headers arrive', inject: () => fake.resetNext(1, { when: 'headers' }) },
  { name: 'connection reset after the body', inject: () => fake.resetNext(1) },
  { name: 'connection reset on an upload chunk', inject: () => fake.resetNext(1, { only: isChunk, when: 'headers' }), onlyLarge: true },
  { name: 'latency beyond the request timeout', inject: () => (fake.latencyMs = 1500) },
  { name: 'outage answering 503', inject: () => fake.outage('status') },
  { name: 'outage resetting connections', inject: () => fake.outage('reset') },
  { name: 'outage never answering', inject: () => fake.outage('hang') },
  { name: '403 (bad credentials)', inject: () => fake.failNext(1, { status: 403 }), permanent: true },
  { name: '401 (no credentials)', inject: () => fake.failNext(1, { status: 401 }), permanent: true },
];

for (const size of ['small', 'large'] as const) {
  for (const f of faults) {
    if (f.onlyLarge && size === 'small') continue;
    t.test(`${size} put under fault: ${f.name}`, async (t) => {
      const s = store({ timeoutMs: 1000 });
      const src = size === 'small' ? small() : large();
      const name = `faults/${size}/${f.name.replace(/\W+/g, '-')}`;
      f.inject();
      const err = await failure(s.putFile(name, src.path, src.meta));
      t.equal(err.retryable, !f.permanent, `rejected, retryable=${!f.permanent}: ${String(err.message.split('\n')[0])}`);
      fake.clearFaults();
      const o = await s.putFile(name, src.path, src.meta);
      t.equal(o.size, src.data.length, 'a later put succeeds');
      t.ok(fake.getObject(BUCKET, name)!.data.equals(src.data));
    });
  }
}

t.test('a slow store that answers each request in time still hits the per-put deadline', async (t) => {
  // Each request answers within its 600 ms timeout, but 7 of them (1 + 6 chunks) take longer
  // than the whole put may: 2 × 600 ms (+1 ms for the bytes at an absurd minimum rate).
  const s = store({ timeoutMs: 600, minBytesPerSecond: 1e12 });
  const src = source(randomBytes(1_500_000));
  fake.latencyMs = 300;
  const err = await failure(s.putFile('slow/one', src.path, src.meta));
  t.equal(err.retryable, true);
  t.match(err.message, /no result within 120\d ms/);
  fake.clearFaults();
  t.equal((await s.putFile('slow/one', src.path, src.meta)).size, 1_500_000);
});

t.test('stat, list and read fail promptly under faults and work again afterwards', async (t) => {
  const s = store({ timeoutMs: 600 });
  const src = small();
  await s.putFile('r/one', src.path, src.meta);
  for (const inject of [() => fake.failNext(1), () => fake.resetNext(1), () => fake.outage('status'), () => (fake.latencyMs = 1200)]) {
    inject();
    t.equal((await failure(s.stat('r/one'))).retryable, true, 'stat');
    fake.clearFaults();
    inject();
    t.equal((await failure(s.list('r/'))).retryable, true, 'list');
    fake.clearFaults();
    inject();
    t.equal((await failure(s.read('r/one'))).retryable, true, 'read');
    fake.clearFaults();
  }
  fake.latencyMs = 1200;
  t.match((await failure(s.read('r/one'))).message, /no data for 600 ms/, 'read gives up when no data arrives');
  fake.clearFaults();
  t.same((await s.stat('r/one'))!.size, 2000);
  t.same((await s.list('r/')).length, 1);
  t.ok((await s.read('r/one')).equals(src.data));
});

t.test('no request to the fake carried credentials', async (t) => {
  t.ok(fake.counters.requests > 50);
  t.equal(fake.counters.withAuthorization, 0);
});
