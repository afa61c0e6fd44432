// Limits that keep one client — or a crowd of them — from taking the service down (issue 10 §4):
//   - per connection: messages per second and seconds of audio per second (token buckets;
//     excess → close 1008), checked on the per-message path without allocating;
//   - per uid: concurrent sessions (excess → HTTP 429 before the upgrade: nothing is allocated);
//   - per process: open sessions + handshakes in progress (excess → HTTP 503 before the upgrade),
//     and raw TCP connections past that plus TCP_SLACK closed at accept (Node's maxConnections);
//   - slow or half-open clients: Node's headersTimeout/requestTimeout (HANDSHAKE_TIMEOUT_MS, then
//     408) and maxHeaderSize (MAX_HEADER_BYTES, then 431), and the same deadline on our own async
//     part of the handshake (auth, settings) once Node handed us the upgrade;
//   - 101 timestamps more than MAX_CLOCK_SKEW_S from the server's clock are replaced by the
//     arrival time (they name the stored chunks: a client clock in 1970 or 2100 must not).
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Counter, type Registry } from 'prom-client';
import { HttpError } from './auth.js';
import { RateBucket } from './rate-window.js';

export interface LimitSettings {
  /** Messages per second per connection (0: unlimited); a bucket holds MESSAGE_BURST_S of them. */
  MAX_MESSAGES_PER_S: number;
  /** Seconds of audio per second per connection (0: unlimited). */
  MAX_AUDIO_S_PER_S: number;
  MAX_MESSAGE_BYTES: number;
  MAX_SESSIONS_PER_UID: number;
  MAX_CONNECTIONS: number;
  MAX_CLOCK_SKEW_S: number;
}

/** Seconds of the message rate a connection may save up (a phone that was offline sends in bursts). */
export const MESSAGE_BURST_S = 10;
/** Seconds of the audio rate a connection may save up, on top of one largest message's worth. */
export const AUDIO_BURST_S = 10;
/** TCP connections accepted past MAX_CONNECTIONS (probes, /metrics, and room to answer 503). */
export const TCP_SLACK = 1024;

/**
 * The two per-connection rates. Audio is counted in bytes at the session's byte rate, so the hot
 * path is one subtraction per message. The audio bucket starts with AUDIO_BURST_S of the rate plus
 * one MAX_MESSAGE_BYTES message: a client reconnecting with everything it buffered (the Omi client
 * sends up to 10 MiB in one 101) is not refused for it.
 */
export class SessionRate {
  private readonly messages: RateBucket;
  private readonly audio: RateBucket;

  constructor(s: Pick<LimitSettings, 'MAX_MESSAGES_PER_S' | 'MAX_AUDIO_S_PER_S' | 'MAX_MESSAGE_BYTES'>, audioBytesPerSecond: number, nowMs: number) {
    this.messages = new RateBucket(s.MAX_MESSAGES_PER_S, s.MAX_MESSAGES_PER_S * MESSAGE_BURST_S, nowMs);
    const rate = s.MAX_AUDIO_S_PER_S * audioBytesPerSecond;
    this.audio = new RateBucket(rate, rate * AUDIO_BURST_S + s.MAX_MESSAGE_BYTES, nowMs);
  }

  /** One message arrived; false when it is over the message rate. */
  message(nowMs: number): boolean {
    return this.messages.take(1, nowMs);
  }

  /** `bytes` of audio arrived; false when they are over the audio rate. */
  audioBytes(bytes: number, nowMs: number): boolean {
    return this.audio.take(bytes, nowMs);
  }
}

/** True when a 101's first-sample time (unix s) is a number within `skewS` of the server's clock. */
export function plausibleTimestamp(tsSeconds: number, nowMs: number, skewS: number): boolean {
  // NaN fails both comparisons; ±Infinity fails one.
  const d = tsSeconds * 1000 - nowMs;
  return d <= skewS * 1000 && d >= -skewS * 1000;
}

/**
 * Admission before the upgrade: handshakes in progress and open sessions against MAX_CONNECTIONS,
 * sessions per uid against MAX_SESSIONS_PER_UID. A uid is claimed before the (async) settings
 * look-up, so a burst of handshakes for one uid cannot all pass the check at once.
 */
export class Admission {
  private handshakes = 0;
  private readonly perUid = new Map<string, number>();
  private readonly s: Pick<LimitSettings, 'MAX_CONNECTIONS' | 'MAX_SESSIONS_PER_UID'>;
  private readonly openSessions: () => number;

  constructor(s: Pick<LimitSettings, 'MAX_CONNECTIONS' | 'MAX_SESSIONS_PER_UID'>, openSessions: () => number) {
    this.s = s;
    this.openSessions = openSessions;
  }

  get inProgress(): number {
    return this.handshakes;
  }

  /** A handshake starts; throws 503 when the process holds MAX_CONNECTIONS already. Pair with leave(). */
  enter(): void {
    if (this.handshakes + this.openSessions() >= this.s.MAX_CONNECTIONS) {
      throw new HttpError(503, 'too_many_connections', `server holds its maximum of ${this.s.MAX_CONNECTIONS} connections (MAX_CONNECTIONS); try again later`);
    }
    this.handshakes++;
  }

  leave(): void {
    this.handshakes--;
  }

  /** Claims a session for `uid`; throws 429 past MAX_SESSIONS_PER_UID. Pair with releaseUid(). */
  claimUid(uid: string): void {
    const n = this.perUid.get(uid) ?? 0;
    if (n >= this.s.MAX_SESSIONS_PER_UID) {
      throw new HttpError(429, 'too_many_sessions', `uid ${uid} already has ${n} open sessions (MAX_SESSIONS_PER_UID=${this.s.MAX_SESSIONS_PER_UID})`);
    }
    this.perUid.set(uid, n + 1);
  }

  releaseUid(uid: string): void {
    const n = this.perUid.get(uid) ?? 0;
    if (n <= 1) this.perUid.delete(uid);
    else this.perUid.set(uid, n - 1);
  }

  sessionsOf(uid: string): number {
    return this.perUid.get(uid) ?? 0;
  }
}

/** The options Node's http server takes for slow and oversized requests. */
export function httpServerLimits(handshakeTimeoutMs: number, maxHeaderBytes: number): { headersTimeout: number; requestTimeout: number; maxHeaderSize: number; connectionsCheckingInterval: number } {
  return {
    // A request line and headers must be complete within the deadline — the clock starts at
    // accept, so a connection that sends nothing at all is closed too (measured: 408, then closed).
    headersTimeout: handshakeTimeoutMs,
    requestTimeout: handshakeTimeoutMs,
    maxHeaderSize: maxHeaderBytes,
    // Node checks the deadlines on this interval (default 30 s: half-open clients lived 60–90 s).
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(handshakeTimeoutMs / 4))),
  };
}

/** Why Node refused a request before it reached us (pusher_rejected_total{reason}), and the answer. */
export function classifyClientError(err: Error & { code?: string }): { reason: string; status: number; text: string } {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return { reason: 'header_too_large', status: 431, text: 'Request Header Fields Too Large' };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { reason: 'handshake_timeout', status: 408, text: 'Request Timeout' };
    default:
      return { reason: 'bad_http', status: 400, text: 'Bad Request' };
  }
}

/**
 * The server's 'clientError' handler: counts the refusal and answers as Node would (a status line
 * and close) when nothing was written yet; a reset or closed socket is only destroyed.
 */
export function answerClientError(err: Error & { code?: string }, socket: Duplex, count: (reason: string) => void): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const c = classifyClientError(err);
  count(c.reason);
  const body = JSON.stringify({ error: err.code === 'HPE_HEADER_OVERFLOW' ? 'request headers are larger than MAX_HEADER_BYTES' : c.status === 408 ? 'request not complete within HANDSHAKE_TIMEOUT_MS' : 'malformed HTTP request' });
  if ((socket as Socket).bytesWritten === 0 || (socket as Socket).bytesWritten === undefined) {
    socket.end(`HTTP/1.1 ${c.status} ${c.text}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  }
  socket.destroy();
}

/** pusher_timestamps_replaced_total: 101s whose first-sample time was not within MAX_CLOCK_SKEW_S. */
export function timestampsReplacedCounter(registry: Registry): Counter {
  return new Counter({ name: 'pusher_timestamps_replaced_total', help: '101 timestamps further than MAX_CLOCK_SKEW_S from the server clock (or not a number), replaced by the arrival time', registers: [registry] });
}
