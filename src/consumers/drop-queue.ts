// Bounded drop-oldest queues for replayable data (DESIGN §3.3): transcripts, audio-bytes webhook,
// realtime audio apps. Each queue is bounded by item count; all queues of one session share one
// ByteBudget (SESSION_BUFFER_BYTES, default 20 MiB) that caps their bytes together, and every
// session of a shard charges one SharedPool (the shard's share of QUEUE_MAX_BYTES), so that a
// thousand sessions whose receivers are all slow hold a bounded total, not a thousand budgets
// (measured: 1,000 sessions with a stalled receiver held 1.5 GB in 20 s without it). Every drop is
// counted per queue name in shard-wide plain-number counters (pusher_queue_drops_total{queue},
// pusher_queue_dropped_bytes_total{queue}); depth and bytes are gauges summed over the shard's
// sessions and return to 0 when the sessions close.
//
// Bytes charged to the budget by a queue are its queued items plus bytes it `hold`s outside the
// queue: items taken by a sender and still in flight, and a consumer's collecting buffer. Held
// bytes cannot be evicted; they are released when the POST settles (or the queue closes).
//
// Budget eviction order, when a push does not fit: the oldest items of the queue being pushed
// first, then the oldest of the session's other queues, the one with the most queued bytes first.
// If even evicting every queued item would leave no room (held bytes are not evictable; an item
// larger than the whole budget never fits), nothing is evicted and the new item itself is dropped
// and counted. When the shard's pool is full, a session makes room from its own queues only, by
// the same order: a session cannot evict another session's audio.

export const DEFAULT_SESSION_BUFFER_BYTES = 20 << 20;

export type QueueName = 'transcripts' | 'audio_webhook' | 'audio_apps';
export const QUEUE_NAMES: readonly QueueName[] = ['transcripts', 'audio_webhook', 'audio_apps'];

/** Shard-wide figures per queue name, plain numbers (structured-clone friendly). */
export interface QueueCounters {
  drops: Record<string, number>;
  droppedBytes: Record<string, number>;
  /** Gauge: items queued (not in flight) over all sessions. */
  depth: Record<string, number>;
  /** Gauge: bytes charged to session budgets (queued + in flight + collecting) over all sessions. */
  bytes: Record<string, number>;
}

export function newQueueCounters(): QueueCounters {
  const zero = (): Record<string, number> => Object.fromEntries(QUEUE_NAMES.map((n) => [n, 0]));
  return { drops: zero(), droppedBytes: zero(), depth: zero(), bytes: zero() };
}

export interface Entry<T> {
  item: T;
  bytes: number;
}

/** Bytes charged by every session of a shard together, against one limit. */
export class SharedPool {
  used = 0;
  constructor(readonly limit: number) {}
}

/** One session's byte budget, shared by all of its queues (and charged to the shard's pool). */
export class ByteBudget {
  /** Bytes charged now (maintained by the queues). */
  used = 0;
  private readonly queues: DropOldestQueue<unknown>[] = [];

  constructor(
    readonly limit: number = DEFAULT_SESSION_BUFFER_BYTES,
    private readonly pool?: SharedPool,
  ) {}

  /** @internal Adds (or with a negative count, returns) bytes to this budget and the pool. */
  charge(bytes: number): void {
    this.used += bytes;
    if (this.pool) this.pool.used += bytes;
  }

  /** Whether `bytes` more fit once `freed` bytes are evicted. */
  private fits(bytes: number, freed: number): boolean {
    return this.used - freed + bytes <= this.limit && (!this.pool || this.pool.used - freed + bytes <= this.pool.limit);
  }

  /** @internal */
  register(q: DropOldestQueue<unknown>): void {
    this.queues.push(q);
  }

  /** @internal */
  unregister(q: DropOldestQueue<unknown>): void {
    const i = this.queues.indexOf(q);
    if (i >= 0) this.queues.splice(i, 1);
  }

  /** Evicts queued items (see the order above) until `bytes` more fit; false if they cannot. */
  makeRoom(bytes: number, first: DropOldestQueue<unknown>): boolean {
    let evictable = 0;
    for (const q of this.queues) evictable += q.queuedBytes;
    if (!this.fits(bytes, evictable)) return false; // evicting all would not do: evict nothing
    while (!this.fits(bytes, 0)) {
      if (first.length > 0) {
        first.evictOldest();
        continue;
      }
      let victim: DropOldestQueue<unknown> | undefined;
      for (const q of this.queues) if (q.length > 0 && (!victim || q.queuedBytes > victim.queuedBytes)) victim = q;
      victim!.evictOldest(); // there is one: the check above found enough queued bytes
    }
    return true;
  }
}

export class DropOldestQueue<T> {
  private items: Entry<T>[] = [];
  private queued = 0;
  private heldBytes = 0;
  private closed = false;

  constructor(
    readonly name: QueueName,
    readonly maxItems: number,
    private readonly budget: ByteBudget,
    private readonly counters: QueueCounters,
    /** Called with every queued item that is dropped unsent (evicted, or discarded at close): its buffer may be reused. */
    private readonly onDiscard?: (item: T) => void,
  ) {
    for (const r of [counters.drops, counters.droppedBytes, counters.depth, counters.bytes]) r[name] ??= 0;
    budget.register(this as DropOldestQueue<unknown>);
  }

  /** Items queued (not in flight). */
  get length(): number {
    return this.items.length;
  }

  /** Bytes of the queued items (the evictable part). */
  get queuedBytes(): number {
    return this.queued;
  }

  /** Bytes this queue charges to the budget (queued + held). */
  get bytes(): number {
    return this.queuedBytes + this.heldBytes;
  }

  /** Queues `item`; false if it was dropped itself (no room in the budget). Ignored once closed. */
  push(item: T, bytes: number): boolean {
    if (this.closed) return false;
    while (this.length >= this.maxItems) this.evictOldest();
    if (!this.budget.makeRoom(bytes, this as DropOldestQueue<unknown>)) {
      this.countDrop(bytes);
      return false;
    }
    this.items.push({ item, bytes });
    this.queued += bytes;
    this.charge(bytes, 1);
    return true;
  }

  /** Takes the oldest item; its bytes stay charged (held) until `release` or `dropHeld`. */
  shift(): Entry<T> | undefined {
    const e = this.items.shift();
    if (!e) return undefined;
    this.queued -= e.bytes;
    this.heldBytes += e.bytes;
    this.counters.depth[this.name]! -= 1;
    return e;
  }

  /** Takes every queued item, oldest first (held, like `shift`). */
  drain(): Entry<T>[] {
    const out: Entry<T>[] = [];
    for (let e = this.shift(); e; e = this.shift()) out.push(e);
    return out;
  }

  /**
   * Charges bytes kept outside the queue (a collecting buffer), evicting queued items to make
   * room like a push; false (nothing charged) if they cannot fit. Held bytes are not evictable.
   */
  hold(bytes: number): boolean {
    if (this.closed || !this.budget.makeRoom(bytes, this as DropOldestQueue<unknown>)) return false;
    this.heldBytes += bytes;
    this.charge(bytes, 0);
    return true;
  }

  /** Releases held bytes (a POST settled, a buffer freed). A no-op once closed (close released them). */
  release(bytes: number): void {
    if (this.closed) return;
    this.heldBytes -= bytes;
    this.charge(-bytes, 0);
  }

  /** Releases held bytes of an item given up on (delivery failed for good), counting the drop. */
  dropHeld(bytes: number): void {
    if (this.closed) return;
    this.release(bytes);
    this.countDrop(bytes);
  }

  /** @internal Drops (and counts) the oldest queued item. */
  evictOldest(): void {
    const e = this.items.shift()!;
    this.queued -= e.bytes;
    this.charge(-e.bytes, -1);
    this.countDrop(e.bytes);
    this.onDiscard?.(e.item);
  }

  /** Releases everything (queued and held) from the budget and the gauges; later calls are no-ops. */
  close(): void {
    if (this.closed) return;
    this.charge(-(this.queued + this.heldBytes), -this.length);
    if (this.onDiscard) for (const e of this.items) this.onDiscard(e.item);
    this.items = [];
    this.queued = this.heldBytes = 0;
    this.closed = true;
    this.budget.unregister(this as DropOldestQueue<unknown>);
  }

  private charge(bytes: number, items: number): void {
    this.budget.charge(bytes);
    this.counters.bytes[this.name]! += bytes;
    this.counters.depth[this.name]! += items;
  }

  /** Counts a drop of `bytes` that never made it into the queue. */
  countDrop(bytes: number): void {
    this.counters.drops[this.name]! += 1;
    this.counters.droppedBytes[this.name]! += bytes;
  }
}
