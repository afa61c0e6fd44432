// The reference codec tools: Debian's liblc3-tools (on PATH) and the exact-version build of the
// same Debian source as our wasm (scripts/build-native.sh). Both are installed by `npm test`'s
// pretest step.
import { execFile, execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parseWav } from '../../src/formats/wav.js';

export const nativeDir = fileURLToPath(new URL('../../wasm/.build/native/', import.meta.url));

export type Tool = 'elc3' | 'dlc3';
/** 'debian' = /usr/bin (liblc3-tools 1.0.1 on Debian 12), 'source' = same source as our wasm. */
export type Flavour = 'debian' | 'source';

export function tool(name: Tool, flavour: Flavour): string {
  return flavour === 'debian' ? `/usr/bin/${name}` : `${nativeDir}${name}`;
}

export function run(name: Tool, flavour: Flavour, args: string[]): void {
  execFileSync(tool(name, flavour), args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

// A small pool: the reference tools are separate processes, so two of them use both cores.
const LIMIT = 2;
let active = 0;
const waiting: (() => void)[] = [];

/** Runs a reference tool (at most LIMIT at a time); rejects with its stderr on failure. */
export async function runAsync(name: Tool, flavour: Flavour, args: string[]): Promise<void> {
  if (active >= LIMIT) await new Promise<void>((r) => waiting.push(r));
  active++;
  try {
    await new Promise<void>((resolve, reject) => {
      execFile(tool(name, flavour), args, (err, _out, stderr) =>
        err ? reject(new Error(`${name} (${flavour}) ${args.join(' ')}: ${stderr.trim() || err.message}`)) : resolve(),
      );
    });
  } finally {
    active--;
    waiting.shift()?.();
  }
}

/** Encodes a WAV file with elc3 (the bitrate as given: elc3 derives the frame size from it). */
export async function elc3(flavour: Flavour, wav: string, out: string, bitrate: number, frameUs: number): Promise<void> {
  await runAsync('elc3', flavour, ['-b', String(bitrate), '-m', String(frameUs / 1000), wav, out]);
}

/** Decodes an .lc3 file with dlc3 and returns its PCM (interleaved). */
export async function dlc3(flavour: Flavour, lc3: string, wavOut: string): Promise<Int16Array> {
  await runAsync('dlc3', flavour, [lc3, wavOut]);
  return parseWav(await readFile(wavOut)).samples;
}

export function debianVersion(): string {
  return execFileSync('dpkg-query', ['-W', '-f=${Version}', 'liblc3-tools']).toString().trim();
}

export interface PcmDiff {
  /** Largest |a - b| over the common length (a length mismatch is reported separately). */
  max: number;
  /** Samples differing by more than 1 LSB. */
  over1: number;
  /** Samples differing at all. */
  differ: number;
  sameLength: boolean;
}

export function pcmDiff(a: Int16Array, b: Int16Array): PcmDiff {
  let max = 0;
  let over1 = 0;
  let differ = 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (d > max) max = d;
    if (d > 1) over1++;
    if (d !== 0) differ++;
  }
  return { max, over1, differ, sameLength: a.length === b.length };
}
