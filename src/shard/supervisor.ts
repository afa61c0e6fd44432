// Main-thread side of the shards: starts SHARDS workers, owns their arenas and slot leases,
// writes records and rings doorbells, receives shard events, restarts crashed shards.
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import type { Remote } from 'comlink';
import type { ShardEvent } from '../session/protocol.js';
import { Comlink, nodeEndpoint } from '../util/comlink-node.js';
import { workerUrl } from '../util/worker-url.js';
import { Arena, RingProducer } from './ring.js';
import { pickShard } from './rendezvous.js';
import type { ShardApi, ShardWorkerData } from './shard-main.js';
import type { ShardFaults, ShardStats } from './shard-core.js';

/** Ring the doorbell at once after this many records, even mid-burst. */
const BELL_EVERY = 256;

export interface SupervisorOptions {
  shards: number;
  slots: number;
  ringBytes: number;
  graceMs: number;
  faultsAllowed?: boolean;
  faults?: Partial<ShardFaults> | undefined;
  pcmTapDir?: string | undefined;
  /** Extra worker data (e.g. the spool configuration) passed to every shard. */
  extra?: Record<string, unknown>;
  onEvent: (shard: number, ev: ShardEvent) => void;
  /** A shard died; its sessions are gone (the supervisor restarts it). */
  onShardLost: (shard: number) => void;
  /** Runs before a crashed shard is started again (e.g. recover its spool files). */
  beforeRestart?: (shard: number) => Promise<void>;
  log?: (msg: string, fields?: object) => void;
}

export class ShardHandle {
  readonly index: number;
  arena!: Arena;
  producer!: RingProducer;
  worker!: Worker;
  api!: Remote<ShardApi>;
  events!: MessagePort;
  /** Free slots, LIFO so the touched part of the arena stays as small as peak concurrency. */
  free: number[] = [];
  up = false;
  restarts = 0;
  /** Bumped at every (re)spawn: leases of an older arena are void. */
  generation = 0;
  private bellScheduled = false;

  constructor(index: number) {
    this.index = index;
  }

  get leased(): number {
    return this.arena.slots - this.free.length;
  }

  lease(): number {
    return this.free.pop() ?? -1;
  }

  release(slot: number, generation: number): void {
    if (generation !== this.generation) return;
    this.producer.reset(slot);
    this.free.push(slot);
  }

  /** Writes one record; false = ring full (caller pauses the socket). */
  write(slot: number, code: number, arrival: number, src: Uint8Array, off: number, len: number): boolean {
    return this.written(this.producer.write(slot, code, arrival, src, off, len));
  }

  /** Writes one record with an f64 stamp before its payload (a piece of a large 101). */
  writeStamped(slot: number, code: number, arrival: number, stamp: number, src: Uint8Array, off: number, len: number): boolean {
    return this.written(this.producer.writeStamped(slot, code, arrival, stamp, src, off, len));
  }

  private written(ok: boolean): boolean {
    if (ok) {
      if (this.producer.unrung >= BELL_EVERY) this.producer.ring();
      else if (!this.bellScheduled && this.producer.consumerSleeping) {
        // An awake shard needs no bell (see SLEEPING in ring.ts); a sleeping one gets one per
        // read burst: every socket read of this event-loop turn shares one wake-up.
        this.bellScheduled = true;
        setImmediate(this.ringNow);
      }
    }
    return ok;
  }

  private readonly ringNow = (): void => {
    this.bellScheduled = false;
    this.producer.ring();
  };
}

export class Supervisor {
  readonly shards: ShardHandle[] = [];
  private readonly opts: SupervisorOptions;
  private stopping = false;

  constructor(opts: SupervisorOptions) {
    this.opts = opts;
    for (let i = 0; i < opts.shards; i++) this.shards.push(new ShardHandle(i));
  }

  async start(): Promise<void> {
    await Promise.all(this.shards.map((h) => this.spawn(h)));
  }

  pick(uid: string): ShardHandle {
    return this.shards[pickShard(uid, this.shards.length)]!;
  }

  private async spawn(h: ShardHandle): Promise<void> {
    const o = this.opts;
    h.arena = new Arena({ slots: o.slots, ringBytes: o.ringBytes });
    h.producer = new RingProducer(h.arena);
    h.free = [];
    h.generation++;
    for (let s = o.slots - 1; s >= 0; s--) h.free.push(s);
    const { port1, port2 } = new MessageChannel();
    const data: ShardWorkerData = {
      shard: h.index,
      sab: h.arena.sab,
      slots: o.slots,
      ringBytes: o.ringBytes,
      graceMs: o.graceMs,
      events: port2,
      faultsAllowed: o.faultsAllowed === true,
      faults: o.faults,
      pcmTapDir: o.pcmTapDir,
      ...o.extra,
    };
    const worker = new Worker(workerUrl('shard'), { workerData: data, transferList: [port2], name: `shard-${h.index}` });
    h.worker = worker;
    h.events = port1;
    port1.on('message', (ev: ShardEvent) => o.onEvent(h.index, ev));
    h.api = Comlink.wrap<ShardApi>(nodeEndpoint(worker));
    worker.once('exit', (code) => {
      const wasUp = h.up;
      h.up = false;
      port1.close();
      h.api[Comlink.releaseProxy]();
      if (this.stopping) return;
      o.log?.('shard exited', { shard: h.index, code });
      if (wasUp) o.onShardLost(h.index);
      h.restarts++;
      const restart = async () => {
        try {
          await o.beforeRestart?.(h.index);
        } catch (err) {
          o.log?.('shard restart preparation failed', { shard: h.index, err: (err as Error).message });
        }
        if (!this.stopping) await this.spawn(h);
      };
      setTimeout(() => void restart(), Math.min(5000, 100 * 2 ** Math.min(h.restarts, 6))).unref();
    });
    worker.on('error', (err) => o.log?.('shard error', { shard: h.index, err: err.message }));
    // The first call resolves once the worker has finished loading (comlink queues until then).
    await h.api.stats();
    h.up = true;
  }

  async stats(): Promise<ShardStats[]> {
    return Promise.all(this.shards.filter((h) => h.up).map((h) => h.api.stats()));
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      this.shards.map(async (h) => {
        if (!h.up) return;
        await h.api.stop();
        await h.worker.terminate();
      }),
    );
  }
}
