// Test audio, generated on demand (nothing large is committed): espeak-ng speech resampled with
// sox, then silence, tones, a chirp, noise and a full-scale square burst, so every codec tool
// (LTPF on voiced speech, TNS on attacks, noise filling, bandwidth detection, saturation) runs.
// Cached in the OS temp directory; written atomically, since test files run in parallel.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { encodeWav, parseWav } from '../../src/formats/wav.js';

export const cacheDir = join(tmpdir(), 'lc3-pusher-test-audio');

const SENTENCE = 'The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore, one two three.';

function tmpName(path: string): string {
  return `${path}.${process.pid}-${threadId}.tmp`;
}

/** espeak-ng speech at `rate` (mono, 16-bit), made once per machine. */
export function speech(rate: number): Int16Array {
  mkdirSync(cacheDir, { recursive: true });
  const file = join(cacheDir, `speech-${rate}.wav`);
  if (!existsSync(file)) {
    const raw = join(cacheDir, 'speech-raw.wav');
    if (!existsSync(raw)) {
      const tmp = tmpName(raw);
      execFileSync('espeak-ng', ['-w', tmp, SENTENCE]);
      renameSync(tmp, raw);
    }
    const tmp = tmpName(file);
    execFileSync('sox', [raw, '-t', 'wav', '-r', String(rate), '-b', '16', '-c', '1', tmp]);
    renameSync(tmp, file);
  }
  return parseWav(readFileSync(file)).samples;
}

/** Mono PCM16 at `rate`: ~`seconds` of speech, then synthetic sections (deterministic). */
export function testSignal(rate: number, seconds = 2): Int16Array {
  const voice = speech(rate);
  const n = Math.round(rate * seconds);
  const out = new Int16Array(n);
  const speechLen = Math.min(voice.length, Math.floor(n * 0.5));
  out.set(voice.subarray(0, speechLen));
  let seed = 12345;
  for (let i = speechLen; i < n; i++) {
    const t = i / rate;
    const x = (i - speechLen) / (n - speechLen); // 0..1 through the synthetic part
    seed = (seed * 1103515245 + 12345) >>> 0;
    const noise = ((seed >>> 16) / 65536 - 0.5) * 4000;
    const chirp = Math.sin(2 * Math.PI * (200 + 3000 * x) * t * x) * 6000;
    const tone = Math.sin(2 * Math.PI * 440 * t) * 8000 + Math.sin(2 * Math.PI * 1250 * t) * 3000;
    const square = Math.sin(2 * Math.PI * 150 * t) >= 0 ? 32767 : -32768;
    let v: number;
    if (x < 0.08) v = 0; // digital silence
    else if (x < 0.35) v = tone;
    else if (x < 0.6) v = chirp;
    else if (x < 0.9) v = noise + tone * 0.3;
    else v = square; // full scale: saturation in the decoder's output stage
    out[i] = Math.max(-32768, Math.min(32767, Math.round(v)));
  }
  return out;
}

export function writeTestWav(path: string, rate: number, seconds = 2): Int16Array {
  const pcm = testSignal(rate, seconds);
  writeFileSync(path, encodeWav(rate, 1, pcm));
  return pcm;
}
