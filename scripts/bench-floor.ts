// Main-thread cost against the WebSocket floor. The same real-time load (N lc3_fs1030 device
// streams, 100 messages/s each, from the load generator in its own process) goes first to a bare
// `ws` server that only counts messages (scripts/ws-floor.ts), then to lc3-pusher, in one run.
// Printed per run: main-thread CPU per message for both and their ratio (goal ≤ 1.1), and the
// whole service's CPU against the bare server's (goal ≤ 1.4 storage-only). CPU is read from
// /proc (the main thread's tid is the pid). Figures, not pass/fail; every wait has a deadline.
//
//   npm run build:ts && node dist/scripts/bench-floor.js [--streams 400,800] [--seconds 20]
//        [--warmup 5] [--runs 3] [--shards 2] [--smoke]
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { spawnLoadgen, type LoadgenChild } from './lib/loadgen-child.js';
import { readProcCpu, readThreadsCpu } from './lib/proc.js';
import { repoRoot, startService } from './lib/service.js';
import { sleep, within } from './lib/wait.js';

const { values } = parseArgs({
  options: {
    streams: { type: 'string', default: '400' },
    seconds: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '5' },
    runs: { type: 'string', default: '1' },
    shards: { type: 'string', default: '2' },
    smoke: { type: 'boolean', default: false },
  },
});
const smoke = values.smoke;
const streamsList = (smoke ? '50' : values.streams).split(',').map(Number);
const seconds = smoke ? 2 : Number(values.seconds);
const warmup = smoke ? 1 : Number(values.warmup);
const runs = smoke ? 1 : Number(values.runs);
if (!streamsList.every((n) => n > 0 && Number.isInteger(n)) || !(seconds > 0) || !(warmup >= 0) || !(runs >= 1)) {
  console.error('bench-floor: --streams N[,N…] (positive integers), --seconds > 0, --warmup ≥ 0, --runs ≥ 1');
  process.exit(2);
}
const log = (s: string) => console.error(`[bench-floor] ${s}`);
interface Target {
  pid: number;
  port: number;
  stop(): Promise<unknown>;
}

async function startFloor(): Promise<Target> {
  const proc: ChildProcess = spawn(process.execPath, [join(repoRoot(), 'dist', 'scripts', 'ws-floor.js'), '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: proc.stdout! });
  const port = await within(
    new Promise<number>((resolve, reject) => {
      lines.on('line', (l) => {
        const m = JSON.parse(l) as { port?: number };
        if (m.port) resolve(m.port);
      });
      proc.once('exit', (code) => reject(new Error(`ws floor server exited (${code}) before listening`)));
    }),
    10_000,
    'the ws floor server to listen',
  );
  return {
    pid: proc.pid!,
    port,
    stop: async () => {
      if (proc.exitCode !== null) return;
      proc.kill('SIGTERM');
      await within(once(proc, 'exit'), 10_000, 'the ws floor server to exit').catch(() => proc.kill('SIGKILL'));
    },
  };
}

interface Window {
  messages: number;
  mainCpu: number;
  totalCpu: number;
  genCpu: number;
  seconds: number;
}

/** Drives N real-time streams at `target` and measures CPU over `seconds` after `warmup`. */
async function measure(target: Target, n: number): Promise<Window> {
  const gen: LoadgenChild = spawnLoadgen(['--port', String(target.port), '--workload', `device:${n}`, '--seconds', String(warmup + seconds + 30)]);
  try {
    await gen.waitConnected(60_000);
    await within(gen.during(sleep(warmup * 1000)), warmup * 1000 + 5000, 'the warm-up');
    const sample = () => ({ t: performance.now(), msgs: gen.progress().messages, main: readThreadsCpu(target.pid)[target.pid] ?? NaN, total: readProcCpu(target.pid) ?? NaN, gen: readProcCpu(gen.pid) ?? NaN });
    const a = sample();
    await within(gen.during(sleep(seconds * 1000)), seconds * 1000 + 5000, 'the measurement window');
    const b = sample();
    const s = (b.t - a.t) / 1000;
    return { messages: b.msgs - a.msgs, mainCpu: b.main - a.main, totalCpu: b.total - a.total, genCpu: b.gen - a.gen, seconds: s };
  } finally {
    await gen.stop(15_000);
  }
}

const us = (w: Window) => (w.mainCpu / w.messages) * 1e6;
const rows: string[] = [];
for (let run = 1; run <= runs; run++) {
  for (const n of streamsList) {
    log(`run ${run}: ${n} streams against the bare ws server`);
    const floor = await startFloor();
    let f: Window;
    try {
      f = await measure(floor, n);
    } finally {
      await floor.stop();
    }
    log(`run ${run}: ${n} streams against lc3-pusher (SHARDS=${values.shards})`);
    const svc = await startService({ env: { SHARDS: values.shards, RECEIVE_TIMEOUT_S: '600' } });
    let p: Window;
    try {
      p = await measure({ pid: svc.pid, port: svc.port, stop: () => svc.stop() }, n);
    } finally {
      await svc.stop();
    }
    rows.push(
      [run, n, (f.messages / f.seconds).toFixed(0), us(f).toFixed(2), us(p).toFixed(2), (us(p) / us(f)).toFixed(2), (f.totalCpu / f.seconds).toFixed(2), (p.mainCpu / p.seconds).toFixed(2), (p.totalCpu / p.seconds).toFixed(2), (p.totalCpu / f.totalCpu).toFixed(2), (p.genCpu / p.seconds).toFixed(2)].join(' | '),
    );
  }
}
console.log('| run | streams | msgs/s | floor µs/msg (main) | lc3-pusher µs/msg (main) | main ratio | floor cores | pusher main cores | pusher total cores | total ratio | generator cores |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r} |`);
