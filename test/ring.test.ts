import t from 'tap';
import fc from 'fast-check';
import { Arena, Code, isPowerOfTwo, maxRecordPayload, RingConsumer, RingProducer } from '../src/shard/ring.js';

type Rec = { slot: number; code: number; arrival: number; bytes: number[] };

function collect(c: RingConsumer, waiting: number[] = []): Rec[] {
  const out: Rec[] = [];
  c.drainReady((slot, code, arrival, data, off, len) => out.push({ slot, code, arrival, bytes: Array.from(data.subarray(off, off + len)) }), (s) => waiting.push(s));
  return out;
}

t.test('records keep order and content across wrap-around; a full ring refuses, never overwrites', (t) => {
  const arena = new Arena({ slots: 2, ringBytes: 1024 });
  const p = new RingProducer(arena);
  const c = new RingConsumer(arena);
  const sent: Rec[] = [];
  let n = 0;
  for (let round = 0; round < 50; round++) {
    for (;;) {
      const len = (n * 37) % 300;
      const bytes = Array.from({ length: len }, (_, i) => (n + i) & 0xff);
      if (!p.write(round % 2, Code.FRAMES, n, Uint8Array.from(bytes), 0, len)) break;
      sent.push({ slot: round % 2, code: Code.FRAMES, arrival: n, bytes });
      n++;
    }
    t.ok(arena.used(round % 2) <= 1024);
  }
  const got = collect(c);
  t.equal(got.length, sent.length);
  const bySlot = (s: number, r: Rec[]) => r.filter((x) => x.slot === s);
  t.same(bySlot(0, got), bySlot(0, sent));
  t.same(bySlot(1, got), bySlot(1, sent));
  t.equal(arena.totalUsed(), 0);
  t.end();
});

t.test('property: any interleaving of writes and drains delivers every record once, in order', (t) => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 500 }), fc.boolean()), { maxLength: 300 }), (ops) => {
      const arena = new Arena({ slots: 4, ringBytes: 1024 });
      const p = new RingProducer(arena);
      const c = new RingConsumer(arena);
      const expected: Rec[][] = [[], [], [], []];
      const got: Rec[][] = [[], [], [], []];
      let n = 0;
      for (const [slot, len, drain] of ops) {
        const bytes = Array.from({ length: len }, (_, i) => (n * 7 + i) & 0xff);
        if (p.write(slot, 101, n, Uint8Array.from(bytes), 0, len)) expected[slot]!.push({ slot, code: 101, arrival: n, bytes });
        n++;
        if (drain) for (const r of collect(c)) got[r.slot]!.push(r);
      }
      for (const r of collect(c)) got[r.slot]!.push(r);
      return JSON.stringify(got) === JSON.stringify(expected);
    }),
    { numRuns: 200 },
  );
  t.end();
});

t.test('waiting producers are told when their slot drains; reset and doorbell', async (t) => {
  const arena = new Arena({ slots: 1, ringBytes: 1024 });
  const p = new RingProducer(arena);
  const c = new RingConsumer(arena);
  const big = new Uint8Array(maxRecordPayload(1024));
  t.ok(p.write(0, 1, 0, big, 0, big.length), 'largest record fits an empty ring');
  t.notOk(p.write(0, 1, 0, big, 0, 1), 'then nothing more');
  p.markWaiting(0);
  t.equal(p.unrung, 1);
  const seen = c.doorbell();
  t.notOk(p.consumerSleeping);
  p.ring();
  t.equal(c.doorbell(), seen, 'the consumer is awake: no ring (it looks at the ready queue before it sleeps)');
  t.equal(p.unrung, 0, 'but the records count as announced');
  t.equal(c.waitBell(seen), undefined, 'records are ready: waitBell does not sleep');
  t.notOk(p.consumerSleeping, 'and lowers its flag again');
  const waiting: number[] = [];
  t.equal(collect(c, waiting).length, 1);
  t.same(waiting, [0]);
  t.notOk(c.hasReady());
  const wake = c.waitBell(c.doorbell(), 5000);
  t.ok(wake, 'nothing ready: it sleeps');
  t.ok(p.consumerSleeping, 'and says so');
  p.write(0, 1, 0, big, 0, 8);
  const before = c.doorbell();
  p.ring();
  p.write(0, 1, 0, big, 0, 8);
  p.ring(); // before the consumer has woken: the flag is taken, no second ring
  t.equal(c.doorbell(), before + 1, 'one ring for a sleeping consumer');
  t.equal(await wake, 'ok', 'woken by the ring, not the timeout');
  t.notOk(p.consumerSleeping);
  t.ok(c.hasReady());
  t.equal(collect(c, []).length, 2);
  const alive = setTimeout(() => undefined, 5000); // a waitAsync timeout alone does not keep the process alive
  t.equal(await c.waitBell(c.doorbell(), 20), 'timed-out', 'an unrung sleep ends at its timeout');
  clearTimeout(alive);
  t.notOk(p.consumerSleeping, 'and lowers the flag');
  p.reset(0);
  t.equal(arena.used(0), 0);
  t.ok(isPowerOfTwo(1024));
  t.notOk(isPowerOfTwo(1000));
  t.throws(() => new Arena({ slots: 1, ringBytes: 1000 }), /power of two/);
});
