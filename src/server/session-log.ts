// One log line when a session opens and one when it closes, so that an operator can answer
// "what happened to uid X's session at 10:42": who it was, where it ran, how long, how much audio,
// how it ended and who ended it. The counters are integer fields of the Connection, bumped per
// message; the lines are built only here, twice per session — never per frame.
import type { SessionInit } from '../session/protocol.js';
import type { Logger } from '../log/logger.js';

/** What a session's lines are made of (a Connection has all of it). */
export interface SessionFacts {
  readonly init: SessionInit;
  readonly shard: { readonly index: number };
  readonly slot: number;
  /** Date.now() when the session was accepted. */
  readonly openedAt: number;
  /** WebSocket messages received (audio, heartbeats, JSON, keep-alives). */
  readonly messages: number;
  /** Audio payload bytes received (LC3 frames or PCM16, without headers and timestamps). */
  readonly audioBytesIn: number;
  /** Set by the first close this side started: why (a rejection reason, 'drain'…), code, reason. */
  readonly closing: { by: string; code: number; reason: string } | undefined;
}

/** Rejection reasons (pusher_rejected_total{reason}) that mean the client sent something wrong. */
const BAD_INPUT = new Set(['malformed', 'text_not_binary', 'unknown_header', 'oversized', 'invalid_json', 'invalid_payload', 'bad_conversation_id', 'bad_frame_size']);

/** Who ended a session, from what the server recorded when it started the close (if it did). */
export function closedBy(by: string | undefined): string {
  if (by === undefined) return 'client';
  if (BAD_INPUT.has(by)) return 'bad_input';
  switch (by) {
    case 'idle_timeout':
      return 'idle';
    case 'drain':
    case 'shard_restart':
    case 'not_reading':
      return by;
    case 'internal':
      return 'server_error';
    case 'message_rate':
    case 'audio_rate':
      return 'rate_limit';
    default:
      return 'server';
  }
}

/** The codec as the handshake names it. */
export function codecName(init: SessionInit): string {
  if (init.codec === 'pcm16') return 'pcm16';
  return init.sampleRate === 16000 && init.frameUs === 10000 && init.frameBytes === 30 ? 'lc3_fs1030' : 'lc3';
}

function who(s: SessionFacts): object {
  const i = s.init;
  return { uid: i.uid, session: i.id, endpoint: i.endpoint, codec: codecName(i), shard: s.shard.index };
}

export class SessionLog {
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  opened(s: SessionFacts): void {
    if (!this.#log.isLevelEnabled('info')) return;
    const i = s.init;
    const lc3 = i.codec === 'lc3' ? { frameUs: i.frameUs, frameBytes: i.frameBytes } : {};
    this.#log.info({ ...who(s), sampleRate: i.sampleRate, ...lc3, slot: s.slot, ack: i.ack, sync: i.sync, consumers: i.consumers !== null, conversation: i.conversationId ?? undefined }, 'session open');
  }

  /** `code` and `reason` are what the WebSocket's close event reported. */
  closed(s: SessionFacts, code: number, reason: string): void {
    const by = closedBy(s.closing?.by);
    const level = by === 'server_error' ? 'warn' : 'info';
    if (!this.#log.isLevelEnabled(level)) return;
    const i = s.init;
    // The code and reason this side sent when it closed (the peer's echo may be 1005/1006).
    const c = s.closing && s.closing.code > 0 ? s.closing : { code, reason };
    const unit = i.codec === 'lc3' ? i.frameBytes : 2;
    this.#log[level](
      {
        ...who(s),
        durationS: Math.round(Date.now() - s.openedAt) / 1000,
        messages: s.messages,
        // LC3 frames, or PCM16 samples (the unit the 202 acks count in).
        frames: Math.floor(s.audioBytesIn / unit),
        bytes: s.audioBytesIn,
        code: c.code,
        reason: c.reason || s.closing?.reason || '',
        closedBy: by,
        ...(s.closing && by !== s.closing.by ? { cause: s.closing.by } : {}),
      },
      'session closed',
    );
  }
}
