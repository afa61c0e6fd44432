import t from 'tap';
import { loadConfig, parseBytes } from '../src/config.js';
import { pickShard } from '../src/shard/rendezvous.js';
import { scopeCounters, TaskScope } from '../src/session/task-scope.js';
import { p99 } from '../src/server/metrics.js';
import { parseFaults } from '../src/shard/shard-core.js';

t.test('rendezvous: stable, balanced, minimal movement when shards are added', (t) => {
  const keys = Array.from({ length: 20000 }, (_, i) => `user-${i}`);
  const counts = [0, 0, 0, 0];
  for (const k of keys) counts[pickShard(k, 4)]!++;
  for (const c of counts) t.ok(Math.abs(c - 5000) < 500, `balanced: ${c}`);
  t.equal(pickShard('alice', 4), pickShard('alice', 4), 'stable');
  let moved = 0;
  let movedElsewhere = 0;
  for (const k of keys) {
    const a = pickShard(k, 4);
    const b = pickShard(k, 5);
    if (a !== b) {
      moved++;
      if (b !== 4) movedElsewhere++;
    }
  }
  t.ok(moved / keys.length < 0.25, `≈1/5 of keys move to the new shard (${moved})`);
  t.equal(movedElsewhere, 0, 'no key moves between old shards');
  t.end();
});

t.test('config: defaults, env, overrides, clear errors', (t) => {
  const c = loadConfig({ PORT: '9000', SPOOL_MAX_BYTES: '2GiB' }, { SHARDS: '3' });
  t.equal(c.PORT, 9000);
  t.equal(c.SHARDS, 3);
  t.equal(c.SPOOL_MAX_BYTES, 2 * 2 ** 30);
  t.equal(c.RING_BYTES, 16384);
  t.equal(c.SLOTS_PER_SHARD, 4096);
  t.equal(c.AUTH_MODE, 'none');
  t.equal(parseBytes('1000'), 1000);
  t.equal(parseBytes('1.5MB'), 1.5e6);
  t.throws(() => parseBytes('lots'), /not a size/);
  t.throws(() => loadConfig({ PORT: 'x' }), /PORT=x/);
  t.throws(() => loadConfig({ STORE: 's3' }), /STORE=s3: expected one of local, gcs/);
  t.throws(() => loadConfig({ RING_BYTES: '1030' }), /power of two/);
  t.throws(() => loadConfig({ AUTH_MODE: 'jwt' }), /needs AUTH_SECRET/);
  t.throws(() => loadConfig({ STORE: 'gcs' }), /needs GCS_BUCKET/);
  t.end();
});

t.test('TaskScope: abort reaches every task and timer; stubborn tasks are reported', async (t) => {
  const base = scopeCounters.tasks + scopeCounters.timers;
  const s = new TaskScope();
  let aborted = 0;
  const errors: unknown[] = [];
  for (let i = 0; i < 3; i++) {
    s.spawn((signal) => new Promise<void>((_, rej) => signal.addEventListener('abort', () => { aborted++; rej(new Error('aborted')); })));
  }
  s.spawn(async () => { throw new Error('boom'); }, (e) => errors.push(e));
  let fired = false;
  s.setTimeout(10_000, () => (fired = true));
  const quick = s.setTimeout(1, () => {});
  s.clearTimeout(quick);
  s.clearTimeout(quick);
  await new Promise((r) => setTimeout(r, 10));
  t.equal(errors.length, 1, 'a failing task reports its error');
  t.equal(s.active, 4);
  t.equal(await s.close(500), 0);
  t.equal(aborted, 3);
  t.notOk(fired);
  t.equal(scopeCounters.tasks + scopeCounters.timers, base, 'live counts back to where they were');
  t.ok(s.isClosed);
  t.equal(await s.close(10), 0, 'idempotent');
  t.throws(() => s.spawn(async () => {}), /closed/);
  t.throws(() => s.setTimeout(1, () => {}), /closed/);

  const stubborn = new TaskScope();
  let release!: () => void;
  stubborn.spawn(() => new Promise<void>((r) => (release = r)));
  t.equal(await stubborn.close(20), 1, 'a task that ignores abort is counted as leaked');
  release();
  await new Promise((r) => setTimeout(r, 5));
  t.equal(scopeCounters.tasks + scopeCounters.timers, base);
});

t.test('p99 and fault parsing', (t) => {
  t.equal(p99([0, 0, 0]), 0);
  t.equal(p99([90, 9, 1]), 2);
  t.equal(p99([100, 0, 0, 0, 5]), 16);
  t.same(parseFaults('leak_on_close, drain_delay_ms=20'), { leakOnClose: true, drainDelayMs: 20 });
  t.same(parseFaults('drop_drained'), { dropDrained: true });
  t.throws(() => parseFaults('leak_on_clos'), /unknown test fault/);
  t.end();
});
