// Helpers shared by the spool tests.
import type { ShardSpool } from '../../src/spool/shard-spool.js';

/**
 * Awaits a session's close while running commits. Tests drive commits by hand (fsyncMs is huge),
 * and a seal ends only after a later commit (its SEALED record), so nothing else would end it.
 */
export async function closedWithCommits(sp: ShardSpool, closing: Promise<void>): Promise<void> {
  let done = false;
  void closing.then(() => (done = true));
  while (!done) await Promise.race([closing, sp.flush().then(() => new Promise((res) => setTimeout(res, 10)))]);
  await closing;
}
