// The journal's files on their own: append + fdatasync, rotation by size and age, pruning oldest
// first while no unsealed chunk needs a segment, reading a chunk's DATA records back.
import t from 'tap';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseSegment, REC_DATA, REC_OPEN, writeRecord } from '../src/spool/journal.js';
import { JournalSegments } from '../src/spool/journal-segments.js';
import { segmentFileName } from '../src/spool/names.js';
import { context, fault, ruledIo } from './support/spool-parts.js';

function rec(type: number, chunkId: number, offset: number, payload: Buffer): Buffer {
  const b = Buffer.alloc(24 + payload.length);
  payload.copy(b, 24);
  writeRecord(b, 0, type, chunkId, offset, payload.length);
  return b;
}

t.test('append writes, syncs and accounts; the file parses back', async (t) => {
  const dir = t.testdir();
  const { ctx } = context();
  const j = new JournalSegments(ctx, join(dir, 'journal'), 3, 'run1', 1 << 20, 10_000);
  const a = rec(REC_OPEN, 1, 0, Buffer.from('{}'));
  const b = rec(REC_DATA, 1, 18, Buffer.alloc(64, 9));
  const r1 = await j.append(a);
  const r2 = await j.append(b);
  t.equal(r1.seg, r2.seg, 'one segment while it is young and small');
  t.ok(r1.syncMs >= 0 && r1.writeMs >= 0);
  t.equal(j.count, 1);
  t.equal(j.bytes, a.length + b.length);
  t.equal(ctx.quota.bytes, a.length + b.length);
  const files = readdirSync(join(dir, 'journal'));
  t.same(files.length, 1);
  t.same(files, [segmentFileName(3, 'run1', 0)], 'named after the shard, the run and the sequence');
  const parsed = parseSegment(readFileSync(join(dir, 'journal', files[0]!)));
  t.same(parsed.records.map((r) => r.type), [REC_OPEN, REC_DATA]);
  t.equal(parsed.validBytes, a.length + b.length);
});

t.test('rotation by size and by age; an idle old segment is retired', async (t) => {
  const dir = t.testdir();
  let now = 1000;
  const { ctx } = context(undefined, { now: () => now });
  const j = new JournalSegments(ctx, join(dir, 'journal'), 0, 'r', 100, 5000);
  const big = rec(REC_DATA, 1, 18, Buffer.alloc(90));
  const s1 = (await j.append(big)).seg;
  const s2 = (await j.append(big)).seg;
  t.not(s1, s2, 'full: a new segment');
  now += 6000;
  await j.retireIdle();
  const s3 = (await j.append(rec(REC_DATA, 1, 0, Buffer.alloc(1)))).seg;
  t.not(s3, s2, 'old: a new segment');
  t.equal(j.count, 3);
  t.equal(s1.file, null, 'a rotated segment is closed');
});

t.test('prune deletes from the oldest while nothing refers to it; all of them when closing', async (t) => {
  const dir = t.testdir();
  const { ctx } = context();
  const j = new JournalSegments(ctx, join(dir, 'journal'), 0, 'r', 30, 10_000);
  const segs = [];
  for (let i = 0; i < 3; i++) segs.push((await j.append(rec(REC_DATA, i, 0, Buffer.alloc(10)))).seg);
  segs[1]!.refs = 1;
  await j.prune(false);
  t.equal(j.count, 2, 'the oldest went; the second is referred to');
  t.notOk(existsSync(segs[0]!.path));
  segs[1]!.refs = 0;
  await j.prune(false);
  t.equal(j.count, 1, 'the current segment stays');
  await j.prune(true);
  t.equal(j.count, 0);
  t.equal(ctx.quota.bytes, 0, 'the quota gives the bytes back');
});

t.test('a failing delete is reported and retried later; ENOENT counts as deleted', async (t) => {
  const dir = t.testdir();
  let fails = 1;
  const { ctx, errors } = context(ruledIo((op, p) => (op === 'unlink' && p.endsWith('.jnl') && fails-- > 0 ? fault('EIO') : undefined)));
  const j = new JournalSegments(ctx, join(dir, 'journal'), 0, 'r', 1 << 20, 10_000);
  const seg = (await j.append(rec(REC_DATA, 1, 0, Buffer.alloc(4)))).seg;
  await j.prune(true);
  t.equal(j.count, 1);
  t.same(errors, ['journal delete: injected EIO']);
  await j.prune(true);
  t.equal(j.count, 0);
  t.notOk(existsSync(seg.path));
});

t.test('dataRecords: only the chunk’s DATA records, from its first segment on', async (t) => {
  const dir = t.testdir();
  const { ctx } = context();
  const j = new JournalSegments(ctx, join(dir, 'journal'), 0, 'r', 60, 10_000);
  const first = (await j.append(rec(REC_DATA, 7, 18, Buffer.from('aa')))).seg;
  await j.append(rec(REC_DATA, 8, 18, Buffer.from('zz')));
  await j.append(Buffer.concat([rec(REC_OPEN, 7, 0, Buffer.from('{}')), rec(REC_DATA, 7, 20, Buffer.from('bb'))]));
  const got = [];
  for await (const r of j.dataRecords(first, 7)) got.push([r.offset, r.payload.toString()]);
  t.same(got, [[18, 'aa'], [20, 'bb']]);
});

t.test('segment creation failure throws (the caller keeps its batch); the next append succeeds', async (t) => {
  const dir = t.testdir();
  let fails = 1;
  const { ctx } = context(ruledIo((op, p) => (op === 'open' && p.endsWith('.jnl') && fails-- > 0 ? fault('ENOSPC') : undefined)));
  const j = new JournalSegments(ctx, join(dir, 'journal'), 0, 'r', 1 << 20, 10_000);
  await t.rejects(j.append(rec(REC_DATA, 1, 0, Buffer.alloc(1))), { code: 'ENOSPC' });
  t.equal(ctx.quota.bytes, 0, 'nothing accounted');
  await j.append(rec(REC_DATA, 1, 0, Buffer.alloc(1)));
  t.equal(j.count, 1);
});

t.test('a write cut short (ENOSPC) is cut back to the last whole record', async (t) => {
  const dir = t.testdir();
  let fail = false;
  const base = ruledIo(() => undefined);
  const io = {
    ...base,
    open: async (p: string, mode: 'excl' | 'rw') => {
      const f = await base.open(p, mode);
      return {
        ...f,
        write: async (d: Uint8Array, pos: number) => {
          if (!fail) return f.write(d, pos);
          await f.write(d.subarray(0, 10), pos); // part of the batch reached the disk
          throw fault('ENOSPC');
        },
      };
    },
  };
  const { ctx } = context(io);
  const j = new JournalSegments(ctx, join(dir, 'journal'), 0, 'r', 1 << 20, 10_000);
  const a = rec(REC_DATA, 1, 18, Buffer.alloc(40, 1));
  const { seg } = await j.append(a);
  fail = true;
  await t.rejects(j.append(rec(REC_DATA, 1, 58, Buffer.alloc(40, 2))), { code: 'ENOSPC' });
  const buf = readFileSync(seg.path);
  t.equal(buf.length, a.length, 'no torn record left');
  t.equal(parseSegment(buf).validBytes, buf.length);
});
