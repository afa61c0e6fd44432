// The body of the uploader worker, importable by tests: builds the store and the Uploader from
// the worker's data and returns the control API that workers/uploader.ts exposes over comlink.
// The uploader also listens to the shards' sealed-chunk announcements (BroadcastChannel).
import { isMainThread, type MessagePort } from 'node:worker_threads';
import { errorKey, LimitedLog } from '../log/limited.js';
import { logCrashes, workerLogger, type LogSettings } from '../log/logger.js';
import { createStore, type StoreConfig } from '../store/index.js';
import { collectGarbage, cpuProfile, heapSnapshotToPort, type GcResult } from '../util/profile.js';
import { threadMonitor, type ThreadSample } from '../util/thread-monitor.js';
import { SpoolQuota } from './quota.js';
import { Uploader, type UploadDurations, type UploaderStats } from './uploader.js';

export interface UploaderWorkerData {
  /** SPOOL_DIR. */
  dir: string;
  /** STORE, STORE_DIR, GCS_BUCKET, GCS_API_ENDPOINT. */
  store: StoreConfig;
  /** SpoolQuota.sab of the process (uploaded files are subtracted). */
  quotaSab?: SharedArrayBuffer | undefined;
  concurrency?: number | undefined;
  rescanMs?: number | undefined;
  /** Upload errors are posted here as { type: 'uploader-error', name, message } (for the logs). */
  events?: MessagePort | undefined;
  /** LOG_LEVEL: the uploader logs in its own thread (src/log/logger.ts); absent: it does not log. */
  log?: LogSettings | undefined;
}

/** What an Uploader error means, as a log message (it calls onError with the object's name, or 'rescan'). */
export function uploadErrorMessage(err: Error, name: string): string {
  if (name === 'rescan') return 'spool rescan failed';
  if (err.message.startsWith('not a chunk name')) return 'sealed file is not a chunk; left alone';
  return 'upload failed, will retry';
}

export interface UploaderApi {
  /** A sealed chunk to upload (its object name), e.g. from recoverSpool's result. */
  notify(name: string, bytes?: number): void;
  stats(): UploaderStats;
  /** Per-attempt upload durations by result (pusher_upload_duration_seconds). */
  uploadDurations(): UploadDurations;
  /** SIGTERM: upload what is sealed within `timeoutMs`; what remains stays for the next start. */
  drain(timeoutMs: number): Promise<{ uploaded: number; remaining: number }>;
  close(): Promise<void>;
  /** A full GC of the uploader thread (/debug/gc). */
  gc(): Promise<GcResult>;
  /** A .cpuprofile of the uploader thread (/debug/profile). */
  profile(seconds: number): Promise<string>;
  /** A .heapsnapshot of the uploader thread, posted to `port` in pieces, then null (/debug/heap). */
  heapSnapshot(port: MessagePort): Promise<void>;
  /** Event-loop lag since the previous call, and this thread's heap (per-thread metrics). */
  threadStats(): ThreadSample;
}

export async function createUploaderWorker(d: UploaderWorkerData): Promise<UploaderApi> {
  const monitor = threadMonitor();
  const log = d.log ? workerLogger(d.log, 'uploader') : undefined;
  if (log) logCrashes(log, isMainThread);
  // A store outage retries every file forever: one line per kind of failure per minute, with the count.
  const limited = log ? new LimitedLog(log) : undefined;
  const up = new Uploader({
    dir: d.dir,
    store: createStore(d.store),
    quota: d.quotaSab ? new SpoolQuota(d.quotaSab) : undefined,
    concurrency: d.concurrency,
    rescanMs: d.rescanMs,
    listen: true,
    onError: (e, name) => {
      limited?.warn(`upload ${errorKey(e, name)}`, { object: name, err: e.message }, uploadErrorMessage(e, name));
      d.events?.postMessage({ type: 'uploader-error', name, message: e.message });
    },
  });
  await up.start();
  return {
    notify: (name, bytes) => up.notify(name, bytes),
    stats: () => up.stats(),
    uploadDurations: () => up.uploadDurations(),
    drain: (ms) => up.drain(ms),
    close: () => up.close(),
    gc: () => collectGarbage(),
    profile: (seconds) => cpuProfile(seconds),
    heapSnapshot: (port) => heapSnapshotToPort(port),
    threadStats: () => monitor.read(),
  };
}
