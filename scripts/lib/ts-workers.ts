// Scripts that start the service in-process from source (test/support/service.ts) need worker
// threads that load .ts: the shards and the uploader are workers/*.ts. Under Node 20, tsx's
// loader does not reach worker threads (a worker fails with "Unknown file extension .ts"), so
// such a script, run as `npx tsx scripts/X.ts`, runs itself again under the loader the test
// suite uses (tap's @tapjs/typescript, transpile only), whose hooks every worker gets through
// execArgv. From the compiled build (node dist/scripts/X.js) nothing needs doing.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { repoRoot } from './service.js';

const TAP_TS = join('node_modules', '@tapjs', 'typescript', 'dist', 'esm', 'import.mjs');

/**
 * Call first thing with the script's `import.meta.url`. Returns when this process can start
 * worker threads from .ts files (or runs compiled); otherwise runs the script again as a child
 * under the tap loader, with the same arguments and stdio, and exits with its exit code.
 */
export function ensureTsWorkers(scriptUrl: string): void {
  if (!scriptUrl.endsWith('.ts')) return; // compiled: workers are .js
  if (process.execArgv.some((a) => a.includes('@tapjs/typescript'))) return;
  const root = repoRoot(fileURLToPath(scriptUrl));
  const loader = join(root, TAP_TS);
  if (!existsSync(loader)) {
    console.error(`cannot run the service's .ts workers: ${loader} is missing (npm ci), or build and run node dist/scripts/…js`);
    process.exit(2);
  }
  const r = spawnSync(process.execPath, [`--import=${pathToFileURL(loader).href}`, '--enable-source-maps', fileURLToPath(scriptUrl), ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' },
  });
  if (r.error) throw r.error;
  process.exit(r.status ?? 1);
}
