// Test audio for the load generator, made once per process and replayed: a deterministic mix of
// tones, a chirp and noise (no external tools), PCM16 or encoded to LC3 frames by our encoder.
import { Lc3Encoder, loadLc3, type Lc3Module } from '../../wasm/lc3.js';

/** Mono PCM16 at `rate`, `seconds` long, deterministic. */
export function synthPcm(rate: number, seconds: number): Int16Array {
  const n = Math.round(rate * seconds);
  const out = new Int16Array(n);
  let seed = 0x1234567;
  for (let i = 0; i < n; i++) {
    const t = i / rate;
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    const noise = ((seed >>> 16) / 65536 - 0.5) * 3000;
    const phase = (i % rate) / rate; // one chirp sweep per second
    const chirp = Math.sin(2 * Math.PI * (200 + 1800 * phase) * phase) * 5000;
    const tone = Math.sin(2 * Math.PI * 440 * t) * 6000 + Math.sin(2 * Math.PI * 1250 * t) * 2000;
    out[i] = Math.round(tone + chirp + noise);
  }
  return out;
}

export interface Lc3Stream {
  frameUs: number;
  sampleRate: number;
  frameBytes: number;
}

/** `seconds` of the synthetic signal as LC3 frames (one Uint8Array each, all frameBytes long). */
export function lc3Frames(p: Lc3Stream, seconds: number, mod: Lc3Module = loadLc3()): Uint8Array[] {
  const enc = new Lc3Encoder(p, mod);
  try {
    const fs = enc.frameSamples;
    const pcm = synthPcm(p.sampleRate, seconds);
    const frames: Uint8Array[] = [];
    for (let off = 0; off + fs <= pcm.length; off += fs) {
      const f = new Uint8Array(p.frameBytes);
      enc.encodeInto(pcm, f, off);
      frames.push(f);
    }
    return frames;
  } finally {
    enc.close();
  }
}

/** PCM16LE bytes of the synthetic signal, cut into `chunkBytes` pieces. */
export function pcmChunks(rate: number, seconds: number, chunkBytes: number): Uint8Array[] {
  const pcm = synthPcm(rate, seconds);
  const bytes = new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength);
  const out: Uint8Array[] = [];
  for (let off = 0; off + chunkBytes <= bytes.length; off += chunkBytes) out.push(bytes.slice(off, off + chunkBytes));
  return out;
}
