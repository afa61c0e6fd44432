// A failing fsync (PostgreSQL 2018: after a failed fsync the page cache is no evidence, and a
// retried fsync on the same file proves nothing): nothing is acknowledged from a segment whose
// fsync failed, the batch is rewritten into a new segment, a second failure is reported as
// "rewrite failed" (the shard closes its sessions), and a chunk file whose fsync or write failed
// is rebuilt from the journal before any SEALED record.
import t from 'tap';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseLc3File } from '../src/formats/lc3file.js';
import { faultInjectingIo, nodeIo, type SpoolIo } from '../src/spool/io.js';
import { SpoolQuota } from '../src/spool/quota.js';
import { ShardSpool, type FsyncFailure } from '../src/spool/shard-spool.js';
import { closedWithCommits, files, frame, LC3, T0 } from './support/spool.js';
import { fault, ruledIo } from './support/spool-parts.js';

function rig(t: { teardown(fn: () => void): void }, dir: string, io: SpoolIo) {
  const acks: [number, number][] = [];
  const errors: string[] = [];
  const failures: FsyncFailure[] = [];
  const sp = new ShardSpool({
    dir,
    shard: 0,
    quota: new SpoolQuota(1 << 30),
    io,
    fsyncMs: 60_000,
    chunkSeconds: 1,
    onDurable: (_id, f, b) => acks.push([f, b]),
    onError: (e, ctx) => errors.push(`${ctx}: ${e.message}`),
    onFsyncFailure: (_e, f) => failures.push(f),
  });
  t.teardown(() => sp.abort());
  return { sp, acks, errors, failures };
}

function sealedFrames(dir: string): Buffer[] {
  const root = join(dir, 'sealed');
  return files(root)
    .sort((a, b) => (basename(a) < basename(b) ? -1 : 1))
    .flatMap((f) => parseLc3File(readFileSync(join(root, f))).frames.map((x) => Buffer.from(x)));
}

/** `n` failures of `op` on paths matching `re`. */
function times(n: number, op: 'write' | 'datasync', re: RegExp, code = 'EIO') {
  let left = n;
  return (o: string, p: string) => (o === op && re.test(p) && left-- > 0 ? fault(code) : undefined);
}

t.test('one failed journal fsync: not acknowledged, rewritten into a new segment, then acknowledged', async (t) => {
  const dir = t.testdir();
  const r = rig(t, dir, ruledIo(times(1, 'datasync', /\.jnl$/)));
  const s = r.sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  for (let k = 0; k < 5; k++) s.append(frame(1, k), 1, T0 + k * 10);
  await r.sp.flush();
  t.same(r.acks, [], 'nothing acknowledged from the segment whose fsync failed');
  t.same(r.failures, [{ where: 'journal', rewriteFailed: false }]);
  t.equal(r.sp.stats().fsyncFailures, 1);
  await r.sp.flush();
  t.same(r.acks, [[5, 150]], 'acknowledged once the rewrite is durable');
  t.equal(r.failures.length, 1, 'the rewrite succeeded: no more reports');
  const closing = s.close();
  await closedWithCommits(r.sp, closing);
  await r.sp.close();
  t.same(sealedFrames(dir), [0, 1, 2, 3, 4].map((k) => frame(1, k)));
});

t.test('the rewrite fails too: reported as rewriteFailed (the shard closes its sessions); data kept', async (t) => {
  const dir = t.testdir();
  const r = rig(t, dir, ruledIo(times(3, 'datasync', /\.jnl$/)));
  const s = r.sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  s.append(frame(1, 0), 1, T0);
  await r.sp.flush();
  await r.sp.flush();
  t.same(r.failures, [
    { where: 'journal', rewriteFailed: false },
    { where: 'journal', rewriteFailed: true },
  ]);
  t.same(r.acks, []);
  await r.sp.flush();
  t.equal(r.failures.length, 3);
  await r.sp.flush();
  t.same(r.acks, [[1, 30]], 'kept in memory meanwhile: durable once the disk works again');
  t.equal(r.sp.stats().fsyncFailures, 3);
  await r.sp.close();
  t.same(sealedFrames(dir), [frame(1, 0)]);
});

t.test('ENOSPC is no fsync failure; EIO from the journal write is', async (t) => {
  const top = t.testdir();
  const dir = join(top, 'a');
  const r = rig(t, dir, ruledIo(times(1, 'write', /\.jnl$/, 'ENOSPC')));
  const s = r.sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  s.append(frame(1, 0), 1, T0);
  await r.sp.flush();
  t.same(r.failures, [], 'a full disk is not an fsync failure');
  t.equal(r.sp.stats().commitErrors, 1);
  await r.sp.flush();
  t.same(r.acks, [[1, 30]]);
  const dir2 = join(top, 'b');
  const r2 = rig(t, dir2, ruledIo(times(1, 'write', /\.jnl$/)));
  r2.sp.openSession({ sessionId: 1, uid: 'u', format: LC3 }).append(frame(1, 0), 1, T0);
  await r2.sp.flush();
  t.same(r2.failures, [{ where: 'journal', rewriteFailed: false }]);
  await r.sp.close();
  await r2.sp.close();
});

t.test('a seal after a failed journal fsync: the rebuild reads only durable records (no doubled batch)', async (t) => {
  const dir = t.testdir();
  let sealFail = 1;
  // The journal fsync fails after its write (so the batch is readable from the page cache in the
  // abandoned segment), then the chunk's seal fsync fails, forcing a rebuild from the journal.
  const jnl = times(1, 'datasync', /\.jnl$/);
  const r2 = rig(
    t,
    dir,
    ruledIo((o, p) => jnl(o, p) ?? (o === 'datasync' && /\.lc3$/.test(p) && sealFail-- > 0 ? (writeFileSync(p, Buffer.alloc(3000, 0x55)), fault('EIO')) : undefined)),
  );
  const s = r2.sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  for (let k = 0; k < 10; k++) s.append(frame(1, k), 1, T0 + k * 10);
  await r2.sp.flush(); // fsync fails: batch in the page cache of segment 0
  await r2.sp.flush(); // rewritten into segment 1
  t.same(r2.acks, [[10, 300]]);
  const closing = s.close();
  await closedWithCommits(r2.sp, closing);
  t.same(r2.failures, [
    { where: 'journal', rewriteFailed: false },
    { where: 'chunk', rewriteFailed: false },
  ]);
  t.notOk(r2.errors.some((e) => /journal holds/.test(e)), 'the rebuild did not count the abandoned batch');
  t.same(sealedFrames(dir), Array.from({ length: 10 }, (_, k) => frame(1, k)), 'rebuilt byte-exact');
  await r2.sp.close();
});

t.test('a chunk-file write EIO: the file is rebuilt from the journal before its seal', async (t) => {
  const dir = t.testdir();
  let armed = true;
  const r = rig(
    t,
    dir,
    ruledIo((o, p, pos) => {
      if (o !== 'write' || !/\.lc3$/.test(p) || pos === 0 || !armed) return undefined;
      armed = false;
      return fault('EIO');
    }),
  );
  const s = r.sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  for (let k = 0; k < 4; k++) s.append(frame(1, k), 1, T0 + k * 10);
  await r.sp.flush();
  t.same(r.failures, [{ where: 'chunk', rewriteFailed: false }]);
  // What the page cache holds is no evidence: scribble over the data the retry writes.
  await r.sp.flush();
  const open = join(dir, 'open', 'chunks', 'u', '_');
  for (const f of readdirSync(open)) writeFileSync(join(open, f), Buffer.alloc(200, 0x33));
  const closing = s.close();
  await closedWithCommits(r.sp, closing);
  t.same(sealedFrames(dir), [0, 1, 2, 3].map((k) => frame(1, k)), 'rebuilt from the journal');
  await r.sp.close();
});

t.test('faultInjectingIo: rules from a file, counted down; no file, no faults', async (t) => {
  const dir = t.testdir({ 'x.jnl': '', 'y.lc3': '' });
  const rules = join(dir, 'rules');
  const io = faultInjectingIo(nodeIo, rules);
  const j = await io.open(join(dir, 'x.jnl'), 'rw');
  const c = await io.open(join(dir, 'y.lc3'), 'rw');
  await j.datasync();
  writeFileSync(rules, 'journal datasync EIO 2\nchunk write ENOSPC always\n');
  await t.rejects(j.datasync(), { code: 'EIO' });
  await t.rejects(j.datasync(), { code: 'EIO' });
  await j.datasync();
  t.match(readFileSync(rules, 'utf8'), /journal datasync EIO 0/);
  await j.write(Buffer.from('ok'), 0);
  await t.rejects(c.write(Buffer.from('no'), 0), { code: 'ENOSPC' });
  await c.datasync();
  await c.truncate(0);
  writeFileSync(rules, 'any datasync EIO 1\n');
  await t.rejects(c.datasync(), { code: 'EIO' });
  await j.close();
  await c.close();
  t.ok(existsSync(join(dir, 'x.jnl')));
});
