// Per-thread health figures, read inside the thread they describe (main, each shard, the
// uploader): event-loop lag from perf_hooks.monitorEventLoopDelay and this isolate's V8 heap.
// Every thread has its own event loop and its own heap, so neither can be measured from outside.
import { monitorEventLoopDelay, performance, type IntervalHistogram } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { gcPeriod, type GcCounts } from './gc-period.js';

/** How often the loop-delay timer fires (ms); also what a loop with no lag at all reports. */
export const LAG_RESOLUTION_MS = 10;

export interface ThreadSample {
  /** Event-loop lag over the window since the previous read, seconds: median, 99th percentile, maximum. */
  lagP50: number;
  lagP99: number;
  lagMax: number;
  /** Timer samples in that window (0: the window was too short to measure; the lag figures are the previous window's). */
  lagSamples: number;
  /** V8 heap of this thread's isolate, bytes. */
  heapUsed: number;
  heapTotal: number;
  /**
   * Seconds this thread's event loop has been busy (not waiting for I/O or timers) since the
   * thread started: performance.eventLoopUtilization().active. For a thread that runs only its
   * event loop, this is its CPU time give or take page faults; Node 20 has no per-thread CPU
   * clock, and /proc names every thread "node".
   */
  busySeconds: number;
  /** Full GCs of this thread, all and those the period rule started (util/gc-period.ts). */
  fullGcs: GcCounts;
}

/**
 * monitorEventLoopDelay records the time between two firings of a repeating `resolution` ms
 * timer, so an idle loop reports `resolution`, not 0: the lag is what exceeds it.
 */
function lagSeconds(ns: number): number {
  return Math.max(0, ns / 1e9 - LAG_RESOLUTION_MS / 1000);
}

export class ThreadMonitor {
  private readonly h: IntervalHistogram;
  private last = { lagP50: 0, lagP99: 0, lagMax: 0 };

  constructor() {
    this.h = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
    this.h.enable();
  }

  /**
   * The figures since the previous read, then a fresh window. The window is per thread, not per
   * scraper: with two scrapers each sees the lag since the other's last scrape. A reset drops the
   * timer period in flight (Node starts a new delta at the next firing), so a stall that begins
   * within one period (10 ms) after a scrape is not seen: with scrapes every 15 s, ~0.07 % of
   * stalls. Never resetting would keep every stall but report a lifetime, not the recent lag.
   */
  read(): ThreadSample {
    const h = this.h;
    const samples = h.count;
    // A read within one timer period of the previous one has nothing new: repeat the last window
    // instead of reporting a lag of 0 that nobody measured.
    if (samples > 0) this.last = { lagP50: lagSeconds(h.percentile(50)), lagP99: lagSeconds(h.percentile(99)), lagMax: lagSeconds(h.max) };
    h.reset();
    const heap = getHeapStatistics();
    return { ...this.last, lagSamples: samples, heapUsed: heap.used_heap_size, heapTotal: heap.total_heap_size, busySeconds: performance.eventLoopUtilization().active / 1000, fullGcs: gcPeriod().counts() };
  }

  close(): void {
    this.h.disable();
  }
}

let shared: ThreadMonitor | undefined;

/**
 * The calling thread's monitor (one per thread: module state is per isolate). Every thread that
 * has one (main, each shard, the uploader) also runs the full-GC period rule from here, so no
 * thread's entry point can forget it.
 */
export function threadMonitor(): ThreadMonitor {
  gcPeriod();
  return (shared ??= new ThreadMonitor());
}
