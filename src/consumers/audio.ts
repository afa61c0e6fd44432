// Audio fan-out (DESIGN §3.3): PCM16LE mono at the session's sample rate, collected per consumer
// and cut every N seconds OF AUDIO (by sample count, not wall clock), each cut one queue item:
//   audio-bytes webhook   POST {url}?sample_rate=R&uid=U  every N s (default 5), queue
//                         `audio_webhook` (20 items), target audio_webhook; retried after 1 s, 5 s,
//                         30 s on a network error, 5xx, 408 or 429 (never on another status); an
//                         item given up on is dropped and counted.
//   realtime audio apps   the same request to every app every 4 s, queue `audio_apps` (20 items),
//                         target audio_app; not retried. One item goes to all apps concurrently.
// One sender task per consumer, spawned when an item is queued and gone when the queue is empty;
// items are sent one at a time, in order. An item in flight stays charged to the session budget
// until its POSTs settle.
//
// Collecting is cheap on the hot path: one buffer per consumer, pre-sized (up to 1 MiB; a longer
// period grows it by doubling, capped at the period), allocated at the first audio after a cut and
// handed to the queue whole at the cut; pcm() itself allocates nothing. Its bytes count against
// the budget from allocation (evicting queued items like a push). A period larger than the whole
// budget is not collected at all, nor is one the budget has no room for (in-flight and collecting
// bytes are not evictable): its cut is counted as a drop. The period buffers come from a pool per
// thread and go back to it when they are dropped unsent or every receiver has taken them (2xx):
// one fresh 128–160 KB buffer per period per session was the shards' largest churn of native
// memory (a thousand sessions cut ~250 periods a second), freed only by a GC (see SizeClassPool).
// A buffer whose POST failed or was aborted is left to the GC: its bytes may still be in a socket
// write (a receiver can answer before it has read the body), and a reused buffer must not change
// them. On close a partial buffer is discarded, not sent: the session is
// gone, a webhook cannot take a late fragment as a period of audio, and the durable path (the
// spool) has every sample anyway.
import { isRetryableStatus } from '../http/client.js';
import { DropOldestQueue, type ByteBudget, type QueueCounters } from './drop-queue.js';
import { describe, sleep, withQuery, type ConsumerContext } from './context.js';
import { SizeClassPool } from '../util/scratch-pool.js';

export const AUDIO_QUEUE_ITEMS = 20;
export const AUDIO_APP_SECONDS = 4;
export const AUDIO_RETRY_DELAYS_MS: readonly number[] = [1000, 5000, 30000];
const PRESIZE_BYTES = 1 << 20;
const OCTET = 'application/octet-stream';
/** Period buffers, per thread (module state is per isolate): sizes repeat exactly per configuration. */
export const periodBuffers = new SizeClassPool(16 << 10, PRESIZE_BYTES, 64, 32 << 20, true);

export interface AudioFanoutOptions {
  queue: 'audio_webhook' | 'audio_apps';
  target: 'audio_webhook' | 'audio_app';
  urls: string[];
  seconds: number;
  sampleRate: number;
  /** Retry delays; a consumer with retries also counts an item given up on as a drop. */
  retryDelaysMs: readonly number[];
}

export class AudioFanout {
  private readonly queue: DropOldestQueue<Buffer>;
  private readonly urls: { url: string; key: string }[] = [];
  private readonly target: string;
  private readonly retryDelaysMs: readonly number[];
  readonly periodBytes: number;
  private readonly collecting: boolean;
  private buf: Buffer | null = null;
  private fill = 0;
  /** The budget had no room for this period's buffer: the period is skipped (a drop at its cut). */
  private skipping = false;
  private sending = false;
  private closed = false;

  constructor(
    private readonly ctx: ConsumerContext,
    o: AudioFanoutOptions,
    budget: ByteBudget,
    counters: QueueCounters,
  ) {
    this.queue = new DropOldestQueue<Buffer>(o.queue, AUDIO_QUEUE_ITEMS, budget, counters, (b) => periodBuffers.give(b));
    this.target = o.target;
    this.retryDelaysMs = o.retryDelaysMs;
    const rate = String(o.sampleRate);
    for (const u of o.urls) {
      try {
        this.urls.push({ url: withQuery(u, { sample_rate: rate, uid: ctx.uid }), key: `${o.target} ${new URL(u).host}` });
      } catch {
        ctx.report.error(`${o.target}: invalid URL, ignored`);
      }
    }
    this.periodBytes = Math.max(1, Math.round(o.seconds * o.sampleRate)) * 2;
    this.collecting = this.periodBytes <= budget.limit;
    if (!this.collecting) ctx.report.error(`${o.target}: ${o.seconds} s of audio exceed the session buffer budget (${budget.limit} bytes); not sent`);
  }

  get enabled(): boolean {
    return this.urls.length > 0;
  }

  /** PCM16LE bytes data[off, off+len); copied. */
  pcm(data: Uint8Array, off: number, len: number): void {
    if (this.closed) return;
    const period = this.periodBytes;
    while (len > 0) {
      const n = Math.min(len, period - this.fill);
      if (this.collecting && !this.skipping && (this.buf === null || this.fill + n > this.buf.length)) this.grow(this.fill + n);
      const b = this.buf;
      if (b !== null) b.set(data.subarray(off, off + n), this.fill); // one memcpy, not a JS byte loop (8.7 % of a busy shard)
      this.fill += n;
      off += n;
      len -= n;
      if (this.fill === period) this.cut();
    }
  }

  /** Discards the partial period and every queued/in-flight item; stops the sender. */
  close(): void {
    this.closed = true;
    if (this.buf) periodBuffers.give(this.buf);
    this.buf = null;
    this.fill = 0;
    this.queue.close();
  }

  private grow(need: number): void {
    const old = this.buf;
    let cap = old ? old.length : Math.min(this.periodBytes, PRESIZE_BYTES);
    while (cap < need) cap = Math.min(this.periodBytes, cap * 2);
    if (!this.queue.hold(cap - (old ? old.length : 0))) {
      // No room even after evicting every queued item (the rest is in flight or collecting).
      if (old) this.queue.release(old.length);
      this.buf = null;
      this.skipping = true;
      return;
    }
    const b = periodBuffers.take(cap); // exactly cap bytes (exact classes; larger or smaller sizes are not pooled)
    if (old) {
      b.set(old.subarray(0, this.fill));
      periodBuffers.give(old);
    }
    this.buf = b;
  }

  private cut(): void {
    const b = this.buf;
    this.buf = null;
    this.fill = 0;
    this.skipping = false;
    if (!b) return this.queue.countDrop(this.periodBytes); // too big for the budget, or no room for it
    this.queue.release(b.length); // from collecting to queued: the buffer is exactly one period
    if (this.queue.push(b, b.length)) this.kick();
    else periodBuffers.give(b); // dropped itself: never sent
  }

  private kick(): void {
    if (this.sending || this.ctx.scope.isClosed) return;
    this.sending = true;
    this.ctx.scope.spawn(async () => {
      try {
        for (let e = this.queue.shift(); e; e = this.closed || this.ctx.signal.aborted ? undefined : this.queue.shift()) {
          const ok = await Promise.all(this.urls.map((u) => this.send(u, e!.item)));
          if (this.retryDelaysMs.length > 0 && !ok[0] && !this.ctx.signal.aborted) this.queue.dropHeld(e.bytes);
          else this.queue.release(e.bytes);
          if (ok.every(Boolean)) periodBuffers.give(e.item); // every receiver read it and answered
        }
      } finally {
        this.sending = false;
      }
    });
  }

  /** POSTs one item to one receiver, retrying as configured; true when it was taken (2xx). */
  private async send(u: { url: string; key: string }, body: Uint8Array): Promise<boolean> {
    const { http, signal, scope, report } = this.ctx;
    for (let attempt = 0; ; attempt++) {
      let res: { status: number } | undefined;
      let err: unknown;
      try {
        res = await http.post(this.target, u.url, body, OCTET, signal);
      } catch (e) {
        err = e;
      }
      if (signal.aborted) return false;
      if (res && res.status >= 200 && res.status < 300) {
        report.ok(u.key);
        return true;
      }
      report.fail(u.key, describe(res, err));
      const delay = this.retryDelaysMs[attempt];
      if (delay === undefined || (res && !isRetryableStatus(res.status))) return false;
      await sleep(scope, signal, delay);
    }
  }
}
