// The durable audio spool of one shard (one per shard worker thread).
//
// Sessions append audio synchronously (a memcpy into the chunk's pending buffer, no I/O). One
// timer per shard runs a group commit every fsyncMs:
//   1. every chunk that received audio since the last commit contributes a DATA record (its new
//      bytes, their offset in the chunk file, a CRC); new chunks an OPEN record (path + format);
//      chunks to be sealed a SEAL record;
//   2. the records go to the shard's journal segment in ONE write, then ONE fdatasync — one
//      fsync per commit for all sessions of the shard;
//   3. onDurable(session, frames, bytes) for every session whose durable count advanced;
//   4. the same bytes are written into each chunk file (page cache, no fsync);
//   5. chunks whose SEAL is journaled are sealed in the background (final header, fdatasync,
//      link to sealed/{object name}, fsync its directory); a SEALED record goes into the next
//      commit, and only once that is durable is the open name removed. So recovery reads "no open
//      file, no SEALED record" as "the file was not created yet" and rebuilds it from the journal,
//      and "no open file, SEALED" as "sealed, maybe uploaded since".
// A journal segment is deleted once every chunk whose first record is in it or in an older
// segment has been sealed (segments go strictly oldest first, so any chunk with a record in a
// surviving segment has all its later records, including its SEAL, in surviving segments).
//
// Memory: per chunk, the bytes appended since the last commit (≤ fsyncMs of audio unless the disk
// stalls — see `congested`); nothing grows with the number of past chunks.
// Failures: a failed journal write/fsync keeps the batch and rewrites it into a fresh segment at
// the next commit (nothing is acknowledged before its fsync); a failed chunk write is retried; a
// failed seal is retried with backoff, after rewriting the chunk file from the journal.
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  checkFormat,
  chunkHeader,
  diskFrameBytes,
  extFor,
  frameMs,
  framesPerChunk,
  headerBytes,
  payloadFrameBytes,
  type SpoolFormat,
} from './format.js';
import { errCode, linkUnique, mkdirDurable, nodeIo, pruneDirs, type SpoolFile, type SpoolIo } from './io.js';
import { parseSegment, REC_DATA, REC_OPEN, REC_SEAL, REC_SEALED, RECORD_HEADER_BYTES, writeRecord, type OpenPayload } from './journal.js';
import {
  checkConversationId,
  checkUid,
  JOURNAL_DIR,
  objectName,
  OPEN_DIR,
  openFileName,
  SEALED_DIR,
  segmentFileName,
  SpoolInputError,
  UNNAMED_CONVERSATION,
} from './names.js';
import type { SpoolQuota } from './quota.js';

export interface SealedChunk {
  /** Object name = path relative to {dir}/sealed/. */
  name: string;
  /** Absolute path of the sealed file. */
  path: string;
  bytes: number;
  frames: number;
  sessionId: number;
}

export interface ShardSpoolOptions {
  /** SPOOL_DIR. */
  dir: string;
  shard: number;
  quota: SpoolQuota;
  /** Group commit period (FSYNC_MS, default 200). */
  fsyncMs?: number;
  /** Audio seconds per chunk (CHUNK_SECONDS, default 60). */
  chunkSeconds?: number;
  /** Cumulative frames and payload bytes of the session that can no longer be lost (§2.3). */
  onDurable?: (sessionId: number, frames: number, bytes: number) => void;
  /**
   * After each successful group commit, once its onDurable calls are done (e.g. post the acks
   * gathered in onDurable as one message; record the fsync time in a histogram).
   */
  onCommit?: (commit: CommitStats) => void;
  /** A chunk was sealed (e.g. `announceSealed` to wake the uploader). */
  onSealed?: (chunk: SealedChunk) => void;
  /** Bytes held in memory crossed maxPendingBytes (true) or fell back under it (false). */
  onCongestion?: (congested: boolean) => void;
  /** Errors the spool handles itself (it retries); for logs and metrics. */
  onError?: (err: Error, context: string) => void;
  /** Wall clock, unix ms (tests). */
  now?: () => number;
  /** A chunk open longer than this (wall clock) is sealed even if it is not full (default 2 × chunkSeconds). */
  maxChunkAgeMs?: number;
  /** Journal segment rotation: size (default 16 MiB) and age (default 10 s). */
  segmentBytes?: number;
  segmentMs?: number;
  /** `congested` when audio held in memory reaches this (default 32 MiB). */
  maxPendingBytes?: number;
  /**
   * Chunks sealed concurrently (default 8). Each seal mostly waits on the disk (fdatasync, link,
   * directory fsync) and concurrent fsyncs share the file system's journal commits, so seals/s
   * grow with it (measured ~90/s at 1, ~400/s at 8); the process needs a libuv pool to match
   * (bin/lc3-pusher.cjs sizes it).
   */
  sealConcurrency?: number;
  /** Chunk-file writes in flight per commit (default 16). */
  writeConcurrency?: number;
  io?: SpoolIo;
}

export interface OpenSessionOptions {
  sessionId: number;
  uid: string;
  /** '_' (UNNAMED_CONVERSATION) until the session names one. */
  conversationId?: string;
  format: SpoolFormat;
}

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

export interface ShardSpoolStats {
  sessions: number;
  /** Chunks not yet sealed. */
  openChunks: number;
  /** Chunks whose SEAL is journaled, waiting to be (or being) sealed: grows when sealing falls behind. */
  sealBacklog: number;
  /** Age of the oldest chunk not yet sealed, ms (0 when there is none): its journal segment cannot be deleted. */
  oldestOpenMs: number;
  /** Audio held in memory, waiting for a commit or a retried write. */
  heldBytes: number;
  congested: boolean;
  commits: number;
  commitErrors: number;
  writeErrors: number;
  sealErrors: number;
  sealedChunks: number;
  journalSegments: number;
  journalBytes: number;
  lastCommit: CommitStats | null;
  maxCommitMs: number;
}

interface PendingWrite {
  pos: number;
  data: Uint8Array;
  /** false: a view into its commit's batch buffer (copied if the write has to wait for a retry). */
  owned: boolean;
}

interface Segment {
  seq: number;
  path: string;
  file: SpoolFile | null;
  size: number;
  /** Unsealed chunks whose first record is in this segment. */
  refs: number;
  createdAt: number;
}

class Chunk {
  frames = 0;
  nextPos: number;
  pend: Buffer | null = null;
  pendLen = 0;
  pendFrames = 0;
  pendPayload = 0;
  unwritten: PendingWrite[] = [];
  file: SpoolFile | null = null;
  createTried = false;
  headerCounted = false;
  declared = false;
  firstSeg: Segment | null = null;
  dirty = false;
  sealRequested = false;
  sealBuilt = false;
  sealJournaled = false;
  state: 'open' | 'sealing' | 'sealed' = 'open';
  /** 0 final header + fdatasync · 1 link · 2 fsync sealed dir · 3 SEALED record pending · 4 remove open name. */
  sealStep = 0;
  sealedName: string | null = null;
  rebuild = false;
  sealFailures = 0;
  readonly openPayload: Buffer;

  constructor(
    readonly id: number,
    readonly session: SessionSpool,
    readonly openRel: string,
    readonly openAbs: string,
    readonly objectName: string,
    readonly openedAt: number,
    readonly maxFrames: number,
  ) {
    this.nextPos = headerBytes(session.format);
    const p: OpenPayload = { open: openRel, object: objectName, format: session.format, session: session.sessionId };
    this.openPayload = Buffer.from(JSON.stringify(p));
  }
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

/** The spool of one session: append audio, switch conversation, close. */
export class SessionSpool {
  conversationId: string;
  /** @internal */ cur: Chunk | null = null;
  /** @internal */ durFrames = 0;
  /** @internal */ durBytes = 0;
  /** @internal */ unsealed = 0;
  /** @internal */ closed = false;
  /** @internal */ closeP: Promise<void> | null = null;
  /** @internal */ resolveClose: (() => void) | null = null;
  /** @internal */ notify = false;

  constructor(
    private readonly spool: ShardSpool,
    readonly sessionId: number,
    readonly uid: string,
    conversationId: string,
    readonly format: SpoolFormat,
  ) {
    this.conversationId = conversationId;
  }

  /** Cumulative audio frames and payload bytes of this session that can no longer be lost. */
  get durable(): { frames: number; bytes: number } {
    return { frames: this.durFrames, bytes: this.durBytes };
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Appends audio (synchronous; copies the bytes, the caller may reuse its buffer at once; never
   * drops). LC3: `payload` is `frames` whole frames of format.frameBytes back to back. PCM16:
   * `payload` is PCM16LE mono and `frames` is its number of samples (payload.length / 2).
   * `firstSampleUnixMs` names the chunk the audio starts (invalid values: the wall clock).
   */
  append(payload: Uint8Array, frames: number, firstSampleUnixMs: number): void {
    this.spool.appendTo(this, payload, 0, payload.length, frames, firstSampleUnixMs);
  }

  /** append() of `data[off, off+len)` without making a view (the shard's ring records). */
  appendRange(data: Uint8Array, off: number, len: number, frames: number, firstSampleUnixMs: number): void {
    if (!Number.isSafeInteger(off) || !Number.isSafeInteger(len) || off < 0 || len < 0 || off + len > data.length) {
      throw new SpoolInputError(`append: range ${off}+${len} outside ${data.length} bytes`);
    }
    this.spool.appendTo(this, data, off, len, frames, firstSampleUnixMs);
  }

  /** Seals the current chunk; the next audio opens a chunk under `id` (no-op if it is the current id). */
  switchConversation(id: string): void {
    checkConversationId(id);
    if (this.closed) throw new SpoolInputError(`session ${this.sessionId} is closed`);
    if (id === this.conversationId) return;
    this.conversationId = id;
    this.spool.sealCurrent(this);
  }

  /** Seals the open chunk; resolves when every chunk of the session is sealed (after the next commit). */
  close(): Promise<void> {
    return this.spool.closeSession(this);
  }
}

const noop = (): void => undefined;

export class ShardSpool {
  readonly dir: string;
  readonly shard: number;
  readonly fsyncMs: number;
  readonly chunkSeconds: number;
  /** Distinguishes this run's journal segments and open files from any other run's. */
  readonly run: string;
  private readonly quota: SpoolQuota;
  private readonly io: SpoolIo;
  private readonly now: () => number;
  private readonly maxChunkAgeMs: number;
  private readonly segmentBytes: number;
  private readonly segmentMs: number;
  private readonly maxPending: number;
  private readonly sealConcurrency: number;
  private readonly writeConcurrency: number;
  private readonly onDurable: NonNullable<ShardSpoolOptions['onDurable']>;
  private readonly onSealed: NonNullable<ShardSpoolOptions['onSealed']>;
  private readonly onCommit: NonNullable<ShardSpoolOptions['onCommit']>;
  private readonly onCongestion: NonNullable<ShardSpoolOptions['onCongestion']>;
  private readonly onError: NonNullable<ShardSpoolOptions['onError']>;
  private readonly openRoot: string;
  private readonly sealedRoot: string;
  private readonly journalDir: string;

  private readonly sessions = new Map<number, SessionSpool>();
  private readonly dirty = new Set<Chunk>();
  private readonly needFlush = new Set<Chunk>();
  private ageQueue: Chunk[] = [];
  private ageHead = 0;
  private chunkSeq = 0;
  private carry: { buf: Buffer; items: Item[] } | null = null;
  /** The chunk-write lane: runs beside the commits, so slow file creation never delays an ack. */
  private lane: Promise<void> | null = null;
  private laneAgain = false;
  private held = 0;
  private congested = false;

  private readonly segments: Segment[] = [];
  private current: Segment | null = null;
  private segSeq = 0;
  private journalDirReady = false;

  private readonly sealQueue: Chunk[] = [];
  private sealing = 0;
  private sealBacklog = 0;
  /** Chunks whose sealed file is durable, waiting for their SEALED record. */
  private sealedMarks: Chunk[] = [];
  /** Chunks not yet sealed, oldest first (a Set keeps insertion order). */
  private readonly openChunks = new Set<Chunk>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private allSealed: (() => void)[] = [];

  private chain: Promise<void> = Promise.resolve();
  private next: Promise<void> | null = null;
  private readonly timer: NodeJS.Timeout;
  private closing: Promise<void> | null = null;
  private aborted = false;

  private counters = { commits: 0, commitErrors: 0, writeErrors: 0, sealErrors: 0, sealedChunks: 0, maxCommitMs: 0 };
  private lastCommit: CommitStats | null = null;

  constructor(opts: ShardSpoolOptions) {
    if (!Number.isInteger(opts.shard) || opts.shard < 0) throw new RangeError(`shard must be a non-negative integer, got ${opts.shard}`);
    this.dir = opts.dir;
    this.shard = opts.shard;
    this.quota = opts.quota;
    this.fsyncMs = opts.fsyncMs ?? 200;
    this.chunkSeconds = opts.chunkSeconds ?? 60;
    if (!(this.fsyncMs > 0) || !(this.chunkSeconds > 0)) throw new RangeError('fsyncMs and chunkSeconds must be positive');
    this.io = opts.io ?? nodeIo;
    this.now = opts.now ?? Date.now;
    this.maxChunkAgeMs = opts.maxChunkAgeMs ?? 2 * this.chunkSeconds * 1000;
    this.segmentBytes = opts.segmentBytes ?? 16 << 20;
    this.segmentMs = opts.segmentMs ?? 10_000;
    this.maxPending = opts.maxPendingBytes ?? 32 << 20;
    this.sealConcurrency = opts.sealConcurrency ?? 8;
    this.writeConcurrency = opts.writeConcurrency ?? 16;
    this.onDurable = opts.onDurable ?? noop;
    this.onSealed = opts.onSealed ?? noop;
    this.onCommit = opts.onCommit ?? noop;
    this.onCongestion = opts.onCongestion ?? noop;
    this.onError = opts.onError ?? noop;
    this.run = `${this.now().toString(36)}${randomBytes(2).toString('hex')}`;
    this.openRoot = join(this.dir, OPEN_DIR);
    this.sealedRoot = join(this.dir, SEALED_DIR);
    this.journalDir = join(this.dir, JOURNAL_DIR);
    this.timer = setInterval(() => void this.commit(), this.fsyncMs);
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
    return this.congested;
  }

  stats(): ShardSpoolStats {
    let journalBytes = 0;
    for (const s of this.segments) journalBytes += s.size;
    const oldest = this.openChunks.values().next();
    return {
      sessions: this.sessions.size,
      openChunks: this.openChunks.size,
      sealBacklog: this.sealBacklog,
      oldestOpenMs: oldest.done ? 0 : Math.max(0, this.now() - oldest.value.openedAt),
      heldBytes: this.held,
      congested: this.congested,
      commits: this.counters.commits,
      commitErrors: this.counters.commitErrors,
      writeErrors: this.counters.writeErrors,
      sealErrors: this.counters.sealErrors,
      sealedChunks: this.counters.sealedChunks,
      journalSegments: this.segments.length,
      journalBytes,
      lastCommit: this.lastCommit,
      maxCommitMs: this.counters.maxCommitMs,
    };
  }

  /**
   * Runs a group commit now (coalesced with one already queued); resolves when it is done and
   * its bytes are in the chunk files (the timer's commits do not wait for the chunk files).
   */
  async flush(): Promise<void> {
    await this.commit();
    while (this.lane) await this.lane;
  }

  private commit(): Promise<void> {
    if (this.aborted) return Promise.resolve();
    if (this.next) return this.next;
    const p = this.chain.then(() => {
      this.next = null;
      return this.commitOnce();
    });
    this.next = p;
    this.chain = p;
    return p;
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
    this.aborted = true;
    this.closing ??= Promise.resolve();
    clearInterval(this.timer);
    for (const t of this.retryTimers) clearTimeout(t);
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
    if (!(Number.isFinite(t0) && t0 >= 0 && t0 < 1e15)) t0 = this.now();
    const fms = frameMs(f);
    for (let i = 0; i < frames; ) {
      const c = (s.cur ??= this.openChunk(s, Math.round(t0 + i * fms)));
      const n = Math.min(c.maxFrames - c.frames, frames - i);
      this.copyIn(c, payload, off + i * pfb, n);
      i += n;
      if (c.frames >= c.maxFrames) this.sealCurrent(s);
    }
    this.checkCongestion();
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
      this.now(),
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
    this.held += add;
    this.markDirty(c);
  }

  private markDirty(c: Chunk): void {
    if (!c.dirty) {
      c.dirty = true;
      this.dirty.add(c);
    }
  }

  private requestSeal(c: Chunk): void {
    c.sealRequested = true;
    this.markDirty(c);
  }

  private checkCongestion(): void {
    const congested = this.held >= this.maxPending;
    if (congested !== this.congested) {
      this.congested = congested;
      this.report(() => this.onCongestion(congested), 'onCongestion');
    }
  }

  private report(fn: () => void, context: string): void {
    try {
      fn();
    } catch (e) {
      this.error(e, `${context} callback`);
    }
  }

  private error(e: unknown, context: string): void {
    const err = e instanceof Error ? e : new Error(String(e));
    try {
      this.onError(err, context);
    } catch {
      // a logger that throws must not break the spool
    }
  }

  // ---------------------------------------------------------------- group commit

  private sealAged(): void {
    const limit = this.now() - this.maxChunkAgeMs;
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

  private async commitOnce(): Promise<void> {
    const t0 = performance.now();
    this.sealAged();
    const carry = this.carry;
    let size = carry ? carry.buf.length : 0;
    const chunks = [...this.dirty];
    this.dirty.clear();
    const marks = this.sealedMarks;
    this.sealedMarks = [];
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
      await this.retireIdleSegment();
    }
    if (this.needFlush.size > 0) this.kickLane();
    await this.pruneSegments(false);
    const totalMs = performance.now() - t0;
    if (this.lastCommit && size > 0) this.lastCommit.totalMs = totalMs;
    if (totalMs > this.counters.maxCommitMs && size > 0) this.counters.maxCommitMs = totalMs;
  }

  private async journal(chunks: Chunk[], marks: Chunk[], carry: { buf: Buffer; items: Item[] } | null, size: number, t0: number): Promise<boolean> {
    // One buffer per commit: the chunk-file writes of this commit use views into it.
    const buf = Buffer.allocUnsafe(size);
    let at = 0;
    const items: Item[] = [];
    if (carry) {
      carry.buf.copy(buf, 0);
      at = carry.buf.length;
      items.push(...carry.items);
      this.held -= carry.buf.length;
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
        this.held -= c.pendLen;
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
      seg = await this.segment();
      const tw = performance.now();
      await seg.file!.write(buf.subarray(0, at), seg.size);
      const ts = performance.now();
      await seg.file!.datasync();
      syncMs = performance.now() - ts;
      writeMs = ts - tw;
    } catch (e) {
      // Nothing of this batch is acknowledged: keep it, rewrite it into a fresh segment next time.
      this.carry = { buf: Buffer.from(buf.subarray(0, at)), items };
      this.held += at;
      this.counters.commitErrors++;
      this.error(e, 'journal');
      await this.abandonSegment();
      this.checkCongestion();
      return false;
    }
    seg.size += at;
    this.quota.add(at);
    this.counters.commits++;
    const advanced: SessionSpool[] = [];
    for (const it of items) {
      const c = it.chunk;
      if (it.open) {
        c.firstSeg = seg;
        seg.refs++;
      }
      if (it.dataLen > 0) {
        c.unwritten.push({ pos: it.pos, data: buf.subarray(it.dataAt, it.dataAt + it.dataLen), owned: false });
        this.held += it.dataLen; // until it is in the chunk file
        this.needFlush.add(c);
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
        this.needFlush.add(c);
      }
      if (it.sealed) {
        c.sealStep = 4;
        this.sealQueue.push(c);
      }
    }
    this.pumpSeals();
    for (const s of advanced) {
      s.notify = false;
      this.report(() => this.onDurable(s.sessionId, s.durFrames, s.durBytes), 'onDurable');
    }
    const commit: CommitStats = { records, bytes: at, sessions: advanced.length, writeMs, syncMs, totalMs: performance.now() - t0 };
    this.lastCommit = commit;
    this.report(() => this.onCommit(commit), 'onCommit');
    this.checkCongestion();
    return true;
  }

  /** The segment to write to: the current one, or a new one when it is full or old. */
  private async segment(): Promise<Segment> {
    const cur = this.current;
    if (cur && cur.size < this.segmentBytes && (cur.size === 0 || this.now() - cur.createdAt < this.segmentMs)) return cur;
    if (cur) {
      this.current = null;
      await cur.file!.close().catch((e: unknown) => this.error(e, 'journal close'));
      cur.file = null;
    }
    if (!this.journalDirReady) {
      await mkdirDurable(this.io, this.journalDir);
      this.journalDirReady = true;
    }
    for (;;) {
      const seq = this.segSeq++;
      const path = join(this.journalDir, segmentFileName(this.shard, this.run, seq));
      let file: SpoolFile;
      try {
        file = await this.io.open(path, 'excl');
      } catch (e) {
        if (errCode(e) === 'EEXIST') continue;
        throw e;
      }
      const seg: Segment = { seq, path, file, size: 0, refs: 0, createdAt: this.now() };
      this.segments.push(seg);
      this.current = seg;
      await this.io.fsyncDir(this.journalDir);
      return seg;
    }
  }

  /** An old current segment with nothing new to write is closed, so pruning can delete it. */
  private async retireIdleSegment(): Promise<void> {
    const cur = this.current;
    if (cur && cur.size > 0 && this.now() - cur.createdAt >= this.segmentMs) await this.abandonSegment();
  }

  private async abandonSegment(): Promise<void> {
    const cur = this.current;
    if (!cur) return;
    this.current = null;
    const f = cur.file!;
    cur.file = null;
    await f.close().catch(noop);
  }

  /** Deletes segments from the oldest while no unsealed chunk needs them (all of them when closing). */
  private async pruneSegments(all: boolean): Promise<void> {
    while (this.segments.length > 0) {
      const seg = this.segments[0]!;
      if (seg.refs > 0 || (seg === this.current && !all)) return;
      if (seg.file) {
        await seg.file.close().catch(noop);
        seg.file = null;
        this.current = null;
      }
      try {
        await this.io.unlink(seg.path);
      } catch (e) {
        if (errCode(e) !== 'ENOENT') {
          this.error(e, 'journal delete');
          return;
        }
      }
      this.segments.shift();
      this.quota.sub(seg.size);
    }
  }

  // ---------------------------------------------------------------- chunk files

  private kickLane(): void {
    if (this.lane) {
      this.laneAgain = true;
      return;
    }
    this.lane = (async () => {
      do {
        this.laneAgain = false;
        await this.flushChunks();
      } while (this.laneAgain && !this.aborted);
      this.lane = null;
      this.checkCongestion();
    })();
  }

  private async flushChunks(): Promise<void> {
    const list = [...this.needFlush];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < list.length) await this.flushChunk(list[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(this.writeConcurrency, list.length) }, worker));
  }

  private async flushChunk(c: Chunk): Promise<void> {
    try {
      const f = await this.ensureFile(c);
      while (c.unwritten.length > 0) {
        const u = c.unwritten[0]!;
        await f.write(u.data, u.pos);
        c.unwritten.shift();
        this.held -= u.data.length;
        this.quota.add(u.data.length);
      }
      this.needFlush.delete(c);
      if (c.sealJournaled && c.state === 'open') this.enqueueSeal(c);
    } catch (e) {
      for (const u of c.unwritten) {
        if (!u.owned) {
          u.data = Buffer.from(u.data); // do not keep a whole commit's buffer alive for it
          u.owned = true;
        }
      }
      this.counters.writeErrors++;
      this.error(e, 'chunk write');
    }
  }

  private async ensureFile(c: Chunk): Promise<SpoolFile> {
    if (c.file) return c.file;
    // First attempt: exclusive create. A retry may find the file its failed predecessor created.
    const mode = c.createTried ? 'rw' : 'excl';
    c.createTried = true;
    const f = await this.openInDir(c.openAbs, mode);
    try {
      await f.write(chunkHeader(c.session.format, 0), 0);
    } catch (e) {
      await f.close().catch(noop);
      throw e;
    }
    if (!c.headerCounted) {
      c.headerCounted = true;
      this.quota.add(headerBytes(c.session.format));
    }
    c.file = f;
    return f;
  }

  /** Opens a file, creating its directory; retries when another thread removes the directory meanwhile. */
  private async openInDir(path: string, mode: 'excl' | 'rw'): Promise<SpoolFile> {
    let last: unknown;
    for (let i = 0; i <= 20; i++) {
      await this.io.mkdirp(dirname(path));
      try {
        return await this.io.open(path, mode);
      } catch (e) {
        if (errCode(e) !== 'ENOENT') throw e;
        last = e;
      }
    }
    throw last;
  }

  // ---------------------------------------------------------------- sealing

  private enqueueSeal(c: Chunk): void {
    c.state = 'sealing';
    this.sealBacklog++;
    this.sealQueue.push(c);
    this.pumpSeals();
  }

  private pumpSeals(): void {
    while (!this.aborted && this.sealing < this.sealConcurrency && this.sealQueue.length > 0) {
      const c = this.sealQueue.shift()!;
      this.sealing++;
      void this.sealOne(c).finally(() => {
        this.sealing--;
        this.pumpSeals();
      });
    }
  }

  private async sealOne(c: Chunk): Promise<void> {
    try {
      if (c.sealStep === 0) {
        if (c.rebuild) await this.rebuildChunk(c);
        const f = c.file!;
        await f.write(chunkHeader(c.session.format, c.frames), 0);
        await f.datasync();
        c.file = null;
        await f.close().catch(noop); // the data is durable; a failing close changes nothing
        c.sealStep = 1;
      }
      if (c.sealStep === 1) {
        c.sealedName = await linkUnique(this.io, this.sealedRoot, c.openAbs, c.objectName);
        c.sealStep = 2;
      }
      if (c.sealStep === 2) {
        // ENOENT: the uploader found the file in a rescan, uploaded it and removed the directory.
        await this.io.fsyncDir(dirname(join(this.sealedRoot, c.sealedName!))).catch(ignoreEnoent);
        // The sealed file is durable. The open name stays until a SEALED record says so (the next
        // commit, which hands the chunk back here at step 4): see the header comment.
        c.sealStep = 3;
        this.sealedMarks.push(c);
        return;
      }
      await this.io.unlink(c.openAbs).catch(ignoreEnoent);
    } catch (e) {
      this.counters.sealErrors++;
      this.error(e, 'seal');
      if (c.sealStep === 1 && errCode(e) === 'ENOENT') c.sealStep = 0; // the open file is gone: rebuild it
      if (c.sealStep === 0) {
        c.rebuild = true;
        const f = c.file;
        c.file = null;
        await f?.close().catch(noop);
      }
      const delay = Math.min(10_000, 100 * 2 ** c.sealFailures++);
      const t = setTimeout(() => {
        this.retryTimers.delete(t);
        this.sealQueue.push(c);
        this.pumpSeals();
      }, delay);
      t.unref();
      this.retryTimers.add(t);
      return;
    }
    await pruneDirs(this.io, dirname(c.openAbs), this.openRoot);
    this.sealDone(c);
  }

  /** Rewrites a chunk's file from the journal (after a failed seal: its pages may be lost). */
  private async rebuildChunk(c: Chunk): Promise<void> {
    const f = await this.openInDir(c.openAbs, 'rw');
    try {
      await f.write(chunkHeader(c.session.format, 0), 0);
      let bytes = 0;
      const from = this.segments.indexOf(c.firstSeg!);
      for (const seg of this.segments.slice(from)) {
        const { records } = parseSegment(await this.io.readFile(seg.path));
        for (const r of records) {
          if (r.chunkId !== c.id || r.type !== REC_DATA) continue;
          await f.write(r.payload, r.offset);
          bytes += r.payload.length;
        }
      }
      const expected = c.nextPos - headerBytes(c.session.format);
      if (bytes !== expected) throw new Error(`journal holds ${bytes} bytes of chunk ${c.openRel}, expected ${expected}`);
      await f.truncate(c.nextPos);
    } catch (e) {
      await f.close().catch(noop);
      throw e;
    }
    c.file = f;
    c.rebuild = false;
  }

  private sealDone(c: Chunk): void {
    c.state = 'sealed';
    this.sealBacklog--;
    c.firstSeg!.refs--;
    this.counters.sealedChunks++;
    const s = c.session;
    const name = c.sealedName!;
    this.report(
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
    for (const s of this.sessions.values()) void this.closeSession(s);
    for (;;) {
      await this.flush();
      if (this.aborted) return;
      if (this.openChunks.size === 0 && !this.carry && this.dirty.size === 0 && this.needFlush.size === 0) break;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(this.fsyncMs, 50));
        this.allSealed.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    clearInterval(this.timer);
    await this.pruneSegments(true);
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

function ignoreEnoent(e: unknown): void {
  if (errCode(e) !== 'ENOENT') throw e;
}
