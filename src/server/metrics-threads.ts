// Per-thread figures on /metrics: event-loop lag, busy time and V8 heap of every thread (main,
// each shard, the uploader), asked of each thread at scrape time through the thread directory, and the
// uploader's per-attempt upload durations as a histogram.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { LatencySnapshot } from '../util/latency-buckets.js';
import type { ThreadSample } from '../util/thread-monitor.js';
import { RunningTotals, type Metrics } from './metrics.js';
import type { ThreadDirectory } from './threads.js';

/** Quantile label values of pusher_event_loop_lag_seconds ("1" is the maximum). */
const QUANTILES = [
  ['0.5', 'lagP50'],
  ['0.99', 'lagP99'],
  ['1', 'lagMax'],
] as const;

export function addThreadMetrics(m: Metrics, threads: ThreadDirectory): void {
  const r = m.registry;
  const lag = new Gauge({
    name: 'pusher_event_loop_lag_seconds',
    help: 'Event-loop lag of each thread since the previous scrape (quantile 0.5, 0.99 and 1 = max), from perf_hooks.monitorEventLoopDelay',
    labelNames: ['thread', 'quantile'],
    registers: [r],
  });
  const heap = new Gauge({ name: 'pusher_heap_used_bytes', help: 'V8 heap used by each thread (its own isolate)', labelNames: ['thread'], registers: [r] });
  // What RSS sees of a heap is its committed size, not its used size: the two part when V8 keeps
  // free space (grown semi-spaces, swept pages) between collections.
  const heapCommitted = new Gauge({ name: 'pusher_heap_committed_bytes', help: 'V8 heap committed by each thread (its own isolate: used plus the free space it keeps)', labelNames: ['thread'], registers: [r] });
  const busy = new Counter({
    name: 'pusher_thread_busy_seconds_total',
    help: 'Seconds each thread spent running (its event loop not idle), from performance.eventLoopUtilization inside it; rate() is the thread\'s share of a core',
    labelNames: ['thread'],
    registers: [r],
  });
  const fullGcs = new Counter({ name: 'pusher_full_gcs_total', help: 'Full (mark-compact) GCs of each thread, any cause', labelNames: ['thread'], registers: [r] });
  const periodGcs = new Counter({
    name: 'pusher_full_gcs_periodic_total',
    help: 'Collections started in a thread that had gone 30 s without a full GC (src/util/gc-period.ts)',
    labelNames: ['thread'],
    registers: [r],
  });
  const busyTotals = new RunningTotals();
  const gcTotals = new RunningTotals();
  m.addCollector(async () => {
    const live = threads.live();
    // Every thread answers first; then the gauges change in one synchronous step, so a
    // concurrent scrape never renders a half-updated set (and a thread that is gone drops out).
    const got = await Promise.allSettled(live.map((t) => t.thread.sample()));
    lag.reset();
    heap.reset();
    heapCommitted.reset();
    got.forEach((g, i) => {
      if (g.status !== 'fulfilled') return; // died mid-scrape: no figure rather than a failed scrape
      const name = live[i]!.name;
      setThread(lag, heap, heapCommitted, name, g.value);
      const delta = busyTotals.advance(name, g.value.busySeconds);
      if (delta > 0) busy.inc({ thread: name }, delta);
      // inc by 0 too: both are on /metrics from the first scrape, 0 rather than absent.
      fullGcs.inc({ thread: name }, gcTotals.advance(`${name}\0all`, g.value.fullGcs.all));
      periodGcs.inc({ thread: name }, gcTotals.advance(`${name}\0period`, g.value.fullGcs.period));
    });
  });
}

function setThread(lag: Gauge<'thread' | 'quantile'>, heap: Gauge<'thread'>, heapCommitted: Gauge<'thread'>, thread: string, s: ThreadSample): void {
  for (const [quantile, key] of QUANTILES) lag.set({ thread, quantile }, s[key]);
  heap.set({ thread }, s.heapUsed);
  heapCommitted.set({ thread }, s.heapTotal);
}

type Sample = { metricName: string; labels: Record<string, string>; value: number };

/**
 * A Prometheus histogram rendered from power-of-two millisecond buckets counted in another thread
 * (util/latency-buckets.ts): the scrape copies the counts, nobody calls observe() per value.
 * (The registry renders any object with name/help/type/get(); its typings only admit its own classes.)
 */
export class Log2Histogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  series: { labels: Record<string, string>; snap: LatencySnapshot }[] = [];

  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  get(): { name: string; help: string; type: string; aggregator: string; values: Sample[] } {
    const values: Sample[] = [];
    for (const { labels, snap } of this.series) {
      let acc = 0;
      snap.buckets.forEach((n, i) => {
        acc += n;
        const le = i === snap.buckets.length - 1 ? '+Inf' : String(2 ** i / 1000);
        values.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le }, value: acc });
      });
      values.push({ metricName: `${this.name}_sum`, labels, value: snap.sumMs / 1000 });
      values.push({ metricName: `${this.name}_count`, labels, value: acc });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {}

  register(r: Registry): this {
    r.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
    return this;
  }
}

/**
 * `pusher_upload_duration_seconds{result}`: one observation per upload attempt, from its start
 * (reading the spool file) to the store's confirmation (ok) or the failure (error). Both results
 * are always rendered, so a dashboard's error rate is 0, not absent, while nothing fails.
 */
export function addUploadMetrics(m: Metrics, durations: () => Promise<{ ok: LatencySnapshot; error: LatencySnapshot }>): void {
  const h = new Log2Histogram('pusher_upload_duration_seconds', 'Duration of each upload attempt (read, sha256, stat, put, delete) by result (ok, error)').register(m.registry);
  m.addCollector(async () => {
    const d = await durations();
    h.series = [
      { labels: { result: 'ok' }, snap: d.ok },
      { labels: { result: 'error' }, snap: d.error },
    ];
  });
}
