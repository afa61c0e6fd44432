// The sealer on its own: header, fdatasync, link, directory fsync, then a mark for the SEALED
// record, and only after that record the open name goes. A failed fdatasync never yields a mark:
// the file is rebuilt from the journal first.
import t from 'tap';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Chunk } from '../src/spool/chunk.js';
import { chunkHeader } from '../src/spool/format.js';
import { nodeIo, type SpoolIo } from '../src/spool/io.js';
import { REC_DATA, writeRecord } from '../src/spool/journal.js';
import { JournalSegments } from '../src/spool/journal-segments.js';
import { Sealer } from '../src/spool/sealer.js';
import { LC3 } from './support/spool.js';
import { chunk, context, fault, ruledIo, until } from './support/spool-parts.js';

/** A chunk of `frames` frames whose bytes are journaled (one DATA record) and in its open file. */
async function ready(dir: string, io: SpoolIo, frames: number): Promise<{ c: Chunk; j: JournalSegments; body: Buffer; parts: ReturnType<typeof context> }> {
  const parts = context(io);
  const j = new JournalSegments(parts.ctx, join(dir, 'journal'), 0, 'r', 1 << 20, 10_000);
  const c = chunk(dir);
  const body = Buffer.alloc(frames * 32, 0x41);
  for (let k = 0; k < frames; k++) body.writeUInt16LE(30, k * 32);
  const rec = Buffer.alloc(24 + body.length);
  body.copy(rec, 24);
  writeRecord(rec, 0, REC_DATA, c.id, 18, body.length);
  c.firstSeg = (await j.append(rec)).seg;
  c.firstSeg.refs++;
  c.frames = frames;
  c.nextPos = 18 + body.length;
  mkdirSync(join(c.openAbs, '..'), { recursive: true });
  writeFileSync(c.openAbs, Buffer.concat([chunkHeader(LC3, 0), body]));
  c.file = await nodeIo.open(c.openAbs, 'rw');
  c.sealJournaled = true;
  return { c, j, body, parts };
}

function sealer(dir: string, p: ReturnType<typeof context>, j: JournalSegments, done: Chunk[]): Sealer {
  return new Sealer(p.ctx, j, join(dir, 'open'), join(dir, 'sealed'), 2, (c) => done.push(c));
}

t.test('seals in steps; the open name stays until the SEALED record is durable', async (t) => {
  const dir = t.testdir();
  const { c, j, body, parts } = await ready(dir, nodeIo, 5);
  const done: Chunk[] = [];
  const s = sealer(dir, parts, j, done);
  s.enqueue(c);
  t.equal(s.sealBacklog, 1);
  let marks: Chunk[] = [];
  await until(() => (marks = marks.concat(s.takeMarks())).length > 0, 'a SEALED mark');
  t.same(marks, [c]);
  t.equal(c.sealStep, 3);
  const sealedPath = join(dir, 'sealed', c.sealedName!);
  t.same(readFileSync(sealedPath), Buffer.concat([chunkHeader(LC3, 5), body]), 'final header, byte-exact');
  t.ok(existsSync(c.openAbs), 'open name kept until the SEALED record');
  t.same(done, []);
  s.sealedRecordDurable(c);
  s.pump();
  await until(() => done.length === 1, 'the seal to finish');
  t.notOk(existsSync(c.openAbs), 'open name removed');
  t.notOk(existsSync(join(dir, 'open', 'chunks')), 'empty directories pruned');
  t.equal(c.state, 'sealed');
  t.equal(c.firstSeg!.refs, 0, 'its journal segment is released');
  t.equal(s.sealBacklog, 0);
  t.equal(parts.ctx.counters.sealedChunks, 1);
});

t.test('a failed fdatasync: no SEALED mark; the file is rebuilt from the journal, then sealed', async (t) => {
  const dir = t.testdir();
  let armed = true;
  const io = ruledIo((op, p) => {
    if (op !== 'datasync' || !p.endsWith('.lc3') || !armed) return undefined;
    armed = false;
    writeFileSync(p, Buffer.alloc(4000, 0x55)); // what the page cache holds is no evidence now
    return fault('EIO');
  });
  const { c, j, body, parts } = await ready(dir, io, 8);
  c.file = await io.open(c.openAbs, 'rw');
  const done: Chunk[] = [];
  const s = sealer(dir, parts, j, done);
  s.enqueue(c);
  await until(() => parts.ctx.counters.sealErrors === 1, 'the fsync failure');
  t.same(s.takeMarks(), [], 'no SEALED mark for a seal whose fsync failed');
  t.ok(c.rebuild, 'to be rebuilt');
  let marks: Chunk[] = [];
  await until(() => (marks = marks.concat(s.takeMarks())).length > 0, 'the retried seal (100 ms backoff)');
  t.same(readFileSync(join(dir, 'sealed', c.sealedName!)), Buffer.concat([chunkHeader(LC3, 8), body]), 'rebuilt byte-exact, tail cut');
  t.same(parts.errors, ['seal: injected EIO']);
});

t.test('a taken object name gets the next one; link failures are retried from the link', async (t) => {
  const dir = t.testdir();
  let linkFails = 1;
  const { c, j, parts } = await ready(dir, ruledIo((op) => (op === 'link' && linkFails-- > 0 ? fault('EIO') : undefined)), 2);
  mkdirSync(join(dir, 'sealed', 'chunks', 'u', '_'), { recursive: true });
  writeFileSync(join(dir, 'sealed', c.objectName), 'someone else');
  const s = sealer(dir, parts, j, []);
  s.enqueue(c);
  let marks: Chunk[] = [];
  await until(() => (marks = marks.concat(s.takeMarks())).length > 0, 'a SEALED mark after the retry');
  t.not(c.sealedName, c.objectName, 'bumped');
  t.equal(readFileSync(join(dir, 'sealed', c.objectName), 'utf8'), 'someone else', 'never overwritten');
  t.equal(parts.ctx.counters.sealErrors, 1);
});

t.test('stop cancels retries waiting on their backoff; aborted: nothing starts', async (t) => {
  const dir = t.testdir();
  let links = 0;
  const { c, j, parts } = await ready(dir, ruledIo((op) => (op === 'link' ? (links++, fault('EIO')) : undefined)), 1);
  const s = sealer(dir, parts, j, []);
  s.enqueue(c);
  await until(() => links === 1, 'the first link attempt');
  s.stop();
  await new Promise((r) => setTimeout(r, 250)); // past the 100 ms backoff
  t.equal(links, 1, 'no retry after stop');
  parts.ctx.aborted = true;
  const { c: c2 } = await ready(t.testdir(), nodeIo, 1);
  s.enqueue(c2);
  await new Promise((r) => setTimeout(r, 30));
  t.equal(c2.sealStep, 0, 'not started');
});
