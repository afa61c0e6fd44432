// A repeated condition (a full disk, a store outage) is logged once, then at most once per
// interval with the count of what was held back, so that a shard retrying ten times a second
// writes one line a minute rather than 6,000 lines in five.

export interface RateDecision {
  /** Whether to write a line now. */
  log: boolean;
  /** Lines held back for this key since the last one written (0 on the first). */
  suppressed: number;
}

export class RateLimiter {
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #keys = new Map<string, { at: number; held: number }>();

  constructor(intervalMs = 60_000, now: () => number = Date.now) {
    this.#intervalMs = intervalMs;
    this.#now = now;
  }

  /** Call each time the condition happens; log only when `log` is true. */
  check(key: string): RateDecision {
    const now = this.#now();
    const k = this.#keys.get(key);
    if (!k) {
      this.#keys.set(key, { at: now, held: 0 });
      return { log: true, suppressed: 0 };
    }
    if (now - k.at < this.#intervalMs) {
      k.held++;
      return { log: false, suppressed: k.held };
    }
    const suppressed = k.held;
    k.at = now;
    k.held = 0;
    return { log: true, suppressed };
  }

  /** The condition cleared: the next occurrence is logged at once. */
  clear(key: string): void {
    this.#keys.delete(key);
  }
}
