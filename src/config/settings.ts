// THE settings table: every setting of the service, once. The environment variable is the key;
// `lc3-pusher serve --help`, the `--kebab-case` flags, validation, `lc3-pusher config`, the README
// "Configuration" table (scripts/config-table.ts) and the table-driven tests all read it.
// Adding a setting is one entry here (plus, when it depends on another, one line in CHECKS).
import { availableParallelism } from 'node:os';
import { bool, int, oneOf, size, text, url, type Kind } from './kinds.js';

export interface Setting<K extends Kind = Kind> {
  readonly kind: K;
  /** Raw default ('' = unset), or a function for defaults that depend on the machine. */
  readonly default: string | (() => string);
  /** How docs show a computed default (the README must not depend on the machine that made it). */
  readonly defaultDoc?: string;
  /** One line: what it does. */
  readonly help: string;
  /** Never printed (`config` masks it; errors do not echo it). */
  readonly secret?: boolean;
}

const MiB = 2 ** 20;

export const SETTINGS = {
  PORT: { kind: int(0, 65535), default: '8080', help: 'listen port (0: any free port)' },
  HOST: { kind: text(/^[A-Za-z0-9.:%_-]+$/, 'a host name or IP address'), default: '0.0.0.0', help: 'listen address' },
  SHARDS: {
    kind: int(1, 256),
    default: () => String(availableParallelism()),
    defaultDoc: 'available parallelism',
    help: 'shard worker threads',
  },
  SLOTS_PER_SHARD: { kind: int(1, 1 << 20), default: '4096', help: 'concurrent sessions per shard (ring slots)' },
  RING_BYTES: { kind: int(1024, 1 << 26, { powerOfTwo: true }), default: '16384', help: 'bytes per session ring; bounds one ring record, not a message' },
  MAX_MESSAGE_BYTES: { kind: size(1024, 1024 * MiB), default: '16MiB', help: 'largest WebSocket message (1009 past it)' },
  MAX_JSON_BYTES: { kind: size(1024, 64 * MiB), default: '1MiB', help: 'largest 102/103/104/105 message (1009 past it)' },
  SEND_BUFFER_BYTES: { kind: size(4096, 1024 * MiB), default: '1MiB', help: 'unread replies (201, 202) past this close the session with 1008' },
  RECEIVE_TIMEOUT_S: { kind: int(1, 86400), default: '300', help: 'idle sessions are closed with 1001 after this many seconds' },
  MAX_MESSAGES_PER_S: { kind: int(0, 10_000_000), default: '10000', help: 'messages per second per connection, 10 s of it saved up (1008 past it; 0: off)' },
  MAX_AUDIO_S_PER_S: { kind: int(0, 1_000_000), default: '200', help: 'seconds of audio per second per connection, 10 s of it plus one largest message saved up (1008 past it; 0: off)' },
  MAX_SESSIONS_PER_UID: { kind: int(1, 1_000_000), default: '64', help: 'concurrent sessions per uid (HTTP 429 before the upgrade past it)' },
  MAX_CONNECTIONS: { kind: int(1, 10_000_000), default: '16384', help: 'open sessions + handshakes per process (HTTP 503 past it; TCP past it + 1024 closed at accept)' },
  HANDSHAKE_TIMEOUT_MS: { kind: int(100, 600_000), default: '10000', help: 'a request line and headers must arrive within this (HTTP 408), and the upgrade finish' },
  MAX_HEADER_BYTES: { kind: size(1024, 1024 * 1024), default: '16KiB', help: 'largest request line + headers (HTTP 431 past it)' },
  MAX_CLOCK_SKEW_S: { kind: int(1, 10 * 365 * 86400), default: '86400', help: '101 timestamps further than this from the server clock are replaced by the arrival time' },
  CLOSE_GRACE_MS: { kind: int(0, 60000), default: '2000', help: "how long a closing session's tasks get to stop (ms)" },
  DRAIN_TIMEOUT_S: { kind: int(0, 3600), default: '30', help: 'SIGTERM drain deadline (seconds)' },
  AUTH_MODE: { kind: oneOf(['none', 'jwt', 'static']), default: 'none', help: 'handshake auth: jwt (HS256, sub = uid) or static service token' },
  AUTH_SECRET: { kind: text(), default: '', help: 'HS256 key (jwt) or the service token (static)', secret: true },
  ADMIN_TOKEN: { kind: text(), default: '', help: 'bearer token for /debug/* (unset: disabled)', secret: true },
  SPOOL_DIR: { kind: text(), default: './data/spool', help: 'durable spool directory (journals, chunks, jobs)' },
  SPOOL_MAX_BYTES: { kind: size(4096, 2 ** 50), default: '10GiB', help: 'spool size at which sessions are paused and /readyz fails' },
  FSYNC_MS: { kind: int(1, 60000), default: '200', help: 'group-commit interval of the spool (ms)' },
  CHUNK_SECONDS: { kind: int(1, 86400), default: '60', help: 'seconds of audio per stored chunk' },
  STORE: { kind: oneOf(['local', 'gcs']), default: 'local', help: 'object store: a local directory or Google Cloud Storage' },
  STORE_DIR: { kind: text(), default: './data/store', help: 'directory of the local store' },
  GCS_BUCKET: {
    kind: text(/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/, 'a bucket name (3-222 of a-z 0-9 . _ -)'),
    default: '',
    help: 'bucket of the gcs store',
  },
  GCS_API_ENDPOINT: { kind: url(), default: '', help: 'GCS API endpoint (an emulator); unset: Google' },
  SETTINGS_FILE: { kind: text(), default: '', help: 'per-user settings JSON file (DESIGN §3.5)' },
  SETTINGS_URL: { kind: url(), default: '', help: 'per-user settings over HTTP: GET {url}?uid=U' },
  SETTINGS_REDIS_URL: { kind: url(['redis', 'rediss']), default: '', help: "per-user settings from the Omi backend's Redis keys" },
  SESSION_BUFFER_BYTES: { kind: size(64 * 1024, 1024 * MiB), default: '20MiB', help: "one budget over a session's webhook and app queues" },
  QUEUE_MAX_BYTES: { kind: size(1 * MiB, 64 * 1024 * MiB), default: '256MiB', help: "every session's webhook and app queues together (split over the shards); past it a session drops its own oldest" },
  WEBHOOK_ALLOW_PRIVATE: { kind: bool(), default: '0', help: '1 lets webhooks reach loopback/private/link-local addresses' },
  PROCESS_CONVERSATION_URL: { kind: url(), default: '', help: 'where 104 jobs are POSTed (unset: a 104 is answered with an error)' },
  PROCESS_CONCURRENCY: { kind: int(1, 1024), default: '16', help: 'conversation jobs run at once' },
  PROCESS_QUEUE_MAX: { kind: int(1, 1_000_000), default: '10000', help: 'pending 104/105 jobs before a 104 is refused with an error' },
  SPEAKER_SAMPLE_MIN_AGE_S: { kind: int(0, 86400), default: '120', help: 'a 105 is served once its audio is this old (and uploaded)' },
  LOG_LEVEL: { kind: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']), default: 'info', help: 'least level of the JSON logs' },
} as const satisfies Record<string, Setting>;

export type SettingName = keyof typeof SETTINGS;

type ValueOf<K> = K extends { parse(raw: string): infer T } ? T : never;

/** The validated configuration: one typed field per setting. */
export type Config = { [N in SettingName]: ValueOf<(typeof SETTINGS)[N]['kind']> };

export const SETTING_NAMES = Object.keys(SETTINGS) as SettingName[];

/** `SPOOL_MAX_BYTES` → `--spool-max-bytes`. */
export function flagOf(name: string): string {
  return `--${name.toLowerCase().replace(/_/g, '-')}`;
}

export function settingOf(name: SettingName): Setting {
  return SETTINGS[name];
}

export function defaultOf(name: SettingName): string {
  const d = settingOf(name).default;
  return typeof d === 'function' ? d() : d;
}

/** The default as docs show it ("unset" for ''). */
export function defaultDocOf(name: SettingName): string {
  const s = settingOf(name);
  if (s.defaultDoc) return s.defaultDoc;
  const d = defaultOf(name);
  return d === '' ? 'unset' : d;
}

/**
 * Rules between settings, checked after each setting parsed: the settings a rule names (first
 * one first) are what its error points at.
 */
export const CHECKS: readonly { names: readonly SettingName[]; problem: (c: Config) => string | undefined }[] = [
  { names: ['AUTH_SECRET', 'AUTH_MODE'], problem: (c) => (c.AUTH_MODE !== 'none' && !c.AUTH_SECRET ? `AUTH_MODE=${c.AUTH_MODE} needs AUTH_SECRET` : undefined) },
  { names: ['GCS_BUCKET', 'STORE'], problem: (c) => (c.STORE === 'gcs' && !c.GCS_BUCKET ? 'STORE=gcs needs GCS_BUCKET' : undefined) },
  {
    names: ['SETTINGS_URL', 'SETTINGS_REDIS_URL'],
    problem: (c) => (c.SETTINGS_URL && c.SETTINGS_REDIS_URL ? 'SETTINGS_URL and SETTINGS_REDIS_URL exclude each other: per-user settings come from one source' : undefined),
  },
];
