// Verifies a freshly built lc3.wasm (run by wasm/build.sh): no imports, every export the loader
// needs, and a known-answer test. The build has strict IEEE-754 float semantics, so it computes
// exactly what native liblc3 of the same version computes, whatever the compiler: 60 frames of
// each of four configurations, encoded and then decoded (every 7th frame lost, so packet-loss
// concealment runs too), hash (FNV-1a over the LC3 bytes and the decoded PCM) to the value below,
// which native liblc3 built with gcc (-O0 and -O3) and clang computes from the same signal.
// A compiler that reorders float arithmetic (e.g. -ffast-math) fails this check.
//
// Usage: node wasm/check.mjs LC3_WASM LIBLC3_VERSION
import { readFileSync } from 'node:fs';

const KNOWN = { '1.1.3': '02265ef4' };
const CONFIGS = [
  [10000, 16000, 30],
  [7500, 48000, 100],
  [10000, 8000, 400],
  [7500, 24000, 20],
];

const [file, version] = process.argv.slice(2);
const fail = (msg) => {
  console.error(`wasm/check.mjs: ${msg}`);
  process.exit(1);
};

const mod = new WebAssembly.Module(readFileSync(file));
const imports = WebAssembly.Module.imports(mod);
if (imports.length) fail(`unexpected imports: ${imports.map((i) => `${i.module}.${i.name}`).join(', ')}`);
const have = new Set(WebAssembly.Module.exports(mod).map((e) => e.name));
const need = ['memory', '__heap_base', 'lc3_decoder_size', 'lc3_setup_decoder', 'lc3_decode',
  'lc3_encoder_size', 'lc3_setup_encoder', 'lc3_encode', 'lc3_frame_samples', 'lc3_delay_samples', 'lc3_decode_frames'];
const missing = need.filter((n) => !have.has(n));
if (missing.length) fail(`missing exports: ${missing.join(', ')}`);

const ex = new WebAssembly.Instance(mod, {}).exports;
let top = (ex.__heap_base.value + 15) & ~15;
const alloc = (n) => {
  const p = top;
  top += (n + 15) & ~15;
  const have = ex.memory.buffer.byteLength;
  if (top > have) ex.memory.grow(Math.ceil((top - have) / 65536));
  return p;
};
const pcm = alloc(960);
const out = alloc(960);
const frame = alloc(400);
let h = 2166136261;
const hashByte = (b) => {
  h = Math.imul(h ^ b, 16777619) >>> 0;
};
for (const [dt, sr, nbytes] of CONFIGS) {
  const ns = ex.lc3_frame_samples(dt, sr);
  const enc = ex.lc3_setup_encoder(dt, sr, 0, alloc(ex.lc3_encoder_size(dt, sr)));
  const dec = ex.lc3_setup_decoder(dt, sr, 0, alloc(ex.lc3_decoder_size(dt, sr)));
  let seed = 12345;
  for (let f = 0; f < 60; f++) {
    // Integer-only signal (a triangle, a square and noise; quiet for frames 20..29): exact anywhere.
    const x = new Int16Array(ex.memory.buffer, pcm, ns);
    for (let i = 0; i < ns; i++) {
      const n = f * ns + i;
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      const tri = n % 64 < 32 ? (n % 64) * 512 - 8192 : 24576 - (n % 64) * 512;
      const v = tri + (seed >>> 20) - 2048 + (Math.floor(n / 97) % 2 ? 6000 : -6000);
      x[i] = f >= 20 && f < 30 ? Math.trunc(v / 16) : v;
    }
    if (ex.lc3_encode(enc, 0, pcm, 1, nbytes, frame) !== 0) fail('lc3_encode failed');
    for (const b of new Uint8Array(ex.memory.buffer, frame, nbytes)) hashByte(b);
    ex.lc3_decode(dec, f % 7 === 3 ? 0 : frame, nbytes, 0, out, 1);
    for (const s of new Int16Array(ex.memory.buffer, out, ns)) {
      hashByte(s & 0xff);
      hashByte((s >> 8) & 0xff);
    }
  }
}
const got = h.toString(16).padStart(8, '0');
const want = KNOWN[version];
if (want === undefined) {
  console.error(`wasm/check.mjs: no known answer for liblc3 ${version} (got ${got}); run npm test to compare with native liblc3`);
} else if (got !== want) {
  fail(`known-answer test failed: ${got}, native liblc3 ${version} gives ${want}. The compiler changed the float arithmetic (-ffast-math?); see wasm/build.sh`);
}
