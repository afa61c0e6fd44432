// The journal's files: one shard's segments under {SPOOL_DIR}/journal/, the current one appended
// to by each group commit, rotated by size and age, deleted oldest first once no unsealed chunk
// needs them. (The record format is journal.ts; what goes into a commit is journal-commit.ts.)
//
// A segment is deleted once every chunk whose first record is in it or in an older segment has
// been sealed (segments go strictly oldest first, so any chunk with a record in a surviving
// segment has all its later records, including its SEAL, in surviving segments). `refs` counts
// the unsealed chunks whose first record is in a segment.
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { SpoolContext } from './context.js';
import { errCode, mkdirDurable, type SpoolFile } from './io.js';
import { parseSegment, REC_DATA, type JournalRecord } from './journal.js';
import { segmentFileName } from './names.js';

export interface Segment {
  seq: number;
  path: string;
  file: SpoolFile | null;
  size: number;
  /** Unsealed chunks whose first record is in this segment. */
  refs: number;
  createdAt: number;
}

const noop = (): void => undefined;

export class JournalSegments {
  private readonly segments: Segment[] = [];
  private current: Segment | null = null;
  private segSeq = 0;
  private dirReady = false;
  /** Where the last failed append failed: creating a segment, writing, or its fdatasync. */
  failedAt: 'segment' | 'write' | 'sync' | null = null;

  constructor(
    private readonly ctx: SpoolContext,
    /** {SPOOL_DIR}/journal. */
    readonly dir: string,
    private readonly shard: number,
    private readonly run: string,
    /** Rotation: size and age of the current segment. */
    private readonly segmentBytes: number,
    private readonly segmentMs: number,
  ) {}

  get count(): number {
    return this.segments.length;
  }

  get bytes(): number {
    let n = 0;
    for (const s of this.segments) n += s.size;
    return n;
  }

  /**
   * Appends `data` to the current segment and fdatasyncs it; returns the segment it is now durable
   * in. Throws on any failure (the caller keeps the batch; nothing of it is acknowledged).
   */
  async append(data: Uint8Array): Promise<{ seg: Segment; writeMs: number; syncMs: number }> {
    this.failedAt = 'segment';
    const seg = await this.segment();
    const tw = performance.now();
    this.failedAt = 'write';
    try {
      await seg.file!.write(data, seg.size);
    } catch (e) {
      // A write cut short (ENOSPC after part of the batch) leaves a torn record: cut it off, so the
      // segment ends on a whole record (recovery would stop there anyway; this keeps it tidy and
      // gives the space back). Best effort: the segment is abandoned either way.
      await seg.file!.truncate(seg.size).catch(noop);
      throw e;
    }
    const ts = performance.now();
    this.failedAt = 'sync';
    await seg.file!.datasync();
    this.failedAt = null;
    const syncMs = performance.now() - ts;
    // `size` is what is durable: after a failed write or fsync the segment is abandoned, and what
    // the page cache holds past `size` is no evidence of anything (dataRecords never reads it).
    seg.size += data.length;
    this.ctx.quota.add(data.length);
    return { seg, writeMs: ts - tw, syncMs };
  }

  /** The segment to write to: the current one, or a new one when it is full or old. */
  private async segment(): Promise<Segment> {
    const cur = this.current;
    if (cur && cur.size < this.segmentBytes && (cur.size === 0 || this.ctx.now() - cur.createdAt < this.segmentMs)) return cur;
    if (cur) {
      this.current = null;
      await cur.file!.close().catch((e: unknown) => this.ctx.error(e, 'journal close'));
      cur.file = null;
    }
    if (!this.dirReady) {
      await mkdirDurable(this.ctx.io, this.dir);
      this.dirReady = true;
    }
    for (;;) {
      const seq = this.segSeq++;
      const path = join(this.dir, segmentFileName(this.shard, this.run, seq));
      let file: SpoolFile;
      try {
        file = await this.ctx.io.open(path, 'excl');
      } catch (e) {
        if (errCode(e) === 'EEXIST') continue;
        throw e;
      }
      const seg: Segment = { seq, path, file, size: 0, refs: 0, createdAt: this.ctx.now() };
      this.segments.push(seg);
      this.current = seg;
      await this.ctx.io.fsyncDir(this.dir);
      return seg;
    }
  }

  /** An old current segment with nothing new to write is closed, so pruning can delete it. */
  async retireIdle(): Promise<void> {
    const cur = this.current;
    if (cur && cur.size > 0 && this.ctx.now() - cur.createdAt >= this.segmentMs) await this.abandon();
  }

  /** Stops writing to the current segment (after a failure there: the next append opens a new one). */
  async abandon(): Promise<void> {
    const cur = this.current;
    if (!cur) return;
    this.current = null;
    const f = cur.file!;
    cur.file = null;
    await f.close().catch(noop);
  }

  /** Deletes segments from the oldest while no unsealed chunk needs them (all of them when closing). */
  async prune(all: boolean): Promise<void> {
    while (this.segments.length > 0) {
      const seg = this.segments[0]!;
      if (seg.refs > 0 || (seg === this.current && !all)) return;
      if (seg.file) {
        await seg.file.close().catch(noop);
        seg.file = null;
        this.current = null;
      }
      try {
        await this.ctx.io.unlink(seg.path);
      } catch (e) {
        if (errCode(e) !== 'ENOENT') {
          this.ctx.error(e, 'journal delete');
          return;
        }
      }
      this.segments.shift();
      this.ctx.quota.sub(seg.size);
    }
  }

  /**
   * Every DATA record of chunk `chunkId`, read back from segment `from` on (to rebuild its file).
   * Only the durable prefix of each segment is read: a batch whose write or fdatasync failed may
   * still be readable from the page cache, and it was rewritten into a later segment anyway.
   */
  async *dataRecords(from: Segment, chunkId: number): AsyncGenerator<JournalRecord> {
    const start = this.segments.indexOf(from);
    for (const seg of this.segments.slice(start)) {
      const { records } = parseSegment((await this.ctx.io.readFile(seg.path)).subarray(0, seg.size));
      for (const r of records) if (r.chunkId === chunkId && r.type === REC_DATA) yield r;
    }
  }
}
