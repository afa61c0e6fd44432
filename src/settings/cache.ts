// The per-uid cache both remote providers (SETTINGS_URL, SETTINGS_REDIS_URL) sit on.
//
// - A fresh entry (younger than ttlMs) is answered without a fetch (a "hit").
// - An expired entry that holds a value is answered at once and refreshed in the background
//   (stale-while-revalidate).
// - No entry, or one that never held a value: the caller waits for the fetch.
// - Concurrent fetches for one key share one request (in-flight de-duplication).
// - A failed fetch keeps the last known value (else null: "nothing known") and is retried only after
//   errorTtlMs; the failure is counted and reported to onError.
// - At most maxEntries keys; the least recently used go first.

export interface SettingsCacheOptions {
  /** Fresh answers are reused this long (default 60 s). */
  ttlMs?: number;
  /** After a failed fetch, the fallback is used this long before trying again (default 5 s). */
  errorTtlMs?: number;
  /** Most keys cached (least recently used go first; default 10000). */
  maxEntries?: number;
  onError?: (err: Error, key: string) => void;
  now?: () => number;
}

export interface SettingsCacheCounters {
  cached: number;
  fetches: number;
  errors: number;
  hits: number;
}

interface Entry<V> {
  /** The source's answer; null when it never answered for this key. */
  value: V | null;
  expiresAt: number;
}

export class SettingsCache<V> {
  private readonly ttlMs: number;
  private readonly errorTtlMs: number;
  private readonly maxEntries: number;
  private readonly onError: (err: Error, key: string) => void;
  private readonly now: () => number;
  private readonly entries = new Map<string, Entry<V>>();
  private readonly inflight = new Map<string, Promise<V | null>>();
  private readonly counts = { fetches: 0, errors: 0, hits: 0 };

  constructor(
    private readonly load: (key: string) => Promise<V>,
    o: SettingsCacheOptions = {},
  ) {
    this.ttlMs = o.ttlMs ?? 60_000;
    this.errorTtlMs = o.errorTtlMs ?? 5_000;
    this.maxEntries = Math.max(1, o.maxEntries ?? 10_000);
    this.onError = o.onError ?? ((): void => undefined);
    this.now = o.now ?? Date.now;
  }

  counters(): SettingsCacheCounters {
    return { cached: this.entries.size, ...this.counts };
  }

  /** The value for a key (fresh, stale or just fetched), or null when the source never answered. */
  get(key: string): Promise<V | null> {
    const e = this.entries.get(key);
    if (e) {
      this.entries.delete(key); // LRU: most recent last
      this.entries.set(key, e);
      if (this.now() < e.expiresAt) {
        this.counts.hits++;
        return Promise.resolve(e.value);
      }
      if (e.value !== null) {
        // Stale but known: answer now, refresh in the background.
        void this.refresh(key, e);
        return Promise.resolve(e.value);
      }
    }
    return this.refresh(key, e);
  }

  /** The cached value without fetching, counting or touching the LRU order. */
  peek(key: string): V | null {
    return this.entries.get(key)?.value ?? null;
  }

  /** Counts an error found while loading (e.g. one invalid value in an otherwise usable answer). */
  noteError(err: Error, key: string): void {
    this.counts.errors++;
    try {
      this.onError(err, key);
    } catch {
      // A failing hook must not break settings.
    }
  }

  private refresh(key: string, prev: Entry<V> | undefined): Promise<V | null> {
    let p = this.inflight.get(key);
    if (!p) {
      this.counts.fetches++;
      p = new Promise<V>((resolve) => resolve(this.load(key)))
        .then(
          (value) => {
            this.put(key, { value, expiresAt: this.now() + this.ttlMs });
            return value;
          },
          (err: unknown) => {
            this.noteError(err instanceof Error ? err : new Error(String(err)), key);
            const value = prev?.value ?? null;
            this.put(key, { value, expiresAt: this.now() + this.errorTtlMs });
            return value;
          },
        )
        .finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  private put(key: string, e: Entry<V>): void {
    this.entries.delete(key);
    this.entries.set(key, e);
    while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }
}
