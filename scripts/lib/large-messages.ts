// Pieces of scripts/bench-large-messages.ts: the service started from ANY build root (e.g. a git
// worktree of the previous commit), and a load generator for large `101` messages that runs in a
// CHILD process (this same file, run with `--generator SPEC`), so its CPU is never the service's.
//
// Every wait here has a deadline and says what it waited for; the generator's early exit rejects
// every pending wait at once (a generator that died must end the benchmark, never hang it).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { WebSocket } from 'ws';
import { clientFrame } from './loadgen.js';
import { readProcCpu, readThreadsCpu } from './proc.js';
import type { PromSample } from './prom.js';
import { startService } from './service.js';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Rejects with `what` after `ms` unless `p` settles first. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${(ms / 1000).toFixed(0)} s waiting for ${what}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------------
// The service, from a given build root.

export interface RootService {
  root: string;
  pid: number;
  port: number;
  baseUrl: string;
  dir: string;
  logFile: string;
  proc: ChildProcess;
  exited: Promise<number | string>;
  alive(): boolean;
  scrape(): Promise<PromSample[]>;
  /**
   * CPU seconds: the whole process and its main thread (tid = pid) from /proc stat (10 ms ticks);
   * the main thread's run and run-queue wait from schedstat (ns); NaN once it has gone.
   */
  cpu(): { process: number; main: number; mainRunS: number; mainWaitS: number };
  rss(): number | undefined;
  logTail(lines?: number): string;
  stop(timeoutMs?: number): Promise<number | string>;
}

/**
 * Nanoseconds a thread has run on a CPU and waited runnable in the run queue
 * (/proc/PID/task/TID/schedstat); NaN when unavailable.
 */
export function readSchedstat(pid: number, tid = pid): { runNs: number; waitNs: number } {
  try {
    const [run, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
    return { runNs: run ?? NaN, waitNs: wait ?? NaN };
  } catch {
    return { runNs: NaN, waitNs: NaN };
  }
}

/** Checks that `root` holds a built lc3-pusher (bin, dist, wasm) and says what is missing. */
export function checkBuild(root: string): string | undefined {
  for (const f of ['bin/lc3-pusher.cjs', 'dist/src/cli.js', 'wasm/lc3.wasm']) {
    if (!existsSync(join(root, f))) return `${root}: no ${f} (build it: npm ci / npm run build)`;
  }
  return undefined;
}

/** `node ROOT/bin/lc3-pusher.cjs serve` (scripts/lib/service.ts) for the build at `root`, with main-thread CPU figures. */
export async function startServiceAt(root: string, opts: { env?: Record<string, string>; dir?: string; readyTimeoutMs?: number } = {}): Promise<RootService> {
  const missing = checkBuild(root);
  if (missing) throw new Error(missing);
  const svc = await startService({ ...opts, root });
  const pid = svc.pid;
  return {
    ...svc,
    root,
    cpu: () => {
      const s = readSchedstat(pid);
      return { process: readProcCpu(pid) ?? NaN, main: readThreadsCpu(pid)[pid] ?? NaN, mainRunS: s.runNs / 1e9, mainWaitS: s.waitNs / 1e9 };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The generator (child side).

export interface GenSpec {
  host: string;
  port: number;
  clients: number;
  /** Whole WebSocket message: 4-byte header 101 + 8-byte timestamp + PCM16 (bytes − 12, even). */
  messageBytes: number;
  sampleRate: number;
  /** Each client sends one message every periodMs (clients are spread evenly over one period). */
  periodMs: number;
  /** After every client has connected, they stay idle this long (the parent measures the idle main thread). */
  idleMs: number;
  /** Then sending lasts this long. */
  sendSeconds: number;
  uidPrefix: string;
  connectTimeoutMs: number;
  /** After sending: how long the sockets may take to hand everything to the kernel and close. */
  drainTimeoutMs: number;
}

export interface GenResult {
  /** 101 messages written to the sockets, and their audio (PCM) bytes. */
  sent: number;
  audioBytes: number;
  perClient: number[];
  /** Close codes of closes the server started (any is a failure of the case), with a sample reason. */
  serverCloses: Record<string, number>;
  closeReasons: Record<string, string>;
  errors: Record<string, number>;
  /** Ticks on which a due message waited because the socket still held ≥ the cap. */
  deferred: number;
  /** Most bytes ever queued in one socket's userland buffer. */
  maxQueued: number;
  /** Every socket emptied its buffer, and every close handshake finished, within the deadline. */
  drained: boolean;
  cleanCloses: number;
  elapsedS: number;
  loopDelayMaxMs: number;
}

type GenEvent =
  | { event: 'connected'; afterS: number }
  | { event: 'sending' }
  | { event: 'progress'; t: number; sent: number; open: number }
  | ({ event: 'result' } & GenResult)
  | { event: 'error'; message: string };

function emit(ev: GenEvent): void {
  process.stdout.write(JSON.stringify(ev) + '\n');
}

/** Deterministic PCM16LE: a quiet 440 Hz tone with a little noise (content does not matter to ingest). */
function pcm(bytes: number, sampleRate: number): Buffer {
  const b = Buffer.alloc(bytes);
  let seed = 12345;
  for (let i = 0; i + 1 < bytes; i += 2) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const s = Math.round(3000 * Math.sin((2 * Math.PI * 440 * (i / 2)) / sampleRate) + ((seed >> 16) % 200) - 100);
    b.writeInt16LE(s, i);
  }
  return b;
}

interface GenClient {
  i: number;
  ws: WebSocket;
  sock: Socket | undefined;
  open: boolean;
  closed: boolean;
  weClosed: boolean;
  seq: number;
  start: number;
}

export async function runGenerator(spec: GenSpec): Promise<void> {
  const audio = spec.messageBytes - 12;
  if (audio <= 0 || audio % 2 !== 0) throw new Error(`messageBytes ${spec.messageBytes}: the PCM after the 12-byte head must be a positive, even byte count`);
  // Hard bound: whatever happens, this process ends.
  const hardMs = spec.connectTimeoutMs + spec.idleMs + spec.sendSeconds * 1000 + spec.drainTimeoutMs + 15000;
  setTimeout(() => {
    emit({ event: 'error', message: `generator hard limit of ${hardMs / 1000} s reached` });
    process.exit(3);
  }, hardMs).unref();
  // The parent holds our stdin: when it goes away, so do we.
  process.stdin.on('end', () => process.exit(4));
  process.stdin.resume();

  // One frame, copied per message with its own timestamp (a queued buffer must never change).
  const body = Buffer.alloc(spec.messageBytes);
  body.writeUInt32LE(101, 0);
  pcm(audio, spec.sampleRate).copy(body, 12);
  const frame = clientFrame(body);
  const tsOffset = frame.length - spec.messageBytes + 4;
  const audioS = audio / 2 / spec.sampleRate;
  const planned = Math.ceil((spec.sendSeconds * 1000) / spec.periodMs) + 2;
  // Contiguous audio per client, ending about now: all first-sample times lie in the past.
  const stamp0 = Date.now() / 1000 - planned * audioS;
  // A due message waits while its socket still holds this much (the server is not keeping up).
  const cap = 2 * frame.length + (1 << 20);

  const r: GenResult = {
    sent: 0,
    audioBytes: 0,
    perClient: new Array<number>(spec.clients).fill(0),
    serverCloses: {},
    closeReasons: {},
    errors: {},
    deferred: 0,
    maxQueued: 0,
    drained: false,
    cleanCloses: 0,
    elapsedS: 0,
    loopDelayMaxMs: 0,
  };
  const t0 = performance.now();
  let stopping = false;
  let lastTick = performance.now();
  const clients: GenClient[] = [];
  let openCount = 0;
  let failConnect: (e: Error) => void = () => {};
  let allOpen: () => void = () => {};
  const connected = new Promise<void>((resolve, reject) => {
    allOpen = resolve;
    failConnect = reject;
  });
  for (let i = 0; i < spec.clients; i++) {
    const url = `ws://${spec.host}:${spec.port}/v1/trigger/listen?uid=${encodeURIComponent(`${spec.uidPrefix}${i}`)}&sample_rate=${spec.sampleRate}`;
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 1 << 20 });
    const c: GenClient = { i, ws, sock: undefined, open: false, closed: false, weClosed: false, seq: 0, start: 0 };
    clients.push(c);
    ws.on('open', () => {
      c.open = true;
      c.sock = (ws as unknown as { _socket: Socket })._socket;
      if (++openCount === spec.clients) allOpen();
    });
    ws.on('error', (err: Error & { code?: string }) => {
      const k = err.code ?? err.message.slice(0, 60);
      r.errors[k] = (r.errors[k] ?? 0) + 1;
      if (!c.open) failConnect(new Error(`client ${i} could not connect to ${url}: ${err.message}`));
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (!c.open) failConnect(new Error(`client ${i}: connection closed (${code}) before it opened`));
      c.closed = true;
      if (c.weClosed && code === 1000) r.cleanCloses++;
      if (!c.weClosed) {
        const k = String(code);
        r.serverCloses[k] = (r.serverCloses[k] ?? 0) + 1;
        if (reason.length > 0) r.closeReasons[k] ??= reason.toString();
      }
    });
  }
  await within(connected, spec.connectTimeoutMs, `${spec.clients} WebSocket connections to 127.0.0.1:${spec.port}`);
  emit({ event: 'connected', afterS: (performance.now() - t0) / 1000 });
  await sleep(spec.idleMs);
  const lost = clients.filter((c) => c.closed).length;
  if (lost > 0) throw new Error(`${lost} client(s) were closed by the server while idle: ${JSON.stringify(r.serverCloses)}`);
  emit({ event: 'sending' });

  const sendStart = performance.now();
  for (const c of clients) c.start = sendStart + (c.i * spec.periodMs) / spec.clients;
  const sendEnd = sendStart + spec.sendSeconds * 1000;
  const sendOne = (c: GenClient) => {
    const buf = Buffer.allocUnsafe(frame.length);
    frame.copy(buf);
    buf.writeDoubleLE(stamp0 + c.seq * audioS, tsOffset);
    c.sock!.write(buf);
    c.seq++;
    r.sent++;
    r.audioBytes += audio;
    r.perClient[c.i]!++;
  };
  const tick = () => {
    const now = performance.now();
    r.loopDelayMaxMs = Math.max(r.loopDelayMaxMs, now - lastTick - 5);
    lastTick = now;
    if (stopping) return;
    const until = Math.min(now, sendEnd);
    for (const c of clients) {
      if (!c.open || c.closed || c.weClosed) continue;
      const due = until >= c.start ? Math.floor((until - c.start) / spec.periodMs) + 1 : 0;
      while (c.seq < due) {
        const q = c.sock!.writableLength;
        r.maxQueued = Math.max(r.maxQueued, q);
        if (q >= cap) {
          r.deferred++;
          break;
        }
        sendOne(c);
      }
    }
  };
  lastTick = performance.now();
  const interval = setInterval(tick, 5);
  const progress = setInterval(() => emit({ event: 'progress', t: (performance.now() - sendStart) / 1000, sent: r.sent, open: clients.filter((c) => c.open && !c.closed).length }), 1000);
  await sleep(spec.sendSeconds * 1000 + 20);
  tick();
  stopping = true;
  clearInterval(interval);
  // Everything written must leave the userland buffers, then every client closes gracefully: the
  // server reads all of a connection's messages before its close frame.
  const drainEnd = Date.now() + spec.drainTimeoutMs;
  while (clients.some((c) => !c.closed && (c.sock?.writableLength ?? 0) > 0) && Date.now() < drainEnd) await sleep(20);
  const buffersEmpty = clients.every((c) => c.closed || (c.sock?.writableLength ?? 0) === 0);
  for (const c of clients) {
    if (c.closed) continue;
    c.weClosed = true;
    c.ws.close(1000, 'bye');
  }
  while (clients.some((c) => !c.closed) && Date.now() < drainEnd + 5000) await sleep(20);
  const allClosed = clients.every((c) => c.closed);
  for (const c of clients) if (!c.closed) c.ws.terminate();
  clearInterval(progress);
  r.drained = buffersEmpty && allClosed;
  r.elapsedS = (performance.now() - sendStart) / 1000;
  emit({ event: 'result', ...r });
}

// ---------------------------------------------------------------------------------------------
// The generator (parent side).

export interface GenChild {
  pid: number;
  proc: ChildProcess;
  alive(): boolean;
  /** Exit code or signal once the child has ended. */
  exitValue(): number | string | undefined;
  /** Resolves when the child says so; rejects if it exits first or the deadline passes. */
  waitConnected(ms: number): Promise<void>;
  /** Resolves when the idle period is over and sending starts. */
  waitSending(ms: number): Promise<void>;
  waitResult(ms: number): Promise<GenResult>;
  progress(): { t: number; sent: number; open: number };
  /** The child's CPU seconds so far (NaN once it has gone). */
  cpu(): number;
  /** Last lines the child wrote to stderr. */
  stderrTail(): string;
  kill(): void;
}

const THIS_FILE = fileURLToPath(import.meta.url);

/**
 * Runs this file as `node [tsx loader flags] large-messages.(ts|js) --generator SPEC`: under tsx the
 * parent's execArgv carries the loader, from dist/ it is plain node.
 */
export function spawnGenerator(spec: GenSpec): GenChild {
  const args = [...process.execArgv.filter((a) => !a.startsWith('--inspect') && !a.startsWith('--cpu-prof')), THIS_FILE, '--generator', JSON.stringify(spec)];
  const proc = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let exitValue: number | string | undefined;
  let last = { t: 0, sent: 0, open: 0 };
  const seen = new Set<string>();
  let result: GenResult | undefined;
  let childError: string | undefined;
  const err: string[] = [];
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of waiters) w();
  };
  proc.stderr!.on('data', (chunk: Buffer) => {
    err.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    err.splice(0, Math.max(0, err.length - 30));
  });
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    let ev: GenEvent;
    try {
      ev = JSON.parse(line) as GenEvent;
    } catch {
      return;
    }
    seen.add(ev.event);
    if (ev.event === 'progress') last = { t: ev.t, sent: ev.sent, open: ev.open };
    else if (ev.event === 'result') {
      const { event: _e, ...rest } = ev;
      result = rest;
    } else if (ev.event === 'error') childError = ev.message;
    wake();
  });
  // Exit is noticed only after stdout has been read to its end, so a final result is never lost.
  proc.once('exit', (code, signal) => {
    exitValue = (code ?? signal)!;
    setTimeout(wake, 50);
  });
  proc.once('error', (e) => {
    childError = `cannot start the generator: ${e.message}`;
    exitValue ??= 'spawn-error';
    wake();
  });
  const why = () => `the load generator (pid ${proc.pid}) exited (${exitValue})${childError ? `: ${childError}` : ''}${err.length ? `\n${err.slice(-10).join('\n')}` : ''}`;
  const waitFor = <T>(ready: () => T | undefined, ms: number, what: string): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const check = () => {
        const v = ready();
        if (v !== undefined) done(() => resolve(v));
        else if (exitValue !== undefined) done(() => reject(new Error(`${why()}, while waiting for ${what}`)));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`timed out after ${(ms / 1000).toFixed(0)} s waiting for ${what} (generator pid ${proc.pid}, ${exitValue === undefined ? 'still running' : `exited ${exitValue}`})`))), ms);
      const done = (f: () => void) => {
        clearTimeout(timer);
        waiters.delete(check);
        f();
      };
      waiters.add(check);
      check();
    });
  return {
    pid: proc.pid ?? -1,
    proc,
    alive: () => exitValue === undefined,
    exitValue: () => exitValue,
    waitConnected: (ms) => waitFor(() => (seen.has('connected') ? true : undefined), ms, `all ${spec.clients} generator clients to connect`).then(() => undefined),
    waitSending: (ms) => waitFor(() => (seen.has('sending') ? true : undefined), ms, 'the generator to start sending').then(() => undefined),
    waitResult: (ms) => waitFor(() => result, ms, "the generator's final report (sending done, sockets drained and closed)"),
    progress: () => last,
    cpu: () => (proc.pid ? (readProcCpu(proc.pid) ?? NaN) : NaN),
    stderrTail: () => err.join('\n'),
    kill: () => {
      if (exitValue === undefined) proc.kill('SIGKILL');
    },
  };
}

// Child entry point.
if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url && process.argv[2] === '--generator') {
  const spec = JSON.parse(process.argv[3] ?? '{}') as GenSpec;
  runGenerator(spec).then(
    () => process.exit(0),
    (e: unknown) => {
      emit({ event: 'error', message: e instanceof Error ? e.message : String(e) });
      process.exit(1);
    },
  );
}
