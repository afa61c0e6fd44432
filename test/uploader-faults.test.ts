// Uploader under store failures and outages: retries forever with backoff, one probe at a time
// while the store is down, the concurrency bound always holds, nothing is lost, and a spool file
// is deleted only after putFile resolved.
import t from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { LocalStore } from '../src/store/local.js';
import { GcsStore } from '../src/store/gcs.js';
import { StoreError, type ObjectStore, type PutMeta, type StoredObject } from '../src/store/types.js';
import { nodeIo, type SpoolIo } from '../src/spool/io.js';
import { SpoolQuota } from '../src/spool/quota.js';
import { Uploader, type UploaderOptions } from '../src/spool/uploader.js';
import { FakeGcs } from './support/fake-gcs.js';
import { files, sealedLc3 } from './support/spool.js';

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A store wrapper with switches: failures, outages, a gate, and concurrency accounting. */
class FaultStore implements ObjectStore {
  readonly kind = 'local' as const;
  failPuts = 0;
  failStats = 0;
  /** Puts that store the object and then reject anyway (the caller cannot be sure). */
  doubtfulPuts = 0;
  down = false;
  permanent = false;
  gate: Promise<void> | null = null;
  inFlight = 0;
  maxInFlight = 0;
  maxInFlightWhileDown = 0;
  calls = 0;
  readonly events: string[] = [];

  constructor(readonly inner: ObjectStore) {}

  private async enter<T>(what: string, fn: () => Promise<T>): Promise<T> {
    this.calls++;
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    if (this.down) this.maxInFlightWhileDown = Math.max(this.maxInFlightWhileDown, this.inFlight);
    try {
      await new Promise((r) => setImmediate(r));
      if (this.gate) await this.gate;
      if (this.down) throw new StoreError(`${what}: store is down`, !this.permanent);
      return await fn();
    } finally {
      this.inFlight--;
    }
  }

  putFile(name: string, path: string, meta: PutMeta): Promise<StoredObject> {
    return this.enter('put', async () => {
      if (this.failPuts > 0) {
        this.failPuts--;
        throw new StoreError('put: injected 503');
      }
      const o = await this.inner.putFile(name, path, meta);
      this.events.push(`stored ${name} (spool file ${existsSync(path) ? 'still there' : 'GONE'})`);
      if (this.doubtfulPuts > 0) {
        this.doubtfulPuts--;
        throw new Error('put: connection reset after the upload');
      }
      return o;
    });
  }

  stat(name: string): Promise<StoredObject | null> {
    return this.enter('stat', async () => {
      if (this.failStats > 0) {
        this.failStats--;
        throw new StoreError('stat: injected 503');
      }
      return this.inner.stat(name);
    });
  }

  list(prefix: string): Promise<StoredObject[]> {
    return this.inner.list(prefix);
  }

  read(name: string): Promise<Buffer> {
    return this.inner.read(name);
  }
}

function rig(t: { teardown(fn: () => void | Promise<void>): void }, dir: string, o: Partial<UploaderOptions> = {}): { up: Uploader; store: FaultStore; errors: string[] } {
  const store = new FaultStore(new LocalStore(join(dir, 'store')));
  const errors: string[] = [];
  const up = new Uploader({ dir, store, rescanMs: 0, baseDelayMs: 5, maxDelayMs: 40, onError: (e) => errors.push(e.message), ...o });
  t.teardown(() => up.close());
  return { up, store, errors };
}

t.test('failed puts and stats are retried with backoff until they succeed', async (t) => {
  const dir = t.testdir({ store: {} });
  const sent = [sealedLc3(dir, 'chunks/u/c/1.000.lc3', 10), sealedLc3(dir, 'chunks/u/c/2.000.lc3', 10, 2)];
  const quota = new SpoolQuota(1 << 20);
  quota.add(sent[0]!.length + sent[1]!.length);
  const { up, store, errors } = rig(t, dir, { quota });
  store.failPuts = 3;
  store.failStats = 2;
  await up.start();
  t.same(await up.drain(20_000), { uploaded: 2, remaining: 0 });
  const st = up.stats();
  t.equal(st.uploads_error, 5);
  t.equal(st.upload_retries_total, 5);
  t.equal(st.uploads_ok, 2);
  t.equal(errors.length, 5);
  t.equal(quota.bytes, 0);
  t.ok((await store.read('chunks/u/c/2.000.lc3')).equals(sent[1]!));
  t.same(files(join(dir, 'sealed')), []);
});

t.test('the spool file is deleted only after putFile resolved', async (t) => {
  const dir = t.testdir({ store: {} });
  sealedLc3(dir, 'chunks/u/c/1.000.lc3', 10);
  const { up, store } = rig(t, dir);
  let open!: () => void;
  store.gate = new Promise((r) => (open = r));
  await up.start();
  await until(() => store.inFlight === 1, 'the upload to reach the store');
  t.equal(store.inFlight, 1, 'the put (or its stat) is waiting');
  t.same(files(join(dir, 'sealed')), ['chunks/u/c/1.000.lc3'], 'still in the spool while the store has not confirmed');
  store.gate = null;
  open();
  t.same(await up.drain(10_000), { uploaded: 0 + 1, remaining: 0 });
  t.same(store.events, ['stored chunks/u/c/1.000.lc3 (spool file still there)']);
  t.same(files(join(dir, 'sealed')), []);
});

t.test('a put that stored the object but failed anyway: kept, retried, recognised, deleted', async (t) => {
  const dir = t.testdir({ store: {} });
  const content = sealedLc3(dir, 'chunks/u/c/1.000.lc3', 10);
  const { up, store } = rig(t, dir);
  store.doubtfulPuts = 1;
  await up.start();
  t.same(await up.drain(10_000), { uploaded: 1, remaining: 0 });
  t.equal(up.stats().uploads_error, 1);
  t.same(store.events, ['stored chunks/u/c/1.000.lc3 (spool file still there)'], 'one put: the retry found the object already there');
  t.same((await store.list('chunks/')).map((o) => o.name), ['chunks/u/c/1.000.lc3'], 'no duplicate under another name');
  t.ok((await store.read('chunks/u/c/1.000.lc3')).equals(content));
});

t.test('an outage of any length: one probe at a time, then everything, nothing lost', async (t) => {
  const dir = t.testdir({ store: {} });
  const sent = new Map<string, Buffer>();
  for (let i = 0; i < 30; i++) {
    const name = `chunks/u${i % 3}/c/${1000 + i}.000.lc3`;
    sent.set(name, sealedLc3(dir, name, 5 + i, i));
  }
  const { up, store } = rig(t, dir, { concurrency: 4 });
  store.down = true;
  await up.start();
  await until(() => up.stats().consecutive_failures > 3, 'several failures');
  const during = store.calls;
  t.ok(store.maxInFlightWhileDown <= 4, 'the first wave is bounded by the concurrency');
  const before = store.maxInFlightWhileDown;
  store.maxInFlightWhileDown = 0;
  await new Promise((r) => setTimeout(r, 300));
  t.ok(store.maxInFlightWhileDown <= 1, 'while down: one probe at a time');
  t.ok(store.calls - during < 60, `a trickle of probes, not a storm (${store.calls - during} in 300 ms)`);
  t.equal(files(join(dir, 'sealed')).length, 30, 'nothing deleted while the store is down');
  t.ok(before >= 1);
  store.down = false;
  t.same(await up.drain(30_000), { uploaded: 30, remaining: 0 });
  t.ok(store.maxInFlight <= 4, `concurrency bound held (max ${store.maxInFlight})`);
  for (const [name, content] of sent) t.ok((await store.read(name)).equals(content), name);
  t.same(files(join(dir, 'sealed')), []);
});

t.test('the concurrency bound holds with many files', async (t) => {
  const dir = t.testdir({ store: {} });
  for (let i = 0; i < 25; i++) sealedLc3(dir, `chunks/u/c/${i}.000.lc3`, 3, i);
  const { up, store } = rig(t, dir, { concurrency: 3 });
  let open!: () => void;
  store.gate = new Promise((r) => (open = r));
  await up.start();
  await until(() => store.inFlight === 3, 'three uploads at the gate');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(store.inFlight, 3, 'no more than three');
  store.gate = null;
  open();
  t.same(await up.drain(30_000), { uploaded: 25, remaining: 0 });
  t.equal(store.maxInFlight, 3);
});

t.test('permanent errors are retried too, slowly', async (t) => {
  const dir = t.testdir({ store: {} });
  sealedLc3(dir, 'chunks/u/c/1.000.lc3', 3);
  const { up, store, errors } = rig(t, dir, { maxDelayMs: 30 });
  store.down = true;
  store.permanent = true;
  await up.start();
  await until(() => up.stats().uploads_error >= 2, 'a retry');
  t.ok(up.stats().uploads_error >= 2, 'retried');
  t.match(errors[0], /store is down/);
  const before = up.stats().uploads_error;
  t.same(await up.drain(300), { uploaded: 0, remaining: 1 }, 'draining: retried about every second');
  t.ok(up.stats().uploads_error > before);
  store.down = false;
  t.same(await up.drain(10_000), { uploaded: 1, remaining: 0 });
});

t.test('drain gives up at its deadline; what is left stays for the next start', async (t) => {
  const dir = t.testdir({ store: {} });
  sealedLc3(dir, 'chunks/u/c/1.000.lc3', 3);
  sealedLc3(dir, 'chunks/u/c/2.000.lc3', 3);
  const { up, store } = rig(t, dir, { maxDelayMs: 60_000, baseDelayMs: 60_000, random: () => 1 });
  store.down = true;
  await up.start();
  await until(() => up.stats().uploads_error >= 2, 'both files to fail once');
  const t0 = Date.now();
  const res = await up.drain(400);
  t.same(res, { uploaded: 0, remaining: 2 });
  t.ok(Date.now() - t0 < 5000, 'returned at the deadline, long before the 60 s backoff');
  t.ok(up.stats().uploads_error >= 2, 'drain shortened the backoff to retry within the deadline');
  t.equal(files(join(dir, 'sealed')).length, 2);
  await up.close();
  // The next start uploads them.
  store.down = false;
  const next = new Uploader({ dir, store }); // default rescan period
  await next.start();
  t.same(await next.drain(10_000), { uploaded: 2, remaining: 0 });
  await next.close();
});

t.test('close waits for uploads in flight; local file errors are retried', async (t) => {
  const dir = t.testdir({ store: {} });
  sealedLc3(dir, 'chunks/u/c/1.000.lc3', 3);
  mkdirSync(join(dir, 'sealed', 'chunks', 'u', 'c', '2.000.lc3'), { recursive: true }); // a directory: EISDIR
  let unlinkFails = 1;
  const io: SpoolIo = {
    ...nodeIo,
    unlink: async (p) => {
      if (unlinkFails-- > 0) throw Object.assign(new Error('unlink EIO'), { code: 'EIO' });
      return nodeIo.unlink(p);
    },
  };
  const { up, store, errors } = rig(t, dir, { io });
  let open!: () => void;
  store.gate = new Promise((r) => (open = r));
  await up.start();
  up.notify('chunks/u/c/2.000.lc3');
  await until(() => store.inFlight === 1, 'the upload at the gate');
  let closed = false;
  const closing = up.close().then(() => (closed = true));
  await new Promise((r) => setTimeout(r, 30));
  t.notOk(closed, 'waiting for the upload in flight');
  store.gate = null;
  open();
  await closing;
  t.match(errors.join('\n'), /EISDIR|illegal operation on a directory/);
  t.match(errors.join('\n'), /unlink EIO/);
  t.equal(files(join(dir, 'sealed')).length, 1, 'the failed delete leaves the file for the next try (the store has it)');
});

t.test('end to end against the fake GCS: an outage, then every chunk lands intact', async (t) => {
  const fake = await FakeGcs.start({ buckets: ['spool-test'] });
  t.teardown(() => fake.stop());
  const dir = t.testdir();
  const sent = new Map<string, Buffer>();
  for (let i = 0; i < 8; i++) {
    const name = `chunks/u/c/${2000 + i}.000.lc3`;
    sent.set(name, sealedLc3(dir, name, 20 + i, i));
  }
  const store = new GcsStore({ bucket: 'spool-test', apiEndpoint: fake.url, timeoutMs: 2000 });
  const up = new Uploader({ dir, store, rescanMs: 0, baseDelayMs: 10, maxDelayMs: 100, concurrency: 2 });
  fake.outage('status');
  await up.start();
  await until(() => up.stats().uploads_error > 0, 'failures during the outage');
  t.ok(up.stats().uploads_error > 0);
  t.equal(files(join(dir, 'sealed')).length, 8);
  fake.outage(false);
  t.same(await up.drain(30_000), { uploaded: 8, remaining: 0 });
  for (const [name, content] of sent) {
    const o = fake.getObject('spool-test', name)!;
    t.ok(o.data.equals(content), name);
    t.equal(o.metadata.sha256, createHash('sha256').update(content).digest('hex'));
    t.equal(o.metadata.frames, String(content.length === 0 ? 0 : (content.length - 18) / 32));
    t.equal(o.contentType, 'audio/lc3');
  }
  await up.close();
});

/** A minimal in-memory store (fast: for tests with many files). */
class MemStore implements ObjectStore {
  readonly kind = 'local' as const;
  readonly objects = new Map<string, StoredObject & { data: Buffer }>();
  throwNonError = 0;

  async putFile(name: string, path: string, meta: PutMeta): Promise<StoredObject> {
    if (this.throwNonError-- > 0) throw 'a string, not an Error'; // eslint-disable-line @typescript-eslint/only-throw-error
    const data = await nodeIo.readFile(path);
    const o = { name, size: data.length, metadata: { ...meta.metadata, sha256: meta.sha256 }, data };
    this.objects.set(name, o);
    return o;
  }

  async stat(name: string): Promise<StoredObject | null> {
    return this.objects.get(name) ?? null;
  }

  async list(): Promise<StoredObject[]> {
    return [...this.objects.values()];
  }

  async read(name: string): Promise<Buffer> {
    return this.objects.get(name)!.data;
  }
}

t.test('a backlog of thousands of files; odd failures; draining an empty spool', async (t) => {
  const dir = t.testdir();
  const store = new MemStore();
  const errors: string[] = [];
  const up = new Uploader({ dir, store, rescanMs: 0, baseDelayMs: 1, maxDelayMs: 5, concurrency: 8, onError: (e) => errors.push(e.message) });
  t.same(await up.drain(1000), { uploaded: 0, remaining: 0 }, 'nothing to do');
  for (let i = 0; i < 1100; i++) sealedLc3(dir, `chunks/u${i % 10}/c/${i}.000.lc3`, 1, i);
  store.throwNonError = 1;
  await up.start();
  t.same(await up.drain(60_000), { uploaded: 1100, remaining: 0 });
  t.equal(store.objects.size, 1100);
  t.same(errors, ['a string, not an Error']);
  await up.close();
});
