// Debugging from inside a thread with node:inspector (works inside worker threads too): a CPU
// profile (.cpuprofile JSON that Chrome DevTools and speedscope open), a heap snapshot
// (.heapsnapshot, DevTools' Memory tab) and a forced full GC (the leak harness measures RSS after
// one, so lazily collected garbage does not look like growth).
import { Session } from 'node:inspector';
import type { MessagePort } from 'node:worker_threads';

function connect(): { session: Session; post: (method: string, params?: object) => Promise<unknown>; close: () => void } {
  const session = new Session();
  session.connect();
  return {
    session,
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

/**
 * A heap snapshot of the calling thread, handed to `write` piece by piece as V8 serialises it
 * (the pieces concatenated are the .heapsnapshot JSON): no copy of the whole snapshot is built
 * here. The thread is paused while V8 walks its heap (typically well under a second for a
 * shard); other threads keep running.
 */
export async function heapSnapshot(write: (chunk: string) => void): Promise<void> {
  const { session, post, close } = connect();
  const onChunk = (m: { params: { chunk: string } }): void => write(m.params.chunk);
  session.on('HeapProfiler.addHeapSnapshotChunk', onChunk);
  try {
    await post('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
  } finally {
    session.off('HeapProfiler.addHeapSnapshotChunk', onChunk);
    close();
  }
}

/**
 * heapSnapshot() for a worker thread asked over comlink: every piece goes to `port` as a string,
 * then `null` marks the end (the reply to the call itself travels on another port, so it cannot
 * say that every piece has arrived). The caller closes the port.
 */
export async function heapSnapshotToPort(port: MessagePort): Promise<void> {
  await heapSnapshot((chunk) => port.postMessage(chunk));
  port.postMessage(null);
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
