// Validation of a session's handshake query (DESIGN §2.1, §2.2) into a SessionInit, before the
// upgrade: every problem is an HTTP 400 with a JSON body naming it.
import { FRAME_US, MAX_FRAME_BYTES, MIN_FRAME_BYTES, SAMPLE_RATES } from '../../wasm/lc3.js';
import { CONVERSATION_RE, UID_RE, type Endpoint, type SessionInit } from '../session/protocol.js';
import { HttpError } from './auth.js';

function bad(message: string): HttpError {
  return new HttpError(400, 'bad_request', message);
}

function intParam(q: URLSearchParams, name: string, dflt: number): number {
  const v = q.get(name);
  if (v === null || v === '') return dflt;
  if (!/^\d+$/.test(v)) throw bad(`${name} must be an integer`);
  return Number(v);
}

export function parseHandshake(endpoint: Endpoint, q: URLSearchParams, tokenUid: string | undefined, id: number): Omit<SessionInit, 'sync' | 'consumers'> {
  const uid = tokenUid ?? q.get('uid') ?? '';
  if (!uid) throw bad('uid is required');
  if (!UID_RE.test(uid)) throw bad(`uid must match ${UID_RE.source}`);
  const codecName = q.get('codec') ?? (endpoint === 'device' ? 'lc3_fs1030' : 'pcm16');
  const sampleRate = intParam(q, 'sample_rate', endpoint === 'device' ? 16000 : 8000);
  if (sampleRate < 8000 || sampleRate > 48000) throw bad('sample_rate must be in 8000..48000');
  let init: Pick<SessionInit, 'codec' | 'sampleRate' | 'frameUs' | 'frameBytes'>;
  if (codecName === 'pcm16') {
    init = { codec: 'pcm16', sampleRate, frameUs: 0, frameBytes: 0 };
  } else if (codecName === 'lc3_fs1030') {
    if (q.get('sample_rate') !== null && sampleRate !== 16000) throw bad('lc3_fs1030 is 16 kHz: sample_rate must be 16000');
    init = { codec: 'lc3', sampleRate: 16000, frameUs: 10000, frameBytes: 30 };
  } else if (codecName === 'lc3') {
    const frameUs = intParam(q, 'frame_us', 10000);
    const frameBytes = intParam(q, 'frame_bytes', 0);
    if (!(FRAME_US as readonly number[]).includes(frameUs)) throw bad('frame_us must be 7500 or 10000');
    if (frameBytes < MIN_FRAME_BYTES || frameBytes > MAX_FRAME_BYTES) throw bad(`frame_bytes must be in ${MIN_FRAME_BYTES}..${MAX_FRAME_BYTES}`);
    if (!(SAMPLE_RATES as readonly number[]).includes(sampleRate)) throw bad(`LC3 sample_rate must be one of ${SAMPLE_RATES.join(', ')}`);
    init = { codec: 'lc3', sampleRate, frameUs, frameBytes };
  } else {
    throw bad('codec must be pcm16, lc3_fs1030 or lc3');
  }
  const ackParam = q.get('ack');
  if (ackParam !== null && ackParam !== '0' && ackParam !== '1') throw bad('ack must be 0 or 1');
  const conversationId = q.get('conversation_id');
  if (conversationId !== null && !CONVERSATION_RE.test(conversationId)) throw bad(`conversation_id must match ${CONVERSATION_RE.source}`);
  return { id, uid, endpoint, ack: ackParam === '1', conversationId, ...init };
}
