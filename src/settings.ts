// Per-user settings (DESIGN §3.5): private cloud sync on/off, audio-bytes webhook (url, seconds),
// transcript webhook url, audio apps (urls).
//
// Sources, merged key by key (later wins): built-in defaults ← SETTINGS_FILE `default` ←
// SETTINGS_FILE `users[uid]` ← SETTINGS_URL (`GET {url}?uid=…` → the same per-user object).
// With nothing known, private cloud sync is ON (durable audio is the service's purpose) and every
// webhook is off. SETTINGS_URL answers are cached per uid (TTL, LRU-bounded); an expired entry is
// served while it is refreshed in the background; on errors the last known answer (else the
// file/defaults) is used and the next try waits errorTtlMs. A bad settings file is a startup error.
import { readFileSync } from 'node:fs';
import { isValidUid } from './spool/names.js';

export interface AudioBytesWebhook {
  url: string;
  /** Seconds of audio per POST. */
  seconds: number;
}

export interface UserSettings {
  private_cloud_sync: boolean;
  audio_bytes_webhook: AudioBytesWebhook | null;
  transcript_webhook: string | null;
  audio_apps: string[];
}

export type PartialSettings = Partial<UserSettings>;

export const DEFAULT_SETTINGS: Readonly<UserSettings> = Object.freeze({
  private_cloud_sync: true,
  audio_bytes_webhook: null,
  transcript_webhook: null,
  audio_apps: [],
});

const KEYS = Object.keys(DEFAULT_SETTINGS) as (keyof UserSettings)[];
export const MAX_AUDIO_APPS = 32;
export const MAX_WEBHOOK_SECONDS = 3600;

export class SettingsError extends Error {}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkUrl(v: unknown, where: string): string {
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
        if (val === null) out.audio_bytes_webhook = null;
        else {
          if (!isObject(val)) throw new SettingsError(`${at}: expected {"url","seconds"} or null`);
          const extra = Object.keys(val).filter((x) => x !== 'url' && x !== 'seconds');
          if (extra.length > 0) throw new SettingsError(`${at}: unknown key ${JSON.stringify(extra[0])}`);
          const s = val.seconds;
          if (typeof s !== 'number' || !Number.isFinite(s) || s <= 0 || s > MAX_WEBHOOK_SECONDS) {
            throw new SettingsError(`${at}.seconds: expected a number in (0, ${MAX_WEBHOOK_SECONDS}], got ${JSON.stringify(s)}`);
          }
          out.audio_bytes_webhook = { url: checkUrl(val.url, `${at}.url`), seconds: s };
        }
        break;
      case 'transcript_webhook':
        out.transcript_webhook = val === null ? null : checkUrl(val, at);
        break;
      case 'audio_apps':
        if (!Array.isArray(val)) throw new SettingsError(`${at}: expected an array of URLs`);
        if (val.length > MAX_AUDIO_APPS) throw new SettingsError(`${at}: at most ${MAX_AUDIO_APPS} audio apps`);
        out.audio_apps = val.map((u, i) => checkUrl(u, `${at}[${i}]`));
        break;
      default:
        throw new SettingsError(`${where}: unknown setting ${JSON.stringify(k)} (known: ${KEYS.join(', ')})`);
    }
  }
  return out;
}

export interface SettingsFile {
  default: PartialSettings;
  users: Map<string, PartialSettings>;
}

/** Parses the SETTINGS_FILE content: `{ "default": {…}, "users": { uid: {…} } }` (both optional). */
export function parseSettingsFile(text: string, path: string): SettingsFile {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new SettingsError(`settings file ${path}: not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(j)) throw new SettingsError(`settings file ${path}: expected an object with "default" and/or "users"`);
  const extra = Object.keys(j).filter((k) => k !== 'default' && k !== 'users');
  if (extra.length > 0) throw new SettingsError(`settings file ${path}: unknown key ${JSON.stringify(extra[0])} (expected "default", "users")`);
  const users = new Map<string, PartialSettings>();
  if (j.users !== undefined) {
    if (!isObject(j.users)) throw new SettingsError(`settings file ${path}: "users" must be an object keyed by uid`);
    for (const [uid, v] of Object.entries(j.users)) {
      if (!isValidUid(uid)) throw new SettingsError(`settings file ${path}: invalid uid ${JSON.stringify(uid)} in "users"`);
      users.set(uid, parseUserSettings(v, `settings file ${path}: users.${uid}`));
    }
  }
  return { default: j.default === undefined ? {} : parseUserSettings(j.default, `settings file ${path}: default`), users };
}

export function loadSettingsFile(path: string): SettingsFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new SettingsError(`settings file ${path}: cannot read it (${(e as Error).message})`);
  }
  return parseSettingsFile(text, path);
}

/** Defaults overridden key by key by each layer in turn (lists are replaced, not concatenated). */
export function mergeSettings(...layers: (PartialSettings | null | undefined)[]): UserSettings {
  const out: UserSettings = { ...DEFAULT_SETTINGS, audio_apps: [...DEFAULT_SETTINGS.audio_apps] };
  for (const l of layers) {
    if (!l) continue;
    if (l.private_cloud_sync !== undefined) out.private_cloud_sync = l.private_cloud_sync;
    if (l.audio_bytes_webhook !== undefined) out.audio_bytes_webhook = l.audio_bytes_webhook && { ...l.audio_bytes_webhook };
    if (l.transcript_webhook !== undefined) out.transcript_webhook = l.transcript_webhook;
    if (l.audio_apps !== undefined) out.audio_apps = [...l.audio_apps];
  }
  return out;
}

export interface SettingsProvider {
  get(uid: string): Promise<UserSettings>;
}

function checkUidArg(uid: unknown): asserts uid is string {
  if (!isValidUid(uid)) throw new SettingsError(`invalid uid ${JSON.stringify(uid)}`);
}

/** Settings from the file only (or built-in defaults when there is none). */
export class FileSettings implements SettingsProvider {
  constructor(private readonly file: SettingsFile | null = null) {}

  /** The layers for a uid without the URL: [file default, file user]. */
  layers(uid: string): PartialSettings[] {
    return this.file ? [this.file.default, this.file.users.get(uid) ?? {}] : [];
  }

  resolve(uid: string): UserSettings {
    checkUidArg(uid);
    return mergeSettings(...this.layers(uid));
  }

  get(uid: string): Promise<UserSettings> {
    try {
      return Promise.resolve(this.resolve(uid));
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }
}

export interface HttpSettingsOptions {
  /** SETTINGS_URL: `GET {url}?uid=…` answers one user's settings object (404 / null: none). */
  url: string;
  /** File settings under the URL's answers (and the fallback when nothing is known). */
  base?: FileSettings;
  /** Fresh answers are reused this long (default 60 s). */
  ttlMs?: number;
  /** After a failed fetch, the fallback is used this long before trying again (default 5 s). */
  errorTtlMs?: number;
  /** Most uids cached (least recently used go first; default 10000). */
  maxEntries?: number;
  /** Per request (default 2 s). */
  timeoutMs?: number;
  /** Extra request headers (e.g. Authorization). */
  headers?: Record<string, string>;
  onError?: (err: Error, uid: string) => void;
  now?: () => number;
}

interface CacheEntry {
  /** The URL's answer; null when it never answered for this uid. */
  value: PartialSettings | null;
  expiresAt: number;
}

export interface HttpSettingsStats {
  cached: number;
  fetches: number;
  errors: number;
  hits: number;
}

export class HttpSettings implements SettingsProvider {
  private readonly url: URL;
  private readonly base: FileSettings;
  private readonly ttlMs: number;
  private readonly errorTtlMs: number;
  private readonly maxEntries: number;
  private readonly timeoutMs: number;
  private readonly headers: Record<string, string>;
  private readonly onError: NonNullable<HttpSettingsOptions['onError']>;
  private readonly now: () => number;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inflight = new Map<string, Promise<UserSettings>>();
  private readonly counters = { fetches: 0, errors: 0, hits: 0 };

  constructor(o: HttpSettingsOptions) {
    this.url = new URL(checkUrl(o.url, 'SETTINGS_URL'));
    this.base = o.base ?? new FileSettings();
    this.ttlMs = o.ttlMs ?? 60_000;
    this.errorTtlMs = o.errorTtlMs ?? 5_000;
    this.maxEntries = Math.max(1, o.maxEntries ?? 10_000);
    this.timeoutMs = o.timeoutMs ?? 2_000;
    this.headers = o.headers ?? {};
    this.onError = o.onError ?? ((): void => undefined);
    this.now = o.now ?? Date.now;
  }

  stats(): HttpSettingsStats {
    return { cached: this.cache.size, ...this.counters };
  }

  async get(uid: string): Promise<UserSettings> {
    checkUidArg(uid);
    const e = this.cache.get(uid);
    if (e) {
      this.cache.delete(uid); // LRU: most recent last
      this.cache.set(uid, e);
      if (this.now() < e.expiresAt) {
        this.counters.hits++;
        return this.merged(uid, e.value);
      }
      if (e.value) {
        // Stale but known: answer now, refresh in the background.
        void this.refresh(uid, e);
        return this.merged(uid, e.value);
      }
    }
    return this.refresh(uid, e);
  }

  private merged(uid: string, value: PartialSettings | null): UserSettings {
    return mergeSettings(...this.base.layers(uid), value);
  }

  private refresh(uid: string, prev: CacheEntry | undefined): Promise<UserSettings> {
    let p = this.inflight.get(uid);
    if (!p) {
      p = this.fetchUser(uid).then(
        (value) => {
          this.put(uid, { value, expiresAt: this.now() + this.ttlMs });
          return this.merged(uid, value);
        },
        (err: unknown) => {
          this.counters.errors++;
          this.onError(err as Error, uid);
          const value = prev?.value ?? null;
          this.put(uid, { value, expiresAt: this.now() + this.errorTtlMs });
          return this.merged(uid, value);
        },
      );
      p = p.finally(() => this.inflight.delete(uid));
      this.inflight.set(uid, p);
    }
    return p;
  }

  private put(uid: string, e: CacheEntry): void {
    this.cache.delete(uid);
    this.cache.set(uid, e);
    while (this.cache.size > this.maxEntries) this.cache.delete(this.cache.keys().next().value!);
  }

  private async fetchUser(uid: string): Promise<PartialSettings> {
    this.counters.fetches++;
    const u = new URL(this.url);
    u.searchParams.set('uid', uid);
    const res = await fetch(u, { headers: { accept: 'application/json', ...this.headers }, signal: AbortSignal.timeout(this.timeoutMs) });
    const text = await res.text();
    if (res.status === 404) return {};
    if (!res.ok) throw new SettingsError(`settings for ${uid}: HTTP ${res.status} from ${this.url.origin}${this.url.pathname}`);
    let j: unknown;
    try {
      j = JSON.parse(text);
    } catch {
      throw new SettingsError(`settings for ${uid}: the answer is not JSON`);
    }
    return j === null ? {} : parseUserSettings(j, `settings for ${uid}`);
  }
}

export interface SettingsConfig {
  /** SETTINGS_FILE ('' or undefined: none). */
  file?: string;
  /** SETTINGS_URL ('' or undefined: none). */
  url?: string;
  http?: Omit<HttpSettingsOptions, 'url' | 'base'>;
}

/** The provider for a config; throws SettingsError (a startup error) for a bad file or URL. */
export function createSettingsProvider(c: SettingsConfig): FileSettings | HttpSettings {
  const base = new FileSettings(c.file ? loadSettingsFile(c.file) : null);
  return c.url ? new HttpSettings({ ...c.http, url: c.url, base }) : base;
}
