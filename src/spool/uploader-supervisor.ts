// The uploader worker, restarted when it throws or exits (issue 10 §6). Its state lives outside
// it: the spool's sealed/ files (deleted only after the store confirmed size and sha256) and the
// store (never overwritten: the same content under the same name is "uploaded before"). So a new
// worker, which rescans the spool as it starts, finishes exactly what the old one left: nothing
// sealed is lost, and a chunk whose upload was cut short is found in the store as the same
// content, not stored twice under two names.
//
// Callers hold one `api` for the life of the service: calls made while the worker is being
// restarted wait for the new one; calls in flight when a worker dies are rejected (a comlink call
// to a dead thread would never settle).
import { Worker } from 'node:worker_threads';
import { Comlink, nodeEndpoint } from '../util/comlink-node.js';
import { workerUrl } from '../util/worker-url.js';
import type { UploaderApi, UploaderWorkerData } from './uploader-worker.js';

export interface UploaderSupervisorOptions {
  data: UploaderWorkerData;
  /** A worker died (an uncaught error, or it exited); it is restarted in `restartInMs`. */
  onCrash?: (info: { code: number; err: Error | undefined; restarts: number; restartInMs: number }) => void;
  /** The new worker has started and scanned the spool, `ms` after the old one died. */
  onRestarted?: (info: { restarts: number; ms: number }) => void;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Makes a worker (default: the real uploader worker). */
  spawn?: (data: UploaderWorkerData) => Worker;
}

interface Generation {
  worker: Worker;
  api: Comlink.Remote<UploaderApi>;
  /** Rejects when this worker has gone. */
  died: Promise<never>;
}

/** A worker that lived this long was healthy: the next crash starts the backoff afresh. */
const HEALTHY_MS = 60_000;

/**
 * The uploader allocates little, so V8 rarely runs a full GC in it, and its young generation grows
 * in one step from 16 to 32 MiB committed whenever survival is high for a while (measured with
 * --trace-gc in the 1,000-stream soak: a +16 MiB step minutes into the load, none before, never
 * given back). Capped at the 16 MiB it starts with. V8 counts a young generation as three
 * semi-spaces, so 24 means semi-spaces of 8 MiB (measured on Node 20 and 22: 24 → a 16 MiB new
 * space, the default → 32 MiB). A young generation only sets how often a scavenge runs, never how
 * much the thread can hold, so the cap cannot exhaust anything (old space, where the backlog
 * lives, is not limited).
 */
export const UPLOADER_LIMITS = { maxYoungGenerationSizeMb: 24 } as const;

export class UploaderSupervisor {
  /** Set before an intended stop: its exit is not a crash. */
  readonly state = { stopping: false };
  restarts = 0;
  readonly api: Comlink.Remote<UploaderApi>;
  private current: Generation | undefined;
  private ready: Promise<void> = Promise.resolve();
  private failures = 0;
  private readonly o: UploaderSupervisorOptions;

  constructor(o: UploaderSupervisorOptions) {
    this.o = o;
    this.api = this.forwarder();
  }

  /** The worker now (it changes on a restart). */
  get worker(): Worker {
    if (!this.current) throw new Error('uploader not started');
    return this.current.worker;
  }

  /** Starts the first worker; resolves once it has scanned the spool. */
  async start(): Promise<void> {
    this.ready = this.spawn();
    await this.ready;
  }

  private async spawn(): Promise<void> {
    const worker = this.o.spawn ? this.o.spawn(this.o.data) : new Worker(workerUrl('uploader'), { workerData: this.o.data, name: 'uploader', resourceLimits: UPLOADER_LIMITS });
    const started = Date.now();
    let lastError: Error | undefined;
    let rejectDied!: (e: Error) => void;
    const died = new Promise<never>((_, reject) => (rejectDied = reject));
    died.catch(() => {}); // observed through the calls that race it
    const api = Comlink.wrap<UploaderApi>(nodeEndpoint(worker));
    const gen: Generation = { worker, api, died };
    worker.on('error', (err) => (lastError = err));
    worker.once('exit', (code) => {
      rejectDied(new Error(`uploader thread exited (code ${code})${lastError ? `: ${lastError.message}` : ''}`));
      if (this.current === gen) this.current = undefined;
      if (this.state.stopping) return;
      if (Date.now() - started > HEALTHY_MS) this.failures = 0;
      const min = this.o.minBackoffMs ?? 250;
      const wait = Math.min(this.o.maxBackoffMs ?? 30_000, min * 2 ** this.failures++);
      this.restarts++;
      this.o.onCrash?.({ code, err: lastError, restarts: this.restarts, restartInMs: wait });
      const diedAt = Date.now();
      this.ready = new Promise<void>((resolve) => setTimeout(resolve, wait)).then(async () => {
        if (this.state.stopping) return;
        await this.spawn();
        this.o.onRestarted?.({ restarts: this.restarts, ms: Date.now() - diedAt });
      });
      // A worker that dies while starting is restarted by its own exit handler; callers keep waiting.
      this.ready.catch(() => {});
    });
    this.current = gen;
    // Resolves once the worker has started and scanned the spool; rejects if it died doing so.
    await Promise.race([api.stats(), died]);
  }

  /** An api whose every call goes to the worker of the moment (waiting while one restarts). */
  private forwarder(): Comlink.Remote<UploaderApi> {
    const call = async (method: keyof UploaderApi, args: unknown[]): Promise<unknown> => {
      for (;;) {
        await this.ready;
        const gen = this.current;
        if (!gen) {
          if (this.state.stopping) throw new Error('uploader stopped');
          await new Promise((r) => setTimeout(r, 20)); // between an exit and its restart being scheduled
          continue;
        }
        const fn = gen.api[method] as unknown as (...a: unknown[]) => Promise<unknown>;
        return Promise.race([fn(...args), gen.died]);
      }
    };
    return new Proxy({} as Comlink.Remote<UploaderApi>, {
      get: (_t, prop) => {
        if (prop === Comlink.releaseProxy) return () => this.current?.api[Comlink.releaseProxy]();
        if (prop === 'then') return undefined; // not a thenable
        return (...args: unknown[]) => call(prop as keyof UploaderApi, args);
      },
    });
  }
}
