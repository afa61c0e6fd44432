// The churn soak under both allocators, one after the other, on the same machine (issue 13):
// jemalloc (what bin/lc3-pusher starts by default) and glibc malloc (LC3_PUSHER_ALLOCATOR=system),
// each with forced GCs on (live memory) and off (raw RSS, as an operator sees it). Prints one
// table: raw RSS slope, live slope after forced GCs, RSS after the cooldown vs the warm-up
// plateau, frames lost. Every run is a full chaos run (scripts/lib/chaos.ts) with its own report.
//
//   npm run build:ts
//   node dist/scripts/soak-allocators.js                                   # 10-min soaks: ~4 × 13 min
//   node dist/scripts/soak-allocators.js --load 60 --warmup 20 --workload device:300 --store-wait 60   # short
//   node dist/scripts/soak-allocators.js --workload omi-leak1:30,omi-leak2:15 --churn off --load 60 --cooldown 15 --forced-gc off
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { describe, runChaos, type ChaosReport } from './lib/chaos.js';
import { parseChurn, parseGroups } from './lib/loadgen.js';
import { repoRoot } from './lib/service.js';
import { MiB } from './lib/stats.js';
import { addCounts } from './lib/store-audit.js';
import type { Allocator } from '../src/util/allocator.js';

export interface SoakRun {
  allocator: Allocator;
  forcedGc: boolean;
  /** 1-based repeat of the same configuration. */
  repeat: number;
}

/** The runs, in order: per forced-GC setting, the default allocator's repeats, then glibc. */
export function soakPlan(allocators: readonly Allocator[], forcedGc: 'on' | 'off' | 'both', defaultRuns: number): SoakRun[] {
  const gcs = forcedGc === 'both' ? [true, false] : [forcedGc === 'on'];
  const plan: SoakRun[] = [];
  for (const gc of gcs) {
    for (const a of allocators) {
      const n = a === 'jemalloc' ? defaultRuns : 1;
      for (let repeat = 1; repeat <= n; repeat++) plan.push({ allocator: a, forcedGc: gc, repeat });
    }
  }
  return plan;
}

/** Frames (LC3) or samples (PCM) sent and not durable (store + sealed spool); undefined when not checked (sync off). */
export function framesLost(r: Pick<ChaosReport, 'load' | 'store'>): { lost: number; stored: number } | undefined {
  const totals = r.store.totals;
  const spool = r.store.spool;
  if (r.store.skipped || !totals || !spool) return undefined;
  const stored = addCounts(totals.perKey, spool.perKey);
  let lost = 0;
  let kept = 0;
  for (const [k, sent] of Object.entries(r.load.perKey)) {
    const got = stored[k]?.frames ?? 0;
    kept += got;
    lost += Math.max(0, sent.frames - (r.load.uncertain.perKey[k]?.frames ?? 0) - got);
  }
  return { lost, stored: kept };
}

const pm = (v: number, se: number) => `${v.toFixed(2)} ± ${(2 * se).toFixed(2)} MB/min`;
const signed = (bytes: number) => `${bytes >= 0 ? '+' : '−'}${Math.abs(bytes / MiB).toFixed(1)} MB`;

/** One table row (markdown) for a finished run. */
export function soakRow(run: SoakRun, r: Pick<ChaosReport, 'figures' | 'checks' | 'load' | 'store' | 'allocator' | 'options'>): string[] {
  const f = r.figures;
  const name = run.allocator === 'jemalloc' ? 'jemalloc (default)' : 'glibc malloc (LC3_PUSHER_ALLOCATOR=system)';
  const reported = r.allocator?.reported;
  const cool = r.checks.find((c) => c.name === 'rss-after-cooldown');
  const kept = r.checks.find((c) => c.name === 'kept-up');
  const lost = framesLost(r);
  return [
    `${name}${run.repeat > 1 ? ` #${run.repeat}` : ''}, forced GCs ${run.forcedGc ? 'on' : 'off'}${reported && reported !== run.allocator ? ` (service reports ${reported}!)` : ''}`,
    `${r.options.loadS} s`,
    `${pm(f.slopeMbPerMin, f.slopeStdErr)} (r² ${f.slopeR2.toFixed(2)})`,
    f.liveSlopePoints >= 3 ? `${pm(f.liveSlopeMbPerMin, f.liveSlopeStdErr)} (${f.liveSlopePoints} points)` : 'n/a',
    `${signed(f.growthAfterCooldown)}${cool ? ` (${cool.ok ? 'PASS' : 'FAIL'})` : ''}`,
    lost ? `${lost.lost} (${lost.stored.toLocaleString('en-US')} stored)` : 'not checked',
    // A run that fell behind the load says nothing about the allocator (scripts/lib/chaos-kept-up.ts).
    !kept || kept.skipped ? 'n/a' : `${kept.ok ? 'yes' : 'NO'}: oldest open chunk ${r.figures.maxOldestOpenS.toFixed(0)} s`,
  ];
}

export const SOAK_HEADER = ['run', 'load', 'raw RSS slope', 'live slope (after forced GCs)', 'RSS after cooldown vs plateau', 'frames lost', 'kept up'];

export function markdownTable(rows: readonly (readonly string[])[]): string {
  const line = (r: readonly string[]) => `| ${r.join(' | ')} |`;
  return [line(SOAK_HEADER), line(SOAK_HEADER.map(() => '---')), ...rows.map(line)].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      workload: { type: 'string', default: 'device:1000' },
      churn: { type: 'string', default: '20-60' },
      kill: { type: 'string', default: '0.2' },
      warmup: { type: 'string', default: '60' },
      load: { type: 'string', default: '600' },
      cooldown: { type: 'string', default: '30' },
      'store-wait': { type: 'string', default: '180' },
      'forced-gc': { type: 'string', default: 'both' },
      allocators: { type: 'string', default: 'jemalloc,system' },
      'default-runs': { type: 'string', default: '1' },
      'max-slope': { type: 'string', default: '1' },
      'max-cooldown-growth': { type: 'string', default: '30' },
      shards: { type: 'string', default: '2' },
      slots: { type: 'string', default: '2048' },
      out: { type: 'string', default: 'chaos-results' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(`usage: node dist/scripts/soak-allocators.js [--workload device:1000] [--churn 20-60|off] [--kill 0.2]
  [--warmup 60] [--load 600] [--cooldown 30] [--store-wait 180] [--forced-gc both|on|off]
  [--allocators jemalloc,system] [--default-runs N] [--max-slope 1] [--max-cooldown-growth 30] [--shards 2] [--slots 2048] [--out DIR]`);
    return;
  }
  const allocators = values.allocators.split(',').map((a) => a.trim());
  for (const a of allocators) if (a !== 'jemalloc' && a !== 'system') throw new Error(`--allocators ${values.allocators}: each one jemalloc or system`);
  const gc = values['forced-gc'];
  if (gc !== 'both' && gc !== 'on' && gc !== 'off') throw new Error(`--forced-gc ${gc}: expected both, on or off`);
  const defaultRuns = Number(values['default-runs']);
  if (!Number.isInteger(defaultRuns) || defaultRuns < 1) throw new Error(`--default-runs ${values['default-runs']}: expected a whole number ≥ 1`);
  const groups = parseGroups(values.workload);
  const plan = soakPlan(allocators as Allocator[], gc, defaultRuns);
  const log = (line: string) => console.error(`[soak ${new Date().toISOString().slice(11, 19)}] ${line}`);
  const rows: string[][] = [];
  for (const [i, run] of plan.entries()) {
    const name = `soak-${run.allocator}-gc${run.forcedGc ? 'on' : 'off'}${run.repeat > 1 ? `-${run.repeat}` : ''}`;
    log(`run ${i + 1}/${plan.length}: ${name}`);
    const report = await runChaos({
      name,
      groups,
      churn: parseChurn(values.churn, Number(values.kill)),
      warmupS: Number(values.warmup),
      loadS: Number(values.load),
      cooldownS: Number(values.cooldown),
      bounds: { slopeMbPerMin: Number(values['max-slope']), cooldownGrowthMb: Number(values['max-cooldown-growth']) },
      loadgenProcess: true,
      env: { SHARDS: values.shards, SLOTS_PER_SHARD: values.slots },
      outDir: resolve(repoRoot(), values.out),
      storeWaitS: Number(values['store-wait']),
      allocator: run.allocator,
      forcedGc: run.forcedGc,
      log,
    });
    for (const line of describe(report)) log(line);
    rows.push(soakRow(run, report));
    // The table so far, so that an interrupted series still has its figures.
    console.error(markdownTable(rows));
  }
  console.log(markdownTable(rows));
}

/* c8 ignore start */ // the command line; its parts are tested in test/chaos-helpers.test.ts
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: Error) => {
    console.error(`soak-allocators: ${err.message}`);
    process.exit(1);
  });
}
/* c8 ignore stop */
