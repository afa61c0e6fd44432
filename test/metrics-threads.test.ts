// Per-thread metrics: the loop-lag/heap monitor inside a thread, the power-of-two latency buckets
// and their Prometheus rendering, the collector over the thread directory, the uploader's
// per-attempt durations, and all of it on a live service (main, both shards, the uploader).
import t from 'tap';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { Metrics } from '../src/server/metrics.js';
import { addThreadMetrics, addUploadMetrics, Log2Histogram } from '../src/server/metrics-threads.js';
import type { ThreadControl, ThreadDirectory } from '../src/server/threads.js';
import { Uploader } from '../src/spool/uploader.js';
import { LocalStore } from '../src/store/local.js';
import type { ObjectStore } from '../src/store/types.js';
import { LatencyBuckets } from '../src/util/latency-buckets.js';
import { LAG_RESOLUTION_MS, ThreadMonitor, type ThreadSample } from '../src/util/thread-monitor.js';
import { closed, startTestService, until } from './support/service.js';
import { sealedLc3 } from './support/spool.js';

const busy = (ms: number) => {
  const end = performance.now() + ms;
  while (performance.now() < end);
};

t.test('ThreadMonitor: a blocked loop shows as lag, a window too short to measure repeats the last one', async (t) => {
  const m = new ThreadMonitor();
  t.teardown(() => m.close());
  await new Promise((r) => setTimeout(r, 100)); // a few timer periods of an idle loop
  m.read();
  // After a reset the monitor's first timer period is not recorded (it starts a new delta), so
  // the stall comes a few periods into the window.
  await new Promise((r) => setTimeout(r, 30));
  busy(120); // one 120 ms stall inside the window
  // The stall is recorded when the monitor's timer fires next; it is due before this one.
  await new Promise((r) => setTimeout(r, 50));
  const s = m.read();
  t.ok(s.lagSamples > 0, `${s.lagSamples} timer samples in the window`);
  t.ok(s.lagMax >= 0.08 && s.lagMax < 1, `the 120 ms stall shows in the maximum: ${s.lagMax.toFixed(3)} s`);
  t.ok(s.lagP50 <= s.lagP99 && s.lagP99 <= s.lagMax, `p50 ${s.lagP50.toFixed(4)} ≤ p99 ${s.lagP99.toFixed(4)} ≤ max`);
  t.ok(s.lagP50 < 0.05, `most samples are not stalled: p50 ${s.lagP50.toFixed(4)} s (the ${LAG_RESOLUTION_MS} ms period subtracted)`);
  t.ok(s.heapUsed > 0 && s.heapTotal >= s.heapUsed, `heap ${s.heapUsed} of ${s.heapTotal} bytes`);
  t.ok(s.busySeconds >= 0.12, `the 120 ms of busy loop count as busy time: ${s.busySeconds.toFixed(3)} s`);
  const again = m.read(); // no timer has fired since: nothing new to say
  t.equal(again.lagSamples, 0);
  t.same([again.lagP50, again.lagP99, again.lagMax], [s.lagP50, s.lagP99, s.lagMax], 'the last window is repeated, not reported as 0');
});

t.test('LatencyBuckets and their histogram: bucket i counts < 2^i ms, cumulative in the exposition', async (t) => {
  const b = new LatencyBuckets(4);
  for (const ms of [0.5, 1, 3, 4, 7.9, 1e6]) b.observe(ms);
  t.same(b.snapshot(), { buckets: [1, 1, 1, 3], sumMs: 0.5 + 1 + 3 + 4 + 7.9 + 1e6 }, '<1, <2, <4, the rest (the last bucket is +Inf)');
  const r = new Registry();
  const h = new Log2Histogram('x_seconds', 'help text').register(r);
  h.series = [{ labels: { result: 'ok' }, snap: b.snapshot() }];
  const text = await r.metrics();
  t.match(text, '# TYPE x_seconds histogram');
  for (const line of ['x_seconds_bucket{result="ok",le="0.001"} 1', 'x_seconds_bucket{result="ok",le="0.002"} 2', 'x_seconds_bucket{result="ok",le="0.004"} 3', 'x_seconds_bucket{result="ok",le="+Inf"} 6', 'x_seconds_count{result="ok"} 6']) {
    t.ok(text.includes(line), line);
  }
  t.match(text, /x_seconds_sum\{result="ok"\} 1000\.0164/);
});

const sample = (heapUsed: number, busySeconds = 1): ThreadSample => ({ lagP50: 0.001, lagP99: 0.002, lagMax: 0.003, lagSamples: 10, heapUsed, heapTotal: heapUsed * 2, busySeconds, fullGcs: { all: 3, period: 1 } });

t.test('addThreadMetrics: one series set per live thread; a thread that fails or goes drops out', async (t) => {
  const m = new Metrics(async () => [], () => []);
  const ok = (heap: number): ThreadControl => ({ sample: async () => sample(heap) }) as ThreadControl;
  let live = [
    { name: 'main', thread: ok(100) },
    { name: 'shard-0', thread: ok(200) },
    { name: 'uploader', thread: { sample: () => Promise.reject(new Error('gone')) } as unknown as ThreadControl },
  ];
  addThreadMetrics(m, { live: () => live } as unknown as ThreadDirectory);
  let text = await m.render();
  t.match(text, 'pusher_heap_used_bytes{thread="main"} 100');
  t.match(text, 'pusher_heap_used_bytes{thread="shard-0"} 200');
  t.match(text, 'pusher_heap_committed_bytes{thread="shard-0"} 400', 'the committed heap beside the used one');
  t.match(text, 'pusher_event_loop_lag_seconds{thread="shard-0",quantile="0.99"} 0.002');
  t.match(text, 'pusher_event_loop_lag_seconds{thread="shard-0",quantile="1"} 0.003');
  t.notMatch(text, 'thread="uploader"', 'a thread that could not answer is left out, the scrape still works');
  t.match(text, 'pusher_thread_busy_seconds_total{thread="main"} 1');
  t.match(text, 'pusher_full_gcs_total{thread="shard-0"} 3');
  t.match(text, 'pusher_full_gcs_periodic_total{thread="shard-0"} 1', 'full GCs, and the ones the period rule started');
  live = live.slice(0, 1);
  text = await m.render();
  t.notMatch(text, 'pusher_heap_used_bytes{thread="shard-0"}', 'a thread that is gone (restarting shard) has no stale gauges');
  t.notMatch(text, 'pusher_heap_committed_bytes{thread="shard-0"}');
});

t.test('pusher_thread_busy_seconds_total advances by what each thread adds, also across a restart', async (t) => {
  const m = new Metrics(async () => [], () => []);
  let busy = 2;
  addThreadMetrics(m, { live: () => [{ name: 'shard-0', thread: { sample: async () => sample(1, busy) } as unknown as ThreadControl }] } as unknown as ThreadDirectory);
  t.match(await m.render(), 'pusher_thread_busy_seconds_total{thread="shard-0"} 2');
  busy = 3.5;
  t.match(await m.render(), 'pusher_thread_busy_seconds_total{thread="shard-0"} 3.5');
  busy = 0.25; // the shard restarted: its total starts again from zero
  t.match(await m.render(), 'pusher_thread_busy_seconds_total{thread="shard-0"} 3.75', 'never goes back');
});

t.test('upload durations: per attempt, by result; a failed attempt is timed as an error', async (t) => {
  const dir = t.testdir({ spool: {}, store: {} });
  const spool = join(dir, 'spool');
  sealedLc3(spool, 'chunks/u/c/1.000.lc3', 10);
  sealedLc3(spool, 'chunks/u/c/2.000.lc3', 10, 2);
  const local = new LocalStore(join(dir, 'store'));
  let failNext = 1;
  const store: ObjectStore = {
    kind: 'local',
    stat: (n) => local.stat(n),
    list: (p) => local.list(p),
    read: (n) => local.read(n),
    putFile: async (n, p, meta) => {
      await new Promise((r) => setTimeout(r, 5));
      if (failNext-- > 0) throw new Error('store down');
      return local.putFile(n, p, meta);
    },
  };
  const up = new Uploader({ dir: spool, store, rescanMs: 0, baseDelayMs: 1, maxDelayMs: 5 });
  t.teardown(() => up.close());
  await up.start();
  await up.drain(10000);
  const d = up.uploadDurations();
  const count = (s: { buckets: number[] }) => s.buckets.reduce((a, b) => a + b, 0);
  t.equal(count(d.ok), 2, 'two attempts uploaded');
  t.equal(count(d.error), 1, 'one attempt failed');
  t.ok(d.error.sumMs >= 4 && d.ok.sumMs >= 8, `timed from start to outcome (${d.error.sumMs.toFixed(1)} ms failed, ${d.ok.sumMs.toFixed(1)} ms ok)`);
  const m = new Metrics(async () => [], () => []);
  addUploadMetrics(m, async () => d);
  const text = await m.render();
  t.match(text, 'pusher_upload_duration_seconds_count{result="ok"} 2');
  t.match(text, 'pusher_upload_duration_seconds_count{result="error"} 1');
});

t.test('live: lag and heap of every thread, upload durations after an upload', async (t) => {
  const svc = await startTestService();
  t.teardown(() => svc.close());
  const ws = await svc.ws('/v1/audio/stream?uid=threads1');
  for (let i = 0; i < 10; i++) ws.send(Buffer.alloc(30, i));
  const c = closed(ws);
  ws.close();
  await c;
  await until(async () => (await svc.metric('pusher_uploads_total', { result: 'ok' })) >= 1, 30000, 'the chunk upload');
  // One scrape: every scrape starts a new lag window, so figures of two scrapes do not compare.
  const text = await (await fetch(svc.url('/metrics'))).text();
  const value = (name: string, labels: string) => Number(new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  for (const thread of ['main', 'shard-0', 'shard-1', 'uploader']) {
    const used = value('pusher_heap_used_bytes', `thread="${thread}"`);
    t.ok(used > 1e6, `${thread}: heap used`);
    t.ok(value('pusher_heap_committed_bytes', `thread="${thread}"`) >= used, `${thread}: heap committed, at least the used part`);
    const [p50, p99, max] = ['0.5', '0.99', '1'].map((q) => value('pusher_event_loop_lag_seconds', `thread="${thread}",quantile="${q}"`));
    t.ok(p50! >= 0 && p99! >= p50! && max! >= p99! && max! < 5, `${thread}: lag p50 ${p50} s, p99 ${p99} s, max ${max} s`);
    const busy = value('pusher_thread_busy_seconds_total', `thread="${thread}"`);
    t.ok(busy > 0 && busy < 60, `${thread}: busy ${busy} s`);
    for (const name of ['pusher_full_gcs_total', 'pusher_full_gcs_periodic_total']) t.ok(value(name, `thread="${thread}"`) >= 0, `${thread}: ${name} rendered`);
  }
  t.ok((await svc.metric('pusher_upload_duration_seconds_count', { result: 'ok' })) >= 1, 'the upload was timed');
  t.ok((await svc.metric('pusher_upload_duration_seconds_sum', { result: 'ok' })) > 0);
  t.equal(await svc.metric('pusher_upload_duration_seconds_count', { result: 'error' }), 0, 'no failed attempt');
});
