// The "process conversation" job of a 104 (DESIGN §3.4): POST {uid, conversation_id, language, …}
// to PROCESS_CONVERSATION_URL, every further field of the 104 passed through untouched
// (finalization_job_id, dispatch_generation, byok_keys, …). 2xx → done; a 4xx other than 408/429
// → terminal, with the endpoint's own error; anything else (5xx, 408, 429, 3xx, network) → retry.
import { isRetryableStatus, type HttpClient } from '../http/client.js';
import type { JobExecutor, JobSpec } from './types.js';

/** Longest error text passed on from the endpoint (it goes back to the client in a 201). */
export const MAX_ERROR_CHARS = 500;

/** The job for a parsed 104; throws a TypeError when it names no conversation. */
export function processJobSpec(uid: string, msg: Record<string, unknown>): JobSpec {
  const { uid: _ignored, conversation_id, language, ...rest } = msg;
  if (typeof conversation_id !== 'string' || conversation_id === '') throw new TypeError('104 without a conversation_id');
  const finalization = msg.finalization_job_id;
  return {
    kind: 'process',
    uid,
    key: `${uid}\n${conversation_id}\n${finalization === undefined || finalization === null ? '' : String(finalization)}`,
    payload: { uid, conversation_id, language: language ?? 'en', ...rest },
  };
}

export function processConversationExecutor(http: HttpClient, url: string): JobExecutor {
  return async (job, signal) => {
    let res;
    try {
      res = await http.post('process', url, JSON.stringify(job.payload), 'application/json', signal);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      const code = (e as { code?: unknown }).code;
      return { ok: false, terminal: false, error: typeof code === 'string' && !msg.includes(code) ? `${msg} (${code})` : msg };
    }
    if (res.status >= 200 && res.status < 300) return { ok: true, reply: { conversation_id: job.payload.conversation_id, success: true } };
    const error = endpointError(res.status, res.body);
    if (res.status >= 400 && res.status < 500 && !isRetryableStatus(res.status)) return { ok: false, terminal: true, error };
    return { ok: false, terminal: false, error: `HTTP ${res.status}: ${error}` };
  };
}

/**
 * The error an endpoint answered: a JSON body's string `error`, or FastAPI's `detail` (a string,
 * or anything else as JSON); else the body text, trimmed; else `HTTP {status}`. At most 500 chars.
 */
export function endpointError(status: number, body: string): string {
  const text = body.trim();
  if (text === '') return `HTTP ${status}`;
  let msg = text;
  try {
    const j = JSON.parse(text) as unknown;
    if (typeof j === 'object' && j !== null) {
      const { error, detail } = j as { error?: unknown; detail?: unknown };
      if (typeof error === 'string' && error !== '') msg = error;
      else if (typeof detail === 'string' && detail !== '') msg = detail;
      else if (detail !== undefined && detail !== null && typeof detail !== 'string') msg = JSON.stringify(detail);
    }
  } catch {
    // not JSON: the text itself
  }
  const chars = [...msg];
  return chars.length > MAX_ERROR_CHARS ? chars.slice(0, MAX_ERROR_CHARS).join('') : msg;
}
