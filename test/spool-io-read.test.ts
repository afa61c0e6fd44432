// nodeIo.readFile with a caller's allocator (the uploader's pooled reads): the bytes come back
// exactly, as a view of a buffer the allocator handed out, however the file's size moves.
import t from 'tap';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nodeIo } from '../src/spool/io.js';

t.test('reads into the buffer alloc() returns and hands back a view of exactly the file', async (t) => {
  const dir = t.testdir();
  const p = join(dir, 'a');
  const data = Buffer.from(Array.from({ length: 5000 }, (_, i) => i & 0xff));
  writeFileSync(p, data);
  const asked: number[] = [];
  const given: Buffer[] = [];
  const got = await nodeIo.readFile(p, (n) => {
    asked.push(n);
    const b = Buffer.alloc(n + 100, 0xee); // a pool's buffers are larger than asked
    given.push(b);
    return b;
  });
  t.same(asked, [5000], 'asked once, for the file size');
  t.equal(got.buffer, given[0]!.buffer, 'a view of the buffer handed out');
  t.same(got, data);
});

t.test('an allocator that gives exactly the size: grows on to the end of the file', async (t) => {
  const dir = t.testdir();
  const p = join(dir, 'b');
  writeFileSync(p, Buffer.alloc(10, 1));
  const asked: number[] = [];
  const got = await nodeIo.readFile(p, (n) => {
    asked.push(n);
    if (asked.length === 1) appendFileSync(p, Buffer.alloc(30, 2)); // the file grows after the stat
    return Buffer.allocUnsafe(n);
  });
  t.same(got, Buffer.concat([Buffer.alloc(10, 1), Buffer.alloc(30, 2)]), 'everything, also what came after the stat');
  t.same(asked, [10, 21, 43], 'grown (2n + 1) until a read returns nothing');
});

t.test('an empty file, and a missing one (ENOENT as without alloc)', async (t) => {
  const dir = t.testdir();
  writeFileSync(join(dir, 'e'), '');
  t.equal((await nodeIo.readFile(join(dir, 'e'), (n) => Buffer.allocUnsafe(n))).length, 0);
  await t.rejects(nodeIo.readFile(join(dir, 'missing'), (n) => Buffer.allocUnsafe(n)), { code: 'ENOENT' });
});
