import t from 'tap';
import { ScratchPool } from '../src/util/scratch-pool.js';

t.test('buffers are reused, at most `keep` idle ones are kept, foreign sizes are not', async (t) => {
  const p = new ScratchPool(1024, 2);
  const a = p.take();
  const b = p.take();
  const c = p.take();
  t.equal(a.length, 1024);
  t.not(a, b, 'buffers in use at once are distinct');
  p.give(a);
  p.give(b);
  p.give(c);
  t.equal(p.idle, 2, 'the third is dropped');
  t.equal(p.take(), b, 'the last given is taken first');
  p.give(Buffer.alloc(10));
  t.equal(p.idle, 1, 'a buffer of another size is not kept');
});

t.test('with(): the buffer goes back even when fn throws', async (t) => {
  const p = new ScratchPool(16, 4);
  let seen: Buffer | undefined;
  await t.rejects(p.with(async (buf) => {
    seen = buf;
    throw new Error('boom');
  }), /boom/);
  t.equal(p.idle, 1);
  t.equal(await p.with(async (buf) => buf === seen), true, 'and is the one handed out next');
});
