// The capacity table of `npm run bench`: per configuration (storage only; with a PCM consumer on
// every session), from the stream searches of scripts/lib/bench-ingest.ts and one floor step
// (scripts/lib/floor.ts) at a common stream count:
//   - service CPU per 1,000 real-time streams (at the largest step with full throughput);
//   - streams at p99 ≤ 50 ms arrival→stored (the largest sustained step);
//   - the main thread's CPU per message and the whole service's CPU against the bare ws server's
//     at the same load;
//   - the shards' busy time per frame (against wasm decode alone, when the codec figure is known);
//   - the generator's CPU (it shares the machine's cores with the service).
import { streamStep, type IngestBenchOptions, type StepResult, type StreamsResult } from './bench-ingest.js';
import { floorStep, type FloorResult } from './floor.js';
import { table } from './stats.js';

export interface CapacityRow {
  config: 'storage' | 'pcm';
  /** The step at the floor's stream count (from the search, or run for the table). */
  atFloor: StepResult;
  /** Service cores per 1,000 streams at the largest full-throughput step (NaN: none). */
  coresPer1000: number;
  maxThroughput: number;
  maxSustained: number;
}

export interface CapacityReport {
  floor: FloorResult;
  rows: CapacityRow[];
}

/** The step of `s` at `n` streams, else a new one (same options). */
async function stepAt(o: IngestBenchOptions, s: StreamsResult, n: number): Promise<StepResult> {
  const found = s.steps.find((x) => x.n === n);
  if (found) return found;
  o.log(`capacity: one more step at ${n} streams (${o.pcm ? 'with a PCM consumer' : 'storage only'}) to compare with the floor`);
  return streamStep(o, n, false);
}

export async function capacity(o: IngestBenchOptions, searches: { storage: StreamsResult; pcm?: StreamsResult | undefined }, floorStreams: number): Promise<CapacityReport> {
  o.log(`capacity: ${floorStreams} streams against the bare ws server (the floor)`);
  const floor = await floorStep(floorStreams, o.stepSeconds, o.warmupMs / 1000);
  const rows: CapacityRow[] = [];
  for (const [config, s] of [['storage', searches.storage], ['pcm', searches.pcm]] as const) {
    if (!s) continue;
    const atFloor = await stepAt({ ...o, pcm: config === 'pcm' }, s, floorStreams);
    const top = s.steps.find((x) => x.n === s.maxThroughput);
    rows.push({ config, atFloor, coresPer1000: top ? (top.cores.service / top.n) * 1000 : NaN, maxThroughput: s.maxThroughput, maxSustained: s.maxSustained });
  }
  return { floor, rows };
}

const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');

/** The table; `decodeUs`: wasm LC3 decode alone, µs per frame (bench-codec), when measured. */
export function formatCapacity(c: CapacityReport, decodeUs?: number): string {
  const f = c.floor;
  const rows = [
    [
      'configuration',
      'service cores / 1,000 streams',
      'streams at p99 ≤ 50 ms',
      `main µs/msg (floor ${f2(f.mainUsPerMsg)})`,
      'main ÷ floor',
      `service ÷ floor cores (${f2(f.totalCores)})`,
      'shard µs/frame',
      'shard ÷ wasm decode',
      'lost',
      'generator cores',
    ],
  ];
  for (const r of c.rows) {
    const a = r.atFloor;
    rows.push([
      r.config === 'pcm' ? 'with a PCM consumer (audio-bytes webhook)' : 'storage only',
      f2(r.coresPer1000),
      String(r.maxSustained),
      f2(a.mainUsPerMsg),
      f2(a.mainUsPerMsg / f.mainUsPerMsg),
      f2(a.cores.service / f.totalCores),
      f2(a.shardUsPerFrame),
      decodeUs ? f2(a.shardUsPerFrame / decodeUs) : 'n/a',
      String(a.lost),
      f2(a.cores.gen),
    ]);
  }
  return [
    `capacity — real-time lc3_fs1030 streams; ratios at ${f.streams} streams against a bare ws server that only counts messages (same load, same run); cores per 1,000 at the largest full-throughput step`,
    table(rows).replace(/^/gm, '  '),
    `  the floor's own generator used ${f2(f.genCores)} cores; shard time is pusher_thread_busy_seconds_total (event-loop busy time) per frame taken in`,
  ].join('\n');
}
