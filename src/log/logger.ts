// The one logger: pino, JSON lines on stdout, a child per thread (`thread: "main"`, `"shard-1"`,
// `"uploader"`), the level from LOG_LEVEL in every thread.
//
// Each worker thread has its own pino writing synchronously to fd 1, rather than posting records
// to the main thread to be logged there:
// - under a crash: a synchronous write is in the kernel before the next statement runs, so the
//   last lines of a thread that dies are not lost with its buffers (a worker gets no exit hook to
//   flush an async stream), and they do not wait on — or get lost with — a busy main thread;
// - cost: the level is checked in the thread that logs (a filtered call costs nothing, no message
//   is posted), and a line is one write(2) of a few hundred bytes — lines are rare (never one per
//   frame; repeated warnings are rate-limited), so blocking on it is cheaper than a postMessage;
// - ordering: each thread's lines are in its own order; across threads lines are in the order
//   they were written and every line has its time. A write of a line ≤ PIPE_BUF (4 KiB) to a pipe
//   is atomic, and appends to a file are too: lines of different threads never interleave.
// The main thread writes asynchronously (it serves every socket; a burst of session lines must not
// block it on a slow log pipe); pino flushes that stream synchronously on process exit, so the
// `fatal` line before a non-zero exit is not lost.
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/** LOG_LEVEL's accepted values, most severe first. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** What a worker thread needs to build its logger (part of its workerData: plain, cloneable). */
export interface LogSettings {
  /** LOG_LEVEL. */
  level: string;
  /** Where lines go: a file (appended) or a file descriptor; default 1 (stdout). Tests use a file. */
  dest?: string | number | undefined;
}

/** LOG_LEVEL checked: an unknown level is a clear error naming the accepted ones. */
export function checkLogLevel(level: string): LogLevel {
  if ((LOG_LEVELS as readonly string[]).includes(level)) return level as LogLevel;
  throw new Error(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got "${level}")`);
}

export interface LoggerOptions extends LogSettings {
  /** The thread's name, on every line. */
  thread: string;
  /** Synchronous writes (worker threads; see above). Default: asynchronous. */
  sync?: boolean;
  /** A stream to write to instead of `dest` (tests). */
  stream?: DestinationStream;
}

/** A thread's logger: the root pino of this thread and its child with the thread's name. */
export function createLogger(o: LoggerOptions): Logger {
  const level = checkLogLevel(o.level);
  const stream = o.stream ?? pino.destination({ dest: o.dest ?? 1, sync: o.sync === true, minLength: 0 });
  const root = pino(
    {
      level,
      // "level":"warn" reads better in a log viewer than 40; ISO time answers "what happened at 10:42".
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    stream,
  );
  return root.child({ thread: o.thread });
}

/** The logger of a worker thread, from the LogSettings in its workerData (synchronous writes). */
export function workerLogger(s: LogSettings, thread: string): Logger {
  return createLogger({ ...s, thread, sync: true });
}

/**
 * A worker thread's uncaught exception, with its stack, in the thread's own log before it dies
 * (the main thread sees only the message, in its 'error' event). Not in the main thread: there
 * serveFromEnv logs it as `fatal`.
 */
export function logCrashes(log: Logger, onMain: boolean): void {
  if (onMain) return;
  process.on('uncaughtExceptionMonitor', (err, origin) => log.error({ err, origin }, 'uncaught exception: thread crashed'));
}
