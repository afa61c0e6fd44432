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
  };
  if ((cfg.RING_BYTES & (cfg.RING_BYTES - 1)) !== 0) throw new ConfigError(`RING_BYTES=${cfg.RING_BYTES}: must be a power of two`);
  if (cfg.AUTH_MODE !== 'none' && !cfg.AUTH_SECRET) throw new ConfigError(`AUTH_MODE=${cfg.AUTH_MODE} needs AUTH_SECRET`);
  if (cfg.STORE === 'gcs' && !cfg.GCS_BUCKET) throw new ConfigError('STORE=gcs needs GCS_BUCKET');
  return cfg;
}
