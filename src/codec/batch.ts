// Batch transcode of a directory tree of .lc3 files onto a piscina pool (one thread per core):
// the jobs are stateless and CPU-bound, exactly what piscina is for.
import { readdir } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, relative } from 'node:path';
import { Piscina } from 'piscina';
import { workerUrl } from '../util/worker-url.js';
import type { TranscodeResult } from './transcode-file.js';

export interface BatchProgress {
  done: number;
  total: number;
  failed: number;
}

export interface BatchResult {
  ok: TranscodeResult[];
  failed: { input: string; error: string }[];
}

async function* walk(dir: string): AsyncGenerator<string> {
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* walk(p);
    else if (e.isFile() && e.name.endsWith('.lc3')) yield p;
  }
}

export async function listLc3Files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const f of walk(dir)) out.push(f);
  return out;
}

export async function transcodeDir(
  inDir: string,
  outDir: string,
  opts: { threads?: number; onProgress?: (p: BatchProgress) => void } = {},
): Promise<BatchResult> {
  const files = await listLc3Files(inDir);
  const threads = Math.max(1, opts.threads ?? availableParallelism());
  const pool = new Piscina({ filename: workerUrl('transcode-job').href, minThreads: 1, maxThreads: threads });
  const result: BatchResult = { ok: [], failed: [] };
  const progress: BatchProgress = { done: 0, total: files.length, failed: 0 };
  opts.onProgress?.(progress);
  try {
    await Promise.all(
      files.map(async (input) => {
        const output = join(outDir, relative(inDir, input)).replace(/\.lc3$/, '.wav');
        try {
          result.ok.push(await pool.run({ input, output }));
        } catch (err) {
          result.failed.push({ input, error: (err as Error).message });
          progress.failed++;
        }
        progress.done++;
        opts.onProgress?.(progress);
      }),
    );
  } finally {
    await pool.destroy();
  }
  return result;
}
