// /metrics for what leaves the service besides the durable audio: webhook and app queues (per
// shard, summed by queue), outgoing HTTP (every sending thread, by target), the job queue, speaker
// samples and settings look-ups. Threads report running totals; counters advance by the
// difference (a restarted shard starts from zero again), as Metrics does for the shards' others.
import { Counter, Gauge, type Registry } from 'prom-client';
import { HTTP_LATENCY_BUCKETS, type HttpTargetStats } from '../http/client.js';
import type { JobQueueStats } from '../jobs/types.js';
import type { Metrics } from './metrics.js';

export interface OutboundSources {
  /** The main thread's HTTP figures (the job runner's pool). */
  mainHttp?: () => HttpTargetStats[];
  /** Job queue figures (cumulative counters and gauges, plain numbers). */
  jobs?: () => JobQueueStats;
  /** Settings look-ups: { source, errors, … }. */
  settings?: () => { source: string; errors: number; fetches: number };
}

/** Counters fed from running totals reported by threads: each (thread, labels) advances by its delta. */
class Mirror {
  private readonly last = new Map<string, number>();
  constructor(private readonly counter: Counter<string>) {}

  set(thread: string, labels: Record<string, string>, total: number): void {
    const key = `${thread}\0${Object.values(labels).join('\0')}`;
    const prev = this.last.get(key) ?? 0;
    const delta = total >= prev ? total - prev : total;
    if (delta > 0) this.counter.inc(labels, delta);
    this.last.set(key, total);
  }
}

export function addOutboundMetrics(m: Metrics, src: OutboundSources): void {
  const r: Registry = m.registry;
  const drops = new Mirror(new Counter({ name: 'pusher_queue_drops_total', help: 'Items dropped (oldest first) from bounded webhook and app queues', labelNames: ['queue'], registers: [r] }));
  const dropped = new Mirror(new Counter({ name: 'pusher_queue_dropped_bytes_total', help: 'Bytes of those dropped items', labelNames: ['queue'], registers: [r] }));
  const depth = new Gauge({ name: 'pusher_queue_depth', help: 'Items waiting in webhook and app queues, over all sessions', labelNames: ['queue'], registers: [r] });
  const held = new Gauge({ name: 'pusher_queue_bytes', help: 'Bytes held for webhooks and apps (queued, in flight, collecting), over all sessions', labelNames: ['queue'], registers: [r] });
  const requests = new Mirror(new Counter({ name: 'pusher_http_requests_total', help: 'Outgoing HTTP requests by target and result (2xx…5xx, timeout, refused, private_destination, aborted, error)', labelNames: ['target', 'result'], registers: [r] }));
  const refused = new Mirror(new Counter({ name: 'pusher_http_destinations_refused_total', help: 'Outgoing requests refused by the destination guard (WEBHOOK_ALLOW_PRIVATE=0), by target and why (loopback, private, link_local, metadata, …)', labelNames: ['target', 'reason'], registers: [r] }));
  const transcripts = new Mirror(new Counter({ name: 'pusher_transcripts_total', help: 'Transcript (102) messages received', registers: [r] }));
  const unplaced = new Mirror(new Counter({ name: 'pusher_speaker_samples_unplaced_total', help: 'Speaker-sample requests (105) whose segments the session could not place in its audio', registers: [r] }));
  const jobsPending = new Gauge({ name: 'pusher_jobs_pending', help: 'Jobs (104 processing, 105 speaker samples) journaled and not finished', registers: [r] });
  const jobsRunning = new Gauge({ name: 'pusher_jobs_running', help: 'Jobs being executed now', registers: [r] });
  const jobsDone = new Mirror(new Counter({ name: 'pusher_jobs_total', help: 'Jobs finished, by result (succeeded, failed: a terminal error)', labelNames: ['result'], registers: [r] }));
  const jobRetries = new Mirror(new Counter({ name: 'pusher_jobs_retries_total', help: 'Job attempts that will be retried', registers: [r] }));
  const jobDedup = new Mirror(new Counter({ name: 'pusher_jobs_deduplicated_total', help: 'Repeated 104s joined to their pending job', registers: [r] }));
  const jobFull = new Mirror(new Counter({ name: 'pusher_jobs_queue_full_total', help: 'Jobs refused because PROCESS_QUEUE_MAX were pending (answered with an error)', registers: [r] }));
  const settingsErrors = new Mirror(new Counter({ name: 'pusher_settings_errors_total', help: 'Settings look-ups that failed (consumers off unless a value was known)', labelNames: ['source'], registers: [r] }));
  const latency = new HttpLatencyHistogram();
  r.registerMetric(latency as unknown as Parameters<Registry['registerMetric']>[0]);

  m.addCollector((metrics) => {
    const byQueue = (pick: (q: Record<string, number>) => void, field: 'depth' | 'bytes') => {
      const sum: Record<string, number> = {};
      for (const s of metrics.lastShardStats) for (const [q, v] of Object.entries(s.queues[field])) sum[q] = (sum[q] ?? 0) + v;
      pick(sum);
    };
    byQueue((sum) => Object.entries(sum).forEach(([queue, v]) => depth.set({ queue }, v)), 'depth');
    byQueue((sum) => Object.entries(sum).forEach(([queue, v]) => held.set({ queue }, v)), 'bytes');
    const threads: { thread: string; http: HttpTargetStats[] }[] = [];
    for (const s of metrics.lastShardStats) {
      const thread = `shard-${s.shard}`;
      for (const [queue, v] of Object.entries(s.queues.drops)) drops.set(thread, { queue }, v);
      for (const [queue, v] of Object.entries(s.queues.droppedBytes)) dropped.set(thread, { queue }, v);
      transcripts.set(thread, {}, s.transcripts);
      unplaced.set(thread, {}, s.speakerUnresolved);
      threads.push({ thread, http: s.http });
    }
    if (src.mainHttp) threads.push({ thread: 'main', http: src.mainHttp() });
    for (const t of threads) for (const target of t.http) for (const [result, v] of Object.entries(target.results)) requests.set(t.thread, { target: target.target, result }, v ?? 0);
    for (const t of threads) for (const target of t.http) for (const [reason, v] of Object.entries(target.refused ?? {})) refused.set(t.thread, { target: target.target, reason }, v ?? 0);
    latency.threads = threads;
    if (src.jobs) {
      const j = src.jobs();
      jobsPending.set(j.pending);
      jobsRunning.set(j.running);
      jobsDone.set('main', { result: 'succeeded' }, j.succeeded);
      jobsDone.set('main', { result: 'failed' }, j.failed);
      jobRetries.set('main', {}, j.retries);
      jobDedup.set('main', {}, j.deduplicated);
      jobFull.set('main', {}, j.queueFull);
    }
    if (src.settings) {
      const s = src.settings();
      settingsErrors.set('main', { source: s.source }, s.errors);
    }
  });
}

/**
 * `pusher_http_request_duration_seconds{target}`: a histogram summed over every sending thread's
 * power-of-two millisecond buckets (bucket i counts requests faster than 2^i ms).
 */
class HttpLatencyHistogram {
  readonly name = 'pusher_http_request_duration_seconds';
  readonly help = 'Outgoing HTTP request duration by target (webhooks, apps, process)';
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  threads: { thread: string; http: HttpTargetStats[] }[] = [];

  get() {
    const sums = new Map<string, { buckets: number[]; sumMs: number }>();
    for (const t of this.threads) {
      for (const s of t.http) {
        let e = sums.get(s.target);
        if (!e) sums.set(s.target, (e = { buckets: new Array<number>(HTTP_LATENCY_BUCKETS).fill(0), sumMs: 0 }));
        s.latency.forEach((n, i) => (e!.buckets[i]! += n));
        e.sumMs += s.latencySumMs;
      }
    }
    const values: { metricName: string; labels: Record<string, string>; value: number }[] = [];
    for (const [target, e] of sums) {
      let acc = 0;
      e.buckets.forEach((n, i) => {
        acc += n;
        values.push({ metricName: `${this.name}_bucket`, labels: { target, le: i === e.buckets.length - 1 ? '+Inf' : String(2 ** i / 1000) }, value: acc });
      });
      values.push({ metricName: `${this.name}_sum`, labels: { target }, value: e.sumMs / 1000 });
      values.push({ metricName: `${this.name}_count`, labels: { target }, value: acc });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {}
}
