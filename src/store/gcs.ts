// GcsStore: Google Cloud Storage through the official client (@google-cloud/storage, major 7).
//
// Retries: the client's own are OFF (`retryOptions.autoRetry: false`). The uploader retries
// forever with its own backoff and must see every failure promptly; the client's retries would
// otherwise stack up to 3 attempts × (up to 64 s backoff) inside one putFile, and a resumable
// session retries chunk by chunk on its own timers. (Note: `retryOptions.maxRetries: 0` does NOT
// work in v7 — the Storage constructor treats 0 as "unset" and uses 3; `autoRetry: false` is the
// switch that every code path honours.)
//
// Time: every HTTP request carries `timeoutMs` (the Storage `timeout` option covers JSON API calls
// and simple uploads; resumable-upload requests go through gaxios, which takes no `timeout` from
// the Storage options, so a request interceptor adds it there). node-fetch's timeout runs from the
// start of a request to its response headers, so it also bounds sending the body of one request:
// resumable uploads are sent in `chunkSize` pieces so that each request stays small. On top of that
// every operation has a hard deadline (the client has had bugs where a promise never settles), after
// which the streams are destroyed and the call rejects with a retryable StoreError.
//
// Integrity: before uploading, the file is hashed (size, sha256, md5, crc32c); its size and sha256
// must be the caller's. The upload sends md5Hash and crc32c in the object resource (GCS itself
// rejects a body that does not match) and validates crc32c end to end (the client compares the
// hash of the bytes it streamed with the one GCS reports, and deletes the object on a mismatch);
// then the returned object resource must report our size, md5, crc32c and every custom metadata
// value (sha256 included). Any mismatch rejects.
//
// Auth: with `apiEndpoint` set to a non-Google host (an emulator, a test fake) the client sends no
// credentials and never asks the metadata server (JSON API: `customEndpoint` without
// `useAuthWithCustomEndpoint`; resumable uploads: plain gaxios for non-Google hosts). For an
// endpoint under googleapis.com (regional/private endpoints), auth stays on by default.

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { CRC32C, Storage, type Bucket, type FileMetadata, type StorageOptions } from '@google-cloud/storage';
import { compareNames, storedMetadata, validateObjectName, validatePrefix } from './names.js';
import { ObjectNotFoundError, StoreError, type ObjectStore, type PutMeta, type StoredObject } from './types.js';

export interface GcsStoreOptions {
  bucket: string;
  /** e.g. `http://127.0.0.1:4443` for an emulator; unset = the real service. */
  apiEndpoint?: string;
  projectId?: string;
  /** Service-account credentials (the parsed key JSON); otherwise `keyFilename` or ADC. */
  credentials?: StorageOptions['credentials'];
  keyFilename?: string;
  /** Send credentials even to a custom endpoint (default: only to googleapis.com hosts). */
  useAuthWithCustomEndpoint?: boolean;
  /** Per HTTP request (default 30 s). */
  timeoutMs?: number;
  /** Files of at least this many bytes go up as resumable uploads (default 8 MiB). */
  resumableThreshold?: number;
  /** Bytes per request of a resumable upload, a multiple of 256 KiB (default 8 MiB). */
  chunkSize?: number;
  /** Slowest transfer rate the deadline of one putFile/read allows for (default 256 KiB/s). */
  minBytesPerSecond?: number;
  /** Objects per list request (default 1000, the service's maximum). */
  listPageSize?: number;
}

export const GCS_DEFAULTS = {
  timeoutMs: 30_000,
  resumableThreshold: 8 << 20,
  chunkSize: 8 << 20,
  minBytesPerSecond: 256 << 10,
  listPageSize: 1000,
} as const;

const CHUNK_GRANULE = 256 << 10;
// HTTP statuses that retrying cannot fix: bad credentials, no permission, no such bucket.
const PERMANENT_STATUS = new Set([401, 403, 404]);
// Source-file errors that retrying cannot fix.
const SOURCE_PERMANENT = new Set(['ENOENT', 'EISDIR', 'ENOTDIR', 'EACCES', 'EPERM']);
const BUCKET_NAME = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;

type Interceptor = Storage['interceptors'][number];

interface LocalHashes {
  size: number;
  sha256: string;
  md5: string;
  crc32c: string;
}

/** HTTP status of a client error (ApiError.code, GaxiosError.response.status), if any. */
function httpStatus(e: unknown): number | undefined {
  const err = e as { code?: unknown; status?: unknown; response?: { status?: unknown } };
  for (const v of [err.code, err.response?.status, err.status]) if (typeof v === 'number') return v;
  return undefined;
}

function toStoreError(e: unknown, what: string): StoreError {
  if (e instanceof StoreError) return e;
  const status = httpStatus(e);
  const retryable = status === undefined || !PERMANENT_STATUS.has(status);
  return new StoreError(`${what}: ${(e as Error).message}${status === undefined ? '' : ` (HTTP ${status})`}`, retryable, { cause: e });
}

/**
 * Runs `fn`, rejecting with a retryable StoreError if it has not settled within `ms`; the signal
 * handed to `fn` aborts at that moment so that it can tear down its streams.
 */
async function withDeadline<T>(ms: number, what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new StoreError(`${what}: no result within ${ms} ms`, true);
      ac.abort(err);
      reject(err);
    }, ms);
  });
  try {
    return await Promise.race([fn(ac.signal), expired]);
  } finally {
    clearTimeout(timer);
  }
}

async function hashFile(path: string): Promise<LocalHashes> {
  const sha = createHash('sha256');
  const md5 = createHash('md5');
  const crc = new CRC32C();
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    const b = chunk as Buffer;
    sha.update(b);
    md5.update(b);
    crc.update(b);
    size += b.length;
  }
  return { size, sha256: sha.digest('hex'), md5: md5.digest('base64'), crc32c: crc.toString() };
}

function positiveInt(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v <= 0) throw new StoreError(`GcsStore: ${name} must be a positive integer, got ${String(v)}`, false);
  return v;
}

function stringMetadata(md: FileMetadata['metadata']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(md ?? {})) out[k] = String(v);
  return out;
}

function toStored(md: FileMetadata): StoredObject {
  // GCS always reports a content type (application/octet-stream when none was given).
  return { name: String(md.name), size: Number(md.size), metadata: stringMetadata(md.metadata), contentType: md.contentType as string };
}

/** What is wrong with the object resource GCS returned for our upload, or null if it is ours. */
function mismatch(md: FileMetadata, name: string, local: LocalHashes, custom: Record<string, string>): string | null {
  if (md.name !== name) return `name ${JSON.stringify(md.name)}`;
  if (Number(md.size) !== local.size) return `size ${String(md.size)} != ${local.size}`;
  // md5 of what GCS stored against md5 of the file as hashed before the upload (the client has
  // already checked crc32c against the bytes it streamed, so a file that changed in between, or a
  // store that reports another object, is caught here).
  if (md.md5Hash !== local.md5) return `md5 ${String(md.md5Hash)} != ${local.md5}`;
  const got = stringMetadata(md.metadata);
  for (const [k, v] of Object.entries(custom)) if (got[k] !== v) return `metadata ${k}=${JSON.stringify(got[k])} != ${JSON.stringify(v)}`;
  return null;
}

export class GcsStore implements ObjectStore {
  readonly kind = 'gcs' as const;
  readonly bucketName: string;
  /** The underlying client (for operations the ObjectStore interface does not cover). */
  readonly storage: Storage;
  readonly timeoutMs: number;
  readonly resumableThreshold: number;
  readonly chunkSize: number;
  private readonly minBytesPerSecond: number;
  private readonly listPageSize: number;
  private readonly bucket: Bucket;

  constructor(opts: GcsStoreOptions) {
    const bucket = opts.bucket;
    if (typeof bucket !== 'string' || !BUCKET_NAME.test(bucket)) {
      throw new StoreError(`GcsStore: bad bucket name ${JSON.stringify(bucket)} (3-222 of a-z 0-9 . _ -, starting and ending alphanumeric)`, false);
    }
    this.bucketName = bucket;
    this.timeoutMs = positiveInt('timeoutMs', opts.timeoutMs, GCS_DEFAULTS.timeoutMs);
    this.resumableThreshold = positiveInt('resumableThreshold', opts.resumableThreshold, GCS_DEFAULTS.resumableThreshold);
    this.chunkSize = positiveInt('chunkSize', opts.chunkSize, GCS_DEFAULTS.chunkSize);
    if (this.chunkSize % CHUNK_GRANULE !== 0) throw new StoreError(`GcsStore: chunkSize must be a multiple of 256 KiB, got ${this.chunkSize}`, false);
    this.minBytesPerSecond = positiveInt('minBytesPerSecond', opts.minBytesPerSecond, GCS_DEFAULTS.minBytesPerSecond);
    this.listPageSize = positiveInt('listPageSize', opts.listPageSize, GCS_DEFAULTS.listPageSize);

    const so: StorageOptions = {
      timeout: this.timeoutMs,
      retryOptions: { autoRetry: false },
    };
    if (opts.apiEndpoint) {
      let url: URL;
      try {
        url = new URL(opts.apiEndpoint);
      } catch {
        throw new StoreError(`GcsStore: apiEndpoint ${JSON.stringify(opts.apiEndpoint)} is not a URL`, false);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        throw new StoreError(`GcsStore: apiEndpoint ${JSON.stringify(opts.apiEndpoint)} must be http:// or https://`, false);
      }
      so.apiEndpoint = opts.apiEndpoint.replace(/\/+$/, '');
      so.useAuthWithCustomEndpoint = opts.useAuthWithCustomEndpoint ?? /(^|\.)googleapis\.com$/.test(url.hostname);
    }
    if (opts.projectId) so.projectId = opts.projectId;
    if (opts.credentials) so.credentials = opts.credentials;
    if (opts.keyFilename) so.keyFilename = opts.keyFilename;
    this.storage = new Storage(so);
    // Resumable uploads build their gaxios requests from the interceptors, not from `timeout`.
    const timeout = this.timeoutMs;
    this.storage.interceptors.push({
      request: (reqOpts) => {
        reqOpts.timeout = timeout;
        return reqOpts as ReturnType<Interceptor['request']>;
      },
    });
    this.bucket = this.storage.bucket(bucket);
  }

  /** Deadline of one call moving `bytes`: two request timeouts plus the transfer at the slowest rate. */
  private budget(bytes: number): number {
    return 2 * this.timeoutMs + Math.ceil((bytes * 1000) / this.minBytesPerSecond);
  }

  async putFile(name: string, path: string, meta: PutMeta): Promise<StoredObject> {
    validateObjectName(name);
    const custom = storedMetadata(meta);
    let local: LocalHashes;
    try {
      local = await hashFile(path);
    } catch (e) {
      const permanent = SOURCE_PERMANENT.has(String((e as NodeJS.ErrnoException).code));
      throw new StoreError(`put ${name}: cannot read source file: ${(e as Error).message}`, !permanent, { cause: e });
    }
    if (local.size !== meta.size || local.sha256 !== meta.sha256) {
      throw new StoreError(
        `put ${name}: source file ${path} does not match its metadata: size ${local.size} (expected ${meta.size}), sha256 ${local.sha256} (expected ${meta.sha256})`,
        false,
      );
    }
    const file = this.bucket.file(name);
    const resumable = local.size >= this.resumableThreshold;
    try {
      await withDeadline(this.budget(local.size), `put ${name}`, async (signal) => {
        const ws = file.createWriteStream({
          resumable,
          ...(resumable ? { chunkSize: this.chunkSize } : {}),
          validation: 'crc32c',
          timeout: this.timeoutMs,
          metadata: { contentType: meta.contentType, md5Hash: local.md5, crc32c: local.crc32c, metadata: custom },
        });
        await pipeline(createReadStream(path), ws, { signal });
      });
    } catch (e) {
      throw toStoreError(e, `put ${name}`);
    }
    const problem = mismatch(file.metadata, name, local, custom);
    if (problem) throw new StoreError(`put ${name}: the store did not confirm the upload: ${problem}`, true);
    return { name, size: local.size, metadata: custom, contentType: meta.contentType };
  }

  async stat(name: string): Promise<StoredObject | null> {
    validateObjectName(name);
    try {
      const [md] = await withDeadline(this.budget(0), `stat ${name}`, () => this.bucket.file(name).getMetadata());
      return toStored(md);
    } catch (e) {
      if (httpStatus(e) === 404) return null;
      throw toStoreError(e, `stat ${name}`);
    }
  }

  async list(prefix: string): Promise<StoredObject[]> {
    validatePrefix(prefix);
    const out: StoredObject[] = [];
    let pageToken: string | undefined;
    try {
      do {
        const query = { prefix, autoPaginate: false, maxResults: this.listPageSize, ...(pageToken ? { pageToken } : {}) };
        const [files, next] = await withDeadline(this.budget(0), `list ${JSON.stringify(prefix)}`, () => this.bucket.getFiles(query));
        for (const f of files) out.push(toStored(f.metadata));
        pageToken = (next as { pageToken?: string } | null)?.pageToken;
      } while (pageToken);
    } catch (e) {
      throw toStoreError(e, `list ${JSON.stringify(prefix)}`);
    }
    return out.sort((a, b) => compareNames(a.name, b.name));
  }

  async read(name: string): Promise<Buffer> {
    validateObjectName(name);
    // No overall deadline (objects may be large): the read fails once no byte arrived for timeoutMs.
    const rs = this.bucket.file(name).createReadStream({ validation: 'crc32c' });
    const idle = setTimeout(() => rs.destroy(new StoreError(`read ${name}: no data for ${this.timeoutMs} ms`, true)), this.timeoutMs);
    const chunks: Buffer[] = [];
    try {
      for await (const c of rs) {
        idle.refresh();
        chunks.push(c as Buffer);
      }
    } catch (e) {
      if (httpStatus(e) === 404) throw new ObjectNotFoundError(name);
      throw toStoreError(e, `read ${name}`);
    } finally {
      clearTimeout(idle);
    }
    return Buffer.concat(chunks);
  }
}
