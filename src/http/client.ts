// Outgoing HTTP (webhooks, audio apps, conversation jobs; DESIGN §3.3): one keep-alive undici
// pool per thread that sends (each shard, the job runner on the main thread), never a client per
// request or session. Connect timeout 2 s, response timeout 15 s, a bounded number of connections
// per origin; every request carries its session's or job's AbortSignal, so closing a session
// aborts its requests at once. Figures are plain counts, pulled by /metrics like the shards' others.
import { Agent, request } from 'undici';
import { checkUrlHost, DestinationError, guardedLookup, makeGuardedLookup, type PrivateReason, type Resolver } from './destination.js';

export interface HttpClientOptions {
  connectTimeoutMs?: number;
  /** Headers and body, each (undici's headersTimeout and bodyTimeout), and the request as a whole. */
  responseTimeoutMs?: number;
  connectionsPerOrigin?: number;
  /** WEBHOOK_ALLOW_PRIVATE=1: loopback and private destinations allowed (tests, on-prem receivers). */
  allowPrivate?: boolean;
  /** The resolver under the destination guard (tests: a name that resolves to whatever they say). */
  resolver?: Resolver;
}

export interface HttpResult {
  status: number;
  /** The response body as text, at most MAX_BODY bytes of it (enough for an error message). */
  body: string;
}

/** Request outcome labels for pusher_http_requests_total{result}. */
export type HttpOutcome = '2xx' | '3xx' | '4xx' | '5xx' | 'timeout' | 'refused' | 'private_destination' | 'aborted' | 'error';

/** DESIGN §3.3: at most this many connections per origin, over the whole process. */
export const HTTP_CONNECTIONS_PER_ORIGIN = 64;

/** Latency bucket i counts requests faster than 2^i ms (the last one: the rest). */
export const HTTP_LATENCY_BUCKETS = 16;

export interface HttpTargetStats {
  target: string;
  results: Partial<Record<HttpOutcome, number>>;
  latency: number[];
  latencySumMs: number;
  /** Requests refused by the destination guard, by why (pusher_http_destinations_refused_total). */
  refused?: Partial<Record<PrivateReason, number>>;
}

const MAX_BODY = 64 * 1024;

/** A status worth retrying: 5xx, 408 Request Timeout, 429 Too Many Requests (not other 4xx). */
export function isRetryableStatus(status: number): boolean {
  return status >= 500 || status === 408 || status === 429;
}

export class HttpClient {
  private readonly agent: Agent;
  private readonly allowPrivate: boolean;
  private readonly responseTimeoutMs: number;
  private readonly targets = new Map<string, HttpTargetStats>();

  constructor(o: HttpClientOptions = {}) {
    this.allowPrivate = o.allowPrivate === true;
    this.responseTimeoutMs = o.responseTimeoutMs ?? 15_000;
    this.agent = new Agent({
      connections: o.connectionsPerOrigin ?? HTTP_CONNECTIONS_PER_ORIGIN,
      headersTimeout: this.responseTimeoutMs,
      bodyTimeout: this.responseTimeoutMs,
      keepAliveTimeout: 10_000,
      // The guard is the socket's own lookup: the address checked is the address connected to.
      connect: {
        timeout: o.connectTimeoutMs ?? 2_000,
        ...(this.allowPrivate ? (o.resolver ? { lookup: o.resolver } : {}) : { lookup: o.resolver ? makeGuardedLookup(o.resolver) : guardedLookup }),
      },
      // No redirect interceptor: a 3xx is an answer, never a second request somewhere else.
    });
  }

  /**
   * POSTs `body` to `url`. Resolves with any HTTP status (the caller decides what is success);
   * rejects on a network error, timeout, abort or refused destination. `target` names the kind of
   * receiver for the metrics (transcript_webhook, audio_webhook, app, process, …).
   */
  async post(target: string, url: string, body: Uint8Array | string, contentType: string, signal?: AbortSignal): Promise<HttpResult> {
    const t0 = performance.now();
    let outcome: HttpOutcome = 'error';
    try {
      const u = new URL(url);
      if (!this.allowPrivate) checkUrlHost(u);
      const timeout = AbortSignal.timeout(this.responseTimeoutMs + 2_000);
      const res = await request(u, {
        method: 'POST',
        dispatcher: this.agent,
        headers: { 'content-type': contentType },
        body,
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
      const text = await readCapped(res.body);
      outcome = `${Math.min(5, Math.max(2, Math.floor(res.statusCode / 100)))}xx` as HttpOutcome;
      return { status: res.statusCode, body: text };
    } catch (err) {
      outcome = classify(err, signal);
      if (outcome === 'private_destination') this.refuse(target, refusalReason(err));
      throw err;
    } finally {
      this.count(target, outcome, performance.now() - t0);
    }
  }

  private target(target: string): HttpTargetStats {
    let t = this.targets.get(target);
    if (!t) this.targets.set(target, (t = { target, results: {}, latency: new Array<number>(HTTP_LATENCY_BUCKETS).fill(0), latencySumMs: 0 }));
    return t;
  }

  private refuse(target: string, reason: PrivateReason): void {
    const r = (this.target(target).refused ??= {});
    r[reason] = (r[reason] ?? 0) + 1;
  }

  private count(target: string, outcome: HttpOutcome, ms: number): void {
    const t = this.target(target);
    t.results[outcome] = (t.results[outcome] ?? 0) + 1;
    const bucket = ms < 1 ? 0 : Math.min(HTTP_LATENCY_BUCKETS - 1, 32 - Math.clz32(Math.ceil(ms)));
    t.latency[bucket]!++;
    t.latencySumMs += ms;
  }

  /** Cumulative figures per target (structured-clone friendly: they cross threads). */
  stats(): HttpTargetStats[] {
    return [...this.targets.values()].map((t) => ({ ...t, results: { ...t.results }, latency: [...t.latency], ...(t.refused ? { refused: { ...t.refused } } : {}) }));
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

async function readCapped(body: AsyncIterable<Buffer> & { destroy(): void }): Promise<string> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of body) {
    if (n < MAX_BODY) parts.push(chunk.subarray(0, MAX_BODY - n));
    n += chunk.length;
    if (n >= MAX_BODY) break; // the rest is not needed; undici discards it with the socket
  }
  return Buffer.concat(parts).toString('utf8');
}

/** The guard's reason, whether undici passed its error through or wrapped it. */
function refusalReason(err: unknown): PrivateReason {
  const e = err as { reason?: PrivateReason; cause?: { reason?: PrivateReason } };
  return (err instanceof DestinationError ? err.reason : (e.reason ?? e.cause?.reason)) ?? 'private';
}

function classify(err: unknown, signal: AbortSignal | undefined): HttpOutcome {
  if (signal?.aborted) return 'aborted';
  if (err instanceof DestinationError) return 'private_destination';
  const e = err as { code?: string; name?: string; cause?: { code?: string } };
  const code = e.code ?? e.cause?.code;
  if (code === 'ERR_PRIVATE_DESTINATION') return 'private_destination';
  if (code === 'ECONNREFUSED') return 'refused';
  if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || e.name === 'TimeoutError') return 'timeout';
  return 'error';
}
