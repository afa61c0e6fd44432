// The typed loader (wasm/lc3.ts): decoder behaviour, packet-loss concealment, the allocator, the
// scratch views across memory growth, and its errors.
import t from 'tap';
import fc from 'fast-check';
import {
  checkFrameBytes,
  checkParams,
  FRAME_US,
  Lc3Decoder,
  Lc3Encoder,
  Lc3Error,
  Lc3Module,
  loadLc3,
  MAX_FRAME_BYTES,
  MIN_FRAME_BYTES,
  SAMPLE_RATES,
  wasmPath,
} from '../wasm/lc3.js';
import { testSignal } from './support/audio.js';

const CFG = { frameUs: 10000, sampleRate: 16000, frameBytes: 40 };

/** `n` frames of the test signal encoded at `cfg` (on a module of their own). */
function encodeFrames(cfg: typeof CFG, n: number): Uint8Array[] {
  const enc = new Lc3Encoder(cfg, new Lc3Module());
  const pcm = testSignal(cfg.sampleRate, 2);
  const frames = Array.from({ length: n }, (_, i) => {
    const f = new Uint8Array(cfg.frameBytes);
    enc.encodeInto(pcm, f, (i * enc.frameSamples) % pcm.length);
    return f;
  });
  enc.close();
  return frames;
}

/** Decodes frames (null = lost) on a fresh decoder, copying every output. */
function decodeAll(frames: (Uint8Array | null)[], mod = new Lc3Module(), cfg = CFG): Int16Array[] {
  const dec = new Lc3Decoder(cfg, mod);
  const out = frames.map((f) => dec.decode(f).slice());
  dec.close();
  return out;
}

const energy = (x: Int16Array) => x.reduce((s, v) => s + v * v, 0) / x.length;
const frames = encodeFrames(CFG, 60);

t.test('frame geometry for every configuration', async (t) => {
  const mod = loadLc3();
  t.equal(loadLc3(), mod, 'one module instance per thread');
  for (const frameUs of FRAME_US) {
    for (const sampleRate of SAMPLE_RATES) {
      const p = { frameUs, sampleRate };
      t.equal(mod.frameSamples(p), (sampleRate * frameUs) / 1e6, `${frameUs} µs ${sampleRate} Hz frame`);
      // The algorithmic delay: 2.5 ms at 10 ms frames, 4 ms at 7.5 ms.
      t.equal(mod.delaySamples(p), (sampleRate * (frameUs === 10000 ? 2500 : 4000)) / 1e6, 'delay');
      const dec = new Lc3Decoder(p);
      t.equal(dec.frameSamples, mod.frameSamples(p));
      t.equal(dec.decode(null).length, dec.frameSamples, 'output is one frame');
      dec.close();
    }
  }
});

t.test('parameter checks', async (t) => {
  t.throws(() => checkParams({ frameUs: 5000, sampleRate: 16000 }), new Lc3Error('unsupported LC3 frame duration 5000 µs (supported: 7500, 10000)'));
  t.throws(() => checkParams({ frameUs: 10000, sampleRate: 44100 }), /unsupported LC3 sample rate 44100 Hz \(supported: 8000, 16000, 24000, 32000, 48000\)/);
  t.throws(() => new Lc3Decoder({ frameUs: 10000, sampleRate: 22050 }), { name: 'Lc3Error' });
  t.throws(() => loadLc3().frameSamples({ frameUs: 2500, sampleRate: 48000 }), { name: 'Lc3Error' });
  t.throws(() => loadLc3().delaySamples({ frameUs: 10000, sampleRate: 96000 }), { name: 'Lc3Error' });
  for (const bad of [0, 19, 401, 20.5, NaN]) t.throws(() => checkFrameBytes(bad), /LC3 frame size .* out of range 20\.\.400/);
  t.doesNotThrow(() => checkFrameBytes(MIN_FRAME_BYTES));
  t.doesNotThrow(() => checkFrameBytes(MAX_FRAME_BYTES));
});

t.test('decoding is deterministic and decoders on one module are independent', async (t) => {
  const alone = decodeAll(frames);
  t.same(decodeAll(frames), alone, 'same output on another module');
  // Two decoders interleaved on one module (they share the scratch buffers, not their state).
  const mod = new Lc3Module();
  const a = new Lc3Decoder(CFG, mod);
  const b = new Lc3Decoder(CFG, mod);
  const other = frames.slice().reverse();
  const outA: Int16Array[] = [];
  const outB: Int16Array[] = [];
  for (let i = 0; i < frames.length; i++) {
    outA.push(a.decode(frames[i]!).slice());
    outB.push(b.decode(other[i]!).slice());
  }
  t.same(outA, alone, 'decoder A unaffected by B');
  t.same(outB, decodeAll(other), 'decoder B unaffected by A');
  t.ok(energy(alone[30]!) > 1000, 'the test audio is not silence');
});

t.test('decode variants agree: decode, decodeFrom, decodeInto', async (t) => {
  const want = decodeAll(frames);
  const mod = new Lc3Module();
  // All frames in one buffer, at odd offsets.
  const packed = new Uint8Array(3 + frames.length * CFG.frameBytes);
  frames.forEach((f, i) => packed.set(f, 3 + i * CFG.frameBytes));
  const from = new Lc3Decoder(CFG, mod);
  t.same(frames.map((_, i) => from.decodeFrom(packed, 3 + i * CFG.frameBytes, CFG.frameBytes).slice()), want, 'decodeFrom');
  const into = new Lc3Decoder(CFG, mod);
  const out = new Int16Array(frames.length * into.frameSamples + 5);
  frames.forEach((f, i) => into.decodeInto(f, out, 5 + i * into.frameSamples));
  t.same(out.subarray(5), Int16Array.from(want.flatMap((x) => [...x])), 'decodeInto at an offset');
  // Large frames, at odd offsets of one buffer.
  const big = { ...CFG, sampleRate: 48000, frameBytes: 300 };
  const bigFrames = encodeFrames(big, 10);
  const bigWant = decodeAll(bigFrames, new Lc3Module(), big);
  const d = new Lc3Decoder(big, mod);
  const buf = new Uint8Array(1 + bigFrames.length * 300);
  bigFrames.forEach((f, i) => buf.set(f, 1 + i * 300));
  t.same(bigFrames.map((_, i) => d.decodeFrom(buf, 1 + i * 300, 300).slice()), bigWant, 'decodeFrom, 300-byte frames');
  t.throws(() => from.decodeFrom(packed, packed.length - 10, 40), { name: 'RangeError' });
  t.throws(() => from.decodeFrom(packed, -1, 40), { name: 'RangeError' });
});

t.test('decodeFrames: a whole record in one call, bit-identical to decoding frame by frame', async (t) => {
  const mod = new Lc3Module();
  // Every configuration the service takes, 7.5 and 10 ms, small and large frames.
  for (const cfg of [CFG, { frameUs: 7500, sampleRate: 48000, frameBytes: 120 }, { frameUs: 10000, sampleRate: 8000, frameBytes: MAX_FRAME_BYTES }, { frameUs: 7500, sampleRate: 24000, frameBytes: MIN_FRAME_BYTES }]) {
    const fs = encodeFrames(cfg, 40);
    const want = decodeAll(fs, new Lc3Module(), cfg);
    const packed = new Uint8Array(5 + fs.length * cfg.frameBytes);
    fs.forEach((f, i) => packed.set(f, 5 + i * cfg.frameBytes));
    const dec = new Lc3Decoder(cfg, mod);
    // Records of 1, 3 and 36 frames, at an odd offset: together the 40 frames, in order.
    const got: Int16Array[] = [];
    let at = 0;
    for (const n of [1, 3, 36]) {
      const pcm = dec.decodeFrames(packed, 5 + at * cfg.frameBytes, cfg.frameBytes, n);
      t.equal(pcm.length, n * dec.frameSamples, `${n} frames of PCM back to back`);
      for (let i = 0; i < n; i++) got.push(pcm.slice(i * dec.frameSamples, (i + 1) * dec.frameSamples));
      at += n;
    }
    t.same(got, want, `${cfg.frameUs} µs ${cfg.sampleRate} Hz ${cfg.frameBytes} B: same samples as decode()`);
    t.same(dec.stats, { frames: 40, plc: 0, errors: 0 });
    dec.close();
  }
  // Corrupt frames inside a batch are concealed and counted, as decode() counts them.
  const dec = new Lc3Decoder(CFG, mod);
  const ref = new Lc3Decoder(CFG, mod);
  const rec = new Uint8Array(4 * CFG.frameBytes);
  rec.set(frames[0]!, 0);
  rec.fill(0xff, CFG.frameBytes, 2 * CFG.frameBytes);
  rec.set(frames[2]!, 2 * CFG.frameBytes);
  rec.fill(0xff, 3 * CFG.frameBytes);
  const batch = dec.decodeFrames(rec, 0, CFG.frameBytes, 4).slice();
  const one = [0, 1, 2, 3].map((i) => ref.decodeFrom(rec, i * CFG.frameBytes, CFG.frameBytes).slice());
  t.same(batch, Int16Array.from(one.flatMap((x) => [...x])), 'corrupt frames concealed exactly as one by one');
  t.same(dec.stats, ref.stats, 'and counted the same');
  t.same(dec.stats, { frames: 4, plc: 2, errors: 2 });
  // The same-sized record reuses its view (no allocation per one-frame record); a bigger one does not.
  const v1 = dec.decodeFrames(frames[0]!, 0, CFG.frameBytes, 1);
  t.equal(dec.decodeFrames(frames[1]!, 0, CFG.frameBytes, 1), v1, 'one view for every one-frame record');
  t.equal(dec.decodeFrames(new Uint8Array(0), 0, CFG.frameBytes, 0).length, 0, 'an empty record decodes nothing');
  // Bad calls name the problem.
  t.throws(() => dec.decodeFrames(rec, 1, CFG.frameBytes, 4), { name: 'RangeError', message: /4 frames of 40 bytes at 1 are outside their buffer of 160 bytes/ });
  t.throws(() => dec.decodeFrames(rec, 0, CFG.frameBytes, -1), { name: 'RangeError' });
  t.throws(() => dec.decodeFrames(rec, 0, 10, 1), { name: 'Lc3Error', message: /frame size 10 bytes out of range/ });
  dec.close();
  ref.close();
  t.throws(() => dec.decodeFrames(rec, 0, CFG.frameBytes, 1), { name: 'Lc3Error', message: /closed/ });
});

t.test('decodeFrames scratch grows with the record and survives memory.grow', async (t) => {
  const mod = new Lc3Module();
  const dec = new Lc3Decoder(CFG, mod);
  const ref = new Lc3Decoder(CFG, new Lc3Module());
  const big = new Uint8Array(400 * CFG.frameBytes);
  for (let i = 0; i < 400; i++) big.set(frames[i % frames.length]!, i * CFG.frameBytes);
  const before = mod.memoryBytes;
  const pcm = dec.decodeFrames(big, 0, CFG.frameBytes, 400);
  t.ok(mod.memoryBytes > before, `a 400-frame record grew the memory (${before} → ${mod.memoryBytes} bytes)`);
  t.equal(pcm.length, 400 * 160);
  const want = Array.from({ length: 400 }, (_, i) => [...ref.decodeFrom(big, i * CFG.frameBytes, CFG.frameBytes)]).flat();
  t.same(pcm, Int16Array.from(want), 'every frame right after the growth');
  const settled = mod.memoryBytes;
  dec.decodeFrames(big, 0, CFG.frameBytes, 400);
  dec.decodeFrames(big, 0, CFG.frameBytes, 3);
  t.equal(mod.memoryBytes, settled, 'no growth for records that fit the scratch');
  // A stale build without the batch export says how to fix it.
  // (The instance's exports are frozen: the module gets a copy without the export.)
  const old = new Lc3Module();
  const stale = new Lc3Decoder(CFG, old);
  (old as unknown as { exports: object }).exports = { ...old.exports, lc3_decode_frames: undefined };
  t.throws(() => stale.decodeFrames(big, 0, CFG.frameBytes, 1), { name: 'Lc3Error', message: /npm run build:wasm/ });
  t.equal(stale.decode(frames[0]!).length, 160, 'decode() still works there');
  stale.close();
  dec.close();
  ref.close();
});

t.test('packet-loss concealment and corrupt frames', async (t) => {
  const mod = new Lc3Module();
  const dec = new Lc3Decoder(CFG, mod);
  t.same(dec.decode(null), new Int16Array(dec.frameSamples), 'a lost first frame is silence');
  t.same(dec.stats, { frames: 1, plc: 1, errors: 0 }, 'counted as concealed, not as an error');
  for (const f of frames.slice(0, 30)) dec.decode(f);
  t.same(dec.stats, { frames: 31, plc: 1, errors: 0 });
  const concealed = dec.decode(null);
  t.ok(energy(concealed) > 0.05 * energy(decodeAll(frames)[30]!), 'a lost frame after speech is concealed with sound, not silence');
  t.same(dec.stats, { frames: 32, plc: 2, errors: 0 });

  const corrupt = new Uint8Array(CFG.frameBytes).fill(0xff); // an invalid bitstream
  const out = dec.decode(corrupt);
  t.equal(out.length, dec.frameSamples);
  t.same(dec.stats, { frames: 33, plc: 3, errors: 1 }, 'corrupt frame: concealed and counted');

  // Sizes no LC3 frame can have never reach liblc3 (it would refuse the call): concealed, counted.
  for (const n of [1, MIN_FRAME_BYTES - 1, MAX_FRAME_BYTES + 1, 1000]) dec.decode(new Uint8Array(n).fill(7));
  t.same(dec.stats, { frames: 37, plc: 7, errors: 5 }, 'out-of-range sizes: concealed and counted');
  dec.decodeFrom(new Uint8Array(10), 0, 0);
  t.same(dec.stats, { frames: 38, plc: 8, errors: 6 }, 'an empty frame given as bytes is corrupt, not lost');
  // Good frames decode normally again afterwards.
  dec.decode(frames[31]!);
  t.same(dec.stats, { frames: 39, plc: 8, errors: 6 });
});

t.test('the decoder matches liblc3 on corrupt and lost frames (same module, same results twice)', async (t) => {
  // Property: any mix of good, lost and random frames decodes without throwing, deterministically.
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.constant('good'), fc.constant('lost'), fc.uint8Array({ minLength: 0, maxLength: 450 })), { maxLength: 25 }),
      (plan) => {
        const input = plan.map((p, i) => (p === 'good' ? frames[i % frames.length]! : p === 'lost' ? null : p));
        const a = decodeAll(input);
        const b = decodeAll(input);
        return a.length === input.length && a.every((x, i) => x.length === 160 && x.every((v, j) => v === b[i]![j]));
      },
    ),
    { numRuns: 60 },
  );
  t.pass('no throw, deterministic');
});

t.test('closed decoders and encoders', async (t) => {
  const mod = new Lc3Module();
  const dec = new Lc3Decoder(CFG, mod);
  t.equal(dec.closed, false);
  dec.close();
  t.equal(dec.closed, true);
  dec.close(); // idempotent
  t.equal(mod.live, 0, 'closing twice frees once');
  t.throws(() => dec.decode(frames[0]!), new Lc3Error('decoder is closed'));
  t.throws(() => dec.decode(null), new Lc3Error('decoder is closed'));
  t.throws(() => dec.decodeFrom(frames[0]!, 0, 40), new Lc3Error('decoder is closed'));
  const enc = new Lc3Encoder(CFG, mod);
  enc.close();
  enc.close();
  t.throws(() => enc.encodeInto(new Int16Array(160), new Uint8Array(40)), new Lc3Error('encoder is closed'));
  t.equal(mod.live, 0);
  t.throws(() => mod.release(12345), /release of unknown block 12345/);
});

t.test('allocator: open/close churn of mixed configurations does not grow memory', async (t) => {
  const mod = new Lc3Module();
  const configs = FRAME_US.flatMap((frameUs) => SAMPLE_RATES.map((sampleRate) => ({ frameUs, sampleRate, frameBytes: 20 + (sampleRate % 7) })));
  const cycle = (round: number) => {
    const open: { close(): void }[] = [];
    for (const [i, c] of configs.entries()) {
      open.push(new Lc3Decoder(c, mod), new Lc3Encoder(c, mod));
      if ((i + round) % 3 === 0) open.shift()!.close(); // interleave frees with allocations
    }
    t.ok(mod.live > 0);
    for (const x of open) x.close();
  };
  cycle(0);
  const after = mod.memoryBytes;
  for (let round = 1; round <= 500; round++) cycle(round); // 20,000 coders opened and closed
  t.equal(mod.live, 0, 'every state freed');
  t.equal(mod.memoryBytes, after, `memory stable at ${after} bytes`);
  // And the decoders still decode correctly from reused blocks.
  t.same(decodeAll(frames.slice(0, 10), mod), decodeAll(frames.slice(0, 10)), 'reused blocks decode like fresh ones');
});

t.test('scratch views survive memory.grow', async (t) => {
  const mod = new Lc3Module();
  const dec = new Lc3Decoder(CFG, mod);
  const want = decodeAll(frames.slice(0, 4));
  const v1 = dec.decode(frames[0]!);
  t.same(v1.slice(), want[0]);
  const before = mod.memoryBytes;
  mod.alloc(4 * 65536); // forces memory.grow: the old ArrayBuffer is detached
  t.ok(mod.memoryBytes > before, 'memory grew');
  t.equal(v1.byteLength, 0, 'the old view is detached');
  const v2 = dec.decode(frames[1]!);
  t.ok(v2.byteLength > 0, 'a fresh view');
  t.same(v2.slice(), want[1], 'correct output after growth');
  // The encoder's input and output go through the refreshed views too.
  const enc = new Lc3Encoder(CFG, mod);
  const ref = new Lc3Encoder(CFG, new Lc3Module());
  const pcm = testSignal(16000, 1);
  const a = new Uint8Array(40);
  const b = new Uint8Array(40);
  enc.encodeInto(pcm, a, 1600);
  mod.alloc(2 * 65536);
  enc.encodeInto(pcm, a, 1760);
  ref.encodeInto(pcm, b, 1600);
  ref.encodeInto(pcm, b, 1760);
  t.same(a, b, 'encoder output unchanged by growth');
  t.same(dec.decode(frames[2]!).slice(), want[2]);
  t.same(mod.heapU8().buffer, mod.exports.memory.buffer, 'heap views follow the current buffer');
  t.same(mod.heapI16().buffer, mod.exports.memory.buffer);
});

t.test('wasmPath: LC3_WASM override and a missing build', async (t) => {
  const saved = process.env.LC3_WASM;
  t.teardown(() => {
    if (saved === undefined) delete process.env.LC3_WASM;
    else process.env.LC3_WASM = saved;
  });
  delete process.env.LC3_WASM;
  t.match(wasmPath(), /lc3\.wasm$/);
  process.env.LC3_WASM = '/nowhere/lc3.wasm';
  t.equal(wasmPath(), '/nowhere/lc3.wasm');
  delete process.env.LC3_WASM;
  const mocked = await t.mockImport<typeof import('../wasm/lc3.js')>('../wasm/lc3.js', {
    'node:fs': { existsSync: () => false, readFileSync: () => Buffer.alloc(0) },
  });
  t.throws(() => mocked.wasmPath(), /wasm\/lc3\.wasm is missing: run `npm run build:wasm`/);
  t.throws(() => mocked.loadLc3(), /wasm\/lc3\.wasm is missing/);
});
