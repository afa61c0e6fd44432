// Main-thread CPU per large `101` message (pusher /v1/trigger/listen, pcm16 at 16 kHz): the
// previous build (every message one ring record, ≤ 16,368 bytes) against the new build (messages
// up to MAX_MESSAGE_BYTES, split into ~8 KB records at sample boundaries), side by side in one run.
// Figures, not pass/fail.
//
//   npx tsx scripts/bench-large-messages.ts [--runs 3] [--seconds 15] [--quick] [--prev /tmp/lc3p-prev]
//        [--new DIR] [--sizes 16012,32012,960012] [--clients 20] [--rate 4] [--min-messages 200]
//        [--warmup 3] [--json FILE]
//
// Per (build, size) case: a fresh service (SHARDS=2, STORE=local, LOG_LEVEL=warn, private cloud
// sync on — the default — in a temp dir that is removed afterwards); a load generator in a CHILD
// process (scripts/lib/large-messages.ts) with C clients, each sending one 101 of the given size
// every T ms, T chosen so that every case moves --rate MiB/s in total; the service's main-thread
// CPU (/proc/PID/task/PID/stat) over the window after a warm-up. A case lasts --seconds, longer
// when needed for --min-messages inside the window. The server's count is
// pusher_audio_bytes_received_total / audio bytes per message; it must equal what was sent, else
// the case is marked LOSS. The previous build is not run for sizes it refuses (> --prev-max).
// The generator shares the machine's cores with the service: its CPU is shown next to it.
import { rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { checkBuild, sleep, spawnGenerator, startServiceAt, type GenChild, type GenResult, type RootService } from './lib/large-messages.js';
import { metricSum, type PromSample } from './lib/prom.js';
import { repoRoot } from './lib/service.js';
import { MiB, table } from './lib/stats.js';

type Build = 'prev' | 'new';

interface Options {
  runs: number;
  seconds: number;
  warmup: number;
  clients: number;
  /** Total MiB/s every case moves. */
  rate: number;
  sizes: number[];
  minMessages: number;
  prevMax: number;
  idleMs: number;
  roots: Record<Build, string>;
  quick: boolean;
}

interface CaseResult {
  run: number;
  build: Build;
  messageBytes: number;
  clients: number;
  periodMs: number;
  sendSeconds: number;
  windowS: number;
  sent: number;
  /** Messages the server counted over the whole case (audio bytes / audio per message). */
  counted: number;
  /** Messages the server counted inside the measured window. */
  windowMsgs: number;
  loss: boolean;
  serverCloses: Record<string, number>;
  closeReasons: Record<string, string>;
  mainS: number;
  usPerMsg: number;
  usPerMB: number;
  /** Main thread with the clients connected and idle, µs per second; per message net of that. */
  idleUsPerS: number;
  netUsPerMsg: number;
  /** Main thread's run-queue wait (runnable, no core free) as a fraction of the window. */
  mainWait: number;
  cores: { main: number; service: number; gen: number };
  pausedAtEnd: number;
  rescues: number;
  gen: Pick<GenResult, 'deferred' | 'maxQueued' | 'drained' | 'loopDelayMaxMs' | 'errors'>;
  load1: number;
  elapsedS: number;
}

const log = (line: string) => console.error(`[bench-large] ${line}`);
const sum = (m: readonly PromSample[], name: string) => metricSum(m, name) ?? 0;

/** Cleanups for whatever is running now (SIGINT/SIGTERM and the global deadline call them). */
const running = new Set<() => Promise<unknown>>();

async function cleanupAll(): Promise<void> {
  await Promise.allSettled([...running].map((f) => f()));
}

/** Sleeps `ms`, failing at once if the generator or the service ends meanwhile. */
async function watchedSleep(ms: number, gen: GenChild, svc: RootService, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!gen.alive()) {
      const r = await gen.waitResult(500).catch((e: unknown) => (e instanceof Error ? e.message : String(e)));
      throw new Error(`the load generator ended during ${what}, before its time was up: ${typeof r === 'string' ? r : 'it reported a result early'}`);
    }
    if (!svc.alive()) throw new Error(`the service exited during ${what}:\n${svc.logTail()}`);
    await sleep(Math.min(250, Math.max(1, end - Date.now())));
  }
}

/** Main-thread CPU from schedstat (ns) where the kernel has it, else from /proc stat ticks. */
function mark(svc: RootService, gen: GenChild) {
  const c = svc.cpu();
  const precise = Number.isFinite(c.mainRunS);
  return { t: performance.now() / 1000, main: precise ? c.mainRunS : c.main, wait: c.mainWaitS, service: c.process, gen: gen.cpu() };
}

async function runCase(o: Options, run: number, build: Build, messageBytes: number): Promise<CaseResult> {
  const audio = messageBytes - 12;
  const msgRate = (o.rate * MiB) / messageBytes; // messages/s, all clients
  const periodMs = (o.clients * 1000) / msgRate;
  const tail = 1;
  const windowS = Math.max(o.seconds - o.warmup - tail, Math.ceil(o.minMessages / msgRate));
  const sendSeconds = o.warmup + windowS + tail;
  const label = `run ${run} ${build} ${messageBytes.toLocaleString('en')} B`;
  log(`${label}: ${o.clients} clients × one 101 every ${periodMs.toFixed(1)} ms (${msgRate.toFixed(1)} msgs/s, ${o.rate} MiB/s), ${sendSeconds} s (window ${windowS} s after ${o.warmup} s warm-up)`);
  const t0 = performance.now();
  const svc = await startServiceAt(o.roots[build], { env: { SHARDS: '2', STORE: 'local', LOG_LEVEL: 'warn' } });
  const stopSvc = () => svc.stop();
  running.add(stopSvc);
  let gen: GenChild | undefined;
  const killGen = async () => gen?.kill();
  running.add(killGen);
  try {
    gen = spawnGenerator({
      host: '127.0.0.1',
      port: svc.port,
      clients: o.clients,
      messageBytes,
      sampleRate: 16000,
      periodMs,
      idleMs: o.idleMs,
      sendSeconds,
      uidPrefix: `lm-r${run}-${build}-${messageBytes}-c`,
      connectTimeoutMs: 30000,
      drainTimeoutMs: 30000,
    });
    await gen.waitConnected(45000);
    // The idle main thread (sweeps, timers, 20 open sessions): measured inside the idle period.
    await watchedSleep(200, gen, svc, 'the idle period');
    const i0 = mark(svc, gen);
    await watchedSleep(Math.max(100, o.idleMs - 400), gen, svc, 'the idle period');
    const i1 = mark(svc, gen);
    await gen.waitSending(o.idleMs + 10000);
    await watchedSleep(o.warmup * 1000, gen, svc, `the ${o.warmup} s warm-up`);
    const m0 = await svc.scrape();
    const c0 = mark(svc, gen);
    await watchedSleep(windowS * 1000, gen, svc, `the ${windowS} s measured window`);
    const c1 = mark(svc, gen);
    const m1 = await svc.scrape();
    const r = await gen.waitResult((tail + 30 + 5 + 15) * 1000);
    const idleRate = (i1.main - i0.main) / (i1.t - i0.t); // core fraction
    // The server has read every message of a connection before its close frame; the counter
    // is folded in at scrape time. Give it a moment anyway, then compare.
    let counted = 0;
    const settleEnd = Date.now() + 15000;
    for (;;) {
      counted = sum(await svc.scrape(), 'pusher_audio_bytes_received_total') / audio;
      if (counted >= r.sent || Date.now() > settleEnd) break;
      await sleep(250);
    }
    const bytes0 = sum(m0, 'pusher_audio_bytes_received_total');
    const bytes1 = sum(m1, 'pusher_audio_bytes_received_total');
    const windowMsgs = (bytes1 - bytes0) / audio;
    const dt = c1.t - c0.t;
    const mainS = c1.main - c0.main;
    const loss = counted !== r.sent || Object.keys(r.serverCloses).length > 0 || !r.drained;
    const res: CaseResult = {
      run,
      build,
      messageBytes,
      clients: o.clients,
      periodMs,
      sendSeconds,
      windowS: dt,
      sent: r.sent,
      counted,
      windowMsgs,
      loss,
      serverCloses: r.serverCloses,
      closeReasons: r.closeReasons,
      mainS,
      usPerMsg: (mainS * 1e6) / windowMsgs,
      usPerMB: (mainS * 1e6) / ((windowMsgs * messageBytes) / MiB),
      idleUsPerS: idleRate * 1e6,
      netUsPerMsg: ((mainS - idleRate * dt) * 1e6) / windowMsgs,
      mainWait: (c1.wait - c0.wait) / dt,
      cores: { main: mainS / dt, service: (c1.service - c0.service) / dt, gen: (c1.gen - c0.gen) / dt },
      pausedAtEnd: sum(m1, 'pusher_sockets_paused'),
      rescues: sum(m1, 'pusher_paused_rescues_total') - sum(m0, 'pusher_paused_rescues_total'),
      gen: { deferred: r.deferred, maxQueued: r.maxQueued, drained: r.drained, loopDelayMaxMs: r.loopDelayMaxMs, errors: r.errors },
      load1: loadavg()[0] ?? NaN,
      elapsedS: (performance.now() - t0) / 1000,
    };
    const closes = Object.entries(r.serverCloses).map(([k, v]) => `${k}×${v}${r.closeReasons[k] ? ` (${r.closeReasons[k]})` : ''}`);
    log(
      `${label}: sent ${r.sent}, server counted ${counted}${loss ? ' — LOSS' : ''}${closes.length ? `, server closes ${closes.join(', ')}` : ''}; ` +
        `window ${windowMsgs} msgs, main ${(res.cores.main * 100).toFixed(1)}% = ${res.usPerMsg.toFixed(1)} µs/msg (net of idle ${res.netUsPerMsg.toFixed(1)}), ${res.usPerMB.toFixed(0)} µs/MB; idle main ${res.idleUsPerS.toFixed(0)} µs/s; main run-queue wait ${(res.mainWait * 100).toFixed(1)}%`,
    );
    return res;
  } finally {
    gen?.kill();
    const stopped = await svc.stop();
    running.delete(stopSvc);
    running.delete(killGen);
    if (stopped !== 0) log(`${label}: the service exited with ${stopped} on SIGTERM; log kept in ${svc.dir}`);
    else rmSync(svc.dir, { recursive: true, force: true });
  }
}

function kb(bytes: number): string {
  return bytes.toLocaleString('en');
}

function range(xs: number[], digits: number): string {
  const ok = xs.filter((x) => Number.isFinite(x));
  if (ok.length === 0) return '—';
  const lo = Math.min(...ok);
  const hi = Math.max(...ok);
  const f = (x: number) => x.toLocaleString('en', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  return ok.length === 1 || f(lo) === f(hi) ? f(lo) : `${f(lo)}–${f(hi)}`;
}

function status(r: CaseResult): string {
  if (!r.loss) return 'ok';
  const closes = Object.entries(r.serverCloses).map(([k, v]) => `${k}×${v}`);
  return ['LOSS', ...closes, r.gen.drained ? '' : 'undrained'].filter(Boolean).join(' ');
}

function format(o: Options, results: CaseResult[], skipped: number[], la: { start: number[]; end: number[] }, machine: string): string {
  const out: string[] = [machine];
  out.push(`load: ${o.clients} clients, every case ${o.rate} MiB/s in total (message rate = rate / size); window after a ${o.warmup} s warm-up; MB = 2^20 bytes of WebSocket message`);
  out.push('main-thread CPU from /proc/PID/task/PID/schedstat; "net" subtracts the main thread\'s idle rate (same clients connected, nothing sent, measured just before); runq wait = main thread runnable but no core free');
  out.push(`previous build: ${o.roots.prev}; new build: ${o.roots.new}`);
  out.push(`load average (1/5/15 min) at start ${la.start.map((x) => x.toFixed(2)).join(' ')}, at end ${la.end.map((x) => x.toFixed(2)).join(' ')}`);
  const rows = [['run', 'build', 'message B', 'period ms', 'window s', 'sent', 'counted', 'status', 'µs/msg', 'µs/MB', 'net µs/msg', 'main', 'idle µs/s', 'runq wait', 'svc cores', 'gen cores', 'load1']];
  for (const r of results) {
    rows.push([
      String(r.run),
      r.build,
      kb(r.messageBytes),
      r.periodMs.toFixed(1),
      r.windowS.toFixed(1),
      String(r.sent),
      String(r.counted),
      status(r),
      r.usPerMsg.toFixed(1),
      r.usPerMB.toFixed(0),
      r.netUsPerMsg.toFixed(1),
      `${(r.cores.main * 100).toFixed(1)}%`,
      r.idleUsPerS.toFixed(0),
      `${(r.mainWait * 100).toFixed(1)}%`,
      r.cores.service.toFixed(2),
      r.cores.gen.toFixed(2),
      r.load1.toFixed(2),
    ]);
  }
  out.push('', 'per case:', table(rows).replace(/^/gm, '  '));
  const runs = [...new Set(results.map((r) => r.run))];
  const keys = [...new Map(results.map((r) => [`${r.build}/${r.messageBytes}`, r] as const)).values()].sort((a, b) => a.messageBytes - b.messageBytes || (a.build === 'prev' ? -1 : 1));
  const sum2 = [['case', 'runs', 'sent', 'counted', 'status', 'main µs/msg', 'main µs/MB', 'net µs/msg', 'main core', 'new/prev', 'net new/prev']];
  for (const k of keys) {
    const xs = results.filter((r) => r.build === k.build && r.messageBytes === k.messageBytes);
    let ratio = '';
    let netRatio = '';
    if (k.build === 'new') {
      const pairs = runs.flatMap((run) => {
        const n = results.find((r) => r.run === run && r.build === 'new' && r.messageBytes === k.messageBytes);
        const p = results.find((r) => r.run === run && r.build === 'prev' && r.messageBytes === k.messageBytes);
        return n && p && !n.loss && !p.loss ? [[n, p] as const] : [];
      });
      ratio = pairs.length ? range(pairs.map(([n, p]) => n.usPerMsg / p.usPerMsg), 2) : skipped.includes(k.messageBytes) ? 'prev refuses' : '—';
      netRatio = pairs.length ? range(pairs.map(([n, p]) => n.netUsPerMsg / p.netUsPerMsg), 2) : ratio;
    }
    sum2.push([
      `${k.build} ${kb(k.messageBytes)} B`,
      String(xs.length),
      range(xs.map((r) => r.sent), 0),
      range(xs.map((r) => r.counted), 0),
      xs.some((r) => r.loss) ? `LOSS in ${xs.filter((r) => r.loss).length}` : 'ok',
      range(xs.map((r) => r.usPerMsg), 1),
      range(xs.map((r) => r.usPerMB), 0),
      range(xs.map((r) => r.netUsPerMsg), 1),
      range(xs.map((r) => r.cores.main * 100), 1) + '%',
      ratio,
      netRatio,
    ]);
  }
  out.push('', `ranges (min–max over ${runs.length} run${runs.length === 1 ? '' : 's'}):`, table(sum2).replace(/^/gm, '  '));
  if (skipped.length) out.push(`previous build not run for ${skipped.map(kb).join(', ')} B: it closes any message over ${kb(o.prevMax)} bytes with 1009`);
  const odd: string[] = [];
  for (const r of results) {
    const tag = `run ${r.run} ${r.build} ${kb(r.messageBytes)} B`;
    if (r.gen.deferred > 0) odd.push(`${tag}: ${r.gen.deferred} generator ticks held a due message (socket buffer ≥ cap; max queued ${kb(r.gen.maxQueued)} B)`);
    if (r.pausedAtEnd > 0 || r.rescues > 0) odd.push(`${tag}: sockets paused at window end ${r.pausedAtEnd}, paused-socket rescues ${r.rescues}`);
    if (r.gen.loopDelayMaxMs > 200) odd.push(`${tag}: generator event loop stalled up to ${r.gen.loopDelayMaxMs.toFixed(0)} ms`);
    if (Object.keys(r.gen.errors).length) odd.push(`${tag}: generator socket errors ${JSON.stringify(r.gen.errors)}`);
    if (Object.keys(r.closeReasons).length) odd.push(`${tag}: server close reasons ${JSON.stringify(r.closeReasons)}`);
  }
  if (odd.length) out.push('', 'notes:', ...odd.map((x) => `  ${x}`));
  return out.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: 'string', default: '1' },
      seconds: { type: 'string' },
      warmup: { type: 'string' },
      quick: { type: 'boolean', default: false },
      prev: { type: 'string', default: '/tmp/lc3p-prev' },
      new: { type: 'string' },
      sizes: { type: 'string', default: '16012,32012,960012' },
      clients: { type: 'string', default: '20' },
      rate: { type: 'string', default: '4' },
      'min-messages': { type: 'string' },
      'prev-max': { type: 'string', default: '16368' },
      json: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log('usage: npx tsx scripts/bench-large-messages.ts [--runs N] [--seconds S] [--quick] [--prev DIR] [--new DIR] [--sizes B,B,…] [--clients C] [--rate MiB/s] [--min-messages N] [--warmup S] [--prev-max B] [--json FILE]');
    return 0;
  }
  const quick = values.quick;
  const num = (name: string, v: string | undefined, dflt: number, lo: number, hi: number) => {
    const x = v === undefined ? dflt : Number(v);
    if (!Number.isFinite(x) || x < lo || x > hi) throw new Error(`--${name} must be a number in [${lo}, ${hi}], got ${v}`);
    return x;
  };
  const o: Options = {
    quick,
    runs: num('runs', values.runs, 1, 1, 10),
    seconds: num('seconds', values.seconds, quick ? 7 : 15, 4, 600),
    warmup: num('warmup', values.warmup, quick ? 2 : 3, 1, 60),
    clients: num('clients', values.clients, 20, 1, 500),
    rate: num('rate', values.rate, 4, 0.1, 200),
    minMessages: num('min-messages', values['min-messages'], quick ? 40 : 200, 1, 1e6),
    prevMax: num('prev-max', values['prev-max'], 16368, 16, 1 << 30),
    idleMs: quick ? 1500 : 3000,
    sizes: values.sizes.split(',').map((s) => num('sizes', s.trim(), 0, 14, 16 * MiB)),
    roots: { prev: resolve(values.prev), new: resolve(values.new ?? repoRoot()) },
  };
  for (const s of o.sizes) if ((s - 12) % 2 !== 0) throw new Error(`--sizes: ${s} − 12 bytes of PCM16 is not a whole number of samples`);
  for (const b of ['prev', 'new'] as const) {
    const missing = checkBuild(o.roots[b]);
    if (missing) throw new Error(`${b === 'prev' ? '--prev' : '--new'}: ${missing}`);
  }
  const skipped = o.sizes.filter((s) => s > o.prevMax);
  // Estimated length, for the global bound (every wait inside also has its own deadline).
  let estS = 0;
  for (const s of o.sizes) {
    const msgRate = (o.rate * MiB) / s;
    const caseS = o.idleMs / 1000 + o.warmup + Math.max(o.seconds - o.warmup - 1, Math.ceil(o.minMessages / msgRate)) + 1 + 8;
    estS += caseS * (s <= o.prevMax ? 2 : 1);
  }
  estS *= o.runs;
  const machine = `machine: ${availableParallelism()} cores, ${cpus()[0]?.model ?? '?'}, node ${process.version}; the generator is a separate process on the same cores`;
  log(machine);
  log(`${o.runs} run(s) of ${o.sizes.length} size(s), about ${Math.ceil(estS / 60)} min; every process is stopped at the end (global bound ${Math.ceil((estS * 2 + 300) / 60)} min)`);
  if (skipped.length) log(`previous build skipped for ${skipped.map(kb).join(', ')} B (it accepts messages of at most ${kb(o.prevMax)} bytes)`);
  const bound = setTimeout(() => {
    log(`global time bound of ${Math.ceil(estS * 2 + 300)} s reached: stopping everything`);
    void cleanupAll().finally(() => process.exit(1));
  }, (estS * 2 + 300) * 1000);
  bound.unref();

  const la = { start: loadavg(), end: [] as number[] };
  const results: CaseResult[] = [];
  for (let run = 1; run <= o.runs; run++) {
    for (const size of o.sizes) {
      // Both builds back to back at each size they both accept; the order alternates per run.
      const builds: Build[] = size > o.prevMax ? ['new'] : run % 2 === 1 ? ['prev', 'new'] : ['new', 'prev'];
      for (const b of builds) results.push(await runCase(o, run, b, size));
    }
  }
  la.end = loadavg();
  clearTimeout(bound);
  console.log(format(o, results, skipped, la, machine));
  if (values.json) {
    writeFileSync(values.json, JSON.stringify({ options: o, loadAverage: la, results }, null, 1) + '\n');
    console.log(`\nJSON: ${values.json}`);
  }
  return results.some((r) => r.loss) ? 1 : 0;
}

if (process.argv[1] && import.meta.url === `file://${process.argv[1]}`) {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      log(`${sig}: stopping the service and the generator`);
      void cleanupAll().finally(() => process.exit(130));
    });
  }
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      console.error(`[bench-large] ERROR: ${e instanceof Error ? e.message : String(e)}`);
      void cleanupAll().finally(() => process.exit(1));
    },
  );
}
