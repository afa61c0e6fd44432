// "Frames sent vs frames stored": walks the local store's chunk objects
// (STORE_DIR/chunks/{uid}/{conversation}/{start}.lc3|.wav, DESIGN §3.3) and the sealed chunks
// still waiting in the spool, and totals the audio per uid/conversation, to compare with what the
// load generator sent.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseLc3File } from '../../src/formats/lc3file.js';
import { parseWav } from '../../src/formats/wav.js';
import type { KeyCount } from './loadgen.js';

export interface StoreTotals {
  /** Committed objects read (a local-store object is committed once its .meta.json sidecar exists). */
  objects: number;
  /** Data files without a sidecar yet (an upload in progress, or a crash between renames). */
  uncommitted: number;
  perKey: Record<string, KeyCount>;
  /** Objects that failed to parse (each one is a finding). */
  errors: string[];
}

const SIDECAR = '.meta.json';

/**
 * Totals of the chunk files under `root` ({uid}/{conversation}/{start}.lc3|.wav). With
 * `committed`, a file counts only once its sidecar exists. Names in `skip` are left out; names
 * counted are added to `seen`.
 */
function walkChunks(root: string, o: { committed: boolean; skip?: ReadonlySet<string>; seen?: Set<string> }): StoreTotals {
  const out: StoreTotals = { objects: 0, uncommitted: 0, perKey: {}, errors: [] };
  if (!existsSync(root)) return out;
  const dirs = (p: string) => readdirSync(p, { withFileTypes: true }).filter((d) => d.isDirectory() && !d.name.startsWith('.'));
  for (const uid of dirs(root)) {
    for (const conv of dirs(join(root, uid.name))) {
      const dir = join(root, uid.name, conv.name);
      const names = new Set(readdirSync(dir));
      for (const name of names) {
        if (name.startsWith('.') || name.endsWith(SIDECAR)) continue;
        const kind = name.endsWith('.lc3') ? 'lc3' : name.endsWith('.wav') ? 'pcm' : undefined;
        if (!kind) continue;
        const key = `${uid.name}/${conv.name}`;
        const object = `chunks/${key}/${name}`;
        if (o.skip?.has(object)) continue;
        if (o.committed && !names.has(name + SIDECAR)) {
          out.uncommitted++;
          continue;
        }
        try {
          const buf = readFileSync(join(dir, name));
          let frames: number;
          let bytes: number;
          if (kind === 'lc3') {
            const f = parseLc3File(buf).frames;
            frames = f.length;
            bytes = f.reduce((a, x) => a + x.length, 0);
          } else {
            frames = parseWav(buf).samples.length;
            bytes = frames * 2;
          }
          const e = (out.perKey[key] ??= { kind, frames: 0, bytes: 0 });
          e.frames += frames;
          e.bytes += bytes;
          out.objects++;
          o.seen?.add(object);
        } catch (err) {
          out.errors.push(`${object}: ${(err as Error).message}`);
        }
      }
    }
  }
  return out;
}

/** Totals of every committed chunk object in a local store; an absent chunks/ directory is an empty store. */
export function auditStore(storeDir: string, seen?: Set<string>): StoreTotals {
  return walkChunks(join(storeDir, 'chunks'), { committed: true, ...(seen ? { seen } : {}) });
}

/**
 * Sealed chunks still in the spool (durable, awaiting upload: `{SPOOL_DIR}/sealed/{object name}`),
 * leaving out those already in the store (uploaded, not yet deleted from the spool).
 */
export function auditSpool(spoolDir: string, inStore: ReadonlySet<string>): StoreTotals {
  return walkChunks(join(spoolDir, 'sealed', 'chunks'), { committed: false, skip: inStore });
}

/** Regular files under `dir`, recursively (0 when it does not exist). */
export function countFiles(dir: string): number {
  if (!existsSync(dir)) return 0;
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) n += e.isDirectory() ? countFiles(join(dir, e.name)) : 1;
  return n;
}

/** Sum of two per-key tables. */
export function addCounts(a: Record<string, KeyCount>, b: Record<string, KeyCount>): Record<string, KeyCount> {
  const out: Record<string, KeyCount> = {};
  for (const t of [a, b]) {
    for (const [k, v] of Object.entries(t)) {
      const e = (out[k] ??= { kind: v.kind, frames: 0, bytes: 0 });
      e.frames += v.frames;
      e.bytes += v.bytes;
    }
  }
  return out;
}

export interface AudioComparison {
  ok: boolean;
  keys: number;
  sentFrames: number;
  storedFrames: number;
  /** Keys whose stored audio is outside [sent − uncertain, sent]: what and by how much. */
  mismatches: string[];
}

/**
 * Stored must equal sent per uid/conversation, except for audio our own kills may have dropped
 * in the client (uncertain): sent − uncertain ≤ stored ≤ sent, in frames (LC3) or samples (PCM).
 */
export function compareAudio(
  sent: Record<string, KeyCount>,
  uncertain: Record<string, KeyCount>,
  stored: Record<string, KeyCount>,
): AudioComparison {
  const keys = [...new Set([...Object.keys(sent), ...Object.keys(stored)])].sort();
  const mismatches: string[] = [];
  let sentFrames = 0;
  let storedFrames = 0;
  for (const k of keys) {
    const s = sent[k]?.frames ?? 0;
    const u = uncertain[k]?.frames ?? 0;
    const st = stored[k]?.frames ?? 0;
    sentFrames += s;
    storedFrames += st;
    const unit = (sent[k] ?? stored[k])!.kind === 'lc3' ? 'frames' : 'samples';
    if (st > s) mismatches.push(`${k}: stored ${st} ${unit}, sent only ${s} (+${st - s})`);
    else if (st < s - u) mismatches.push(`${k}: sent ${s} ${unit}, stored ${st} (lost ${s - u - st}${u ? `; ${u} more uncertain` : ''})`);
  }
  return { ok: mismatches.length === 0, keys: keys.length, sentFrames, storedFrames, mismatches };
}
