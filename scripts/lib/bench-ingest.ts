// Ingest benchmarks against the real service (a child process) with the load generator in a
// separate process:
//   blast     messages/s through the main thread: many clients writing 30-byte frames as fast as
//             backpressure allows; main-thread CPU from /proc/PID/task/PID/stat
//   memory    RSS per idle session: RSS before and after opening N idle device sessions
//   streams   the most concurrent real-time lc3_fs1030 streams (100 msgs/s each) with
//             arrival→stored p99 ≤ 50 ms, zero loss and the full rate taken in, found by stepping
//             the count; storage only (no PCM consumer: the shards store and do not decode), or
//             with `pcm` every session has an audio-bytes webhook to a local sink (decoded, batched
//             and POSTed as the Omi backend's pusher does)
// Figures, not pass/fail. The generator shares the machine's cores with the service; its CPU is
// measured and reported next to the service's. Every wait has a deadline and names what it waited
// for; a load generator that dies ends the run with an error (scripts/lib/loadgen-child.ts).
import { spawnLoadgen, type LoadgenChild } from './loadgen-child.js';
import { topFunctions, type CpuProfile, type HotFunction } from './cpuprofile.js';
import { histogramBuckets, metricBy, metricMax, metricSum, quantileBetween, type PromSample } from './prom.js';
import { readProcCpu, readThreadsCpu } from './proc.js';
import { startService, startupCollected, steadyRss, type ChildService } from './service.js';
import { nextStreams } from './steps.js';
import { startSink, type Sink } from './sink.js';
import { sleep, until } from './wait.js';

export interface IngestBenchOptions {
  quick: boolean;
  shards: number;
  blastClients: number;
  blastSeconds: number;
  idleSessions: number;
  stepSeconds: number;
  /** Explicit stream counts, or undefined for the doubling + bisection search. */
  streams?: number[];
  startStreams: number;
  maxStreams: number;
  resolution: number;
  maxSteps: number;
  /** p99 bound for a step to count as sustained, seconds. */
  p99Bound: number;
  profile: boolean;
  /** Private cloud sync (the durable spool) on for the measured sessions. */
  sync: boolean;
  /** Every session gets a PCM consumer: an audio-bytes webhook (every pcmSeconds) to a sink in this process. */
  pcm: boolean;
  pcmSeconds: number;
  /** The checkout whose build is measured (default: this one), e.g. a worktree of an earlier commit. */
  root?: string;
  /** Warm-up before a measured window (ms). */
  warmupMs: number;
  /** Deadline for every generator client to connect (ms); the blast's connects are spread over rampS. */
  connectTimeoutMs: number;
  rampS: number;
  log: (line: string) => void;
}

export function defaultIngestOptions(quick: boolean, log: (line: string) => void = () => {}): IngestBenchOptions {
  return {
    quick,
    shards: 2,
    blastClients: 200,
    blastSeconds: quick ? 5 : 10,
    idleSessions: quick ? 1000 : 2000,
    stepSeconds: quick ? 5 : 10,
    startStreams: quick ? 200 : 100,
    maxStreams: 4000,
    resolution: quick ? 200 : 100,
    maxSteps: quick ? 4 : 8,
    p99Bound: 0.05,
    profile: true,
    sync: true,
    pcm: false,
    pcmSeconds: 5,
    warmupMs: 2000,
    connectTimeoutMs: 60_000,
    rampS: 1,
    log,
  };
}

/** The CI smoke (seconds, not minutes): every benchmark runs once, small, to prove it finishes and prints. */
export function smokeIngestOptions(log: (line: string) => void = () => {}): IngestBenchOptions {
  return {
    ...defaultIngestOptions(true, log),
    blastClients: 20,
    blastSeconds: 1,
    idleSessions: 100,
    stepSeconds: 2,
    streams: [50],
    maxSteps: 1,
    profile: false,
    warmupMs: 500,
    connectTimeoutMs: 20_000,
    rampS: 0.2,
    pcmSeconds: 1, // the window is 2 s: the webhook must POST within it
  };
}

const settings = (o: IngestBenchOptions, sinkUrl?: string) => ({
  default: { private_cloud_sync: o.sync, ...(sinkUrl ? { audio_bytes_webhook: { url: `${sinkUrl}/audio-bytes`, seconds: o.pcmSeconds } } : {}) },
});
const ADMIN = 'bench-admin-token';

interface CpuMark {
  t: number;
  service: number;
  main: number;
  gen: number;
}

function cpuMark(svc: ChildService, gen: LoadgenChild | undefined): CpuMark {
  return {
    t: performance.now() / 1000,
    service: svc.cpuSeconds() ?? NaN,
    main: readThreadsCpu(svc.pid)[svc.pid] ?? NaN,
    gen: gen ? (readProcCpu(gen.pid) ?? NaN) : NaN,
  };
}

/** CPU use between two marks, in cores (1 = one core busy all the time). */
function cores(a: CpuMark, b: CpuMark): { service: number; main: number; gen: number; seconds: number } {
  const dt = b.t - a.t;
  return { service: (b.service - a.service) / dt, main: (b.main - a.main) / dt, gen: (b.gen - a.gen) / dt, seconds: dt };
}

async function profileThread(svc: ChildService, thread: string, seconds: number): Promise<{ top: HotFunction[]; idlePct: number } | undefined> {
  try {
    const res = await fetch(`${svc.baseUrl}/debug/profile?thread=${thread}&seconds=${seconds}`, {
      headers: { authorization: `Bearer ${ADMIN}` },
      signal: AbortSignal.timeout((seconds + 30) * 1000),
    });
    if (!res.ok) return undefined;
    return topFunctions((await res.json()) as CpuProfile, 12);
  } catch {
    return undefined;
  }
}

const sum = (m: readonly PromSample[], name: string) => metricSum(m, name) ?? 0;

/** LC3 frames that reached the shards; builds before pusher_frames_received_total decoded every frame. */
function framesIn(m: readonly PromSample[]): number {
  return metricSum(m, 'pusher_frames_received_total') ?? sum(m, 'pusher_frames_decoded_total');
}

/** Busy seconds of every shard thread so far (pusher_thread_busy_seconds_total{thread="shard-N"}). */
function shardBusySeconds(m: readonly PromSample[]): number {
  const shards = Object.entries(metricBy(m, 'pusher_thread_busy_seconds_total', 'thread')).filter(([thread]) => thread.startsWith('shard-'));
  return shards.length > 0 ? shards.reduce((n, [, v]) => n + v, 0) : NaN; // NaN: a build without the metric
}

export interface BlastResult {
  /** device = LC3 (stored as sent: no PCM consumer); device-pcm = the same 30-byte messages as PCM16. */
  workload: 'device' | 'device-pcm';
  clients: number;
  seconds: number;
  msgsPerSec: number;
  /** LC3 frames that reached the shards per second (pusher_frames_received_total). */
  framesPerSec: number;
  cores: { service: number; main: number; gen: number };
  /** Main-thread CPU per message, µs. */
  mainUsPerMsg: number;
  maxPaused: number;
  profileMain?: { top: HotFunction[]; idlePct: number } | undefined;
}

export async function blast(o: IngestBenchOptions, workload: 'device' | 'device-pcm' = 'device'): Promise<BlastResult> {
  o.log(`blast (${workload}): ${o.blastClients} clients writing 30-byte messages as fast as backpressure allows, ${o.blastSeconds} s`);
  const svc = await startService({ env: { SHARDS: String(o.shards), SLOTS_PER_SHARD: '1024', ADMIN_TOKEN: ADMIN }, settings: settings(o) });
  const gen = spawnLoadgen(['--port', String(svc.port), '--workload', `${workload}:${o.blastClients}@max`, '--seconds', String(o.blastSeconds + 30), '--ramp', String(o.rampS)]);
  try {
    await gen.waitConnected(o.connectTimeoutMs);
    o.log('  service up, clients connected');
    await gen.during(sleep(Math.min(1000, o.warmupMs)));
    const m0 = await svc.scrape();
    const c0 = cpuMark(svc, gen);
    let maxPaused = 0;
    for (let i = 0; i < o.blastSeconds; i++) {
      await gen.during(sleep(1000));
      maxPaused = Math.max(maxPaused, metricSum(await svc.scrape(), 'pusher_sockets_paused') ?? 0);
    }
    const m1 = await svc.scrape();
    const c1 = cpuMark(svc, gen);
    const cpu = cores(c0, c1);
    const msgs = (sum(m1, 'pusher_audio_bytes_received_total') - sum(m0, 'pusher_audio_bytes_received_total')) / 30;
    const frames = sum(m1, 'pusher_frames_received_total') - sum(m0, 'pusher_frames_received_total');
    const profileMain = o.profile ? await profileThread(svc, 'main', 5) : undefined;
    return {
      workload,
      clients: o.blastClients,
      seconds: cpu.seconds,
      msgsPerSec: msgs / cpu.seconds,
      framesPerSec: frames / cpu.seconds,
      cores: { service: cpu.service, main: cpu.main, gen: cpu.gen },
      mainUsPerMsg: (cpu.main * cpu.seconds * 1e6) / msgs,
      maxPaused,
      profileMain,
    };
  } finally {
    await gen.stop().catch(() => undefined);
    o.log('  generator stopped');
    await svc.stop();
    o.log('  service stopped');
  }
}

export interface MemoryResult {
  sessions: number;
  rssBefore: number;
  rssWith: number;
  rssAfter: number;
  bytesPerSession: number;
  mainHeapPerSession: number;
  shardHeapPerSession: number;
}

export async function idleMemory(o: IngestBenchOptions): Promise<MemoryResult> {
  const n = o.idleSessions;
  o.log(`memory: RSS of the service before and with ${n} idle device sessions`);
  const svc = await startService({ env: { SHARDS: String(o.shards), SLOTS_PER_SHARD: String(Math.ceil(n / o.shards) + 256) }, settings: settings(o) });
  let gen: LoadgenChild | undefined;
  try {
    o.log('  waiting for the start-up garbage to be collected (a full GC in every thread)');
    await startupCollected(svc);
    o.log('  collected; waiting for RSS to hold within 1 MiB for 3 s');
    const before = await steadyRss(svc);
    o.log(`  before: ${(before / 2 ** 20).toFixed(1)} MiB`);
    const m0 = await svc.scrape();
    const g = (gen = spawnLoadgen(['--port', String(svc.port), '--workload', `idle:${n}`, '--seconds', '300', '--ramp', String(Math.max(o.rampS, n / 1000))]));
    await g.waitConnected(o.connectTimeoutMs);
    let open = 0;
    await g.during(until(async () => (open = sum(await svc.scrape(), 'pusher_sessions_active')) >= n, 30000, `${n} idle sessions open in the service`, { last: () => `${open} open` }));
    o.log(`  ${n} sessions open; waiting for RSS to hold within 1 MiB for 3 s`);
    const withSessions = await g.during(steadyRss(svc));
    o.log(`  with them: ${(withSessions / 2 ** 20).toFixed(1)} MiB`);
    const m1 = await svc.scrape();
    await g.stop();
    gen = undefined;
    await until(async () => (open = sum(await svc.scrape(), 'pusher_sessions_active')) === 0, 30000, 'every idle session to close after the generator stopped', { last: () => `${open} open` });
    const after = await steadyRss(svc);
    return {
      sessions: n,
      rssBefore: before,
      rssWith: withSessions,
      rssAfter: after,
      bytesPerSession: (withSessions - before) / n,
      mainHeapPerSession: (sum(m1, 'nodejs_heap_size_used_bytes') - sum(m0, 'nodejs_heap_size_used_bytes')) / n,
      shardHeapPerSession: (sum(m1, 'pusher_shard_heap_bytes') - sum(m0, 'pusher_shard_heap_bytes')) / n,
    };
  } finally {
    await gen?.stop().catch(() => undefined);
    await svc.stop();
  }
}

export interface StepResult {
  n: number;
  /** Every criterion: throughput (zero loss, ≥ 98% of real time taken in) and p99 ≤ bound. */
  pass: boolean;
  /** Zero loss and ≥ 98% of real time taken in (the capacity search steps on this). */
  throughputOk: boolean;
  why: string[];
  /** Frames the shards took in during the window / nominal (n × 100 × seconds). */
  achieved: number;
  /** p99 arrival→stored (pusher_decode_latency_seconds), seconds, and how it was obtained. */
  p99: number;
  p99Source: 'bucket deltas' | 'since-start gauge';
  lost: number;
  sent: number;
  maxPaused: number;
  rss: number;
  cores: { service: number; main: number; gen: number };
  /** The measured window, seconds. */
  seconds: number;
  /** Main-thread CPU per message taken in, µs (one frame per message). */
  mainUsPerMsg: number;
  /** Shard threads' busy time (pusher_thread_busy_seconds_total, summed), cores, and per frame taken in, µs. */
  shardCores: number;
  shardUsPerFrame: number;
  /** With `pcm`: the sink's (this process's) CPU, cores, and audio-bytes requests it answered in the window. */
  sinkCores: number;
  sinkRequests: number;
  genLoopP99Ms: number;
  profile?: { main?: { top: HotFunction[]; idlePct: number } | undefined; shard0?: { top: HotFunction[]; idlePct: number } | undefined };
}

export async function streamStep(o: IngestBenchOptions, n: number, profile: boolean): Promise<StepResult> {
  const sink = o.pcm ? await startSink([0, 0]) : undefined;
  try {
    return await streamStepWith(o, n, profile, sink);
  } finally {
    await sink?.close();
  }
}

async function streamStepWith(o: IngestBenchOptions, n: number, profile: boolean, sink: Sink | undefined): Promise<StepResult> {
  const rampS = Math.max(o.rampS, Math.min(5, n / 300));
  const svc = await startService({
    env: { SHARDS: String(o.shards), SLOTS_PER_SHARD: String(Math.max(256, Math.ceil((n * 1.5) / o.shards))), ADMIN_TOKEN: ADMIN, ...(sink ? { WEBHOOK_ALLOW_PRIVATE: '1' } : {}) },
    settings: settings(o, sink?.url),
    ...(o.root ? { root: o.root } : {}),
  });
  const gen = spawnLoadgen(['--port', String(svc.port), '--workload', `device:${n}`, '--seconds', String(rampS + o.stepSeconds + 60), '--ramp', String(rampS)]);
  try {
    await gen.waitConnected(o.connectTimeoutMs);
    await gen.during(sleep(o.warmupMs));
    const m0 = await svc.scrape();
    const c0 = cpuMark(svc, gen);
    const s0 = { cpu: process.cpuUsage(), requests: sink?.requests['/audio-bytes'] ?? 0 };
    let maxPaused = 0;
    for (let i = 0; i < o.stepSeconds; i++) {
      await gen.during(sleep(1000));
      maxPaused = Math.max(maxPaused, metricSum(await svc.scrape(), 'pusher_sockets_paused') ?? 0);
    }
    const m1 = await svc.scrape();
    const c1 = cpuMark(svc, gen);
    const s1 = { cpu: process.cpuUsage(s0.cpu), requests: sink?.requests['/audio-bytes'] ?? 0 };
    const rss = svc.rss() ?? NaN;
    const prof = profile
      ? { main: await profileThread(svc, 'main', 5), shard0: await profileThread(svc, 'shard-0', 3) }
      : undefined;
    const load = await gen.stop();
    // The last frames reach the shards after the generator stopped: wait until every frame is in
    // or the count stops moving (then the difference is reported as lost), at most 10 s.
    let received = -1;
    const settleEnd = Date.now() + 10_000;
    for (;;) {
      const d = framesIn(await svc.scrape());
      const settled = d === load.lc3Frames || d === received;
      received = d;
      if (settled || Date.now() >= settleEnd) break;
      await sleep(200);
    }
    const cpu = cores(c0, c1);
    const window = framesIn(m1) - framesIn(m0);
    const shardBusy = shardBusySeconds(m1) - shardBusySeconds(m0);
    const achieved = window / (n * 100 * cpu.seconds);
    const b0 = histogramBuckets(m0, 'pusher_decode_latency_seconds');
    const b1 = histogramBuckets(m1, 'pusher_decode_latency_seconds');
    const fromBuckets = b1.length ? quantileBetween(b0, b1, 0.99) : undefined;
    const p99 = fromBuckets ?? metricMax(m1, 'pusher_decode_latency_p99_seconds') ?? NaN;
    const lost = load.lc3Frames - received;
    const why: string[] = [];
    if (lost !== 0) why.push(`${lost} frames lost`);
    if (achieved < 0.98) why.push(`only ${(achieved * 100).toFixed(1)}% of the real-time rate taken in`);
    const throughputOk = why.length === 0;
    if (!(p99 <= o.p99Bound)) why.push(`p99 ${(p99 * 1000).toFixed(0)} ms > ${o.p99Bound * 1000} ms`);
    if (Number.isNaN(c1.gen)) why.push('the load generator process ended early');
    return {
      n,
      pass: why.length === 0,
      throughputOk: throughputOk && !Number.isNaN(c1.gen),
      why,
      achieved,
      p99,
      p99Source: fromBuckets !== undefined ? 'bucket deltas' : 'since-start gauge',
      lost,
      sent: load.lc3Frames,
      maxPaused,
      rss,
      cores: { service: cpu.service, main: cpu.main, gen: cpu.gen },
      seconds: cpu.seconds,
      mainUsPerMsg: (cpu.main * cpu.seconds * 1e6) / window,
      shardCores: shardBusy / cpu.seconds,
      shardUsPerFrame: (shardBusy * 1e6) / window,
      sinkCores: sink ? (s1.cpu.user + s1.cpu.system) / 1e6 / cpu.seconds : 0,
      sinkRequests: s1.requests - s0.requests,
      genLoopP99Ms: load.loopDelayP99Ms,
      ...(prof ? { profile: prof } : {}),
    };
  } finally {
    await gen.stop().catch(() => undefined);
    await svc.stop();
  }
}

export interface StreamsResult {
  steps: StepResult[];
  /** Largest step meeting every criterion (p99 included). */
  maxSustained: number;
  /** Largest step with zero loss and the full real-time rate taken in, whatever its p99. */
  maxThroughput: number;
  /** The largest sustained step's service CPU, cores, and streams per service core. */
  serviceCores: number;
  streamsPerCore: number;
  /** RSS per stream under load at the largest sustained step (service RSS / streams). */
  profiled?: StepResult | undefined;
}

export async function streams(o: IngestBenchOptions): Promise<StreamsResult> {
  const steps: StepResult[] = [];
  const plan = o.streams ? [...o.streams] : undefined;
  for (let i = 0; i < o.maxSteps; i++) {
    // The search steps on throughput; p99 is judged per step (since-start gauge: see the report).
    const n = plan ? plan.shift() : nextStreams(steps.map((x) => ({ n: x.n, pass: x.throughputOk })), { start: o.startStreams, max: o.maxStreams, resolution: o.resolution });
    if (n === undefined) break;
    o.log(`streams: ${n} real-time lc3_fs1030 streams (100 msgs/s each), ${o.stepSeconds} s`);
    const r = await streamStep(o, n, false);
    o.log(
      `  ${r.pass ? 'sustained' : 'NOT sustained'}: took in ${(r.achieved * 100).toFixed(1)}% of real time, p99 ≤ ${(r.p99 * 1000).toFixed(0)} ms (${r.p99Source}), lost ${r.lost}, ` +
        `service ${r.cores.service.toFixed(2)} cores (main ${r.cores.main.toFixed(2)}), generator ${r.cores.gen.toFixed(2)} cores${r.why.length ? ` — ${r.why.join('; ')}` : ''}`,
    );
    steps.push(r);
  }
  const passed = steps.filter((s) => s.pass).sort((a, b) => b.n - a.n);
  const best = passed[0];
  const fast = steps.filter((s) => s.throughputOk).sort((a, b) => b.n - a.n)[0];
  const firstFail = steps.filter((s) => !s.throughputOk).sort((a, b) => a.n - b.n)[0];
  // Profile where it breaks (or the top step): that is where the bottleneck shows.
  let profiled: StepResult | undefined;
  if (o.profile) {
    const at = firstFail?.n ?? fast?.n;
    if (at !== undefined) {
      o.log(`profile: main thread and shard-0 at ${at} streams`);
      profiled = await streamStep(o, at, true);
    }
  }
  return {
    steps,
    maxSustained: best?.n ?? 0,
    maxThroughput: fast?.n ?? 0,
    // Per core at the largest throughput step (p99 is separate: see maxSustained).
    serviceCores: fast?.cores.service ?? NaN,
    streamsPerCore: fast ? fast.n / fast.cores.service : NaN,
    profiled,
  };
}
