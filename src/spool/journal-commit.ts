// The group commit: every fsyncMs (and on flush), everything that changed since the last commit
// goes to the journal in ONE write and ONE fdatasync for all sessions of the shard:
//   1. SEALED records for chunks the sealer finished (their sealed file is durable);
//   2. per changed chunk: an OPEN record (new chunk: path + format), a DATA record (its new bytes,
//      their offset in the chunk file, a CRC), a SEAL record (the chunk ends here);
//   3. after the fdatasync: onDurable(session, frames, bytes) for every session whose durable count
//      advanced, then onCommit; the bytes go to the chunk-file lane, SEALed chunks on to the sealer.
// Nothing is acknowledged before its fsync. A failed write/fsync keeps the batch (`carry`) and
// rewrites it into a fresh segment at the next commit.
import { performance } from 'node:perf_hooks';
import type { Chunk, SessionSpool } from './chunk.js';
import type { ChunkFiles } from './chunk-files.js';
import type { SpoolContext } from './context.js';
import { errCode } from './io.js';
import { REC_DATA, REC_OPEN, REC_SEAL, REC_SEALED, RECORD_HEADER_BYTES, writeRecord } from './journal.js';
import type { JournalSegments, Segment } from './journal-segments.js';
import type { Sealer } from './sealer.js';
import { SharedBuffer, SizeClassPool } from '../util/scratch-pool.js';

export interface CommitStats {
  /** Records and bytes in the journal write. */
  records: number;
  bytes: number;
  /** Sessions whose durable count advanced. */
  sessions: number;
  /** Milliseconds in the journal write, its fdatasync, and the whole commit. */
  writeMs: number;
  syncMs: number;
  totalMs: number;
}

interface Item {
  chunk: Chunk;
  open: boolean;
  dataAt: number;
  dataLen: number;
  pos: number;
  frames: number;
  payload: number;
  seal: boolean;
  /** A SEALED record (the chunk's sealed file is durable). */
  sealed: boolean;
}

export interface GroupCommitHooks {
  /** Runs first in every commit (sealing chunks that are too old). */
  beforeCommit: () => void;
  onDurable: (sessionId: number, frames: number, bytes: number) => void;
  onCommit: (commit: CommitStats) => void;
  /** The journal failed for lack of space (true: ENOSPC/EDQUOT) or was written again (false). */
  onNoSpace: (full: boolean) => void;
}

/** Timer commits after a failed one wait fsyncMs, doubling up to this (a full disk is no busy loop). */
const MAX_RETRY_MS = 5000;

/** A batch written (or to be written again): `buf` is a view of `lease`'s pooled buffer. */
interface Batch {
  buf: Buffer;
  items: Item[];
  lease: SharedBuffer;
}

export class GroupCommit {
  /** Chunks with something to journal (new bytes, an OPEN, a SEAL). */
  private readonly dirty = new Set<Chunk>();
  private carry: Batch | null = null;
  /**
   * The batch buffers, pooled (see SizeClassPool): one per commit, alive until that commit's
   * chunk-file writes are done (deferred up to the write delay), so `keep` of them (the commits in
   * a write delay, plus two) may be in use at once, and as many are kept idle per size class.
   */
  private readonly buffers: SizeClassPool;
  private chain: Promise<void> = Promise.resolve();
  private next: Promise<void> | null = null;
  /** The kept batch is the rewrite of one whose fsync failed: if this one fails too, say so. */
  private rewriting = false;
  /** Consecutive failed commits, and the wall-clock time before which tick() does not retry. */
  private failures = 0;
  private retryAt = 0;
  private noSpace = false;
  lastCommit: CommitStats | null = null;

  constructor(
    private readonly ctx: SpoolContext,
    private readonly segments: JournalSegments,
    private readonly files: ChunkFiles,
    private readonly sealer: Sealer,
    private readonly hooks: GroupCommitHooks,
    keep = 2,
  ) {
    this.buffers = new SizeClassPool(64 << 10, 16 << 20, keep, 16 << 20);
  }

  /** True while the last commit failed for lack of space (ENOSPC/EDQUOT). */
  get diskFull(): boolean {
    return this.noSpace;
  }

  /** Whether anything waits to be journaled (a changed chunk, or a batch kept after a failure). */
  get pending(): boolean {
    return this.carry !== null || this.dirty.size > 0;
  }

  markDirty(c: Chunk): void {
    if (!c.dirty) {
      c.dirty = true;
      this.dirty.add(c);
    }
  }

  /**
   * The timer's commit: after failures, retried with backoff (fsyncMs · 2^n, ≤ 5 s) — each retry
   * rewrites the whole kept batch, so retrying every fsyncMs on a full disk would burn a core.
   */
  tick(fsyncMs: number): Promise<void> {
    if (this.failures > 0 && this.ctx.now() < this.retryAt) return Promise.resolve();
    return this.commit().then(() => {
      if (this.failures > 0) this.retryAt = this.ctx.now() + Math.min(MAX_RETRY_MS, fsyncMs * 2 ** Math.min(this.failures, 16));
    });
  }

  /** Runs a commit (coalesced with one already queued; commits never overlap). */
  commit(): Promise<void> {
    if (this.ctx.aborted) return Promise.resolve();
    if (this.next) return this.next;
    const p = this.chain.then(() => {
      this.next = null;
      return this.commitOnce();
    });
    this.next = p;
    this.chain = p;
    return p;
  }

  private async commitOnce(): Promise<void> {
    const t0 = performance.now();
    this.hooks.beforeCommit();
    const carry = this.carry;
    let size = carry ? carry.buf.length : 0;
    const chunks = [...this.dirty];
    this.dirty.clear();
    const marks = this.sealer.takeMarks();
    for (const c of marks) size += RECORD_HEADER_BYTES + Buffer.byteLength(c.sealedName!);
    for (const c of chunks) {
      c.dirty = false;
      if (!c.declared) size += RECORD_HEADER_BYTES + c.openPayload.length;
      if (c.pendLen > 0) size += RECORD_HEADER_BYTES + c.pendLen;
      if (c.sealRequested && !c.sealBuilt) size += RECORD_HEADER_BYTES;
    }
    if (size > 0) {
      const ok = await this.journal(chunks, marks, carry, size, t0);
      if (!ok) return;
    } else {
      await this.segments.retireIdle();
    }
    if (this.files.pending > 0) this.files.kick();
    await this.segments.prune(false);
    const totalMs = performance.now() - t0;
    const counters = this.ctx.counters;
    if (this.lastCommit && size > 0) this.lastCommit.totalMs = totalMs;
    if (totalMs > counters.maxCommitMs && size > 0) counters.maxCommitMs = totalMs;
  }

  private async journal(chunks: Chunk[], marks: Chunk[], carry: Batch | null, size: number, t0: number): Promise<boolean> {
    const ctx = this.ctx;
    // One pooled buffer per commit: the chunk-file writes of this commit use views into it, each
    // holding a reference. A retry with nothing new writes the kept batch as it is (no copy of
    // what may be megabytes).
    const reuse = carry !== null && carry.buf.length === size;
    const lease = reuse ? carry.lease : new SharedBuffer(this.buffers.take(size), this.buffers);
    const buf = reuse ? carry.buf : lease.buf;
    let at = 0;
    const items: Item[] = [];
    if (carry) {
      if (!reuse) {
        carry.buf.copy(buf, 0);
        carry.lease.release();
      }
      at = carry.buf.length;
      items.push(...carry.items);
      ctx.held -= carry.buf.length;
      this.carry = null;
    }
    let records = 0;
    for (const c of marks) {
      const len = buf.write(c.sealedName!, at + RECORD_HEADER_BYTES, 'utf8');
      at = writeRecord(buf, at, REC_SEALED, c.id, 0, len);
      items.push({ chunk: c, open: false, dataAt: 0, dataLen: 0, pos: 0, frames: 0, payload: 0, seal: false, sealed: true });
      records++;
    }
    for (const c of chunks) {
      const it: Item = { chunk: c, open: false, dataAt: 0, dataLen: 0, pos: 0, frames: 0, payload: 0, seal: false, sealed: false };
      if (!c.declared) {
        c.openPayload.copy(buf, at + RECORD_HEADER_BYTES);
        at = writeRecord(buf, at, REC_OPEN, c.id, 0, c.openPayload.length);
        c.declared = true;
        it.open = true;
        records++;
      }
      if (c.pendLen > 0) {
        c.pend!.copy(buf, at + RECORD_HEADER_BYTES, 0, c.pendLen);
        it.dataAt = at + RECORD_HEADER_BYTES;
        it.dataLen = c.pendLen;
        it.pos = c.nextPos;
        it.frames = c.pendFrames;
        it.payload = c.pendPayload;
        at = writeRecord(buf, at, REC_DATA, c.id, c.nextPos, c.pendLen);
        c.nextPos += c.pendLen;
        ctx.held -= c.pendLen;
        c.pendLen = c.pendFrames = c.pendPayload = 0;
        records++;
      }
      if (c.sealRequested && !c.sealBuilt) {
        at = writeRecord(buf, at, REC_SEAL, c.id, c.nextPos, 0);
        c.sealBuilt = true;
        it.seal = true;
        records++;
        c.pend = null;
      }
      items.push(it);
    }
    let seg: Segment;
    let writeMs = 0;
    let syncMs = 0;
    try {
      ({ seg, writeMs, syncMs } = await this.segments.append(buf.subarray(0, at)));
    } catch (e) {
      // Nothing of this batch is acknowledged: keep it, rewrite it into a fresh segment next time.
      this.carry = { buf: at === buf.length ? buf : buf.subarray(0, at), items, lease };
      this.failures++;
      ctx.held += at;
      ctx.counters.commitErrors++;
      ctx.error(e, 'journal');
      const stage = this.segments.failedAt;
      await this.segments.abandon();
      // A failed fdatasync, or a write the device refused (EIO), poisons the segment: it is given up
      // (abandon) and the batch goes whole into a new one at the next commit. Anything else (ENOSPC,
      // a segment that could not be created) is retried the same way, but is no fsync failure.
      const fsync = stage === 'sync' || (stage === 'write' && errCode(e) === 'EIO');
      if (fsync || this.rewriting) ctx.fsyncFailed(e, { where: 'journal', rewriteFailed: this.rewriting });
      if (fsync) this.rewriting = true;
      const code = errCode(e);
      if ((code === 'ENOSPC' || code === 'EDQUOT') !== this.noSpace) {
        this.noSpace = !this.noSpace;
        ctx.report(() => this.hooks.onNoSpace(this.noSpace), 'onNoSpace');
      }
      ctx.checkCongestion();
      return false;
    }
    this.rewriting = false;
    this.failures = 0;
    if (this.noSpace) {
      this.noSpace = false;
      ctx.report(() => this.hooks.onNoSpace(false), 'onNoSpace');
    }
    ctx.counters.commits++;
    const advanced = this.settle(items, seg, buf, lease);
    lease.release(); // the commit's own reference: the chunk writes hold theirs
    this.sealer.pump();
    for (const s of advanced) {
      s.notify = false;
      ctx.report(() => this.hooks.onDurable(s.sessionId, s.durFrames, s.durBytes), 'onDurable');
    }
    const commit: CommitStats = { records, bytes: at, sessions: advanced.length, writeMs, syncMs, totalMs: performance.now() - t0 };
    this.lastCommit = commit;
    ctx.report(() => this.hooks.onCommit(commit), 'onCommit');
    ctx.checkCongestion();
    return true;
  }

  /** The batch is durable in `seg`: advance the sessions' durable counts, pass the bytes on. */
  private settle(items: Item[], seg: Segment, buf: Buffer, lease: SharedBuffer): SessionSpool[] {
    const advanced: SessionSpool[] = [];
    for (const it of items) {
      const c = it.chunk;
      if (it.open) {
        c.firstSeg = seg;
        seg.refs++;
      }
      if (it.dataLen > 0) {
        c.unwritten.push({ pos: it.pos, data: buf.subarray(it.dataAt, it.dataAt + it.dataLen), lease: lease.retain() });
        this.ctx.held += it.dataLen; // until it is in the chunk file
        this.files.add(c);
        const s = c.session;
        s.durFrames += it.frames;
        s.durBytes += it.payload;
        if (!s.notify) {
          s.notify = true;
          advanced.push(s);
        }
      }
      if (it.seal) {
        c.sealJournaled = true;
        this.files.add(c);
      }
      if (it.sealed) this.sealer.sealedRecordDurable(c);
    }
    return advanced;
  }
}
