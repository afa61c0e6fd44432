// Start-up recovery of the spool (after a crash, kill -9 or power loss).
//
//   1. Journals: for each shard run, every chunk named by an OPEN record is brought up to date:
//      its open file is (re)created if missing — unless a SEALED record says its sealed file was
//      durable already (the spool removes an open name only after that record) — and every DATA
//      record is written back at its offset (idempotent: same bytes, same place). A SEAL record
//      alone does not mean sealed: the file may simply not have been created yet.
//      The journal is the only copy of audio acknowledged but not yet sealed; it is complete for
//      every unsealed chunk because segments are deleted only oldest-first once their chunks
//      are sealed.
//   2. Open files: each is cut at its last whole frame (a torn tail from a crash mid-write), its
//      header gets the final sample count, it is fsync'd and linked to its sealed object name
//      (if the same inode is sealed already — a crash between link and unlink — the open name is
//      just removed). A file without any audio is removed; a file that cannot be parsed is moved
//      to {dir}/corrupt/ (never deleted: a human can look at it).
//   3. The journal segments are deleted.
// With `shard`, only that shard's journals and open files are touched (for a shard worker that
// is restarted while the others run); without, everything (at process start, before any shard).
import { dirname, join } from 'node:path';
import { checkFormat, chunkHeader, headerBytes, inspectChunk, lc3SampleCount, type Lc3SpoolFormat } from './format.js';
import { errCode, linkUnique, mkdirDurable, nodeIo, pruneDirs, type SpoolFile, type SpoolIo } from './io.js';
import { parseOpenPayload, parseSegment, REC_DATA, REC_OPEN, REC_SEALED, type OpenPayload } from './journal.js';
import {
  CORRUPT_DIR,
  isValidConversationId,
  isValidUid,
  JOURNAL_DIR,
  objectName,
  OPEN_DIR,
  parseOpenFileName,
  parseSegmentFileName,
  SEALED_DIR,
} from './names.js';
import type { SpoolQuota } from './quota.js';
import { writeWavHeader } from '../formats/wav.js';
import { LC3_HEADER_BYTES, maxFrameBytes, readLc3Header } from '../formats/lc3file.js';

export interface RecoverOptions {
  /** SPOOL_DIR. */
  dir: string;
  /** Only this shard's journals and open files (a restarted shard worker); default: all. */
  shard?: number;
  /**
   * Accounting: without `shard`, the spool's total size after recovery is added (pass a fresh
   * quota); with `shard`, the change in size of what recovery touched.
   */
  quota?: SpoolQuota;
  onError?: (err: Error, context: string) => void;
  io?: SpoolIo;
}

export interface RecoverResult {
  /** Journal segments read (then deleted). */
  segments: number;
  records: number;
  /** Audio bytes written back from the journal into chunk files. */
  replayedBytes: number;
  /** Chunk files that existed only in the journal. */
  recreated: number;
  /** Object names of the chunks recovery sealed (now waiting in sealed/ for the uploader). */
  sealed: string[];
  /** Bytes of torn tails cut off. */
  truncatedBytes: number;
  /** Open files without any audio, removed. */
  emptyRemoved: number;
  /** Files moved to {dir}/corrupt/ (relative to the spool directory). */
  quarantined: string[];
  /** sealed/ after recovery: what the uploader has to upload. */
  sealedFiles: number;
  sealedBytes: number;
  /** Bytes in the spool directory after recovery. */
  spoolBytes: number;
}

interface ChunkState {
  open: OpenPayload | null;
  /** A SEALED record: the sealed file was durable (and may have been uploaded since). */
  sealed: boolean;
}

const OPEN_REL_RE = /^chunks\/([A-Za-z0-9_-]{1,128})\/([A-Za-z0-9_-]{1,128})\/([^/]+)$/;

export async function recoverSpool(o: RecoverOptions): Promise<RecoverResult> {
  const io = o.io ?? nodeIo;
  const onError = o.onError ?? ((): void => undefined);
  const r: RecoverResult = {
    segments: 0,
    records: 0,
    replayedBytes: 0,
    recreated: 0,
    sealed: [],
    truncatedBytes: 0,
    emptyRemoved: 0,
    quarantined: [],
    sealedFiles: 0,
    sealedBytes: 0,
    spoolBytes: 0,
  };
  const openRoot = join(o.dir, OPEN_DIR);
  const sealedRoot = join(o.dir, SEALED_DIR);
  const journalDir = join(o.dir, JOURNAL_DIR);
  let after = 0;
  // What a dead shard left (and accounted): its journal segments and its open files.
  let before = 0;
  if (o.shard !== undefined) {
    for (const f of await walkFiles(io, journalDir)) if (parseSegmentFileName(f.rel)?.shard === o.shard) before += f.size;
    for (const f of await walkFiles(io, openRoot)) if (parseOpenFileName(f.rel.slice(f.rel.lastIndexOf('/') + 1))?.shard === o.shard) before += f.size;
  }

  // ---- 1. journals
  const runs = new Map<string, { seq: number; path: string }[]>();
  for (const e of await readdirOrEmpty(io, journalDir)) {
    const p = parseSegmentFileName(e.name);
    if (!p || !e.isFile() || (o.shard !== undefined && p.shard !== o.shard)) continue;
    const key = `${p.shard}-${p.run}`;
    const list = runs.get(key) ?? [];
    list.push({ seq: p.seq, path: join(journalDir, e.name) });
    runs.set(key, list);
  }
  const segPaths: string[] = [];
  for (const list of runs.values()) {
    list.sort((a, b) => a.seq - b.seq);
    const chunks = new Map<number, ChunkState>();
    for (const seg of list) {
      const buf = await io.readFile(seg.path);
      segPaths.push(seg.path);
      r.segments++;
      const { records } = parseSegment(buf);
      r.records += records.length;
      for (const rec of records) {
        let ch = chunks.get(rec.chunkId);
        if (!ch) chunks.set(rec.chunkId, (ch = { open: null, sealed: false }));
        if (rec.type === REC_OPEN) ch.open ??= validOpen(rec.payload);
        else if (rec.type === REC_SEALED) ch.sealed = true;
      }
    }
    const targets = new Map<number, SpoolFile>();
    try {
      for (const [id, ch] of chunks) {
        if (!ch.open) {
          if (!ch.sealed) onError(new Error(`journal ${list[0]!.path}: records of chunk ${id} without a usable OPEN record`), 'recover');
          continue;
        }
        const abs = join(openRoot, ch.open.open);
        const st = await statOrNull(io, abs);
        if (!st && ch.sealed) continue; // sealed (and maybe uploaded) already
        if (!st) r.recreated++;
        await io.mkdirp(dirname(abs));
        const f = await io.open(abs, 'rw');
        targets.set(id, f);
        if (!st || st.size < headerBytes(ch.open.format)) await f.write(chunkHeader(ch.open.format, 0), 0);
      }
      for (const seg of list) {
        if (targets.size === 0) break;
        const { records } = parseSegment(await io.readFile(seg.path));
        for (const rec of records) {
          const f = rec.type === REC_DATA ? targets.get(rec.chunkId) : undefined;
          if (!f) continue;
          await f.write(rec.payload, rec.offset);
          r.replayedBytes += rec.payload.length;
        }
      }
    } finally {
      for (const f of targets.values()) await f.close().catch(() => undefined);
    }
  }

  // ---- 2. open files
  for (const file of await walkFiles(io, openRoot)) {
    const m = OPEN_REL_RE.exec(file.rel);
    const parts = m ? parseOpenFileName(m[3]!) : null;
    if (o.shard !== undefined && parts?.shard !== o.shard) continue;
    if (!parts || !isValidUid(m![1]) || !isValidConversationId(m![2])) {
      after += await quarantine(io, o.dir, OPEN_DIR, file.rel, r, onError);
      continue;
    }
    const abs = join(openRoot, file.rel);
    const st = await io.stat(abs);
    if (await alreadySealed(io, join(sealedRoot, 'chunks', m![1]!, m![2]!), st.ino)) {
      await io.unlink(abs);
      continue;
    }
    const buf = await io.readFile(abs);
    const hb = parts.ext === 'lc3' ? 18 : 44;
    let info;
    try {
      info = inspectChunk(buf, parts.ext);
    } catch (e) {
      if (buf.length <= hb) {
        await io.unlink(abs);
        r.emptyRemoved++;
      } else {
        onError(e as Error, `recover ${file.rel}`);
        after += await quarantine(io, o.dir, OPEN_DIR, file.rel, r, onError);
      }
      continue;
    }
    if (info.frames === 0) {
      if (tornFirstFrame(buf, parts.ext)) {
        await io.unlink(abs);
        r.emptyRemoved++;
      } else {
        after += await quarantine(io, o.dir, OPEN_DIR, file.rel, r, onError);
      }
      continue;
    }
    const f = await io.open(abs, 'rw');
    try {
      if (info.validBytes < buf.length) {
        await f.truncate(info.validBytes);
        r.truncatedBytes += buf.length - info.validBytes;
      }
      await f.write(finalHeader(buf, parts.ext, info.frames, info.format), 0);
      await f.datasync();
    } finally {
      await f.close();
    }
    const name = await linkUnique(io, sealedRoot, abs, objectName(m![1]!, m![2]!, parts.startMs, parts.ext));
    await io.unlink(abs);
    await io.fsyncDir(dirname(join(sealedRoot, name)));
    r.sealed.push(name);
    after += info.validBytes;
    await pruneDirs(io, dirname(abs), openRoot);
  }

  // ---- 3. journals done
  for (const p of segPaths) await io.unlink(p);
  if (segPaths.length > 0) await io.fsyncDir(journalDir);

  // ---- totals
  for (const f of await walkFiles(io, sealedRoot)) {
    r.sealedFiles++;
    r.sealedBytes += f.size;
  }
  r.spoolBytes = r.sealedBytes;
  for (const sub of [OPEN_DIR, JOURNAL_DIR, CORRUPT_DIR]) {
    for (const f of await walkFiles(io, join(o.dir, sub))) r.spoolBytes += f.size;
  }
  if (o.quota) o.quota.add(o.shard === undefined ? r.spoolBytes : after - before);
  return r;
}

function validOpen(payload: Buffer): OpenPayload | null {
  const p = parseOpenPayload(payload);
  const m = p && OPEN_REL_RE.exec(p.open);
  if (!p || !m || !parseOpenFileName(m[3]!)) return null;
  try {
    return { ...p, format: checkFormat(p.format) };
  } catch {
    return null;
  }
}

/** A file without a whole frame: is what follows the header the torn start of a frame (no audio), or garbage? */
function tornFirstFrame(buf: Buffer, ext: 'lc3' | 'wav'): boolean {
  if (ext === 'wav') return true; // fewer than 2 data bytes
  const rest = buf.length - LC3_HEADER_BYTES;
  if (rest < 2) return true;
  const n = buf.readUInt16LE(LC3_HEADER_BYTES);
  return n > 0 && n <= maxFrameBytes(readLc3Header(buf)) && rest < 2 + n;
}

function finalHeader(buf: Buffer, ext: 'lc3' | 'wav', frames: number, format: unknown): Buffer {
  if (ext === 'lc3') {
    const h = Buffer.from(buf.subarray(0, 18));
    const ns = lc3SampleCount(format as Lc3SpoolFormat, frames);
    h.writeUInt16LE(ns & 0xffff, 14);
    h.writeUInt16LE(Math.floor(ns / 65536) & 0xffff, 16);
    return h;
  }
  return writeWavHeader(buf.readUInt32LE(24), 1, frames * 2);
}

async function alreadySealed(io: SpoolIo, sealedDir: string, ino: number): Promise<boolean> {
  for (const e of await readdirOrEmpty(io, sealedDir)) {
    const st = await statOrNull(io, join(sealedDir, e.name));
    if (st && st.ino === ino) return true;
  }
  return false;
}

async function quarantine(io: SpoolIo, dir: string, sub: string, rel: string, r: RecoverResult, onError: NonNullable<RecoverOptions['onError']>): Promise<number> {
  const from = join(dir, sub, rel);
  const st = await io.stat(from);
  let to = join(dir, CORRUPT_DIR, sub, rel);
  await mkdirDurable(io, dirname(to));
  if (await statOrNull(io, to)) to = `${to}.${Date.now()}`;
  await io.rename(from, to);
  const relTo = to.slice(dir.length + 1);
  r.quarantined.push(relTo);
  onError(new Error(`spool file ${sub}/${rel} is not a chunk recovery can repair; moved to ${relTo}`), 'recover');
  return st.size;
}

async function readdirOrEmpty(io: SpoolIo, dir: string): Promise<import('node:fs').Dirent[]> {
  try {
    return await io.readdir(dir);
  } catch (e) {
    if (errCode(e) === 'ENOENT') return [];
    throw e;
  }
}

async function statOrNull(io: SpoolIo, path: string): Promise<{ size: number; ino: number } | null> {
  try {
    return await io.stat(path);
  } catch (e) {
    if (errCode(e) === 'ENOENT') return null;
    throw e;
  }
}

/** Every regular file under `root` (recursively), with its path relative to root and its size. */
export async function walkFiles(io: SpoolIo, root: string): Promise<{ rel: string; size: number }[]> {
  const out: { rel: string; size: number }[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const e of await readdirOrEmpty(io, dir)) {
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) await walk(join(dir, e.name), r);
      else if (e.isFile()) {
        const st = await statOrNull(io, join(dir, e.name));
        if (st) out.push({ rel: r, size: st.size });
      }
    }
  };
  await walk(root, '');
  return out;
}
