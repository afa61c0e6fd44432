// Which malloc this process runs on, read from what the kernel mapped rather than from what the
// launcher meant to do: a missing library or a stripped LD_PRELOAD must show as "system".
import { readFileSync } from 'node:fs';

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
