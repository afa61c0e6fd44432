// File-level conversions used by the CLI and the batch pool.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { lc3ToWav, wavToLc3, type EncodeOptions } from './transcode.js';

export interface TranscodeResult {
  input: string;
  output: string;
  frames: number;
  concealed: number;
  seconds: number;
}

/** Writes via a temporary name so a failed or interrupted run never leaves a half file. */
export async function writeAtomic(path: string, data: Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

export async function transcodeFile(input: string, output: string): Promise<TranscodeResult> {
  const { wav, decoded } = lc3ToWav(await readFile(input));
  await writeAtomic(output, wav);
  const h = decoded.header;
  return { input, output, frames: decoded.frames, concealed: decoded.concealed, seconds: h.nsamples / h.sampleRate };
}

export async function encodeFile(input: string, output: string, opts: EncodeOptions): Promise<{ bytes: number }> {
  const lc3 = wavToLc3(await readFile(input), opts);
  await writeAtomic(output, lc3);
  return { bytes: lc3.length };
}
