// Per-user settings (DESIGN §3.5): the shape, its validation, the defaults and the key-by-key merge.
//
// Sources, merged key by key (later wins): built-in defaults ← SETTINGS_FILE `default` ←
// SETTINGS_FILE `users[uid]` ← one remote source (SETTINGS_URL or SETTINGS_REDIS_URL). With nothing
// known, private cloud sync is ON (durable audio is the service's purpose) and every consumer
// (webhooks, apps) is off.
import { isValidUid } from '../spool/names.js';

export interface AudioBytesWebhook {
  url: string;
  /** Seconds of audio per POST. */
  seconds: number;
}

export interface UserSettings {
  private_cloud_sync: boolean;
  audio_bytes_webhook: AudioBytesWebhook | null;
  transcript_webhook: string | null;
  /** Realtime apps that receive the audio (URLs). */
  audio_apps: string[];
  /** Realtime apps that receive the transcripts (URLs). */
  transcript_apps: string[];
}

export type PartialSettings = Partial<UserSettings>;

export const DEFAULT_SETTINGS: Readonly<UserSettings> = Object.freeze({
  private_cloud_sync: true,
  audio_bytes_webhook: null,
  transcript_webhook: null,
  audio_apps: [],
  transcript_apps: [],
});

const KEYS = Object.keys(DEFAULT_SETTINGS) as (keyof UserSettings)[];
export const MAX_AUDIO_APPS = 32;
export const MAX_TRANSCRIPT_APPS = 32;
export const MAX_WEBHOOK_SECONDS = 3600;

export class SettingsError extends Error {}

/** Where a provider's answers come from (the `source` label of pusher_settings_errors_total). */
export type SettingsSource = 'file' | 'http' | 'redis';

export interface SettingsStats {
  source: SettingsSource;
  /** Uids in the cache. */
  cached: number;
  /** Reads from the remote source. */
  fetches: number;
  /** Failed reads plus invalid values found in answers (each also reported to onError). */
  errors: number;
  /** Answers served from a fresh cache entry. */
  hits: number;
}

/** What the session server needs. */
export interface SettingsProvider {
  get(uid: string): Promise<UserSettings>;
}

/** What every provider of this module offers on top: counters for metrics, and shutdown. */
export interface ManagedSettingsProvider extends SettingsProvider {
  stats(): SettingsStats;
  close(): Promise<void>;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `v` if it is an http(s) URL, else a SettingsError naming `where`. */
export function checkUrl(v: unknown, where: string): string {
  let u: URL | null = null;
  try {
    u = typeof v === 'string' ? new URL(v) : null;
  } catch {
    u = null;
  }
  if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:')) {
    throw new SettingsError(`${where}: expected an http(s) URL, got ${JSON.stringify(v)}`);
  }
  return v as string;
}

export function checkUidArg(uid: unknown): asserts uid is string {
  if (!isValidUid(uid)) throw new SettingsError(`invalid uid ${JSON.stringify(uid)}`);
}

function checkUrlList(val: unknown, at: string, max: number, what: string): string[] {
  if (!Array.isArray(val)) throw new SettingsError(`${at}: expected an array of URLs`);
  if (val.length > max) throw new SettingsError(`${at}: at most ${max} ${what}`);
  return val.map((u, i) => checkUrl(u, `${at}[${i}]`));
}

function checkAudioBytesWebhook(val: unknown, at: string): AudioBytesWebhook | null {
  if (val === null) return null;
  if (!isObject(val)) throw new SettingsError(`${at}: expected {"url","seconds"} or null`);
  const extra = Object.keys(val).filter((x) => x !== 'url' && x !== 'seconds');
  if (extra.length > 0) throw new SettingsError(`${at}: unknown key ${JSON.stringify(extra[0])}`);
  const s = val.seconds;
  if (typeof s !== 'number' || !Number.isFinite(s) || s <= 0 || s > MAX_WEBHOOK_SECONDS) {
    throw new SettingsError(`${at}.seconds: expected a number in (0, ${MAX_WEBHOOK_SECONDS}], got ${JSON.stringify(s)}`);
  }
  return { url: checkUrl(val.url, `${at}.url`), seconds: s };
}

/** Validates one settings object (all keys optional; null turns a webhook off). */
export function parseUserSettings(v: unknown, where: string): PartialSettings {
  if (!isObject(v)) throw new SettingsError(`${where}: expected an object, got ${JSON.stringify(v)}`);
  const out: PartialSettings = {};
  for (const [k, val] of Object.entries(v)) {
    const at = `${where}.${k}`;
    switch (k) {
      case 'private_cloud_sync':
        if (typeof val !== 'boolean') throw new SettingsError(`${at}: expected true or false, got ${JSON.stringify(val)}`);
        out.private_cloud_sync = val;
        break;
      case 'audio_bytes_webhook':
        out.audio_bytes_webhook = checkAudioBytesWebhook(val, at);
        break;
      case 'transcript_webhook':
        out.transcript_webhook = val === null ? null : checkUrl(val, at);
        break;
      case 'audio_apps':
        out.audio_apps = checkUrlList(val, at, MAX_AUDIO_APPS, 'audio apps');
        break;
      case 'transcript_apps':
        out.transcript_apps = checkUrlList(val, at, MAX_TRANSCRIPT_APPS, 'transcript apps');
        break;
      default:
        throw new SettingsError(`${where}: unknown setting ${JSON.stringify(k)} (known: ${KEYS.join(', ')})`);
    }
  }
  return out;
}

/** Defaults overridden key by key by each layer in turn (lists are replaced, not concatenated). */
export function mergeSettings(...layers: (PartialSettings | null | undefined)[]): UserSettings {
  const out: UserSettings = {
    ...DEFAULT_SETTINGS,
    audio_apps: [...DEFAULT_SETTINGS.audio_apps],
    transcript_apps: [...DEFAULT_SETTINGS.transcript_apps],
  };
  for (const l of layers) {
    if (!l) continue;
    if (l.private_cloud_sync !== undefined) out.private_cloud_sync = l.private_cloud_sync;
    if (l.audio_bytes_webhook !== undefined) out.audio_bytes_webhook = l.audio_bytes_webhook && { ...l.audio_bytes_webhook };
    if (l.transcript_webhook !== undefined) out.transcript_webhook = l.transcript_webhook;
    if (l.audio_apps !== undefined) out.audio_apps = [...l.audio_apps];
    if (l.transcript_apps !== undefined) out.transcript_apps = [...l.transcript_apps];
  }
  return out;
}
