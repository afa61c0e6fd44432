// LC3 codec benchmark: our wasm build, called through the typed loader as the service calls it,
// against native liblc3 built with gcc -O3 from the same source package (scripts/build-native.sh),
// on the same PCM and the same LC3 frames, in the same run.
//
//   npx tsx scripts/bench-codec.ts [--reps N] [--seconds S] [--ms M]
//
// Native runs in long-lived child processes that time a batch on command, so every repetition
// times wasm, native and native-fast-math back to back: load from other processes hits all three
// alike. Each figure is the median over N repetitions of µs per frame; the ratios are medians of
// the per-repetition ratios. Figures are only comparable within one run.
//
// Rows: "decode" = Lc3Decoder.decode(frame) (copy in, decode, PCM view out); "decode (raw)" = the
// wasm export alone with the frame already in wasm memory (the difference is the loader's
// overhead); "encode" = Lc3Encoder.encodeInto. Columns: "native" is built with the same IEEE
// float semantics as the wasm (their outputs are bit-identical: the "same PCM" column checks it
// on the benchmark input); "native -ffast-math" is liblc3's own release build.
import { execFileSync, spawn, type ChildProcessByStdio } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Lc3Decoder, Lc3Encoder, Lc3Module, wasmPath } from '../wasm/lc3.js';
import { testSignal } from '../test/support/audio.js';
import { within } from './lib/wait.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const nativeDir = join(root, 'wasm/.build/native');

interface Config {
  label: string;
  frameUs: number;
  sampleRate: number;
  frameBytes: number;
}

const CONFIGS: Config[] = [
  { label: '16 kHz 10 ms 30 B', frameUs: 10000, sampleRate: 16000, frameBytes: 30 },
  { label: '48 kHz 10 ms 120 B', frameUs: 10000, sampleRate: 48000, frameBytes: 120 },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** A native bench-codec child answering one line per command. */
class Native {
  private readonly child: ChildProcessByStdio<Writable, Readable, null>;
  private readonly lines: AsyncIterator<string>;

  constructor(binary: string, args: string[]) {
    this.child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    this.lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
  }

  async ask(cmd: string): Promise<string> {
    this.child.stdin.write(`${cmd}\n`);
    // A batch is sized to milliseconds; a minute means the native bench is stuck.
    const r = await within(this.lines.next(), 60_000, `the native bench (pid ${this.child.pid}) to answer "${cmd}"`);
    if (r.done) throw new Error(`native bench exited on "${cmd}"`);
    return r.value;
  }

  async time(op: 'decode' | 'encode', iters: number): Promise<number> {
    return Number(await this.ask(`${op} ${iters}`));
  }

  close(): void {
    this.child.stdin.end();
  }
}

/** µs per item of `fn` over `iters` passes of `items`. */
function timeWasm<T>(items: T[], iters: number, fn: (x: T) => void): number {
  const t0 = process.hrtime.bigint();
  for (let it = 0; it < iters; it++) for (const x of items) fn(x);
  return Number(process.hrtime.bigint() - t0) / 1000 / (iters * items.length);
}

function fnv1a(pcm: Int16Array[]): string {
  let h = 2166136261;
  for (const frame of pcm) {
    for (const s of frame) {
      const v = s & 0xffff;
      h = Math.imul(h ^ (v & 0xff), 16777619) >>> 0;
      h = Math.imul(h ^ (v >> 8), 16777619) >>> 0;
    }
  }
  return h.toString(16).padStart(8, '0');
}

type Row = { op: string; wasm: number; native: number; fast: number; ratio: number; ratioFast: number; same: string };

async function benchConfig(cfg: Config, opts: { reps: number; seconds: number; ms: number }, dir: string): Promise<Row[]> {
  const mod = new Lc3Module();
  const enc = new Lc3Encoder(cfg, mod);
  const dec = new Lc3Decoder(cfg, mod);
  const fs = enc.frameSamples;
  const signal = testSignal(cfg.sampleRate, opts.seconds);
  const pcm = signal.subarray(0, Math.floor(signal.length / fs) * fs);
  const nframes = pcm.length / fs;

  // The frames every decoder is timed on: what our encoder makes of the PCM.
  const frames = new Uint8Array(nframes * cfg.frameBytes);
  for (let i = 0; i < nframes; i++) enc.encodeInto(pcm, frames.subarray(i * cfg.frameBytes), i * fs);
  const frameViews = Array.from({ length: nframes }, (_, i) => frames.subarray(i * cfg.frameBytes, (i + 1) * cfg.frameBytes));
  const offsets = Array.from({ length: nframes }, (_, i) => i * fs);
  const pcmFile = join(dir, `pcm-${cfg.sampleRate}.raw`);
  const framesFile = join(dir, `frames-${cfg.sampleRate}.raw`);
  writeFileSync(pcmFile, pcm);
  writeFileSync(framesFile, frames);

  // The wasm decoder's output on these frames, for the bit-exactness check.
  const check = new Lc3Decoder(cfg, mod);
  const wasmHash = fnv1a(frameViews.map((f) => check.decode(f).slice()));
  check.close();

  // Raw export path: frames already in wasm memory, no loader in between.
  const ex = mod.exports;
  const rawIn = mod.alloc(frames.length);
  mod.heapU8().set(frames, rawIn);
  const rawPtrs = frameViews.map((_, i) => rawIn + i * cfg.frameBytes);
  const rawDec = mod.alloc(ex.lc3_decoder_size(cfg.frameUs, cfg.sampleRate));
  ex.lc3_setup_decoder(cfg.frameUs, cfg.sampleRate, cfg.sampleRate, rawDec);
  const out = new Uint8Array(cfg.frameBytes);

  const ops = {
    decode: () => (iters: number) => timeWasm(frameViews, iters, (f) => dec.decode(f)),
    'decode (raw)': () => (iters: number) =>
      timeWasm(rawPtrs, iters, (p) => ex.lc3_decode(rawDec, p, cfg.frameBytes, 0, mod.scratchPcm, 1)),
    encode: () => (iters: number) => timeWasm(offsets, iters, (o) => enc.encodeInto(pcm, out, o)),
  } as const;

  const args = [cfg.frameUs, cfg.sampleRate, cfg.frameBytes, pcmFile, framesFile].map(String);
  const native = new Native(join(nativeDir, 'bench-codec'), args);
  const fast = new Native(join(nativeDir, 'bench-codec-fastmath'), args);
  const rows: Row[] = [];
  try {
    const same = {
      native: (await native.ask('check')) === wasmHash ? 'yes' : 'NO',
      fast: (await fast.ask('check')) === wasmHash ? 'yes' : 'no',
    };
    for (const [op, make] of Object.entries(ops)) {
      const wasm = make();
      const nativeOp = op === 'encode' ? 'encode' : 'decode';
      // Size a batch to ~opts.ms of wasm time; warm up (V8 tiers wasm up from Liftoff to TurboFan).
      const iters = Math.max(1, Math.round((opts.ms * 1000) / (wasm(1) * nframes)));
      for (let w = 0; w < 5; w++) {
        wasm(iters);
        await native.time(nativeOp, iters);
        await fast.time(nativeOp, iters);
      }
      const t = { wasm: [] as number[], native: [] as number[], fast: [] as number[], ratio: [] as number[], ratioFast: [] as number[] };
      for (let r = 0; r < opts.reps; r++) {
        const w = wasm(iters);
        const n = await native.time(nativeOp, iters);
        const f = await fast.time(nativeOp, iters);
        t.wasm.push(w);
        t.native.push(n);
        t.fast.push(f);
        t.ratio.push(w / n);
        t.ratioFast.push(w / f);
      }
      rows.push({
        op,
        wasm: median(t.wasm),
        native: median(t.native),
        fast: median(t.fast),
        ratio: median(t.ratio),
        ratioFast: median(t.ratioFast),
        same: op === 'encode' ? '' : `${same.native} / ${same.fast}`,
      });
    }
  } finally {
    native.close();
    fast.close();
    dec.close();
    enc.close();
  }
  return rows;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      reps: { type: 'string', default: '31' },
      seconds: { type: 'string', default: '4' },
      ms: { type: 'string', default: '20' },
    },
  });
  const reps = Number(values.reps);
  const seconds = Number(values.seconds);
  const ms = Number(values.ms);
  if (!(reps >= 1) || !(seconds > 0) || !(ms > 0)) throw new Error('--reps must be ≥ 1, --seconds and --ms > 0');
  // Idempotent: builds the wasm and the native tools only when they are out of date.
  execFileSync('bash', [join(root, 'scripts/build-native.sh')], { stdio: 'inherit' });
  const version = readFileSync(join(root, 'wasm/.build/version'), 'utf8').trim();
  const wasm = wasmPath();
  const flagsFile = join(root, 'wasm/.build/cflags');
  const cflags = process.env.LC3_WASM ? '(LC3_WASM: not wasm/build.sh)' : existsSync(flagsFile) ? readFileSync(flagsFile, 'utf8').trim() : '?';
  console.log(`liblc3 ${version} · node ${process.version}`);
  console.log(`wasm: ${wasm} (${readFileSync(wasm).length} bytes), built with: ${cflags}`);
  console.log('native: gcc -O3 -ffp-contract=off, and gcc -O3 -ffast-math (liblc3 release flags)');
  console.log(`µs per frame, median of ${reps} interleaved repetitions of ~${ms} ms, ${seconds} s of test audio\n`);
  const dir = mkdtempSync(join(tmpdir(), 'lc3-bench-'));
  const table: string[][] = [
    ['configuration', 'operation', 'wasm', 'native', 'wasm/native', 'native -ffast-math', 'wasm/fast-math', 'same PCM'],
  ];
  try {
    for (const cfg of CONFIGS) {
      for (const r of await benchConfig(cfg, { reps, seconds, ms }, dir)) {
        table.push([cfg.label, r.op, r.wasm.toFixed(2), r.native.toFixed(2), r.ratio.toFixed(2), r.fast.toFixed(2), r.ratioFast.toFixed(2), r.same]);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const widths = table[0]!.map((_, c) => Math.max(...table.map((row) => row[c]!.length)));
  for (const [i, row] of table.entries()) {
    console.log(row.map((cell, c) => (c < 2 || c === 7 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ').trimEnd());
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
  console.log('\nsame PCM: wasm decode bit-identical to native / to native -ffast-math on this input');
}

await main();
