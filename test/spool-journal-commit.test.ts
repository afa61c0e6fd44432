// The group commit on its own: one write + one fdatasync for every changed chunk, acks only after
// it, a failed batch kept and rewritten into a fresh segment, commits coalesced and never overlapping.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ChunkFiles } from '../src/spool/chunk-files.js';
import { GroupCommit, type CommitStats } from '../src/spool/journal-commit.js';
import { parseSegment, REC_DATA, REC_OPEN, REC_SEAL, REC_SEALED } from '../src/spool/journal.js';
import { JournalSegments } from '../src/spool/journal-segments.js';
import { Sealer } from '../src/spool/sealer.js';
import type { SpoolIo } from '../src/spool/io.js';
import { chunk, context, fault, pend, ruledIo, session } from './support/spool-parts.js';

function rig(dir: string, io?: SpoolIo, now?: () => number) {
  const parts = context(io, now ? { now } : {});
  const { ctx } = parts;
  const segments = new JournalSegments(ctx, join(dir, 'journal'), 0, 'r', 1 << 20, 10_000);
  const sealer = new Sealer(ctx, segments, join(dir, 'open'), join(dir, 'sealed'), 2, () => undefined);
  const files = new ChunkFiles(ctx, 4, () => undefined);
  const acks: [number, number, number][] = [];
  const commits: CommitStats[] = [];
  let before = 0;
  const noSpace: boolean[] = [];
  const gc = new GroupCommit(ctx, segments, files, sealer, {
    beforeCommit: () => void before++,
    onDurable: (id, f, b) => acks.push([id, f, b]),
    onCommit: (c) => commits.push(c),
    onNoSpace: (f) => noSpace.push(f),
  });
  return { ...parts, segments, sealer, files, gc, acks, commits, noSpace, before: () => before };
}

function records(dir: string): number[] {
  return readdirSync(join(dir, 'journal'))
    .sort()
    .flatMap((f) => parseSegment(readFileSync(join(dir, 'journal', f))).records.map((r) => r.type));
}

t.test('one batch for all changed chunks: OPEN + DATA (+ SEAL), then the acks, then the chunk files', async (t) => {
  const dir = t.testdir();
  const r = rig(dir);
  const s1 = session(1);
  const s2 = session(2);
  const a = chunk(dir, s1);
  const b = chunk(dir, s2);
  pend(a, 3);
  pend(b, 2);
  r.ctx.held += a.pendLen + b.pendLen;
  b.sealRequested = true;
  r.gc.markDirty(a);
  r.gc.markDirty(b);
  r.gc.markDirty(a); // twice: one entry
  t.ok(r.gc.pending);
  await r.gc.commit();
  t.equal(r.before(), 1, 'beforeCommit ran');
  t.same(records(dir), [REC_OPEN, REC_DATA, REC_OPEN, REC_DATA, REC_SEAL]);
  t.same(r.acks, [[1, 3, 90], [2, 2, 60]]);
  t.equal(r.commits.length, 1);
  t.equal(r.commits[0]!.records, 5);
  t.equal(r.commits[0]!.sessions, 2);
  t.equal(r.ctx.counters.commits, 1);
  t.equal(a.firstSeg!.refs, 2, 'both chunks refer to the segment');
  t.ok(b.sealJournaled && b.pend === null);
  t.notOk(r.gc.pending);
  while (r.files.running) await r.files.running;
  t.equal(r.ctx.held, 0, 'written into the chunk files');
});

t.test('a failed fdatasync: nothing acknowledged; the batch goes whole into a new segment next time', async (t) => {
  const dir = t.testdir();
  let fails = 1;
  const r = rig(dir, ruledIo((op, p) => (op === 'datasync' && p.endsWith('.jnl') && fails-- > 0 ? fault('EIO') : undefined)));
  const s = session(1);
  const c = chunk(dir, s);
  pend(c, 4);
  r.ctx.held += c.pendLen;
  r.gc.markDirty(c);
  await r.gc.commit();
  t.same(r.acks, []);
  t.same(s.durable, { frames: 0, bytes: 0 });
  t.ok(r.gc.pending, 'kept');
  t.equal(r.ctx.held, 24 + 4 * 32 + 24 + c.openPayload.length, 'the whole batch is held');
  t.equal(r.ctx.counters.commitErrors, 1);
  t.same(r.errors, ['journal: injected EIO']);
  pend(c, 1);
  r.ctx.held += 32;
  r.gc.markDirty(c);
  await r.gc.commit();
  t.same(r.acks, [[1, 5, 150]], 'acknowledged together, once durable');
  t.equal(c.firstSeg!.seq, 1, 'written into a fresh segment');
  t.equal(r.segments.count, 1, 'the failed one (empty, unreferenced) is pruned');
  const second = parseSegment(readFileSync(c.firstSeg!.path)).records.map((x) => x.type);
  t.same(second, [REC_OPEN, REC_DATA, REC_DATA], 'the kept batch, then the new bytes');
});

t.test('commits are coalesced and never overlap; SEALED marks ride on the next one', async (t) => {
  const dir = t.testdir();
  const r = rig(dir);
  const c = chunk(dir);
  pend(c, 1);
  r.gc.markDirty(c);
  const p1 = r.gc.commit();
  t.equal(r.gc.commit(), p1, 'coalesced with the one not yet started');
  await p1;
  pend(c, 1);
  r.gc.markDirty(c);
  const p2 = r.gc.commit();
  const p3 = r.gc.commit();
  t.not(p2, p1);
  await Promise.all([p2, p3]);
  t.equal(r.ctx.counters.commits, 2, 'one commit per call that had something to write');
  c.sealedName = c.objectName;
  (r.sealer as unknown as { marks: unknown[] }).marks.push(c);
  await r.gc.commit();
  t.same(records(dir).at(-1), REC_SEALED);
  t.equal(c.sealStep, 4, 'back to the sealer for its last step');
  r.ctx.aborted = true;
  pend(c, 1);
  r.gc.markDirty(c);
  await r.gc.commit();
  t.equal(r.ctx.counters.commits, 3, 'aborted: no commit');
});

t.test('a full disk: reported once, timer commits back off, a retry with nothing new rewrites the kept batch as is', async (t) => {
  const dir = t.testdir();
  let full = true;
  let now = 1_000_000;
  let writes = 0;
  const r = rig(dir, ruledIo((op, p) => (op === 'write' && p.endsWith('.jnl') ? (writes++, full ? fault('ENOSPC') : undefined) : undefined)), () => now);
  const c = chunk(dir);
  pend(c, 2);
  r.gc.markDirty(c);
  await r.gc.commit();
  await r.gc.commit(); // flush() retries at once
  t.same(r.noSpace, [true], 'reported once');
  const kept = (r.gc as unknown as { carry: { buf: Buffer } }).carry.buf;
  await r.gc.commit();
  t.equal((r.gc as unknown as { carry: { buf: Buffer } }).carry.buf, kept, 'nothing new: the same buffer, not a copy');
  writes = 0;
  await r.gc.tick(200);
  t.equal(writes, 1, 'the first timer retry runs');
  await r.gc.tick(200);
  t.equal(writes, 1, 'the next one waits (backoff)');
  now += 5000;
  await r.gc.tick(200);
  t.equal(writes, 2, 'and runs after at most 5 s');
  t.same(r.acks, []);
  full = false;
  now += 5000;
  await r.gc.tick(200);
  t.same(r.acks, [[1, 2, 60]], 'space again: durable and acknowledged');
  t.same(r.noSpace, [true, false]);
  await r.gc.tick(200);
  t.equal(writes, 3, 'no backoff after a success (nothing to write: no journal write)');
});

t.test('batch buffers are pooled: reused once their chunk writes are done, never while one holds them', async (t) => {
  const dir = t.testdir();
  // Chunk-file writes wait while `hold` is set; the journal's writes are recorded by buffer.
  let hold: Promise<void> | null = null;
  let open: () => void = () => undefined;
  const journalBuffers: ArrayBufferLike[] = [];
  const base = ruledIo(() => undefined);
  const io: SpoolIo = {
    ...base,
    open: async (p, mode) => {
      const f = await base.open(p, mode);
      return {
        ...f,
        write: async (d, pos) => {
          if (p.endsWith('.jnl')) journalBuffers.push(d.buffer);
          else if (hold) await hold;
          return f.write(d, pos);
        },
        datasync: () => f.datasync(),
        truncate: (n) => f.truncate(n),
        close: () => f.close(),
      };
    },
  };
  const r = rig(dir, io);
  const c = chunk(dir);
  const round = async (fill: number): Promise<void> => {
    pend(c, 2, fill);
    r.ctx.held += c.pendLen;
    r.gc.markDirty(c);
    await r.gc.commit();
  };
  await round(1);
  while (r.files.running) await r.files.running;
  await round(2);
  while (r.files.running) await r.files.running;
  t.equal(journalBuffers.length, 2);
  t.equal(journalBuffers[1], journalBuffers[0], 'the second commit reuses the first one\'s buffer');
  hold = new Promise((res) => (open = res));
  await round(3); // its chunk write waits, holding the buffer
  await round(4);
  t.not(journalBuffers[3], journalBuffers[2], 'a buffer a chunk write still holds is not handed out');
  open();
  hold = null;
  while (r.files.running) await r.files.running;
  const file = readFileSync(c.openAbs).subarray(18);
  const want = Buffer.concat([1, 2, 3, 4].map((fill) => {
    const b = Buffer.alloc(64, fill);
    b.writeUInt16LE(30, 0);
    b.writeUInt16LE(30, 32);
    return b;
  }));
  t.same(file, want, 'every commit\'s bytes landed as journaled, none overwritten by a later batch');
  t.equal(r.ctx.held, 0);
});
