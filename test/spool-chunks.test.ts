// The chunk-file lane on its own: journaled bytes land at their offsets behind a provisional
// header, a failed write keeps (a copy of) its bytes and is retried, SEALed chunks go on.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { ChunkFiles, openInDir } from '../src/spool/chunk-files.js';
import { chunkHeader } from '../src/spool/format.js';
import { nodeIo } from '../src/spool/io.js';
import { SharedBuffer, SizeClassPool } from '../src/util/scratch-pool.js';
import { LC3 } from './support/spool.js';
import { chunk, context, fault, ruledIo, until } from './support/spool-parts.js';

async function drained(f: ChunkFiles): Promise<void> {
  while (f.running) await f.running;
}

t.test('writes journaled bytes behind a header; accounts held and quota; passes SEALed chunks on', async (t) => {
  const dir = t.testdir();
  const { ctx } = context();
  const ready: unknown[] = [];
  const f = new ChunkFiles(ctx, 4, (c) => ready.push(c));
  const c = chunk(dir);
  const pool = new SizeClassPool(64, 1024, 2, 4096);
  const lease = new SharedBuffer(pool.take(64), pool);
  const data = lease.buf.fill(5);
  c.unwritten.push({ pos: 18, data, lease: lease.retain() });
  lease.release(); // the commit's own reference: the write holds the other
  ctx.held += 64;
  f.add(c);
  f.kick();
  t.ok(f.running, 'the lane runs');
  await drained(f);
  t.equal(f.pending, 0);
  t.equal(ctx.held, 0);
  t.equal(ctx.quota.bytes, 18 + 64, 'header and data');
  const file = readFileSync(c.openAbs);
  t.same(file.subarray(0, 18), chunkHeader(LC3, 0), 'provisional header');
  t.same(file.subarray(18), Buffer.alloc(64, 5));
  t.equal(lease.refs, 0, 'written: the batch buffer is released');
  t.equal(pool.idleBytes, 64, 'and back in its pool');
  t.equal(c.unwritten.length, 0);
  t.same(ready, [], 'no SEAL journaled yet');
  c.sealJournaled = true;
  f.add(c);
  f.kick();
  await drained(f);
  t.same(ready, [c], 'handed to the sealer');
});

t.test('a failed write copies its bytes out of the commit buffer and is retried', async (t) => {
  const dir = t.testdir();
  let fails = 1;
  const { ctx, errors } = context(ruledIo((op, _p, pos) => (op === 'write' && pos === 18 && fails-- > 0 ? fault('EIO') : undefined)));
  const f = new ChunkFiles(ctx, 1, () => undefined);
  const c = chunk(dir);
  const pool = new SizeClassPool(128, 1024, 2, 4096);
  const lease = new SharedBuffer(pool.take(100), pool);
  const batch = lease.buf.fill(3);
  c.unwritten.push({ pos: 18, data: batch.subarray(10, 42), lease: lease.retain() });
  lease.release();
  ctx.held += 32;
  f.add(c);
  f.kick();
  await drained(f);
  t.equal(ctx.counters.writeErrors, 1);
  t.same(errors, ['chunk write: injected EIO']);
  t.equal(f.pending, 1, 'still to write');
  t.equal(c.unwritten[0]!.lease, null, 'copied');
  t.not(c.unwritten[0]!.data.buffer, batch.buffer, 'no longer a view into the batch');
  t.equal(lease.refs, 0, 'the batch buffer is released for the pool to hand out again');
  batch.fill(9); // what the next commit would do with it
  t.same(c.unwritten[0]!.data, Buffer.alloc(32, 3), 'the copy keeps the bytes');
  t.equal(ctx.held, 32, 'still held');
  f.kick();
  await drained(f);
  t.equal(f.pending, 0);
  t.equal(ctx.held, 0);
  t.same(readFileSync(c.openAbs).subarray(18), Buffer.alloc(32, 3));
});

t.test('kick while running runs the lane once more', async (t) => {
  const dir = t.testdir();
  const { ctx } = context();
  const f = new ChunkFiles(ctx, 2, () => undefined);
  const a = chunk(dir);
  const b = chunk(dir);
  a.unwritten.push({ pos: 18, data: Buffer.alloc(4, 1), lease: null });
  f.add(a);
  f.kick();
  b.unwritten.push({ pos: 18, data: Buffer.alloc(4, 2), lease: null });
  f.add(b);
  f.kick(); // the lane is running: it goes round again
  await until(() => f.running === null, 'the lane to stop');
  t.ok(existsSync(a.openAbs) && existsSync(b.openAbs));
  t.equal(f.pending, 0);
});

t.test('openInDir: retries a vanishing directory 20 times, then gives up; other errors at once', async (t) => {
  const dir = t.testdir();
  let enoent = 0;
  const io = ruledIo((op) => (op === 'open' ? (enoent++, fault('ENOENT')) : undefined));
  await t.rejects(openInDir(io, `${dir}/x/y.lc3`, 'excl'), { code: 'ENOENT' });
  t.equal(enoent, 21);
  let eio = 0;
  await t.rejects(openInDir(ruledIo((op) => (op === 'open' ? (eio++, fault('EIO')) : undefined)), `${dir}/x/z.lc3`, 'excl'), { code: 'EIO' });
  t.equal(eio, 1);
  const f = await openInDir(nodeIo, `${dir}/a/b/c.lc3`, 'excl');
  await f.close();
  t.ok(existsSync(`${dir}/a/b/c.lc3`));
});
