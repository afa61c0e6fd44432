// SettingsCache (src/settings/cache.ts), the TTL + LRU cache under both remote settings providers:
// hits within the TTL, stale-while-revalidate, in-flight de-duplication, error TTL with the last
// known value, LRU bound, counters and the onError hook. Fake clock, controllable loader.
import t from 'tap';
import { SettingsCache } from '../src/settings/index.js';

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: Error): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A loader whose calls wait until the test settles them. */
function loader<T>(): { calls: { key: string; d: Deferred<T> }[]; load: (key: string) => Promise<T> } {
  const calls: { key: string; d: Deferred<T> }[] = [];
  return {
    calls,
    load: (key) => {
      const d = deferred<T>();
      calls.push({ key, d });
      return d.promise;
    },
  };
}

/** Lets settled promises run their handlers. */
const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

t.test('a fresh entry is a hit; an expired one is served stale and refreshed in the background', async (t) => {
  let now = 1000;
  const l = loader<string>();
  const c = new SettingsCache(l.load, { ttlMs: 100, now: () => now });
  const first = c.get('a');
  t.equal(l.calls.length, 1);
  l.calls[0]!.d.resolve('v1');
  t.equal(await first, 'v1');
  t.equal(await c.get('a'), 'v1');
  t.equal(l.calls.length, 1, 'no fetch within the TTL');
  t.same(c.counters(), { cached: 1, fetches: 1, errors: 0, hits: 1 });
  now += 100; // expiresAt is exclusive
  t.equal(await c.get('a'), 'v1', 'stale value answered at once');
  t.equal(l.calls.length, 2, 'refresh started');
  t.equal(await c.get('a'), 'v1', 'still stale while the refresh runs');
  t.equal(l.calls.length, 2, 'the running refresh is shared');
  l.calls[1]!.d.resolve('v2');
  await flush();
  t.equal(await c.get('a'), 'v2');
  t.same(c.counters(), { cached: 1, fetches: 2, errors: 0, hits: 2 });
  t.equal(c.peek('a'), 'v2');
  t.equal(c.peek('nope'), null);
});

t.test('concurrent gets for an unknown key share one fetch', async (t) => {
  const l = loader<number>();
  const c = new SettingsCache(l.load);
  const all = Promise.all([c.get('k'), c.get('k'), c.get('k')]);
  const other = c.get('other');
  t.equal(l.calls.length, 2);
  l.calls[0]!.d.resolve(7);
  l.calls[1]!.d.resolve(8);
  t.same(await all, [7, 7, 7]);
  t.equal(await other, 8);
  t.equal(c.counters().fetches, 2);
});

t.test('errors: last known value, else null; retried only after errorTtlMs; counted and reported', async (t) => {
  let now = 0;
  const errors: string[] = [];
  const l = loader<string>();
  const c = new SettingsCache(l.load, { ttlMs: 100, errorTtlMs: 1000, now: () => now, onError: (e, k) => errors.push(`${k}: ${e.message}`) });
  const p = c.get('new');
  l.calls[0]!.d.reject(new Error('down'));
  t.equal(await p, null, 'never answered: null');
  t.same(errors, ['new: down']);
  t.equal(await c.get('new'), null);
  t.equal(l.calls.length, 1, 'within errorTtlMs: no new fetch (and it counts as a hit)');
  now += 1000;
  const again = c.get('new');
  t.equal(l.calls.length, 2, 'retried after errorTtlMs');
  l.calls[1]!.d.resolve('ok');
  t.equal(await again, 'ok');
  // Known value, expired, refresh fails: the known value stays, for errorTtlMs.
  now += 100;
  t.equal(await c.get('new'), 'ok');
  l.calls[2]!.d.reject(new Error('down again'));
  await flush();
  t.equal(await c.get('new'), 'ok');
  t.equal(l.calls.length, 3);
  now += 999;
  t.equal(await c.get('new'), 'ok');
  t.equal(l.calls.length, 3, 'error TTL still running');
  now += 1;
  t.equal(await c.get('new'), 'ok', 'stale again: served while refreshing');
  t.equal(l.calls.length, 4);
  t.equal(c.counters().errors, 2);
  c.noteError(new Error('bad value'), 'x');
  t.equal(c.counters().errors, 3, 'noteError counts');
  t.equal(errors.at(-1), 'x: bad value');
  // A loader that throws synchronously, or rejects with a non-Error, is handled like a failure.
  const weird = new SettingsCache<string>((k) => {
    if (k === 'sync') throw new Error('sync throw');
    return Promise.reject('a string');
  }, { onError: () => {
    throw new Error('a failing hook');
  } });
  t.equal(await weird.get('sync'), null);
  t.equal(await weird.get('str'), null);
  t.equal(weird.counters().errors, 2);
});

t.test('bounded: the least recently used key goes first', async (t) => {
  const loads: string[] = [];
  const c = new SettingsCache(async (k: string) => {
    loads.push(k);
    return k.toUpperCase();
  }, { maxEntries: 2 });
  await c.get('a');
  await c.get('b');
  await c.get('a'); // a is now the most recent
  await c.get('c'); // evicts b
  t.equal(c.counters().cached, 2);
  t.equal(c.peek('b'), null);
  t.equal(await c.get('a'), 'A');
  t.equal(await c.get('b'), 'B');
  t.same(loads, ['a', 'b', 'c', 'b']);
  t.equal(new SettingsCache(async () => 1, { maxEntries: 0 }).counters().cached, 0, 'maxEntries is at least 1');
});
