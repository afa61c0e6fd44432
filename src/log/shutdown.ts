// SIGTERM/SIGINT for `lc3-pusher serve`: drain once, exit 0 when the drain is done, and say so in
// the log. A drain that fails, or overruns DRAIN_TIMEOUT_S by more than a grace (a hung disk or
// store), ends in a `fatal` line and exit 1: what was not uploaded stays in the spool for the next
// start, but an overrun means something is wrong, and a silent kill by the orchestrator would not
// say what.
import type { Logger } from './logger.js';

export interface ShutdownOptions {
  /** DRAIN_TIMEOUT_S: the drain's own deadline (the service stops its work by then). */
  drainTimeoutS: number;
  /** How far past the deadline the watchdog lets the last steps (stopping threads) run. */
  graceMs?: number;
  /** process.exit, by default (tests pass their own). */
  exit?: (code: number) => void;
}

/** Returns the signal handler: `stop('SIGTERM')`. */
export function shutdownHandler(svc: { stop(why?: string): Promise<void> }, log: Logger, o: ShutdownOptions): (signal: string) => void {
  const exit = o.exit ?? ((code: number) => process.exit(code));
  let stopping = false;
  return (signal) => {
    if (stopping) return log.info({ signal }, 'already draining');
    stopping = true;
    const t0 = Date.now();
    const watchdog = setTimeout(() => {
      log.fatal({ signal, drainTimeoutS: o.drainTimeoutS, ms: Date.now() - t0 }, 'drain overran DRAIN_TIMEOUT_S; exiting, what was not uploaded stays in the spool');
      exit(1);
    }, o.drainTimeoutS * 1000 + (o.graceMs ?? 2000));
    svc.stop(signal).then(
      () => {
        clearTimeout(watchdog);
        log.info({ signal, ms: Date.now() - t0 }, 'stopped');
        exit(0);
      },
      (err: Error) => {
        clearTimeout(watchdog);
        log.fatal({ err, signal }, 'drain failed');
        exit(1);
      },
    );
  };
}
