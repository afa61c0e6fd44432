// LC3 sessions checked frame by frame against the local store: the test signal as lc3_fs1030
// frames (what the clients send, frame k of a session is frames[k % length]) and the frames of a
// uid found in STORE_DIR, in time order. The same checks as test/durable-fsync.test.ts, shared
// so that scripts (scripts/fault-fsync.ts) do not copy them.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { wavToLc3 } from '../../src/codec/transcode.js';
import { parseLc3File } from '../../src/formats/lc3file.js';
import { encodeWav } from '../../src/formats/wav.js';
import { testSignal } from '../../test/support/audio.js';

/** One second of the test signal as 16 kHz, 10 ms, 30-byte LC3 frames (100 frames). */
export function testLc3Frames(): Uint8Array[] {
  return parseLc3File(wavToLc3(encodeWav(16000, 1, testSignal(16000, 1)), { bitrate: 24000, frameUs: 10000 })).frames;
}

/** Frames of `uid` in the local store, in time order. */
export function storedLc3Frames(storeDir: string, uid: string): Buffer[] {
  const root = join(storeDir, 'chunks', uid);
  const out: { name: string; data: Buffer }[] = [];
  const walk = (d: string): void => {
    if (!existsSync(d)) return;
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (e.endsWith('.lc3')) out.push({ name: relative(root, p), data: readFileSync(p) });
    }
  };
  walk(root);
  const start = (n: string): number => Number(n.slice(n.lastIndexOf('/') + 1, -'.lc3'.length));
  out.sort((a, b) => start(a.name) - start(b.name));
  return out.flatMap((o) => parseLc3File(o.data).frames.map((f) => Buffer.from(f)));
}

export interface FrameCheck {
  /** Frames of the first `n` sent that are not in the store at their place, byte for byte. */
  missing: number;
  /** The first such frame (-1: none). */
  first: number;
  /** Frames of the uid in the store. */
  stored: number;
}

/** Checks the first `n` frames `uid` sent (frame k = frames[k % frames.length]) against the store. */
export function checkStoredFrames(storeDir: string, uid: string, n: number, frames: readonly Uint8Array[]): FrameCheck {
  const got = storedLc3Frames(storeDir, uid);
  let missing = 0;
  let first = -1;
  for (let k = 0; k < n; k++) {
    if (!got[k]?.equals(frames[k % frames.length]!)) {
      missing++;
      if (first < 0) first = k;
    }
  }
  return { missing, first, stored: got.length };
}
