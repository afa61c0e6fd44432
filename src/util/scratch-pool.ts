// Scratch buffers of one size, kept and handed out again instead of allocated per use.
// Why: a 1 MiB Buffer allocated and freed per upload (the local store's copy and hash loops) is
// a malloc of 1 MiB on whichever libuv/worker thread runs it; glibc raises its mmap threshold to
// the largest block freed, so after the first one every allocation below 1 MiB is carved from the
// per-thread heaps and fragments them (measured: raw RSS +28 MB after a 60 s churn under glibc,
// flat with the threshold pinned at 128 KiB). Kept buffers are never freed, so nothing churns.

export class ScratchPool {
  readonly #free: Buffer[] = [];

  /** `size` bytes per buffer; at most `keep` idle buffers are kept (more in use at once are allocated and dropped). */
  constructor(
    readonly size: number,
    readonly keep: number,
  ) {}

  /** A buffer of `size` bytes with stale contents; give it back with `give`. */
  take(): Buffer {
    return this.#free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  give(buf: Buffer): void {
    if (buf.length === this.size && this.#free.length < this.keep) this.#free.push(buf);
  }

  /** Idle buffers kept now (for tests). */
  get idle(): number {
    return this.#free.length;
  }

  /** Runs `fn` with a buffer that goes back to the pool afterwards, whatever `fn` does. */
  async with<T>(fn: (buf: Buffer) => Promise<T>): Promise<T> {
    const buf = this.take();
    try {
      return await fn(buf);
    } finally {
      this.give(buf);
    }
  }
}

/**
 * Buffers of varying sizes (a group commit's batch, a sealed chunk read for upload), pooled by
 * power-of-two size class in [minBytes, maxBytes]: take(n) hands out a buffer of at least n bytes,
 * give() keeps it for the next take of its class. With `exact`, every size in [minBytes,
 * maxBytes] is its own class (for sizes that repeat exactly: a webhook's period of audio). Same reason as ScratchPool: a fresh buffer of a
 * different size per commit or per upload is exactly the churn that fragments glibc's heaps, and
 * without forced GCs it also waits for a GC to be freed at all. Larger requests are allocated and
 * dropped as before (rare: a commit or a chunk of many MiB).
 */
export class SizeClassPool {
  readonly #classes = new Map<number, Buffer[]>();
  #idle = 0;

  constructor(
    readonly minBytes: number,
    readonly maxBytes: number,
    /** Idle buffers kept per class. */
    readonly keep: number,
    /** Idle bytes kept over all classes (a load that moves between classes keeps no more than this). */
    readonly maxIdleBytes: number,
    readonly exact = false,
  ) {}

  /** The size class of an n-byte request (0: not pooled: larger than maxBytes, or exact and below minBytes). */
  classOf(n: number): number {
    if (n > this.maxBytes) return 0;
    if (this.exact) return n >= this.minBytes ? n : 0;
    let c = this.minBytes;
    while (c < n) c *= 2;
    return c;
  }

  /** A buffer of at least `n` bytes (its class size), stale contents. */
  take(n: number): Buffer {
    const c = this.classOf(n);
    if (c === 0) return Buffer.allocUnsafeSlow(n);
    const kept = this.#classes.get(c)?.pop();
    if (!kept) return Buffer.allocUnsafeSlow(c);
    this.#idle -= c;
    return kept;
  }

  /** Gives back a buffer from take() (the whole buffer, not a view); nothing may use it afterwards. */
  give(buf: Buffer): void {
    const c = buf.length;
    if (c !== this.classOf(c) || buf.byteOffset !== 0 || buf.buffer.byteLength !== c) return; // a view or a foreign size
    let free = this.#classes.get(c);
    if (!free) this.#classes.set(c, (free = []));
    if (free.length < this.keep && this.#idle + c <= this.maxIdleBytes) {
      free.push(buf);
      this.#idle += c;
    }
  }

  /** Idle bytes kept now. */
  get idleBytes(): number {
    return this.#idle;
  }
}

/**
 * A pooled buffer shared by several users (the views of one group commit's batch, one per chunk
 * write): it goes back to its pool when the last one lets go. A view that must outlive its write
 * is copied out and releases its reference, so the pool never hands out a buffer still in use.
 */
export class SharedBuffer {
  #refs = 1;

  constructor(
    readonly buf: Buffer,
    private readonly pool: SizeClassPool,
  ) {}

  /** One more user. */
  retain(): this {
    if (this.#refs <= 0) throw new Error('SharedBuffer: retain after the last release');
    this.#refs++;
    return this;
  }

  release(): void {
    if (this.#refs <= 0) throw new Error('SharedBuffer: released more often than retained');
    if (--this.#refs === 0) this.pool.give(this.buf);
  }

  get refs(): number {
    return this.#refs;
  }
}
