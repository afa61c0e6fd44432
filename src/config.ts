// Service configuration: environment variables (names from DESIGN §6), overridable by flags.
import { availableParallelism } from 'node:os';

export interface Config {
  PORT: number;
  HOST: string;
  SHARDS: number;
  SLOTS_PER_SHARD: number;
  RING_BYTES: number;
  SPOOL_DIR: string;
  STORE: 'local' | 'gcs';
  STORE_DIR: string;
  GCS_BUCKET: string;
  GCS_API_ENDPOINT: string;
  CHUNK_SECONDS: number;
  FSYNC_MS: number;
  RECEIVE_TIMEOUT_S: number;
  SPOOL_MAX_BYTES: number;
  DRAIN_TIMEOUT_S: number;
  CLOSE_GRACE_MS: number;
  AUTH_MODE: 'none' | 'jwt' | 'static';
  AUTH_SECRET: string;
  ADMIN_TOKEN: string;
  SETTINGS_FILE: string;
  SETTINGS_URL: string;
  LOG_LEVEL: string;
  /** Largest WebSocket message (a 101 after a reconnect carries everything the client buffered). */
  MAX_MESSAGE_BYTES: number;
  /** Largest JSON message (102, 104, 105). */
  MAX_JSON_BYTES: number;
  /** A client's unread replies past this close it with 1008. */
  SEND_BUFFER_BYTES: number;
  /** One byte budget over all of a session's replayable buffers (webhook and app queues). */
  SESSION_BUFFER_BYTES: number;
  PROCESS_CONVERSATION_URL: string;
  PROCESS_CONCURRENCY: number;
  /** Pending conversation jobs (104) and speaker-sample requests (105) kept; past it a 104 is answered with an error. */
  PROCESS_QUEUE_MAX: number;
  SPEAKER_SAMPLE_MIN_AGE_S: number;
  SETTINGS_REDIS_URL: string;
  WEBHOOK_ALLOW_PRIVATE: boolean;
}

export class ConfigError extends Error {}

const SIZE_UNITS: Record<string, number> = { '': 1, B: 1, KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30, TIB: 2 ** 40, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12 };

/** "10GiB", "512MiB", "1000" → bytes. */
export function parseBytes(v: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
  const unit = m ? SIZE_UNITS[m[2]!.toUpperCase()] : undefined;
  if (!m || unit === undefined) throw new ConfigError(`not a size: "${v}" (use e.g. 10GiB, 512MiB, 1000000)`);
  return Math.floor(Number(m[1]) * unit);
}

function int(name: string, v: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError(`${name}=${v}: expected an integer in ${min}..${max}`);
  return n;
}

function oneOf<T extends string>(name: string, v: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(v)) throw new ConfigError(`${name}=${v}: expected one of ${allowed.join(', ')}`);
  return v as T;
}

function sizeIn(name: string, v: string, min: number, max: number): number {
  let n: number;
  try {
    n = parseBytes(v);
  } catch (e) {
    throw new ConfigError(`${name}=${v}: ${(e as Error).message}`);
  }
  if (n < min || n > max) throw new ConfigError(`${name}=${v}: expected a size in ${min}..${max} bytes`);
  return n;
}

/** '' (unset) or an absolute URL with one of the given schemes. */
function url(name: string, v: string, schemes: readonly string[] = ['http:', 'https:']): string {
  if (v === '') return v;
  let u: URL | undefined;
  try {
    u = new URL(v);
  } catch {
    u = undefined;
  }
  if (!u || !schemes.includes(u.protocol)) throw new ConfigError(`${name}=${v}: expected a ${schemes.map((s) => s.slice(0, -1)).join(' or ')} URL`);
  return v;
}

export function defaults(): Record<keyof Config, string> {
  return {
    PORT: '8080',
    HOST: '0.0.0.0',
    SHARDS: String(availableParallelism()),
    SLOTS_PER_SHARD: '4096',
    RING_BYTES: '16384',
    SPOOL_DIR: './data/spool',
    STORE: 'local',
    STORE_DIR: './data/store',
    GCS_BUCKET: '',
    GCS_API_ENDPOINT: '',
    CHUNK_SECONDS: '60',
    FSYNC_MS: '200',
    RECEIVE_TIMEOUT_S: '300',
    SPOOL_MAX_BYTES: '10GiB',
    DRAIN_TIMEOUT_S: '30',
    CLOSE_GRACE_MS: '2000',
    AUTH_MODE: 'none',
    AUTH_SECRET: '',
    ADMIN_TOKEN: '',
    SETTINGS_FILE: '',
    SETTINGS_URL: '',
    LOG_LEVEL: 'info',
    MAX_MESSAGE_BYTES: '16MiB',
    MAX_JSON_BYTES: '1MiB',
    SEND_BUFFER_BYTES: '1MiB',
    SESSION_BUFFER_BYTES: '20MiB',
    PROCESS_CONVERSATION_URL: '',
    PROCESS_CONCURRENCY: '16',
    PROCESS_QUEUE_MAX: '10000',
    SPEAKER_SAMPLE_MIN_AGE_S: '120',
    SETTINGS_REDIS_URL: '',
    WEBHOOK_ALLOW_PRIVATE: '0',
  };
}

/** Builds the config from defaults ← env ← overrides; every value is validated with a clear error. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<Record<keyof Config, string>> = {}): Config {
  const raw = defaults();
  for (const k of Object.keys(raw) as (keyof Config)[]) {
    const v = overrides[k] ?? env[k];
    if (v !== undefined && v !== '') raw[k] = v;
  }
  const cfg: Config = {
    PORT: int('PORT', raw.PORT, 0, 65535),
    HOST: raw.HOST,
    SHARDS: int('SHARDS', raw.SHARDS, 1, 256),
    SLOTS_PER_SHARD: int('SLOTS_PER_SHARD', raw.SLOTS_PER_SHARD, 1, 1 << 20),
    RING_BYTES: int('RING_BYTES', raw.RING_BYTES, 1024, 1 << 26),
    SPOOL_DIR: raw.SPOOL_DIR,
    STORE: oneOf('STORE', raw.STORE, ['local', 'gcs'] as const),
    STORE_DIR: raw.STORE_DIR,
    GCS_BUCKET: raw.GCS_BUCKET,
    GCS_API_ENDPOINT: raw.GCS_API_ENDPOINT,
    CHUNK_SECONDS: int('CHUNK_SECONDS', raw.CHUNK_SECONDS, 1, 86400),
    FSYNC_MS: int('FSYNC_MS', raw.FSYNC_MS, 1, 60000),
    RECEIVE_TIMEOUT_S: int('RECEIVE_TIMEOUT_S', raw.RECEIVE_TIMEOUT_S, 1, 86400),
    SPOOL_MAX_BYTES: parseBytes(raw.SPOOL_MAX_BYTES),
    DRAIN_TIMEOUT_S: int('DRAIN_TIMEOUT_S', raw.DRAIN_TIMEOUT_S, 0, 3600),
    CLOSE_GRACE_MS: int('CLOSE_GRACE_MS', raw.CLOSE_GRACE_MS, 0, 60000),
    AUTH_MODE: oneOf('AUTH_MODE', raw.AUTH_MODE, ['none', 'jwt', 'static'] as const),
    AUTH_SECRET: raw.AUTH_SECRET,
    ADMIN_TOKEN: raw.ADMIN_TOKEN,
    SETTINGS_FILE: raw.SETTINGS_FILE,
    SETTINGS_URL: raw.SETTINGS_URL,
    LOG_LEVEL: raw.LOG_LEVEL,
    MAX_MESSAGE_BYTES: sizeIn('MAX_MESSAGE_BYTES', raw.MAX_MESSAGE_BYTES, 1024, 1 << 30),
    MAX_JSON_BYTES: sizeIn('MAX_JSON_BYTES', raw.MAX_JSON_BYTES, 1024, 64 << 20),
    SEND_BUFFER_BYTES: sizeIn('SEND_BUFFER_BYTES', raw.SEND_BUFFER_BYTES, 4096, 1 << 30),
    SESSION_BUFFER_BYTES: sizeIn('SESSION_BUFFER_BYTES', raw.SESSION_BUFFER_BYTES, 64 << 10, 1 << 30),
    PROCESS_CONVERSATION_URL: url('PROCESS_CONVERSATION_URL', raw.PROCESS_CONVERSATION_URL),
    PROCESS_CONCURRENCY: int('PROCESS_CONCURRENCY', raw.PROCESS_CONCURRENCY, 1, 1024),
    PROCESS_QUEUE_MAX: int('PROCESS_QUEUE_MAX', raw.PROCESS_QUEUE_MAX, 1, 1_000_000),
    SPEAKER_SAMPLE_MIN_AGE_S: int('SPEAKER_SAMPLE_MIN_AGE_S', raw.SPEAKER_SAMPLE_MIN_AGE_S, 0, 86400),
    SETTINGS_REDIS_URL: url('SETTINGS_REDIS_URL', raw.SETTINGS_REDIS_URL, ['redis:', 'rediss:']),
    WEBHOOK_ALLOW_PRIVATE: oneOf('WEBHOOK_ALLOW_PRIVATE', raw.WEBHOOK_ALLOW_PRIVATE, ['0', '1'] as const) === '1',
  };
  if ((cfg.RING_BYTES & (cfg.RING_BYTES - 1)) !== 0) throw new ConfigError(`RING_BYTES=${cfg.RING_BYTES}: must be a power of two`);
  if (cfg.AUTH_MODE !== 'none' && !cfg.AUTH_SECRET) throw new ConfigError(`AUTH_MODE=${cfg.AUTH_MODE} needs AUTH_SECRET`);
  if (cfg.STORE === 'gcs' && !cfg.GCS_BUCKET) throw new ConfigError('STORE=gcs needs GCS_BUCKET');
  return cfg;
}
