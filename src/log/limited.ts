// Repeated warnings through the RateLimiter: a condition that recurs (a full disk retried ten
// times a second per shard, a store outage, a dead settings service) is logged the first time,
// then at most once per interval with `suppressed`, the count of lines held back meanwhile.
import { RateLimiter } from '../util/rate-limit.js';
import type { Logger } from './logger.js';

/** Distinct keys kept: keys are built from error codes and the like, but must not grow without end. */
const MAX_KEYS = 1024;
const OVERFLOW_KEY = '(other)';

export class LimitedLog {
  readonly #log: Logger;
  readonly #limiter: RateLimiter;
  readonly #keys = new Set<string>();

  constructor(log: Logger, intervalMs = 60_000, now: () => number = Date.now) {
    this.#log = log;
    this.#limiter = new RateLimiter(intervalMs, now);
  }

  warn(key: string, fields: object, msg: string): void {
    this.#write('warn', key, fields, msg);
  }

  error(key: string, fields: object, msg: string): void {
    this.#write('error', key, fields, msg);
  }

  /** The condition cleared: its next occurrence is logged at once. */
  clear(key: string): void {
    this.#limiter.clear(key);
  }

  #write(level: 'warn' | 'error', key: string, fields: object, msg: string): void {
    // Cheap when the level is off: nothing is counted or built.
    if (!this.#log.isLevelEnabled(level)) return;
    if (!this.#keys.has(key)) {
      if (this.#keys.size >= MAX_KEYS) key = OVERFLOW_KEY;
      else this.#keys.add(key);
    }
    const d = this.#limiter.check(key);
    if (!d.log) return;
    this.#log[level](d.suppressed > 0 ? { ...fields, suppressed: d.suppressed } : fields, msg);
  }
}

/**
 * An error's code (ENOSPC, ECONNREFUSED…) or, without one, its message without `names` (e.g. the
 * object it was about): a key for LimitedLog — the kind of failure, not each instance of it.
 */
export function errorKey(err: unknown, ...names: string[]): string {
  const e = err as { code?: unknown; message?: unknown };
  if (typeof e?.code === 'string' && e.code) return e.code;
  let msg = String(e?.message ?? err);
  for (const n of names) if (n) msg = msg.replaceAll(n, '…');
  // Digits vary (sizes, ids, ports); the kind of failure does not.
  return msg.replace(/\d+/g, 'N').slice(0, 120);
}
