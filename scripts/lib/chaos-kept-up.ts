// Did the service keep up with the load? A memory figure means something only then: on a
// saturated machine the shards fall behind sealing, open chunks and the spool climb from the
// warm-up on, and RSS climbs with that backlog whatever the allocator does (seen on a slower
// 2-core machine: the oldest open chunk 205 s old, 4,600 open chunks, RSS +40 MB/min, 0 frames
// lost). A chunk is open for CHUNK_SECONDS and then waits for its seal, so on a machine that
// keeps up the oldest open chunk stays near CHUNK_SECONDS; this check allows twice that.
import { defaultOf } from '../../src/config/settings.js';
import type { Check } from './chaos.js';

export interface KeptUpFigures {
  /** The oldest open (not yet sealed) chunk's age, max over the load phase's samples, s (NaN: no such metric). */
  maxOldestOpenS: number;
  /** Chunks waiting for their seal at the load's last sample. */
  sealBacklogAtEnd: number;
  /** The load generator's event-loop delay, p99, ms (it shares the machine). */
  generatorLoopP99Ms: number;
}

/** The service's CHUNK_SECONDS from the environment it was started with, else the setting's default. */
export function chunkSecondsOf(env: Readonly<Record<string, string>> | undefined): number {
  const v = Number(env?.CHUNK_SECONDS);
  return Number.isFinite(v) && v > 0 ? v : Number(defaultOf('CHUNK_SECONDS'));
}

export function keptUpCheck(f: KeptUpFigures, chunkSeconds: number): Check {
  if (!Number.isFinite(f.maxOldestOpenS)) return { name: 'kept-up', ok: true, skipped: true, detail: 'skipped: this build has no pusher_spool_oldest_open_chunk_seconds' };
  const bound = 2 * chunkSeconds;
  const seen = `oldest open chunk ${f.maxOldestOpenS.toFixed(0)} s at most (CHUNK_SECONDS ${chunkSeconds}; bound ${bound} s), seal backlog ${f.sealBacklogAtEnd} at the load's end, load generator loop p99 ${f.generatorLoopP99Ms.toFixed(0)} ms`;
  return f.maxOldestOpenS <= bound
    ? { name: 'kept-up', ok: true, detail: `the shards kept up with sealing: ${seen}` }
    : {
        name: 'kept-up',
        ok: false,
        detail:
          `the service fell behind the load (a saturated machine): ${seen}. The memory figures of this run measure a growing ` +
          'backlog, not the steady state: compare them only with runs that keep up (fewer streams, or more cores)',
      };
}
