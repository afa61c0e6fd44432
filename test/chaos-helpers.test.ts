// Unit tests of the chaos harness's pure helpers: slope fit, /proc parsing, metrics parsing,
// SVG chart, store audit, the run summary and its checks.
import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeLc3Header } from '../src/formats/lc3file.js';
import { encodeWav } from '../src/formats/wav.js';
import { axisRange, escapeXml, niceTicks, renderSvg } from '../scripts/lib/chart.js';
import {
  chart,
  ciOptions,
  ciVerdict,
  describe,
  evaluate,
  forceGc,
  groupsSpec,
  sampleFrom,
  defaultGcEvery,
  summarize,
  reportedAllocator,
  waitForStore,
  withDeadline,
  type ChaosReport,
  type Outcome,
  type PhaseSpan,
  type Sample,
} from '../scripts/lib/chaos.js';
import { chunkSecondsOf } from '../scripts/lib/chaos-kept-up.js';
import { topFunctions } from '../scripts/lib/cpuprofile.js';
import type { LoadStats } from '../scripts/lib/loadgen.js';
import { parseProcStat, parseProcStatus, readProcCpu, readProcStatus, readThreadsCpu } from '../scripts/lib/proc.js';
import { histogramBuckets, metricBy, metricMax, metricSum, parseMetrics, quantileBetween, scrape } from '../scripts/lib/prom.js';
import { fitLine, fmtBytes, mean, median, MiB, percentile, table } from '../scripts/lib/stats.js';
import { nextStreams } from '../scripts/lib/steps.js';
import { addCounts, auditStore, compareAudio, countFiles } from '../scripts/lib/store-audit.js';
import { createServer } from 'node:http';
import { sinkConfig, startSink } from '../scripts/lib/sink.js';
import { startupCollected, steadyRss, type ChildService } from '../scripts/lib/service.js';
import { allocatorEnv, jemallocPath } from '../src/util/allocator.js';
import { framesLost, markdownTable, soakPlan, soakRow } from '../scripts/soak-allocators.js';

t.test('least-squares slope', async (t) => {
  const f = fitLine([0, 1, 2, 3], [1, 3, 5, 7]);
  t.equal(f.slope, 2);
  t.equal(f.intercept, 1);
  t.equal(f.r2, 1);
  t.equal(f.n, 4);
  const noisy = fitLine([0, 1, 2, 3, 4], [10, 12, 9, 13, 11]);
  t.ok(noisy.r2 > 0 && noisy.r2 < 1, 'r² between 0 and 1 for noisy data');
  t.equal(f.slopeStdErr, 0, 'a perfect line: no error');
  t.ok(noisy.slopeStdErr > 0.3 && noisy.slopeStdErr < 1, `standard error of a noisy slope (${noisy.slopeStdErr})`);
  t.equal(fitLine([0, 1], [0, 5]).slopeStdErr, 0, 'two points: no error estimate');
  t.same(fitLine([], []), { slope: 0, intercept: 0, r2: 0, slopeStdErr: 0, n: 0 });
  t.same(fitLine([5, 5], [1, 3]), { slope: 0, intercept: 2, r2: 0, slopeStdErr: 0, n: 2 }, 'one distinct x: no slope');
  t.equal(fitLine([0, 1, 2], [4, 4, 4]).r2, 0, 'flat y: r² 0');
  t.throws(() => fitLine([1], []), /1 x values but 0 y values/);
});

t.test('mean, percentiles, formatting, tables', async (t) => {
  t.ok(Number.isNaN(mean([])));
  t.equal(mean([1, 2, 3]), 2);
  t.ok(Number.isNaN(percentile([], 50)));
  t.equal(median([5, 1, 3]), 3);
  t.equal(median([1, 2, 3, 4]), 2.5);
  t.equal(percentile([1, 2, 3, 4, 5], 100), 5);
  t.equal(percentile([1, 2, 3, 4, 5], 150), 5, 'clamped');
  t.equal(percentile([1, 2, 3, 4, 5], -5), 1, 'clamped');
  t.equal(fmtBytes(512), '512 B');
  t.equal(fmtBytes(2048), '2.0 KiB');
  t.equal(fmtBytes(3 * MiB), '3.0 MiB');
  t.equal(fmtBytes(-3 * MiB), '-3.0 MiB');
  t.equal(fmtBytes(2 ** 31), '2.00 GiB');
  t.equal(fmtBytes(NaN), 'NaN');
  t.equal(table([]), '');
  t.equal(table([['a', 'bb'], ['ccc', '1'], ['d'], []]), 'a    bb\n---  --\nccc   1\nd\n');
});

t.test('/proc parsing: current RSS (VmRSS), not the peak', async (t) => {
  const status = 'Name:\tnode\nVmPeak:\t 999 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nRssAnon:\t   90000 kB\nRssFile:\t 2400 kB\nRssShmem:\t 10000 kB\nThreads:\t11\nSigQ:\t0/1\n';
  t.same(parseProcStatus(status), { rss: 102400 * 1024, rssAnon: 90000 * 1024, rssFile: 2400 * 1024, rssShmem: 10000 * 1024, rssPeak: 204800 * 1024, threads: 11 });
  t.ok(Number.isNaN(parseProcStatus('Name:\tx\n').rss), 'missing VmRSS (a zombie) is NaN');
  // comm with spaces and parentheses; utime 250, stime 50 ticks.
  const stat = '1234 (node (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 11 0';
  t.equal(parseProcStat(stat).cpuSeconds, 3);
  t.equal(parseProcStat(stat, 50).cpuSeconds, 6);
  t.throws(() => parseProcStat('garbage'), /not a \/proc/);
  t.throws(() => parseProcStat('1 (x) S 1 2'), /not a \/proc/);
  const self = readProcStatus(process.pid)!;
  t.ok(self.rss > 1e6 && self.rss <= self.rssPeak, 'this process: RSS ≤ peak');
  t.ok(readProcCpu(process.pid)! > 0);
  const threads = readThreadsCpu(process.pid);
  t.ok(threads[process.pid]! >= 0, 'main thread tid = pid');
  t.equal(readProcStatus(2 ** 22 + 7), undefined, 'gone process');
  t.equal(readProcCpu(2 ** 22 + 7), undefined);
  t.same(readThreadsCpu(2 ** 22 + 7), {});
});

const EXPOSITION = `# HELP pusher_sessions_active Open sessions
# TYPE pusher_sessions_active gauge
pusher_sessions_active{shard="0"} 3
pusher_sessions_active{shard="1"} 4
nodejs_heap_size_used_bytes 1.5e6
pusher_rejected_total{reason="bad \\"x\\"\\\\y\\nz"} 2 1700000000000
weird_inf +Inf
weird_ninf -Inf
weird_nan NaN
not a metric line at all {
pusher_decode_latency_seconds_bucket{shard="0",le="0.001"} 10
pusher_decode_latency_seconds_bucket{shard="0",le="0.002"} 20
pusher_decode_latency_seconds_bucket{shard="0",le="+Inf"} 20
pusher_decode_latency_seconds_bucket{shard="1",le="0.001"} 0
pusher_decode_latency_seconds_bucket{shard="1",le="0.002"} 0
pusher_decode_latency_seconds_bucket{shard="1",le="+Inf"} 0
pusher_decode_latency_seconds_bucket{shard="1"} 99
`;

t.test('metrics parsing and queries', async (t) => {
  const m = parseMetrics(EXPOSITION);
  t.equal(metricSum(m, 'pusher_sessions_active'), 7);
  t.equal(metricSum(m, 'pusher_sessions_active', { shard: '1' }), 4);
  t.equal(metricSum(m, 'pusher_sessions_active', { shard: '9' }), undefined);
  t.equal(metricSum(m, 'absent'), undefined);
  t.equal(metricSum(m, 'nodejs_heap_size_used_bytes'), 1.5e6);
  t.same(m.find((s) => s.name === 'pusher_rejected_total')!.labels, { reason: 'bad "x"\\y\nz' }, 'escapes undone');
  t.same(metricBy(m, 'pusher_sessions_active', 'shard'), { '0': 3, '1': 4 });
  t.same(metricBy(m, 'nodejs_heap_size_used_bytes', 'shard'), { '': 1.5e6 });
  t.equal(metricMax(m, 'pusher_sessions_active'), 4);
  t.equal(metricMax(m, 'absent'), undefined);
  t.equal(metricSum(m, 'weird_inf'), Infinity);
  t.equal(metricSum(m, 'weird_ninf'), -Infinity);
  t.ok(Number.isNaN(metricSum(m, 'weird_nan')!));
  t.notOk(m.some((s) => s.name === 'not'), 'malformed line skipped');
  const after = histogramBuckets(m, 'pusher_decode_latency_seconds');
  t.same(after, [[0.001, 10], [0.002, 20], [Infinity, 20]], 'buckets summed over shards, sorted, le-less sample ignored');
  const before: [number, number][] = [[0.001, 5], [0.002, 5], [Infinity, 5]];
  // Between the scrapes: 5 observations ≤ 1 ms and 10 in (1, 2] ms.
  t.equal(quantileBetween(before, after, 0.99), 0.002);
  t.equal(quantileBetween(before, after, 0.2), 0.001);
  t.equal(quantileBetween([], after, 0.5), 0.001, 'no earlier scrape: everything counts');
  t.equal(quantileBetween(before, after, 0.5, true), 0.001 + (0.001 * (7.5 - 5)) / 10, 'interpolated inside the bucket');
  t.equal(quantileBetween([], [[1, 0], [2, 4]], 0.5, true), 1.5, 'empty lower bucket');
  t.equal(quantileBetween([], [[Infinity, 3]], 0.5, true), Infinity, 'no interpolation into +Inf');
  t.equal(quantileBetween(after, after, 0.99), undefined, 'nothing observed');
  t.equal(quantileBetween([], [], 0.99), undefined);
});

t.test('scrape over HTTP', async (t) => {
  let status = 200;
  const srv = createServer((_req, res) => {
    if (status === 0) return; // never answers
    res.writeHead(status);
    res.end('x_total 5\n');
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  const base = `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
  t.same(await scrape(base), [{ name: 'x_total', labels: {}, value: 5 }]);
  status = 500;
  await t.rejects(scrape(base), /HTTP 500/);
  status = 0;
  await t.rejects(scrape(base, 100), { message: `GET ${base}/metrics: no answer within 100 ms` }, 'a timeout says what it waited for');
  srv.closeAllConnections();
});

t.test('SVG chart', async (t) => {
  t.same(niceTicks(0, 10, 5), [0, 2, 4, 6, 8, 10]);
  t.same(niceTicks(0, 1, 4), [0, 0.5, 1]);
  t.same(niceTicks(3, 3), [3], 'empty range');
  t.same(niceTicks(0, 95, 5), [0, 20, 40, 60, 80]);
  t.same(axisRange([]), [0, 1]);
  t.same(axisRange([NaN]), [0, 1]);
  t.same(axisRange([0, 0]), [0, 1]);
  t.same(axisRange([12, 95]), [0, 100]);
  t.same(axisRange([-5, 5]), [-5, 6]);
  t.equal(escapeXml(`<a & "b" 'c'>`), '&lt;a &amp; &quot;b&quot; &apos;c&apos;&gt;');
  const svg = renderSvg({
    title: 'RSS <test>',
    subtitle: 'sub & title',
    xLabel: 'time (s)',
    leftLabel: 'MB',
    rightLabel: 'count',
    phases: [{ name: 'load', start: 1, end: 3, color: '#cfe5ff' }],
    series: [
      { name: 'RSS', axis: 'left', color: 'red', points: [[0, 80], [1, 82], [2, NaN], [3, 81]] },
      { name: 'tasks', axis: 'right', color: 'green', dashed: true, points: [[0, 0], [3, 12000]] },
      { name: 'empty', axis: 'left', color: 'blue', points: [] },
    ],
  });
  t.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  t.match(svg, /RSS &lt;test&gt;/);
  t.match(svg, /sub &amp; title/);
  t.match(svg, /<path d="M[^"]*L[^"]* M/, 'a NaN breaks the line into two pieces');
  t.match(svg, /stroke-dasharray/);
  t.match(svg, />1\.5e\+4</, 'large ticks in exponent notation');
  t.match(svg, />count</, 'right axis label');
  t.match(svg, /<\/svg>\n$/);
  const bare = renderSvg({ title: 'x', xLabel: 'x', leftLabel: 'y', series: [{ name: 's', axis: 'right', color: 'red', points: [[5, 1]] }] });
  t.match(bare, /\(right axis\)/, 'legend names the right axis even without a label');
  t.notMatch(bare, /rotate\(90/, 'no right axis label when none given');
  t.match(renderSvg({ title: 'x', xLabel: 'x', leftLabel: 'y', series: [] }), /<\/svg>/, 'no data at all');
});

t.test('CPU profile summary', async (t) => {
  const p = {
    nodes: [
      { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1 } },
      { id: 2, callFrame: { functionName: '(idle)', url: '', lineNumber: -1 } },
      { id: 3, callFrame: { functionName: 'push', url: 'file:///x/dist/src/server/connection.js', lineNumber: 9 } },
      { id: 4, callFrame: { functionName: '', url: 'file:///x/a.js', lineNumber: 0 } },
    ],
    samples: [2, 3, 3, 4, 99],
    timeDeltas: [1000, 1000, 1000, 1000],
  };
  const r = topFunctions(p, 5);
  t.equal(r.totalMs, 4);
  t.equal(r.idlePct, 25);
  t.same(r.top[0], { name: 'push server/connection.js:10', selfPct: 50 });
  t.same(r.top[1], { name: '(anonymous) x/a.js:1', selfPct: 25 });
  t.same(r.top[2], { name: '(anonymous)', selfPct: 0 }, 'unknown node id, no time delta');
  t.same(topFunctions({ nodes: [], samples: [], timeDeltas: [] }), { top: [], idlePct: 0, totalMs: 0 });
});

t.test('capacity search: doubling, then bisection', async (t) => {
  const o = { start: 100, max: 1600, resolution: 100 };
  t.equal(nextStreams([], o), 100);
  t.equal(nextStreams([{ n: 100, pass: true }], o), 200);
  t.equal(nextStreams([{ n: 1600, pass: true }], o), undefined, 'max reached');
  t.equal(nextStreams([{ n: 1000, pass: true }], o), 1600, 'capped at max');
  t.equal(nextStreams([{ n: 400, pass: true }, { n: 800, pass: false }], o), 600);
  t.equal(nextStreams([{ n: 600, pass: true }, { n: 800, pass: false }], o), 700);
  t.equal(nextStreams([{ n: 600, pass: true }, { n: 700, pass: false }], o), undefined, 'resolution reached');
  t.equal(nextStreams([{ n: 100, pass: false }], o), undefined, 'first step fails at the resolution');
  t.equal(nextStreams([{ n: 400, pass: false }], o), 200, 'first step fails: bisect down from it');
  t.equal(nextStreams([{ n: 200, pass: true }, { n: 301, pass: false }], o), 300, 'rounded to the resolution, strictly inside');
});

function lc3Object(frames: number, frameBytes = 30): Buffer {
  const head = writeLc3Header({ frameUs: 10000, sampleRate: 16000, bitrate: 24000, channels: 1, nsamples: frames * 160 });
  const body = Buffer.alloc(frames * (2 + frameBytes));
  for (let i = 0; i < frames; i++) body.writeUInt16LE(frameBytes, i * (2 + frameBytes));
  return Buffer.concat([head, body]);
}

function plantStore(dir: string): void {
  const put = (rel: string, data: Buffer, committed = true) => {
    mkdirSync(join(dir, 'chunks', ...rel.split('/').slice(0, -1)), { recursive: true });
    writeFileSync(join(dir, 'chunks', rel), data);
    if (committed) writeFileSync(join(dir, 'chunks', `${rel}.meta.json`), '{}');
  };
  put('dev0/_/1700000000.000.lc3', lc3Object(100));
  put('dev0/_/1700000060.000.lc3', lc3Object(50));
  put('dev1/_/1700000000.000.lc3', lc3Object(7));
  put('omi0/conv-omi0/1700000000.000.wav', encodeWav(8000, 1, new Int16Array(8000)));
  put('dev1/_/1700000099.000.lc3', lc3Object(3), false);
  put('dev1/_/.1700000099.000.lc3.abc.tmp', Buffer.from('partial'), false);
  put('dev1/_/notes.txt', Buffer.from('x'));
  put('dev2/_/1700000000.000.lc3', Buffer.from('not an lc3 file at all, definitely'));
  mkdirSync(join(dir, 'chunks', '.hidden'), { recursive: true });
}

t.test('store audit: frames per uid/conversation, committed objects only', async (t) => {
  const dir = t.testdir();
  t.same(auditStore(dir), { objects: 0, uncommitted: 0, perKey: {}, errors: [] }, 'no chunks/ directory: empty');
  plantStore(dir);
  const a = auditStore(dir);
  t.equal(a.objects, 4);
  t.equal(a.uncommitted, 1);
  t.same(a.perKey['dev0/_'], { kind: 'lc3', frames: 150, bytes: 4500 });
  t.same(a.perKey['dev1/_'], { kind: 'lc3', frames: 7, bytes: 210 });
  t.same(a.perKey['omi0/conv-omi0'], { kind: 'pcm', frames: 8000, bytes: 16000 });
  t.equal(a.errors.length, 1);
  t.match(a.errors[0], /chunks\/dev2\/_\/1700000000\.000\.lc3: not an \.lc3 file/);
});

t.test('sent vs stored comparison', async (t) => {
  const sent = { 'a/_': { kind: 'lc3' as const, frames: 100, bytes: 3000 }, 'b/c': { kind: 'pcm' as const, frames: 8000, bytes: 16000 } };
  t.same(compareAudio(sent, {}, sent), { ok: true, keys: 2, sentFrames: 8100, storedFrames: 8100, mismatches: [] });
  const lossy = compareAudio(sent, {}, { 'a/_': { kind: 'lc3', frames: 90, bytes: 2700 } });
  t.notOk(lossy.ok);
  t.same(lossy.mismatches, ['a/_: sent 100 frames, stored 90 (lost 10)', 'b/c: sent 8000 samples, stored 0 (lost 8000)']);
  const unsure = { 'a/_': { kind: 'lc3' as const, frames: 5, bytes: 150 } };
  t.ok(compareAudio({ 'a/_': sent['a/_'] }, unsure, { 'a/_': { kind: 'lc3', frames: 95, bytes: 2850 } }).ok, 'within the uncertain margin');
  t.same(compareAudio({ 'a/_': sent['a/_'] }, unsure, { 'a/_': { kind: 'lc3', frames: 94, bytes: 2820 } }).mismatches, ['a/_: sent 100 frames, stored 94 (lost 1; 5 more uncertain)']);
  t.same(compareAudio({}, {}, { 'x/_': { kind: 'lc3', frames: 3, bytes: 90 } }).mismatches, ['x/_: stored 3 frames, sent only 0 (+3)'], 'stored more than sent (duplicates)');
});

function sample(t: number, phase: Sample['phase'], rssMb: number, over: Partial<Sample> = {}): Sample {
  return {
    t,
    phase,
    rss: rssMb * MiB,
    rssAnon: rssMb * MiB - 8 * MiB,
    rssShmem: 0,
    mainHeap: 10 * MiB,
    mainExternal: 2 * MiB,
    shardHeap: 20 * MiB,
    shardHeaps: { '0': 10 * MiB, '1': 10 * MiB },
    heapsCommitted: 60 * MiB,
    sessions: phase === 'load' || phase === 'warmup' ? 10 : 0,
    tasks: 0,
    decoders: 0,
    slots: 0,
    ringBytes: 0,
    paused: 0,
    queueDrops: NaN,
    queueBytes: NaN,
    spoolBytes: NaN,
    spoolFiles: NaN,
    uploads: NaN,
    openChunks: NaN,
    sealBacklog: NaN,
    oldestOpenS: NaN,
    framesReceived: 0,
    audioBytesReceived: 0,
    rejected: 0,
    shardRestarts: 0,
    clients: 0,
    messagesSent: 0,
    ...over,
  };
}

function run(): { samples: Sample[]; phases: PhaseSpan[] } {
  const samples: Sample[] = [];
  for (let i = 0; i < 3; i++) samples.push(sample(i, 'idle', 80));
  for (let i = 3; i < 9; i++) samples.push(sample(i, 'warmup', 80 + (i - 3) * 4));
  // A service that keeps up: the oldest open chunk saw-tooths below CHUNK_SECONDS (60) plus its seal.
  for (let i = 9; i < 69; i++) samples.push(sample(i, 'load', 100 + (i - 9) / 60, { paused: i === 20 ? 3 : 0, oldestOpenS: 40 + (i % 30), sealBacklog: i % 4 }));
  samples.push(sample(69, 'cooldown', 101, { sessions: 2 }));
  for (let i = 70; i < 75; i++) samples.push(sample(i, 'cooldown', 101));
  return {
    samples,
    phases: [
      { name: 'idle', start: 0, end: 3 },
      { name: 'warmup', start: 3, end: 9 },
      { name: 'load', start: 9, end: 69 },
      { name: 'cooldown', start: 69, end: 75 },
    ],
  };
}

function loadStats(over: Partial<LoadStats> = {}): LoadStats {
  return {
    elapsedS: 60,
    clients: 10,
    connected: 0,
    connects: 12,
    reconnects: 2,
    connectFailures: 0,
    closes: 10,
    kills: 2,
    serverCloses: {},
    closeReasons: {},
    errors: {},
    messages: 6000,
    controlMessages: 0,
    lc3Frames: 6000,
    pcmBytes: 0,
    audioBytes: 180000,
    perKey: { 'dev0/_': { kind: 'lc3', frames: 6000, bytes: 180000 } },
    uncertain: { frames: 0, bytes: 0, perKey: {} },
    acks: { messages: 0, frames: 0 },
    replies: 0,
    lateMessages: 0,
    blockedTicks: 0,
    loopDelayP99Ms: 1.5,
    loopDelayMaxMs: 3,
    ...over,
  };
}

t.test('summary of a run: plateau, slope, final counts', async (t) => {
  const { samples, phases } = run();
  const f = summarize(samples, phases);
  t.equal(f.baselineRss, 80 * MiB);
  t.equal(f.warmupPlateauRss, 98 * MiB, 'median of the last third of the warm-up');
  t.ok(Math.abs(f.slopeMbPerMin - 1) < 1e-9, `slope 1 MB/min (got ${f.slopeMbPerMin})`);
  t.ok(f.slopeR2 > 0.99);
  t.equal(f.slopeWindowS, 59);
  t.equal(f.finalRss, 101 * MiB);
  t.equal(f.growthAfterCooldown, 3 * MiB);
  t.equal(f.growthVsBaseline, 21 * MiB);
  t.ok(f.peakRss >= 100.98 * MiB);
  t.equal(f.secondsToZero, 1, 'first all-zero cooldown sample, after the load ended');
  t.equal(f.maxPaused, 3);
  t.ok(Number.isNaN(f.queueDrops));
  t.same(f.final, { sessions: 0, tasks: 0, decoders: 0, slots: 0, ringBytes: 0, paused: 0 });
  t.equal(f.forcedGc, false);
  // With forced-GC samples, plateau and final RSS come from them.
  const gc = [...samples];
  gc.splice(9, 0, sample(8.5, 'warmup', 90, { afterGc: true }));
  gc.push(sample(75, 'cooldown', 92, { afterGc: true }));
  const g = summarize(gc, phases);
  t.equal(g.forcedGc, true);
  t.equal(g.warmupPlateauRss, 90 * MiB);
  t.equal(g.finalRss, 92 * MiB);
  t.equal(g.growthAfterCooldown, 2 * MiB);
  t.ok(Number.isNaN(g.liveSlopeMbPerMin), 'no forced GC during the load: no live slope');
  // Forced GCs during the load (garbage collected: flat), between regular samples that climb.
  const live = [...samples];
  for (const at of [20.5, 40.5, 60.5]) live.push(sample(at, 'load', 95, { afterGc: true }));
  live.sort((a, b) => a.t - b.t);
  const l = summarize(live, phases);
  t.equal(l.liveSlopePoints, 3);
  t.ok(Math.abs(l.liveSlopeMbPerMin) < 1e-9, 'live slope from the forced-GC samples only');
  t.ok(Math.abs(l.slopeMbPerMin - 1) < 1e-9, 'the raw slope leaves them out');
  const leaky = samples.map((s) => (s.phase === 'cooldown' ? { ...s, decoders: 5 } : s));
  t.ok(Number.isNaN(summarize(leaky, phases).secondsToZero), 'never back to zero');
  const empty = summarize([], []);
  t.ok(Number.isNaN(empty.peakRss) && Number.isNaN(empty.final.sessions) && Number.isNaN(empty.secondsToZero));
  t.equal(empty.slopeWindowS, 0);
});

t.test('forced-GC samples: about six per load, 5 to 30 s apart', async (t) => {
  t.same([10, 60, 120, 600, 3600].map(defaultGcEvery), [5, 10, 20, 30, 30]);
});

t.test('sampleFrom: one scrape → one sample', async (t) => {
  const m = parseMetrics(`pusher_sessions_active{shard="0"} 2
pusher_sessions_active{shard="1"} 3
pusher_shard_heap_bytes{shard="0"} 100
pusher_shard_heap_bytes{shard="1"} 200
pusher_heap_committed_bytes{thread="main"} 70
pusher_heap_committed_bytes{thread="shard-0"} 400
nodejs_heap_size_used_bytes 50
pusher_session_tasks_active{shard="0"} 1
pusher_spool_open_chunks{shard="0"} 4
pusher_spool_open_chunks{shard="1"} 6
pusher_spool_seal_backlog{shard="1"} 2
pusher_spool_oldest_open_chunk_seconds{shard="0"} 12.5
pusher_spool_oldest_open_chunk_seconds{shard="1"} 61
`);
  const s = sampleFrom(m, { rss: 1234, rssAnon: 1000, rssShmem: 34 }, 7, 'load', { connected: 4, messages: 99 });
  t.equal(s.sessions, 5);
  t.equal(s.shardHeap, 300);
  t.same(s.shardHeaps, { '0': 100, '1': 200 });
  t.equal(s.heapsCommitted, 470, 'committed heap summed over the threads');
  t.equal(s.mainHeap, 50);
  t.equal(s.tasks, 1);
  t.equal(s.rss, 1234);
  t.equal(s.rssAnon, 1000);
  t.equal(s.rssShmem, 34);
  t.equal(s.clients, 4);
  t.equal(s.messagesSent, 99);
  t.ok(Number.isNaN(s.decoders), 'absent metric: NaN');
  t.match(s, { openChunks: 10, sealBacklog: 2, oldestOpenS: 61 }, 'the oldest chunk over all shards');
  const bare = sampleFrom([], undefined, 0, 'idle');
  t.ok(Number.isNaN(bare.rss));
  t.equal(bare.clients, 0);
  t.ok(Number.isNaN(bare.oldestOpenS));
});

const bounds = { slopeMbPerMin: 2, cooldownGrowthMb: 30 };

function outcome(over: Partial<Outcome> = {}): Outcome {
  const { samples, phases } = run();
  return {
    figures: summarize(samples, phases),
    load: loadStats(),
    framesReceived: 6000,
    audioBytesReceived: 180000,
    rejected: 0,
    shardRestarts: 0,
    crashed: false,
    exit: 0,
    store: { skipped: 'no spool in this build' },
    ...over,
  };
}

t.test('checks of a healthy run pass', async (t) => {
  const checks = evaluate(outcome(), bounds);
  t.same(
    checks.map((c) => [c.name, c.ok]),
    [
      ['rss-slope', true],
      ['rss-after-cooldown', true],
      ['kept-up', true],
      ['leftovers', true],
      ['frames-received', true],
      ['audio-received', true],
      ['frames-stored', true],
      ['uploads-drained', true],
      ['no-server-closes', true],
      ['service-healthy', true],
    ],
  );
  t.equal(checks[6]!.skipped, true);
  t.match(checks[6]!.detail, /skipped: no spool/);
  t.equal(checks[7]!.skipped, true);
  t.match(checks[3]!.detail, /zero 1\.0 s after the load ended/);
  t.match(checks[2]!.detail, /kept up with sealing: oldest open chunk 69 s at most \(CHUNK_SECONDS 60; bound 120 s\), seal backlog 0 at the load's end/);
});

t.test('each check flags its failure', async (t) => {
  const o = outcome();
  const fail = (over: Partial<Outcome>, name: string, detail: RegExp) => {
    const c = evaluate({ ...o, ...over }, bounds).find((x) => x.name === name)!;
    t.notOk(c.ok, `${name} fails`);
    t.match(c.detail, detail);
  };
  fail({ figures: { ...o.figures, slopeMbPerMin: 5 } }, 'rss-slope', /5\.00 ± 0\.00 MB\/min/);
  const noisy = evaluate({ ...o, figures: { ...o.figures, slopeMbPerMin: 5, slopeStdErr: 2 } }, bounds).find((c) => c.name === 'rss-slope')!;
  t.ok(noisy.ok, 'above the bound, but not beyond two standard errors');
  t.match(noisy.detail, /5\.00 ± 4\.00 MB\/min/);
  const unbounded = evaluate({ ...o, figures: { ...o.figures, slopeMbPerMin: 500 } }, { ...bounds, slopeMbPerMin: Infinity }).find((c) => c.name === 'rss-slope')!;
  t.ok(unbounded.ok && unbounded.skipped, 'no slope bound: reported, not checked');
  t.match(unbounded.detail, /skipped \(no bound: too short a run for a slope\): RSS slope over the load phase 500\.00/);
  fail({ figures: { ...o.figures, slopeMbPerMin: NaN } }, 'rss-slope', /NaN/);
  // With samples after forced GCs during the load, their slope decides (garbage is not a leak).
  const garbage = evaluate({ ...o, figures: { ...o.figures, slopeMbPerMin: 9, liveSlopeMbPerMin: 0.3, liveSlopeStdErr: 0.2, liveSlopePoints: 19 } }, bounds).find((c) => c.name === 'rss-slope')!;
  t.ok(garbage.ok, 'raw RSS climbs, live RSS is flat: passes');
  t.match(garbage.detail, /live RSS slope \(after forced GCs, 19 points\) 0\.30 ± 0\.40 MB\/min; raw RSS slope over the load phase 9\.00/);
  fail({ figures: { ...o.figures, slopeMbPerMin: 0, liveSlopeMbPerMin: 4, liveSlopeStdErr: 0.1, liveSlopePoints: 5 } }, 'rss-slope', /live RSS slope .* 4\.00 ± 0\.20/);
  fail({ figures: { ...o.figures, growthAfterCooldown: 31 * MiB } }, 'rss-after-cooldown', /\+31\.0 MB; bound \+30 MB/);
  fail({ figures: { ...o.figures, growthAfterCooldown: NaN } }, 'rss-after-cooldown', /NaN/);
  // A saturated machine: the shards fell behind sealing, so the memory figures measure a backlog.
  fail({ figures: { ...o.figures, maxOldestOpenS: 205, sealBacklogAtEnd: 3512 }, load: loadStats({ loopDelayP99Ms: 1885.3 }) }, 'kept-up', /fell behind the load .*oldest open chunk 205 s at most \(CHUNK_SECONDS 60; bound 120 s\), seal backlog 3512 .* loop p99 1885 ms/);
  fail({ figures: { ...o.figures, maxOldestOpenS: 61 }, chunkSeconds: 30 }, 'kept-up', /CHUNK_SECONDS 30; bound 60 s/);
  const noMetric = evaluate({ ...o, figures: { ...o.figures, maxOldestOpenS: NaN } }, bounds).find((c) => c.name === 'kept-up')!;
  t.ok(noMetric.ok && noMetric.skipped, 'a build without the metric: skipped');
  t.same([chunkSecondsOf(undefined), chunkSecondsOf({ CHUNK_SECONDS: '10' }), chunkSecondsOf({ CHUNK_SECONDS: 'x' })], [60, 10, 60], 'CHUNK_SECONDS from the env, else 60');
  fail({ figures: { ...o.figures, final: { ...o.figures.final, decoders: 40, tasks: 3 } } }, 'leftovers', /tasks=3, decoders=40/);
  fail({ framesReceived: 5999 }, 'frames-received', /sent 6000, received 5999/);
  fail({ framesReceived: 6001 }, 'frames-received', /received 6001/);
  fail({ audioBytesReceived: 1 }, 'audio-received', /received by the service 1$/);
  fail({ rejected: 2 }, 'no-server-closes', /closed by the server: none; rejected 2/);
  fail({ load: loadStats({ serverCloses: { '1013': 2, '1006': 1 }, closeReasons: { '1013': 'server overloaded' } }) }, 'no-server-closes', /1006×1, 1013×2 \("server overloaded"\)/);
  fail({ load: loadStats({ connectFailures: 1 }) }, 'no-server-closes', /failed connects 1/);
  fail({ crashed: true, exit: 'SIGKILL' }, 'service-healthy', /service died during the run; .*SIGKILL/);
  fail({ shardRestarts: 1 }, 'service-healthy', /shard restarts 1/);
  fail({ exit: 1 }, 'service-healthy', /exit on SIGTERM: 1/);
  const zeroUnknown = evaluate({ ...o, figures: { ...o.figures, secondsToZero: NaN } }, bounds).find((c) => c.name === 'leftovers')!;
  t.match(zeroUnknown.detail, /zero \? after/);
  // Uncertain audio (our own kills) widens the margin, not more.
  const unsure = loadStats({ uncertain: { frames: 3, bytes: 90, perKey: {} } });
  const within = evaluate({ ...o, load: unsure, framesReceived: 5997, audioBytesReceived: 179910 }, bounds);
  t.ok(within.find((c) => c.name === 'frames-received')!.ok);
  t.match(within.find((c) => c.name === 'frames-received')!.detail, /3 uncertain/);
  t.match(within.find((c) => c.name === 'audio-received')!.detail, /90 uncertain/);
  t.ok(within.find((c) => c.name === 'audio-received')!.ok);
});

t.test('frames-stored and uploads-drained checks', async (t) => {
  const o = outcome();
  const none = { objects: 0, uncommitted: 0, perKey: {}, errors: [] };
  const totals = { objects: 2, uncommitted: 0, perKey: { 'dev0/_': { kind: 'lc3' as const, frames: 6000, bytes: 180000 } }, errors: [] };
  const check = (store: Outcome['store'], name: string) => evaluate({ ...o, store }, bounds).find((c) => c.name === name)!;
  const ok = check({ totals, spool: none, openChunks: 0, spoolBytes: 0, waitedS: 1 }, 'frames-stored');
  t.ok(ok.ok);
  t.match(ok.detail, /1 uid\/conversation streams: sent 6000 frames\/samples, 6000 durable \(6000 in 2 store objects, 0 in 0 sealed spool files\)$/);
  const drained = check({ totals, spool: none, openChunks: 0, spoolBytes: 12345, waitedS: 1 }, 'uploads-drained');
  t.ok(drained.ok, 'journal bytes alone are no backlog');
  t.match(drained.detail, /every chunk sealed and uploaded 1 s after the clients left/);
  // Part still in the spool: not lost, but not uploaded either.
  const half = { ...totals, objects: 1, perKey: { 'dev0/_': { kind: 'lc3' as const, frames: 4000, bytes: 120000 } } };
  const rest = { objects: 1, uncommitted: 0, perKey: { 'dev0/_': { kind: 'lc3' as const, frames: 2000, bytes: 60000 } }, errors: [] };
  t.ok(check({ totals: half, spool: rest, spoolBytes: 60018 }, 'frames-stored').ok, 'spooled audio is durable');
  const backlog = check({ totals: half, spool: rest, spoolBytes: 60018 }, 'uploads-drained');
  t.notOk(backlog.ok);
  t.match(backlog.detail, /upload backlog 0 s after the clients left: 1 sealed files \(2000 frames\/samples\) and 0 open chunks still in the spool \(pusher_spool_bytes 60018, journal included\)/);
  t.match(check({ totals, spool: none }, 'uploads-drained').detail, /every chunk sealed/, 'no spool metric, no spooled files');
  const unsealed = check({ totals, spool: none, openChunks: 3 }, 'uploads-drained');
  t.notOk(unsealed.ok, 'chunks still open');
  t.match(unsealed.detail, /0 sealed files \(0 frames\/samples\) and 3 open chunks .*pusher_spool_bytes n\/a/);
  const lost = check({ totals: { ...totals, uncommitted: 1, perKey: {}, errors: ['chunks/x: bad'] }, spool: { ...none, errors: ['chunks/y: torn'] } }, 'frames-stored');
  t.notOk(lost.ok);
  t.match(lost.detail, /\+ 1 uncommitted, 0 in 0 sealed spool files\); 3 problem\(s\): dev0\/_: sent 6000 frames, stored 0 \(lost 6000\); chunks\/x: bad; chunks\/y: torn/);
});

t.test('report text, chart and CI verdict', async (t) => {
  const { samples, phases } = run();
  const o = outcome();
  const checks = evaluate(o, bounds);
  const ci = ciOptions('/tmp/x');
  const r: ChaosReport = {
    ...o,
    name: 'unit',
    sink: { requests: { '/transcript': 3 }, bytes: 10 },
    options: { ...ci.real },
    phases,
    samples,
    checks,
    passed: true,
    files: { json: 'a.json', svg: 'a.svg', serviceLog: 'svc.log' },
  };
  const text = describe(r).join('\n');
  t.match(text, /== unit: PASS \(no forced GC/);
  t.notMatch(describe({ ...r, figures: { ...r.figures, forcedGc: true } })[0]!, /no forced GC/);
  t.match(text, /\+3\.0 MiB vs plateau, \+21\.0 MiB vs idle/);
  t.match(text, /\[skip\] frames-stored/);
  t.match(text, /\[ ok \] rss-slope/);
  t.match(text, /slow sink .* received: \{"\/transcript":3\}/);
  const failed = { ...r, sink: undefined, passed: false, checks: evaluate({ ...o, framesReceived: 1 }, bounds), figures: { ...r.figures, growthAfterCooldown: -MiB, growthVsBaseline: -MiB } };
  const ftext = describe(failed).join('\n');
  t.match(ftext, /== unit: FAIL/);
  t.match(ftext, /\[FAIL\] frames-received/);
  t.match(ftext, /-1\.0 MiB vs plateau, -1\.0 MiB vs idle/);
  t.notMatch(ftext, /slow sink/);
  const svg = chart(r);
  t.match(svg, /device×40 \+ device×4 \+ omi-leak1×6 \+ omi-leak2×3/);
  t.match(svg, /all checks passed/);
  t.match(chart(failed), /FAILED: frames-received<\/text>/, 'the failed checks are named on the chart');
  t.match(chart(failed), /-1\.0 MB vs warm-up plateau/);

  const leaked = { checks: evaluate({ ...o, figures: { ...o.figures, final: { ...o.figures.final, decoders: 9 } } }, bounds) };
  t.same(ciVerdict(r, leaked), { ok: true, messages: [] });
  const v = ciVerdict(failed, r);
  t.notOk(v.ok);
  t.match(v.messages[0], /real service failed frames-received/);
  t.match(v.messages[1], /positive control \(leak_on_close\) NOT flagged/);
  t.match(ciVerdict(r, { checks: [] }).messages[0], /no leftovers check/);
  const env = ciOptions('/tmp/x', () => {}, { X: '1' });
  t.equal(env.real.childEnv!.X, '1');
  t.equal(env.control.faults, 'leak_on_close');
});

t.test('waiting for the store', async (t) => {
  const load = { perKey: { 'dev0/_': { kind: 'lc3' as const, frames: 150, bytes: 4500 } }, uncertain: { frames: 0, bytes: 0, perKey: {} } };
  const root = t.testdir({
    empty: {},
    store: { chunks: { dev0: { _: { 'a.lc3': lc3Object(150), 'a.lc3.meta.json': '{}' } } } },
    spool: {
      sealed: { chunks: { dev0: { _: { 'a.lc3': lc3Object(150), 'b.lc3': lc3Object(20) } } } },
      open: { chunks: { dev1: { _: { '1.000~0-r-1.lc3': lc3Object(5) } } } },
    },
  });
  const empty = join(root, 'empty');
  const store = join(root, 'store');
  const spoolDir = join(root, 'spool');
  const none = async () => [];
  const w = { load, sync: true, settleMs: 0, pollMs: 10 };
  t.same(await waitForStore({ ...w, scrape: none, storeDir: empty, spoolDir: empty, sync: false, waitS: 1 }), { skipped: 'private cloud sync is off for this run (--sync off)' });
  // Empty store, no durable metric: skipped once quiet.
  const e = await waitForStore({ ...w, scrape: none, storeDir: empty, spoolDir: empty, waitS: 5 });
  t.match(e.skipped, /no pusher_audio_bytes_durable_total metric/);
  // Empty store but the service has a durable spool: the check runs (and will fail on the loss).
  const durable = async () => parseMetrics('pusher_audio_bytes_durable_total 0\npusher_spool_bytes 0\n');
  const d = await waitForStore({ ...w, scrape: durable, storeDir: empty, spoolDir: empty, waitS: 5 });
  t.equal(d.skipped, undefined);
  t.equal(d.totals!.objects, 0);
  t.equal(d.spoolBytes, 0);
  // Scrape failures are tolerated; a store that already holds everything returns at once.
  const t1 = Date.now();
  const full = await waitForStore({ scrape: () => Promise.reject(new Error('down')), storeDir: store, spoolDir: empty, load, sync: true, waitS: 5, pollMs: 10 });
  t.same(full.totals!.perKey, load.perKey);
  t.ok(Date.now() - t1 < 2000, 'no waiting once everything is there');
  // The spool never empties: bounded by waitS; what is still sealed in the spool is counted, once.
  const busy = async () => parseMetrics('pusher_spool_bytes 100\n');
  const t0 = Date.now();
  const b = await waitForStore({ ...w, scrape: busy, storeDir: store, spoolDir, waitS: 0.2, pollMs: 20, load: { ...load, perKey: { 'dev0/_': { kind: 'lc3', frames: 170, bytes: 5100 } } } });
  t.ok(Date.now() - t0 >= 200);
  t.ok(b.waitedS! >= 0.2);
  t.equal(b.spoolBytes, 100);
  t.equal(b.openChunks, 1);
  t.same(b.spool!.perKey, { 'dev0/_': { kind: 'lc3', frames: 20, bytes: 600 } }, 'a.lc3 is in the store already: not counted twice');
  // Only spooled audio (nothing uploaded yet), no durable metric: still checked.
  const only = await waitForStore({ ...w, scrape: none, storeDir: empty, spoolDir, waitS: 0.1 });
  t.equal(only.skipped, undefined);
  t.equal(only.spool!.objects, 2);
});

t.test('per-key sums and file counts', async (t) => {
  const dir = t.testdir({ a: { b: { c: 'x', d: 'y' } }, e: 'z' });
  t.equal(countFiles(dir), 3);
  t.equal(countFiles(join(dir, 'nope')), 0);
  t.same(addCounts({ a: { kind: 'lc3', frames: 1, bytes: 30 } }, { a: { kind: 'lc3', frames: 2, bytes: 60 }, b: { kind: 'pcm', frames: 5, bytes: 10 } }), {
    a: { kind: 'lc3', frames: 3, bytes: 90 },
    b: { kind: 'pcm', frames: 5, bytes: 10 },
  });
});

t.test('client groups on the command line', async (t) => {
  t.equal(groupsSpec([{ workload: 'device', clients: 5 }, { workload: 'device', clients: 2, ack: true, rate: Infinity }, { workload: 'omi-leak1', clients: 3, rate: 20 }]), 'device:5,device+ack:2@max,omi-leak1:3@20');
  t.throws(() => groupsSpec([{ workload: 'device', clients: 1, uidPrefix: 'x' }]), /in-process/);
});

t.test('slow sink: answers late, echoes the conversation, counts requests', async (t) => {
  const sink = await startSink([50, 50]);
  const t0 = Date.now();
  const json = { 'content-type': 'application/json' };
  const res = await fetch(`${sink.url}/process-conversation?x=1`, { method: 'POST', headers: json, body: JSON.stringify({ conversation_id: 'c1' }) });
  t.ok(Date.now() - t0 >= 45, 'delayed');
  t.same(await res.json(), { ok: true, conversation_id: 'c1' });
  const raw = await fetch(`${sink.url}/audio-bytes`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: new Uint8Array([1, 2, 3]) });
  t.same(await raw.json(), { ok: true, conversation_id: null }, 'audio: nothing to echo');
  // Audio bodies are counted, never parsed: even one that happens to be JSON echoes nothing.
  const audioJson = await fetch(`${sink.url}/audio-bytes`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: JSON.stringify({ conversation_id: 'c2' }) });
  t.same(await audioJson.json(), { ok: true, conversation_id: null }, 'octet-stream is not parsed');
  const bad = await fetch(`${sink.url}/process-conversation`, { method: 'POST', headers: json, body: '{not json' });
  t.same(await bad.json(), { ok: true, conversation_id: null }, 'invalid JSON: nothing to echo');
  const plain = await fetch(`${sink.url}/transcript`, { method: 'POST', headers: json, body: JSON.stringify({ segments: [] }) });
  t.same(await plain.json(), { ok: true, conversation_id: null });
  t.same(sink.requests, { '/process-conversation': 2, '/audio-bytes': 2, '/transcript': 1 });
  t.equal(sink.bytes, JSON.stringify({ conversation_id: 'c1' }).length + 3 + JSON.stringify({ conversation_id: 'c2' }).length + 9 + JSON.stringify({ segments: [] }).length, 'every body byte counted');
  void fetch(`${sink.url}/slow`).catch(() => {}); // pending when the sink closes
  await new Promise((r) => setTimeout(r, 20));
  await sink.close();
  const dflt = await startSink();
  t.match(dflt.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  await dflt.close();
  const c = sinkConfig('http://127.0.0.1:9', false);
  t.same(c.env, { PROCESS_CONVERSATION_URL: 'http://127.0.0.1:9/process-conversation', WEBHOOK_ALLOW_PRIVATE: '1' });
  t.same(c.settings, {
    default: {
      private_cloud_sync: false,
      transcript_webhook: 'http://127.0.0.1:9/transcript',
      audio_bytes_webhook: { url: 'http://127.0.0.1:9/audio-bytes', seconds: 5 },
      audio_apps: ['http://127.0.0.1:9/audio-app'],
    },
  });
});

t.test('forced GC through the admin endpoint', async (t) => {
  const seen: string[] = [];
  let status = 200;
  const srv = createServer((req, res) => {
    seen.push(`${req.url} ${req.headers.authorization}`);
    res.writeHead(status);
    res.end('{}');
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
  t.equal(await forceGc(base, 'tok'), true);
  t.same(seen, ['/debug/gc?thread=all Bearer tok']);
  status = 404;
  t.equal(await forceGc(base, 'tok'), false, 'a build without the endpoint');
  await new Promise((r) => srv.close(r));
  t.equal(await forceGc(base, 'tok'), false, 'service gone');
});

t.test('allocator: how the service is started, what it reports, the check and the CI verdict', async (t) => {
  const dir = t.testdir({ 'libjemalloc.so.2': '' });
  const lib = join(dir, 'libjemalloc.so.2');
  t.same(allocatorEnv('system'), { allocator: 'system', env: { LC3_PUSHER_ALLOCATOR: 'system' } });
  t.same(allocatorEnv('jemalloc', { LC3_PUSHER_JEMALLOC: lib }), { allocator: 'jemalloc', env: { LD_PRELOAD: lib, MALLOC_CONF: 'background_thread:true', LC3_PUSHER_ALLOCATOR: 'jemalloc' } });
  t.equal(allocatorEnv('jemalloc', { LC3_PUSHER_JEMALLOC: lib, MALLOC_CONF: 'prof:true' }).env.MALLOC_CONF, 'background_thread:true,prof:true', "the caller's settings after the launcher's");
  t.same(allocatorEnv(undefined, { LC3_PUSHER_JEMALLOC: lib }).allocator, 'jemalloc', 'default: jemalloc when installed');
  t.same(allocatorEnv(undefined, { LC3_PUSHER_JEMALLOC: join(dir, 'none.so') }), { allocator: 'system', env: { LC3_PUSHER_ALLOCATOR: 'system' } }, 'default without it: glibc');
  t.throws(() => allocatorEnv('jemalloc', { LC3_PUSHER_JEMALLOC: join(dir, 'none.so') }), /allocator jemalloc: libjemalloc\.so\.2 not found \(apt-get install -y libjemalloc2\)/);
  t.throws(() => allocatorEnv('tcmalloc' as 'system'), /allocator "tcmalloc": expected jemalloc or system/);
  t.equal(allocatorEnv(undefined).allocator, jemallocPath() ? 'jemalloc' : 'system', "this machine's default");

  t.equal(reportedAllocator(parseMetrics('pusher_build_info{version="1",node="v20",liblc3="1.1.3",allocator="jemalloc"} 1\n')), 'jemalloc');
  t.equal(reportedAllocator(parseMetrics('pusher_sessions_active 0\n')), undefined);

  const o = outcome();
  const check = (allocator: Outcome['allocator']) => evaluate({ ...o, allocator }, bounds).find((c) => c.name === 'allocator');
  t.equal(check(undefined), undefined, 'no allocator figures: no check');
  t.same(check({ requested: 'jemalloc', reported: 'jemalloc' }), { name: 'allocator', ok: true, detail: 'started on jemalloc, pusher_build_info says jemalloc' });
  t.same(check({ requested: 'jemalloc', reported: 'system' }), { name: 'allocator', ok: false, detail: 'started on jemalloc, pusher_build_info says system' }, 'a preload that did not take is flagged');
  t.match(check({ requested: 'system', reported: undefined }), { ok: true, skipped: true, detail: /no pusher_build_info/ });

  const real = { checks: [], allocator: { requested: 'system' as const, reported: 'system' } };
  const control = { checks: evaluate({ ...o, figures: { ...o.figures, final: { ...o.figures.final, decoders: 1 } } }, bounds) };
  t.same(ciVerdict(real, control), { ok: true, messages: [] }, 'no default to hold it to');
  t.same(ciVerdict(real, control, 'jemalloc').messages, ['real service runs on system, not the default jemalloc']);
  t.same(ciVerdict({ checks: [] }, control, 'jemalloc').messages, ['real service runs on an unreported allocator, not the default jemalloc']);
  t.same(ciVerdict({ ...real, allocator: { requested: 'jemalloc', reported: 'jemalloc' } }, control, 'jemalloc'), { ok: true, messages: [] });
});

t.test('withDeadline: the value, or an error naming what was waited for', async (t) => {
  t.equal(await withDeadline(Promise.resolve(7), 1, 'seven'), 7);
  await t.rejects(withDeadline(new Promise(() => {}), 0.05, 'the load generator to stop'), /gave up after 0\.05 s waiting for the load generator to stop/);
  await t.rejects(withDeadline(Promise.reject(new Error('own error')), 1, 'x'), /own error/);
});

t.test('soak-allocators: plan, frames lost, table rows', async (t) => {
  t.same(soakPlan(['jemalloc', 'system'], 'on', 1), [
    { allocator: 'jemalloc', forcedGc: true, repeat: 1 },
    { allocator: 'system', forcedGc: true, repeat: 1 },
  ]);
  const both = soakPlan(['jemalloc', 'system'], 'both', 3);
  t.equal(both.length, 8, 'three runs of the default and one of glibc, with and without forced GCs');
  t.same(both.map((r) => `${r.allocator}${r.repeat}${r.forcedGc ? '+' : '-'}`), ['jemalloc1+', 'jemalloc2+', 'jemalloc3+', 'system1+', 'jemalloc1-', 'jemalloc2-', 'jemalloc3-', 'system1-']);
  t.same(soakPlan(['system'], 'off', 2), [{ allocator: 'system', forcedGc: false, repeat: 1 }]);

  const o = outcome();
  t.equal(framesLost(o), undefined, 'sync off: not checked');
  const k = (frames: number) => ({ kind: 'lc3' as const, frames, bytes: frames * 30 });
  const none = { objects: 0, uncommitted: 0, perKey: {}, errors: [] };
  const load = { ...o.load, perKey: { a: k(100), b: k(50) }, uncertain: { frames: 2, bytes: 60, perKey: { b: k(2) } } };
  const store = { totals: { ...none, objects: 2, perKey: { a: k(90) } }, spool: { ...none, objects: 1, perKey: { a: k(10), b: k(40) } } };
  t.same(framesLost({ load, store }), { lost: 8, stored: 140 }, 'b: 50 sent, 2 uncertain, 40 durable: 8 lost');

  const report = { ...o, load, store, checks: evaluate(o, bounds), allocator: { requested: 'jemalloc' as const, reported: 'jemalloc' }, options: { loadS: 600 } };
  const row = soakRow({ allocator: 'jemalloc', forcedGc: true, repeat: 2 }, report as unknown as Parameters<typeof soakRow>[1]);
  t.equal(row[0], 'jemalloc (default) #2, forced GCs on');
  t.equal(row[1], '600 s');
  t.match(row[2], /^-?\d+\.\d\d ± \d+\.\d\d MB\/min \(r² -?\d\.\d\d\)$/);
  t.equal(row[3], 'n/a', 'no live samples in this run');
  t.match(row[4], /^[+−]\d+\.\d MB \(PASS\)$/);
  t.equal(row[5], '8 (140 stored)');
  t.match(row[6], /^yes: oldest open chunk \d+ s$/, 'the kept-up check, with the oldest open chunk');
  const behind = { ...report, checks: [{ name: 'kept-up', ok: false, detail: '' }], figures: { ...report.figures, maxOldestOpenS: 205 } };
  t.equal(soakRow({ allocator: 'jemalloc', forcedGc: false, repeat: 1 }, behind as unknown as Parameters<typeof soakRow>[1])[6], 'NO: oldest open chunk 205 s');
  t.equal(soakRow({ allocator: 'jemalloc', forcedGc: false, repeat: 1 }, { ...report, checks: [] } as unknown as Parameters<typeof soakRow>[1])[6], 'n/a');
  const odd = soakRow({ allocator: 'system', forcedGc: false, repeat: 1 }, { ...report, allocator: { requested: 'system', reported: 'jemalloc' } } as unknown as Parameters<typeof soakRow>[1]);
  t.equal(odd[0], 'glibc malloc (LC3_PUSHER_ALLOCATOR=system), forced GCs off (service reports jemalloc!)');
  t.equal(soakRow({ allocator: 'system', forcedGc: false, repeat: 1 }, { ...report, store: o.store } as unknown as Parameters<typeof soakRow>[1])[5], 'not checked');
  const md = markdownTable([row]).split('\n');
  t.equal(md[0], '| run | load | raw RSS slope | live slope (after forced GCs) | RSS after cooldown vs plateau | frames lost | kept up |');
  t.equal(md[1], '| --- | --- | --- | --- | --- | --- | --- |');
  t.equal(md[2], `| ${row.join(' | ')} |`);
});

t.test('RSS baselines: start-up garbage collected, RSS holding still', async (t) => {
  // A stand-in for the child service: only the two readings these waits use.
  const fake = (rss: () => number | undefined, gcs: () => Record<string, number>) =>
    ({
      pid: 1,
      rss,
      scrape: async () => Object.entries(gcs()).map(([thread, value]) => ({ name: 'pusher_full_gcs_total', labels: { thread }, value })),
    }) as unknown as ChildService;

  // Every thread must collect after the call; one that already had its GC before it still waits.
  let calls = 0;
  const counts = () => (++calls < 3 ? { main: 0, 'shard-0': 1 } : calls < 5 ? { main: 1, 'shard-0': 1 } : { main: 1, 'shard-0': 2 });
  await startupCollected(fake(() => 0, counts), 5000);
  t.ok(calls >= 5, 'resolved only once shard-0 (already at 1 when called) collected again');
  await t.rejects(startupCollected(fake(() => 0, () => ({ main: 3, uploader: 1 })), 600), /full GC in every thread.*still waiting for main, uploader/, 'times out naming the threads it waited for');
  await t.rejects(startupCollected(fake(() => 0, () => ({})), 600), /no pusher_full_gcs_total/, 'a service without the metric is an error, not a pass');

  // Falling RSS (jemalloc handing pages back) is not a baseline; a flat stretch is, as its median.
  const xs = [200, 180, 160, 140, 120, 100, 100.2, 100.1, 100.4, 100.3, 100.2].map((m) => m * MiB);
  let i = 0;
  const rss = await steadyRss(fake(() => xs[Math.min(i++, xs.length - 1)], () => ({})), { windowMs: 1000, timeoutMs: 10_000 });
  t.ok(Math.abs(rss - 100.15 * MiB) < 1, `the median of the first window of four samples within 1 MiB (100, 100.2, 100.1, 100.4): ${rss / MiB}`);
  t.equal(i, 9, 'not before the fall had ended, and as soon as the window held');
  let up = 0;
  await t.rejects(steadyRss(fake(() => (up += 2 * MiB), () => ({})), { windowMs: 500, timeoutMs: 800 }), /RSS to hold within 1\.0 MiB for 0\.5 s/, 'RSS that keeps moving times out, saying what it waited for');
  await t.rejects(steadyRss(fake(() => undefined, () => ({})), { timeoutMs: 800 }), /exited while its RSS was being sampled/, 'a service that has gone is an error');
});
