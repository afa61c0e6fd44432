// Drop-oldest queues and the per-session byte budget (DESIGN §3.3), plus the consumers' helpers.
import t from 'tap';
import { ByteBudget, DEFAULT_SESSION_BUFFER_BYTES, DropOldestQueue, newQueueCounters, SharedPool } from '../src/consumers/drop-queue.js';
import { describe, FailureReporter, sleep, withQuery } from '../src/consumers/context.js';
import { hasConsumers } from '../src/consumers/session-consumers.js';
import { TaskScope } from '../src/session/task-scope.js';

const items = <T>(q: DropOldestQueue<T>): T[] => q.drain().map((e) => e.item);

t.test('counters: every queue name present, all zero', async (t) => {
  const c = newQueueCounters();
  const zero = { transcripts: 0, audio_webhook: 0, audio_apps: 0 };
  t.same(c, { drops: zero, droppedBytes: zero, depth: zero, bytes: zero });
  t.equal(new ByteBudget().limit, DEFAULT_SESSION_BUFFER_BYTES);
  t.equal(DEFAULT_SESSION_BUFFER_BYTES, 20 * 1024 * 1024);
});

t.test('bounded by item count: pushing past the bound drops the oldest and counts it', async (t) => {
  const c = newQueueCounters();
  const q = new DropOldestQueue<string>('transcripts', 3, new ByteBudget(1000), c);
  for (const s of ['a', 'b', 'c', 'd', 'e']) t.ok(q.push(s, 10));
  t.equal(q.length, 3);
  t.same({ drops: c.drops.transcripts, droppedBytes: c.droppedBytes.transcripts, depth: c.depth.transcripts, bytes: c.bytes.transcripts }, { drops: 2, droppedBytes: 20, depth: 3, bytes: 30 });
  t.same(q.shift(), { item: 'c', bytes: 10 }, 'oldest survivor first');
  t.equal(c.depth.transcripts, 2, 'in flight is not depth');
  t.equal(c.bytes.transcripts, 30, 'but its bytes still count');
  q.release(10);
  t.same(items(q), ['d', 'e']);
  q.release(20);
  t.same([c.depth.transcripts, c.bytes.transcripts, q.bytes], [0, 0, 0]);
  t.equal(q.shift(), undefined);
});

t.test("shard pool: a full pool makes a session drop its own oldest, never another session's", async (t) => {
  const c = newQueueCounters();
  const pool = new SharedPool(100);
  const a = new DropOldestQueue<string>('audio_apps', 20, new ByteBudget(80, pool), c);
  const b = new DropOldestQueue<string>('audio_webhook', 20, new ByteBudget(80, pool), c);
  t.ok(a.push('a1', 30) && a.push('a2', 30));
  t.ok(b.push('b1', 30));
  t.equal(pool.used, 90);
  t.ok(b.push('b2', 30), 'fits once b evicts b1');
  t.same(items(a), ['a1', 'a2'], "a's items are untouched");
  t.same(items(b), ['b2']);
  t.equal(pool.used, 90, 'taken items stay charged (held) until released');
  t.same([c.drops.audio_webhook, c.drops.audio_apps], [1, 0]);
  t.notOk(b.push('b3', 20), 'b has nothing queued to evict and the pool is full: the new item is dropped');
  t.equal(c.drops.audio_webhook, 2);
  a.release(60);
  b.release(30);
  t.equal(pool.used, 0, 'releases return bytes to the pool');
  t.ok(b.hold(50) && pool.used === 50, 'held bytes charge the pool');
  b.close();
  a.close();
  t.equal(pool.used, 0, 'closing returns everything');
});

t.test('budget: this queue evicts its own oldest first, then the fullest other queue', async (t) => {
  const c = newQueueCounters();
  const b = new ByteBudget(100);
  const tq = new DropOldestQueue<string>('transcripts', 50, b, c);
  const wq = new DropOldestQueue<string>('audio_webhook', 20, b, c);
  const aq = new DropOldestQueue<string>('audio_apps', 20, b, c);
  wq.push('w1', 30);
  wq.push('w2', 30);
  t.ok(wq.push('w3', 50), 'fits after evicting w1');
  t.same([c.drops.audio_webhook, c.droppedBytes.audio_webhook, b.used], [1, 30, 80]);
  aq.push('a1', 10);
  t.equal(b.used, 90);
  // transcripts is empty: room comes from the fullest other queue (audio_webhook: 80 > 10).
  t.ok(tq.push('t1', 40));
  t.same([c.drops.audio_webhook, c.drops.audio_apps], [2, 0], 'w2 went, a1 stayed');
  t.same([b.used, c.bytes.audio_webhook, c.bytes.audio_apps, c.bytes.transcripts], [100, 50, 10, 40]);
  t.ok(tq.push('t2', 20), 'own oldest (t1) first');
  t.same([c.drops.transcripts, c.droppedBytes.transcripts], [1, 40]);
  t.same(items(tq), ['t2']);
  t.same(items(wq), ['w3']);
  t.same(items(aq), ['a1']);
});

t.test('an item larger than the budget is dropped itself; so is one held bytes leave no room for', async (t) => {
  const c = newQueueCounters();
  const b = new ByteBudget(100);
  const q = new DropOldestQueue<string>('audio_webhook', 20, b, c);
  t.ok(q.push('small', 10));
  t.notOk(q.push('huge', 101), 'larger than the whole budget');
  t.same([q.length, c.drops.audio_webhook, c.droppedBytes.audio_webhook], [1, 1, 101], 'the queue kept what it had');
  q.shift(); // 10 in flight
  t.ok(q.hold(60)); // a collecting buffer
  t.equal(b.used, 70);
  t.ok(q.push('x', 30), 'exactly fits');
  t.notOk(q.push('y', 40), 'evicting x would not be enough: held bytes are not evictable');
  t.same([q.length, c.drops.audio_webhook, b.used], [1, 2, 100], 'x kept (nothing evicted in vain), y dropped itself');
  t.notOk(q.hold(31), 'a hold that cannot fit is refused, nothing charged');
  t.ok(q.hold(30), 'a hold evicts queued items like a push');
  t.same([q.length, c.drops.audio_webhook, b.used], [0, 3, 100]);
  q.release(30);
  q.dropHeld(10); // the in-flight item given up on
  t.same([c.drops.audio_webhook, c.droppedBytes.audio_webhook, b.used, c.bytes.audio_webhook], [4, 101 + 40 + 30 + 10, 60, 60]);
  q.countDrop(5);
  t.equal(c.drops.audio_webhook, 5);
});

t.test('close releases queued and held bytes from the budget and the gauges, once', async (t) => {
  const c = newQueueCounters();
  const b = new ByteBudget(1000);
  const q = new DropOldestQueue<string>('audio_apps', 20, b, c);
  const other = new DropOldestQueue<string>('transcripts', 20, b, c);
  q.push('a', 100);
  q.push('b', 100);
  q.shift();
  t.ok(q.hold(50));
  other.push('t', 7);
  t.same([b.used, c.depth.audio_apps, c.bytes.audio_apps], [257, 1, 250]);
  q.close();
  t.same([b.used, c.depth.audio_apps, c.bytes.audio_apps, q.length, q.bytes], [7, 0, 0, 0, 0]);
  q.release(100); // the in-flight POST settles after close
  q.dropHeld(50);
  t.notOk(q.hold(10));
  q.close();
  t.notOk(q.push('late', 1), 'a closed queue takes nothing');
  t.same([b.used, c.depth.audio_apps, c.bytes.audio_apps, c.drops.audio_apps], [7, 0, 0, 0], 'nothing released twice, nothing counted');
  // The closed queue is out of the budget: a new one finds its room in the other live queue.
  const third = new DropOldestQueue<string>('audio_webhook', 20, b, c);
  t.ok(third.push('w', 993));
  t.ok(third.push('w2', 994), 'own w first, then t of the live transcripts queue');
  t.same([c.drops.audio_webhook, c.drops.transcripts, b.used], [1, 1, 994]);
  other.close();
  third.close();
  t.same([b.used, c.bytes.transcripts, c.bytes.audio_webhook, c.depth.transcripts, c.depth.audio_webhook], [0, 0, 0, 0, 0]);
});

t.test('counters shared by many sessions sum their gauges', async (t) => {
  const c = newQueueCounters();
  const qs = [0, 1, 2].map(() => new DropOldestQueue<number>('transcripts', 5, new ByteBudget(100), c));
  qs.forEach((q, i) => q.push(i, 10 * (i + 1)));
  t.same([c.depth.transcripts, c.bytes.transcripts], [3, 60]);
  qs[1]!.close();
  t.same([c.depth.transcripts, c.bytes.transcripts], [2, 40]);
  qs.forEach((q) => q.close());
  t.same([c.depth.transcripts, c.bytes.transcripts], [0, 0]);
});

t.test('withQuery adds to an existing query, in order', async (t) => {
  t.equal(withQuery('http://h/p', { uid: 'u1' }), 'http://h/p?uid=u1');
  t.equal(withQuery('http://h/p?key=a&b=2', { sample_rate: '16000', uid: 'u 1&x' }), 'http://h/p?key=a&b=2&sample_rate=16000&uid=u+1%26x');
  t.equal(withQuery('http://h/p?uid=old', { uid: 'new' }), 'http://h/p?uid=new', 'set, not appended twice');
  t.throws(() => withQuery('not a url', { uid: 'u' }));
});

t.test('sleep: a scope timer, cut short by abort, leaving nothing behind', async (t) => {
  const scope = new TaskScope();
  const ac = new AbortController();
  const t0 = Date.now();
  await sleep(scope, ac.signal, 30);
  t.ok(Date.now() - t0 >= 25, 'slept');
  t.equal(scope.active, 0, 'timer gone');
  const p = sleep(scope, ac.signal, 60_000);
  t.equal(scope.active, 1, 'the wait is a timer of the scope');
  ac.abort();
  await p;
  t.equal(scope.active, 0, 'abort cleared the timer');
  await sleep(scope, ac.signal, 60_000); // already aborted: at once
  const other = new TaskScope();
  const p2 = sleep(other, other.signal, 60_000);
  t.equal(await other.close(100), 0);
  await p2;
  await sleep(other, new AbortController().signal, 60_000); // closed scope: at once
  await scope.close(100);
});

t.test('FailureReporter: one line per bad spell; describe()', async (t) => {
  const lines: string[] = [];
  const r = new FailureReporter((m) => lines.push(m));
  r.ok('hook h'); // healthy stays quiet
  r.fail('hook h', 'HTTP 500');
  r.fail('hook h', 'HTTP 502');
  r.fail('app a', 'ECONNREFUSED');
  r.ok('hook h');
  r.ok('hook h');
  r.error('bad url');
  t.same(lines, ['hook h: HTTP 500', 'app a: ECONNREFUSED', 'hook h: recovered', 'bad url']);
  new FailureReporter(undefined).fail('x', 'y'); // no sink: fine
  t.equal(describe({ status: 404 }, undefined), 'HTTP 404');
  t.equal(describe(undefined, Object.assign(new Error('fetch failed'), { cause: { code: 'ECONNREFUSED' } })), 'ECONNREFUSED');
  t.equal(describe(undefined, Object.assign(new Error('x'), { code: 'UND_ERR_HEADERS_TIMEOUT' })), 'UND_ERR_HEADERS_TIMEOUT');
  t.equal(describe(undefined, new Error('boom')), 'boom');
  t.equal(describe(undefined, 'str'), 'str');
});

t.test('hasConsumers', async (t) => {
  const none = { transcriptWebhook: null, transcriptApps: [], audioBytesWebhook: null, audioApps: [] };
  t.notOk(hasConsumers(none));
  t.ok(hasConsumers({ ...none, transcriptWebhook: 'http://h/' }));
  t.ok(hasConsumers({ ...none, transcriptApps: ['http://h/'] }));
  t.ok(hasConsumers({ ...none, audioBytesWebhook: { url: 'http://h/', seconds: 5 } }));
  t.ok(hasConsumers({ ...none, audioApps: ['http://h/'] }));
});
