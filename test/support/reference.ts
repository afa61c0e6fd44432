// The reference codec tools: Debian's liblc3-tools (on PATH) and the exact-version build of the
// same Debian source (scripts/build-native.sh). Both are installed by `npm test`'s pretest step.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const nativeDir = fileURLToPath(new URL('../../wasm/.build/native/', import.meta.url));

export type Tool = 'elc3' | 'dlc3';

/** Path of a tool: 'debian' = /usr/bin (liblc3-tools), 'source' = same source as our wasm. */
export function tool(name: Tool, flavour: 'debian' | 'source'): string {
  return flavour === 'debian' ? `/usr/bin/${name}` : `${nativeDir}${name}`;
}

export function run(name: Tool, flavour: 'debian' | 'source', args: string[]): void {
  execFileSync(tool(name, flavour), args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export function debianVersion(): string {
  return execFileSync('dpkg-query', ['-W', '-f=${Version}', 'liblc3-tools']).toString().trim();
}

/** Largest |a-b| and how many samples differ by more than 1 LSB. */
export function pcmDiff(a: Int16Array, b: Int16Array): { max: number; over1: number } {
  let max = 0;
  let over1 = 0;
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = Math.abs((a[i] ?? 0) - (b[i] ?? 0));
    if (d > max) max = d;
    if (d > 1) over1++;
  }
  return { max, over1 };
}
