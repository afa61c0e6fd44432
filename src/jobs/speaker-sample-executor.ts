// The speaker-sample job of a 105 (DESIGN §3.4): journaled like a 104, not started before the
// audio is SPEAKER_SAMPLE_MIN_AGE_S old, then run on a piscina thread (workers/speaker-sample-job.ts
// → extractSpeakerSample). Audio not stored yet → retry every retryMs, until maxWaitMs past the
// job's notBefore (then terminal); an impossible request → terminal; done → reply {object, samples}.
import { Piscina } from 'piscina';
import type { StoreConfig } from '../store/index.js';
import { workerUrl } from '../util/worker-url.js';
import type { ExtractResult, SpeakerSampleRequest } from './speaker-sample.js';
import type { Job, JobExecutor, JobOutcome, JobSpec } from './types.js';

export interface SpeakerSampleJobRequest {
  personId: string;
  /** The conversation the audio is stored under (may be '_'). */
  storageConversationId: string;
  /** The conversation the 105 names. */
  conversationId: string;
  segmentIds: string[];
  /** Absolute unix ms of the range. */
  startMs: number;
  endMs: number;
  requestId: string;
}

export const DEFAULT_MAX_WAIT_MS = 60 * 60_000;
export const DEFAULT_RETRY_MS = 30_000;
/** A pool thread of our own exits after this long without a job. */
export const POOL_IDLE_MS = 30_000;

/** The job of a 105: one per (uid, person, conversation, segments); not before the audio is minAgeS old. */
export function speakerSampleJobSpec(uid: string, r: SpeakerSampleJobRequest, minAgeS: number): JobSpec {
  return {
    kind: 'speaker_sample',
    uid,
    key: `${uid}\n${r.personId}\n${r.conversationId}\n${r.segmentIds.join(',')}`,
    notBefore: r.endMs + minAgeS * 1000,
    payload: {
      personId: r.personId,
      storageConversationId: r.storageConversationId,
      conversationId: r.conversationId,
      segmentIds: [...r.segmentIds],
      startMs: r.startMs,
      endMs: r.endMs,
      requestId: r.requestId,
    },
  };
}

/** The extraction request a job carries; a string saying what is wrong when it carries none. */
export function requestOf(job: Job): SpeakerSampleRequest | string {
  const p = job.payload ?? {};
  for (const k of ['personId', 'storageConversationId', 'conversationId', 'requestId'] as const) {
    if (typeof p[k] !== 'string') return `speaker_sample job without a string ${k}`;
  }
  for (const k of ['startMs', 'endMs'] as const) {
    if (typeof p[k] !== 'number' || !Number.isFinite(p[k])) return `speaker_sample job without a numeric ${k}`;
  }
  return {
    uid: job.uid,
    storageConversationId: p.storageConversationId as string,
    conversationId: p.conversationId as string,
    personId: p.personId as string,
    requestId: p.requestId as string,
    startMs: p.startMs as number,
    endMs: p.endMs as number,
  };
}

export interface SpeakerSampleExecutorOptions {
  store: StoreConfig;
  /** A pool running workers/speaker-sample-job; default: one of our own (0..2 threads, created on first use). */
  pool?: Piscina;
  /** Give up (terminal) when the audio is still not stored this long after the job's notBefore (default 1 h). */
  maxWaitMs?: number;
  /** Delay before looking again (default 30 s). */
  retryMs?: number;
  /** Longest sample in seconds (default 10, see extractSpeakerSample). */
  maxSeconds?: number;
  /** Unix ms (tests). */
  now?: () => number;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export function speakerSampleExecutor(o: SpeakerSampleExecutorOptions): JobExecutor & { close(): Promise<void> } {
  const maxWaitMs = o.maxWaitMs ?? DEFAULT_MAX_WAIT_MS;
  const retryMs = o.retryMs ?? DEFAULT_RETRY_MS;
  const now = o.now ?? Date.now;
  let own: Piscina | undefined;
  let closed = false;

  const pool = (): Piscina =>
    o.pool ??
    (own ??= new Piscina({
      filename: workerUrl('speaker-sample-job').href,
      minThreads: 0,
      maxThreads: 2,
      idleTimeout: POOL_IDLE_MS,
    }));

  /** Not done yet: retry later, unless the job has waited long enough. */
  const later = (job: Job, error: string): JobOutcome => {
    const waited = now() - job.notBefore;
    if (waited >= maxWaitMs) return { ok: false, terminal: true, error: `gave up after ${Math.round(waited / 1000)} s: ${error}` };
    return { ok: false, terminal: false, error, retryAfterMs: retryMs };
  };

  const exec = async (job: Job, signal: AbortSignal): Promise<JobOutcome> => {
    if (job.kind !== 'speaker_sample') return { ok: false, terminal: true, error: `not a speaker_sample job: ${job.kind}` };
    const req = requestOf(job);
    if (typeof req === 'string') return { ok: false, terminal: true, error: req };
    if (closed) return { ok: false, terminal: false, error: 'speaker sample executor closed' };
    if (signal.aborted) return { ok: false, terminal: false, error: 'aborted' };
    let r: ExtractResult;
    try {
      const task = o.maxSeconds === undefined ? { store: o.store, req } : { store: o.store, req, maxSeconds: o.maxSeconds };
      r = (await pool().run(task, { signal })) as ExtractResult;
    } catch (e) {
      if (signal.aborted) return { ok: false, terminal: false, error: 'aborted' };
      // A store error (or a crashed thread): retry like missing audio, within the same deadline.
      return later(job, message(e));
    }
    if ('failed' in r) return { ok: false, terminal: true, error: r.reason };
    if (!r.ready) return later(job, r.reason);
    return { ok: true, reply: { object: r.object, samples: r.samples } };
  };

  return Object.assign(exec, {
    async close(): Promise<void> {
      closed = true;
      const p = own;
      own = undefined;
      await p?.destroy();
    },
  });
}
