// Per-user settings (DESIGN §3.5). One provider per process, chosen from the config:
// SETTINGS_FILE alone (FileSettings), or the file under SETTINGS_URL (HttpSettings) or under
// SETTINGS_REDIS_URL (RedisSettings, the Omi backend's developer webhooks) — not both remote sources.
import { FileSettings, loadSettingsFile } from './file.js';
import { HttpSettings, type HttpSettingsOptions } from './http.js';
import { RedisSettings, type RedisSettingsOptions } from './redis.js';
import { SettingsError } from './schema.js';

export * from './schema.js';
export * from './file.js';
export * from './cache.js';
export * from './http.js';
export * from './omi.js';
export * from './redis.js';

export interface SettingsConfig {
  /** SETTINGS_FILE ('' or undefined: none). */
  file?: string;
  /** SETTINGS_URL ('' or undefined: none). */
  url?: string;
  /** SETTINGS_REDIS_URL ('' or undefined: none). */
  redisUrl?: string;
  http?: Omit<HttpSettingsOptions, 'url' | 'base'>;
  redis?: Omit<RedisSettingsOptions, 'url' | 'base'>;
}

/** The provider for a config; throws SettingsError (a startup error) for a bad file or URL. */
export function createSettingsProvider(c: SettingsConfig): FileSettings | HttpSettings | RedisSettings {
  if (c.url && c.redisUrl) {
    throw new SettingsError('SETTINGS_URL and SETTINGS_REDIS_URL are both set: per-user settings come from one of them, unset the other');
  }
  const base = new FileSettings(c.file ? loadSettingsFile(c.file) : null);
  if (c.url) return new HttpSettings({ ...c.http, url: c.url, base });
  if (c.redisUrl) return new RedisSettings({ ...c.redis, url: c.redisUrl, base });
  return base;
}
