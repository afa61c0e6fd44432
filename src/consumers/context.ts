// What every consumer of a session shares: who it is for, where its tasks live (the session's
// TaskScope), the signal that stops them, the shard's HTTP pool, and a quiet error reporter.
import type { HttpClient } from '../http/client.js';
import type { TaskScope } from '../session/task-scope.js';

export interface ConsumerContext {
  uid: string;
  scope: TaskScope;
  /** Aborted when the scope closes or the consumers close, whichever comes first. */
  signal: AbortSignal;
  http: HttpClient;
  /** Reports a receiver turning bad (once per bad spell, not once per request). */
  report: FailureReporter;
}

/** `url` with `params` added (set, in order) to its query; an existing query is kept. */
export function withQuery(url: string, params: Record<string, string>): string {
  const u = new URL(url);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.toString();
}

/**
 * Resolves after `ms` (a timer of the scope) or as soon as `signal` aborts, whichever is first.
 * Either way nothing is left behind: the abort clears the timer, the timer removes the listener.
 */
export function sleep(scope: TaskScope, signal: AbortSignal, ms: number): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted || scope.isClosed) return resolve();
    const onAbort = (): void => {
      scope.clearTimeout(timer);
      resolve();
    };
    const timer = scope.setTimeout(ms, () => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * One log line when a receiver starts failing, and one when it recovers — a dead webhook must not
 * write a line per second per session.
 */
export class FailureReporter {
  private readonly failing = new Set<string>();

  constructor(private readonly onError: ((msg: string) => void) | undefined) {}

  ok(key: string): void {
    if (this.failing.delete(key)) this.onError?.(`${key}: recovered`);
  }

  fail(key: string, why: string): void {
    if (this.failing.has(key)) return;
    this.failing.add(key);
    this.onError?.(`${key}: ${why}`);
  }

  /** Plain error (a configuration problem), always reported. */
  error(msg: string): void {
    this.onError?.(msg);
  }
}

/** The failure of a POST as one short phrase. */
export function describe(res: { status: number } | undefined, err: unknown): string {
  if (res) return `HTTP ${res.status}`;
  const e = err as { message?: string; code?: string; cause?: { code?: string } };
  return e.cause?.code ?? e.code ?? e.message ?? String(err);
}
