// GcsStore through the real @google-cloud/storage client against the in-process fake GCS.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { GcsStore, type GcsStoreOptions } from '../src/store/gcs.js';
import { ObjectNotFoundError, StoreError } from '../src/store/types.js';
import type { Corruption } from './support/fake-gcs.js';
import { BUCKET, failure, gcsRig, isChunk, sha256 } from './support/gcs-rig.js';

const { fake, dir, store, source, small, large } = await gcsRig(t);

t.test('small object: multipart upload, metadata round trip, stat, read, list', async (t) => {
  const s = store();
  t.equal(s.kind, 'gcs');
  const src = small();
  const before = { ...fake.counters.byKind };
  const o = await s.putFile('chunks/u1/_/1700000000.000.lc3', src.path, src.meta);
  t.same(o, { name: 'chunks/u1/_/1700000000.000.lc3', size: 2000, metadata: { codec: 'lc3', sample_rate: '16000', sha256: src.meta.sha256 }, contentType: 'audio/lc3' });
  t.equal(fake.counters.byKind['upload-multipart'], before['upload-multipart'] + 1, 'one multipart request');
  t.equal(fake.counters.byKind['upload-init'], before['upload-init'], 'no resumable session');
  const stored = fake.getObject(BUCKET, o.name)!;
  t.ok(stored.data.equals(src.data), 'the fake holds the bytes');
  t.equal(stored.contentType, 'audio/lc3');
  t.same(await s.stat(o.name), o, 'stat: size, metadata and content type');
  t.ok((await s.read(o.name)).equals(src.data), 'read: the bytes');
  t.same(await s.list('chunks/u1/'), [o]);
});

t.test('large object: resumable upload in chunks with Content-Range, 308 between chunks', async (t) => {
  const s = store();
  const src = large();
  const before = { ...fake.counters.byKind };
  const o = await s.putFile('big/one.wav', src.path, { ...src.meta, contentType: 'audio/wav' });
  t.equal(o.size, 700_000);
  t.equal(fake.counters.byKind['upload-init'], before['upload-init'] + 1, 'one session');
  t.equal(fake.counters.byKind['upload-put'], before['upload-put'] + 3, 'three chunk requests');
  const ranges = fake.log.filter(isChunk).slice(-3).map((r) => r.headers['content-range']);
  t.same(ranges, ['bytes 0-262143/*', 'bytes 262144-524287/*', 'bytes 524288-699999/700000']);
  const init = fake.log.filter((r) => r.kind === 'upload-init').at(-1)!;
  t.equal(init.headers['x-upload-content-type'], 'audio/wav', 'the content type travels as a header of the initiation');
  t.ok(fake.getObject(BUCKET, 'big/one.wav')!.data.equals(src.data));
  t.same(await s.stat('big/one.wav'), { ...o, contentType: 'audio/wav' });
  t.ok((await s.read('big/one.wav')).equals(src.data));
});

t.test('default thresholds: 8 MiB resumable threshold and chunk size', async (t) => {
  const s = new GcsStore({ bucket: BUCKET, apiEndpoint: `${fake.url}/` });
  t.equal(s.resumableThreshold, 8 << 20);
  t.equal(s.chunkSize, 8 << 20);
  t.equal(s.timeoutMs, 30_000);
  const before = { ...fake.counters.byKind };
  const src = source(randomBytes((8 << 20) + 12345));
  const o = await s.putFile('big/default.lc3', src.path, src.meta);
  t.equal(o.size, (8 << 20) + 12345);
  t.equal(fake.counters.byKind['upload-put'], before['upload-put'] + 2, 'two chunks of at most 8 MiB');
});

t.test('the threshold: files of at least resumableThreshold bytes go resumable', async (t) => {
  const s = store({ resumableThreshold: 1000 });
  const before = { ...fake.counters.byKind };
  const under = source(randomBytes(999));
  await s.putFile('th/under', under.path, under.meta);
  t.equal(fake.counters.byKind['upload-multipart'], before['upload-multipart'] + 1, 'one byte under: multipart');
  const at = source(randomBytes(1000));
  await s.putFile('th/at', at.path, at.meta);
  t.equal(fake.counters.byKind['upload-init'], before['upload-init'] + 1, 'at the threshold: resumable');
  t.equal(fake.counters.byKind['upload-put'], before['upload-put'] + 1, 'in one chunk');
});

t.test('empty object, and idempotent puts', async (t) => {
  const s = store();
  const empty = source(Buffer.alloc(0), {});
  t.same(await s.putFile('e/empty', empty.path, empty.meta), { name: 'e/empty', size: 0, metadata: { sha256: empty.meta.sha256 }, contentType: 'audio/lc3' });
  t.same(await s.read('e/empty'), Buffer.alloc(0));
  const src = small();
  const a = await s.putFile('e/twice', src.path, src.meta);
  const g1 = fake.getObject(BUCKET, 'e/twice')!.generation;
  t.same(await s.putFile('e/twice', src.path, src.meta), a, 'the same content again succeeds');
  t.ok(fake.getObject(BUCKET, 'e/twice')!.generation > g1, 'as a new generation');
});

t.test('list: prefix, pagination, sorting, objects without custom metadata', async (t) => {
  const s = store({ listPageSize: 3 });
  for (const n of ['p/5', 'p/1', 'p/3', 'p/é', 'p/2', 'p/4', 'p/sub/x']) fake.putObject(BUCKET, n, Buffer.from(n), { contentType: 'text/plain', metadata: { n } });
  fake.putObject(BUCKET, 'q/other', Buffer.from('x'));
  fake.putObject(BUCKET, 'p-not-under', Buffer.from('x'));
  const before = fake.counters.byKind.list;
  const all = await s.list('p/');
  t.same(all.map((o) => o.name), ['p/1', 'p/2', 'p/3', 'p/4', 'p/5', 'p/sub/x', 'p/é']);
  t.equal(fake.counters.byKind.list, before + 3, 'three pages of three');
  t.same(all[0], { name: 'p/1', size: 3, metadata: { n: 'p/1' }, contentType: 'text/plain' });
  t.same(await s.list('q/'), [{ name: 'q/other', size: 1, metadata: {}, contentType: 'application/octet-stream' }]);
  t.same(await s.list('nothing/'), []);
  t.ok((await s.list('')).length >= 9, 'the empty prefix lists everything');
});

t.test('missing objects and buckets', async (t) => {
  const s = store();
  t.equal(await s.stat('no/such/object'), null);
  const err = await failure(s.read('no/such/object'));
  t.type(err, ObjectNotFoundError);
  t.equal(err.retryable, false);
  const nb = store({ bucket: 'no-such-bucket' });
  t.equal(await nb.stat('x'), null, 'stat in a missing bucket: nothing there');
  const src = small();
  const e1 = await failure(nb.putFile('x', src.path, src.meta));
  t.equal(e1.retryable, false, 'upload to a missing bucket: permanent');
  t.match(e1.message, /404/);
  const e2 = await failure(nb.list(''));
  t.equal(e2.retryable, false);
  const big = large();
  t.equal((await failure(nb.putFile('x', big.path, big.meta))).retryable, false, 'resumable too');
});

t.test('bad input is rejected before any request', async (t) => {
  const s = store();
  const src = small();
  const before = fake.counters.requests;
  t.equal((await failure(s.putFile('../x', src.path, src.meta))).retryable, false);
  t.equal((await failure(s.putFile('a//b', src.path, src.meta))).retryable, false);
  t.equal((await failure(s.stat('/abs'))).retryable, false);
  t.equal((await failure(s.read('a\\b'))).retryable, false);
  t.equal((await failure(s.list('a\0'))).retryable, false);
  t.equal((await failure(s.putFile('ok', src.path, { ...src.meta, sha256: 'nope' }))).retryable, false);
  const mismatch = await failure(s.putFile('ok', src.path, { ...src.meta, size: 1999 }));
  t.equal(mismatch.retryable, false);
  t.match(mismatch.message, /does not match its metadata/);
  t.equal((await failure(s.putFile('ok', src.path, { ...src.meta, sha256: sha256(Buffer.from('x')) }))).retryable, false);
  const missing = await failure(s.putFile('ok', join(dir, 'missing'), src.meta));
  t.equal(missing.retryable, false);
  t.match(missing.message, /cannot read source file/);
  t.equal((await failure(s.putFile('ok', dir, src.meta))).retryable, false, 'a directory as the source');
  t.equal(fake.counters.requests, before, 'no request was made');
});

const corruptions: Corruption[] = ['bytes', 'md5', 'crc32c', 'size', 'metadata', 'name'];
for (const size of ['small', 'large'] as const) {
  for (const kind of corruptions) {
    t.test(`${size} put: the store reports a wrong ${kind} → rejected`, async (t) => {
      const s = store();
      const src = size === 'small' ? small() : large();
      const name = `corrupt/${size}/${kind}`;
      fake.corruptNextUpload(kind);
      const err = await failure(s.putFile(name, src.path, src.meta));
      t.equal(err.retryable, true, String(err.message.split('\n')[0]));
      if (kind === 'bytes' || kind === 'crc32c') t.equal(fake.getObject(BUCKET, name), undefined, 'the client deleted the bad object');
      t.equal((await s.putFile(name, src.path, src.meta)).size, src.data.length, 'a later put succeeds');
      t.ok(fake.getObject(BUCKET, name)!.data.equals(src.data));
    });
  }
}

t.test('read detects bytes corrupted at rest', async (t) => {
  const s = store();
  const src = small();
  await s.putFile('rot/one', src.path, src.meta);
  const o = fake.getObject(BUCKET, 'rot/one')!;
  o.data = Buffer.from(o.data);
  o.data[100] = o.data[100]! ^ 1;
  const err = await failure(s.read('rot/one'));
  t.equal(err.retryable, true);
  t.match(err.message, /read rot\/one/);
});

t.test('constructor: options, validation, auth with custom endpoints', async (t) => {
  const bad: [Partial<GcsStoreOptions>, RegExp][] = [
    [{ bucket: '' }, /bad bucket name/],
    [{ bucket: 'Upper' }, /bad bucket name/],
    [{ bucket: 'ab' }, /bad bucket name/],
    [{ bucket: 'b', apiEndpoint: 'not a url' }, /bad bucket name/],
    [{ bucket: 'bkt', apiEndpoint: 'not a url' }, /not a URL/],
    [{ bucket: 'bkt', apiEndpoint: 'ftp://x' }, /http/],
    [{ bucket: 'bkt', timeoutMs: 0 }, /timeoutMs/],
    [{ bucket: 'bkt', timeoutMs: 1.5 }, /timeoutMs/],
    [{ bucket: 'bkt', chunkSize: 1000 }, /multiple of 256 KiB/],
    [{ bucket: 'bkt', listPageSize: -1 }, /listPageSize/],
  ];
  for (const [opts, re] of bad) {
    let err: unknown;
    try {
      new GcsStore(opts as GcsStoreOptions);
    } catch (e) {
      err = e;
    }
    t.type(err, StoreError, re.source);
    t.equal((err as StoreError).retryable, false);
    t.match((err as Error).message, re);
  }
  const local = new GcsStore({ bucket: 'bkt', apiEndpoint: 'http://127.0.0.1:9' });
  t.equal(local.storage.apiEndpoint, 'http://127.0.0.1:9');
  t.notOk(local.storage.useAuthWithCustomEndpoint, 'an emulator gets no credentials');
  const regional = new GcsStore({ bucket: 'bkt', apiEndpoint: 'https://storage.europe-west3.rep.googleapis.com' });
  t.equal(regional.storage.useAuthWithCustomEndpoint, true, 'a Google endpoint keeps auth');
  const forced = new GcsStore({ bucket: 'bkt', apiEndpoint: 'http://127.0.0.1:9', useAuthWithCustomEndpoint: true });
  t.equal(forced.storage.useAuthWithCustomEndpoint, true);
  // The real service: constructed only (no request is made here, so no credentials are looked up).
  const prod = new GcsStore({ bucket: 'my.bucket_1', projectId: 'p', keyFilename: '/nonexistent/key.json', credentials: { client_email: 'x@y', private_key: 'k' } });
  t.equal(prod.storage.apiEndpoint, 'https://storage.googleapis.com');
  t.equal(prod.bucketName, 'my.bucket_1');
});

t.test('no request to the fake carried credentials', async (t) => {
  t.ok(fake.counters.requests > 50);
  t.equal(fake.counters.withAuthorization, 0);
});
