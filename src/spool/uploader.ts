// The uploader: moves sealed chunks from the spool to the object store.
//
// Every file under {dir}/sealed/chunks/ is an object waiting to be uploaded under its relative
// path. Files are found by a scan at start, by periodic rescans, and by notify() (shards announce
// freshly sealed chunks). Each upload reads the file, computes sha256 and the audio metadata
// (codec, sample_rate, frames, duration, sha256), checks the store for an object of that name
// (identical → already uploaded, e.g. before a crash; different → the name is taken by another
// chunk, so the start is stepped by 1 ms), puts the file, and deletes the spool file only once
// putFile resolved (the store has confirmed size and checksum).
//
// Failures retry forever: per file with capped exponential backoff and full jitter, and globally —
// after a failure only one upload runs at a time until one succeeds, and the next attempt waits
// for the global backoff too — so an outage of any length costs a trickle of probes, not a storm.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { ObjectStore, PutMeta } from '../store/types.js';
import { StoreError } from '../store/types.js';
import { onSealedAnnouncement } from './channel.js';
import { inspectChunk, type ChunkInfo } from './format.js';
import { errCode, nodeIo, pruneDirs, type SpoolIo } from './io.js';
import { bumpObjectName, contentTypeFor, parseObjectName, SEALED_DIR } from './names.js';
import type { SpoolQuota } from './quota.js';
import { walkFiles } from './recover.js';
import { MinHeap } from '../util/min-heap.js';
import { SizeClassPool } from '../util/scratch-pool.js';
import { LatencyBuckets, type LatencySnapshot } from '../util/latency-buckets.js';

/** Upload-duration buckets: < 1 ms … < 65.5 s (2^16 ms), then the rest. */
export const UPLOAD_LATENCY_BUCKETS = 18;

export interface UploaderOptions {
  /** SPOOL_DIR. */
  dir: string;
  store: ObjectStore;
  /** Uploaded (deleted) files are subtracted from it. */
  quota?: SpoolQuota;
  /** Uploads in flight (default 4). */
  concurrency?: number;
  /** Backoff: first retry delay bound and cap (default 500 ms → 60 s), full jitter. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Periodic rescan of sealed/ (default 30 s; 0 disables). */
  rescanMs?: number;
  /** Subscribe to the shards' sealed-chunk announcements (BroadcastChannel). */
  listen?: boolean;
  onError?: (err: Error, name: string) => void;
  onUploaded?: (name: string, bytes: number) => void;
  random?: () => number;
  now?: () => number;
  io?: SpoolIo;
}

export interface UploaderStats {
  /** uploads_total{result="ok"} / {result="error"}: attempts that succeeded / failed. */
  uploads_ok: number;
  uploads_error: number;
  upload_retries_total: number;
  audio_bytes_uploaded_total: number;
  /** Sealed chunks waiting (queued, backing off or in flight) and their bytes. */
  spool_files: number;
  spool_bytes: number;
  in_flight: number;
  /** Consecutive failures across files (0 when the store is healthy). */
  consecutive_failures: number;
}

/** Duration of each attempt (read, hash, stat, put, delete), by result: pusher_upload_duration_seconds. */
export interface UploadDurations {
  ok: LatencySnapshot;
  error: LatencySnapshot;
}

export interface Entry {
  name: string;
  size: number;
  attempts: number;
  dueAt: number;
}

/** Entries waiting for their retry time, earliest first (exported for tests). */
export class DueHeap extends MinHeap<Entry> {
  constructor() {
    super((a, b) => a.dueAt < b.dueAt);
  }

  override pop(): Entry {
    return super.pop()!;
  }
}

export class Uploader {
  private readonly sealedRoot: string;
  private readonly store: ObjectStore;
  private readonly io: SpoolIo;
  private readonly quota: SpoolQuota | undefined;
  private readonly concurrency: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly rescanMs: number;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly onError: NonNullable<UploaderOptions['onError']>;
  private readonly onUploaded: NonNullable<UploaderOptions['onUploaded']>;
  private readonly entries = new Map<string, Entry>();
  /** Entries ready to go, in arrival order (from `head`), and entries backing off. */
  private queue: Entry[] = [];
  private head = 0;
  private readonly delayed = new DueHeap();
  private inFlight = 0;
  private fails = 0;
  private globalDueAt = 0;
  private bytesWaiting = 0;
  private wake: NodeJS.Timeout | null = null;
  private wakeAt = 0;
  private rescanTimer: NodeJS.Timeout | null = null;
  private unlisten: (() => void) | null = null;
  private draining = false;
  private closed = false;
  private idleWaiters: (() => void)[] = [];
  private settleWaiters: (() => void)[] = [];
  private readonly listen: boolean;
  private readonly counters = { ok: 0, error: 0, retries: 0, bytes: 0 };
  /** Sealed chunks read for hashing: one buffer per upload in flight, then reused. */
  private readonly reads = new SizeClassPool(64 << 10, 8 << 20, 4, 16 << 20);
  private readonly durations = { ok: new LatencyBuckets(UPLOAD_LATENCY_BUCKETS), error: new LatencyBuckets(UPLOAD_LATENCY_BUCKETS) };

  constructor(o: UploaderOptions) {
    this.sealedRoot = join(o.dir, SEALED_DIR);
    this.store = o.store;
    this.io = o.io ?? nodeIo;
    this.quota = o.quota;
    this.concurrency = Math.max(1, o.concurrency ?? 4);
    this.baseDelayMs = o.baseDelayMs ?? 500;
    this.maxDelayMs = o.maxDelayMs ?? 60_000;
    this.rescanMs = o.rescanMs ?? 30_000;
    this.listen = o.listen ?? false;
    this.random = o.random ?? Math.random;
    this.now = o.now ?? Date.now;
    this.onError = o.onError ?? ((): void => undefined);
    this.onUploaded = o.onUploaded ?? ((): void => undefined);
  }

  /** Scans sealed/ and starts uploading; starts the periodic rescan and the announcement listener. */
  async start(): Promise<void> {
    if (this.listen && !this.unlisten) this.unlisten = onSealedAnnouncement((m) => this.notify(m.name, m.bytes));
    if (this.rescanMs > 0 && !this.rescanTimer) {
      this.rescanTimer = setInterval(() => void this.scan().catch((e: unknown) => this.onError(e as Error, 'rescan')), this.rescanMs);
      this.rescanTimer.unref();
    }
    await this.scan();
  }

  /** Queues every file under sealed/ that is not known yet. */
  async scan(): Promise<void> {
    for (const f of await walkFiles(this.io, this.sealedRoot)) this.notify(f.rel, f.size);
  }

  /** A sealed chunk to upload (object name = path relative to sealed/). Unknown names are ignored. */
  notify(name: string, bytes = 0): void {
    if (this.closed || this.entries.has(name)) return;
    if (!parseObjectName(name)) {
      this.onError(new Error(`not a chunk name, left alone: sealed/${name}`), name);
      return;
    }
    const e: Entry = { name, size: bytes, attempts: 0, dueAt: 0 };
    this.entries.set(name, e);
    this.bytesWaiting += bytes;
    this.queue.push(e);
    this.pump();
  }

  stats(): UploaderStats {
    return {
      uploads_ok: this.counters.ok,
      uploads_error: this.counters.error,
      upload_retries_total: this.counters.retries,
      audio_bytes_uploaded_total: this.counters.bytes,
      spool_files: this.entries.size,
      spool_bytes: this.bytesWaiting,
      in_flight: this.inFlight,
      consecutive_failures: this.fails,
    };
  }

  uploadDurations(): UploadDurations {
    return { ok: this.durations.ok.snapshot(), error: this.durations.error.snapshot() };
  }

  /**
   * SIGTERM: rescan, then upload what is sealed until everything is done or `timeoutMs` passed
   * (backoff is capped at 1 s meanwhile). What remains stays on disk for the next start.
   */
  async drain(timeoutMs: number): Promise<{ uploaded: number; remaining: number }> {
    const before = this.counters.ok;
    this.draining = true;
    if (this.fails > 0) this.globalDueAt = Math.min(this.globalDueAt, this.now() + 1000);
    const soon = this.now() + 1000;
    const waiting: Entry[] = [];
    while (this.delayed.size > 0) waiting.push(this.delayed.pop());
    for (const e of waiting) {
      e.dueAt = Math.min(e.dueAt, soon);
      this.delayed.push(e);
    }
    this.pump();
    try {
      await this.scan();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => {
          if (this.entries.size === 0) resolve();
          else this.idleWaiters.push(resolve);
        }),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
      ]);
      clearTimeout(timer);
    } finally {
      this.draining = false;
    }
    return { uploaded: this.counters.ok - before, remaining: this.entries.size };
  }

  /** Stops scanning and starting uploads; resolves when the uploads in flight have settled. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.rescanTimer) clearInterval(this.rescanTimer);
    if (this.wake) clearTimeout(this.wake);
    this.unlisten?.();
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.settleWaiters.push(resolve));
  }

  private backoff(n: number): number {
    const cap = this.draining ? Math.min(this.maxDelayMs, 1000) : this.maxDelayMs;
    return this.random() * Math.min(cap, this.baseDelayMs * 2 ** Math.min(n - 1, 30));
  }

  private pump(): void {
    if (this.closed) return;
    const now = this.now();
    while (this.delayed.size > 0 && this.delayed.peek()!.dueAt <= now) this.queue.push(this.delayed.pop());
    if (now < this.globalDueAt) return this.schedule(this.globalDueAt);
    // While the store is failing, one probe at a time.
    const limit = this.fails > 0 ? 1 : this.concurrency;
    while (this.inFlight < limit && this.head < this.queue.length) void this.upload(this.queue[this.head++]!);
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    if (this.delayed.size > 0 && this.head === this.queue.length) this.schedule(this.delayed.peek()!.dueAt);
  }

  private schedule(at: number): void {
    if (this.wake && this.wakeAt <= at) return;
    if (this.wake) clearTimeout(this.wake);
    this.wakeAt = at;
    this.wake = setTimeout(() => {
      this.wake = null;
      this.pump();
    }, Math.max(0, at - this.now()));
    this.wake.unref();
  }

  private async upload(e: Entry): Promise<void> {
    this.inFlight++;
    if (e.attempts > 0) this.counters.retries++;
    let outcome: 'ok' | 'gone' | Error;
    const t0 = performance.now(); // wall time, not this.now(): tests may fake the clock for backoff
    try {
      outcome = await this.uploadOnce(e);
    } catch (err) {
      outcome = err instanceof Error ? err : new Error(String(err));
    }
    // 'gone' was no upload (the file had been uploaded meanwhile), so it is not timed.
    if (outcome !== 'gone') this.durations[outcome === 'ok' ? 'ok' : 'error'].observe(performance.now() - t0);
    this.inFlight--;
    if (outcome === 'ok' || outcome === 'gone') {
      this.fails = 0;
      this.globalDueAt = 0;
      this.forget(e);
    } else {
      this.counters.error++;
      this.onError(outcome, e.name);
      const now = this.now();
      e.attempts++;
      const permanent = outcome instanceof StoreError && !outcome.retryable;
      e.dueAt = now + (permanent ? (this.draining ? 1000 : this.maxDelayMs) : this.backoff(e.attempts));
      this.fails++;
      this.globalDueAt = now + this.backoff(this.fails);
      this.delayed.push(e);
    }
    if (this.inFlight === 0) for (const w of this.settleWaiters.splice(0)) w();
    this.pump();
  }

  private forget(e: Entry): void {
    this.entries.delete(e.name);
    this.bytesWaiting -= e.size;
    if (this.entries.size === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  private async uploadOnce(e: Entry): Promise<'ok' | 'gone'> {
    const path = join(this.sealedRoot, e.name);
    const d = await this.describe(e, path);
    if (d === 'gone') return 'gone';
    const { size, sha256, meta } = d;
    let target = e.name;
    for (;;) {
      const existing = await this.store.stat(target);
      if (!existing) {
        await this.store.putFile(target, path, meta);
        this.counters.bytes += size;
        break;
      }
      if (existing.size === size && existing.metadata.sha256 === sha256) break; // uploaded before
      target = bumpObjectName(target);
    }
    // Confirmed by the store: the spool copy can go.
    await this.io.unlink(path).catch((err: unknown) => {
      if (errCode(err) !== 'ENOENT') throw err;
    });
    this.quota?.sub(size);
    this.counters.ok++;
    await pruneDirs(this.io, join(path, '..'), join(this.sealedRoot, 'chunks'));
    this.onUploaded(target, size);
    return 'ok';
  }

  /**
   * Reads the sealed file into a pooled buffer for its sha256 and audio metadata, and gives the
   * buffer back before the upload (putFile streams the file itself): one buffer per chunk would be
   * ~0.2–2 MB of churn per upload on this thread (see SizeClassPool).
   */
  private async describe(e: Entry, path: string): Promise<{ size: number; sha256: string; meta: PutMeta } | 'gone'> {
    const taken: Buffer[] = [];
    try {
      let buf: Buffer;
      try {
        buf = await this.io.readFile(path, (n) => {
          const b = this.reads.take(n);
          taken.push(b);
          return b;
        });
      } catch (err) {
        if (errCode(err) === 'ENOENT') return 'gone'; // uploaded meanwhile (a duplicate notify)
        throw err;
      }
      if (e.size !== buf.length) {
        this.bytesWaiting += buf.length - e.size;
        e.size = buf.length;
      }
      const sha256 = createHash('sha256').update(buf).digest('hex');
      const ext = parseObjectName(e.name)!.ext;
      return { size: buf.length, sha256, meta: { contentType: contentTypeFor(ext), metadata: audioMetadata(buf, ext, sha256), size: buf.length, sha256 } };
    } finally {
      for (const b of taken) this.reads.give(b);
    }
  }

}

/** Object metadata of a chunk: codec, sample_rate, frames, duration (s), sha256 (+ frame_us for LC3). */
export function audioMetadata(buf: Buffer, ext: 'lc3' | 'wav', sha256: string): Record<string, string> {
  let info: ChunkInfo;
  try {
    info = inspectChunk(buf, ext);
  } catch {
    return { codec: 'unknown', sha256 };
  }
  const m: Record<string, string> = {
    codec: info.codec,
    sample_rate: String(info.sampleRate),
    frames: String(info.frames),
    duration: info.duration.toFixed(3),
    sha256,
  };
  if (info.format?.kind === 'lc3') {
    m.frame_us = String(info.format.frameUs);
    m.frame_bytes = String(info.format.frameBytes);
  }
  return m;
}
