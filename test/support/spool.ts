// Helpers shared by the spool and uploader tests.
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { chunkHeader } from '../../src/spool/format.js';
import type { ShardSpool } from '../../src/spool/shard-spool.js';

/**
 * Awaits a session's close while running commits. Tests drive commits by hand (fsyncMs is huge),
 * and a seal ends only after a later commit (its SEALED record), so nothing else would end it.
 */
export async function closedWithCommits(sp: ShardSpool, closing: Promise<void>): Promise<void> {
  let done = false;
  void closing.then(() => (done = true));
  while (!done) await Promise.race([closing, sp.flush().then(() => new Promise((res) => setTimeout(res, 10)))]);
  await closing;
}

/** lc3_fs1030: 16 kHz, 10 ms, 30-byte frames. */
export const LC3 = { kind: 'lc3', frameUs: 10000, sampleRate: 16000, frameBytes: 30 } as const;
/** A fixed wall-clock start (unix ms) for the first sample. */
export const T0 = 1732623456789;

/** Deterministic frame content: session s, frame k (frame number in bytes 0–3, session in byte 4). */
export function frame(s: number, k: number, n = 30): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (s * 131 + k * 7 + i * 13) & 0xff;
  b.writeUInt32LE(k, 0);
  b[4] = s;
  return b;
}

/** A sealed LC3 chunk of `frames` frames (session `seed`) written straight into {dir}/sealed/{name}. */
export function sealedLc3(dir: string, name: string, frames: number, seed = 1): Buffer {
  const body = Array.from({ length: frames }, (_, k) => Buffer.concat([Buffer.from([30, 0]), frame(seed, k)]));
  const buf = Buffer.concat([chunkHeader(LC3, frames), ...body]);
  const path = join(dir, 'sealed', name);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, buf);
  return buf;
}

/** Every regular file under `root`, relative and sorted ([] when root does not exist). */
export function files(root: string): string[] {
  if (!existsSync(root)) return [];
  return (readdirSync(root, { recursive: true }) as string[]).filter((f) => statSync(join(root, f)).isFile()).sort();
}
