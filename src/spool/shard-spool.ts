// The durable audio spool of one shard (one per shard worker thread), composed of its parts:
//
//   chunk.ts           a chunk's state and the SessionSpool handle sessions append through
//   journal.ts         the journal's record format (OPEN, DATA, SEAL, SEALED; CRC; parse)
//   journal-segments.ts the journal's files: segments, rotation, pruning, reading back
//   journal-commit.ts  the group commit: one write + one fdatasync per FSYNC_MS for all sessions,
//                      then the acks (onDurable)
//   chunk-files.ts     the chunk-file lane: journaled bytes into each chunk's open file
//   sealer.ts          the seal queue: final header, fdatasync, link, directory fsync, SEALED
//   context.ts         what they share: I/O seam, quota, clock, held bytes/congestion, counters
//
// This class owns the sessions and their chunks: appending (a memcpy into the chunk's pending
// buffer, no I/O), cutting chunks (full, too old, conversation switch, close), the commit timer,
// stats, close and abort.
//
// Memory: per chunk, the bytes appended since the last commit (≤ fsyncMs of audio unless the disk
// stalls — see `congested`); nothing grows with the number of past chunks.
// Failures: a failed journal write/fsync keeps the batch and rewrites it into a fresh segment at
// the next commit (nothing is acknowledged before its fsync); a failed chunk write is retried; a
// failed seal is retried with backoff, after rewriting the chunk file from the journal.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Chunk, SessionSpool, type SessionHost } from './chunk.js';
import { ChunkFiles } from './chunk-files.js';
import { SpoolContext } from './context.js';
import { checkFormat, diskFrameBytes, extFor, frameMs, framesPerChunk, payloadFrameBytes } from './format.js';
import { nodeIo } from './io.js';
import { GroupCommit } from './journal-commit.js';
import { JournalSegments } from './journal-segments.js';
import { checkConversationId, checkUid, JOURNAL_DIR, objectName, OPEN_DIR, openFileName, SEALED_DIR, SpoolInputError, UNNAMED_CONVERSATION } from './names.js';
import { Sealer } from './sealer.js';
import type { OpenSessionOptions, ShardSpoolOptions, ShardSpoolStats } from './spool-types.js';

export { SessionSpool } from './chunk.js';
export type { CommitStats } from './journal-commit.js';
export type { FsyncFailure } from './context.js';
export type { OpenSessionOptions, SealedChunk, ShardSpoolOptions, ShardSpoolStats } from './spool-types.js';

const noop = (): void => undefined;

export class ShardSpool implements SessionHost {
  readonly dir: string;
  readonly shard: number;
  readonly fsyncMs: number;
  readonly chunkSeconds: number;
  /** Distinguishes this run's journal segments and open files from any other run's. */
  readonly run: string;
  private readonly ctx: SpoolContext;
  private readonly maxChunkAgeMs: number;
  private readonly onSealed: NonNullable<ShardSpoolOptions['onSealed']>;
  private readonly openRoot: string;
  private readonly sealedRoot: string;
  private readonly segments: JournalSegments;
  private readonly files: ChunkFiles;
  private readonly sealer: Sealer;
  private readonly commits: GroupCommit;

  private readonly sessions = new Map<number, SessionSpool>();
  private ageQueue: Chunk[] = [];
  private ageHead = 0;
  private chunkSeq = 0;
  /** Chunks not yet sealed, oldest first (a Set keeps insertion order). */
  private readonly openChunks = new Set<Chunk>();
  private allSealed: (() => void)[] = [];
  private readonly timer: NodeJS.Timeout;
  private closing: Promise<void> | null = null;
  private readonly closeTimeoutMs: number;

  constructor(opts: ShardSpoolOptions) {
    if (!Number.isInteger(opts.shard) || opts.shard < 0) throw new RangeError(`shard must be a non-negative integer, got ${opts.shard}`);
    this.dir = opts.dir;
    this.shard = opts.shard;
    this.fsyncMs = opts.fsyncMs ?? 200;
    this.chunkSeconds = opts.chunkSeconds ?? 60;
    if (!(this.fsyncMs > 0) || !(this.chunkSeconds > 0)) throw new RangeError('fsyncMs and chunkSeconds must be positive');
    const now = opts.now ?? Date.now;
    const maxPending = opts.maxPendingBytes ?? 32 << 20;
    this.ctx = new SpoolContext(opts.io ?? nodeIo, opts.quota, now, maxPending, opts.onCongestion, opts.onError, opts.onFsyncFailure);
    this.maxChunkAgeMs = opts.maxChunkAgeMs ?? 2 * this.chunkSeconds * 1000;
    this.onSealed = opts.onSealed ?? noop;
    this.run = `${now().toString(36)}${randomBytes(2).toString('hex')}`;
    this.openRoot = join(this.dir, OPEN_DIR);
    this.sealedRoot = join(this.dir, SEALED_DIR);
    this.segments = new JournalSegments(this.ctx, join(this.dir, JOURNAL_DIR), this.shard, this.run, opts.segmentBytes ?? 16 << 20, opts.segmentMs ?? 10_000);
    this.sealer = new Sealer(this.ctx, this.segments, this.openRoot, this.sealedRoot, opts.sealConcurrency ?? 8, (c) => this.sealDone(c));
    const writeDelayMs = opts.chunkWriteDelayMs ?? 1000;
    this.files = new ChunkFiles(this.ctx, opts.writeConcurrency ?? 16, (c) => this.sealer.enqueue(c), {
      delayMs: writeDelayMs,
      batchBytes: 16 << 10,
      pressureBytes: maxPending / 4,
    });
    this.commits = new GroupCommit(this.ctx, this.segments, this.files, this.sealer, {
      beforeCommit: () => this.sealAged(),
      onDurable: opts.onDurable ?? noop,
      onCommit: opts.onCommit ?? noop,
      onNoSpace: opts.onNoSpace ?? noop,
    }, Math.ceil(writeDelayMs / this.fsyncMs) + 2);
    this.closeTimeoutMs = opts.closeTimeoutMs ?? Infinity;
    this.timer = setInterval(() => void this.commits.tick(this.fsyncMs), this.fsyncMs);
    this.timer.unref();
  }

  openSession(o: OpenSessionOptions): SessionSpool {
    if (this.closing) throw new SpoolInputError('spool is closed');
    if (!Number.isSafeInteger(o.sessionId)) throw new SpoolInputError(`bad session id ${String(o.sessionId)}`);
    if (this.sessions.has(o.sessionId)) throw new SpoolInputError(`session ${o.sessionId} is already open`);
    checkUid(o.uid);
    const conv = o.conversationId ?? UNNAMED_CONVERSATION;
    checkConversationId(conv);
    const s = new SessionSpool(this, o.sessionId, o.uid, conv, checkFormat(o.format));
    this.sessions.set(o.sessionId, s);
    return s;
  }

  /** True while audio held in memory is at or above maxPendingBytes: stop reading rings. */
  get isCongested(): boolean {
    return this.ctx.congested;
  }

  stats(): ShardSpoolStats {
    const oldest = this.openChunks.values().next();
    const c = this.ctx.counters;
    return {
      sessions: this.sessions.size,
      openChunks: this.openChunks.size,
      sealBacklog: this.sealer.sealBacklog,
      oldestOpenMs: oldest.done ? 0 : Math.max(0, this.ctx.now() - oldest.value.openedAt),
      heldBytes: this.ctx.held,
      congested: this.ctx.congested,
      commits: c.commits,
      commitErrors: c.commitErrors,
      fsyncFailures: c.fsyncFailures,
      writeErrors: c.writeErrors,
      sealErrors: c.sealErrors,
      sealedChunks: c.sealedChunks,
      journalSegments: this.segments.count,
      journalBytes: this.segments.bytes,
      lastCommit: this.commits.lastCommit,
      maxCommitMs: c.maxCommitMs,
    };
  }

  /**
   * Runs a group commit now (coalesced with one already queued); resolves when it is done and
   * its bytes are in the chunk files (the timer's commits do not wait for the chunk files).
   */
  async flush(): Promise<void> {
    await this.commits.commit();
    if (this.files.pending > 0) this.files.kick(true);
    while (this.files.running) await this.files.running;
  }

  /** Seals every chunk, commits everything, deletes the journal, stops the timer. */
  close(): Promise<void> {
    this.closing ??= this.closeAll();
    return this.closing;
  }

  /**
   * Stops at once without committing — what a crash does (tests), or a shard torn down hard.
   * Audio not yet journaled is dropped from memory; the journal and the files stay on disk for
   * recoverSpool. Operations already running finish; nothing new starts.
   */
  abort(): void {
    this.ctx.aborted = true;
    this.closing ??= Promise.resolve();
    clearInterval(this.timer);
    this.sealer.stop();
  }

  // ---------------------------------------------------------------- session operations

  /** @internal */
  appendTo(s: SessionSpool, payload: Uint8Array, off: number, len: number, frames: number, t0: number): void {
    if (s.closed) throw new SpoolInputError(`session ${s.sessionId} is closed`);
    const f = s.format;
    const pfb = payloadFrameBytes(f);
    if (!Number.isSafeInteger(frames) || frames < 0 || len !== frames * pfb) {
      throw new SpoolInputError(`append: ${len} bytes is not ${frames} frames of ${pfb} bytes`);
    }
    if (frames === 0) return;
    if (!(Number.isFinite(t0) && t0 >= 0 && t0 < 1e15)) t0 = this.ctx.now();
    const fms = frameMs(f);
    for (let i = 0; i < frames; ) {
      const c = (s.cur ??= this.openChunk(s, Math.round(t0 + i * fms)));
      const n = Math.min(c.maxFrames - c.frames, frames - i);
      this.copyIn(c, payload, off + i * pfb, n);
      i += n;
      if (c.frames >= c.maxFrames) this.sealCurrent(s);
    }
    this.ctx.checkCongestion();
  }

  /** @internal */
  sealCurrent(s: SessionSpool): void {
    const c = s.cur;
    if (!c) return;
    s.cur = null;
    this.requestSeal(c);
  }

  /** @internal */
  closeSession(s: SessionSpool): Promise<void> {
    if (!s.closeP) {
      this.sealCurrent(s);
      s.closed = true;
      if (s.unsealed === 0) {
        this.sessions.delete(s.sessionId);
        s.closeP = Promise.resolve();
      } else {
        s.closeP = new Promise((resolve) => (s.resolveClose = resolve));
      }
    }
    return s.closeP;
  }

  private openChunk(s: SessionSpool, startMs: number): Chunk {
    const id = (this.chunkSeq = (this.chunkSeq + 1) >>> 0);
    const ext = extFor(s.format);
    const rel = `chunks/${s.uid}/${s.conversationId}/${openFileName(startMs, this.shard, this.run, id, ext)}`;
    const c = new Chunk(
      id,
      s,
      rel,
      join(this.openRoot, rel),
      objectName(s.uid, s.conversationId, startMs, ext),
      this.ctx.now(),
      framesPerChunk(s.format, this.chunkSeconds),
    );
    s.unsealed++;
    if (this.openChunks.size === 0) this.timer.ref(); // keep the thread alive while audio is not sealed
    this.openChunks.add(c);
    this.ageQueue.push(c);
    return c;
  }

  /** Copies `n` frames starting at byte `src` of `payload` into the chunk's pending buffer. */
  private copyIn(c: Chunk, payload: Uint8Array, src: number, n: number): void {
    const f = c.session.format;
    const add = n * diskFrameBytes(f);
    const need = c.pendLen + add;
    if (!c.pend || c.pend.length < need) {
      const initial = Math.ceil((2 * this.fsyncMs) / frameMs(f)) * diskFrameBytes(f);
      const grown = Buffer.allocUnsafe(Math.max(need, initial, c.pend ? 2 * c.pend.length : 0, 256));
      if (c.pend) c.pend.copy(grown, 0, 0, c.pendLen);
      c.pend = grown;
    }
    const pend = c.pend;
    if (f.kind === 'lc3') {
      const fb = f.frameBytes;
      let at = c.pendLen;
      for (let k = 0; k < n; k++) {
        pend[at] = fb & 0xff;
        pend[at + 1] = fb >> 8;
        copyBytes(payload, src + k * fb, pend, at + 2, fb);
        at += 2 + fb;
      }
    } else {
      copyBytes(payload, src, pend, c.pendLen, n * 2);
    }
    c.pendLen = need;
    c.pendFrames += n;
    c.pendPayload += n * payloadFrameBytes(f);
    c.frames += n;
    this.ctx.held += add;
    this.commits.markDirty(c);
  }

  private requestSeal(c: Chunk): void {
    c.sealRequested = true;
    this.commits.markDirty(c);
  }

  /** Before each commit: chunks open longer than maxChunkAgeMs are cut (wall clock). */
  private sealAged(): void {
    const limit = this.ctx.now() - this.maxChunkAgeMs;
    const q = this.ageQueue;
    while (this.ageHead < q.length) {
      const c = q[this.ageHead]!;
      if (!c.sealRequested) {
        if (c.openedAt > limit) break;
        if (c.session.cur === c) c.session.cur = null;
        this.requestSeal(c);
      }
      this.ageHead++;
    }
    if (this.ageHead > 1024 && this.ageHead * 2 > q.length) {
      this.ageQueue = q.slice(this.ageHead);
      this.ageHead = 0;
    }
  }

  /** The sealer finished `c`: announce it, settle its session, wake close() waiters. */
  private sealDone(c: Chunk): void {
    const s = c.session;
    const name = c.sealedName!;
    this.ctx.report(
      () => this.onSealed({ name, path: join(this.sealedRoot, name), bytes: c.nextPos, frames: c.frames, sessionId: s.sessionId }),
      'onSealed',
    );
    s.unsealed--;
    if (s.closed && s.unsealed === 0) {
      this.sessions.delete(s.sessionId);
      s.resolveClose?.();
    }
    this.openChunks.delete(c);
    if (this.openChunks.size === 0) {
      this.timer.unref();
      const waiters = this.allSealed;
      this.allSealed = [];
      for (const w of waiters) w();
    }
  }

  // ---------------------------------------------------------------- shutdown

  private async closeAll(): Promise<void> {
    const deadline = Date.now() + this.closeTimeoutMs;
    for (const s of this.sessions.values()) void this.closeSession(s);
    for (;;) {
      const timedOut = await raceDeadline(this.flush(), deadline);
      // A full disk will not make room while we wait: give up at once (SIGTERM must not hang).
      if (timedOut || Date.now() >= deadline || this.commits.diskFull) {
        const why = this.commits.diskFull ? 'the disk is full' : `not everything sealed within ${this.closeTimeoutMs} ms`;
        this.ctx.error(new Error(`close: ${why}; what is journaled stays for the next start's recovery`), 'close');
        this.abort();
        return;
      }
      if (this.ctx.aborted) return;
      if (this.openChunks.size === 0 && !this.commits.pending && this.files.pending === 0) break;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(this.fsyncMs, 50));
        this.allSealed.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    clearInterval(this.timer);
    await this.segments.prune(true);
  }
}

/** Waits for `p` until the wall-clock `deadline`; true when the deadline came first. */
async function raceDeadline(p: Promise<void>, deadline: number): Promise<boolean> {
  if (deadline === Infinity) return p.then(() => false);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), Math.max(0, deadline - Date.now()))));
  try {
    return await Promise.race([p.then(() => false), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Copies bytes; small copies in a loop (no subarray view allocated per LC3 frame). */
function copyBytes(src: Uint8Array, from: number, dst: Uint8Array, to: number, n: number): void {
  if (n >= 512) {
    dst.set(src.subarray(from, from + n), to);
    return;
  }
  for (let i = 0; i < n; i++) dst[to + i] = src[from + i]!;
}
