// The full-GC period rule (src/util/gc-period.ts): the decision with a fake clock, then
// the real thing: a real full GC of this thread, seen by the real PerformanceObserver.
import t from 'tap';
import { getHeapStatistics } from 'node:v8';
import { collectGarbage } from '../src/util/profile.js';
import { GcPeriod } from '../src/util/gc-period.js';
import { until } from './support/service.js';

t.test('collects only after the period without a full GC', async (t) => {
  let now = 1000;
  let collected = 0;
  // A real collection is seen by the observer too: the fake one says so the same way.
  const p: GcPeriod = new GcPeriod({ periodMs: 120_000, checkMs: 3_600_000, now: () => now, collect: async () => (collected++, p.sawFull()) });
  t.teardown(() => p.stop());
  now += 119_999;
  t.equal(await p.check(), false, 'within the period: V8 decides');
  now += 1;
  t.equal(await p.check(), true, 'past the period: collected');
  t.equal(collected, 1);
  t.equal(await p.check(), false, 'the period starts again at the collection');
  now += 60_000;
  p.sawFull(); // V8 ran one of its own
  now += 100_000;
  t.equal(await p.check(), false, "V8's own full GC restarts the period too");
  now += 20_000;
  t.equal(await p.check(), true);
  t.same(p.counts(), { all: 3, period: 2 }, 'full GCs counted, and the ones the rule started');
});

t.test('one collection at a time; a collection that fails is retried a period later', async (t) => {
  let now = 0;
  let release!: () => void;
  let calls = 0;
  const p = new GcPeriod({
    periodMs: 10,
    checkMs: 3_600_000,
    now: () => now,
    collect: () => {
      calls++;
      if (calls === 2) return Promise.reject(new Error('inspector busy'));
      return new Promise<void>((r) => (release = r));
    },
  });
  t.teardown(() => p.stop());
  now = 10;
  const first = p.check();
  t.equal(await p.check(), false, 'a check while one runs does not start another');
  release();
  t.equal(await first, true);
  now = 20;
  t.equal(await p.check(), false, 'the failing one says so');
  t.equal(await p.check(), false, 'and is not retried at once');
  now = 30;
  const third = p.check();
  release();
  t.equal(await third, true, 'retried a period later');
  t.equal(calls, 3);
});

t.test('real: the rule runs a full GC of this thread, which frees its garbage', async (t) => {
  // The rule first (its baseline is the heap before the garbage), then garbage in old space (it
  // survives scavenges while referenced), then unreferenced.
  const p = new GcPeriod({ periodMs: 50, checkMs: 20 });
  t.teardown(() => p.stop());
  let keep: number[][] | undefined = Array.from({ length: 4000 }, () => Array.from({ length: 100 }, (_, i) => i));
  t.equal(keep.length, 4000);
  const used = getHeapStatistics().used_heap_size;
  keep = undefined;
  await until(() => p.counts().period >= 1, 10_000, 'a full GC started by the rule');
  t.ok(getHeapStatistics().used_heap_size < used - 1e6, `the garbage is gone (${(used / 1e6).toFixed(1)} MB used before)`);
});

t.test('real: the observer sees a full GC the rule did not start', async (t) => {
  const p = new GcPeriod({ periodMs: 3_600_000, checkMs: 3_600_000 });
  t.teardown(() => p.stop());
  await collectGarbage(); // as /debug/gc does
  await until(() => p.counts().all >= 1, 10_000, "the gc entry of /debug/gc's full GC");
  t.equal(p.counts().period, 0);
});
