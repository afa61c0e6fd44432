// The load generator in its own process (node dist/scripts/loadgen.js --json), so that its CPU is
// separate from the measuring process and can be read from /proc.
//
// A generator that dies must end the run with an error, never hang it: `connected` rejects when
// the process exits before every client connected (it used to stay pending for good, and
// `npm run bench` hung at "blast (device-pcm)"), `died` rejects on any exit nobody asked for, and
// `during(p)` races a wait against that. Every wait here has a deadline naming what it waited for.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import type { LoadStats } from './loadgen.js';
import { repoRoot } from './service.js';
import { within } from './wait.js';

export interface LoadgenChild {
  pid: number;
  proc: ChildProcess;
  /** Resolves when every client has connected once; rejects if the generator exits first. */
  connected: Promise<void>;
  /** `connected`, within `ms`. */
  waitConnected(ms: number): Promise<void>;
  /** The final counts (when the run ends by itself after --seconds, or on stop()). */
  result: Promise<LoadStats>;
  /** Rejects when the process exits without stop() having been called (never resolves). */
  died: Promise<never>;
  /** `p`, unless the generator dies first. */
  during<T>(p: Promise<T>): Promise<T>;
  alive(): boolean;
  /** Latest progress line: seconds, connected clients, messages and LC3 frames sent so far. */
  progress(): { t: number; connected: number; messages: number; lc3Frames: number };
  /** SIGTERM, the final counts and the exit within `ms` (default 20 s), else SIGKILL and an error. */
  stop(ms?: number): Promise<LoadStats>;
}

/** Starts `node dist/scripts/loadgen.js --json ARGS`; the compiled build must exist. */
export function spawnLoadgen(args: string[], env: Record<string, string> = {}): LoadgenChild {
  const script = join(repoRoot(), 'dist', 'scripts', 'loadgen.js');
  const proc = spawn(process.execPath, [script, '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let last = { t: 0, connected: 0, messages: 0, lc3Frames: 0 };
  let clients: number | undefined;
  let exitValue: number | string | undefined;
  let stopping = false;
  // Its stderr still reaches ours; the tail goes into the error when it dies.
  const tail: string[] = [];
  proc.stderr!.on('data', (chunk: Buffer) => {
    process.stderr.write(chunk);
    tail.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    tail.splice(0, Math.max(0, tail.length - 10));
  });
  const why = () => `the load generator (pid ${proc.pid}) exited (${exitValue})${tail.length ? `: ${tail.slice(-3).join(' | ')}` : ''}`;
  let onConnected!: () => void;
  let onConnectFailed!: (e: Error) => void;
  const connected = new Promise<void>((resolve, reject) => {
    onConnected = resolve;
    onConnectFailed = reject;
  });
  let onDied!: (e: Error) => void;
  const died = new Promise<never>((_, reject) => (onDied = reject));
  let onExit!: () => void;
  const exited = new Promise<void>((r) => (onExit = r));
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
      else if (ev.event === 'started' && typeof ev.clients === 'number') clients = ev.clients;
    });
    const ended = (v: number | string) => {
      if (exitValue !== undefined) return;
      exitValue = v;
      onExit();
      // After the last stdout line was read (a final result is never lost): reject what is pending.
      setImmediate(() => {
        const clientsText = clients === undefined ? 'every client' : `all ${clients} clients`;
        onConnectFailed(new Error(`${why()} before ${clientsText} connected (${last.connected} were)`));
        if (!stopping) onDied(new Error(`${why()} during the run`));
        // (Worded "load generator exited (N) without a result" first, as callers have matched it.)
        reject(new Error(`load generator exited (${exitValue}) without a result (pid ${proc.pid})${tail.length ? `: ${tail.slice(-3).join(' | ')}` : ''}`));
      });
    };
    proc.once('exit', (code, signal) => ended((code ?? signal)!));
    proc.once('error', (e) => ended(`spawn error: ${e.message}`));
  });
  for (const p of [result, died, connected]) p.catch(() => {});
  return {
    pid: proc.pid ?? -1,
    proc,
    connected,
    waitConnected: (ms) => within(connected, ms, `all load generator clients to connect (${last.connected} had)`),
    result,
    died,
    during: (p) => Promise.race([p, died]),
    alive: () => exitValue === undefined,
    progress: () => last,
    stop: async (ms = 20_000) => {
      stopping = true;
      if (exitValue === undefined) proc.kill('SIGTERM');
      try {
        const r = await within(result, ms, "the load generator's final counts after SIGTERM");
        await within(exited, ms, 'the load generator to exit after its final counts');
        return r;
      } catch (e) {
        if (exitValue === undefined) proc.kill('SIGKILL');
        throw e;
      }
    },
  };
}
