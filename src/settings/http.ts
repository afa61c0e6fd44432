// SETTINGS_URL: `GET {url}?uid=…` answers one user's settings object (404 / null: nothing special),
// merged over the file layers and cached per uid (see cache.ts). On errors the last known answer
// (else the file/defaults) is used.
import { SettingsCache, type SettingsCacheOptions } from './cache.js';
import { FileSettings } from './file.js';
import {
  checkUidArg,
  checkUrl,
  mergeSettings,
  parseUserSettings,
  SettingsError,
  type ManagedSettingsProvider,
  type PartialSettings,
  type SettingsStats,
  type UserSettings,
} from './schema.js';

export interface HttpSettingsOptions extends SettingsCacheOptions {
  /** SETTINGS_URL: `GET {url}?uid=…` answers one user's settings object (404 / null: none). */
  url: string;
  /** File settings under the URL's answers (and the fallback when nothing is known). */
  base?: FileSettings;
  /** Per request (default 2 s). */
  timeoutMs?: number;
  /** Extra request headers (e.g. Authorization). */
  headers?: Record<string, string>;
}

/** Kept for existing callers: the same as SettingsStats. */
export type HttpSettingsStats = SettingsStats;

export class HttpSettings implements ManagedSettingsProvider {
  private readonly url: URL;
  private readonly base: FileSettings;
  private readonly timeoutMs: number;
  private readonly headers: Record<string, string>;
  private readonly cache: SettingsCache<PartialSettings>;

  constructor(o: HttpSettingsOptions) {
    this.url = new URL(checkUrl(o.url, 'SETTINGS_URL'));
    this.base = o.base ?? new FileSettings();
    this.timeoutMs = o.timeoutMs ?? 2_000;
    this.headers = o.headers ?? {};
    this.cache = new SettingsCache((uid) => this.fetchUser(uid), o);
  }

  stats(): SettingsStats {
    return { source: 'http', ...this.cache.counters() };
  }

  async get(uid: string): Promise<UserSettings> {
    checkUidArg(uid);
    return mergeSettings(...this.base.layers(uid), await this.cache.get(uid));
  }

  /** Nothing to release: requests are one-shot with their own timeout. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  private async fetchUser(uid: string): Promise<PartialSettings> {
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
