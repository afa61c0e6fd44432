// A latency histogram cheap enough for any thread: power-of-two millisecond buckets (bucket i
// counts values below 2^i ms, the last one everything else) and a running sum, plain numbers that
// cross a comlink call as they are. The main thread renders them as a Prometheus histogram
// (src/server/metrics-threads.ts), so the thread that measures needs no registry of its own.

export interface LatencySnapshot {
  /** Per-bucket counts (not cumulative). */
  buckets: number[];
  sumMs: number;
}

export class LatencyBuckets {
  private readonly counts: number[];
  private sumMs = 0;

  constructor(readonly size: number) {
    this.counts = new Array<number>(size).fill(0);
  }

  observe(ms: number): void {
    const i = ms < 1 ? 0 : Math.min(this.size - 1, 32 - Math.clz32(Math.ceil(ms)));
    this.counts[i]!++;
    this.sumMs += ms;
  }

  snapshot(): LatencySnapshot {
    return { buckets: [...this.counts], sumMs: this.sumMs };
  }
}
