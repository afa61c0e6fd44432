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

t.test('deferred writes: pieces wait for the delay, 16 KiB, a SEAL, pressure or a forced pass, then go in one writev', async (t) => {
  const dir = t.testdir();
  let now = 1000;
  const ops: string[] = [];
  // Every write but the provisional header's (at 0), as "write pos+bytes" / "writev pos+pieces".
  const counting = {
    ...nodeIo,
    open: async (p: string, mode: 'excl' | 'rw') => {
      const f = await nodeIo.open(p, mode);
      return {
        write: (d: Uint8Array, pos: number) => (pos > 0 && ops.push(`write ${pos}+${d.length}`), f.write(d, pos)),
        writev: (ds: readonly Uint8Array[], pos: number) => (ops.push(`writev ${pos}+${ds.length}`), f.writev!(ds, pos)),
        datasync: () => f.datasync(),
        truncate: (n: number) => f.truncate(n),
        close: () => f.close(),
      };
    },
  };
  const { ctx } = context(counting, { now: () => now, maxPending: 1 << 20 });
  const ready: unknown[] = [];
  const f = new ChunkFiles(ctx, 4, (c) => ready.push(c), { delayMs: 1000, batchBytes: 16 << 10, pressureBytes: 64 << 10 });
  const c = chunk(dir);
  let pos = 18;
  const piece = (n: number, fill: number): void => {
    c.unwritten.push({ pos, data: Buffer.alloc(n, fill), lease: null });
    pos += n;
    ctx.held += n;
    f.add(c);
  };
  const pass = async (force = false): Promise<void> => {
    f.kick(force);
    await drained(f);
  };
  ops.length = 0;
  for (let i = 0; i < 4; i++) {
    piece(100, i + 1);
    now += 200;
    await pass();
  }
  t.same(ops, [], 'four commits in 800 ms: nothing written yet');
  t.equal(f.pending, 1);
  t.equal(ctx.held, 400, 'held until written');
  piece(100, 5);
  now += 200;
  await pass();
  t.same(ops, ['writev 18+5'], 'the oldest piece is 1 s old: all five in one writev');
  t.equal(ctx.held, 0);
  t.equal(f.pending, 0);
  const file = readFileSync(c.openAbs);
  t.same(file.subarray(18), Buffer.concat([1, 2, 3, 4, 5].map((k) => Buffer.alloc(100, k))), 'bytes in order at their offsets');

  ops.length = 0;
  piece(10 << 10, 6);
  await pass();
  t.same(ops, [], '10 KiB, 0 ms old: waits');
  piece(8 << 10, 7);
  await pass();
  t.same(ops, [`writev 518+2`], '18 KiB ≥ 16 KiB: written at once');

  ops.length = 0;
  piece(50, 8);
  await pass();
  t.same(ops, [], 'waits');
  c.sealJournaled = true;
  f.add(c);
  await pass();
  t.same(ops, [`write ${518 + (18 << 10)}+50`], 'its SEAL is journaled: written (one piece: a plain write)');
  t.same(ready, [c], 'and handed to the sealer');

  const d = chunk(dir);
  ops.length = 0;
  d.unwritten.push({ pos: 18, data: Buffer.alloc(64 << 10, 1), lease: null });
  ctx.held += 64 << 10;
  const e = chunk(dir);
  e.unwritten.push({ pos: 18, data: Buffer.alloc(10, 2), lease: null });
  ctx.held += 10;
  f.add(e);
  await pass();
  t.same(ops, ['write 18+10'], 'held ≥ pressureBytes: every chunk is written, due or not');
  ctx.held -= 64 << 10;

  const g = chunk(dir);
  g.unwritten.push({ pos: 18, data: Buffer.alloc(10, 3), lease: null });
  ctx.held += 10;
  f.add(g);
  ops.length = 0;
  await pass();
  t.same(ops, [], 'not due');
  await pass(true);
  t.same(ops, ['write 18+10'], 'a forced pass (flush, shutdown) writes it');
  t.equal(ctx.held, 0);
});

t.test('deferred writes: a failed write is retried at the next pass, due or not', async (t) => {
  const dir = t.testdir();
  let now = 0;
  let fails = 1;
  const { ctx } = context(
    ruledIo((op) => (op === 'write' && fails-- > 0 ? fault('EIO') : undefined)),
    { now: () => now },
  );
  const f = new ChunkFiles(ctx, 1, () => undefined, { delayMs: 1000, batchBytes: 1 << 20, pressureBytes: 1 << 30 });
  const c = chunk(dir);
  c.unwritten.push({ pos: 18, data: Buffer.alloc(10, 1), lease: null }, { pos: 28, data: Buffer.alloc(10, 2), lease: null });
  ctx.held += 20;
  f.add(c);
  now = 1000;
  f.kick();
  await drained(f);
  t.equal(ctx.counters.writeErrors, 1, 'the header write failed');
  now = 1001;
  f.kick();
  await drained(f);
  t.equal(f.pending, 0, 'retried although not due by time');
  t.same(readFileSync(c.openAbs).subarray(18), Buffer.concat([Buffer.alloc(10, 1), Buffer.alloc(10, 2)]));
});
