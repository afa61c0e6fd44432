// One command for every benchmark: the LC3 codec (scripts/bench-codec.ts, run with tsx as a child process)
// and the ingest benchmarks (scripts/bench-ingest.ts: main-thread messages/s, RSS per idle
// session, real-time streams sustained), summarised in one table with the ratios that matter.
// Figures, not pass/fail — but a benchmark that cannot finish (a load generator that died, a wait
// past its deadline, a codec run that failed in --smoke) ends the run with exit code 1 and a line
// saying what it waited for.
// Needs the build: npm run build:ts && node dist/scripts/bench.js [--quick | --smoke] [--out DIR]
//   --smoke  every benchmark once, tiny (CI: test/bench-smoke.test.ts; ~20 s on 2 cores)
//   --out    where the JSON report goes (default bench-results/)
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { formatIngest, runIngest } from './bench-ingest.js';
import { formatCapacity } from './lib/capacity.js';
import { repoRoot } from './lib/service.js';
import { table } from './lib/stats.js';
import { runMain } from './lib/run-main.js';

interface CodecRow {
  configuration: string;
  operation: string;
  wasm: number;
  native: number;
  ratio: number;
}

/** Rows of bench-codec's table: columns are separated by two or more spaces. */
function parseCodecTable(text: string): CodecRow[] {
  const rows: CodecRow[] = [];
  for (const line of text.split('\n')) {
    const cells = line.trim().split(/\s{2,}/);
    if (cells.length < 5 || !/kHz/.test(cells[0]!)) continue;
    const [configuration, operation, wasm, native, ratio] = cells as [string, string, string, string, string];
    if (!Number.isFinite(Number(wasm))) continue;
    rows.push({ configuration, operation, wasm: Number(wasm), native: Number(native), ratio: Number(ratio) });
  }
  return rows;
}

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    smoke: { type: 'boolean', default: false },
    out: { type: 'string' },
    'skip-codec': { type: 'boolean', default: false },
    'skip-ingest': { type: 'boolean', default: false },
  },
});
const root = repoRoot();
const log = (line: string) => console.error(`[bench] ${line}`);
const smoke = values.smoke;

async function main(): Promise<void> {

  let codec: CodecRow[] = [];
  if (!values['skip-codec']) {
    // bench-codec runs from the source tree (as `npm run bench:codec` does): it finds the native
    // build and its helper scripts relative to itself, and starts no worker threads.
    log('codec: tsx scripts/bench-codec.ts');
    const args = smoke ? ['--reps', '1', '--seconds', '0.5', '--ms', '2'] : values.quick ? ['--reps', '5', '--seconds', '2'] : [];
    const timeoutMs = smoke ? 120_000 : 15 * 60_000;
    const r = spawnSync(join(root, 'node_modules', '.bin', 'tsx'), [join(root, 'scripts', 'bench-codec.ts'), ...args], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      timeout: timeoutMs,
    });
    process.stdout.write(r.stdout ?? '');
    const failed = r.status !== 0 ? `codec benchmark failed (${r.error ? r.error.message : `exit ${r.status ?? r.signal}`}${r.signal === 'SIGTERM' ? `, killed after its ${timeoutMs / 1000} s deadline` : ''})` : undefined;
    // The smoke exists to prove every benchmark still runs: there, a failed one fails the run.
    if (failed && smoke) throw new Error(failed);
    if (failed) log(`${failed}; continuing without its figures`);
    codec = parseCodecTable(r.stdout ?? '');
  }

  const ingest = values['skip-ingest'] ? undefined : await runIngest(smoke ? ['--smoke'] : values.quick ? ['--quick'] : []);
  if (ingest) console.log(`\n${formatIngest(ingest)}`);

  // The summary.
  const dec = codec.find((c) => c.configuration.startsWith('16 kHz') && c.operation === 'decode');
  const rows: string[][] = [['figure', 'value', 'how it was measured']];
  const fmt = (n: number | undefined, digits = 0) => (n === undefined || !Number.isFinite(n) ? 'n/a' : n.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits }));
  if (dec) {
    rows.push(['LC3 decode, wasm (µs/frame)', fmt(dec.wasm, 2), `${dec.configuration}, through the loader`]);
    rows.push(['LC3 decode, native (µs/frame)', fmt(dec.native, 2), 'gcc -O3, same source and float semantics']);
    rows.push(['wasm / native decode', fmt(dec.ratio, 2), 'median of per-repetition ratios']);
    rows.push(['decode-only streams per core', fmt(1e6 / dec.wasm / 100), '1 s / (wasm µs/frame × 100 frames/s)']);
  }
  const b = ingest?.blast;
  const bp = ingest?.blastPcm;
  if (b) rows.push(['blast LC3: msgs/s (end to end)', fmt(b.msgsPerSec), `${b.clients} clients, coalesced reads; main ${fmt(b.cores.main * 100)}% of a core`]);
  if (bp) {
    rows.push(['blast PCM: msgs/s through main', fmt(bp.msgsPerSec), `nothing to decode; main ${fmt(bp.cores.main * 100)}% of a core`]);
    rows.push(['main-thread µs per message', fmt(bp.mainUsPerMsg, 2), 'main-thread CPU / messages (PCM blast)']);
  }
  const m = ingest?.memory;
  if (m) {
    rows.push(['RSS per idle session (KiB)', fmt(m.bytesPerSession / 1024, 1), `${m.sessions} idle lc3_fs1030 sessions, service RSS delta`]);
    rows.push(['sessions per GiB', m.bytesPerSession > 0 ? fmt(2 ** 30 / m.bytesPerSession) : '–', m.bytesPerSession > 0 ? '2^30 / RSS per idle session' : 'none: the RSS delta was not above zero (too few sessions for the noise)']);
  }
  const s = ingest?.streams;
  if (s) {
    rows.push(['real-time streams, full throughput', fmt(s.maxThroughput), '100 msgs/s each, storage only, zero loss, ≥ 98% taken in; generator on the same cores']);
    rows.push(['… and p99 ≤ 50 ms', fmt(s.maxSustained), 'since-start p99 gauge (power-of-two buckets)']);
    rows.push(['streams per service core', fmt(s.streamsPerCore), `full-throughput streams / service CPU (${fmt(s.serviceCores, 2)} cores)`]);
    if (dec) {
      const decodeCores = (s.maxThroughput * 100 * dec.wasm) / 1e6;
      rows.push(['decoding them too would add', `${fmt((100 * decodeCores) / s.serviceCores)}%`, "streams × 100 × wasm µs/frame / service CPU at that step (storage-only sessions are not decoded)"]);
    }
  }
  console.log(`\nsummary\n${table(rows)}`);
  if (ingest?.capacity) console.log(`\n${formatCapacity(ingest.capacity, dec?.wasm)}`);
  const dir = values.out ?? join(root, 'bench-results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ codec, ingest }, null, 1) + '\n');
  console.log(`\nJSON: ${file}`);
}

await runMain(main, log);
