// The developer-webhook settings the Omi backend keeps in Redis (backend/database/redis_db.py,
// backend/utils/webhooks.py), read by RedisSettings:
//
//   users:{uid}:developer:webhook_status:{type} = 'true' | 'false'
//   users:{uid}:developer:webhook:{type}        = 'url' (realtime_transcript) | 'url,seconds' (audio_bytes)
//
// Interpretation, following Omi's delivery code:
// - A webhook is on only when its status is exactly the string 'true' (Omi:
//   `status.decode() == 'true'`). A MISSING status is OFF: Omi's senders test `if toggled:` on
//   user_webhook_status_db(), which is None then. (Omi's GET …/webhooks/status endpoint does, on first
//   call, write 'true' when a URL exists — webhook_first_time_setup — but until that write the
//   webhook is not delivered, and we never write.) A status other than 'true'/'false' is off and
//   counted as an error.
// - On, with no value or an empty URL (Omi's ',5' after clearing the URL): off, not an error.
// - audio_bytes: the URL is the part before the first ',' (trimmed); seconds the part after it
//   (default 5). Omi silently falls back to 5 for a bad number; we fall back to 5 too (the webhook
//   stays on) but count the bad number as an error, so it shows in pusher_settings_errors_total.
//   Valid seconds: an integer in [1, MAX_WEBHOOK_SECONDS]. More than one ',' is a bad number.
// - realtime_transcript: the whole value (trimmed) is the URL, as in Omi (no seconds).
// - An invalid URL (not http(s)): that webhook off, counted as an error.
// The answer always sets both keys (null when off), so Redis overrides the file layers for them.
import { checkUrl, MAX_WEBHOOK_SECONDS, SettingsError, type AudioBytesWebhook, type PartialSettings } from './schema.js';

export const OMI_DEFAULT_WEBHOOK_SECONDS = 5;

export type OmiWebhookType = 'audio_bytes' | 'realtime_transcript';

export function omiStatusKey(uid: string, type: OmiWebhookType): string {
  return `users:${uid}:developer:webhook_status:${type}`;
}

export function omiWebhookKey(uid: string, type: OmiWebhookType): string {
  return `users:${uid}:developer:webhook:${type}`;
}

/** The keys RedisSettings reads for a uid, in the order parseOmiWebhooks expects their values. */
export function omiKeys(uid: string): string[] {
  return [
    omiStatusKey(uid, 'audio_bytes'),
    omiWebhookKey(uid, 'audio_bytes'),
    omiStatusKey(uid, 'realtime_transcript'),
    omiWebhookKey(uid, 'realtime_transcript'),
  ];
}

export interface OmiWebhooks {
  settings: Pick<PartialSettings, 'audio_bytes_webhook' | 'transcript_webhook'>;
  /** Invalid values found (the affected webhook is off, or uses the default seconds). */
  problems: SettingsError[];
}

/** The value of a webhook that is on, or null when it is off (problems are appended). */
function enabledValue(uid: string, type: OmiWebhookType, status: string | null, value: string | null, problems: SettingsError[]): string | null {
  if (status !== 'true') {
    if (status !== null && status !== 'false') {
      problems.push(new SettingsError(`settings for ${uid}: ${omiStatusKey(uid, type)}: expected "true" or "false", got ${JSON.stringify(status)} (webhook off)`));
    }
    return null;
  }
  return value;
}

function url(uid: string, type: OmiWebhookType, raw: string, problems: SettingsError[]): string | null {
  const u = raw.trim();
  if (u === '') return null;
  try {
    return checkUrl(u, `settings for ${uid}: ${omiWebhookKey(uid, type)}`);
  } catch (e) {
    problems.push(new SettingsError(`${(e as Error).message} (webhook off)`));
    return null;
  }
}

function audioBytes(uid: string, value: string, problems: SettingsError[]): AudioBytesWebhook | null {
  const comma = value.indexOf(',');
  const u = url(uid, 'audio_bytes', comma < 0 ? value : value.slice(0, comma), problems);
  if (u === null || comma < 0) return u === null ? null : { url: u, seconds: OMI_DEFAULT_WEBHOOK_SECONDS };
  const s = value.slice(comma + 1).trim();
  const n = /^[0-9]{1,9}$/.test(s) ? Number(s) : NaN;
  if (n >= 1 && n <= MAX_WEBHOOK_SECONDS) return { url: u, seconds: n };
  problems.push(
    new SettingsError(
      `settings for ${uid}: ${omiWebhookKey(uid, 'audio_bytes')}: seconds must be an integer in [1, ${MAX_WEBHOOK_SECONDS}], got ${JSON.stringify(s)} (using ${OMI_DEFAULT_WEBHOOK_SECONDS})`,
    ),
  );
  return { url: u, seconds: OMI_DEFAULT_WEBHOOK_SECONDS };
}

/** Maps the values of omiKeys(uid) (null: missing) to settings. */
export function parseOmiWebhooks(uid: string, values: readonly (string | null | undefined)[]): OmiWebhooks {
  const problems: SettingsError[] = [];
  const [abStatus, abValue, tStatus, tValue] = values.map((v) => v ?? null);
  const ab = enabledValue(uid, 'audio_bytes', abStatus ?? null, abValue ?? null, problems);
  const t = enabledValue(uid, 'realtime_transcript', tStatus ?? null, tValue ?? null, problems);
  return {
    settings: {
      audio_bytes_webhook: ab === null ? null : audioBytes(uid, ab, problems),
      transcript_webhook: t === null ? null : url(uid, 'realtime_transcript', t, problems),
    },
    problems,
  };
}
