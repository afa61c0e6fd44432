// What the parts of one shard's spool share: the I/O seam, the quota, the clock, the count of
// audio held in memory (and the congestion it signals), the error counters, and the abort flag.
// One instance per ShardSpool; the journal, the chunk files and the sealer each get it.
import type { SpoolIo } from './io.js';
import type { SpoolQuota } from './quota.js';

export interface SpoolCounters {
  commits: number;
  commitErrors: number;
  /** Failed fdatasyncs (or EIO writes) of a journal segment or of a chunk file being sealed. */
  fsyncFailures: number;
  writeErrors: number;
  sealErrors: number;
  sealedChunks: number;
  maxCommitMs: number;
}

const noop = (): void => undefined;

export interface FsyncFailure {
  /** The journal (a segment's write or fdatasync) or a chunk file (its write, or its fdatasync when sealing). */
  where: 'journal' | 'chunk';
  /**
   * Journal only: this was the rewrite of a batch whose first fsync had failed, into a new
   * segment, and it failed too: what the sessions sent since their last ack is not durable and
   * may not become so; the shard closes them (1011) so clients resend it.
   */
  rewriteFailed: boolean;
}

export class SpoolContext {
  /** Audio held in memory: appended but not journaled, or journaled but not yet in its chunk file. */
  held = 0;
  congested = false;
  /** Set by ShardSpool.abort(): nothing new starts. */
  aborted = false;
  readonly counters: SpoolCounters = { commits: 0, commitErrors: 0, fsyncFailures: 0, writeErrors: 0, sealErrors: 0, sealedChunks: 0, maxCommitMs: 0 };

  constructor(
    readonly io: SpoolIo,
    readonly quota: SpoolQuota,
    readonly now: () => number,
    private readonly maxPending: number,
    private readonly onCongestion: (congested: boolean) => void = noop,
    private readonly onError: (err: Error, context: string) => void = noop,
    private readonly onFsyncFailure: (err: Error, f: FsyncFailure) => void = noop,
  ) {}

  /**
   * A failed fdatasync (or an EIO write): after it the page cache is no evidence of anything and
   * retrying the fsync on the same file proves nothing, so the caller gives that file up (a new
   * journal segment; a chunk file rebuilt from the journal). Counted and reported.
   */
  fsyncFailed(e: unknown, f: FsyncFailure): void {
    this.counters.fsyncFailures++;
    const err = e instanceof Error ? e : new Error(String(e));
    this.report(() => this.onFsyncFailure(err, f), 'onFsyncFailure');
  }

  /** Reports a change of `congested` (held ≥ maxPendingBytes) through onCongestion. */
  checkCongestion(): void {
    const congested = this.held >= this.maxPending;
    if (congested !== this.congested) {
      this.congested = congested;
      this.report(() => this.onCongestion(congested), 'onCongestion');
    }
  }

  /** Runs a user callback; a callback that throws is reported, never breaks the spool. */
  report(fn: () => void, context: string): void {
    try {
      fn();
    } catch (e) {
      this.error(e, `${context} callback`);
    }
  }

  error(e: unknown, context: string): void {
    const err = e instanceof Error ? e : new Error(String(e));
    try {
      this.onError(err, context);
    } catch {
      // a logger that throws must not break the spool
    }
  }
}
