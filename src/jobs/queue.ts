// The process-scoped durable job queue (DESIGN §3.4): a job is journaled and fsync'd before
// submit() resolves and before any work; at most `concurrency` executors run; retryable outcomes
// retry forever with capped exponential backoff and jitter; ok/terminal outcomes are journaled as
// done and resolve the job's `done` promise. A pending job survives crashes and restarts.
//
// Timers: one timer, for the earliest waiting job that could start (none while every executor
// slot is busy — a finishing job re-pumps). It is NOT unref'd: a queue with work scheduled keeps
// its process alive, like any pending I/O would; nothing outlives the queue because drain()
// and close() clear it, and it is never armed while no job waits.
import { randomUUID } from 'node:crypto';
import type { SpoolIo } from '../spool/io.js';
import { MinHeap } from '../util/min-heap.js';
import { JobJournal } from './journal.js';
import { QueueClosedError, QueueFullError, type Job, type JobExecutor, type JobKind, type JobLog, type JobOutcome, type JobQueueStats, type JobResult, type JobSpec, type Submitted } from './types.js';

export interface JobQueueOptions {
  /** SPOOL_DIR: the journal is {dir}/jobs/journal-{n}.jsonl. */
  dir: string;
  executors: Partial<Record<JobKind, JobExecutor>>;
  concurrency: number;
  /** Pending jobs (waiting + running) past which submit() throws QueueFullError. */
  maxPending: number;
  backoff?: { baseMs?: number; capMs?: number };
  io?: SpoolIo;
  log?: JobLog;
  /** Clock for createdMs/notBefore (unix ms); timers still run on real time. */
  now?: () => number;
  /** Journal compaction threshold (obsolete records), for tests. */
  compactMinObsolete?: number;
}

interface Entry {
  job: Job;
  seq: number;
  accepted: Promise<void>;
  done: Promise<JobResult>;
  resolve: (r: JobResult) => void;
  controller?: AbortController;
}

/** What `done` resolves to for a job still pending when the queue drains (it stays journaled). */
export const INTERRUPTED: JobResult = Object.freeze({ ok: false, error: 'interrupted by shutdown; the job stays queued and resumes at the next start' });
const MAX_TIMER_MS = 2 ** 31 - 1;
/** After the drain deadline, aborted executors get this long to return before the queue lets go. */
const ABORT_GRACE_MS = 1_000;

export class JobQueue {
  private readonly journal: JobJournal;
  private readonly entries = new Map<string, Entry>();
  private readonly byKey = new Map<string, Entry>();
  private readonly heap = new MinHeap<Entry>((a, b) => a.job.notBefore < b.job.notBefore || (a.job.notBefore === b.job.notBefore && a.seq < b.seq));
  private readonly log: JobLog;
  private readonly now: () => number;
  private readonly baseMs: number;
  private readonly capMs: number;
  private readonly idleWaiters = new Set<() => void>();
  private readonly counters = { succeeded: 0, failed: 0, retries: 0, deduplicated: 0, queueFull: 0 };
  private running = 0;
  private seq = 0;
  private started = false;
  private stopping = false;
  private drained: Promise<{ finished: number; remaining: number }> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAt: number | undefined;

  constructor(private readonly o: JobQueueOptions) {
    this.journal = new JobJournal({ dir: o.dir, io: o.io, log: o.log, compactMinObsolete: o.compactMinObsolete });
    this.log = o.log ?? (() => {});
    this.now = o.now ?? Date.now;
    this.baseMs = o.backoff?.baseMs ?? 1_000;
    this.capMs = o.backoff?.capMs ?? 60_000;
  }

  /** Replays the journal and resumes every pending job (even past maxPending: nothing is dropped). */
  async start(): Promise<void> {
    if (this.started || this.stopping) throw new Error('job queue already started');
    const jobs = await this.journal.replay();
    this.started = true;
    for (const job of jobs) {
      const e = this.entry(job);
      e.accepted = Promise.resolve();
      if (!this.byKey.has(job.key)) this.byKey.set(job.key, e);
      this.heap.push(e);
    }
    if (jobs.length > 0) this.log('jobs resumed from the journal', { pending: jobs.length });
    this.pump();
  }

  async submit(spec: JobSpec): Promise<Submitted> {
    if (!this.started || this.stopping) throw new QueueClosedError(this.stopping ? 'job queue is shutting down' : 'job queue not started');
    const same = this.byKey.get(spec.key);
    if (same) {
      await same.accepted; // a duplicate of a job being journaled shares its fate
      this.counters.deduplicated++;
      return { job: same.job, deduplicated: true, done: same.done };
    }
    if (this.entries.size >= this.o.maxPending) {
      this.counters.queueFull++;
      throw new QueueFullError(`job queue full (${this.o.maxPending} pending)`);
    }
    const now = this.now();
    const job: Job = { id: randomUUID(), kind: spec.kind, uid: spec.uid, key: spec.key, payload: spec.payload, createdMs: now, attempts: 0, notBefore: spec.notBefore ?? now };
    const e = this.entry(job);
    this.byKey.set(job.key, e);
    e.accepted = this.journal.append({ op: 'add', job });
    try {
      await e.accepted;
    } catch (err) {
      this.remove(e);
      throw err;
    }
    if (this.entries.get(job.id) === e) {
      this.heap.push(e);
      this.pump();
    } // else the queue drained meanwhile: journaled, it resumes at the next start (done says so)
    return { job, deduplicated: false, done: e.done };
  }

  stats(): JobQueueStats {
    return { pending: this.entries.size, running: this.running, ...this.counters };
  }

  /**
   * SIGTERM: starts nothing new, waits for running jobs until `deadlineMs` (unix ms), then aborts
   * the rest. Every job not finished stays journaled; its `done` resolves with INTERRUPTED.
   */
  drain(deadlineMs: number): Promise<{ finished: number; remaining: number }> {
    this.drained ??= this.doDrain(deadlineMs);
    return this.drained;
  }

  async close(): Promise<void> {
    await this.drain(this.now());
    await this.journal.close();
  }

  private async doDrain(deadlineMs: number): Promise<{ finished: number; remaining: number }> {
    this.stopping = true;
    this.arm(undefined);
    const before = this.counters.succeeded + this.counters.failed;
    if (!(await this.idle(deadlineMs - this.now()))) {
      for (const e of this.entries.values()) e.controller?.abort(new Error('job queue draining'));
      await this.idle(ABORT_GRACE_MS);
    }
    const remaining = this.entries.size;
    for (const e of this.entries.values()) e.resolve(INTERRUPTED);
    this.entries.clear();
    this.byKey.clear();
    this.heap.clear();
    return { finished: this.counters.succeeded + this.counters.failed - before, remaining };
  }

  /** True once no executor runs (within `ms`). */
  private async idle(ms: number): Promise<boolean> {
    if (this.running === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    let waiter: (() => void) | undefined;
    await new Promise<void>((res) => {
      waiter = res;
      this.idleWaiters.add(res);
      timer = setTimeout(res, Math.max(0, Math.min(ms, MAX_TIMER_MS)));
    });
    clearTimeout(timer);
    this.idleWaiters.delete(waiter!);
    return this.running === 0;
  }

  private entry(job: Job): Entry {
    let resolve!: (r: JobResult) => void;
    const done = new Promise<JobResult>((r) => (resolve = r));
    const e: Entry = { job, seq: this.seq++, accepted: Promise.resolve(), done, resolve };
    this.entries.set(job.id, e);
    return e;
  }

  private remove(e: Entry): void {
    if (this.entries.get(e.job.id) === e) this.entries.delete(e.job.id);
    if (this.byKey.get(e.job.key) === e) this.byKey.delete(e.job.key);
  }

  private pump(): void {
    if (this.stopping) return;
    const now = this.now();
    for (let top = this.heap.peek(); top && this.running < this.o.concurrency && top.job.notBefore <= now; top = this.heap.peek()) {
      this.heap.pop();
      void this.run(top);
    }
    const next = this.heap.peek();
    this.arm(next && this.running < this.o.concurrency ? next.job.notBefore : undefined);
  }

  /** Keeps the one wake-up timer set for `at` (unix ms), or none. */
  private arm(at: number | undefined): void {
    if (at === this.timerAt) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = at;
    if (at === undefined) return;
    this.timer = setTimeout(() => {
      this.timer = this.timerAt = undefined;
      this.pump();
    }, Math.min(MAX_TIMER_MS, Math.max(0, at - this.now())));
  }

  private async run(e: Entry): Promise<void> {
    const { job } = e;
    this.running++;
    job.attempts++;
    const controller = (e.controller = new AbortController());
    const exec = this.o.executors[job.kind];
    let out: JobOutcome;
    try {
      out = exec ? await exec(job, controller.signal) : { ok: false, terminal: true, error: `no executor for ${job.kind}` };
    } catch (err) {
      out = { ok: false, terminal: false, error: err instanceof Error ? err.message : String(err) };
    }
    e.controller = undefined;
    if (out.ok || out.terminal) await this.finish(e, out);
    else if (!this.stopping) this.retry(e, out);
    else this.log('job interrupted by shutdown; it stays journaled', { id: job.id, kind: job.kind, error: out.error });
    this.running--;
    if (this.running === 0) for (const w of this.idleWaiters) w();
    this.pump();
  }

  private async finish(e: Entry, out: JobOutcome & ({ ok: true } | { terminal: true })): Promise<void> {
    const { job } = e;
    try {
      await this.journal.append({ op: 'done', id: job.id, ok: out.ok });
    } catch (err) {
      this.log('job done record not journaled; the job may run again after a restart', { id: job.id, error: String(err) });
    }
    this.remove(e);
    if (out.ok) {
      this.counters.succeeded++;
      e.resolve(out.reply ? { ok: true, reply: out.reply } : { ok: true });
    } else {
      this.counters.failed++;
      this.log('job failed', { id: job.id, kind: job.kind, uid: job.uid, attempts: job.attempts, error: out.error });
      e.resolve({ ok: false, error: out.error });
    }
  }

  private retry(e: Entry, out: { error: string; retryAfterMs?: number }): void {
    const { job } = e;
    this.counters.retries++;
    const d = Math.min(this.capMs, this.baseMs * 2 ** Math.min(job.attempts - 1, 40));
    const after = out.retryAfterMs;
    const delayMs = after !== undefined && Number.isFinite(after) ? Math.max(0, after) : d / 2 + (Math.random() * d) / 2;
    job.notBefore = Math.round(this.now() + delayMs);
    this.log('job retry scheduled', { id: job.id, kind: job.kind, attempts: job.attempts, delayMs: Math.round(delayMs), error: out.error });
    // Not awaited: the backoff state is an optimisation (lost, the job merely retries sooner).
    this.journal.append({ op: 'attempt', id: job.id, attempts: job.attempts, notBefore: job.notBefore }).catch(() => {});
    this.heap.push(e);
  }
}
