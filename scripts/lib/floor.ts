// The WebSocket floor as a measurement: N real-time lc3_fs1030 device streams (100 messages/s
// each, from the load generator in its own process) against a bare `ws` server that only counts
// messages (scripts/ws-floor.ts). Its main-thread CPU per message is the least any service built
// on `ws` can spend on the same load; scripts/bench-floor.ts and scripts/bench.ts hold lc3-pusher
// against it. Every wait has a deadline and says what it waited for.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { spawnLoadgen } from './loadgen-child.js';
import { readProcCpu, readThreadsCpu } from './proc.js';
import { repoRoot } from './service.js';
import { sleep, within } from './wait.js';

export interface FloorResult {
  streams: number;
  seconds: number;
  messages: number;
  /** CPU in cores: the floor server's main thread, the whole floor process, the generator. */
  mainCores: number;
  totalCores: number;
  genCores: number;
  /** Main-thread CPU per message, µs. */
  mainUsPerMsg: number;
}

async function startFloor(): Promise<{ pid: number; port: number; stop(): Promise<void> }> {
  const proc: ChildProcess = spawn(process.execPath, [join(repoRoot(), 'dist', 'scripts', 'ws-floor.js'), '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: proc.stdout! });
  const stop = async (): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    await within(once(proc, 'exit'), 10_000, 'the ws floor server to exit').catch(() => proc.kill('SIGKILL'));
  };
  try {
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
    return { pid: proc.pid!, port, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** `streams` real-time streams against the floor; CPU over `seconds` after `warmup` seconds. */
export async function floorStep(streams: number, seconds: number, warmup: number): Promise<FloorResult> {
  const floor = await startFloor();
  try {
    const gen = spawnLoadgen(['--port', String(floor.port), '--workload', `device:${streams}`, '--seconds', String(warmup + seconds + 30)]);
    try {
      await gen.waitConnected(60_000);
      await within(gen.during(sleep(warmup * 1000)), warmup * 1000 + 5000, 'the floor warm-up');
      const mark = () => ({ t: performance.now(), msgs: gen.progress().messages, main: readThreadsCpu(floor.pid)[floor.pid] ?? NaN, total: readProcCpu(floor.pid) ?? NaN, gen: readProcCpu(gen.pid) ?? NaN });
      const a = mark();
      await within(gen.during(sleep(seconds * 1000)), seconds * 1000 + 5000, 'the floor measurement window');
      const b = mark();
      const s = (b.t - a.t) / 1000;
      const messages = b.msgs - a.msgs;
      return { streams, seconds: s, messages, mainCores: (b.main - a.main) / s, totalCores: (b.total - a.total) / s, genCores: (b.gen - a.gen) / s, mainUsPerMsg: ((b.main - a.main) / messages) * 1e6 };
    } finally {
      await gen.stop(15_000);
    }
  } finally {
    await floor.stop();
  }
}
