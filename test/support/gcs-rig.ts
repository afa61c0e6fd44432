// What both GcsStore test files need: the fake GCS on loopback (faults cleared after each test),
// the real client pointed at it, source files to upload, and a helper expecting a StoreError.
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GcsStore, type GcsStoreOptions } from '../../src/store/gcs.js';
import { StoreError, type PutMeta } from '../../src/store/types.js';
import { FakeGcs, type RequestInfo } from './fake-gcs.js';

export const BUCKET = 'test-bucket';

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

export const isChunk = (r: RequestInfo) => r.kind === 'upload-put';

export async function failure(p: Promise<unknown>): Promise<StoreError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!(e instanceof StoreError)) throw new Error(`expected a StoreError rejection, got ${String(e)}`);
  return e;
}

export interface GcsRig {
  fake: FakeGcs;
  /** Where source files are written. */
  dir: string;
  store(opts?: Partial<GcsStoreOptions>): GcsStore;
  source(data: Buffer, metadata?: Record<string, string>): { path: string; meta: PutMeta; data: Buffer };
  small(): { path: string; meta: PutMeta; data: Buffer };
  /** Resumable: 256 KiB + 256 KiB + the rest. */
  large(): { path: string; meta: PutMeta; data: Buffer };
}

export async function gcsRig(t: { teardown(fn: () => unknown): void; afterEach(fn: () => unknown): void; testdir(): string }): Promise<GcsRig> {
  const fake = await FakeGcs.start({ buckets: [BUCKET] });
  t.teardown(() => fake.stop());
  t.afterEach(() => fake.clearFaults());
  const dir = t.testdir();
  let seq = 0;
  const source: GcsRig['source'] = (data, metadata = { codec: 'lc3', sample_rate: '16000' }) => {
    const path = join(dir, `src-${++seq}`);
    writeFileSync(path, data);
    return { path, data, meta: { contentType: 'audio/lc3', metadata, size: data.length, sha256: sha256(data) } };
  };
  return {
    fake,
    dir,
    store: (opts = {}) => new GcsStore({ bucket: BUCKET, apiEndpoint: fake.url, timeoutMs: 1000, resumableThreshold: 300 << 10, chunkSize: 256 << 10, ...opts }),
    source,
    small: () => source(randomBytes(2000)),
    large: () => source(randomBytes(700_000)),
  };
}
