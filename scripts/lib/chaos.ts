// The chaos leak harness: starts the service as a child process, drives it through
// idle → warm-up → load → cooldown with the load generator (optionally with churn and abrupt
// kills), samples it every second (current RSS from /proc, heaps, sessions, tasks, decoders,
// rings, paused sockets, drops), fits the RSS slope over the post-warm-up load phase, checks that
// everything a session owned is gone once the clients are, and that no audio was lost (frames
// sent = received, and = stored when private cloud sync is on). Writes a JSON report
// and an SVG chart.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chunkSecondsOf, keptUpCheck } from './chaos-kept-up.js';
import { renderSvg, type ChartPhase } from './chart.js';
import { LoadGen, type Churn, type ClientGroup, type LoadStats } from './loadgen.js';
import { spawnLoadgen } from './loadgen-child.js';
import { metricBy, metricSum, type PromSample } from './prom.js';
import type { ProcStatus } from './proc.js';
import { startService } from './service.js';
import { startSink, sinkConfig } from './sink.js';
import { fitLine, fmtBytes, median, MiB } from './stats.js';
import { addCounts, auditSpool, auditStore, compareAudio, countFiles, type StoreTotals } from './store-audit.js';
import { allocatorEnv, jemallocPath, type Allocator } from '../../src/util/allocator.js';

export type Phase = 'idle' | 'warmup' | 'load' | 'cooldown';

export interface Sample {
  /** Seconds since the run started. */
  t: number;
  phase: Phase;
  /** Current RSS of the service process (VmRSS), bytes; NaN when unreadable. */
  rss: number;
  /** Its anonymous and shared-memory parts (RssAnon, RssShmem). */
  rssAnon: number;
  rssShmem: number;
  mainHeap: number;
  /** Main thread's external memory (Buffers, ArrayBuffers) per V8. */
  mainExternal: number;
  /** Sum over shards, and per shard. */
  shardHeap: number;
  shardHeaps: Record<string, number>;
  /** V8 heap committed, summed over every thread's isolate (NaN for builds without the metric). */
  heapsCommitted: number;
  sessions: number;
  tasks: number;
  decoders: number;
  slots: number;
  ringBytes: number;
  paused: number;
  queueDrops: number;
  /** Bytes held for webhooks and apps (pusher_queue_bytes): live memory, capped by QUEUE_MAX_BYTES. */
  queueBytes: number;
  spoolBytes: number;
  /** Sealed and open chunk files in the spool; objects uploaded so far. */
  spoolFiles: number;
  uploads: number;
  /** Spool chunks not yet sealed, those waiting for their seal, and the oldest one's age (s, max over shards). */
  openChunks: number;
  sealBacklog: number;
  oldestOpenS: number;
  framesReceived: number;
  audioBytesReceived: number;
  rejected: number;
  shardRestarts: number;
  /** Load generator: clients connected, messages written so far. */
  clients: number;
  messagesSent: number;
  /** Taken right after a forced full GC in every thread of the service (/debug/gc). */
  afterGc?: boolean;
}

const num = (v: number | undefined) => v ?? NaN;

/** One sample from a scrape, the service's RSS and the generator's live counts. */
export function sampleFrom(
  m: readonly PromSample[],
  mem: Pick<ProcStatus, 'rss' | 'rssAnon' | 'rssShmem'> | undefined,
  t: number,
  phase: Phase,
  load?: Pick<LoadStats, 'connected' | 'messages'>,
): Sample {
  return {
    t,
    phase,
    rss: num(mem?.rss),
    rssAnon: num(mem?.rssAnon),
    rssShmem: num(mem?.rssShmem),
    mainHeap: num(metricSum(m, 'nodejs_heap_size_used_bytes')),
    mainExternal: num(metricSum(m, 'nodejs_external_memory_bytes')),
    shardHeap: num(metricSum(m, 'pusher_shard_heap_bytes')),
    shardHeaps: metricBy(m, 'pusher_shard_heap_bytes', 'shard'),
    heapsCommitted: num(metricSum(m, 'pusher_heap_committed_bytes')),
    sessions: num(metricSum(m, 'pusher_sessions_active')),
    tasks: num(metricSum(m, 'pusher_session_tasks_active')),
    decoders: num(metricSum(m, 'pusher_decoders_active')),
    slots: num(metricSum(m, 'pusher_slots_leased')),
    ringBytes: num(metricSum(m, 'pusher_ring_bytes_used')),
    paused: num(metricSum(m, 'pusher_sockets_paused')),
    queueDrops: num(metricSum(m, 'pusher_queue_drops_total')),
    queueBytes: num(metricSum(m, 'pusher_queue_bytes')),
    spoolBytes: num(metricSum(m, 'pusher_spool_bytes')),
    spoolFiles: num(metricSum(m, 'pusher_spool_files')),
    uploads: num(metricSum(m, 'pusher_uploads_total')),
    openChunks: num(metricSum(m, 'pusher_spool_open_chunks')),
    sealBacklog: num(metricSum(m, 'pusher_spool_seal_backlog')),
    oldestOpenS: maxOf(Object.values(metricBy(m, 'pusher_spool_oldest_open_chunk_seconds', 'shard'))),
    framesReceived: num(metricSum(m, 'pusher_frames_received_total')),
    audioBytesReceived: num(metricSum(m, 'pusher_audio_bytes_received_total')),
    rejected: num(metricSum(m, 'pusher_rejected_total')),
    shardRestarts: num(metricSum(m, 'pusher_shard_restarts_total')),
    clients: load?.connected ?? 0,
    messagesSent: load?.messages ?? 0,
  };
}

export interface PhaseSpan {
  name: Phase;
  start: number;
  end: number;
}

export interface Figures {
  baselineRss: number;
  warmupPlateauRss: number;
  peakRss: number;
  finalRss: number;
  /** finalRss − warmupPlateauRss: what the load left behind. */
  growthAfterCooldown: number;
  growthVsBaseline: number;
  /** RSS slope over the post-warm-up load phase, MB (2^20 B) per minute, and its fit quality. */
  slopeMbPerMin: number;
  slopeR2: number;
  /** Standard error of the slope, MB/min (RSS is noisy: the check allows two of them). */
  slopeStdErr: number;
  slopeWindowS: number;
  /**
   * The same slope over the samples taken right after a forced full GC in every thread during
   * the load (ChaosOptions.gcEveryS): live memory, not garbage V8 has not collected yet (and the
   * heap it keeps committed until then). NaN with fewer than 3 such samples. The slope check
   * uses it when it exists.
   */
  liveSlopeMbPerMin: number;
  liveSlopeStdErr: number;
  liveSlopePoints: number;
  mainHeapSlopeMbPerMin: number;
  shardHeapSlopeMbPerMin: number;
  /** Where RSS growth is: anonymous memory, shared memory (the ring arenas), main-thread external memory. */
  rssAnonSlopeMbPerMin: number;
  rssShmemSlopeMbPerMin: number;
  mainExternalSlopeMbPerMin: number;
  /** The V8 heaps' committed size, every thread: RSS the JS heaps hold beyond their used part. */
  heapsCommittedSlopeMbPerMin: number;
  /** End of cooldown. */
  final: Pick<Sample, 'sessions' | 'tasks' | 'decoders' | 'slots' | 'ringBytes' | 'paused'>;
  /** Seconds after the load ended until sessions, tasks, decoders and slots were all zero (NaN: never). */
  secondsToZero: number;
  maxPaused: number;
  queueDrops: number;
  /** Plateau and final RSS were taken after forced full GCs (the service has /debug/gc). */
  forcedGc: boolean;
  /** The oldest open chunk's age over the load, s, and the seal backlog at its end (chaos-kept-up.ts). */
  maxOldestOpenS: number;
  sealBacklogAtEnd: number;
}

function inPhase(samples: readonly Sample[], phase: Phase): Sample[] {
  return samples.filter((s) => s.phase === phase && Number.isFinite(s.rss));
}

/** The fields of a sample that are one number (a slope can be fitted through any of them). */
type NumericField = { [K in keyof Sample]-?: Sample[K] extends number ? K : never }[keyof Sample];

function slope(samples: readonly Sample[], key: NumericField): { slope: number; r2: number; se: number } {
  const pts = samples.filter((s) => Number.isFinite(s[key]));
  const fit = fitLine(
    pts.map((s) => s.t / 60),
    pts.map((s) => s[key] / MiB),
  );
  return { slope: fit.slope, r2: fit.r2, se: fit.slopeStdErr };
}

function maxOf(xs: readonly number[]): number {
  const f = xs.filter(Number.isFinite);
  return f.length ? Math.max(...f) : NaN;
}

const zeroed = (s: Sample) => s.sessions === 0 && s.tasks === 0 && s.decoders === 0 && s.slots === 0;

/** The run's figures from its samples (pure). */
export function summarize(samples: readonly Sample[], phases: readonly PhaseSpan[]): Figures {
  const idle = inPhase(samples, 'idle');
  const warm = inPhase(samples, 'warmup');
  const loadAll = inPhase(samples, 'load');
  const load = loadAll.filter((x) => !x.afterGc);
  const loadGc = loadAll.filter((x) => x.afterGc);
  const cool = inPhase(samples, 'cooldown');
  const rss = (xs: readonly Sample[]) => xs.map((s) => s.rss);
  // The plateau: the sample after a forced GC at the end of the warm-up when the service offers
  // one, else the last third of the warm-up (at least one sample). Likewise the final RSS.
  const gcWarm = warm.filter((x) => x.afterGc);
  const gcCool = cool.filter((x) => x.afterGc);
  const plateau = gcWarm.length ? gcWarm : warm.slice(Math.min(warm.length - 1, Math.floor((warm.length * 2) / 3)));
  const finalRss = median(rss(gcCool.length ? gcCool : cool.slice(-3)));
  const warmupPlateauRss = median(rss(plateau));
  const baselineRss = median(rss(idle));
  const s = slope(load, 'rss');
  const live = loadGc.length >= 3 ? slope(loadGc, 'rss') : { slope: NaN, se: NaN };
  const last = samples.at(-1);
  const loadEnd = phases.find((p) => p.name === 'load')?.end ?? NaN;
  const firstZero = samples.find((x) => x.phase === 'cooldown' && zeroed(x));
  return {
    baselineRss,
    warmupPlateauRss,
    peakRss: maxOf(samples.map((x) => x.rss)),
    finalRss,
    growthAfterCooldown: finalRss - warmupPlateauRss,
    growthVsBaseline: finalRss - baselineRss,
    slopeMbPerMin: s.slope,
    slopeR2: s.r2,
    slopeStdErr: s.se,
    slopeWindowS: load.length > 1 ? load.at(-1)!.t - load[0]!.t : 0,
    liveSlopeMbPerMin: live.slope,
    liveSlopeStdErr: live.se,
    liveSlopePoints: loadGc.length,
    mainHeapSlopeMbPerMin: slope(load, 'mainHeap').slope,
    shardHeapSlopeMbPerMin: slope(load, 'shardHeap').slope,
    rssAnonSlopeMbPerMin: slope(load, 'rssAnon').slope,
    rssShmemSlopeMbPerMin: slope(load, 'rssShmem').slope,
    mainExternalSlopeMbPerMin: slope(load, 'mainExternal').slope,
    heapsCommittedSlopeMbPerMin: slope(load, 'heapsCommitted').slope,
    final: {
      sessions: num(last?.sessions),
      tasks: num(last?.tasks),
      decoders: num(last?.decoders),
      slots: num(last?.slots),
      ringBytes: num(last?.ringBytes),
      paused: num(last?.paused),
    },
    secondsToZero: firstZero && last && zeroed(last) ? firstZero.t - loadEnd : NaN,
    maxPaused: Math.max(0, ...samples.map((x) => x.paused).filter(Number.isFinite)),
    forcedGc: gcWarm.length > 0 && gcCool.length > 0,
    queueDrops: num(last?.queueDrops),
    maxOldestOpenS: maxOf(loadAll.map((x) => x.oldestOpenS)),
    sealBacklogAtEnd: num(loadAll.at(-1)?.sealBacklog),
  };
}

export interface Bounds {
  /** Largest acceptable RSS slope over the load phase, MB/min. */
  slopeMbPerMin: number;
  /** Largest acceptable RSS after cooldown above the warm-up plateau, MB. */
  cooldownGrowthMb: number;
}

export interface Check {
  name: string;
  ok: boolean;
  skipped?: boolean;
  detail: string;
}

export interface StoreResult {
  /** Why the frames-stored check did not run (sync off, nothing stored and no durable spool). */
  skipped?: string;
  /** Committed objects in the store. */
  totals?: StoreTotals;
  /** Sealed chunks still in the spool when the wait ended (durable, not yet uploaded). */
  spool?: StoreTotals;
  /** Chunks still open (not sealed) in the spool when the wait ended. */
  openChunks?: number;
  /** pusher_spool_bytes at the end, journal included (undefined: no such metric). */
  spoolBytes?: number | undefined;
  waitedS?: number;
}

export interface Outcome {
  figures: Figures;
  load: LoadStats;
  /** Final service counters. */
  framesReceived: number;
  audioBytesReceived: number;
  rejected: number;
  shardRestarts: number;
  /** The service stayed up through every sample, and its exit on SIGTERM. */
  crashed: boolean;
  exit: number | string;
  store: StoreResult;
  /** The service's CHUNK_SECONDS (default 60): the kept-up check's yardstick. */
  chunkSeconds?: number;
  /** The malloc the service was started on, and what its pusher_build_info says (undefined: no such metric). */
  allocator?: { requested: Allocator; reported: string | undefined };
}

const mb = (bytes: number) => `${(bytes / MiB).toFixed(1)} MB`;

/** The pass/fail checks of a run (pure). */
export function evaluate(o: Outcome, b: Bounds): Check[] {
  const f = o.figures;
  const l = o.load;
  const checks: Check[] = [];
  // Fails when the slope is above the bound with ~95% confidence: slope − 2·SE > bound. Live
  // memory (after forced GCs) when the run has it; otherwise raw RSS.
  const useLive = f.liveSlopePoints >= 3 && Number.isFinite(f.liveSlopeMbPerMin);
  const low = useLive ? f.liveSlopeMbPerMin - 2 * f.liveSlopeStdErr : f.slopeMbPerMin - 2 * f.slopeStdErr;
  const liveText = useLive ? `live RSS slope (after forced GCs, ${f.liveSlopePoints} points) ${f.liveSlopeMbPerMin.toFixed(2)} ± ${(2 * f.liveSlopeStdErr).toFixed(2)} MB/min; raw ` : '';
  const slopeText = `${liveText}RSS slope over the load phase ${f.slopeMbPerMin.toFixed(2)} ± ${(2 * f.slopeStdErr).toFixed(2)} MB/min (2 SE; r² ${f.slopeR2.toFixed(2)}, ${f.slopeWindowS.toFixed(0)} s window)`;
  checks.push(
    Number.isFinite(b.slopeMbPerMin)
      ? { name: 'rss-slope', ok: Number.isFinite(low) && low <= b.slopeMbPerMin, detail: `${slopeText}; bound ${b.slopeMbPerMin} MB/min` }
      : { name: 'rss-slope', ok: true, skipped: true, detail: `skipped (no bound: too short a run for a slope): ${slopeText}` },
  );
  checks.push({
    name: 'rss-after-cooldown',
    ok: Number.isFinite(f.growthAfterCooldown) && f.growthAfterCooldown <= b.cooldownGrowthMb * MiB,
    detail: `RSS after cooldown ${mb(f.finalRss)} vs warm-up plateau ${mb(f.warmupPlateauRss)}: ${f.growthAfterCooldown >= 0 ? '+' : ''}${mb(f.growthAfterCooldown)}; bound +${b.cooldownGrowthMb} MB`,
  });
  checks.push(keptUpCheck({ ...f, generatorLoopP99Ms: l.loopDelayP99Ms }, o.chunkSeconds ?? chunkSecondsOf(undefined)));
  const left = Object.entries(f.final).filter(([, v]) => v !== 0);
  checks.push({
    name: 'leftovers',
    ok: left.length === 0,
    detail: left.length
      ? `left after every client was gone: ${left.map(([k, v]) => `${k}=${v}`).join(', ')}`
      : `after every client was gone: 0 sessions, tasks, decoders, slots, ring bytes, paused sockets (zero ${Number.isFinite(f.secondsToZero) ? `${f.secondsToZero.toFixed(1)} s` : '?'} after the load ended)`,
  });
  const lost = (sent: number, unsure: number, got: number) => got > sent || got < sent - unsure;
  checks.push({
    name: 'frames-received',
    ok: !lost(l.lc3Frames, l.uncertain.frames, o.framesReceived),
    detail: `LC3 frames sent ${l.lc3Frames}, received ${o.framesReceived}${l.uncertain.frames ? ` (${l.uncertain.frames} uncertain: in our buffer at a kill)` : ''}`,
  });
  checks.push({
    name: 'audio-received',
    ok: !lost(l.audioBytes, l.uncertain.bytes, o.audioBytesReceived),
    detail: `audio bytes sent ${l.audioBytes}, received by the service ${o.audioBytesReceived}${l.uncertain.bytes ? ` (${l.uncertain.bytes} uncertain)` : ''}`,
  });
  if (o.store.skipped) {
    checks.push({ name: 'frames-stored', ok: true, skipped: true, detail: `skipped: ${o.store.skipped}` });
    checks.push({ name: 'uploads-drained', ok: true, skipped: true, detail: 'skipped: no durable audio to upload' });
  } else {
    // Nothing lost: every frame sent is in the store, or durable in the spool awaiting upload.
    const t = o.store.totals!;
    const sp = o.store.spool!;
    const c = compareAudio(l.perKey, l.uncertain.perKey, addCounts(t.perKey, sp.perKey));
    const problems = [...c.mismatches, ...t.errors, ...sp.errors];
    const spooled = Object.values(sp.perKey).reduce((a, x) => a + x.frames, 0);
    checks.push({
      name: 'frames-stored',
      ok: problems.length === 0,
      detail:
        `${c.keys} uid/conversation streams: sent ${c.sentFrames} frames/samples, ${c.storedFrames} durable ` +
        `(${c.storedFrames - spooled} in ${t.objects} store objects${t.uncommitted ? ` + ${t.uncommitted} uncommitted` : ''}, ${spooled} in ${sp.objects} sealed spool files)` +
        (problems.length ? `; ${problems.length} problem(s): ${problems.slice(0, 5).join('; ')}` : ''),
    });
    const waited = `${(o.store.waitedS ?? 0).toFixed(0)} s after the clients left`;
    const open = o.store.openChunks ?? 0;
    const drained = sp.objects === 0 && open === 0;
    checks.push({
      name: 'uploads-drained',
      ok: drained,
      detail: drained
        ? `every chunk sealed and uploaded ${waited}`
        : `upload backlog ${waited}: ${sp.objects} sealed files (${spooled} frames/samples) and ${open} open chunks still in the spool (pusher_spool_bytes ${o.store.spoolBytes ?? 'n/a'}, journal included)`,
    });
  }
  const closes = Object.entries(l.serverCloses);
  checks.push({
    name: 'no-server-closes',
    ok: closes.length === 0 && o.rejected === 0 && l.connectFailures === 0,
    detail:
      closes.length || o.rejected || l.connectFailures
        ? `closed by the server: ${closes.map(([c, n]) => `${c}×${n}${l.closeReasons[c] ? ` ("${l.closeReasons[c]}")` : ''}`).join(', ') || 'none'}; rejected ${o.rejected}; failed connects ${l.connectFailures}`
        : `no session closed by the server, no rejection, no failed connect (${l.connects} connects, ${l.closes} closes, ${l.kills} kills)`,
  });
  if (o.allocator) {
    const a = o.allocator;
    checks.push(
      a.reported === undefined
        ? { name: 'allocator', ok: true, skipped: true, detail: `started on ${a.requested}; this build has no pusher_build_info` }
        : { name: 'allocator', ok: a.reported === a.requested, detail: `started on ${a.requested}, pusher_build_info says ${a.reported}` },
    );
  }
  checks.push({
    name: 'service-healthy',
    ok: !o.crashed && o.shardRestarts === 0 && o.exit === 0,
    detail: `${o.crashed ? 'service died during the run; ' : ''}shard restarts ${o.shardRestarts}; exit on SIGTERM: ${o.exit}`,
  });
  return checks;
}

export interface ChaosOptions {
  name: string;
  groups: readonly ClientGroup[];
  churn?: Churn | undefined;
  idleS?: number;
  warmupS: number;
  loadS: number;
  cooldownS: number;
  rampS?: number;
  bounds: Bounds;
  /** LC3_PUSHER_TEST_FAULTS for the service. */
  faults?: string | undefined;
  /** Private cloud sync on (default) or off, via the service's settings file. */
  sync?: boolean;
  /** Service environment (SHARDS, SLOTS_PER_SHARD, RING_BYTES, …). */
  env?: Record<string, string>;
  /** Extra environment for every child process (the service and the load generator). */
  childEnv?: Record<string, string>;
  /** Node flags for the service, e.g. --max-old-space-size=48 (a small heap makes V8 collect early, so lazily collected garbage cannot pass for a leak). */
  serviceNodeArgs?: string[];
  /** Where the JSON report and SVG chart go. */
  outDir: string;
  /** How long to wait for sealed chunks to reach the store after the cooldown. */
  storeWaitS?: number;
  /** Run the load generator in its own process (node dist/scripts/loadgen.js; needs the build). */
  loadgenProcess?: boolean;
  /** Point webhooks, audio apps and conversation processing at a slow local sink (default true). */
  sinks?: boolean;
  /** The sink answers each request after a uniform random delay in this range, ms (default 0–2000). */
  sinkDelayMs?: readonly [number, number];
  /** Hard bound on the whole run, seconds: past it the service is killed (default: phases + store wait + 90 s). */
  deadlineS?: number;
  /** During the load, every this many seconds: a forced full GC in every thread, then a sample (default: defaultGcEvery; 0: never). */
  gcEveryS?: number;
  /** false: no forced GC at all, not even for the plateau and final figures (raw RSS, as an operator sees it). Default true. */
  forcedGc?: boolean;
  /** The service's malloc (default: what bin/lc3-pusher picks, jemalloc when installed). */
  allocator?: Allocator;
  log?: (line: string) => void;
}

export interface ChaosReport extends Outcome {
  name: string;
  /** What the slow consumer received (undefined when sinks were off). */
  sink: { requests: Record<string, number>; bytes: number } | undefined;
  options: Omit<ChaosOptions, 'log' | 'outDir'>;
  phases: PhaseSpan[];
  samples: Sample[];
  checks: Check[];
  passed: boolean;
  files: { json: string; svg: string; serviceLog: string };
}

const PHASE_COLORS: Record<Phase, string> = { idle: '#e6e6e6', warmup: '#ffe9a8', load: '#cfe5ff', cooldown: '#d4f2d4' };

export function chart(r: Pick<ChaosReport, 'name' | 'samples' | 'phases' | 'figures' | 'passed' | 'options' | 'checks'>): string {
  const regular = r.samples.filter((s) => !s.afterGc);
  const pts = (f: (s: Sample) => number, from: readonly Sample[] = regular) => from.map((s) => [s.t, f(s)] as const);
  const phases: ChartPhase[] = r.phases.map((p) => ({ name: p.name, start: p.start, end: p.end, color: PHASE_COLORS[p.name] }));
  const groups = r.options.groups.map((g) => `${g.workload}×${g.clients}`).join(' + ');
  const f = r.figures;
  return renderSvg({
    title: `lc3-pusher memory under load: ${r.name} (${groups})`,
    subtitle: `RSS slope ${f.slopeMbPerMin.toFixed(2)} MB/min over the load phase${Number.isFinite(f.liveSlopeMbPerMin) ? ` (after forced GCs ${f.liveSlopeMbPerMin.toFixed(2)})` : ''} · after cooldown ${f.growthAfterCooldown >= 0 ? '+' : ''}${(f.growthAfterCooldown / MiB).toFixed(1)} MB vs warm-up plateau · ${r.passed ? 'all checks passed' : `FAILED: ${r.checks.filter((c) => !c.ok).map((c) => c.name).join(', ')}`}`,
    xLabel: 'time since start (s)',
    leftLabel: 'MB',
    rightLabel: 'count',
    phases,
    series: [
      { name: 'RSS', axis: 'left', color: '#d62728', points: pts((s) => s.rss / MiB) },
      { name: 'RSS after a forced GC', axis: 'left', color: '#7f0000', dashed: true, points: pts((s) => s.rss / MiB, r.samples.filter((s) => s.afterGc)) },
      { name: 'main heap', axis: 'left', color: '#ff7f0e', dashed: true, points: pts((s) => s.mainHeap / MiB) },
      { name: 'shard heaps', axis: 'left', color: '#8c564b', dashed: true, points: pts((s) => s.shardHeap / MiB) },
      { name: 'sessions', axis: 'right', color: '#1f77b4', points: pts((s) => s.sessions) },
      { name: 'session tasks', axis: 'right', color: '#2ca02c', points: pts((s) => s.tasks) },
      { name: 'decoders', axis: 'right', color: '#9467bd', dashed: true, points: pts((s) => s.decoders) },
    ],
  });
}

export interface StoreWait {
  scrape: () => Promise<PromSample[]>;
  storeDir: string;
  spoolDir: string;
  load: Pick<LoadStats, 'perKey' | 'uncertain'>;
  sync: boolean;
  /** Give up after this long. */
  waitS: number;
  /** Done once nothing changed for this long, the spool is empty and nothing is half-uploaded. */
  settleMs?: number;
  pollMs?: number;
}

/**
 * Waits (bounded) until the store holds what was sent, or the spool is empty and the store stops
 * changing; then totals the store and what is still in the spool. The check is skipped with a
 * reason when sync is off, or when the store has nothing and the service exports no
 * durable-audio metric (a build without the spool).
 */
export async function waitForStore(w: StoreWait): Promise<StoreResult> {
  if (!w.sync) return { skipped: 'private cloud sync is off for this run (--sync off)' };
  const t0 = Date.now();
  let durableMetric = false;
  let totals: StoreTotals;
  let names: Set<string>;
  let spoolBytes: number | undefined;
  let openChunks = 0;
  let lastChange = Date.now();
  let lastKey = '';
  const pollMs = w.pollMs ?? 500;
  const settleMs = w.settleMs ?? 3000;
  for (;;) {
    const m = await w.scrape().catch(() => [] as PromSample[]);
    durableMetric ||= metricSum(m, 'pusher_audio_bytes_durable_total') !== undefined;
    spoolBytes = metricSum(m, 'pusher_spool_bytes');
    names = new Set<string>();
    totals = auditStore(w.storeDir, names);
    openChunks = countFiles(join(w.spoolDir, 'open'));
    const sealed = countFiles(join(w.spoolDir, 'sealed'));
    const key = `${totals.objects}/${totals.uncommitted}/${openChunks}/${sealed}`;
    if (key !== lastKey) {
      lastKey = key;
      lastChange = Date.now();
    }
    const complete = compareAudio(w.load.perKey, w.load.uncertain.perKey, totals.perKey).ok;
    // Nothing more will come: no chunk left in the spool, nothing half-uploaded, nothing changing.
    const quiet = Date.now() - lastChange >= settleMs && openChunks === 0 && sealed === 0 && totals.uncommitted === 0;
    if (complete || quiet || Date.now() - t0 >= w.waitS * 1000) break;
    await new Promise((r) => setTimeout(r, pollMs));
  }
  const waitedS = (Date.now() - t0) / 1000;
  const spool = auditSpool(w.spoolDir, names);
  if (totals.objects === 0 && totals.uncommitted === 0 && spool.objects === 0 && openChunks === 0 && !durableMetric) {
    return {
      skipped: `nothing under ${w.storeDir}/chunks and no pusher_audio_bytes_durable_total metric: this build has no durable spool/uploader, or private cloud sync is off`,
      waitedS,
    };
  }
  return { totals, spool, openChunks, spoolBytes, waitedS };
}

const ADMIN_TOKEN = 'chaos-admin';

/** Forced-GC samples during a load of `loadS` seconds: about six of them, 5 to 30 s apart. */
export function defaultGcEvery(loadS: number): number {
  return Math.max(5, Math.min(30, Math.floor(loadS / 6)));
}

/**
 * Asks the service for a full garbage collection in every thread (GET /debug/gc?thread=all with
 * the admin token). false when it cannot (no such endpoint in this build, or an error).
 */
export async function forceGc(baseUrl: string, token: string): Promise<boolean> {
  try {
    const res = await fetch(`${baseUrl}/debug/gc?thread=all`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(30000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

/** What the harness needs from a load generator, in this process or in its own. */
interface Generator {
  stats(): Pick<LoadStats, 'connected' | 'messages'>;
  stop(): Promise<LoadStats>;
  /** Why it is gone before it was stopped (its process exited), else undefined. */
  died?(): string | undefined;
}

/** `p`, or an error saying what was waited for once `seconds` have passed without it settling. */
export function withDeadline<T>(p: Promise<T>, seconds: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`gave up after ${seconds} s waiting for ${what}`)), seconds * 1000);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** The allocator label of pusher_build_info (undefined: a build without it). */
export function reportedAllocator(m: readonly PromSample[]): string | undefined {
  return m.find((s) => s.name === 'pusher_build_info')?.labels.allocator;
}

/** The command-line spelling of client groups (scripts/loadgen.ts --workload). */
export function groupsSpec(groups: readonly ClientGroup[]): string {
  return groups
    .map((g) => {
      if (g.uidPrefix !== undefined || g.conversation !== undefined) throw new Error('uidPrefix/conversation need the in-process load generator');
      const rate = g.rate === undefined ? '' : `@${Number.isFinite(g.rate) ? g.rate : 'max'}`;
      return `${g.workload}${g.ack ? '+ack' : ''}:${g.clients}${rate}`;
    })
    .join(',');
}

/** The load generator in its own process: its CPU and event loop stay out of the sampler's way. */
function childGenerator(port: number, groups: readonly ClientGroup[], churn: Churn | undefined, rampS: number, maxSeconds: number, env?: Record<string, string>): Generator {
  const args = ['--port', String(port), '--workload', groupsSpec(groups), '--seconds', String(maxSeconds), '--ramp', String(rampS)];
  if (churn) args.push('--churn', `${churn.minS}-${churn.maxS}`, '--kill', String(churn.killFraction));
  const child = spawnLoadgen(args, env);
  let stopping = false;
  let died: string | undefined;
  child.proc.once('exit', (code, signal) => {
    if (!stopping) died = `the load generator (pid ${child.pid}) exited (${code ?? signal}${code === 0 ? `: its --seconds ${maxSeconds} bound` : ''}) before the harness stopped it`;
  });
  let stopped: Promise<LoadStats> | undefined;
  return {
    stats: () => child.progress(),
    died: () => died,
    stop: () => {
      stopping = true;
      // Its clients close gracefully within ~6 s (LoadGen.stop); past 60 s it is stuck.
      stopped ??= died
        ? Promise.reject(new Error(died))
        : withDeadline(child.stop(), 60, `the load generator (pid ${child.pid}) to report its counts after SIGTERM`).catch((err: Error) => {
            child.proc.kill('SIGKILL');
            throw err;
          });
      return stopped;
    },
  };
}

/** One chaos run against a fresh service process. */
export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  const log = (line: string) => opts.log?.(line);
  const idleS = opts.idleS ?? 2;
  const sync = opts.sync ?? true;
  const storeWaitS = opts.storeWaitS ?? 60;
  const forcedGc = opts.forcedGc ?? true;
  const gcEveryS = forcedGc ? (opts.gcEveryS ?? defaultGcEvery(opts.loadS)) : 0;
  const alloc = allocatorEnv(opts.allocator);
  if (!opts.allocator && alloc.allocator === 'system') log('libjemalloc.so.2 not found: the service runs on glibc malloc, as bin/lc3-pusher would (apt-get install -y libjemalloc2)');
  mkdirSync(opts.outDir, { recursive: true });
  // Every consumer (webhooks, audio apps, conversation processing) points at a slow sink.
  const sink = opts.sinks === false ? undefined : await startSink(opts.sinkDelayMs);
  const consumers = sink ? sinkConfig(sink.url, sync) : { settings: { default: { private_cloud_sync: sync } }, env: {} };
  const svc = await startService({
    env: { ADMIN_TOKEN, ...consumers.env, ...alloc.env, ...opts.env, ...opts.childEnv },
    faults: opts.faults,
    settings: consumers.settings,
    nodeArgs: opts.serviceNodeArgs ?? [],
  }).catch(async (err: Error) => {
    await sink?.close();
    throw err;
  });
  const reported = reportedAllocator(await svc.scrape().catch(() => [] as PromSample[]));
  log(`service pid ${svc.pid} on ${svc.baseUrl}${opts.faults ? ` with test faults "${opts.faults}"` : ''}; data in ${svc.dir}`);
  log(`allocator: started on ${alloc.allocator}; the service reports ${reported ?? 'nothing (no pusher_build_info)'}`);
  // Hard bound for the whole run: phases + generous slack for start-up, drain and store waits.
  const budgetS = opts.deadlineS ?? idleS + opts.warmupS + opts.loadS + opts.cooldownS + storeWaitS + 90;
  const watchdog = setTimeout(() => {
    log(`run exceeded ${budgetS} s: killing the service`);
    svc.proc.kill('SIGKILL');
  }, budgetS * 1000);
  watchdog.unref();

  const samples: Sample[] = [];
  const phases: PhaseSpan[] = [];
  const t0 = performance.now();
  const now = () => (performance.now() - t0) / 1000;
  let crashed = false;
  let gen: Generator | undefined;
  const sample = async (phase: Phase) => {
    const t = now();
    const m = await svc.scrape().catch(() => [] as PromSample[]);
    // The generator starts right after the idle phase: no idle sample has one.
    const s = sampleFrom(m, svc.memory(), t, phase, phase === 'idle' ? undefined : gen!.stats());
    samples.push(s);
    return s;
  };
  const runPhase = async (name: Phase, seconds: number) => {
    const start = now();
    log(`${name} ${seconds} s`);
    let nextGc = gcEveryS;
    // One sample per whole second of the phase (late ones are skipped, not made up), and one at its end.
    for (let k = 0; ; k++) {
      if (!svc.alive()) {
        crashed = true;
        break;
      }
      const gone = gen?.died?.();
      if (gone) throw new Error(`${gone}, during the ${name} phase: the run is void`);
      const s = await sample(name);
      // During the load, now and then: live memory (a sample right after a full GC everywhere).
      if (name === 'load' && gcEveryS > 0 && s.t - start >= nextGc && s.t - start < seconds - 2) {
        nextGc += gcEveryS;
        if (await forceGc(svc.baseUrl, ADMIN_TOKEN)) {
          await new Promise((r) => setTimeout(r, 1000));
          (await sample(name)).afterGc = true;
        } else log(`  forced GC (GET /debug/gc, 30 s deadline) failed at t=${s.t.toFixed(0)}s: no live-memory sample`);
      }
      if (k % 5 === 0) {
        log(
          `  t=${s.t.toFixed(0)}s rss ${fmtBytes(s.rss)} sessions ${s.sessions} tasks ${s.tasks} decoders ${s.decoders} paused ${s.paused} clients ${s.clients} sent ${s.messagesSent}` +
            ` spool ${fmtBytes(s.spoolBytes)} in ${s.spoolFiles} files, ${s.uploads} uploaded;` +
            ` chunks open ${s.openChunks} (seal backlog ${s.sealBacklog}, oldest ${s.oldestOpenS.toFixed(0)} s); queues ${fmtBytes(s.queueBytes)}, ${s.queueDrops} dropped`,
        );
      }
      const elapsed = now() - start;
      if (elapsed >= seconds - 1e-3) break;
      const next = Math.min(seconds, Math.floor(elapsed) + 1);
      await new Promise((r) => setTimeout(r, (start + next - now()) * 1000));
    }
    // Plateau and final figures after a full GC, when the service can be asked for one:
    // otherwise lazily collected garbage looks like growth.
    const gc = forcedGc && (name === 'warmup' || name === 'cooldown') && !crashed && (await forceGc(svc.baseUrl, ADMIN_TOKEN));
    if (gc) {
      await new Promise((r) => setTimeout(r, 1000));
      const s = await sample(name);
      s.afterGc = true;
    } else if (forcedGc && (name === 'warmup' || name === 'cooldown') && !crashed) log(`  forced GC (GET /debug/gc, 30 s deadline) at the end of the ${name} failed: figures include garbage`);
    phases.push({ name, start, end: now() });
  };
  let load: LoadStats;
  try {
    await runPhase('idle', idleS);
    const rampS = opts.rampS ?? Math.min(2, opts.warmupS / 2);
    // Only a bound for a generator left behind: the harness stops it. Phases can take longer than
    // their seconds on a loaded machine (a forced GC or a scrape waits up to its deadline), so the
    // bound outlasts the run's whole budget (the watchdog ends the run first), not warm-up + load:
    // a generator that ends early voids the run.
    const maxSeconds = budgetS + 60;
    gen = opts.loadgenProcess
      ? childGenerator(svc.port, opts.groups, opts.churn, rampS, maxSeconds, opts.childEnv)
      : new LoadGen({ port: svc.port, groups: opts.groups, churn: opts.churn, rampS, maxSeconds }).start();
    if (!crashed) await runPhase('warmup', opts.warmupS);
    if (!crashed) await runPhase('load', opts.loadS);
    const stopping = gen.stop();
    stopping.catch(() => undefined); // awaited after the cooldown; a rejection meanwhile is not unhandled
    if (!crashed) await runPhase('cooldown', opts.cooldownS);
    load = await stopping;
  } catch (err) {
    // A load generator that died, or one that would not stop: do not leave a service behind.
    clearTimeout(watchdog);
    await gen?.stop().catch(() => undefined);
    await svc.stop();
    await sink?.close();
    throw err;
  }
  const m = await svc.scrape().catch(() => [] as PromSample[]);
  log(`waiting up to ${storeWaitS} s for the uploads`);
  const store = await waitForStore({ scrape: () => svc.scrape(), storeDir: svc.storeDir, spoolDir: svc.spoolDir, load, sync, waitS: storeWaitS });
  const exit = await svc.stop();
  clearTimeout(watchdog);
  await sink?.close();
  const figures = summarize(samples, phases);
  const outcome: Outcome = {
    figures,
    load,
    framesReceived: metricSum(m, 'pusher_frames_received_total') ?? 0,
    audioBytesReceived: metricSum(m, 'pusher_audio_bytes_received_total') ?? 0,
    rejected: metricSum(m, 'pusher_rejected_total') ?? 0,
    shardRestarts: metricSum(m, 'pusher_shard_restarts_total') ?? 0,
    crashed,
    exit,
    store,
    chunkSeconds: chunkSecondsOf(opts.env),
    allocator: { requested: alloc.allocator, reported },
  };
  const checks = evaluate(outcome, opts.bounds);
  const { log: _log, outDir: _out, ...options } = opts;
  const files = { json: join(opts.outDir, `${opts.name}.json`), svg: join(opts.outDir, `${opts.name}.svg`), serviceLog: svc.logFile };
  const report: ChaosReport = {
    name: opts.name,
    options,
    ...outcome,
    sink: sink ? { requests: { ...sink.requests }, bytes: sink.bytes } : undefined,
    phases,
    samples,
    checks,
    passed: checks.every((c) => c.ok),
    files,
  };
  writeFileSync(files.json, JSON.stringify(report, null, 1) + '\n');
  writeFileSync(files.svg, chart(report));
  return report;
}

/** Human-readable lines for a finished run. */
export function describe(r: ChaosReport): string[] {
  const f = r.figures;
  const l = r.load;
  const lines = [
    `== ${r.name}: ${r.passed ? 'PASS' : 'FAIL'}${f.forcedGc ? '' : ' (no forced GC: plateau and final RSS include uncollected garbage)'}`,
    `RSS: idle ${fmtBytes(f.baselineRss)}, warm-up plateau ${fmtBytes(f.warmupPlateauRss)}, peak ${fmtBytes(f.peakRss)}, after cooldown ${fmtBytes(f.finalRss)} (${f.growthAfterCooldown >= 0 ? '+' : ''}${fmtBytes(f.growthAfterCooldown)} vs plateau, ${f.growthVsBaseline >= 0 ? '+' : ''}${fmtBytes(f.growthVsBaseline)} vs idle)`,
    `slope over load: RSS ${f.slopeMbPerMin.toFixed(2)} ± ${(2 * f.slopeStdErr).toFixed(2)} MB/min (r² ${f.slopeR2.toFixed(2)}), after forced GCs ${f.liveSlopePoints >= 3 ? `${f.liveSlopeMbPerMin.toFixed(2)} ± ${(2 * f.liveSlopeStdErr).toFixed(2)} MB/min (${f.liveSlopePoints} points)` : 'n/a'}, main heap ${f.mainHeapSlopeMbPerMin.toFixed(2)} MB/min, shard heaps ${f.shardHeapSlopeMbPerMin.toFixed(2)} MB/min; RSS anon ${f.rssAnonSlopeMbPerMin.toFixed(2)}, shmem ${f.rssShmemSlopeMbPerMin.toFixed(2)}, main external ${f.mainExternalSlopeMbPerMin.toFixed(2)} MB/min, V8 heaps committed ${f.heapsCommittedSlopeMbPerMin.toFixed(2)} MB/min`,
    `load: ${l.clients} clients, ${l.connects} connects (${l.reconnects} reconnects), ${l.closes} closes, ${l.kills} kills; ${l.messages} messages, ${l.lc3Frames} LC3 frames, ${fmtBytes(l.audioBytes)} audio; ${l.replies} replies, ${l.acks.messages} acks; late ${l.lateMessages}, generator loop p99 ${l.loopDelayP99Ms.toFixed(1)} ms`,
  ];
  if (r.allocator) lines.push(`allocator: started on ${r.allocator.requested}; pusher_build_info says ${r.allocator.reported ?? 'n/a'}${r.options.forcedGc === false ? '; no forced GCs (raw RSS only)' : ''}`);
  if (r.sink) lines.push(`slow sink (webhooks, audio apps, conversation processing) received: ${JSON.stringify(r.sink.requests)}`);
  for (const c of r.checks) lines.push(`  [${c.skipped ? 'skip' : c.ok ? ' ok ' : 'FAIL'}] ${c.name}: ${c.detail}`);
  lines.push(`report ${r.files.json} · chart ${r.files.svg} · service log ${r.files.serviceLog}`);
  return lines;
}

export interface CiResult {
  ok: boolean;
  real: ChaosReport;
  control: ChaosReport;
  messages: string[];
}

/** The short CI mode's runs: the real service must pass every check; the positive control (leak_on_close) must be flagged. */
export function ciOptions(outDir: string, log?: (line: string) => void, childEnv: Record<string, string> = {}): { real: ChaosOptions; control: ChaosOptions } {
  const base: ChaosOptions = {
    name: 'ci-real',
    groups: [
      { workload: 'device', clients: 40 },
      { workload: 'device', clients: 4, ack: true, uidPrefix: 'acked' },
      { workload: 'omi-leak1', clients: 6 },
      { workload: 'omi-leak2', clients: 3 },
    ],
    churn: { minS: 2, maxS: 4, killFraction: 0.3 },
    idleS: 1,
    warmupS: 5,
    loadS: 6,
    cooldownS: 4,
    rampS: 1,
    // Seconds are too short for a slope (the soak measures slopes); growth after the cooldown
    // catches gross leaks, the leftover counts catch the rest.
    bounds: { slopeMbPerMin: Infinity, cooldownGrowthMb: 64 },
    env: { SHARDS: '2', SLOTS_PER_SHARD: '256' },
    childEnv,
    outDir,
    storeWaitS: 60,
    ...(log ? { log } : {}),
  };
  // The real run drives the service from a separate generator process; the control from this one
  // (both ways get exercised). The control's acked group uses a uid prefix, which only the
  // in-process generator supports.
  const real: ChaosOptions = { ...base, loadgenProcess: true, groups: base.groups.map((g) => ({ workload: g.workload, clients: g.clients, ...(g.ack ? { ack: true } : {}) })) };
  return { real, control: { ...base, name: 'ci-positive-control', faults: 'leak_on_close' } };
}

/**
 * CI verdict: every check of the real run passed, and the control's leftovers check failed; with
 * `defaultAllocator` (libjemalloc2 installed: 'jemalloc'), the real run's service reported it.
 */
export function ciVerdict(real: Pick<ChaosReport, 'checks' | 'allocator'>, control: Pick<ChaosReport, 'checks'>, defaultAllocator?: Allocator): { ok: boolean; messages: string[] } {
  const messages: string[] = [];
  if (defaultAllocator && real.allocator?.reported !== defaultAllocator) messages.push(`real service runs on ${real.allocator?.reported ?? 'an unreported allocator'}, not the default ${defaultAllocator}`);
  for (const c of real.checks) if (!c.ok) messages.push(`real service failed ${c.name}: ${c.detail}`);
  const flagged = control.checks.find((c) => c.name === 'leftovers');
  if (flagged?.ok !== false) messages.push(`positive control (leak_on_close) NOT flagged: ${flagged?.detail ?? 'no leftovers check'}`);
  return { ok: messages.length === 0, messages };
}

export async function runCi(outDir: string, log?: (line: string) => void, childEnv?: Record<string, string>): Promise<CiResult> {
  const o = ciOptions(outDir, log, childEnv);
  // Side by side: every check is about counts and memory of each service's own process, none about timing.
  const [real, control] = await Promise.all([runChaos(o.real), runChaos(o.control)]);
  return { ...ciVerdict(real, control, jemallocPath() ? 'jemalloc' : undefined), real, control };
}
