// The chaos harness's short CI mode, end to end: the real service (a child process from the
// compiled build) under device + Omi workloads with churn and abrupt kills must pass every
// check, and the positive control (LC3_PUSHER_TEST_FAULTS=leak_on_close: closing a session
// leaves its decoder alive) must be flagged. No timing assertions: the bounds are loose on purpose.
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, runChaos, runCi, type ChaosOptions } from '../scripts/lib/chaos.js';
import { jemallocPath } from '../src/util/allocator.js';

// The child service is not this test's code: keep the test runner's coverage out of it.
const NO_CHILD_COVERAGE = { _TAPJS_PROCESSINFO_COVERAGE_: '0' };

t.test('CI mode: real service passes, positive control is flagged', async (t) => {
  const dir = t.testdir();
  const r = await runCi(dir, (line) => t.comment(line), NO_CHILD_COVERAGE);
  for (const rep of [r.real, r.control]) for (const line of describe(rep)) t.comment(line);
  t.same(r.messages, [], 'CI verdict has no complaints');
  t.ok(r.ok);
  t.ok(r.real.passed, 'real service: every check passes');
  // The default allocator, as bin/lc3-pusher picks it: jemalloc wherever libjemalloc2 is installed (CI installs it).
  const want = jemallocPath() ? 'jemalloc' : 'system';
  t.same(r.real.allocator, { requested: want, reported: want }, `the real service runs on ${want} and says so in pusher_build_info`);
  t.match(r.real.checks.find((c) => c.name === 'allocator'), { ok: true });
  const failed = r.control.checks.filter((c) => !c.ok).map((c) => c.name);
  t.ok(failed.includes('leftovers'), `positive control flagged by: ${failed.join(', ')}`);
  t.ok(r.control.figures.final.sessions > 0, 'the leaked sessions are what was left');
  for (const rep of [r.real, r.control]) {
    t.ok(rep.load.lc3Frames > 0 && rep.load.kills > 0 && rep.load.reconnects > 0, `${rep.name}: load with churn and kills ran`);
    t.equal(rep.framesReceived, rep.load.lc3Frames - (rep.framesReceived < rep.load.lc3Frames ? rep.load.uncertain.frames : 0), `${rep.name}: frames received = sent`);
    t.ok(existsSync(rep.files.json) && existsSync(rep.files.svg), `${rep.name}: report and chart written`);
    t.match(readFileSync(rep.files.svg, 'utf8'), /^<svg /);
    t.equal(JSON.parse(readFileSync(rep.files.json, 'utf8')).name, rep.name);
  }
});

// Two short runs of two clients, sync and sinks off: enough for a service and a generator process.
const tiny = (name: string, outDir: string, over: Partial<ChaosOptions> = {}): ChaosOptions => ({
  name,
  groups: [{ workload: 'device', clients: 2 }],
  idleS: 0.5,
  warmupS: 2,
  loadS: 2,
  cooldownS: 1,
  bounds: { slopeMbPerMin: Infinity, cooldownGrowthMb: 1000 },
  sync: false,
  sinks: false,
  loadgenProcess: true,
  env: { SHARDS: '1', SLOTS_PER_SHARD: '16' },
  childEnv: NO_CHILD_COVERAGE,
  outDir,
  ...over,
});

t.test('--allocator system: the service runs on glibc and reports it; no forced GCs with forcedGc off', async (t) => {
  const lines: string[] = [];
  const r = await runChaos(tiny('alloc-system', t.testdir(), { allocator: 'system', forcedGc: false, log: (l) => lines.push(l) }));
  for (const line of describe(r)) t.comment(line);
  t.same(r.allocator, { requested: 'system', reported: 'system' });
  t.ok(lines.some((l) => l === 'allocator: started on system; the service reports system'), 'the run prints what the service reports');
  t.ok(describe(r).some((l) => /^allocator: started on system; pusher_build_info says system; no forced GCs/.test(l)));
  t.notOk(r.samples.some((s) => s.afterGc), 'no sample after a forced GC');
  t.notOk(r.figures.forcedGc);
});

t.test('a load generator that dies ends the run with an error', async (t) => {
  const dir = t.testdir();
  // Loaded into every node the run starts; only the load generator exits, 2.5 s in (during the warm-up).
  const die = join(dir, 'die.cjs');
  writeFileSync(die, "if (/loadgen\\.js$/.test(process.argv[1] || '')) setTimeout(() => process.exit(3), 2500);\n");
  const lines: string[] = [];
  await t.rejects(
    runChaos(tiny('dead-loadgen', dir, { warmupS: 30, childEnv: { ...NO_CHILD_COVERAGE, NODE_OPTIONS: `--require ${die}` }, log: (l) => lines.push(l) })),
    /the load generator \(pid \d+\) exited \(3\) before the harness stopped it, during the warmup phase: the run is void/,
  );
  t.notOk(lines.some((l) => /run exceeded/.test(l)), 'ended by the error, not by the watchdog');
});

t.test('chaos CLI: a bad --allocator, --forced-gc or --sink-delay is refused', async (t) => {
  const script = fileURLToPath(new URL('../dist/scripts/chaos.js', import.meta.url));
  for (const [args, msg] of [
    [['--allocator', 'tcmalloc'], 'chaos: --allocator tcmalloc: expected jemalloc or system\n'],
    [['--forced-gc', 'maybe'], 'chaos: --forced-gc maybe: expected on or off\n'],
    [['--sink-delay', '500-100'], 'chaos: --sink-delay 500-100: expected MIN-MAX in ms, MIN ≤ MAX (e.g. 0-2000)\n'],
    [['--sink-delay', 'fast'], 'chaos: --sink-delay fast: expected MIN-MAX in ms, MIN ≤ MAX (e.g. 0-2000)\n'],
  ] as const) {
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) =>
      execFile(process.execPath, [script, ...args], { timeout: 30_000, env: { ...process.env, ...NO_CHILD_COVERAGE } }, (err, _out, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr })),
    );
    t.same(r, { code: 2, stderr: msg }, args.join(' '));
  }
});
