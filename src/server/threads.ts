// The one resolver of thread names ("main", "shard-N", "uploader") for everything that acts on
// one thread from the main thread: /debug/profile, /debug/heap, /debug/gc and the per-thread
// metrics. Each thread answers for itself (its profiler, heap and event loop are its own).
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import type { Supervisor } from '../shard/supervisor.js';
import { Comlink } from '../util/comlink-node.js';
import { collectGarbage, cpuProfile, heapSnapshot, type GcResult } from '../util/profile.js';
import { threadMonitor, type ThreadSample } from '../util/thread-monitor.js';
import { HttpError } from './auth.js';

/** What a thread can be asked to do (local for main, over comlink for workers). */
export interface ThreadControl {
  profile(seconds: number): Promise<string>;
  /** Streams a .heapsnapshot into `write`; resolves after the last piece was written. */
  heap(write: (chunk: string) => void): Promise<void>;
  gc(): Promise<GcResult>;
  sample(): Promise<ThreadSample>;
}

/** The comlink side of a worker that exposes profiling: what workers' APIs implement. */
export interface RemoteThreadApi {
  profile(seconds: number): Promise<string>;
  /** Posts the snapshot's pieces (strings) to `port`, then null (util/profile.ts heapSnapshotToPort). */
  heapSnapshot(port: MessagePort): Promise<void>;
  gc(): Promise<GcResult>;
  threadStats(): ThreadSample | Promise<ThreadSample>;
}

/** A worker's snapshot over a fresh MessageChannel: the far end posts pieces, then null. */
export async function remoteHeap(call: (port: MessagePort) => Promise<void>, write: (chunk: string) => void): Promise<void> {
  const { port1, port2 } = new MessageChannel();
  const done = new Promise<void>((resolve, reject) => {
    port1.on('message', (m: string | null) => (m === null ? resolve() : write(m)));
    // The worker died (or closed its end) before the end marker.
    port1.once('close', () => reject(new Error('the thread went away during the heap snapshot')));
  });
  try {
    await Promise.all([call(Comlink.transfer(port2, [port2])), done]);
  } finally {
    port1.close();
  }
}

/** A ThreadControl over a worker's comlink API. */
export function remoteThread(api: () => RemoteThreadApi): ThreadControl {
  return {
    profile: (s) => api().profile(s),
    heap: (write) => remoteHeap((port) => api().heapSnapshot(port), write),
    gc: () => api().gc(),
    sample: async () => api().threadStats(),
  };
}

export const mainThread: ThreadControl = {
  profile: cpuProfile,
  heap: heapSnapshot,
  gc: collectGarbage,
  sample: async () => threadMonitor().read(),
};

export class ThreadDirectory {
  constructor(
    private readonly supervisor: Supervisor,
    private readonly others: Record<string, ThreadControl> = {},
  ) {
    threadMonitor(); // start main's window now, not at the first scrape
  }

  /** Every thread name, in a stable order: main, shard-0…, then the others (e.g. uploader). */
  names(): string[] {
    return ['main', ...this.supervisor.shards.map((h) => `shard-${h.index}`), ...Object.keys(this.others)];
  }

  /** Threads that can answer now (a restarting shard cannot). */
  live(): { name: string; thread: ThreadControl }[] {
    return this.names().flatMap((name) => {
      const thread = this.find(name);
      return thread ? [{ name, thread }] : [];
    });
  }

  /**
   * The thread called `name`; 400 naming the valid ones if there is none (`also`: further names
   * the caller accepts itself, e.g. "all"), 503 while a shard restarts.
   */
  resolve(name: string, also: string[] = []): ThreadControl {
    if (!this.names().includes(name)) {
      const lead = also.length ? `${also.join(' or ')} or ` : '';
      throw new HttpError(400, 'bad_request', `thread must be ${lead}one of: ${this.names().join(', ')} (got ${JSON.stringify(name.slice(0, 40))})`);
    }
    const t = this.find(name);
    if (!t) throw new HttpError(503, 'unavailable', `${name} is restarting; try again`);
    return t;
  }

  private find(name: string): ThreadControl | undefined {
    if (name === 'main') return mainThread;
    const m = /^shard-(\d+)$/.exec(name);
    if (m) {
      const h = this.supervisor.shards[Number(m[1])];
      return h?.up ? remoteThread(() => h.api) : undefined;
    }
    return Object.hasOwn(this.others, name) ? this.others[name] : undefined;
  }
}
