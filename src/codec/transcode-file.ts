// File-level conversions used by the CLI and the batch pool.
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { threadId } from 'node:worker_threads';
import { lc3ToWav, wavToLc3, type DecodeOptions, type EncodeOptions } from './transcode.js';

export interface TranscodeResult {
  input: string;
  output: string;
  frames: number;
  /** Corrupt frames concealed, per channel. */
  concealed: number;
  /** Frame blocks past the header's sample count (ignored, as dlc3 does). */
  ignored: number;
  seconds: number;
}

let tmpSeq = 0;

/** Writes via a temporary name so a failed or interrupted run never leaves a half file. */
export async function writeAtomic(path: string, data: Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  // Unique per process, thread and call.
  const tmp = `${path}.${process.pid}-${threadId}-${++tmpSeq}.tmp`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    const e = err as NodeJS.ErrnoException;
    if (e.path === tmp) e.path = path; // report the file the caller asked for
    throw err;
  }
}

export async function transcodeFile(input: string, output: string, opts?: DecodeOptions): Promise<TranscodeResult> {
  const { wav, decoded } = lc3ToWav(await readFile(input), undefined, opts);
  await writeAtomic(output, wav);
  const h = decoded.header;
  return {
    input,
    output,
    frames: decoded.frames,
    concealed: decoded.concealed,
    ignored: decoded.ignored,
    seconds: decoded.pcm.length / h.channels / h.sampleRate,
  };
}

export async function encodeFile(input: string, output: string, opts: EncodeOptions): Promise<{ bytes: number; frames: number }> {
  const lc3 = wavToLc3(await readFile(input), opts);
  await writeAtomic(output, lc3);
  return { bytes: lc3.length, frames: countFrames(lc3) };
}

function countFrames(lc3: Buffer): number {
  let n = 0;
  for (let off = lc3.readUInt16LE(2); off < lc3.length; off += 2 + lc3.readUInt16LE(off)) n++;
  return n;
}
