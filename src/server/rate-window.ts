// A token bucket for per-connection rates (messages per second, seconds of audio per second).
// It is on the per-message path, so it holds two numbers and allocates nothing: tokens refill
// continuously at `rate` per second up to `burst`, and take() spends them or says no.
export class RateBucket {
  private tokens: number;
  private last: number;
  private readonly perMs: number;
  private readonly burst: number;

  /** `rate` tokens per second, at most `burst` saved up (a full bucket to start with). `rate` 0: unlimited. */
  constructor(rate: number, burst: number, nowMs: number) {
    if (!(rate >= 0) || !(burst >= 0)) throw new RangeError(`rate bucket: rate (${rate}) and burst (${burst}) must be ≥ 0`);
    this.perMs = rate / 1000;
    this.burst = burst;
    this.tokens = burst;
    this.last = nowMs;
  }

  get unlimited(): boolean {
    return this.perMs === 0;
  }

  /** Spends `cost` tokens at time `nowMs`; false (and nothing spent) when the bucket does not hold them. */
  take(cost: number, nowMs: number): boolean {
    if (this.perMs === 0) return true;
    const dt = nowMs - this.last;
    // A clock that steps back must not drain the bucket; one that stalls simply refills nothing.
    if (dt > 0) {
      this.tokens = Math.min(this.burst, this.tokens + dt * this.perMs);
      this.last = nowMs;
    }
    if (cost > this.tokens) return false;
    this.tokens -= cost;
    return true;
  }
}
