// lc3-pusher against the WebSocket floor. The same real-time load (N lc3_fs1030 device streams,
// 100 messages/s each, from the load generator in its own process) goes, one after the other in
// one run, to a bare `ws` server that only counts messages (scripts/lib/floor.ts), to lc3-pusher
// storing only, and to lc3-pusher with a PCM consumer on every session (an audio-bytes webhook to
// a local sink, so every frame is decoded). Printed per run and stream count:
//   - main-thread CPU per message, lc3-pusher against the floor (goal ≤ 1.1);
//   - the whole service's CPU against the floor's (goals ≤ 1.4 storage only, ≤ 2.0 with PCM);
//   - frames lost, p99 arrival→stored (goal 0 and ≤ 50 ms at 800 streams);
//   - the shards' busy time per frame, and the generator's and the sink's CPU (they share the cores).
// `--build LABEL=DIR` (repeatable) adds storage-only runs of another checkout's build (a worktree
// of an earlier commit, built) to the same run: the before/after of a change, against one floor.
// CPU is read from /proc (the main thread's tid is the pid), shard time from
// pusher_thread_busy_seconds_total (n/a for builds without it). Figures, not pass/fail; every
// wait has a deadline.
//
//   npm run build:ts && node dist/scripts/bench-floor.js [--streams 400,800] [--seconds 20]
//        [--warmup 5] [--runs 3] [--shards 2] [--configs storage,pcm] [--build before=/tmp/wt] [--smoke]
import { parseArgs } from 'node:util';
import { defaultIngestOptions, streamStep, type StepResult } from './lib/bench-ingest.js';
import { floorStep, type FloorResult } from './lib/floor.js';
import { runMain } from './lib/run-main.js';

const { values } = parseArgs({
  options: {
    streams: { type: 'string', default: '400' },
    seconds: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '5' },
    runs: { type: 'string', default: '1' },
    shards: { type: 'string', default: '2' },
    configs: { type: 'string', default: 'storage,pcm' },
    build: { type: 'string', multiple: true, default: [] },
    smoke: { type: 'boolean', default: false },
  },
});
const smoke = values.smoke;
const streamsList = (smoke ? '50' : values.streams).split(',').map(Number);
const seconds = smoke ? 2 : Number(values.seconds);
const warmup = smoke ? 1 : Number(values.warmup);
const runs = smoke ? 1 : Number(values.runs);
const configs = values.configs.split(',');
if (
  !streamsList.every((n) => n > 0 && Number.isInteger(n)) ||
  !(seconds > 0) ||
  !(warmup >= 0) ||
  !(runs >= 1) ||
  !configs.every((c) => c === 'storage' || c === 'pcm')
) {
  console.error('bench-floor: --streams N[,N…] (positive integers), --seconds > 0, --warmup ≥ 0, --runs ≥ 1, --configs storage,pcm');
  process.exit(2);
}
const builds = values.build.map((b) => {
  const at = b.indexOf('=');
  if (at <= 0) {
    console.error(`bench-floor: --build LABEL=DIR, got "${b}"`);
    process.exit(2);
  }
  return { label: b.slice(0, at), root: b.slice(at + 1) };
});
const log = (s: string) => console.error(`[bench-floor] ${s}`);

async function pusher(n: number, pcm: boolean, root?: string): Promise<StepResult> {
  // The smoke's window is shorter than the webhook's usual 5 s: there it POSTs every second.
  const o = { ...defaultIngestOptions(false, log), shards: Number(values.shards), stepSeconds: seconds, warmupMs: warmup * 1000, pcm, pcmSeconds: smoke ? 1 : 5, ...(root ? { root } : {}) };
  return streamStep(o, n, false);
}

const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
const row = (run: number, f: FloorResult, config: string, p: StepResult): string =>
  [
    run,
    f.streams,
    config,
    (f.messages / f.seconds).toFixed(0),
    f2(f.mainUsPerMsg),
    f2(p.mainUsPerMsg),
    f2(p.mainUsPerMsg / f.mainUsPerMsg),
    f2(f.totalCores),
    f2(p.cores.service),
    f2(p.cores.service / f.totalCores),
    f2(p.shardUsPerFrame),
    p.lost,
    (p.p99 * 1000).toFixed(0),
    f2(p.cores.gen),
    f2(p.sinkCores),
    (p.sinkRequests / p.seconds).toFixed(1),
  ].join(' | ');

async function main(): Promise<void> {
  const rows: string[] = [];
  for (let run = 1; run <= runs; run++) {
    for (const n of streamsList) {
      log(`run ${run}: ${n} streams against the bare ws server`);
      const f = await floorStep(n, seconds, warmup);
      for (const b of builds) {
        log(`run ${run}: ${n} streams against the build in ${b.root} (${b.label}), storage only`);
        const p = await pusher(n, false, b.root);
        if (p.why.length) log(`  ${p.why.join('; ')}`);
        rows.push(row(run, f, `storage (${b.label})`, p));
      }
      for (const config of configs) {
        log(`run ${run}: ${n} streams against lc3-pusher, ${config === 'pcm' ? 'with a PCM consumer (audio-bytes webhook)' : 'storage only'} (SHARDS=${values.shards})`);
        const p = await pusher(n, config === 'pcm');
        if (p.why.length) log(`  ${p.why.join('; ')}`);
        rows.push(row(run, f, config, p));
      }
    }
  }
  console.log(
    '| run | streams | config | msgs/s | floor µs/msg (main) | lc3-pusher µs/msg (main) | main ratio | floor cores | lc3-pusher cores | total ratio | shard µs/frame | frames lost | p99 ms | generator cores | sink cores | webhook POSTs/s |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r} |`);
}

await runMain(main, log);
