// What the main thread and a shard agree on about a session, and the validation of the pusher
// protocol's JSON messages (DESIGN §2). Shared by both sides; no I/O here.

import type { ConsumerSettings } from '../consumers/session-consumers.js';
import { ID_PATTERN } from '../spool/names.js';

export type Endpoint = 'pusher' | 'device';

export interface CodecParams {
  codec: 'pcm16' | 'lc3';
  sampleRate: number;
  /** LC3 only. */
  frameUs: number;
  /** LC3 only: bytes per frame. */
  frameBytes: number;
}

export interface SessionInit extends CodecParams {
  /** Unique within the process lifetime. */
  id: number;
  uid: string;
  endpoint: Endpoint;
  ack: boolean;
  conversationId: string | null;
  /** Private cloud sync for this uid (settings, resolved at the handshake): spool the audio. */
  sync: boolean;
  /** The uid's webhooks and apps (settings, resolved at the handshake); null: none. */
  consumers: ConsumerSettings | null;
}

/** Events a shard sends to the main thread (rare: never per frame). */
export type ShardEvent =
  | { t: 'drained'; slot: number }
  | { t: 'ack'; slot: number; frames: number; bytes: number }
  | { t: 'reply'; slot: number; body: string }
  | { t: 'close'; slot: number; code: number; reason: string }
  /** A 104 (the parsed message) or a placed 105, for the process-scoped job queue on the main thread. */
  | { t: 'job'; slot: number; session: number; uid: string; kind: 'process' | 'speaker_sample'; msg: Record<string, unknown> }
  | { t: 'log'; msg: string };

/** Uids and conversation ids become object-name segments: the spool's safe-id pattern. */
export const UID_RE = ID_PATTERN;
export const CONVERSATION_RE = ID_PATTERN;

export class ProtocolError extends Error {
  constructor(
    readonly closeCode: number,
    message: string,
  ) {
    super(message);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function decodeUtf8(data: Uint8Array, what: string): string {
  try {
    return utf8.decode(data);
  } catch {
    throw new ProtocolError(1007, `${what} is not valid UTF-8`);
  }
}

export function parseJson(data: Uint8Array, what: string): unknown {
  const text = decodeUtf8(data, what);
  try {
    return JSON.parse(text);
  } catch {
    throw new ProtocolError(1007, `${what} is not valid JSON`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export interface Transcript {
  segments: { id?: unknown; text: string; start: number; end: number }[];
  memory_id: string | null;
}

export function parseTranscript(data: Uint8Array): Transcript {
  const v = parseJson(data, 'transcript (102)');
  if (!isObject(v) || !Array.isArray(v.segments)) throw new ProtocolError(1007, 'transcript (102) needs a "segments" array');
  for (const s of v.segments) {
    if (!isObject(s) || typeof s.text !== 'string' || typeof s.start !== 'number' || typeof s.end !== 'number') {
      throw new ProtocolError(1007, 'transcript (102) segment needs text, start and end');
    }
  }
  if (v.memory_id !== undefined && v.memory_id !== null && typeof v.memory_id !== 'string') {
    throw new ProtocolError(1007, 'transcript (102) memory_id must be a string or null');
  }
  return { segments: v.segments as Transcript['segments'], memory_id: (v.memory_id as string | null | undefined) ?? null };
}

/** A 104: `conversation_id` checked, `language` defaulted to "en", every other field kept as sent. */
export function parseProcess(data: Uint8Array): Record<string, unknown> & { conversation_id: string; language: string } {
  const v = parseJson(data, 'process conversation (104)');
  if (!isObject(v) || typeof v.conversation_id !== 'string' || !CONVERSATION_RE.test(v.conversation_id)) {
    throw new ProtocolError(1007, 'process conversation (104) needs a valid "conversation_id"');
  }
  if (v.language !== undefined && v.language !== null && typeof v.language !== 'string') throw new ProtocolError(1007, 'process conversation (104) "language" must be a string');
  return { ...v, conversation_id: v.conversation_id, language: typeof v.language === 'string' && v.language ? v.language : 'en' };
}

export function parseSpeakerSample(data: Uint8Array): { person_id: string; conversation_id: string; segment_ids: string[] } {
  const v = parseJson(data, 'speaker sample request (105)');
  if (
    !isObject(v) ||
    typeof v.person_id !== 'string' ||
    !UID_RE.test(v.person_id) ||
    typeof v.conversation_id !== 'string' ||
    !CONVERSATION_RE.test(v.conversation_id) ||
    !Array.isArray(v.segment_ids) ||
    !v.segment_ids.every((s) => typeof s === 'string')
  ) {
    throw new ProtocolError(1007, 'speaker sample request (105) needs person_id, conversation_id and segment_ids');
  }
  return { person_id: v.person_id, conversation_id: v.conversation_id, segment_ids: v.segment_ids as string[] };
}

/** Conversation id from a 103 payload or a device text switch; bad ids would escape the object prefix. */
export function checkConversationId(id: string): string {
  if (!CONVERSATION_RE.test(id)) {
    throw new ProtocolError(1007, `conversation id must match ${CONVERSATION_RE.source} (got ${JSON.stringify(id.slice(0, 40))})`);
  }
  return id;
}
