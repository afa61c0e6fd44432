// Chaos leak harness CLI (logic in scripts/lib/chaos.ts). Starts the service as a child process
// from the compiled build, runs idle → warm-up → load → cooldown, samples every second, writes
// chaos-results/NAME.json and NAME.svg, prints the checks. With CHAOS_ASSERT=1 (or --assert) a
// failed check makes the exit code non-zero.
//
//   npm run build:ts
//   node dist/scripts/chaos.js --ci                                      # short CI mode (~25 s)
//   node dist/scripts/chaos.js --workload omi-leak1:30,omi-leak2:15 --load 60 --cooldown 15
//   node dist/scripts/chaos.js --workload device:1000 --churn 20-60 --kill 0.2 --load 600
//   node dist/scripts/chaos.js --workload device:100 --churn 2-4 --faults leak_on_close   # must FAIL
//   node dist/scripts/chaos.js --allocator system …    # glibc malloc instead of the launcher's jemalloc (scripts/soak-allocators.ts: both)
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { describe, runChaos, runCi } from './lib/chaos.js';
import { parseChurn, parseGroups } from './lib/loadgen.js';
import { repoRoot } from './lib/service.js';

const { values } = parseArgs({
  options: {
    ci: { type: 'boolean', default: false },
    name: { type: 'string' },
    workload: { type: 'string', default: 'omi-leak1:30,omi-leak2:15' },
    churn: { type: 'string', default: 'off' },
    kill: { type: 'string', default: '0.2' },
    idle: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '15' },
    load: { type: 'string', default: '60' },
    cooldown: { type: 'string', default: '15' },
    ramp: { type: 'string' },
    faults: { type: 'string' },
    sync: { type: 'string', default: 'on' },
    shards: { type: 'string', default: '2' },
    slots: { type: 'string', default: '2048' },
    'ring-bytes': { type: 'string', default: '16384' },
    'max-slope': { type: 'string', default: '1' },
    'max-cooldown-growth': { type: 'string', default: '30' },
    'store-wait': { type: 'string', default: '30' },
    'gc-every': { type: 'string' },
    'forced-gc': { type: 'string', default: 'on' },
    allocator: { type: 'string' },
    out: { type: 'string', default: 'chaos-results' },
    assert: { type: 'boolean', default: false },
    'in-process': { type: 'boolean', default: false },
    sinks: { type: 'string', default: 'on' },
    'sink-delay': { type: 'string', default: '0-2000' },
    'node-args': { type: 'string', default: '' },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  console.log(`usage: node dist/scripts/chaos.js [--ci] [--workload NAME[+ack][:N][@RATE],…] [--churn MIN-MAX|off] [--kill FRACTION]
  [--idle S] [--warmup S] [--load S] [--cooldown S] [--faults leak_on_close|drain_delay_ms=N] [--sync on|off]
  [--shards N] [--slots N] [--ring-bytes N] [--max-slope MB/min] [--max-cooldown-growth MB] [--store-wait S]
  [--out DIR] [--name NAME] [--assert] [--in-process] [--sinks on|off] [--sink-delay MIN-MAX] [--gc-every S]     (CHAOS_ASSERT=1 = --assert)
  [--allocator jemalloc|system] [--forced-gc on|off]
  --gc-every: during the load, a forced GC and a sample every S s (default: load/6, 5..30; 0: never);
              the slope check uses those samples (live memory) when there are 3 or more
  --forced-gc off: no forced GC at all (not for the plateau and final RSS either): raw RSS, as an operator sees it
  --allocator: the service's malloc (default: what bin/lc3-pusher picks, jemalloc when libjemalloc2 is installed);
              the run prints what the service reports in pusher_build_info and checks it matches
  --in-process: run the load generator in this process (default: its own process)
  --node-args="--max-old-space-size=48": node flags for the service (a small heap: garbage is collected early)
  --sinks: point webhooks, audio apps and conversation processing at a slow local sink (default on)
  --sink-delay MIN-MAX: the sink answers each request after a uniform random delay in this range, ms
              (default 0-2000: slower than the audio arrives, so the queues stay full; 0-0: a sink that keeps up)`);
  process.exit(0);
}

for (const [flag, v, allowed] of [
  ['--allocator', values.allocator, ['jemalloc', 'system']],
  ['--forced-gc', values['forced-gc'], ['on', 'off']],
] as const) {
  if (v !== undefined && !(allowed as readonly string[]).includes(v)) {
    console.error(`chaos: ${flag} ${v}: expected ${allowed.join(' or ')}`);
    process.exit(2);
  }
}

const outDir = resolve(repoRoot(), values.out);
const log = (line: string) => console.error(`[chaos ${new Date().toISOString().slice(11, 19)}] ${line}`);
const assert = values.assert || process.env.CHAOS_ASSERT === '1';

if (values.ci) {
  log('CI mode: the real service must pass every check; the positive control (leak_on_close) must be flagged');
  const r = await runCi(outDir, log);
  for (const rep of [r.real, r.control]) for (const line of describe(rep)) console.log(line);
  console.log(r.ok ? 'CI: PASS (real service passes, positive control flagged)' : `CI: FAIL\n${r.messages.map((m) => `  - ${m}`).join('\n')}`);
  process.exit(r.ok ? 0 : 1);
}

const groups = parseGroups(values.workload);
const sinkDelay = /^(\d+)-(\d+)$/.exec(values['sink-delay']);
if (!sinkDelay || Number(sinkDelay[1]) > Number(sinkDelay[2])) {
  console.error(`chaos: --sink-delay ${values['sink-delay']}: expected MIN-MAX in ms, MIN ≤ MAX (e.g. 0-2000)`);
  process.exit(2);
}
const report = await runChaos({
  name: values.name ?? `${groups.map((g) => `${g.workload}${g.clients}`).join('-')}${values.faults ? `-${values.faults.replace(/[^a-z0-9]+/gi, '_')}` : ''}`,
  groups,
  churn: parseChurn(values.churn, Number(values.kill)),
  idleS: Number(values.idle),
  warmupS: Number(values.warmup),
  loadS: Number(values.load),
  cooldownS: Number(values.cooldown),
  ...(values.ramp ? { rampS: Number(values.ramp) } : {}),
  bounds: { slopeMbPerMin: Number(values['max-slope']), cooldownGrowthMb: Number(values['max-cooldown-growth']) },
  faults: values.faults,
  sync: values.sync !== 'off',
  sinks: values.sinks !== 'off',
  sinkDelayMs: [Number(sinkDelay[1]), Number(sinkDelay[2])],
  loadgenProcess: !values['in-process'],
  serviceNodeArgs: values['node-args'].split(/\s+/).filter(Boolean),
  env: { SHARDS: values.shards, SLOTS_PER_SHARD: values.slots, RING_BYTES: values['ring-bytes'] },
  outDir,
  storeWaitS: Number(values['store-wait']),
  ...(values['gc-every'] !== undefined ? { gcEveryS: Number(values['gc-every']) } : {}),
  forcedGc: values['forced-gc'] !== 'off',
  ...(values.allocator ? { allocator: values.allocator as 'jemalloc' | 'system' } : {}),
  log,
});
for (const line of describe(report)) console.log(line);
if (assert && !report.passed) {
  for (const c of report.checks) if (!c.ok) console.error(`chaos: check failed: ${c.name}: ${c.detail}`);
  process.exit(1);
}
process.exit(0);
