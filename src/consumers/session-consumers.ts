// The per-session fan-out a Session uses (DESIGN §3.3): transcripts to the transcript webhook and
// apps, audio to the audio-bytes webhook and realtime audio apps. Only configured consumers
// exist: with none, nothing is queued, collected or allocated (the Omi service collected audio
// for consumers nobody had: ~57 MB/h per connection). Every timer and task lives in the
// session's TaskScope; all queues share one byte budget (SESSION_BUFFER_BYTES).
//
// Closing — close(), or the scope's close, whichever comes first — aborts in-flight requests and
// retry waits, discards partial audio, and releases every buffer and queue item from the budget
// and the shard's gauges.
import type { HttpClient } from '../http/client.js';
import type { TaskScope } from '../session/task-scope.js';
import { AUDIO_APP_SECONDS, AUDIO_RETRY_DELAYS_MS, AudioFanout } from './audio.js';
import { FailureReporter, type ConsumerContext } from './context.js';
import { ByteBudget, DEFAULT_SESSION_BUFFER_BYTES, type QueueCounters, type SharedPool } from './drop-queue.js';
import { TRANSCRIPT_TICK_MS, TranscriptFanout } from './transcripts.js';

export { newQueueCounters, SharedPool, type QueueCounters } from './drop-queue.js';

export interface ConsumerSettings {
  transcriptWebhook: string | null;
  transcriptApps: string[];
  audioBytesWebhook: { url: string; seconds: number } | null;
  audioApps: string[];
}

export function hasConsumers(s: ConsumerSettings): boolean {
  return s.transcriptWebhook !== null || s.transcriptApps.length > 0 || s.audioBytesWebhook !== null || s.audioApps.length > 0;
}

export interface SessionConsumersOptions {
  uid: string;
  sampleRate: number;
  settings: ConsumerSettings;
  scope: TaskScope;
  http: HttpClient;
  counters: QueueCounters;
  /** SESSION_BUFFER_BYTES: the byte budget of all this session's queues (0: the 20 MiB default). */
  budgetBytes: number;
  /** The shard's pool over every session's queues (QUEUE_MAX_BYTES / SHARDS); absent: unbounded across sessions. */
  pool?: SharedPool | undefined;
  onError?: (msg: string) => void;
  /** Audio-bytes webhook retry delays (default 1 s, 5 s, 30 s); for tests. */
  retryDelaysMs?: readonly number[];
  /** Transcript round interval (default 1 s); for tests. */
  transcriptTickMs?: number;
}

export class SessionConsumers {
  readonly wantsPcm: boolean;
  readonly wantsTranscripts: boolean;
  private readonly budget: ByteBudget;
  private readonly controller = new AbortController();
  private readonly transcripts: TranscriptFanout | undefined;
  private readonly webhook: AudioFanout | undefined;
  private readonly apps: AudioFanout | undefined;
  private readonly scope: TaskScope;
  private readonly onScopeClose = (): void => this.close();
  private closed = false;

  constructor(o: SessionConsumersOptions) {
    const s = o.settings;
    this.scope = o.scope;
    this.budget = new ByteBudget(o.budgetBytes > 0 ? o.budgetBytes : DEFAULT_SESSION_BUFFER_BYTES, o.pool);
    const ctx: ConsumerContext = {
      uid: o.uid,
      scope: o.scope,
      signal: AbortSignal.any([o.scope.signal, this.controller.signal]),
      http: o.http,
      report: new FailureReporter(o.onError),
    };
    const only = <T extends { enabled: boolean; close(): void }>(c: T): T | undefined => {
      if (c.enabled) return c;
      c.close();
      return undefined;
    };
    if (s.transcriptWebhook !== null || s.transcriptApps.length > 0) {
      const tick = o.transcriptTickMs ?? TRANSCRIPT_TICK_MS;
      this.transcripts = only(new TranscriptFanout(ctx, s.transcriptWebhook, s.transcriptApps, this.budget, o.counters, tick));
    }
    const audio = { sampleRate: o.sampleRate };
    if (s.audioBytesWebhook !== null) {
      const w = s.audioBytesWebhook;
      const retryDelaysMs = o.retryDelaysMs ?? AUDIO_RETRY_DELAYS_MS;
      this.webhook = only(new AudioFanout(ctx, { ...audio, queue: 'audio_webhook', target: 'audio_webhook', urls: [w.url], seconds: w.seconds, retryDelaysMs }, this.budget, o.counters));
    }
    if (s.audioApps.length > 0) {
      const opts = { ...audio, queue: 'audio_apps', target: 'audio_app', urls: s.audioApps, seconds: AUDIO_APP_SECONDS, retryDelaysMs: [] } as const;
      this.apps = only(new AudioFanout(ctx, opts, this.budget, o.counters));
    }
    this.wantsPcm = this.webhook !== undefined || this.apps !== undefined;
    this.wantsTranscripts = this.transcripts !== undefined;
    if (o.scope.signal.aborted) this.close();
    else o.scope.signal.addEventListener('abort', this.onScopeClose, { once: true });
  }

  /** Bytes charged to this session's budget now: queued, in flight and being collected. */
  get bytes(): number {
    return this.budget.used;
  }

  /** One 102 message's segments. */
  transcript(segments: unknown[]): void {
    this.transcripts?.push(segments);
  }

  /** PCM16LE mono at the session's sample rate, data[off, off+len); copied if kept. */
  pcm(data: Uint8Array, off: number, len: number): void {
    if (!this.wantsPcm) return;
    this.webhook?.pcm(data, off, len);
    this.apps?.pcm(data, off, len);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.scope.signal.removeEventListener('abort', this.onScopeClose);
    this.controller.abort(new Error('session consumers closed'));
    this.transcripts?.close();
    this.webhook?.close();
    this.apps?.close();
  }
}
