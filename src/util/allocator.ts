// Which malloc this process runs on, read from what the kernel mapped rather than from what the
// launcher meant to do: a missing library or a stripped LD_PRELOAD must show as "system".
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { machine } from 'node:os';

export type Allocator = 'jemalloc' | 'system';

let cached: Allocator | undefined;

/** 'jemalloc' when libjemalloc is mapped into this process, else 'system' (glibc malloc). */
export function allocatorInUse(): Allocator {
  if (cached) return cached;
  let maps = '';
  try {
    maps = readFileSync('/proc/self/maps', 'utf8');
  } catch {
    /* c8 ignore next */ // not Linux: no LD_PRELOAD launcher either
  }
  cached = /\/libjemalloc\.so/.test(maps) ? 'jemalloc' : 'system';
  return cached;
}

/**
 * Where bin/lc3-pusher finds libjemalloc.so.2 — the same search (LC3_PUSHER_JEMALLOC, Debian's
 * multiarch path, the loader's cache) for tools that start the service without the launcher
 * (the chaos harness sets LD_PRELOAD itself). test/launcher-allocator.test.ts keeps both in step.
 */
export function jemallocPath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.LC3_PUSHER_JEMALLOC) return existsSync(env.LC3_PUSHER_JEMALLOC) ? env.LC3_PUSHER_JEMALLOC : undefined;
  const triplet = `/usr/lib/${machine()}-linux-gnu/libjemalloc.so.2`;
  if (existsSync(triplet)) return triplet;
  /* c8 ignore start */ // Debian has it at the multiarch path; other layouts only
  for (const ldconfig of ['ldconfig', '/sbin/ldconfig', '/usr/sbin/ldconfig']) {
    try {
      const out = execFileSync(ldconfig, ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      const lib = /^\s*libjemalloc\.so\.2 .*=> (.+)$/m.exec(out)?.[1];
      if (lib && existsSync(lib)) return lib;
    } catch {
      // not there: the next one
    }
  }
  return undefined;
  /* c8 ignore stop */
}

/**
 * jemalloc settings bin/lc3-pusher puts in front of the caller's MALLOC_CONF (later entries win, so
 * the caller can still turn them off). Background threads purge freed pages after dirty_decay_ms
 * (10 s) whether or not the arena's own thread allocates again; without them a quiet thread keeps
 * its freed memory, and after the clients leave every thread is quiet (the launcher says more).
 */
export const JEMALLOC_DEFAULT_CONF = 'background_thread:true';

/** MALLOC_CONF as bin/lc3-pusher sets it on jemalloc: its defaults, then the caller's own. */
export function jemallocConf(callers: string | undefined): string {
  return callers ? `${JEMALLOC_DEFAULT_CONF},${callers}` : JEMALLOC_DEFAULT_CONF;
}

/**
 * The environment that puts a `node` process on `choice` the way bin/lc3-pusher does, for tools
 * that start node themselves (the chaos harness passes node flags, so it cannot go through the
 * launcher). Unset choice: what the launcher does by default, jemalloc when installed. Asking for
 * jemalloc without the library is an error, as it is for the launcher.
 */
export function allocatorEnv(choice: Allocator | undefined, env: NodeJS.ProcessEnv = process.env): { allocator: Allocator; env: Record<string, string> } {
  if (choice !== undefined && choice !== 'jemalloc' && choice !== 'system') throw new Error(`allocator "${String(choice)}": expected jemalloc or system`);
  if (choice === 'system') return { allocator: 'system', env: { LC3_PUSHER_ALLOCATOR: 'system' } };
  const lib = jemallocPath(env);
  if (lib) return { allocator: 'jemalloc', env: { LD_PRELOAD: lib, MALLOC_CONF: jemallocConf(env.MALLOC_CONF), LC3_PUSHER_ALLOCATOR: 'jemalloc' } };
  if (choice === 'jemalloc') throw new Error('allocator jemalloc: libjemalloc.so.2 not found (apt-get install -y libjemalloc2)');
  return { allocator: 'system', env: { LC3_PUSHER_ALLOCATOR: 'system' } };
}
