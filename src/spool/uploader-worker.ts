// The body of the uploader worker, importable by tests: builds the store and the Uploader from
// the worker's data and returns the control API that workers/uploader.ts exposes over comlink.
// The uploader also listens to the shards' sealed-chunk announcements (BroadcastChannel).
import type { MessagePort } from 'node:worker_threads';
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
  const up = new Uploader({
    dir: d.dir,
    store: createStore(d.store),
    quota: d.quotaSab ? new SpoolQuota(d.quotaSab) : undefined,
    concurrency: d.concurrency,
    rescanMs: d.rescanMs,
    listen: true,
    onError: (e, name) => d.events?.postMessage({ type: 'uploader-error', name, message: e.message }),
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
