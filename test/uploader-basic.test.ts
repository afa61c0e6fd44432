// Uploader: sealed chunks go to the store under their object names with their audio metadata;
// the spool copy is deleted only after the store confirmed the object.
import t from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LocalStore } from '../src/store/local.js';
import { announceSealed } from '../src/spool/channel.js';
import { SpoolQuota } from '../src/spool/quota.js';
import { ShardSpool } from '../src/spool/shard-spool.js';
import { audioMetadata, DueHeap, Uploader } from '../src/spool/uploader.js';
import { files, frame, LC3, sealedLc3, T0 } from './support/spool.js';


const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

t.test('uploads sealed chunks from a real spool with their metadata, then deletes them', async (t) => {
  const dir = t.testdir({ spool: {}, store: {} });
  const spoolDir = join(dir, 'spool');
  const quota = new SpoolQuota(1 << 30);
  const sp = new ShardSpool({ dir: spoolDir, shard: 0, quota, fsyncMs: 20, chunkSeconds: 1 });
  const a = sp.openSession({ sessionId: 1, uid: 'alice', format: LC3 });
  const b = sp.openSession({ sessionId: 2, uid: 'bob', conversationId: 'conv-1', format: { kind: 'pcm16', sampleRate: 16000 } });
  for (let k = 0; k < 150; k++) a.append(frame(1, k), 1, T0 + k * 10);
  b.append(Buffer.alloc(3200, 7), 1600, T0);
  await sp.close();
  const sealed = files(join(spoolDir, 'sealed'));
  t.same(sealed, ['chunks/alice/_/1732623456.789.lc3', 'chunks/alice/_/1732623457.789.lc3', 'chunks/bob/conv-1/1732623456.789.wav']);
  const contents = new Map(sealed.map((n) => [n, readFileSync(join(spoolDir, 'sealed', n))]));

  const store = new LocalStore(join(dir, 'store'));
  const uploaded: string[] = [];
  const up = new Uploader({ dir: spoolDir, store, quota, rescanMs: 0, onUploaded: (n) => uploaded.push(n) });
  await up.start();
  const res = await up.drain(30_000);
  t.same(res, { uploaded: 3, remaining: 0 });
  t.same(uploaded.sort(), sealed);
  for (const [name, content] of contents) {
    const o = await store.stat(name);
    t.ok(o, name);
    t.ok((await store.read(name)).equals(content), `${name}: same bytes`);
    t.equal(o!.metadata.sha256, sha(content));
  }
  const lc3 = (await store.stat('chunks/alice/_/1732623456.789.lc3'))!;
  t.same(lc3.metadata, { codec: 'lc3', sample_rate: '16000', frames: '100', duration: '1.000', sha256: lc3.metadata.sha256, frame_us: '10000', frame_bytes: '30' });
  t.equal(lc3.contentType, 'audio/lc3');
  const wav = (await store.stat('chunks/bob/conv-1/1732623456.789.wav'))!;
  t.same(wav.metadata, { codec: 'pcm16', sample_rate: '16000', frames: '1600', duration: '0.100', sha256: wav.metadata.sha256 });
  t.equal(wav.contentType, 'audio/wav');
  t.same(files(join(spoolDir, 'sealed')), [], 'spool files deleted');
  t.same(readdirSync(join(spoolDir, 'sealed', 'chunks')), [], 'empty directories pruned');
  t.equal(quota.bytes, 0, 'the spool is empty again');
  const st = up.stats();
  t.same(st, {
    uploads_ok: 3,
    uploads_error: 0,
    upload_retries_total: 0,
    audio_bytes_uploaded_total: [...contents.values()].reduce((n, c) => n + c.length, 0),
    spool_files: 0,
    spool_bytes: 0,
    in_flight: 0,
    consecutive_failures: 0,
  });
  const reads = (up as unknown as { reads: { idleBytes: number } }).reads;
  const kept = reads.idleBytes / (64 << 10);
  t.ok(Number.isInteger(kept) && kept >= 1 && kept <= 3, `the reads went through pooled 64 KiB buffers, kept for the next (${kept})`);
  await up.close();
});

t.test('told about new chunks: notify(), the shards’ BroadcastChannel, periodic rescans', async (t) => {
  const dir = t.testdir({ store: {} });
  const store = new LocalStore(join(dir, 'store'));
  const errors: string[] = [];
  const up = new Uploader({ dir, store, listen: true, rescanMs: 50, onError: (e) => errors.push(e.message) });
  await up.start();
  await up.start(); // idempotent
  sealedLc3(dir, 'chunks/u/c/1.000.lc3', 3);
  up.notify('chunks/u/c/1.000.lc3', 56);
  up.notify('chunks/u/c/1.000.lc3', 56); // already known
  up.notify('not/a/chunk.txt');
  up.notify('chunks/u/c/9.000.lc3'); // announced but gone: nothing to do, not an error
  sealedLc3(dir, 'chunks/u/c/2.000.lc3', 3);
  announceSealed({ name: 'chunks/u/c/2.000.lc3', bytes: 56 });
  sealedLc3(dir, 'chunks/u/c/3.000.lc3', 3); // found by the rescan
  mkdirSync(join(dir, 'sealed', 'junk'), { recursive: true });
  writeFileSync(join(dir, 'sealed', 'junk', 'x.bin'), 'x');
  for (let i = 0; i < 2000 && (await store.list('chunks/')).length < 3; i++) await new Promise((r) => setTimeout(r, 10));
  t.same((await store.list('chunks/')).map((o) => o.name), ['chunks/u/c/1.000.lc3', 'chunks/u/c/2.000.lc3', 'chunks/u/c/3.000.lc3']);
  t.match(errors, [/not a chunk name, left alone: sealed\/not\/a\/chunk\.txt/]);
  t.ok(existsSync(join(dir, 'sealed', 'junk', 'x.bin')), 'files that are not chunks are left alone');
  t.equal(up.stats().uploads_error, 0);
  await up.close();
  up.notify('chunks/u/c/4.000.lc3'); // closed: ignored
  t.equal(up.stats().spool_files, 0);
});

t.test('already uploaded (a crash between put and delete) → just delete; a taken name → +1 ms', async (t) => {
  const dir = t.testdir({ store: {} });
  const store = new LocalStore(join(dir, 'store'));
  const same = sealedLc3(dir, 'chunks/u/c/1.000.lc3', 5);
  await store.putFile('chunks/u/c/1.000.lc3', join(dir, 'sealed', 'chunks/u/c/1.000.lc3'), {
    contentType: 'audio/lc3',
    metadata: {},
    size: same.length,
    sha256: sha(same),
  });
  // Another chunk owns 2.000 and 2.001 already.
  const other = sealedLc3(dir, 'chunks/u/c/2.000.lc3', 5, 9);
  for (const n of ['chunks/u/c/2.000.lc3', 'chunks/u/c/2.001.lc3']) {
    await store.putFile(n, join(dir, 'sealed', 'chunks/u/c/2.000.lc3'), { contentType: 'audio/lc3', metadata: {}, size: other.length, sha256: sha(other) });
  }
  const mine = sealedLc3(dir, 'chunks/u/c/2.000.lc3', 7, 3);
  const names: string[] = [];
  const up = new Uploader({ dir, store, rescanMs: 0, onUploaded: (n) => names.push(n) });
  await up.start();
  t.same(await up.drain(10_000), { uploaded: 2, remaining: 0 });
  t.same(names.sort(), ['chunks/u/c/1.000.lc3', 'chunks/u/c/2.002.lc3']);
  t.ok((await store.read('chunks/u/c/2.002.lc3')).equals(mine));
  t.ok((await store.read('chunks/u/c/2.000.lc3')).equals(other), 'the other chunk is untouched');
  t.equal(up.stats().audio_bytes_uploaded_total, mine.length, 'only the real upload counts as bytes');
  await up.close();
});

t.test('metadata of files that do not parse', async (t) => {
  t.same(audioMetadata(Buffer.from('garbage'), 'lc3', 'ab'), { codec: 'unknown', sha256: 'ab' });
  t.same(audioMetadata(Buffer.alloc(10), 'wav', 'cd'), { codec: 'unknown', sha256: 'cd' });
  const dir = t.testdir({ store: {} });
  mkdirSync(join(dir, 'sealed', 'chunks', 'u', 'c'), { recursive: true });
  writeFileSync(join(dir, 'sealed', 'chunks', 'u', 'c', '1.000.lc3'), 'not lc3 at all');
  const store = new LocalStore(join(dir, 'store'));
  const up = new Uploader({ dir, store, rescanMs: 0 });
  await up.start();
  t.same(await up.drain(10_000), { uploaded: 1, remaining: 0 });
  t.same((await store.stat('chunks/u/c/1.000.lc3'))!.metadata.codec, 'unknown', 'kept and uploaded anyway: never dropped');
  await up.close();
});

t.test('the retry heap hands out entries earliest first', async (t) => {
  const h = new DueHeap();
  const dues = [50, 10, 40, 10, 30, 20, 60, 0, 35];
  for (const [i, dueAt] of dues.entries()) h.push({ name: `n${i}`, size: 0, attempts: 0, dueAt });
  t.equal(h.size, dues.length);
  t.equal(h.peek()!.dueAt, 0);
  const out: number[] = [];
  while (h.size > 0) out.push(h.pop().dueAt);
  t.same(out, [...dues].sort((a, b) => a - b));
  t.equal(h.peek(), undefined);
});
