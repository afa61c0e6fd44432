import t from 'tap';
import { ScratchPool, SharedBuffer, SizeClassPool } from '../src/util/scratch-pool.js';

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

t.test('SizeClassPool: power-of-two classes, reuse per class, caps per class and in total', async (t) => {
  const p = new SizeClassPool(1024, 8192, 2, 12 * 1024);
  t.equal(p.classOf(1), 1024);
  t.equal(p.classOf(1025), 2048);
  t.equal(p.classOf(8192), 8192);
  t.equal(p.classOf(8193), 0, 'above maxBytes: not pooled');
  const a = p.take(1500);
  t.equal(a.length, 2048, 'a buffer of the class size');
  p.give(a);
  t.equal(p.idleBytes, 2048);
  t.equal(p.take(2000), a, 'the same class hands it out again');
  t.equal(p.idleBytes, 0);
  const b = p.take(100);
  p.give(b);
  t.not(p.take(1500), b, 'another class does not');
  const big = p.take(10_000);
  t.equal(big.length, 10_000, 'too large: exactly the size asked for');
  p.give(big);
  t.equal(p.idleBytes, 1024, 'and not kept');
  p.give(a.subarray(0, 1024));
  p.give(Buffer.alloc(3000));
  t.equal(p.idleBytes, 1024, 'views and foreign sizes are not kept');
  const eights = [p.take(8192), p.take(8192), p.take(8192)];
  for (const e of eights) p.give(e);
  t.equal(p.idleBytes, 1024 + 8192, 'the total cap: one 8 KiB buffer fits beside the 1 KiB one');
  p.give(p.take(1024)); // take + give back within the cap
  const twos = [p.take(2048), p.take(2048), p.take(2048)];
  for (const w of twos) p.give(w);
  t.equal(p.idleBytes, 1024 + 8192 + 2048, 'the cap stops at 12 KiB');
});

t.test('SharedBuffer: back to the pool at the last release, never earlier; misuse throws', async (t) => {
  const p = new SizeClassPool(64, 1024, 4, 4096);
  const s = new SharedBuffer(p.take(64), p);
  s.retain();
  s.retain();
  s.release();
  s.release();
  t.equal(p.idleBytes, 0, 'one user left: not in the pool');
  t.not(p.take(64), s.buf, 'so not handed out');
  s.release();
  t.equal(s.refs, 0);
  t.equal(p.idleBytes, 64, 'released by the last user');
  t.throws(() => s.release(), /released more often/);
  t.throws(() => s.retain(), /retain after the last release/);
  t.equal(p.idleBytes, 64, 'a second release does not give it twice');
});

t.test('SizeClassPool exact: every size in range is its own class; smaller and larger are not pooled', async (t) => {
  const p = new SizeClassPool(100, 1000, 2, 10_000, true);
  t.equal(p.classOf(160), 160);
  t.equal(p.classOf(99), 0);
  t.equal(p.classOf(1001), 0);
  const a = p.take(160);
  t.equal(a.length, 160, 'exactly the size asked for');
  p.give(a);
  t.equal(p.take(161).length, 161, 'a neighbouring size is another class');
  t.equal(p.take(160), a, 'the same size gets it back');
  const small = p.take(50);
  p.give(small);
  t.equal(p.idleBytes, 0, 'below minBytes: not kept');
});
