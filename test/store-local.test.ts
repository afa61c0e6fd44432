import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { copyVerified, hashHandle, LocalStore, MAX_SEGMENT_BYTES } from '../src/store/local.js';
import { validateObjectName, validatePrefix } from '../src/store/names.js';
import { ObjectNotFoundError, StoreError, type PutMeta } from '../src/store/types.js';

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Writes `data` to a fresh source file; returns its path and a matching PutMeta. */
function source(dir: string, data: Buffer, metadata: Record<string, string> = { codec: 'lc3' }): { path: string; meta: PutMeta } {
  const path = join(dir, `src-${randomBytes(4).toString('hex')}`);
  writeFileSync(path, data);
  return { path, meta: { contentType: 'audio/lc3', metadata, size: data.length, sha256: sha256(data) } };
}

/** Every file under `dir`, relative, sorted. */
function tree(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...tree(dir, r));
    else out.push(r);
  }
  return out.sort();
}

async function rejectsStore(t: Test, p: Promise<unknown>, retryable: boolean, re: RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, StoreError, `rejects with a StoreError (${re})`);
  t.equal((err as StoreError).retryable, retryable, `retryable=${retryable}`);
  t.match((err as Error).message, re);
}

t.test('put, stat, list, read: a full round trip with metadata', async (t) => {
  const dir = t.testdir({ src: {} });
  const store = new LocalStore(join(dir, 'store'));
  t.equal(store.kind, 'local');
  const data = randomBytes(3 * 1024 * 1024 + 17); // several copy chunks
  const { path, meta } = source(join(dir, 'src'), data, { codec: 'lc3', sample_rate: '16000', frames: '100' });
  const name = 'chunks/u1/_/1700000000.123.lc3';

  const put = await store.putFile(name, path, meta);
  t.same(put, { name, size: data.length, metadata: { codec: 'lc3', sample_rate: '16000', frames: '100', sha256: meta.sha256 }, contentType: 'audio/lc3' });
  t.same(await store.stat(name), put, 'stat returns what the put confirmed');
  t.ok((await store.read(name)).equals(data), 'read returns the bytes');
  t.same(await store.list(''), [put]);
  t.same(await store.list('chunks/u1/'), [put]);
  t.same(await store.list('chunks/u1/_/17'), [put], 'a prefix may end inside a name');
  t.same(await store.list('chunks/u'), [put], 'or inside a directory name');
  t.same(await store.list('chunks/u2/'), []);
  t.same(await store.list('other'), []);
  t.equal(await store.stat('chunks/u1/_/missing.lc3'), null);
  t.equal(await store.stat('nothere/at/all'), null);
  t.same(tree(join(dir, 'store')), [`${name}`, `${name}.meta.json`], 'no temporary files left, sidecar next to the object');
  t.same(readFileSync(join(dir, 'store', name)), data, 'the object is a plain file');
});

t.test('empty objects and objects at the top level', async (t) => {
  const dir = t.testdir();
  const store = new LocalStore(join(dir, 'store'));
  const { path, meta } = source(dir, Buffer.alloc(0), {});
  const o = await store.putFile('empty.wav', path, { ...meta, contentType: 'audio/wav' });
  t.same(o, { name: 'empty.wav', size: 0, metadata: { sha256: meta.sha256 }, contentType: 'audio/wav' });
  t.same(await store.read('empty.wav'), Buffer.alloc(0));
  t.same(await store.list(''), [o]);
});

t.test('idempotent put; a put of new content replaces the object', async (t) => {
  const dir = t.testdir();
  const store = new LocalStore(join(dir, 'store'));
  const a = source(dir, Buffer.from('first version'));
  const first = await store.putFile('x/y.lc3', a.path, a.meta);
  t.same(await store.putFile('x/y.lc3', a.path, a.meta), first, 'same content again: same result');
  t.same(await store.list('x/'), [first]);
  const b = source(dir, Buffer.from('second, longer version'), { codec: 'pcm16' });
  const second = await store.putFile('x/y.lc3', b.path, b.meta);
  t.same(await store.stat('x/y.lc3'), second);
  t.equal((await store.read('x/y.lc3')).toString(), 'second, longer version');
  t.same(tree(join(dir, 'store')), ['x/y.lc3', 'x/y.lc3.meta.json']);
});

t.test('concurrent puts of many objects, listed in name (byte) order', async (t) => {
  const dir = t.testdir();
  const store = new LocalStore(join(dir, 'store'));
  const names = ['b/2', 'a/1', 'a/10', 'a/2', 'a/é', 'a/z', 'a/sub/x', 'c'];
  await Promise.all(names.map((n) => {
    const s = source(dir, Buffer.from(n));
    return store.putFile(n, s.path, s.meta);
  }));
  t.same((await store.list('')).map((o) => o.name), ['a/1', 'a/10', 'a/2', 'a/sub/x', 'a/z', 'a/é', 'b/2', 'c']);
  t.same((await store.list('a/')).map((o) => o.name), ['a/1', 'a/10', 'a/2', 'a/sub/x', 'a/z', 'a/é']);
  t.same((await store.list('a/1')).map((o) => o.name), ['a/1', 'a/10']);
  t.same((await store.list('a/s')).map((o) => o.name), ['a/sub/x']);
  t.same((await store.list('a/sub/')).map((o) => o.name), ['a/sub/x']);
  t.same((await store.list('c')).map((o) => o.name), ['c']);
  t.same((await store.list('c/')).map((o) => o.name), [], 'c is a file, not a directory');
});

t.test('bad object names are rejected, not retryable, and touch nothing', async (t) => {
  const dir = t.testdir();
  const store = new LocalStore(join(dir, 'store'));
  const { path, meta } = source(dir, Buffer.from('x'));
  const bad: [unknown, RegExp][] = [
    ['', /non-empty/],
    [42, /non-empty/],
    ['../escape', /starts with "\."/],
    ['a/../../escape', /starts with "\."/],
    ['a/./b', /starts with "\."/],
    ['.hidden', /starts with "\."/],
    ['/etc/passwd', /relative/],
    ['a//b', /empty path segment/],
    ['a/b/', /empty path segment/],
    ['a\\b', /backslash/],
    ['a\0b', /control character/],
    ['a\nb', /control character/],
    ['a\ud800b', /not valid Unicode/],
    ['x'.repeat(1025), /longer than 1024 bytes/],
    ['a/b.lc3.meta.json', /reserved/],
    [`a/${'s'.repeat(MAX_SEGMENT_BYTES + 1)}`, /segment is longer/],
  ];
  for (const [name, re] of bad) {
    await rejectsStore(t, store.putFile(name as string, path, meta), false, re);
    await rejectsStore(t, store.stat(name as string), false, re);
    await rejectsStore(t, store.read(name as string), false, re);
  }
  t.notOk(existsSync(join(dir, 'store')), 'nothing was created');
  t.notOk(existsSync(join(dir, 'escape')));
  t.doesNotThrow(() => validateObjectName('chunks/u_1-x/conv/1700000000.123.lc3'));
  t.doesNotThrow(() => validateObjectName('u/people_profiles/p/ü€😀.wav'));
});

t.test('bad list prefixes', async (t) => {
  const store = new LocalStore(t.testdir());
  for (const [p, re] of [
    [7, /must be a string/],
    ['../', /starts with "\."/],
    ['a/../', /starts with "\."/],
    ['/abs', /relative/],
    ['a//', /empty path segment/],
    ['a\\', /backslash/],
    ['a\0', /control/],
  ] as [unknown, RegExp][]) {
    await rejectsStore(t, store.list(p as string), false, re);
  }
  t.doesNotThrow(() => validatePrefix('a/'));
  t.doesNotThrow(() => validatePrefix('a/b'));
});

t.test('bad metadata is rejected before anything is written', async (t) => {
  const dir = t.testdir();
  const store = new LocalStore(join(dir, 'store'));
  const { path, meta } = source(dir, Buffer.from('abc'));
  const cases: [unknown, RegExp][] = [
    [null, /metadata missing/],
    [{ ...meta, size: -1 }, /bad size/],
    [{ ...meta, size: 1.5 }, /bad size/],
    [{ ...meta, sha256: 'ABC' }, /64 lowercase hex/],
    [{ ...meta, sha256: meta.sha256.toUpperCase() }, /64 lowercase hex/],
    [{ ...meta, contentType: '' }, /contentType missing/],
    [{ ...meta, metadata: { frames: 3 } }, /must be a string/],
    [{ ...meta, metadata: { sha256: '0'.repeat(64) } }, /differs/],
  ];
  for (const [m, re] of cases) await rejectsStore(t, store.putFile('a.lc3', path, m as PutMeta), false, re);
  const { metadata: _, ...noCustom } = meta;
  const o = await store.putFile('a.lc3', path, noCustom as PutMeta);
  t.same(o.metadata, { sha256: meta.sha256 }, 'custom metadata is optional');
  const o2 = await store.putFile('b.lc3', path, { ...meta, metadata: { sha256: meta.sha256 } });
  t.same(o2.metadata, { sha256: meta.sha256 }, 'a matching metadata.sha256 is fine');
});

t.test('a source that does not match its metadata: rejected, no partial object, no temp file', async (t) => {
  const dir = t.testdir({ store: {} });
  const store = new LocalStore(join(dir, 'store'));
  const { path, meta } = source(dir, randomBytes(5000));
  await rejectsStore(t, store.putFile('a/short.lc3', path, { ...meta, size: 4999 }), false, /does not match its metadata/);
  await rejectsStore(t, store.putFile('a/wrong.lc3', path, { ...meta, sha256: sha256(Buffer.from('other')) }), false, /does not match/);
  await rejectsStore(t, store.putFile('a/missing.lc3', join(dir, 'nope'), meta), false, /source file missing/);
  await rejectsStore(t, store.putFile('a/notdir.lc3', join(path, 'x'), meta), false, /ENOTDIR/);
  // A directory as the source: opening works, the first read fails mid-copy (EISDIR).
  await rejectsStore(t, store.putFile('a/dir.lc3', dir, meta), false, /EISDIR/);
  t.same(await store.list(''), [], 'no object is visible');
  t.same(tree(join(dir, 'store')), [], 'and no temporary file is left behind');
});

t.test('a copy that reads back wrong is never committed', async (t) => {
  const dir = t.testdir();
  const { path, meta } = source(dir, Buffer.from('payload'));
  const tmp = join(dir, 'tmp');
  await rejectsStore(t, copyVerified(path, tmp, meta, async () => ({ size: meta.size, sha256: '0'.repeat(64) })), true, /reads back wrong/);
  await rejectsStore(t, copyVerified(path, `${tmp}2`, meta, async () => ({ size: meta.size + 1, sha256: meta.sha256 })), true, /reads back wrong/);
  await copyVerified(path, `${tmp}3`, meta);
  const fh = await open(`${tmp}3`, 'r');
  t.same(await hashHandle(fh), { size: meta.size, sha256: meta.sha256 });
  await fh.close();
  await t.rejects(copyVerified(path, `${tmp}3`, meta), { code: 'EEXIST' }, 'the temp file is created exclusively');
});

t.test('crash leftovers: torn puts and stray files never show up as objects', async (t) => {
  const dir = t.testdir();
  const root = join(dir, 'store');
  const store = new LocalStore(root);
  const ok = source(dir, Buffer.from('committed'));
  const committed = await store.putFile('c/ok.lc3', ok.path, ok.meta);
  // What a crash can leave: temp files, a data file renamed before its sidecar, and a sidecar
  // whose data file was replaced by a put that died before renaming the new sidecar.
  writeFileSync(join(root, 'c', '.torn.lc3.0123456789ab.tmp'), 'partial');
  writeFileSync(join(root, 'c', 'nosidecar.lc3'), 'data without sidecar');
  writeFileSync(join(root, 'c', 'stale.lc3'), 'new longer data');
  writeFileSync(join(root, 'c', 'stale.lc3.meta.json'), JSON.stringify({ v: 1, size: 3, sha256: 'a'.repeat(64), contentType: 'x', metadata: {} }));
  writeFileSync(join(root, 'c', 'orphan.lc3.meta.json'), JSON.stringify({ v: 1, size: 3, sha256: 'a'.repeat(64), contentType: 'x', metadata: {} }));
  // Sidecars that are not ours.
  const badSidecars = ['{', 'null', '{"v":2}', '{"v":1,"size":"3"}', '{"v":1,"size":3}', '{"v":1,"size":3,"sha256":"x"}', '{"v":1,"size":3,"sha256":"x","contentType":"y"}', '{"v":1,"size":3,"sha256":"x","contentType":"y","metadata":"z"}'];
  badSidecars.forEach((text, i) => {
    writeFileSync(join(root, 'c', `bad${i}`), 'abc');
    writeFileSync(join(root, 'c', `bad${i}.meta.json`), text);
  });
  // A sidecar whose "data file" is a directory; files a person dropped in by hand.
  mkdirSync(join(root, 'c', 'isdir'));
  writeFileSync(join(root, 'c', 'isdir.meta.json'), JSON.stringify({ v: 1, size: 0, sha256: 'a'.repeat(64), contentType: 'x', metadata: {} }));
  writeFileSync(join(root, 'c', 'back\\slash'), 'x');
  writeFileSync(join(root, 'c', 'back\\slash.meta.json'), JSON.stringify({ v: 1, size: 1, sha256: 'a'.repeat(64), contentType: 'x', metadata: {} }));
  symlinkSync(join(root, 'c', 'ok.lc3'), join(root, 'c', 'link.lc3'));

  t.same(await store.list(''), [committed], 'only the committed object is listed');
  t.same(await store.list('c/'), [committed]);
  for (const n of ['c/nosidecar.lc3', 'c/stale.lc3', 'c/orphan.lc3', 'c/bad0', 'c/bad7', 'c/isdir']) {
    t.equal(await store.stat(n), null, `${n} is not an object`);
    const err = await store.read(n).catch((e: unknown) => e);
    t.type(err, ObjectNotFoundError, `read ${n}: not found`);
    t.equal((err as StoreError).retryable, false);
  }
  // A put over the leftovers repairs them.
  const again = source(dir, Buffer.from('repaired'));
  t.same((await store.putFile('c/stale.lc3', again.path, again.meta)).size, 8);
  t.equal((await store.read('c/stale.lc3')).toString(), 'repaired');
});

t.test('a corrupted object is detected on read', async (t) => {
  const dir = t.testdir();
  const store = new LocalStore(join(dir, 'store'));
  const s = source(dir, Buffer.from('precious audio'));
  await store.putFile('a.lc3', s.path, s.meta);
  writeFileSync(join(dir, 'store', 'a.lc3'), 'precious AUDIO'); // same size, other bytes
  await rejectsStore(t, store.read('a.lc3'), false, /corrupt/);
});

t.test('names that clash with the file system layout are permanent errors', async (t) => {
  const dir = t.testdir();
  const store = new LocalStore(join(dir, 'store'));
  const s = source(dir, Buffer.from('x'));
  await store.putFile('a', s.path, s.meta);
  await rejectsStore(t, store.putFile('a/b', s.path, s.meta), false, /EEXIST|ENOTDIR/);
  await store.putFile('d/e', s.path, s.meta);
  await rejectsStore(t, store.putFile('d', s.path, s.meta), false, /EISDIR|EEXIST|ENOTDIR/);
  t.same((await store.list('')).map((o) => o.name), ['a', 'd/e']);
  t.same(tree(join(dir, 'store')), ['a', 'a.meta.json', 'd/e', 'd/e.meta.json'], 'no temp files left');
});

t.test('other file system errors surface as StoreErrors', async (t) => {
  const dir = t.testdir();
  const root = join(dir, 'store');
  const store = new LocalStore(root);
  mkdirSync(root);
  // A directory where a sidecar should be: reading it fails with EISDIR.
  mkdirSync(join(root, 'x.meta.json'));
  writeFileSync(join(root, 'x'), 'x');
  await rejectsStore(t, store.stat('x'), false, /EISDIR/);
  await rejectsStore(t, store.read('x'), false, /EISDIR/);
  // A symlink loop where a directory should be: listing it fails with ELOOP (retryable).
  symlinkSync('loop', join(root, 'loop'));
  await rejectsStore(t, store.list('loop/'), true, /ELOOP/);
  // The store directory path runs through a file.
  writeFileSync(join(dir, 'file'), 'x');
  const broken = new LocalStore(join(dir, 'file', 'store'));
  const s = source(dir, Buffer.from('x'));
  await rejectsStore(t, broken.putFile('a', s.path, s.meta), false, /ENOTDIR|EEXIST/);
  t.same(await broken.list(''), [], 'listing a store that cannot exist finds nothing');
});

t.test('constructor', async (t) => {
  for (const bad of ['', '   ', undefined]) {
    let err: unknown;
    try {
      new LocalStore(bad as string);
    } catch (e) {
      err = e;
    }
    t.type(err, StoreError);
    t.match((err as Error).message, /needs a directory/);
  }
  t.equal(new LocalStore('rel/dir').dir, join(process.cwd(), 'rel/dir'), 'the directory is made absolute');
});
