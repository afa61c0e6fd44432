// Debugging from inside a thread with node:inspector (works inside worker threads too): a CPU
// profile (.cpuprofile JSON that Chrome DevTools and speedscope open) and a forced full GC (the
// leak harness measures RSS after one, so lazily collected garbage does not look like growth).
import { Session } from 'node:inspector';

function connect(): { post: (method: string, params?: object) => Promise<unknown>; close: () => void } {
  const session = new Session();
  session.connect();
  return {
    post: (method, params) => new Promise((resolve, reject) => session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res)))),
    close: () => session.disconnect(),
  };
}

export async function cpuProfile(seconds: number): Promise<string> {
  const { post, close } = connect();
  try {
    await post('Profiler.enable');
    await post('Profiler.setSamplingInterval', { interval: 500 });
    await post('Profiler.start');
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const { profile } = (await post('Profiler.stop')) as { profile: unknown };
    return JSON.stringify(profile);
  } finally {
    close();
  }
}

export interface GcResult {
  /** V8 heap used before and after the collection, bytes. */
  heapBefore: number;
  heapAfter: number;
  ms: number;
}

/** A full, compacting garbage collection of the calling thread's heap (no --expose-gc needed). */
export async function collectGarbage(): Promise<GcResult> {
  const { post, close } = connect();
  const heapBefore = process.memoryUsage().heapUsed;
  const t0 = performance.now();
  try {
    await post('HeapProfiler.collectGarbage');
  } finally {
    close();
  }
  return { heapBefore, heapAfter: process.memoryUsage().heapUsed, ms: performance.now() - t0 };
}
