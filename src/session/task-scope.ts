// Every asynchronous thing a session starts is spawned through its TaskScope (DESIGN §3.2):
// one AbortController and the set of live tasks and timers. Closing the scope aborts them all,
// waits for them with a grace period, and reports anything that refused to stop. Nothing a
// session starts can outlive it — the bug of the service this one replaces.

/** Live tasks + timers over every scope of this thread (exported as pusher_session_tasks_active). */
export const scopeCounters = { tasks: 0, timers: 0, scopes: 0 };

export class TaskScope {
  private readonly controller = new AbortController();
  private readonly tasks = new Set<Promise<void>>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor() {
    scopeCounters.scopes++;
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get active(): number {
    return this.tasks.size + this.timers.size;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Runs `fn` as a task of this scope; its rejection is reported to `onError`, never unhandled. */
  spawn(fn: (signal: AbortSignal) => Promise<void>, onError: (err: unknown) => void = () => {}): void {
    if (this.closed) throw new Error('spawn on a closed TaskScope');
    const signal = this.controller.signal;
    const p: Promise<void> = Promise.resolve()
      .then(() => fn(signal))
      .catch((err: unknown) => {
        if (!signal.aborted) onError(err);
      })
      .finally(() => {
        this.tasks.delete(p);
        scopeCounters.tasks--;
      });
    this.tasks.add(p);
    scopeCounters.tasks++;
  }

  /** A timer owned by the scope (cleared on close). */
  setTimeout(ms: number, fn: () => void): NodeJS.Timeout {
    if (this.closed) throw new Error('timer on a closed TaskScope');
    const t = setTimeout(() => {
      this.timers.delete(t);
      scopeCounters.timers--;
      fn();
    }, ms);
    this.timers.add(t);
    scopeCounters.timers++;
    return t;
  }

  clearTimeout(t: NodeJS.Timeout): void {
    if (this.timers.delete(t)) {
      clearTimeout(t);
      scopeCounters.timers--;
    }
  }

  /**
   * Aborts every task, clears every timer, and waits up to `graceMs` for the tasks to settle.
   * Returns how many tasks were still running at the deadline (they are abandoned, and counted
   * as leaks by the caller: they hold no session resources once aborted).
   */
  async close(graceMs: number): Promise<number> {
    if (this.closed) return 0;
    this.closed = true;
    scopeCounters.scopes--;
    this.controller.abort(new Error('session closed'));
    for (const t of this.timers) clearTimeout(t);
    scopeCounters.timers -= this.timers.size;
    this.timers.clear();
    if (this.tasks.size === 0) return 0;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), graceMs)));
    const settled = await Promise.race([Promise.allSettled([...this.tasks]).then(() => 'done' as const), deadline]);
    clearTimeout(timer);
    return settled === 'done' ? 0 : this.tasks.size;
  }
}
