// Prometheus metrics (prom-client), main thread. Shard-side figures are pulled from every shard at
// scrape time and exported with a `shard` label; nothing is pushed per frame.
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import type { ShardStats } from '../shard/shard-core.js';

export type ExtraCollector = (m: Metrics) => Promise<void> | void;

export class Metrics {
  readonly registry = new Registry();
  readonly rejected: Counter<'reason'>;
  readonly audioBytesReceived: Counter;
  readonly socketsPaused: Gauge;
  readonly pendingMessageBytes: Gauge;
  readonly pausedRescues: Counter;
  readonly ringBytesUsed: Gauge<'shard'>;
  readonly sessionsActive: Gauge<'shard'>;
  readonly tasksActive: Gauge<'shard'>;
  readonly decodersActive: Gauge<'shard'>;
  readonly slotsLeased: Gauge<'shard'>;
  readonly shardHeap: Gauge<'shard'>;
  readonly latencyP99: Gauge<'shard'>;
  readonly framesReceived: Counter<'shard'>;
  readonly framesStored: Counter<'shard'>;
  readonly framesDecoded: Counter<'shard'>;
  readonly decodeErrors: Counter<'shard'>;
  readonly plcFrames: Counter<'shard'>;
  readonly leakedTasks: Counter<'shard'>;
  readonly shardRestarts: Counter<'shard'>;
  readonly spoolHeld: Gauge<'shard'>;
  readonly spoolOpenChunks: Gauge<'shard'>;
  readonly spoolSealBacklog: Gauge<'shard'>;
  readonly spoolOldestOpen: Gauge<'shard'>;
  readonly spoolJournal: Gauge<'shard'>;
  readonly spoolMaxCommit: Gauge<'shard'>;
  readonly spoolCommits: Counter<'shard'>;
  readonly spoolFsyncFailures: Counter<'shard'>;
  private readonly collectors: ExtraCollector[] = [];
  private readonly lastTotals = new RunningTotals();
  private readonly counterKeys = new Map<Counter<'shard'>, string>();
  private readonly collectShards: () => Promise<ShardStats[]>;
  private readonly perShard: () => { shard: number; ringBytes: number; slots: number }[];

  constructor(collectShards: () => Promise<ShardStats[]>, perShard: () => { shard: number; ringBytes: number; slots: number }[]) {
    const r = this.registry;
    collectDefaultMetrics({ register: r });
    this.rejected = new Counter({ name: 'pusher_rejected_total', help: 'Rejected handshakes and sessions closed for bad input, by reason', labelNames: ['reason'], registers: [r] });
    this.audioBytesReceived = new Counter({ name: 'pusher_audio_bytes_received_total', help: 'Audio payload bytes read from sockets', registers: [r] });
    this.socketsPaused = new Gauge({ name: 'pusher_sockets_paused', help: 'Sockets paused by backpressure (ring or spool full)', registers: [r] });
    this.pendingMessageBytes = new Gauge({
      name: 'pusher_pending_message_bytes',
      help: 'Bytes of messages read from sockets and waiting for ring space (their sockets are paused)',
      registers: [r],
    });
    this.pausedRescues = new Counter({
      name: 'pusher_paused_rescues_total',
      help: 'Paused sockets the 1 s sweep found with room in their ring and resumed itself: a lost drain notification (should stay 0)',
      registers: [r],
    });
    const g = (name: string, help: string) => new Gauge({ name, help, labelNames: ['shard'] as const, registers: [r] });
    this.ringBytesUsed = g('pusher_ring_bytes_used', 'Bytes in session rings not yet drained by the shard');
    this.sessionsActive = g('pusher_sessions_active', 'Open sessions');
    this.tasksActive = g('pusher_session_tasks_active', 'Live session tasks and timers');
    this.decodersActive = g('pusher_decoders_active', 'Live LC3 decoder states (sessions with a PCM consumer only)');
    this.slotsLeased = g('pusher_slots_leased', 'Ring slots leased to sessions');
    this.shardHeap = g('pusher_shard_heap_bytes', 'V8 heap used by each shard thread');
    this.latencyP99 = g('pusher_decode_latency_p99_seconds', 'p99 of arrival→decoded latency since start (power-of-two buckets)');
    this.spoolHeld = g('pusher_spool_held_bytes', 'Audio held in shard memory until its group commit and chunk write');
    this.spoolOpenChunks = g('pusher_spool_open_chunks', 'Spool chunks not yet sealed');
    this.spoolSealBacklog = g('pusher_spool_seal_backlog', 'Chunks waiting to be sealed (grows when sealing falls behind the disk)');
    this.spoolOldestOpen = g('pusher_spool_oldest_open_chunk_seconds', 'Age of the oldest unsealed chunk (its journal segment cannot be deleted)');
    this.spoolJournal = g('pusher_spool_journal_bytes', 'Bytes in the shard journal segments');
    this.spoolMaxCommit = g('pusher_spool_commit_max_seconds', 'Slowest group commit (journal write + fdatasync) since start');
    // Shard-side histogram: the shards count, the scrape copies their buckets (no per-frame observe()).
    // (The registry renders any object with name/help/type/get(); its typings only admit its own classes.)
    r.registerMetric(new ShardLatencyHistogram(() => this.lastShardStats) as unknown as Metric);
    // Shard counters are cumulative in the shard; re-set on every scrape from its totals.
    const c = (name: string, help: string) => {
      const ctr = new Counter({ name, help, labelNames: ['shard'] as const, registers: [r] });
      this.counterKeys.set(ctr, name);
      return ctr;
    };
    this.framesReceived = c('pusher_frames_received_total', 'LC3 frames that reached a shard');
    this.framesStored = c('pusher_frames_stored_total', 'LC3 frames handed to the durable spool (as sent, not decoded)');
    this.framesDecoded = c('pusher_frames_decoded_total', 'LC3 frames decoded (only for sessions with a PCM consumer)');
    this.decodeErrors = c('pusher_decode_errors_total', 'Corrupt LC3 frames (concealed)');
    this.plcFrames = c('pusher_plc_frames_total', 'Frames synthesised by packet-loss concealment');
    this.leakedTasks = c('pusher_session_tasks_leaked_total', 'Session tasks that ignored abort past the close grace');
    this.shardRestarts = c('pusher_shard_restarts_total', 'Shard workers restarted after a crash');
    this.spoolCommits = c('pusher_spool_commits_total', 'Group commits (one fdatasync each) of the shard journal');
    this.spoolFsyncFailures = c('pusher_spool_fsync_failures_total', 'Failed fdatasyncs or EIO writes of the journal or a chunk file (that file is given up)');
    this.collectShards = collectShards;
    this.perShard = perShard;
  }

  /** Shard figures of the latest scrape (for collectors that derive their own metrics). */
  lastShardStats: ShardStats[] = [];

  /** Audio bytes read since the last scrape: a plain add on the hot path, folded in at scrape. */
  pendingAudioBytes = 0;

  /** Pulls fresh figures from every shard, then renders the exposition text. */
  async render(): Promise<string> {
    if (this.pendingAudioBytes > 0) {
      this.audioBytesReceived.inc(this.pendingAudioBytes);
      this.pendingAudioBytes = 0;
    }
    await this.refresh(await this.collectShards(), this.perShard());
    return this.registry.metrics();
  }

  addCollector(c: ExtraCollector): void {
    this.collectors.push(c);
  }

  private async refresh(stats: ShardStats[], shards: { shard: number; ringBytes: number; slots: number }[]): Promise<void> {
    this.lastShardStats = stats;
    for (const s of shards) {
      const l = { shard: String(s.shard) };
      this.ringBytesUsed.set(l, s.ringBytes);
      this.slotsLeased.set(l, s.slots);
    }
    const setCounter = (ctr: Counter<'shard'>, shard: string, v: number) => {
      const delta = this.lastTotals.advance(`${this.counterKeys.get(ctr)}\0${shard}`, v);
      if (delta > 0) ctr.inc({ shard }, delta);
    };
    for (const s of stats) {
      const shard = String(s.shard);
      this.sessionsActive.set({ shard }, s.sessions);
      this.tasksActive.set({ shard }, s.tasks);
      this.decodersActive.set({ shard }, s.decoders);
      this.shardHeap.set({ shard }, s.heapUsed);
      this.latencyP99.set({ shard }, p99(s.latency) / 1000);
      setCounter(this.framesReceived, shard, s.framesReceived);
      setCounter(this.framesStored, shard, s.framesStored);
      setCounter(this.framesDecoded, shard, s.framesDecoded);
      setCounter(this.decodeErrors, shard, s.decodeErrors);
      setCounter(this.plcFrames, shard, s.plcFrames);
      setCounter(this.leakedTasks, shard, s.leakedTasks);
      if (s.spool) {
        this.spoolHeld.set({ shard }, s.spool.heldBytes);
        this.spoolOpenChunks.set({ shard }, s.spool.openChunks);
        this.spoolSealBacklog.set({ shard }, s.spool.sealBacklog);
        this.spoolOldestOpen.set({ shard }, s.spool.oldestOpenMs / 1000);
        this.spoolJournal.set({ shard }, s.spool.journalBytes);
        this.spoolMaxCommit.set({ shard }, s.spool.maxCommitMs / 1000);
        setCounter(this.spoolCommits, shard, s.spool.commits);
        setCounter(this.spoolFsyncFailures, shard, s.spool.fsyncFailures ?? 0);
      }
    }
    for (const c of this.collectors) await c(this);
  }
}

/**
 * `pusher_decode_latency_seconds{shard}`: a Prometheus histogram rendered from the shards'
 * power-of-two millisecond buckets (bucket i counts latencies < 2^i ms; the last one the rest).
 * prom-client's Histogram only takes observe() calls, one per value: this copies the counts.
 */
export class ShardLatencyHistogram {
  readonly name = 'pusher_decode_latency_seconds';
  readonly help = 'Latency from arrival on the main thread to handed to the spool (and decoded, for sessions with a PCM consumer)';
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  constructor(private readonly stats: () => ShardStats[]) {}

  get(): { name: string; help: string; type: string; aggregator: string; values: { metricName: string; labels: Record<string, string>; value: number }[] } {
    const values: { metricName: string; labels: Record<string, string>; value: number }[] = [];
    for (const s of this.stats()) {
      const shard = String(s.shard);
      let acc = 0;
      s.latency.forEach((n, i) => {
        acc += n;
        const le = i === s.latency.length - 1 ? '+Inf' : String(2 ** i / 1000);
        values.push({ metricName: `${this.name}_bucket`, labels: { shard, le }, value: acc });
      });
      values.push({ metricName: `${this.name}_sum`, labels: { shard }, value: s.latencySumMs / 1000 });
      values.push({ metricName: `${this.name}_count`, labels: { shard }, value: acc });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {}
}

/** Upper bound (ms) of the bucket holding the 99th percentile; bucket i is [2^(i-1), 2^i) ms. */
export function p99(buckets: number[]): number {
  const total = buckets.reduce((a, b) => a + b, 0);
  if (total === 0) return 0;
  let acc = 0;
  for (let i = 0; i < buckets.length; i++) {
    acc += buckets[i]!;
    if (acc >= total * 0.99) return 2 ** i;
  }
  /* c8 ignore next */
  return 2 ** buckets.length;
}

/**
 * Threads (shards, the uploader) report running totals; a Prometheus counter advances by the
 * difference since the last scrape. A restarted thread starts again from zero, and then
 * everything it reports is new.
 */
export class RunningTotals {
  private readonly last = new Map<string, number>();

  /** What the counter `key` advances by now that its thread reports `total`. */
  advance(key: string, total: number): number {
    const last = this.last.get(key) ?? 0;
    this.last.set(key, total);
    return total >= last ? total - last : total;
  }
}
