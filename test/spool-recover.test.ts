// recoverSpool: after a crash at any point, every acknowledged frame is in a sealed chunk, in
// order, exactly once; torn tails are cut at the last whole frame; nothing is silently deleted.
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseLc3File } from '../src/formats/lc3file.js';
import { parseWav } from '../src/formats/wav.js';
import { chunkHeader } from '../src/spool/format.js';
import { nodeIo, type SpoolFile, type SpoolIo } from '../src/spool/io.js';
import { parseOpenPayload, parseSegment, REC_DATA, REC_OPEN, REC_SEAL, REC_SEALED, RECORD_HEADER_BYTES, writeRecord } from '../src/spool/journal.js';
import { segmentFileName } from '../src/spool/names.js';
import { SpoolQuota } from '../src/spool/quota.js';
import { recoverSpool, walkFiles } from '../src/spool/recover.js';
import { ShardSpool, type ShardSpoolOptions } from '../src/spool/shard-spool.js';
import { frame, LC3, T0 } from './support/spool.js';


function allFiles(root: string): string[] {
  if (!existsSync(root)) return [];
  return (readdirSync(root, { recursive: true }) as string[]).filter((f) => statSync(join(root, f)).isFile()).sort();
}

/** Frames of every sealed LC3 chunk of `uid`, in start order. */
function sealedFrames(dir: string, uid: string): Buffer[] {
  const root = join(dir, 'sealed', 'chunks', uid);
  return allFiles(root)
    .sort((a, b) => (basename(a) < basename(b) ? -1 : 1))
    .flatMap((f) => parseLc3File(readFileSync(join(root, f))).frames.map((x) => Buffer.from(x)));
}

type Op = 'open' | 'write' | 'datasync' | 'truncate' | 'close' | 'mkdirp' | 'readFile' | 'readdir' | 'stat' | 'link' | 'rename' | 'unlink' | 'rmdir' | 'fsyncDir';

/**
 * An io that behaves like a process killed at one instant: from the first operation for which
 * `at` returns true (that operation included), nothing happens any more — every call hangs.
 * `fail` instead throws an error from matching operations (and lets the rest through).
 */
function crashingIo(at: (op: Op, path: string, pos?: number) => boolean, fail?: (op: Op, path: string) => Error | undefined): SpoolIo & { crashed: boolean } {
  const state = { crashed: false };
  const gate = <T>(op: Op, path: string, run: () => Promise<T>, pos?: number): Promise<T> => {
    if (!state.crashed && at(op, path, pos)) state.crashed = true;
    if (state.crashed) return new Promise<T>(() => undefined);
    const e = fail?.(op, path);
    if (e) return Promise.reject(e);
    return run();
  };
  const wrap = (f: SpoolFile, p: string): SpoolFile => ({
    write: (d, pos) => gate('write', p, () => f.write(d, pos), pos),
    datasync: () => gate('datasync', p, () => f.datasync()),
    truncate: (n) => gate('truncate', p, () => f.truncate(n)),
    close: () => gate('close', p, () => f.close()),
  });
  return Object.assign(state, {
    open: (p: string, mode: 'excl' | 'rw') => gate('open', p, async () => wrap(await nodeIo.open(p, mode), p)),
    mkdirp: (p: string) => gate('mkdirp', p, () => nodeIo.mkdirp(p)),
    readFile: (p: string) => gate('readFile', p, () => nodeIo.readFile(p)),
    readdir: (p: string) => gate('readdir', p, () => nodeIo.readdir(p)),
    stat: (p: string) => gate('stat', p, () => nodeIo.stat(p)),
    link: (a: string, b: string) => gate('link', b, () => nodeIo.link(a, b)),
    rename: (a: string, b: string) => gate('rename', b, () => nodeIo.rename(a, b)),
    unlink: (p: string) => gate('unlink', p, () => nodeIo.unlink(p)),
    rmdir: (p: string) => gate('rmdir', p, () => nodeIo.rmdir(p)),
    fsyncDir: (p: string) => gate('fsyncDir', p, () => nodeIo.fsyncDir(p)),
  });
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

interface CrashRun {
  acked: number;
  sent: Buffer[];
}

/**
 * Streams `total` frames of session 1 (uid u) through a spool whose io "crashes" at `at`; a
 * commit every 10 frames; stops when the crash happened, then aborts the spool (the process died).
 */
async function streamUntilCrash(
  t: { teardown(fn: () => void): void },
  dir: string,
  at: Parameters<typeof crashingIo>[0],
  o: Partial<ShardSpoolOptions> & { total?: number; closeAt?: number } = {},
): Promise<CrashRun> {
  const io = crashingIo(at);
  let acked = 0;
  const sp = new ShardSpool({ dir, shard: 0, quota: new SpoolQuota(1 << 30), io, fsyncMs: 60_000, chunkSeconds: 1, onDurable: (_s, f) => (acked = f), ...o });
  t.teardown(() => sp.abort());
  const s = sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  const sent: Buffer[] = [];
  const total = o.total ?? 300;
  for (let k = 0; k < total && !io.crashed; k++) {
    s.append(frame(1, k), 1, T0 + k * 10);
    sent.push(frame(1, k));
    if (k + 1 === o.closeAt) void s.close();
    if ((k + 1) % 10 === 0) {
      // A commit, or the crash in the middle of one.
      await Promise.race([sp.flush(), until(() => io.crashed, 'crash').catch(() => undefined)]);
      await new Promise((r) => setTimeout(r, 5)); // let background seals run
    }
  }
  if (!io.crashed) {
    void sp.close(); // seals everything, deletes the journal: the crash point is on the way
    await until(() => io.crashed, 'the crash point');
  }
  sp.abort();
  return { acked, sent };
}

function checkRecovered(t: Test, dir: string, run: CrashRun): void {
  const got = sealedFrames(dir, 'u');
  t.ok(got.length >= run.acked, `${got.length} frames recovered, ${run.acked} acknowledged`);
  t.same(got, run.sent.slice(0, got.length), 'a gap-free, duplicate-free prefix of what was sent');
  t.same(allFiles(join(dir, 'open')), [], 'no open files left');
  t.same(allFiles(join(dir, 'journal')), [], 'journal deleted');
}

const crashPoints: [string, Parameters<typeof crashingIo>[0], { total?: number; closeAt?: number }][] = [
  ['before the first chunk file exists (audio only in the journal)', (op, p) => op === 'open' && p.endsWith('.lc3'), {}],
  ['in the middle of chunk writes', (() => {
    let n = 0;
    return (op: Op, p: string) => op === 'write' && p.endsWith('.lc3') && ++n === 7;
  })(), {}],
  ['in the 5th journal write (a torn batch)', (() => {
    let n = 0;
    return (op: Op, p: string) => op === 'write' && p.endsWith('.jnl') && ++n === 5;
  })(), {}],
  ['during a seal: after the final fdatasync, before the link', (op) => op === 'link', {}],
  ['during a seal: linked, the open name not yet removed', (op, p) => op === 'unlink' && p.includes('/open/'), {}],
  ['after seals completed, before the journal was deleted', (op, p) => op === 'unlink' && p.endsWith('.jnl'), { total: 250 }],
];

for (const [what, at, o] of crashPoints) {
  t.test(`crash ${what}`, async (t) => {
    const dir = t.testdir();
    const run = await streamUntilCrash(t, dir, at, o);
    const r = await recoverSpool({ dir });
    t.ok(r.segments > 0, 'journal replayed');
    checkRecovered(t, dir, run);
    for (const name of r.sealed) execFileSync('/usr/bin/dlc3', [join(dir, 'sealed', name), join(dir, 'x.wav')], { stdio: ['ignore', 'ignore', 'pipe'] });
  });
}

t.test('a chunk sealed (and uploaded) before the crash is not resurrected from the journal', async (t) => {
  const dir = t.testdir();
  const run = await streamUntilCrash(t, dir, (op, p) => op === 'unlink' && p.endsWith('.jnl'), { total: 100 });
  t.equal(run.acked, 100);
  // The uploader already took the sealed chunk away.
  const sealedDir = join(dir, 'sealed', 'chunks', 'u', '_');
  const names = readdirSync(sealedDir);
  t.equal(names.length, 1);
  const content = readFileSync(join(sealedDir, names[0]!));
  for (const n of names) execFileSync('rm', [join(sealedDir, n)]);
  const r = await recoverSpool({ dir });
  t.equal(r.recreated, 0);
  t.same(r.sealed, []);
  t.same(allFiles(join(dir, 'sealed')), []);
  t.ok(content.length > 0);
});

t.test('a chunk whose SEAL was journaled before its file was even created is rebuilt, not taken for sealed', async (t) => {
  // Under I/O load the chunk-file lane lags behind the commits: a full chunk's SEAL record can be
  // durable while its open file does not exist yet. A crash then must not lose its acked audio.
  const dir = t.testdir();
  const io: SpoolIo = { ...nodeIo, open: (p, mode) => (p.endsWith('.lc3') ? new Promise<SpoolFile>(() => undefined) : nodeIo.open(p, mode)) };
  let acked = 0;
  const sp = new ShardSpool({ dir, shard: 0, quota: new SpoolQuota(1 << 30), io, fsyncMs: 10, chunkSeconds: 1, onDurable: (_s, f) => (acked = f) });
  t.teardown(() => sp.abort());
  const s = sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  const sent = Array.from({ length: 150 }, (_, k) => frame(1, k));
  sent.forEach((f, k) => s.append(f, 1, T0 + k * 10)); // 100 frames fill the first chunk: sealed at the next commit
  await until(() => acked === 150, 'all 150 frames acknowledged');
  const types = parseSegment(readFileSync(join(dir, 'journal', readdirSync(join(dir, 'journal'))[0]!))).records.map((r) => r.type);
  t.ok(types.includes(REC_SEAL), 'the first chunk is SEALed in the journal');
  t.notOk(types.includes(REC_SEALED), 'but not sealed');
  t.same(allFiles(join(dir, 'open')), [], 'no chunk file was created');
  sp.abort(); // the crash
  const r = await recoverSpool({ dir });
  t.equal(r.recreated, 2, 'both chunks rebuilt from the journal');
  t.same(sealedFrames(dir, 'u'), sent, 'every acknowledged frame, in order, once');
});

t.test('torn journal tail: everything before it is recovered', async (t) => {
  const dir = t.testdir();
  const run = await streamUntilCrash(t, dir, (op, p) => op === 'open' && p.endsWith('.lc3'), { total: 50 });
  const seg = join(dir, 'journal', readdirSync(join(dir, 'journal'))[0]!);
  const buf = readFileSync(seg);
  appendFileSync(seg, buf.subarray(0, 40)); // half a record
  const r = await recoverSpool({ dir });
  t.equal(r.recreated, 1);
  t.same(sealedFrames(dir, 'u'), run.sent);
  checkRecovered(t, dir, run);
});

t.test('torn chunk tails written by hand are cut at the last whole frame; dlc3 plays the result', async (t) => {
  const dir = t.testdir();
  const open = join(dir, 'open', 'chunks', 'hand', 'c1');
  mkdirSync(open, { recursive: true });
  const frames = [frame(9, 0), frame(9, 1), frame(9, 2)];
  const lc3 = Buffer.concat([chunkHeader(LC3, 0), ...frames.map((f) => Buffer.concat([Buffer.from([30, 0]), f]))]);
  writeFileSync(join(open, '1700000000.000~4-abc-1.lc3'), Buffer.concat([lc3, Buffer.from([30, 0, 1, 2, 3])])); // a torn 4th frame
  writeFileSync(join(open, '1700000001.000.lc3'), lc3.subarray(0, 18 + 1)); // a torn length
  writeFileSync(join(open, '1700000003.000.lc3'), lc3.subarray(0, 18 + 2 + 10)); // a torn first frame
  writeFileSync(join(open, '1700000004.000.lc3'), lc3.subarray(0, 10)); // a torn header
  writeFileSync(join(open, '1700000005.000.wav'), Buffer.concat([chunkHeader({ kind: 'pcm16', sampleRate: 16000 }, 0), Buffer.from([9])])); // half a sample
  // PCM: 3 whole samples and a half.
  writeFileSync(join(open, '1700000002.000~4-abc-2.wav'), Buffer.concat([chunkHeader({ kind: 'pcm16', sampleRate: 16000 }, 0), Buffer.from([1, 0, 2, 0, 3, 0, 4])]));
  const quota = new SpoolQuota(1 << 20);
  const r = await recoverSpool({ dir, quota });
  t.same(r.sealed.sort(), ['chunks/hand/c1/1700000000.000.lc3', 'chunks/hand/c1/1700000002.000.wav']);
  t.equal(r.emptyRemoved, 4, 'no whole frame (torn header, length, frame, sample): no audio, removed');
  t.equal(r.truncatedBytes, 5 + 1);
  const lc3Path = join(dir, 'sealed', 'chunks', 'hand', 'c1', '1700000000.000.lc3');
  const parsed = parseLc3File(readFileSync(lc3Path));
  t.same(parsed.frames.map((f) => Buffer.from(f)), frames);
  t.equal(parsed.header.nsamples, 3 * 160 - 40);
  execFileSync('/usr/bin/dlc3', [lc3Path, join(dir, 'o.wav')], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.equal(parseWav(readFileSync(join(dir, 'o.wav'))).samples.length, 3 * 160 - 40);
  const wav = parseWav(readFileSync(join(dir, 'sealed', 'chunks', 'hand', 'c1', '1700000002.000.wav')));
  t.same([...wav.samples], [1, 2, 3]);
  t.equal(quota.bytes, r.spoolBytes);
  t.equal(r.sealedFiles, 2);
  t.equal(r.spoolBytes, statSync(lc3Path).size + 44 + 6);
});

t.test('files recovery cannot repair are moved to corrupt/, never deleted', async (t) => {
  const dir = t.testdir();
  const open = join(dir, 'open', 'chunks', 'u', 'c');
  mkdirSync(open, { recursive: true });
  writeFileSync(join(open, '1.000.lc3'), Buffer.alloc(100, 0x41)); // not .lc3 at all
  writeFileSync(join(open, '2.000.lc3'), Buffer.concat([chunkHeader(LC3, 0), Buffer.from([0xff, 0xff, 1, 2])])); // header, then garbage
  writeFileSync(join(open, '3.000.lc3'), chunkHeader(LC3, 0)); // header only: removed
  const stereo = Buffer.concat([chunkHeader(LC3, 0), Buffer.from([30, 0]), frame(1, 0)]);
  stereo.writeUInt16LE(2, 8);
  writeFileSync(join(open, '4.000.lc3'), stereo); // not a spool chunk: 2 channels
  writeFileSync(join(open, 'notes.txt'), 'hello'); // not ours
  mkdirSync(join(dir, 'open', 'stray'), { recursive: true });
  writeFileSync(join(dir, 'open', 'stray', 'x.lc3'), 'x');
  mkdirSync(join(dir, 'corrupt', 'open', 'chunks', 'u', 'c'), { recursive: true });
  writeFileSync(join(dir, 'corrupt', 'open', 'chunks', 'u', 'c', 'notes.txt'), 'an older one');
  const errors: string[] = [];
  const r = await recoverSpool({ dir, onError: (e) => errors.push(e.message) });
  t.equal(r.quarantined.length, 5);
  t.equal(r.emptyRemoved, 1);
  t.match(r.quarantined.join(' '), /corrupt\/open\/chunks\/u\/c\/notes\.txt\.\d+/);
  t.same(allFiles(join(dir, 'open')), []);
  t.equal(allFiles(join(dir, 'corrupt')).length, 6);
  t.match(errors.join('\n'), /mono/);
  t.match(errors.join('\n'), /not an \.lc3 file/);
  t.match(errors.join('\n'), /moved to corrupt/);
});

t.test('journal records that cannot be trusted are skipped, loudly', async (t) => {
  const dir = t.testdir({ journal: {} });
  const seg = join(dir, 'journal', segmentFileName(0, 'r1', 0));
  const buf = Buffer.alloc(4096);
  let at = 0;
  const open = (id: number, payload: string): void => {
    const p = Buffer.from(payload);
    p.copy(buf, at + RECORD_HEADER_BYTES);
    at = writeRecord(buf, at, REC_OPEN, id, 0, p.length);
  };
  const data = (id: number, off: number, bytes: Buffer): void => {
    bytes.copy(buf, at + RECORD_HEADER_BYTES);
    at = writeRecord(buf, at, REC_DATA, id, off, bytes.length);
  };
  open(1, 'not json');
  data(1, 18, Buffer.concat([Buffer.from([30, 0]), frame(1, 0)]));
  open(2, JSON.stringify({ open: 'chunks/u/../../etc/x~0-r1-2.lc3', object: 'x', format: LC3, session: 1 }));
  open(3, JSON.stringify({ open: 'chunks/u/c/1.000~0-r1-3.lc3', object: 'chunks/u/c/1.000.lc3', format: { kind: 'lc3' }, session: 1 }));
  open(4, JSON.stringify({ open: 'chunks/u/c/notachunk', object: 'x', format: LC3, session: 1 }));
  data(5, 18, frame(1, 1)); // no OPEN, no SEAL
  at = writeRecord(buf, at, REC_SEAL, 6, 50, 0);
  const name = Buffer.from('chunks/u/c/1.000.lc3');
  name.copy(buf, at + RECORD_HEADER_BYTES);
  at = writeRecord(buf, at, REC_SEALED, 6, 0, name.length); // no OPEN but sealed: its OPEN was in a deleted segment
  at = writeRecord(buf, at, REC_SEAL, 7, 50, 0); // no OPEN and never sealed: cannot happen, so it is reported
  writeFileSync(seg, buf.subarray(0, at));
  const errors: string[] = [];
  const r = await recoverSpool({ dir, onError: (e) => errors.push(e.message) });
  t.equal(r.records, 9);
  t.equal(r.segments, 1);
  t.equal(errors.length, 6, 'chunks 1-5 and 7 reported');
  t.match(errors.at(-1), /records of chunk 7 without a usable OPEN record/);
  t.same(allFiles(dir), []);
  t.equal(parseOpenPayload(Buffer.from('{"open":1}')), null);
  // Records that stop a reader: wrong version, unknown type, absurd length, bad CRC.
  const rec = Buffer.alloc(64);
  writeRecord(rec, 0, REC_SEAL, 1, 0, 0);
  t.equal(parseSegment(rec.subarray(0, 24)).records.length, 1);
  for (const [at, v] of [[3, 9], [2, 9], [2, 0], [20, 0]] as const) {
    const bad = Buffer.from(rec.subarray(0, 24));
    bad[at] = v;
    t.equal(parseSegment(bad).records.length, 0, `byte ${at} = ${v}`);
  }
  const huge = Buffer.from(rec.subarray(0, 24));
  huge.writeUInt32LE(0x7fffffff, 8);
  t.same(parseSegment(huge), { records: [], validBytes: 0 });
  t.equal(parseOpenPayload(Buffer.from('null')), null);
});

t.test('recovering one shard leaves the others alone and adjusts the quota by what changed', async (t) => {
  const dir = t.testdir();
  const quota = new SpoolQuota(1 << 30);
  const mk = (shard: number): ShardSpool => new ShardSpool({ dir, shard, quota, fsyncMs: 60_000, chunkSeconds: 60 });
  const a = mk(0);
  const b = mk(1);
  t.teardown(() => a.abort());
  for (const [sp, uid] of [[a, 'a'], [b, 'b']] as const) {
    const s = sp.openSession({ sessionId: 1, uid, format: LC3 });
    for (let k = 0; k < 20; k++) s.append(frame(1, k), 1, T0 + k * 10);
    await sp.flush();
  }
  b.abort(); // shard 1 "crashed"
  const before = quota.bytes;
  const r = await recoverSpool({ dir, shard: 1, quota });
  t.same(r.sealed, ['chunks/b/_/1732623456.789.lc3']);
  t.equal(sealedFrames(dir, 'b').length, 20);
  t.equal(allFiles(join(dir, 'open', 'chunks', 'a')).length, 1, "shard 0's open file untouched");
  t.equal(allFiles(join(dir, 'journal')).length, 1, "shard 0's journal untouched");
  t.ok(quota.bytes < before, 'the dead shard journal no longer counts');
  await a.close();
  t.equal(sealedFrames(dir, 'a').length, 20);
  const total = (await walkFiles(nodeIo, dir)).reduce((n, f) => n + f.size, 0);
  t.equal(quota.bytes, total, 'quota == bytes on disk');
});

t.test('several runs of a shard, name collisions with sealed chunks, nothing to do', async (t) => {
  const dir = t.testdir();
  t.same((await recoverSpool({ dir })).sealed, [], 'empty spool');
  const runs: CrashRun[] = [];
  for (let i = 0; i < 2; i++) runs.push(await streamUntilCrash(t, dir, (op, p) => op === 'open' && p.endsWith('.lc3'), { total: 30 }));
  // A sealed file already holds the name the recovered chunks want.
  mkdirSync(join(dir, 'sealed', 'chunks', 'u', '_'), { recursive: true });
  writeFileSync(join(dir, 'sealed', 'chunks', 'u', '_', '1732623456.789.lc3'), 'taken');
  symlinkSync('/nonexistent', join(dir, 'sealed', 'link'));
  writeFileSync(join(dir, 'open', 'chunks', 'README'), 'not ours'); // quarantined, no onError hook
  const r = await recoverSpool({ dir });
  t.same(r.quarantined, ['corrupt/open/chunks/README']);
  t.same(r.sealed.sort(), ['chunks/u/_/1732623456.790.lc3', 'chunks/u/_/1732623456.791.lc3']);
  t.equal(r.sealedFiles, 3, 'regular files only');
  for (const n of r.sealed) t.equal(parseLc3File(readFileSync(join(dir, 'sealed', n))).frames.length, 10);
  t.equal(runs.length, 2);
});

t.test('an unreadable spool is an error, not a silent success', async (t) => {
  const dir = t.testdir({ journal: {}, open: { chunks: { u: { c: { '1.000.lc3': 'x' } } } } });
  const eacces = (op: Op, p: string): Error | undefined =>
    op === 'readdir' && p.endsWith('journal') ? Object.assign(new Error('denied'), { code: 'EACCES' }) : undefined;
  await t.rejects(recoverSpool({ dir, io: crashingIo(() => false, eacces) }), /denied/);
  const estale = (op: Op, p: string): Error | undefined =>
    op === 'stat' && p.endsWith('1.000.lc3') ? Object.assign(new Error('stale'), { code: 'ESTALE' }) : undefined;
  await t.rejects(recoverSpool({ dir, io: crashingIo(() => false, estale) }), /stale/);
  // A file that disappears between readdir and stat is skipped.
  const gone = (op: Op, p: string): Error | undefined => (op === 'stat' && p.endsWith('1.000.lc3') ? Object.assign(new Error('gone'), { code: 'ENOENT' }) : undefined);
  t.same((await walkFiles(crashingIo(() => false, gone), join(dir, 'open'))).length, 0);
});
