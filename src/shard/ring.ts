// The data plane between the main thread and one shard worker (DESIGN §3.1): one
// SharedArrayBuffer arena per shard, allocated once, holding a byte ring per session slot, a
// ready queue of slots that have data, a doorbell word and a sleeping flag.
//
// Single producer (main) / single consumer (shard) per arena. Records are 8-aligned:
//   u32 payload length | u32 code | f64 arrival (ms since epoch) | payload | pad to 8
// A length of WRAP means "the rest of the ring is unused, continue at offset 0".
// Positions are free-running u32 byte counters; RING_BYTES is a power of two so `& mask` works
// across the 2^32 wrap.

export const REC_HEADER = 16;
const WRAP = 0xffffffff;

// Arena control words (Int32 indices).
const DOORBELL = 0;
const READY_HEAD = 1; // consumer position in the ready queue
const READY_TAIL = 2; // producer position
// 1 while the consumer is (about to be) blocked on the doorbell. The producer rings only then: a
// consumer that is awake is bound to look at the ready queue again before it sleeps (it sets this
// flag, then re-reads READY_TAIL; the producer writes READY_TAIL, then reads this flag; with
// sequentially consistent atomics one of the two always sees the other), so a ring for it is a
// wasted Atomics.notify and a wasted task on the shard's event loop.
const SLEEPING = 3;
const CTRL_WORDS = 4;
// Per-slot words.
const SLOT_WRITE = 0;
const SLOT_READ = 1;
const SLOT_QUEUED = 2; // 1 while the slot sits in the ready queue
const SLOT_WAITING = 3; // 1 while the producer waits for space (socket paused)
const SLOT_WORDS = 4;

/** Record codes. 100–105 are the pusher protocol's own headers; the rest are ours. */
export const Code = {
  HEARTBEAT: 100,
  AUDIO: 101,
  TRANSCRIPT: 102,
  CONVERSATION: 103,
  PROCESS: 104,
  SPEAKER_SAMPLE: 105,
  /** Session init (JSON), always the first record of a slot's life, so it is ordered before data. */
  OPEN: 1,
  /** Device endpoint audio: whole frames, no header. */
  FRAMES: 2,
} as const;

/**
 * Set on the code of every record of a message too large for one record but the last (JSON
 * messages up to MAX_JSON_BYTES): the shard joins the parts. Audio is never sent this way: it is
 * split at sample or frame boundaries into records that stand alone.
 */
export const PART = 0x10000;

export interface ArenaLayout {
  slots: number;
  ringBytes: number;
}

export function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

export function arenaBytes(l: ArenaLayout): number {
  return (CTRL_WORDS + l.slots + l.slots * SLOT_WORDS) * 4 + l.slots * l.ringBytes + 8;
}

/** Views over an arena; shared by both sides. */
export class Arena {
  readonly sab: SharedArrayBuffer;
  readonly slots: number;
  readonly ringBytes: number;
  readonly mask: number;
  readonly ctrl: Int32Array;
  readonly ready: Int32Array;
  readonly slotWords: Int32Array;
  readonly data: Uint8Array;
  readonly dataView: DataView;
  readonly dataOffset: number;

  constructor(layout: ArenaLayout, sab?: SharedArrayBuffer) {
    if (!isPowerOfTwo(layout.ringBytes)) throw new RangeError(`ring size ${layout.ringBytes} is not a power of two`);
    this.slots = layout.slots;
    this.ringBytes = layout.ringBytes;
    this.mask = layout.ringBytes - 1;
    this.sab = sab ?? new SharedArrayBuffer(arenaBytes(layout));
    this.ctrl = new Int32Array(this.sab, 0, CTRL_WORDS);
    this.ready = new Int32Array(this.sab, CTRL_WORDS * 4, layout.slots);
    this.slotWords = new Int32Array(this.sab, (CTRL_WORDS + layout.slots) * 4, layout.slots * SLOT_WORDS);
    // Data starts 8-aligned so the f64 arrival field is aligned in every record.
    this.dataOffset = ((CTRL_WORDS + layout.slots + layout.slots * SLOT_WORDS) * 4 + 7) & ~7;
    this.data = new Uint8Array(this.sab, this.dataOffset, layout.slots * layout.ringBytes);
    this.dataView = new DataView(this.sab, this.dataOffset, layout.slots * layout.ringBytes);
  }

  /** Bytes written but not yet consumed in a slot. */
  used(slot: number): number {
    const w = Atomics.load(this.slotWords, slot * SLOT_WORDS + SLOT_WRITE);
    const r = Atomics.load(this.slotWords, slot * SLOT_WORDS + SLOT_READ);
    return (w - r) >>> 0;
  }

  totalUsed(): number {
    let s = 0;
    for (let i = 0; i < this.slots; i++) s += this.used(i);
    return s;
  }
}

function pad8(n: number): number {
  return (n + 7) & ~7;
}

/** Largest payload one record can carry in a ring of this size. */
export function maxRecordPayload(ringBytes: number): number {
  return ringBytes - REC_HEADER;
}

/**
 * Payload bytes of one piece when a message is split: half the ring, so the main thread can
 * write the next piece while the shard drains the last one (a whole-ring record could only be
 * written into an empty ring).
 */
export function pieceBytes(ringBytes: number): number {
  return (maxRecordPayload(ringBytes) >> 1) & ~7;
}

/** Main-thread side. */
export class RingProducer {
  private readonly a: Arena;
  private pendingBell = 0;

  constructor(arena: Arena) {
    this.a = arena;
  }

  get arena(): Arena {
    return this.a;
  }

  /** Resets a slot for a new lease (the consumer has finished with it). */
  reset(slot: number): void {
    const base = slot * SLOT_WORDS;
    const w = this.a.slotWords;
    Atomics.store(w, base + SLOT_WRITE, 0);
    Atomics.store(w, base + SLOT_READ, 0);
    Atomics.store(w, base + SLOT_WAITING, 0);
  }

  /**
   * Appends one record, or returns false when the slot's ring lacks space (the caller pauses the
   * socket and calls markWaiting). Copies `len` bytes of `src` from `srcOff`; allocates nothing.
   */
  write(slot: number, code: number, arrival: number, src: Uint8Array, srcOff: number, len: number): boolean {
    return this.put(slot, code, arrival, NaN, src, srcOff, len);
  }

  /**
   * As write(), with an f64 LE `stamp` written before the payload (one record of `8 + len` bytes):
   * a piece of a large `101` carries its own first-sample time, the layout of a whole `101`.
   */
  writeStamped(slot: number, code: number, arrival: number, stamp: number, src: Uint8Array, srcOff: number, len: number): boolean {
    return this.put(slot, code, arrival, stamp, src, srcOff, len);
  }

  private put(slot: number, code: number, arrival: number, stamp: number, src: Uint8Array, srcOff: number, len: number): boolean {
    const a = this.a;
    const words = a.slotWords;
    const base = slot * SLOT_WORDS;
    const rb = a.ringBytes;
    const pre = stamp === stamp ? 8 : 0; // NaN: no stamp
    const payload = pre + len;
    const need = REC_HEADER + pad8(payload);
    let w = words[base + SLOT_WRITE]! >>> 0; // only this thread writes it
    const r = Atomics.load(words, base + SLOT_READ) >>> 0;
    const used = (w - r) >>> 0;
    let pos = w & a.mask;
    const toEnd = rb - pos;
    if (toEnd < need) {
      if (used + toEnd + need > rb) return false;
      a.dataView.setUint32(slot * rb + pos, WRAP, true);
      w = (w + toEnd) >>> 0;
      pos = 0;
    } else if (used + need > rb) {
      return false;
    }
    const at = slot * rb + pos;
    const dv = a.dataView;
    dv.setUint32(at, payload, true);
    dv.setUint32(at + 4, code, true);
    dv.setFloat64(at + 8, arrival, true);
    if (pre) dv.setFloat64(at + REC_HEADER, stamp, true);
    if (len > 0) a.data.set(len === src.length && srcOff === 0 ? src : src.subarray(srcOff, srcOff + len), at + REC_HEADER + pre);
    Atomics.store(words, base + SLOT_WRITE, (w + need) | 0);
    if (Atomics.load(words, base + SLOT_QUEUED) === 0) {
      Atomics.store(words, base + SLOT_QUEUED, 1);
      const tail = a.ctrl[READY_TAIL]! >>> 0;
      a.ready[tail % a.slots] = slot;
      Atomics.store(a.ctrl, READY_TAIL, (tail + 1) | 0);
    }
    this.pendingBell++;
    return true;
  }

  /** Asks the consumer to report when it has drained this slot (socket is paused). */
  markWaiting(slot: number): void {
    Atomics.store(this.a.slotWords, slot * SLOT_WORDS + SLOT_WAITING, 1);
  }

  /** Records written since the last doorbell. */
  get unrung(): number {
    return this.pendingBell;
  }

  /** Whether the consumer sleeps on the doorbell (only then does a record need a ring). */
  get consumerSleeping(): boolean {
    return Atomics.load(this.a.ctrl, SLEEPING) === 1;
  }

  /**
   * Wakes the consumer if it sleeps (once per read burst, not per message). The flag is taken
   * (1 → 0) by the ring, so a second ring before the consumer has woken costs nothing.
   */
  ring(): void {
    if (this.pendingBell === 0) return;
    this.pendingBell = 0;
    if (Atomics.compareExchange(this.a.ctrl, SLEEPING, 1, 0) !== 1) return;
    Atomics.add(this.a.ctrl, DOORBELL, 1);
    Atomics.notify(this.a.ctrl, DOORBELL);
  }
}

export interface RecordHandler {
  /**
   * The payload is `data[off, off + len)`, shared memory valid only during the call: copy what
   * you keep. (Offsets rather than a subarray: no allocation per record.)
   */
  (slot: number, code: number, arrival: number, data: Uint8Array, off: number, len: number): void;
}

/** Shard side. */
export class RingConsumer {
  private readonly a: Arena;

  constructor(arena: Arena) {
    this.a = arena;
  }

  get arena(): Arena {
    return this.a;
  }

  hasReady(): boolean {
    return Atomics.load(this.a.ctrl, READY_HEAD) !== Atomics.load(this.a.ctrl, READY_TAIL);
  }

  doorbell(): number {
    return Atomics.load(this.a.ctrl, DOORBELL);
  }

  /**
   * Sleeps until the producer rings: raises the sleeping flag, and returns undefined at once
   * (flag lowered) if a record arrived meanwhile or the bell rang after `seen`; else resolves on
   * the next ring (or after timeoutMs). Call it only after hasReady() was false.
   */
  waitBell(seen: number, timeoutMs?: number): Promise<unknown> | undefined {
    const ctrl = this.a.ctrl;
    Atomics.store(ctrl, SLEEPING, 1);
    if (this.hasReady()) {
      Atomics.store(ctrl, SLEEPING, 0);
      return undefined;
    }
    const r = Atomics.waitAsync(ctrl, DOORBELL, seen, timeoutMs);
    if (!r.async) {
      Atomics.store(ctrl, SLEEPING, 0);
      return undefined;
    }
    return r.value.then((v) => {
      Atomics.store(ctrl, SLEEPING, 0); // woken by a ring (which lowered it) or by the timeout
      return v;
    });
  }

  /**
   * Drains every slot in the ready queue (only slots with data: no scan of all slots).
   * `onWaiting(slot)` is called for slots whose producer asked to be told about free space.
   * Returns the number of records handled.
   */
  drainReady(handle: RecordHandler, onWaiting: (slot: number) => void): number {
    const a = this.a;
    let n = 0;
    let head = Atomics.load(a.ctrl, READY_HEAD) >>> 0;
    const tail = Atomics.load(a.ctrl, READY_TAIL) >>> 0;
    while (head !== tail) {
      const slot = a.ready[head % a.slots]!;
      head = (head + 1) >>> 0;
      Atomics.store(a.ctrl, READY_HEAD, head | 0);
      // Clear before reading WRITE: a record written after this is re-queued by the producer.
      Atomics.store(a.slotWords, slot * SLOT_WORDS + SLOT_QUEUED, 0);
      n += this.drainSlot(slot, handle, onWaiting);
    }
    return n;
  }

  /** Drains one slot completely (also used by close, to finish a session's records first). */
  drainSlot(slot: number, handle: RecordHandler, onWaiting: (slot: number) => void): number {
    const a = this.a;
    const words = a.slotWords;
    const base = slot * SLOT_WORDS;
    const rb = a.ringBytes;
    const dv = a.dataView;
    let r = words[base + SLOT_READ]! >>> 0;
    const w = Atomics.load(words, base + SLOT_WRITE) >>> 0;
    let n = 0;
    while (r !== w) {
      const pos = r & a.mask;
      const at = slot * rb + pos;
      const len = dv.getUint32(at, true);
      if (len === WRAP) {
        r = (r + (rb - pos)) >>> 0;
        continue;
      }
      const code = dv.getUint32(at + 4, true);
      const arrival = dv.getFloat64(at + 8, true);
      handle(slot, code, arrival, a.data, at + REC_HEADER, len);
      r = (r + REC_HEADER + pad8(len)) >>> 0;
      n++;
    }
    Atomics.store(words, base + SLOT_READ, r | 0);
    if (Atomics.load(words, base + SLOT_WAITING) === 1) {
      Atomics.store(words, base + SLOT_WAITING, 0);
      onWaiting(slot);
    }
    return n;
  }
}
