// Waits with deadlines, for the benchmarks: every wait says what it waited for, and none can hang
// a run (a hung benchmark is worse than a failed one: nobody learns what broke).

export const sleep = (ms: number): Promise<void> => new Promise<void>((r) => setTimeout(r, ms));

/** Rejects with "timed out after S s waiting for `what`" unless `p` settles within `ms`. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${fmtS(ms)} s waiting for ${what}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/**
 * Polls `fn` every `everyMs` until it returns true; rejects after `ms` with what it waited for and,
 * when `last` is given, the last value it saw.
 */
export async function until(fn: () => Promise<boolean> | boolean, ms: number, what: string, o: { everyMs?: number; last?: () => string } = {}): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() >= end) throw new Error(`timed out after ${fmtS(ms)} s waiting for ${what}${o.last ? ` (last seen: ${o.last()})` : ''}`);
    await sleep(o.everyMs ?? 200);
  }
}

/**
 * fetch() that gives up after `ms` (the request is aborted, not only abandoned). Its timeout says
 * what it fetched: AbortSignal.timeout's own error ("The operation was aborted due to timeout")
 * names no wait.
 */
export async function fetchWithin(url: string, ms: number, init: RequestInit = {}): Promise<Response> {
  try {
    return await fetch(url, { ...init, signal: AbortSignal.timeout(ms) });
  } catch (err) {
    if ((err as Error).name === 'TimeoutError') throw new Error(`${init.method ?? 'GET'} ${url}: no answer within ${ms} ms`);
    throw err;
  }
}

function fmtS(ms: number): string {
  return ms >= 10_000 ? (ms / 1000).toFixed(0) : (ms / 1000).toFixed(1);
}
