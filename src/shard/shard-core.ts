// Everything a shard worker does, as a plain class (tests run it on the main thread; the worker
// entry workers/shard.ts only wires it to comlink and the event port).
import { loadLc3, type Lc3Module } from '../../wasm/lc3.js';
import { decodeUtf8, type SessionInit, type ShardEvent } from '../session/protocol.js';
import { newQueueCounters, SharedPool, type QueueCounters } from '../consumers/session-consumers.js';
import type { HttpClient, HttpTargetStats } from '../http/client.js';
import { LATENCY_BUCKETS, newCounters, Session, type PcmTap, type SessionCounters, type SessionSink } from '../session/session.js';
import { scopeCounters } from '../session/task-scope.js';
import type { ShardSpoolStats } from '../spool/shard-spool.js';
import { Arena, Code, PART, RingConsumer } from './ring.js';

/** How long the drain loop waits for more records before it sleeps on the doorbell (see loop()). */
export const LINGER_MS = 1;

export interface ShardOptions {
  shard: number;
  arena: Arena;
  emit: (ev: ShardEvent) => void;
  graceMs: number;
  lc3?: Lc3Module;
  sinkFor?: (init: SessionInit, slot: number) => SessionSink | undefined;
  /** True while the spool holds too much audio in memory: stop draining (rings fill, sockets pause). */
  congested?: () => boolean;
  /** Extra figures merged into stats() (the spool's). */
  extraStats?: () => Partial<ShardStats>;
  pcmTap?: PcmTap;
  /** The shard's outgoing HTTP pool for webhooks and apps (absent: sessions get no consumers). */
  http?: HttpClient;
  /** SESSION_BUFFER_BYTES: one budget over each session's webhook and app queues. */
  sessionBufferBytes?: number;
  /** The shard's share of QUEUE_MAX_BYTES: every session's webhook and app queues together. */
  queueBytes?: number;
  /** Test/chaos fault switches are honoured only when this is true (never in production). */
  faultsAllowed?: boolean;
}

/**
 * Parses the test-only fault list, e.g. "leak_on_close,drain_delay_ms=20" (LC3_PUSHER_TEST_FAULTS).
 * Unknown names are an error: a typo must not silently disable a positive control.
 */
export function parseFaults(spec: string): Partial<ShardFaults> {
  const f: Partial<ShardFaults> = {};
  for (const part of spec.split(',').map((x) => x.trim()).filter(Boolean)) {
    const [name, value] = part.split('=');
    if (name === 'leak_on_close') f.leakOnClose = true;
    else if (name === 'drain_delay_ms' && value !== undefined && /^\d+$/.test(value)) f.drainDelayMs = Number(value);
    else if (name === 'drop_drained') f.dropDrained = true;
    else if (name !== '1') throw new Error(`unknown test fault "${part}" (known: leak_on_close, drain_delay_ms=N, drop_drained)`);
  }
  return f;
}

export interface ShardFaults {
  /** Sleep this long after every drain burst (a deliberately slow shard). */
  drainDelayMs: number;
  /** Positive control for the leak harness: closing a session leaves its tasks and decoder alive. */
  leakOnClose: boolean;
  /** Never tell the main thread a full slot was drained (a lost wake-up: the sweep must rescue the socket). */
  dropDrained: boolean;
}

export interface ShardStats {
  shard: number;
  sessions: number;
  tasks: number;
  /** Live LC3 decoder states: sessions with a PCM consumer only (0 for storage-only sessions). */
  decoders: number;
  /** LC3 frames received, handed to the durable spool, and decoded (for PCM consumers only). */
  framesReceived: number;
  framesStored: number;
  framesDecoded: number;
  decodeErrors: number;
  plcFrames: number;
  audioBytes: number;
  records: number;
  leakedTasks: number;
  latency: number[];
  latencySumMs: number;
  heapUsed: number;
  wasmBytes: number;
  durableBytes: number;
  transcripts: number;
  speakerRequests: number;
  speakerUnresolved: number;
  queues: QueueCounters;
  http: HttpTargetStats[];
  /** The shard's durable spool (null when audio is not stored). */
  spool: ShardSpoolFigures | null;
}

/** What /metrics exports of the shard's spool (ShardSpool.stats() documents each figure). */
export type ShardSpoolFigures = Pick<ShardSpoolStats, 'heldBytes' | 'openChunks' | 'sealBacklog' | 'oldestOpenMs' | 'journalBytes' | 'commits' | 'maxCommitMs'> &
  Partial<Pick<ShardSpoolStats, 'fsyncFailures'>>;

export class ShardCore {
  readonly shard: number;
  readonly consumer: RingConsumer;
  readonly counters: SessionCounters = newCounters();
  /** Webhook and app queues of every session of this shard (pusher_queue_* metrics). */
  readonly queues: QueueCounters = newQueueCounters();
  private readonly queuePool: SharedPool | undefined;
  readonly faults: ShardFaults = { drainDelayMs: 0, leakOnClose: false, dropDrained: false };
  private readonly sessions = new Map<number, Session>();
  private readonly openParts = new Map<number, Buffer[]>();
  private readonly opts: ShardOptions;
  private readonly lc3: Lc3Module;
  private leakedTasks = 0;
  /** Sessions leaked on purpose by the positive-control fault (kept reachable, as a real leak is). */
  private readonly leaked: Session[] = [];
  private stopped = false;
  private loopDone: Promise<void> | undefined;

  constructor(opts: ShardOptions) {
    this.opts = opts;
    this.shard = opts.shard;
    this.consumer = new RingConsumer(opts.arena);
    this.lc3 = opts.lc3 ?? loadLc3();
    this.queuePool = opts.queueBytes !== undefined ? new SharedPool(opts.queueBytes) : undefined;
  }

  private readonly onRecord = (slot: number, code: number, arrival: number, data: Uint8Array, off: number, len: number): void => {
    if (code === (Code.OPEN | PART)) {
      // Session parameters larger than one record (many webhook and app URLs): joined at the OPEN.
      let parts = this.openParts.get(slot);
      if (!parts) this.openParts.set(slot, (parts = []));
      parts.push(Buffer.from(data.subarray(off, off + len)));
      return;
    }
    if (code === Code.OPEN) {
      let bytes = data.subarray(off, off + len);
      const parts = this.openParts.get(slot);
      if (parts) {
        this.openParts.delete(slot);
        bytes = Buffer.concat([...parts, bytes]);
      }
      this.open(slot, JSON.parse(decodeUtf8(bytes, 'session init')) as SessionInit);
      return;
    }
    const s = this.sessions.get(slot);
    // A record for a slot without a session can only follow a failed open: nothing to deliver to.
    if (s) s.handle(code, arrival, data, off, len);
  };

  private readonly onWaiting = (slot: number): void => {
    if (this.faults.dropDrained) return; // test fault (setFaults refuses it unless faults are allowed)
    this.opts.emit({ t: 'drained', slot });
  };

  private open(slot: number, init: SessionInit): void {
    try {
      const session = new Session(slot, init, {
        lc3: this.lc3,
        emit: this.opts.emit,
        counters: this.counters,
        sink: this.opts.sinkFor?.(init, slot),
        pcmTap: this.opts.pcmTap,
        consumers: this.opts.http ? { http: this.opts.http, counters: this.queues, budgetBytes: this.opts.sessionBufferBytes ?? 20 * 2 ** 20, pool: this.queuePool } : undefined,
      });
      this.sessions.set(slot, session);
    } catch (err) {
      this.opts.emit({ t: 'close', slot, code: 1011, reason: `session setup failed: ${(err as Error).message}` });
    }
  }

  /** Drains everything queued now; returns records handled. */
  drain(): number {
    return this.consumer.drainReady(this.onRecord, this.onWaiting);
  }

  /** The drain loop: wakes on the doorbell, drains only slots with data, yields to the event loop. */
  start(): void {
    this.loopDone ??= this.loop();
  }

  /**
   * Before sleeping on the doorbell, the loop looks again after LINGER_MS: under load there is
   * always something by then, so the shard never sleeps and the main thread never rings (an
   * Atomics.notify to a waitAsync waiter posts a task across threads: it was 40 % of the main
   * thread's busy time at 400 streams). Idle, it costs one timer before the shard sleeps, and
   * every record waits at most LINGER_MS longer.
   */
  private async loop(): Promise<void> {
    let lingered = false;
    while (!this.stopped) {
      const seen = this.consumer.doorbell();
      if (!this.consumer.hasReady()) {
        if (!lingered) {
          lingered = true;
          await new Promise((r) => setTimeout(r, LINGER_MS));
          continue;
        }
        lingered = false;
        await this.consumer.waitBell(seen);
        continue;
      }
      lingered = false;
      if (this.opts.congested?.()) {
        // The disk is behind: leave the records in the rings; the main thread pauses sockets.
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      this.drain();
      if (this.faults.drainDelayMs > 0) await new Promise((r) => setTimeout(r, this.faults.drainDelayMs));
      else await new Promise((r) => setImmediate(r));
    }
  }

  /**
   * Closes a session: first delivers whatever is still in its ring (nothing accepted is lost),
   * then the close cascade. When this resolves the slot may be leased again.
   */
  async close(slot: number): Promise<{ leaked: number }> {
    this.consumer.drainSlot(slot, this.onRecord, () => {});
    this.openParts.delete(slot);
    const s = this.sessions.get(slot);
    if (!s) return { leaked: 0 };
    this.sessions.delete(slot);
    const leak = this.opts.faultsAllowed === true && this.faults.leakOnClose;
    if (leak) this.leaked.push(s);
    const leaked = await s.close(this.opts.graceMs, leak);
    this.leakedTasks += leaked;
    return { leaked };
  }

  setFaults(f: Partial<ShardFaults>): boolean {
    if (!this.opts.faultsAllowed) return false;
    Object.assign(this.faults, f);
    return true;
  }

  stats(): ShardStats {
    const c = this.counters;
    return {
      shard: this.shard,
      // Sessions leaked by the positive-control fault count: the shard still holds them, as it
      // would after a real leak (a storage-only session has no task or decoder to show for it).
      sessions: this.sessions.size + this.leaked.length,
      tasks: scopeCounters.tasks + scopeCounters.timers,
      decoders: this.lc3.live,
      framesReceived: c.framesReceived,
      framesStored: c.framesStored,
      framesDecoded: c.framesDecoded,
      decodeErrors: c.decodeErrors,
      plcFrames: c.plcFrames,
      audioBytes: c.audioBytes,
      records: c.records,
      leakedTasks: this.leakedTasks,
      latency: Array.from(c.latency.subarray(0, LATENCY_BUCKETS)),
      latencySumMs: c.latencySumMs,
      heapUsed: process.memoryUsage().heapUsed,
      wasmBytes: this.lc3.memoryBytes,
      durableBytes: 0,
      transcripts: c.transcripts,
      speakerRequests: c.speakerRequests,
      speakerUnresolved: c.speakerUnresolved,
      queues: this.queues,
      http: this.opts.http?.stats() ?? [],
      spool: null,
      ...this.opts.extraStats?.(),
    };
  }

  /** Stops the loop after closing every session. */
  async stop(): Promise<void> {
    await Promise.all([...this.sessions.keys()].map((slot) => this.close(slot)));
    this.stopped = true;
    Atomics.add(this.opts.arena.ctrl, 0, 1);
    Atomics.notify(this.opts.arena.ctrl, 0);
    await this.loopDone;
  }
}
