// Realtime transcript fan-out (DESIGN §3.3). Each 102 message's segments are queued (queue
// `transcripts`, at most 50 messages, drop-oldest); every 1 s tick whatever is queued goes out as
// one round, concatenated in order, concurrently to
//   the transcript webhook  POST {url}?uid=U      {"segments":[…],"session_id":"U"}  (transcript_webhook)
//   every transcript app    POST {app_url}?uid=U  {"session_id":"U","segments":[…]}  (transcript_app)
// Not retried: a transcript is stale a second later, the next round carries the new ones.
//
// Rounds never overlap: a tick that finds the previous round still in flight sends nothing and
// waits for the next tick; meanwhile the queue keeps accumulating (bounded; drops counted). The
// round's bytes stay charged to the session budget until every POST of it has settled. The tick
// timer runs only while there is something to send (an idle session holds no timer).
import { DropOldestQueue, type ByteBudget, type QueueCounters } from './drop-queue.js';
import { describe, withQuery, type ConsumerContext } from './context.js';

export const TRANSCRIPT_QUEUE_ITEMS = 50;
export const TRANSCRIPT_TICK_MS = 1000;
const JSON_TYPE = 'application/json';

interface Target {
  label: 'transcript_webhook' | 'transcript_app';
  url: string;
  key: string;
  /** The body around the segments: `${before}[segments]${after}`. */
  before: string;
  after: string;
}

export class TranscriptFanout {
  private readonly queue: DropOldestQueue<string>;
  private readonly targets: Target[] = [];
  private timer: NodeJS.Timeout | undefined;
  private inFlight = false;
  private closed = false;

  constructor(
    private readonly ctx: ConsumerContext,
    webhook: string | null,
    apps: string[],
    budget: ByteBudget,
    counters: QueueCounters,
    private readonly tickMs = TRANSCRIPT_TICK_MS,
  ) {
    this.queue = new DropOldestQueue<string>('transcripts', TRANSCRIPT_QUEUE_ITEMS, budget, counters);
    const sid = JSON.stringify(ctx.uid);
    if (webhook !== null) this.add('transcript_webhook', webhook, '{"segments":[', `],"session_id":${sid}}`);
    for (const app of apps) this.add('transcript_app', app, `{"session_id":${sid},"segments":[`, ']}');
  }

  get enabled(): boolean {
    return this.targets.length > 0;
  }

  /** Queues one 102 message's segments (serialized now: the exact bytes are what the budget counts). */
  push(segments: unknown[]): void {
    if (this.closed || !this.enabled || segments.length === 0) return;
    const json = JSON.stringify(segments);
    const inner = json.slice(1, -1); // without the brackets: rounds join messages with ','
    this.queue.push(inner, Buffer.byteLength(inner));
    this.arm();
  }

  close(): void {
    this.closed = true;
    if (this.timer) this.ctx.scope.clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.close();
  }

  private add(label: Target['label'], url: string, before: string, after: string): void {
    try {
      this.targets.push({ label, url: withQuery(url, { uid: this.ctx.uid }), key: `${label} ${new URL(url).host}`, before, after });
    } catch {
      this.ctx.report.error(`${label}: invalid URL, ignored`);
    }
  }

  private arm(): void {
    if (this.timer || this.closed || this.ctx.scope.isClosed) return;
    this.timer = this.ctx.scope.setTimeout(this.tickMs, () => this.tick());
  }

  private tick(): void {
    this.timer = undefined;
    if (this.closed) return;
    if (!this.inFlight && this.queue.length > 0) this.round(this.queue.drain());
    if (this.queue.length > 0) this.arm(); // else the next push arms it
  }

  private round(entries: { item: string; bytes: number }[]): void {
    let held = 0;
    for (const e of entries) held += e.bytes;
    const segments = entries.map((e) => e.item).join(',');
    this.inFlight = true;
    const { scope, http, signal, report } = this.ctx;
    scope.spawn(async () => {
      try {
        await Promise.all(
          this.targets.map(async (t) => {
            let res: { status: number } | undefined;
            try {
              res = await http.post(t.label, t.url, t.before + segments + t.after, JSON_TYPE, signal);
              if (res.status >= 200 && res.status < 300) return report.ok(t.key);
            } catch (err) {
              if (signal.aborted) return;
              return report.fail(t.key, describe(undefined, err));
            }
            report.fail(t.key, describe(res, undefined));
          }),
        );
      } finally {
        this.inFlight = false;
        this.queue.release(held);
      }
    });
  }
}
