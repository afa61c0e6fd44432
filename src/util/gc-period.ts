// A full GC in any thread that has gone GC_PERIOD_MS without one (Go's runtime has the same rule,
// forcegcperiod, 2 minutes), so a quiet thread's garbage does not sit in RSS for an hour.
// 30 s, not Go's 2 minutes: sampled every 30 s through a 10-minute soak, the uploader's committed
// heap climbed 14 -> 31-33 MiB between the 2-minute collections and fell back to 15-22 MiB at each:
// an 18 MB saw-tooth in RSS, larger than the 10 MB the soak's slope bound allows over the run.
//
// Why: V8 runs a full (mark-compact) GC when old space reaches a limit it set at the previous one,
// up to 4x the heap that survived it; its memory reducer, which collects sooner, waits for the
// thread to look idle. A thread that is never idle but promotes little never gets there quickly:
// the uploader (12 MiB live) set its limit to 56 MiB at start, promotes ~0.4 MiB a minute, and in a
// 10-minute soak ran no full GC at all while its committed heap, and RSS with it, climbed 4.5 MiB
// (issue 13; heap snapshots before and after: its live heap did not grow). Busy threads (main and
// the shards under load) run one every few seconds and never reach the period: there this costs a
// PerformanceObserver entry per GC and a check every CHECK_MS.
//
// The collection is HeapProfiler.collectGarbage (util/profile.ts), as /debug/gc: a full,
// compacting GC of this thread only; its pause grows with the live heap (12–22 MiB per thread here).
import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { collectGarbage } from './profile.js';

export const GC_PERIOD_MS = 30_000;
const CHECK_MS = 5_000;

export interface GcPeriodOptions {
  periodMs?: number;
  checkMs?: number;
  /** Seams for tests: the clock (ms) and the collection. */
  now?: () => number;
  collect?: () => Promise<unknown>;
}

export interface GcCounts {
  /** Full GCs of this thread seen since the rule started, whatever their cause (V8, /debug/gc, this rule). */
  all: number;
  /** Collections this rule started (each is one or more of the full GCs above: V8 repeats one while it frees more). */
  period: number;
}

export class GcPeriod {
  private readonly periodMs: number;
  private readonly now: () => number;
  private readonly collect: () => Promise<unknown>;
  private readonly observer: PerformanceObserver;
  private readonly timer: NodeJS.Timeout;
  private lastFullAt: number;
  private collecting = false;
  private fulls = 0;
  private started = 0;

  constructor(o: GcPeriodOptions = {}) {
    this.periodMs = o.periodMs ?? GC_PERIOD_MS;
    this.now = o.now ?? Date.now;
    this.collect = o.collect ?? collectGarbage;
    this.lastFullAt = this.now();
    // No test of how much the heap grew: the entry does not say what survived, and a heap read
    // when it arrives may still hold the garbage. Go's rule has no such test either.
    this.observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if (gcKind(e) === constants.NODE_PERFORMANCE_GC_MAJOR) this.sawFull();
    });
    this.observer.observe({ entryTypes: ['gc'] });
    this.timer = setInterval(() => void this.check(), o.checkMs ?? CHECK_MS).unref();
  }

  /** A full GC happened (any cause): the period starts again from here. */
  sawFull(): void {
    this.fulls++;
    this.lastFullAt = this.now();
  }

  /** Collects when the period has passed without a full GC; true when it did. */
  async check(): Promise<boolean> {
    if (this.collecting || this.now() - this.lastFullAt < this.periodMs) return false;
    this.collecting = true;
    try {
      await this.collect();
      this.started++;
      return true;
    } catch {
      // The inspector session refused: V8's own heuristics still apply; try again next period.
      return false;
    } finally {
      // Done or failed, the period starts again now (the observer's entry for it comes later).
      this.lastFullAt = this.now();
      this.collecting = false;
    }
  }

  counts(): GcCounts {
    return { all: this.fulls, period: this.started };
  }

  stop(): void {
    clearInterval(this.timer);
    this.observer.disconnect();
  }
}

/** A 'gc' entry's kind (entry.detail.kind since Node 16; this @types/node does not declare detail). */
function gcKind(e: PerformanceEntry): number | undefined {
  return (e as unknown as { detail?: { kind?: number } }).detail?.kind;
}

let shared: GcPeriod | undefined;

/** The calling thread's rule, started on first use (module state is per isolate: one per thread). */
export function gcPeriod(): GcPeriod {
  return (shared ??= new GcPeriod());
}
