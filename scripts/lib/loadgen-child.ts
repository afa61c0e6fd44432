// The load generator in its own process (node dist/scripts/loadgen.js --json), so that its CPU is
// separate from the measuring process and can be read from /proc.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import type { LoadStats } from './loadgen.js';
import { repoRoot } from './service.js';

export interface LoadgenChild {
  pid: number;
  proc: ChildProcess;
  /** Resolves when every client has connected once. */
  connected: Promise<void>;
  /** The final counts (when the run ends by itself after --seconds, or on stop()). */
  result: Promise<LoadStats>;
  /** Latest progress line: seconds, connected clients, messages and LC3 frames sent so far. */
  progress(): { t: number; connected: number; messages: number; lc3Frames: number };
  stop(): Promise<LoadStats>;
}

/** Starts `node dist/scripts/loadgen.js --json ARGS`; the compiled build must exist. */
export function spawnLoadgen(args: string[], env: Record<string, string> = {}): LoadgenChild {
  const script = join(repoRoot(), 'dist', 'scripts', 'loadgen.js');
  const proc = spawn(process.execPath, [script, '--json', ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  let last = { t: 0, connected: 0, messages: 0, lc3Frames: 0 };
  let onConnected!: () => void;
  const connected = new Promise<void>((r) => (onConnected = r));
  const result = new Promise<LoadStats>((resolve, reject) => {
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      let ev: { event?: string } & Record<string, unknown>;
      try {
        ev = JSON.parse(line) as typeof ev;
      } catch {
        return;
      }
      if (ev.event === 'connected') onConnected();
      else if (ev.event === 'progress') last = ev as unknown as typeof last;
      else if (ev.event === 'result') resolve(ev as unknown as LoadStats);
    });
    proc.once('exit', (code) => reject(new Error(`load generator exited (${code}) without a result`)));
  });
  result.catch(() => {});
  return {
    pid: proc.pid!,
    proc,
    connected,
    result,
    progress: () => last,
    stop: () => {
      proc.kill('SIGTERM');
      return result;
    },
  };
}
