// The service under test as a child process: `node bin/lc3-pusher.cjs serve` from the compiled
// build, on a free loopback port, with its own temporary spool and store, stopped with SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process';
import { allocatorEnv } from '../../src/util/allocator.js';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, writeFileSync, type WriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readProcCpu, readProcStatus, type ProcStatus } from './proc.js';
import { metricBy, scrape, type PromSample } from './prom.js';
import { median } from './stats.js';
import { until, within } from './wait.js';

/** The repository root (holds bin/lc3-pusher.cjs), from the source tree or from dist/. */
export function repoRoot(from = fileURLToPath(import.meta.url)): string {
  for (let dir = dirname(from), i = 0; i < 6; i++, dir = dirname(dir)) {
    if (existsSync(join(dir, 'bin', 'lc3-pusher.cjs')) && existsSync(join(dir, 'package.json'))) return dir;
  }
  throw new Error(`cannot find the repository root (bin/lc3-pusher.cjs) above ${from}`);
}

/** A TCP port that was free a moment ago on 127.0.0.1 (the service is started on it next). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface ServiceOptions {
  /** The lc3-pusher checkout to run (default: this one), e.g. a worktree of an earlier build. */
  root?: string;
  /** Base directory for spool/, store/, settings and the log (default: a new temp dir). */
  dir?: string;
  /** Service environment (PORT, HOST, SPOOL_DIR, STORE_DIR, LOG_LEVEL are set by us unless given). */
  env?: Record<string, string>;
  /** LC3_PUSHER_TEST_FAULTS for the child (positive controls, slow shard). */
  faults?: string | undefined;
  /** Writes SETTINGS_FILE with this content. */
  settings?: object;
  /** Extra node flags (e.g. --cpu-prof). */
  nodeArgs?: string[];
  readyTimeoutMs?: number;
}

export interface ChildService {
  pid: number;
  port: number;
  baseUrl: string;
  dir: string;
  spoolDir: string;
  storeDir: string;
  logFile: string;
  proc: ChildProcess;
  /** Resolves with the exit code (or signal name) when the process ends. */
  exited: Promise<number | string>;
  alive(): boolean;
  scrape(): Promise<PromSample[]>;
  /** Current RSS and CPU seconds, undefined once the process has gone. */
  rss(): number | undefined;
  /** Current memory figures from /proc (RSS and its anonymous/file/shared parts). */
  memory(): ProcStatus | undefined;
  cpuSeconds(): number | undefined;
  /** The last lines the service logged. */
  logTail(lines?: number): string;
  /** SIGTERM, then SIGKILL after `timeoutMs`; resolves with the exit code or signal. */
  stop(timeoutMs?: number): Promise<number | string>;
}

export async function startService(opts: ServiceOptions = {}): Promise<ChildService> {
  const root = opts.root ?? repoRoot();
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'lc3p-chaos-'));
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const env: Record<string, string> = {
    // A clean environment: only what node needs, not whatever PORT/SHARDS the caller's shell has.
    // MALLOC_CONF: jemalloc's own settings (e.g. prof:true for a heap profile of the service).
    ...Object.fromEntries(['PATH', 'HOME', 'TMPDIR', 'LC3_WASM', 'MALLOC_CONF'].flatMap((k) => (process.env[k] ? [[k, process.env[k]!]] : []))),
    HOST: '127.0.0.1',
    SPOOL_DIR: join(dir, 'spool'),
    STORE_DIR: join(dir, 'store'),
    LOG_LEVEL: 'warn',
    DRAIN_TIMEOUT_S: '10',
    // The allocator the launcher (bin/lc3-pusher) picks by default: this spawns node directly, so it
    // arranges the same (jemalloc when installed), or every benchmark would measure glibc malloc.
    // A caller that chose (the chaos harness's --allocator) sets LC3_PUSHER_ALLOCATOR itself.
    ...(opts.env?.LC3_PUSHER_ALLOCATOR ? {} : allocatorEnv(undefined).env),
    // Node flags for the service alone (e.g. --perf-basic-prof for `perf report`); NODE_OPTIONS
    // itself is not passed on: under tap it carries the test runner's loaders.
    ...(process.env.LC3_SERVICE_NODE_OPTIONS ? { NODE_OPTIONS: process.env.LC3_SERVICE_NODE_OPTIONS } : {}),
    ...opts.env,
    PORT: String(port),
  };
  if (opts.faults) env.LC3_PUSHER_TEST_FAULTS = opts.faults;
  if (opts.settings) {
    env.SETTINGS_FILE = join(dir, 'settings.json');
    writeFileSync(env.SETTINGS_FILE, JSON.stringify(opts.settings, null, 2));
  }
  const logFile = join(dir, 'service.log');
  const log: WriteStream = createWriteStream(logFile);
  const tail: string[] = [];
  const proc = spawn(process.execPath, [...(opts.nodeArgs ?? []), join(root, 'bin', 'lc3-pusher.cjs'), 'serve'], {
    cwd: dir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const onData = (chunk: Buffer) => {
    log.write(chunk);
    tail.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    tail.splice(0, Math.max(0, tail.length - 200));
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  let exitValue: number | string | undefined;
  const exited = new Promise<number | string>((resolve) => {
    proc.once('exit', (code, signal) => {
      exitValue = (code ?? signal)!;
      log.end();
      resolve(exitValue);
    });
  });
  const baseUrl = `http://127.0.0.1:${port}`;
  const logTail = (lines = 20) => tail.slice(-lines).join('\n');
  // Generous: on a busy machine a cold start (wasm, two workers) can take many seconds.
  const readyMs = opts.readyTimeoutMs ?? 120000;
  const deadline = Date.now() + readyMs;
  for (;;) {
    if (exitValue !== undefined) throw new Error(`service exited (${exitValue}) before it was ready:\n${logTail()}`);
    const ok = await fetch(`${baseUrl}/readyz`, { signal: AbortSignal.timeout(1000) }).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`service not ready after ${readyMs} ms:\n${logTail()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const pid = proc.pid!;
  return {
    pid,
    port,
    baseUrl,
    dir,
    spoolDir: env.SPOOL_DIR!,
    storeDir: env.STORE_DIR!,
    logFile,
    proc,
    exited,
    alive: () => exitValue === undefined,
    scrape: () => scrape(baseUrl), // bounded: prom.ts aborts it after 5 s
    rss: () => readProcStatus(pid)?.rss,
    memory: () => readProcStatus(pid),
    cpuSeconds: () => readProcCpu(pid),
    logTail,
    stop: async (timeoutMs = 20000) => {
      if (exitValue !== undefined) return exitValue;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
      try {
        // SIGKILL cannot be ignored; the bound only guards against a lost exit event.
        return await within(exited, timeoutMs + 10_000, `the service (pid ${pid}) to exit after SIGTERM and SIGKILL`);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/**
 * Waits until every thread of the service (main, each shard, the uploader) has run a full GC since
 * this call. Why: V8's memory reducer runs each thread's first full GC some 7-8 s after start, and
 * it frees 40-50 MiB of start-up garbage (module loading, the wasm compile) at once. An RSS baseline
 * taken before it is that much too high, and a per-session delta across it can come out negative
 * (100 idle sessions: -47.5 KiB each, in CI). No GC is forced: the figures stay raw RSS. The period
 * rule (src/util/gc-period.ts: a full GC in any thread 30 s without one) bounds the wait.
 */
export async function startupCollected(svc: ChildService, timeoutMs = 45_000): Promise<void> {
  const at = metricBy(await svc.scrape(), 'pusher_full_gcs_total', 'thread');
  let waiting = Object.keys(at);
  if (waiting.length === 0) throw new Error('the service reports no pusher_full_gcs_total: cannot tell when its start-up garbage is collected');
  await until(
    async () => {
      const now = metricBy(await svc.scrape(), 'pusher_full_gcs_total', 'thread');
      waiting = waiting.filter((thread) => !((now[thread] ?? 0) > at[thread]!));
      return waiting.length === 0;
    },
    timeoutMs,
    "a full GC in every thread after the service's start (V8's memory reducer, or the 30 s period rule)",
    { everyMs: 250, last: () => `still waiting for ${waiting.join(', ')}` },
  );
}

/**
 * The service's RSS once it holds still: sampled every 250 ms until the samples of the last
 * `windowMs` span at most `toleranceBytes`; resolves with their median. After a full GC jemalloc
 * hands the freed pages back over its dirty_decay_ms (10 s), so one sample taken then is still on
 * its way down. (A window that also demanded no full GC for 11 s took 40 s and more to open: the
 * period rule runs one in each idle thread every 30 s.)
 */
export async function steadyRss(svc: ChildService, o: { windowMs?: number; toleranceBytes?: number; timeoutMs?: number } = {}): Promise<number> {
  const everyMs = 250;
  const n = Math.max(2, Math.round((o.windowMs ?? 3000) / everyMs));
  const tolerance = o.toleranceBytes ?? 2 ** 20;
  const xs: number[] = [];
  const span = () => Math.max(...xs) - Math.min(...xs);
  await until(
    () => {
      const rss = svc.rss();
      if (rss === undefined) throw new Error(`the service (pid ${svc.pid}) exited while its RSS was being sampled`);
      xs.push(rss);
      if (xs.length > n) xs.shift();
      return xs.length === n && span() <= tolerance;
    },
    o.timeoutMs ?? 30_000,
    `the service's RSS to hold within ${(tolerance / 2 ** 20).toFixed(1)} MiB for ${((n * everyMs) / 1000).toFixed(1)} s`,
    { everyMs, last: () => `${(span() / 2 ** 20).toFixed(1)} MiB over the last ${xs.length} samples` },
  );
  return median(xs);
}
