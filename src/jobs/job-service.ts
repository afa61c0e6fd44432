// The process's jobs (DESIGN §3.4) as the ingest server sees them: a 104 becomes a durable
// "process conversation" job, a placed 105 a durable speaker-sample job, both in one JobQueue
// journaled in the spool directory. Runs on the main thread: a job is a few requests per
// conversation, nothing per frame, and the 201 reply goes out on the socket that lives here.
import { randomUUID } from 'node:crypto';
import type { Config } from '../config.js';
import { HttpClient } from '../http/client.js';
import type { JobReply, JobSink } from '../server/server.js';
import type { StoreConfig } from '../store/index.js';
import { processConversationExecutor, processJobSpec } from './process-conversation.js';
import { JobQueue } from './queue.js';
import { speakerSampleExecutor, speakerSampleJobSpec } from './speaker-sample-executor.js';
import { QueueFullError, type JobExecutor, type JobKind, type JobLog, type JobQueueStats, type JobSpec } from './types.js';

export const NOT_CONFIGURED = 'conversation processing is not configured';

export class JobService implements JobSink {
  readonly http: HttpClient;
  private readonly queue: JobQueue;
  private readonly speaker: JobExecutor & { close(): Promise<void> };
  private readonly cfg: Config;

  constructor(cfg: Config, store: StoreConfig, log: JobLog) {
    this.cfg = cfg;
    this.http = new HttpClient({ allowPrivate: cfg.WEBHOOK_ALLOW_PRIVATE, connectionsPerOrigin: Math.min(64, cfg.PROCESS_CONCURRENCY) });
    this.speaker = speakerSampleExecutor({ store });
    // Without an endpoint a 104 is answered at once and never journaled; jobs journaled by an
    // earlier run that had one stay journaled, retried slowly, until it is configured again.
    const process: JobExecutor = cfg.PROCESS_CONVERSATION_URL
      ? processConversationExecutor(this.http, cfg.PROCESS_CONVERSATION_URL)
      : () => Promise.resolve({ ok: false, terminal: false, error: `${NOT_CONFIGURED} (PROCESS_CONVERSATION_URL is unset)`, retryAfterMs: 60_000 });
    const executors: Record<JobKind, JobExecutor> = { process, speaker_sample: this.speaker };
    this.queue = new JobQueue({ dir: cfg.SPOOL_DIR, executors, concurrency: cfg.PROCESS_CONCURRENCY, maxPending: cfg.PROCESS_QUEUE_MAX, log });
  }

  start(): Promise<void> {
    return this.queue.start();
  }

  async submit(uid: string, kind: 'process' | 'speaker_sample', msg: Record<string, unknown>): Promise<JobReply> {
    let spec: JobSpec;
    if (kind === 'process') {
      if (!this.cfg.PROCESS_CONVERSATION_URL) return { ok: false, error: NOT_CONFIGURED };
      spec = processJobSpec(uid, msg);
    } else {
      spec = speakerSampleJobSpec(
        uid,
        {
          personId: String(msg.person_id),
          conversationId: String(msg.conversation_id),
          storageConversationId: String(msg.storage_conversation_id),
          segmentIds: msg.segment_ids as string[],
          startMs: Number(msg.start_ms),
          endMs: Number(msg.end_ms),
          requestId: randomUUID(),
        },
        this.cfg.SPEAKER_SAMPLE_MIN_AGE_S,
      );
    }
    try {
      const { done } = await this.queue.submit(spec);
      return await done;
    } catch (err) {
      if (err instanceof QueueFullError) return { ok: false, error: `the job queue is full (${this.cfg.PROCESS_QUEUE_MAX} pending); try again later` };
      return { ok: false, error: `the job could not be stored: ${(err as Error).message}` };
    }
  }

  stats(): JobQueueStats {
    return this.queue.stats();
  }

  /** SIGTERM: run what can finish before the deadline; the rest stays journaled for the next start. */
  drain(deadlineMs: number): Promise<{ finished: number; remaining: number }> {
    return this.queue.drain(deadlineMs);
  }

  async close(): Promise<void> {
    await this.queue.close();
    await this.speaker.close();
    await this.http.close();
  }
}
