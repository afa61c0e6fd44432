// The job queue (src/jobs) reports through one `log(msg, fields)`; this gives its lines levels
// that mean something, by message, and rate-limits the one that repeats during an outage of the
// receiver (a retry per job per backoff step).
import type { JobLog } from '../jobs/types.js';
import { LimitedLog } from './limited.js';
import type { Logger } from './logger.js';

type Level = 'info' | 'warn' | 'error';

/** First match wins; anything else is a warning. */
const LEVELS: [RegExp, Level][] = [
  [/^jobs resumed|interrupted by shutdown/, 'info'],
  [/^job failed|^job journal: (commit|rewrite) failed|done record not journaled/, 'error'],
];

export function jobLevel(msg: string): Level {
  for (const [re, level] of LEVELS) if (re.test(msg)) return level;
  return 'warn';
}

export function jobLog(log: Logger, intervalMs?: number, now?: () => number): JobLog {
  const limited = new LimitedLog(log, intervalMs, now);
  return (msg, fields = {}) => {
    if (msg === 'job retry scheduled') {
      const f = fields as { kind?: unknown; error?: unknown };
      return limited.warn(`job retry ${String(f.kind)} ${String(f.error).replace(/\d+/g, 'N')}`, fields, msg);
    }
    log[jobLevel(msg)](fields, msg);
  };
}
