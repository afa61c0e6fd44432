// Durable jobs (DESIGN §3.4): what is queued, what an executor answers, what a submitter gets.

export type JobKind = 'process' | 'speaker_sample';

export interface JobSpec {
  kind: JobKind;
  uid: string;
  /** de-duplication key */
  key: string;
  payload: Record<string, unknown>;
  /** unix ms; not started before */
  notBefore?: number;
}

export interface Job extends JobSpec {
  id: string;
  createdMs: number;
  /** Attempts started so far (journaled with each scheduled retry). */
  attempts: number;
  notBefore: number;
}

export type JobOutcome =
  | { ok: true; reply?: Record<string, unknown> }
  | { ok: false; terminal: true; error: string }
  | { ok: false; terminal: false; error: string; retryAfterMs?: number };

export type JobExecutor = (job: Job, signal: AbortSignal) => Promise<JobOutcome>;

export type JobResult = { ok: true; reply?: Record<string, unknown> } | { ok: false; error: string };

export interface JobQueueStats {
  pending: number;
  running: number;
  succeeded: number;
  failed: number;
  retries: number;
  deduplicated: number;
  queueFull: number;
}

export interface Submitted {
  job: Job;
  deduplicated: boolean;
  done: Promise<JobResult>;
}

export type JobLog = (msg: string, fields?: object) => void;

/** maxPending jobs are pending: the submitter must answer an error (never a silent drop). */
export class QueueFullError extends Error {
  override readonly name = 'QueueFullError';
}

/** submit() before start() or once drain()/close() began. */
export class QueueClosedError extends Error {
  override readonly name = 'QueueClosedError';
}
