// The types of ShardSpool's surface: its options, what a session is opened with, what a sealed
// chunk is announced as, and its stats (each figure documented here).
import type { FsyncFailure, SpoolCounters } from './context.js';
import type { SpoolFormat } from './format.js';
import type { SpoolIo } from './io.js';
import type { CommitStats } from './journal-commit.js';
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
  /**
   * A journal fdatasync (or an EIO write) failed, or a chunk file's while sealing: logged at
   * `error` and counted. `rewriteFailed`: the batch could not be made durable in a new segment
   * either — close the shard's sessions (1011), clients resend what was not acknowledged.
   */
  onFsyncFailure?: (err: Error, f: FsyncFailure) => void;
  /** The journal failed for lack of space (ENOSPC/EDQUOT: true) or was written again (false). */
  onNoSpace?: (full: boolean) => void;
  /**
   * close() gives up after this long (default: never): it stops like abort(), and what could not
   * be sealed stays in the journal for the next start's recovery (SIGTERM on a full disk).
   */
  closeTimeoutMs?: number;
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
  /**
   * A chunk's journaled bytes wait up to this long (or 16 KiB) to be written to its file in one
   * writev (default 1000; 0: after every commit). See chunk-files.ts.
   */
  chunkWriteDelayMs?: number;
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

/** The spool's figures: its error and commit counters (SpoolCounters) and what it holds now. */
export interface ShardSpoolStats extends SpoolCounters {
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
  journalSegments: number;
  journalBytes: number;
  lastCommit: CommitStats | null;
}
