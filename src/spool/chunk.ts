// The state of one chunk (CHUNK_SECONDS of one session's audio, one file) as it moves through the
// parts of the spool, and the per-session handle sessions append through.
//
//   appended (pend) → journaled (group commit: OPEN/DATA/SEAL records) → written to its chunk file
//   (chunk-files.ts, `unwritten` until then) → sealed (sealer.ts: header, fdatasync, link, SEALED).
import { headerBytes, type SpoolFormat } from './format.js';
import type { OpenPayload } from './journal.js';
import type { SpoolFile } from './io.js';
import { checkConversationId, SpoolInputError } from './names.js';
import type { Segment } from './journal-segments.js';
import type { SharedBuffer } from '../util/scratch-pool.js';

export interface PendingWrite {
  pos: number;
  data: Uint8Array;
  /** The commit's batch buffer `data` is a view into (released once written, or copied out if the
   *  write has to wait for a retry); null: `data` is its own copy. */
  lease: SharedBuffer | null;
}

export class Chunk {
  frames = 0;
  nextPos: number;
  pend: Buffer | null = null;
  pendLen = 0;
  pendFrames = 0;
  pendPayload = 0;
  unwritten: PendingWrite[] = [];
  /** ctx.now() when the oldest of `unwritten` arrived (0: none); a failed write of them (retry at once). */
  unwrittenSince = 0;
  writeFailed = false;
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

/** What a SessionSpool asks of its ShardSpool. */
export interface SessionHost {
  appendTo(s: SessionSpool, payload: Uint8Array, off: number, len: number, frames: number, firstSampleUnixMs: number): void;
  sealCurrent(s: SessionSpool): void;
  closeSession(s: SessionSpool): Promise<void>;
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
    private readonly spool: SessionHost,
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
