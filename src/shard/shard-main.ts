// The body of a shard worker, importable by tests: builds the ShardCore from the worker's data
// and returns the control API that workers/shard.ts exposes over comlink.
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { isMainThread, type MessagePort } from 'node:worker_threads';
import type { SessionInit, ShardEvent } from '../session/protocol.js';
import type { PcmTap } from '../session/session.js';
import { HttpClient } from '../http/client.js';
import { createSpoolSinks, type SpoolWorkerConfig } from './spool-sink.js';
import { collectGarbage, cpuProfile, heapSnapshotToPort, type GcResult } from '../util/profile.js';
import { threadMonitor, type ThreadSample } from '../util/thread-monitor.js';
import { Arena } from './ring.js';
import { errorKey, LimitedLog } from '../log/limited.js';
import { logCrashes, workerLogger, type LogSettings } from '../log/logger.js';
import { ShardCore, type ShardFaults, type ShardStats } from './shard-core.js';

export interface ShardWorkerData {
  shard: number;
  sab: SharedArrayBuffer;
  slots: number;
  ringBytes: number;
  graceMs: number;
  events: MessagePort;
  faultsAllowed: boolean;
  /** Initial faults (test/chaos runs only; requires faultsAllowed). */
  faults?: Partial<ShardFaults> | undefined;
  /** The durable spool (absent: audio is decoded but not stored, e.g. in unit tests). */
  spool?: SpoolWorkerConfig | undefined;
  /** Test only: append every session's decoded PCM to {dir}/{uid}-{id}.pcm. */
  pcmTapDir?: string | undefined;
  /** Webhooks and apps (absent: sessions get no consumers, e.g. in unit tests). */
  outbound?: OutboundConfig | undefined;
  /** LOG_LEVEL (absent: log records go to the main thread as events, e.g. in unit tests). */
  log?: LogSettings | undefined;
}

export interface OutboundConfig {
  /** WEBHOOK_ALLOW_PRIVATE. */
  allowPrivate: boolean;
  /** This shard's share of the process's connections per origin. */
  connectionsPerOrigin: number;
  /** SESSION_BUFFER_BYTES. */
  sessionBufferBytes: number;
  /** This shard's share of QUEUE_MAX_BYTES. */
  queueBytes: number;
}

export interface ShardApi {
  close(slot: number): Promise<{ leaked: number }>;
  stats(): ShardStats;
  setFaults(f: Partial<ShardFaults>): boolean;
  profile(seconds: number): Promise<string>;
  /** A .heapsnapshot of this shard, posted to `port` in pieces, then null (/debug/heap). */
  heapSnapshot(port: MessagePort): Promise<void>;
  gc(): Promise<GcResult>;
  /** Event-loop lag since the previous call, and this thread's heap (per-thread metrics). */
  threadStats(): ThreadSample;
  stop(): Promise<void>;
}

export function pcmFileTap(dir: string): PcmTap {
  mkdirSync(dir, { recursive: true });
  return (s, pcm) => appendFileSync(join(dir, `${s.uid}-${s.id}.pcm`), new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength));
}

export async function createShard(d: ShardWorkerData): Promise<ShardApi> {
  const monitor = threadMonitor();
  const post = (ev: ShardEvent): void => d.events.postMessage(ev);
  // The shard logs in its own thread (src/log/logger.ts says why), rate-limited: a full disk or a
  // dead webhook repeats for every session and every retry.
  const log = d.log ? workerLogger(d.log, `shard-${d.shard}`) : undefined;
  if (log) logCrashes(log, isMainThread);
  const limited = log ? new LimitedLog(log) : undefined;
  const emit = limited
    ? (ev: ShardEvent): void => (ev.t === 'log' ? limited.warn(ev.msg.replace(/^session \d+: /, '').replace(/\d+/g, 'N'), {}, ev.msg) : post(ev))
    : post;
  const spoolError = (err: Error, ctx: string): void => {
    // A failed fsync (spool-sink names it "fsync …") is an error: that file is given up.
    if (limited && ctx.startsWith('fsync')) limited.error(`spool ${ctx} ${errorKey(err)}`, { ctx, err: err.message }, 'spool fsync failed');
    else if (limited) limited.warn(`spool ${ctx} ${errorKey(err)}`, { ctx, err: err.message }, 'spool problem');
    else post({ t: 'log', msg: `spool ${ctx}: ${err.message}` });
  };
  const spool = d.spool ? createSpoolSinks(d.shard, d.spool, emit, spoolError) : undefined;
  const http = d.outbound ? new HttpClient({ allowPrivate: d.outbound.allowPrivate, connectionsPerOrigin: d.outbound.connectionsPerOrigin }) : undefined;
  const core = new ShardCore({
    shard: d.shard,
    arena: new Arena({ slots: d.slots, ringBytes: d.ringBytes }, d.sab),
    emit,
    graceMs: d.graceMs,
    faultsAllowed: d.faultsAllowed,
    ...(d.pcmTapDir ? { pcmTap: pcmFileTap(d.pcmTapDir) } : {}),
    ...(http ? { http, sessionBufferBytes: d.outbound!.sessionBufferBytes, queueBytes: d.outbound!.queueBytes } : {}),
    ...(spool
      ? {
          sinkFor: (init: SessionInit, slot: number) => spool.sinkFor(init, slot),
          congested: () => spool.spool.isCongested,
          extraStats: () => {
            const st = spool.spool.stats();
            const { heldBytes, openChunks, sealBacklog, oldestOpenMs, journalBytes, commits, maxCommitMs, fsyncFailures } = st;
            return { durableBytes: spool.durableBytes(), spool: { heldBytes, openChunks, sealBacklog, oldestOpenMs, journalBytes, commits, maxCommitMs, fsyncFailures } };
          },
        }
      : {}),
  });
  if (d.faults) core.setFaults(d.faults);
  core.start();
  return {
    close: (slot) => core.close(slot),
    stats: () => core.stats(),
    setFaults: (f) => core.setFaults(f),
    profile: (seconds) => cpuProfile(seconds),
    heapSnapshot: (port) => heapSnapshotToPort(port),
    gc: () => collectGarbage(),
    threadStats: () => monitor.read(),
    stop: async () => {
      await core.stop();
      await spool?.spool.close();
      await http?.close();
    },
  };
}
