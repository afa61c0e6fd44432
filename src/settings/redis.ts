// SETTINGS_REDIS_URL: the developer webhooks the Omi backend keeps in Redis (layout and
// interpretation: omi.ts), merged over the file layers and cached per uid (cache.ts).
//
// One MGET per fetch. The client connects lazily (first get) and reconnects by itself (backoff capped
// at 2 s). Reads never wait for a connection that is down: the offline queue is disabled
// (disableOfflineQueue: node-redis rejects commands at once while not ready) and we check readiness
// first; only the very first connection attempt is awaited, for at most timeoutMs. A command on a
// live socket gets timeoutMs too — node-redis's own command `timeout` stops counting once the command
// is written, so a hung server is bounded here. A failed read is counted and answered, as for
// SETTINGS_URL, with the last known value, else the file/defaults (= every webhook off).
import { createClient } from 'redis';
import { SettingsCache, type SettingsCacheOptions } from './cache.js';
import { FileSettings } from './file.js';
import { omiKeys, parseOmiWebhooks } from './omi.js';
import {
  checkUidArg,
  mergeSettings,
  SettingsError,
  type ManagedSettingsProvider,
  type PartialSettings,
  type SettingsStats,
  type UserSettings,
} from './schema.js';

export interface RedisSettingsOptions extends SettingsCacheOptions {
  /** SETTINGS_REDIS_URL: redis://[user:password@]host[:port][/db] or rediss://… */
  url: string;
  /** File settings under Redis's answers (and the fallback when nothing is known). */
  base?: FileSettings;
  /** Per command, and for the first connection (default 1 s). */
  timeoutMs?: number;
}

type Client = ReturnType<typeof createClient>;

const MAX_RECONNECT_DELAY_MS = 2_000;

/** host:port of a Redis URL, without credentials (for messages). */
function describe(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new SettingsError('SETTINGS_REDIS_URL: not a valid URL');
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new SettingsError(`SETTINGS_REDIS_URL: expected a redis:// or rediss:// URL, got ${JSON.stringify(u.protocol)}`);
  }
  return `${u.hostname || 'localhost'}:${u.port || '6379'}`;
}

function withDeadline<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  p.catch(() => undefined); // a late rejection after the deadline is not unhandled
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

export class RedisSettings implements ManagedSettingsProvider {
  private readonly url: string;
  private readonly where: string;
  private readonly base: FileSettings;
  private readonly timeoutMs: number;
  private readonly cache: SettingsCache<PartialSettings>;
  private client: Client | null = null;
  /** Settles on the outcome ('ready' or 'error') of the first connection attempt. */
  private firstAttempt: Promise<void> = Promise.resolve();
  private lastError: Error | null = null;
  private pending = 0;
  private closed = false;

  constructor(o: RedisSettingsOptions) {
    this.where = describe(o.url);
    this.url = o.url;
    this.base = o.base ?? new FileSettings();
    this.timeoutMs = o.timeoutMs ?? 1_000;
    this.cache = new SettingsCache((uid) => this.fetchUser(uid), o);
  }

  stats(): SettingsStats {
    return { source: 'redis', ...this.cache.counters() };
  }

  async get(uid: string): Promise<UserSettings> {
    checkUidArg(uid);
    const value = this.closed ? this.cache.peek(uid) : await this.cache.get(uid);
    return mergeSettings(...this.base.layers(uid), value);
  }

  /** Quits the client (at once when commands are still waiting or it is not connected). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const c = this.client;
    if (!c?.isOpen) return;
    if (c.isReady && this.pending === 0) await c.close();
    else c.destroy();
  }

  private connect(): Client {
    if (this.client) return this.client;
    const c = createClient({
      url: this.url,
      disableOfflineQueue: true,
      commandOptions: { timeout: this.timeoutMs },
      socket: {
        connectTimeout: Math.max(2 * this.timeoutMs, 2_000),
        // Never give up; exponential backoff with jitter, capped.
        reconnectStrategy: (retries: number) => Math.min(50 * 2 ** Math.min(retries, 10), MAX_RECONNECT_DELAY_MS) + Math.floor(Math.random() * 100),
      },
    });
    // node-redis emits 'error' for every failed (re)connection; without a listener it would throw.
    c.on('error', (err: Error) => {
      this.lastError = err;
    });
    c.on('ready', () => {
      this.lastError = null;
      if (this.closed && c.isOpen) c.destroy(); // a connection that completed after close()
    });
    this.firstAttempt = new Promise<void>((resolve) => {
      c.once('ready', () => resolve());
      c.once('error', () => resolve());
    });
    c.connect().catch((err: unknown) => {
      this.lastError = err instanceof Error ? err : new Error(String(err));
    });
    this.client = c;
    return c;
  }

  private async fetchUser(uid: string): Promise<PartialSettings> {
    if (this.closed) throw new SettingsError(`settings for ${uid}: the Redis settings provider is closed`);
    const c = this.connect();
    if (!c.isReady) await withDeadline(this.firstAttempt, this.timeoutMs, () => new Error('timeout')).catch(() => undefined);
    if (!c.isReady) {
      const why = this.lastError ? ` (${this.lastError.message || this.lastError.name})` : '';
      throw new SettingsError(`settings for ${uid}: Redis ${this.where} is unreachable${why}`);
    }
    this.pending++;
    let values: (string | null)[];
    try {
      values = await withDeadline(
        c.mGet(omiKeys(uid)),
        this.timeoutMs,
        () => new SettingsError(`settings for ${uid}: Redis ${this.where} did not answer within ${this.timeoutMs} ms`),
      );
    } finally {
      this.pending--;
    }
    const { settings, problems } = parseOmiWebhooks(uid, values);
    for (const p of problems) this.cache.noteError(p, uid);
    return settings;
  }
}
