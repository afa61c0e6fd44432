// pusher_build_info{version,node,liblc3,allocator} = 1: what is running, for dashboards and for
// the chaos harness, which reads the allocator from it (issue 13: glibc malloc vs jemalloc).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Gauge, type Registry } from 'prom-client';
import { allocatorInUse, type Allocator } from '../util/allocator.js';
import { wasmPath } from '../../wasm/lc3.js';

export interface BuildInfo {
  version: string;
  node: string;
  liblc3: string;
  allocator: Allocator;
}

/** This package's version, from the nearest package.json above this module (source tree or dist/). */
export function packageVersion(from = fileURLToPath(import.meta.url)): string {
  for (let dir = dirname(from), i = 0; i < 6; i++, dir = dirname(dir)) {
    const p = join(dir, 'package.json');
    if (!existsSync(p)) continue;
    // The nearest package.json is the package this module belongs to: ours, or not us.
    const pkg = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
    return (pkg.name === 'lc3-pusher' && pkg.version) || 'unknown';
  }
  return 'unknown';
}

/**
 * The Debian liblc3 source version lc3.wasm was compiled from: wasm/build.sh records it in
 * .build/version beside the wasm it builds. 'unknown' when the wasm came without it.
 */
export function liblc3Version(wasm?: string): string {
  try {
    const v = readFileSync(join(dirname(wasm ?? wasmPath()), '.build', 'version'), 'utf8').trim();
    return /^[0-9][0-9A-Za-z.+~-]*$/.test(v) ? v : 'unknown';
  } catch {
    return 'unknown';
  }
}

export function buildInfo(): BuildInfo {
  return { version: packageVersion(), node: process.version, liblc3: liblc3Version(), allocator: allocatorInUse() };
}

/** Registers the gauge, set once: nothing in it changes while the process runs. */
export function addBuildInfo(registry: Registry, info: BuildInfo = buildInfo()): BuildInfo {
  const g = new Gauge({
    name: 'pusher_build_info',
    help: 'Always 1; the labels say what runs: package version, Node.js, the liblc3 version of lc3.wasm, the malloc in use (jemalloc or system)',
    labelNames: ['version', 'node', 'liblc3', 'allocator'] as const,
    registers: [registry],
  });
  g.set({ ...info }, 1);
  return info;
}
