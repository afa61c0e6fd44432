// What a shard pays per LC3 frame to decode one ring record, by record size (frames per record):
//   per frame (byte loop)  the Session's former path: each frame copied into a scratch view by a
//                          JS byte loop, then one call into wasm per frame
//   per frame (set)        one TypedArray.set + one call into wasm per frame (Lc3Decoder.decode)
//   batch                  one set for the whole record, one call into wasm that decodes every
//                          frame of it (Lc3Decoder.decodeFrames), the PCM read back as one view
//   wasm alone             the floor: lc3_decode per frame on frames already in wasm memory, no
//                          copy and no loader in between
// Each figure is the median of --reps interleaved repetitions (µs of CPU per frame, from
// process.cpuUsage(): on a shared machine, wall time also counts the time other processes had the
// core); the three paths are timed back to back in every repetition so other load hits them alike.
// The batch's PCM is checked bit-identical to the per-frame path's first.
//
//   npx tsx scripts/bench-decode.ts [--reps 15] [--ms 30] [--records 1,10,100]
import { parseArgs } from 'node:util';
import { Lc3Decoder, Lc3Encoder, Lc3Module, MAX_FRAME_BYTES } from '../wasm/lc3.js';
import { testSignal } from '../test/support/audio.js';
import { median, table } from './lib/stats.js';

const CFG = { frameUs: 10000, sampleRate: 16000, frameBytes: 30 } as const;

interface Paths {
  [name: string]: (rec: Uint8Array) => void;
}

function paths(mod: Lc3Module): { paths: Paths; close(): void } {
  const decs: Lc3Decoder[] = [];
  const dec = () => {
    const d = new Lc3Decoder(CFG, mod);
    decs.push(d);
    return d;
  };
  const fb = CFG.frameBytes;
  const scratch = new Uint8Array(MAX_FRAME_BYTES);
  const view = scratch.subarray(0, fb);
  const a = dec();
  const b = dec();
  const c = dec();
  const p: Paths = {
    'per frame (byte loop)': (rec) => {
      for (let p = 0; p < rec.length; p += fb) {
        for (let i = 0; i < fb; i++) view[i] = rec[p + i]!;
        a.decode(view);
      }
    },
    'per frame (set)': (rec) => {
      for (let p = 0; p < rec.length; p += fb) b.decodeFrom(rec, p, fb);
    },
  };
  if (typeof (c as Partial<Lc3Decoder>).decodeFrames === 'function') p.batch = (rec) => void c.decodeFrames(rec, 0, fb, rec.length / fb);
  // The floor: the record's bytes placed in wasm memory once, outside the timing.
  const ex = mod.exports;
  const state = mod.alloc(ex.lc3_decoder_size(CFG.frameUs, CFG.sampleRate));
  const dec0 = ex.lc3_setup_decoder(CFG.frameUs, CFG.sampleRate, CFG.sampleRate, state);
  const inWasm = new Map<Uint8Array, number>();
  p['wasm alone'] = (rec) => {
    let at = inWasm.get(rec);
    if (at === undefined) {
      at = mod.alloc(rec.length);
      mod.heapU8().set(rec, at);
      inWasm.set(rec, at);
    }
    for (let q = 0; q < rec.length; q += fb) ex.lc3_decode(dec0, at + q, fb, 0, mod.scratchPcm, 1);
  };
  return { paths: p, close: () => decs.forEach((d) => d.close()) };
}

function main(): void {
  const { values } = parseArgs({
    options: { reps: { type: 'string', default: '15' }, ms: { type: 'string', default: '30' }, records: { type: 'string', default: '1,10,100' } },
  });
  const reps = Number(values.reps);
  const ms = Number(values.ms);
  const sizes = values.records.split(',').map(Number);
  if (!(reps >= 1) || !(ms > 0) || !sizes.every((n) => Number.isInteger(n) && n >= 1 && n <= 500)) {
    throw new Error('--reps must be ≥ 1, --ms > 0, --records a list of frame counts in 1..500');
  }
  const mod = new Lc3Module();
  const enc = new Lc3Encoder(CFG, mod);
  const pcm = testSignal(CFG.sampleRate, 5);
  const n = Math.floor(pcm.length / enc.frameSamples);
  const frames = new Uint8Array(n * CFG.frameBytes);
  for (let i = 0; i < n; i++) enc.encodeInto(pcm, frames.subarray(i * CFG.frameBytes), i * enc.frameSamples);
  enc.close();

  // Bit-exactness of the batch against the per-frame path, on every frame of the signal.
  const ref = new Lc3Decoder(CFG, mod);
  const bat = new Lc3Decoder(CFG, mod);
  if (typeof (bat as Partial<Lc3Decoder>).decodeFrames === 'function') {
    const got = bat.decodeFrames(frames, 0, CFG.frameBytes, n).slice();
    for (let i = 0; i < n; i++) {
      const want = ref.decodeFrom(frames, i * CFG.frameBytes, CFG.frameBytes);
      for (let s = 0; s < want.length; s++) {
        if (got[i * want.length + s] !== want[s]) throw new Error(`batch decode differs from per-frame decode at frame ${i}, sample ${s}`);
      }
    }
  }
  ref.close();
  bat.close();

  console.log(`LC3 ${CFG.sampleRate / 1000} kHz ${CFG.frameUs / 1000} ms ${CFG.frameBytes} B · node ${process.version} · CPU µs per frame, median of ${reps} repetitions of ~${ms} ms`);
  const rows: string[][] = [['frames per record', 'path', 'CPU µs/frame', 'min', 'max']];
  for (const per of sizes) {
    const recs: Uint8Array[] = [];
    for (let f = 0; f + per <= n; f += per) recs.push(frames.subarray(f * CFG.frameBytes, (f + per) * CFG.frameBytes));
    const { paths: ps, close } = paths(mod);
    const names = Object.keys(ps);
    const time = (name: string, iters: number) => {
      const fn = ps[name]!;
      const t0 = process.cpuUsage();
      for (let it = 0; it < iters; it++) for (const r of recs) fn(r);
      const d = process.cpuUsage(t0);
      return (d.user + d.system) / (iters * recs.length * per);
    };
    // Size a batch of work to ~ms of the slowest path; warm up (Liftoff → TurboFan).
    const iters = Math.max(1, Math.round((ms * 1000) / (time(names[0]!, 1) * recs.length * per)));
    for (let w = 0; w < 3; w++) for (const name of names) time(name, iters);
    const got = new Map<string, number[]>(names.map((x) => [x, []]));
    for (let r = 0; r < reps; r++) for (const name of names) got.get(name)!.push(time(name, iters));
    for (const name of names) {
      const xs = got.get(name)!;
      rows.push([String(per), name, median(xs).toFixed(3), Math.min(...xs).toFixed(3), Math.max(...xs).toFixed(3)]);
    }
    close();
  }
  console.log(table(rows));
}

main();
