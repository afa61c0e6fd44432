// Test audio, generated on demand (nothing large is committed): espeak-ng speech resampled with
// sox, followed by tones, a chirp and noise, so every codec tool (LTPF, TNS, noise filling) runs.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeWav, parseWav } from '../../src/formats/wav.js';

export const cacheDir = join(tmpdir(), 'lc3-pusher-test-audio');

const SENTENCE = 'The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore, one two three.';

/** Mono PCM16 at `rate`: ~`seconds` of speech + tones + noise (deterministic). */
export function testSignal(rate: number, seconds = 2): Int16Array {
  mkdirSync(cacheDir, { recursive: true });
  const speechFile = join(cacheDir, `speech-${rate}.wav`);
  if (!existsSync(speechFile)) {
    const raw = join(cacheDir, 'speech-raw.wav');
    if (!existsSync(raw)) execFileSync('espeak-ng', ['-w', raw, SENTENCE]);
    execFileSync('sox', [raw, '-r', String(rate), '-b', '16', '-c', '1', speechFile]);
  }
  const speech = parseWav(readFileSync(speechFile)).samples;
  const n = Math.round(rate * seconds);
  const out = new Int16Array(n);
  const speechLen = Math.min(speech.length, Math.floor(n * 0.6));
  out.set(speech.subarray(0, speechLen));
  let seed = 12345;
  for (let i = speechLen; i < n; i++) {
    const t = i / rate;
    const third = (i - speechLen) / (n - speechLen);
    seed = (seed * 1103515245 + 12345) >>> 0;
    const noise = ((seed >>> 16) / 65536 - 0.5) * 4000;
    const chirp = Math.sin(2 * Math.PI * (200 + 3000 * third) * t * third) * 6000;
    const tone = Math.sin(2 * Math.PI * 440 * t) * 8000 + Math.sin(2 * Math.PI * 1250 * t) * 3000;
    out[i] = Math.round(third < 0.33 ? tone : third < 0.66 ? chirp : noise + tone * 0.3);
  }
  return out;
}

export function writeTestWav(path: string, rate: number, seconds = 2): Int16Array {
  const pcm = testSignal(rate, seconds);
  writeFileSync(path, encodeWav(rate, 1, pcm));
  return pcm;
}
