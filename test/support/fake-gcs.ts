// A small in-memory fake of the GCS JSON API for tests, on 127.0.0.1 (port 0), with fault injection.
//
// Speaks what @google-cloud/storage v7 sends:
//   POST   /upload/storage/v1/b/:bucket/o?uploadType=multipart&name=…   multipart/related: JSON resource, then the bytes
//   POST   /upload/storage/v1/b/:bucket/o?uploadType=resumable&name=…   JSON resource → 200 + Location (session URI)
//   PUT    <session URI>  Content-Range: bytes A-B/T | bytes A-*/T | bytes */T (T may be *)
//          → 308 + Range: bytes=0-N while incomplete, 200 + resource when complete
//   GET    /storage/v1/b/:bucket/o/:object            resource (404 when missing)
//   GET    /storage/v1/b/:bucket/o/:object?alt=media  bytes, with x-goog-hash: crc32c=…,md5=…
//   GET    /storage/v1/b/:bucket/o?prefix=&maxResults=&pageToken=   { items, nextPageToken }
//   DELETE /storage/v1/b/:bucket/o/:object
// Object names travel percent-encoded in paths (a/b → a%2Fb). md5Hash and crc32c are base64 of the
// big-endian digest, as GCS reports them. An md5Hash/crc32c in the uploaded resource, or an
// X-Goog-Hash header on the final resumable request, is checked against the bytes (400 on mismatch).
//
// Faults (all off by default; `clearFaults()` turns all off):
//   failNext(n, {status, only})     answer the next n matching requests with `status` (503)
//   resetNext(n, {when, only})      destroy the socket of the next n matching requests, as soon as
//                                   the headers arrived ('headers') or after the body ('body')
//   failureProbability(p, seed)     each request fails with 503 with probability p (seeded PRNG)
//   latencyMs                       delay before every answer
//   outage(mode)                    refuse everything: 'status' (503), 'reset' (destroy), 'hang'
//                                   (never answer); outage(false) ends it
//   corruptNextUpload(kind)         the next completed upload: 'bytes' stores flipped bytes (and
//                                   reports their hashes), 'md5' | 'crc32c' | 'size' | 'metadata' |
//                                   'name' report a wrong value in the upload's response only
// Counters: requests, by kind, completed uploads, injected faults; `log` keeps the last requests.

import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { CRC32C } from '@google-cloud/storage';

export type RequestKind =
  | 'upload-multipart'
  | 'upload-init'
  | 'upload-put'
  | 'metadata'
  | 'download'
  | 'list'
  | 'delete'
  | 'other';

export interface RequestInfo {
  method: string;
  path: string;
  query: URLSearchParams;
  kind: RequestKind;
  headers: IncomingMessage['headers'];
}

export type Corruption = 'bytes' | 'md5' | 'crc32c' | 'size' | 'metadata' | 'name';
export type Filter = (r: RequestInfo) => boolean;

export interface FakeObject {
  bucket: string;
  name: string;
  data: Buffer;
  contentType: string;
  metadata: Record<string, string>;
  generation: number;
  md5Hash: string;
  crc32c: string;
  created: Date;
}

export interface FakeCounters {
  requests: number;
  byKind: Record<RequestKind, number>;
  /** Objects stored (completed uploads, of either kind). */
  uploads: number;
  resumableSessions: number;
  injectedStatus: number;
  injectedResets: number;
  outageRefused: number;
  /** Requests that carried an Authorization header. */
  withAuthorization: number;
}

interface Session {
  id: string;
  bucket: string;
  name: string;
  resource: Record<string, unknown>;
  parts: Buffer[];
  received: number;
  /** X-Upload-Content-Length of the initiation, when sent. */
  length?: number;
  done?: FakeObject;
}

const MAX_BODY = 128 << 20;

export function md5Base64(b: Buffer): string {
  return createHash('md5').update(b).digest('base64');
}

export function crc32cBase64(b: Buffer): string {
  const c = new CRC32C();
  c.update(b);
  return c.toString();
}

function zeroCounters(): FakeCounters {
  return {
    requests: 0,
    byKind: { 'upload-multipart': 0, 'upload-init': 0, 'upload-put': 0, metadata: 0, download: 0, list: 0, delete: 0, other: 0 },
    uploads: 0,
    resumableSessions: 0,
    injectedStatus: 0,
    injectedResets: 0,
    outageRefused: 0,
    withAuthorization: 0,
  };
}

/** mulberry32: small seeded PRNG so that probabilistic faults are reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly reason = 'invalid',
  ) {
    super(message);
  }
}

function parseMultipart(body: Buffer, contentType: string): { type: string; body: Buffer }[] {
  const m = /boundary=("?)([^";]+)\1/i.exec(contentType);
  if (!m) throw new HttpError(400, 'multipart upload without boundary');
  const delim = Buffer.from(`--${m[2]}`);
  const parts: { type: string; body: Buffer }[] = [];
  let pos = body.indexOf(delim);
  if (pos < 0) throw new HttpError(400, 'multipart body without boundary');
  for (;;) {
    pos += delim.length;
    if (body.subarray(pos, pos + 2).toString('latin1') === '--') break;
    const headEnd = body.indexOf('\r\n\r\n', pos);
    if (headEnd < 0) throw new HttpError(400, 'multipart part without headers');
    const head = body.subarray(pos, headEnd).toString('latin1');
    const next = body.indexOf(delim, headEnd + 4);
    if (next < 0) throw new HttpError(400, 'multipart body not terminated');
    let end = next;
    if (body[end - 2] === 13 && body[end - 1] === 10) end -= 2;
    const type = /content-type:\s*([^\r\n]+)/i.exec(head)?.[1]?.trim() ?? 'application/octet-stream';
    parts.push({ type, body: body.subarray(headEnd + 4, end) });
    pos = next;
  }
  return parts;
}

function parseGoogHash(h: string | string[] | undefined): { md5?: string; crc32c?: string } {
  const out: { md5?: string; crc32c?: string } = {};
  for (const pair of String(h ?? '').split(',')) {
    const i = pair.indexOf('=');
    if (i < 0) continue;
    const k = pair.slice(0, i).trim();
    if (k === 'md5' || k === 'crc32c') out[k] = pair.slice(i + 1).trim();
  }
  return out;
}

export class FakeGcs {
  readonly server: Server;
  url = '';
  counters: FakeCounters = zeroCounters();
  readonly log: RequestInfo[] = [];
  /** Delay before every answer, in ms. */
  latencyMs = 0;

  private readonly buckets = new Map<string, Map<string, FakeObject>>();
  private readonly sessions = new Map<string, Session>();
  private generation = Date.now() * 1000;
  private failQueue: { left: number; status: number; only?: Filter }[] = [];
  private resetQueue: { left: number; when: 'headers' | 'body'; only?: Filter }[] = [];
  private pFail = 0;
  private rng = prng(1);
  private outageMode: false | 'status' | 'reset' | 'hang' = false;
  private corruption: Corruption[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly hung = new Set<ServerResponse>();
  private readonly timers = new Set<NodeJS.Timeout>();

  private constructor() {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => {
        if (!res.headersSent && !res.destroyed) this.sendError(res, 500, (e as Error).message, 'backendError');
      });
    });
    // Never close idle keep-alive connections on our own: the client pools them without a free-socket
    // timeout, and a server-side close racing with the client's reuse of the socket would fail a
    // request at random. stop() destroys every connection.
    this.server.keepAliveTimeout = 0;
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  static async start(opts: { buckets?: string[] } = {}): Promise<FakeGcs> {
    const f = new FakeGcs();
    for (const b of opts.buckets ?? ['test-bucket']) f.createBucket(b);
    await new Promise<void>((resolve) => f.server.listen(0, '127.0.0.1', resolve));
    f.url = `http://127.0.0.1:${(f.server.address() as AddressInfo).port}`;
    return f;
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- state -------------------------------------------------------------------------------

  createBucket(name: string): void {
    if (!this.buckets.has(name)) this.buckets.set(name, new Map());
  }

  objects(bucket: string): FakeObject[] {
    return [...(this.buckets.get(bucket)?.values() ?? [])].sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
  }

  getObject(bucket: string, name: string): FakeObject | undefined {
    return this.buckets.get(bucket)?.get(name);
  }

  /** Stores an object directly (no request), as if uploaded earlier. */
  putObject(bucket: string, name: string, data: Buffer, opts: { contentType?: string; metadata?: Record<string, string> } = {}): FakeObject {
    this.createBucket(bucket);
    return this.store(bucket, name, data, opts.contentType ?? 'application/octet-stream', opts.metadata ?? {});
  }

  // ---- faults ------------------------------------------------------------------------------

  failNext(n: number, opts: { status?: number; only?: Filter } = {}): void {
    this.failQueue.push({ left: n, status: opts.status ?? 503, ...(opts.only ? { only: opts.only } : {}) });
  }

  resetNext(n: number, opts: { when?: 'headers' | 'body'; only?: Filter } = {}): void {
    this.resetQueue.push({ left: n, when: opts.when ?? 'body', ...(opts.only ? { only: opts.only } : {}) });
  }

  failureProbability(p: number, seed = 1): void {
    this.pFail = p;
    this.rng = prng(seed);
  }

  outage(mode: false | 'status' | 'reset' | 'hang'): void {
    this.outageMode = mode;
    if (mode === false) {
      for (const res of this.hung) res.destroy();
      this.hung.clear();
    }
  }

  corruptNextUpload(kind: Corruption): void {
    this.corruption.push(kind);
  }

  clearFaults(): void {
    this.failQueue = [];
    this.resetQueue = [];
    this.pFail = 0;
    this.latencyMs = 0;
    this.corruption = [];
    this.outage(false);
  }

  resetCounters(): void {
    this.counters = zeroCounters();
    this.log.length = 0;
  }

  // ---- request handling --------------------------------------------------------------------

  private classify(method: string, path: string, query: URLSearchParams): RequestKind {
    if (path.startsWith('/upload/storage/v1/b/')) {
      if (method === 'POST' && query.get('uploadType') === 'multipart') return 'upload-multipart';
      if (method === 'POST' && query.get('uploadType') === 'resumable') return 'upload-init';
      if (method === 'PUT' && query.has('upload_id')) return 'upload-put';
      return 'other';
    }
    const m = /^\/(?:download\/)?storage\/v1\/b\/[^/]+\/o(\/.+)?$/.exec(path);
    if (!m) return 'other';
    if (!m[1]) return method === 'GET' ? 'list' : 'other';
    if (method === 'DELETE') return 'delete';
    if (method !== 'GET') return 'other';
    return query.get('alt') === 'media' ? 'download' : 'metadata';
  }

  private take<T extends { left: number; only?: Filter }>(queue: T[], info: RequestInfo): T | undefined {
    const i = queue.findIndex((f) => !f.only || f.only(info));
    if (i < 0) return undefined;
    const f = queue[i]!;
    if (--f.left <= 0) queue.splice(i, 1);
    return f;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = req.method ?? 'GET';
    const info: RequestInfo = { method, path: url.pathname, query: url.searchParams, kind: this.classify(method, url.pathname, url.searchParams), headers: req.headers };
    this.counters.requests++;
    this.counters.byKind[info.kind]++;
    if (req.headers.authorization) this.counters.withAuthorization++;
    this.log.push(info);
    if (this.log.length > 1000) this.log.shift();

    if (this.outageMode) {
      this.counters.outageRefused++;
      if (this.outageMode === 'reset') return void req.socket.destroy();
      if (this.outageMode === 'hang') return void this.hung.add(res);
      await this.readBody(req);
      return this.sendError(res, 503, 'outage', 'backendError');
    }
    const reset = this.take(this.resetQueue, info);
    if (reset) {
      this.counters.injectedResets++;
      if (reset.when === 'body') await this.readBody(req);
      return void req.socket.destroy();
    }
    const body = await this.readBody(req);
    const fail = this.take(this.failQueue, info) ?? (this.pFail > 0 && this.rng() < this.pFail ? { status: 503 } : undefined);
    if (fail) {
      this.counters.injectedStatus++;
      return this.sendError(res, fail.status, 'injected failure', fail.status >= 500 ? 'backendError' : 'invalid');
    }
    if (this.latencyMs > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          this.timers.delete(t);
          resolve();
        }, this.latencyMs);
        this.timers.add(t);
      });
      if (res.destroyed) return;
    }
    try {
      this.route(info, req, res, body);
    } catch (e) {
      if (!(e instanceof HttpError)) throw e;
      this.sendError(res, e.status, e.message, e.reason);
    }
  }

  private readBody(req: IncomingMessage): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let n = 0;
      req.on('data', (c: Buffer) => {
        n += c.length;
        if (n > MAX_BODY) req.destroy(new Error('body too large'));
        else chunks.push(c);
      });
      req.on('end', () => resolve(Buffer.concat(chunks)));
      req.on('error', reject);
      req.on('close', () => resolve(Buffer.concat(chunks)));
    });
  }

  private bucketOf(name: string): Map<string, FakeObject> {
    const b = this.buckets.get(name);
    if (!b) throw new HttpError(404, 'The specified bucket does not exist.', 'notFound');
    return b;
  }

  private route(info: RequestInfo, req: IncomingMessage, res: ServerResponse, body: Buffer): void {
    const { path, query } = info;
    if (info.kind === 'upload-multipart' || info.kind === 'upload-init' || info.kind === 'upload-put') {
      const bucket = decodeURIComponent(path.split('/')[5]!);
      this.bucketOf(bucket);
      if (info.kind === 'upload-multipart') return this.multipart(res, bucket, query, req, body);
      if (info.kind === 'upload-init') return this.initResumable(res, bucket, query, req, body);
      return this.putResumable(res, query, req, body);
    }
    const m = /^\/(?:download\/)?storage\/v1\/b\/([^/]+)\/o(?:\/(.+))?$/.exec(path);
    if (!m || info.kind === 'other') throw new HttpError(404, `no route for ${info.method} ${path}`, 'notFound');
    const objects = this.bucketOf(decodeURIComponent(m[1]!));
    if (info.kind === 'list') return this.list(res, objects, query);
    const name = decodeURIComponent(m[2]!);
    const o = objects.get(name);
    if (!o) throw new HttpError(404, `No such object: ${decodeURIComponent(m[1]!)}/${name}`, 'notFound');
    if (info.kind === 'delete') {
      objects.delete(name);
      res.writeHead(204).end();
      return;
    }
    if (info.kind === 'metadata') return this.sendJson(res, 200, this.resource(o));
    res.writeHead(200, {
      'content-type': o.contentType,
      'content-length': o.data.length,
      'x-goog-hash': `crc32c=${o.crc32c},md5=${o.md5Hash}`,
      'x-goog-stored-content-encoding': 'identity',
      'x-goog-generation': String(o.generation),
    });
    res.end(o.data);
  }

  private multipart(res: ServerResponse, bucket: string, query: URLSearchParams, req: IncomingMessage, body: Buffer): void {
    const parts = parseMultipart(body, String(req.headers['content-type']));
    if (parts.length !== 2) throw new HttpError(400, `multipart upload needs 2 parts, got ${parts.length}`);
    const resource = JSON.parse(parts[0]!.body.toString('utf8') || '{}') as Record<string, unknown>;
    const name = query.get('name') ?? (resource.name as string | undefined);
    if (!name) throw new HttpError(400, 'object name missing');
    this.finish(res, bucket, name, resource, parts[1]!.body, {}, parts[1]!.type);
  }

  private initResumable(res: ServerResponse, bucket: string, query: URLSearchParams, req: IncomingMessage, body: Buffer): void {
    const resource = JSON.parse(body.toString('utf8') || '{}') as Record<string, unknown>;
    const name = query.get('name') ?? (resource.name as string | undefined);
    if (!name) throw new HttpError(400, 'object name missing');
    // The client sends the content type (and length, when known) as headers, not in the resource.
    if (resource.contentType === undefined && req.headers['x-upload-content-type']) resource.contentType = req.headers['x-upload-content-type'];
    const length = req.headers['x-upload-content-length'];
    const id = randomBytes(12).toString('hex');
    this.sessions.set(id, { id, bucket, name, resource, parts: [], received: 0, ...(length ? { length: Number(length) } : {}) });
    this.counters.resumableSessions++;
    const loc = `${this.url}/upload/storage/v1/b/${encodeURIComponent(bucket)}/o?uploadType=resumable&name=${encodeURIComponent(name)}&upload_id=${id}`;
    res.writeHead(200, { location: loc, 'content-length': 0 }).end();
  }

  private putResumable(res: ServerResponse, query: URLSearchParams, req: IncomingMessage, body: Buffer): void {
    const s = this.sessions.get(query.get('upload_id')!);
    if (!s) throw new HttpError(404, 'no such upload session', 'notFound');
    if (s.done) return this.sendJson(res, 200, this.resource(s.done));
    const range = String(req.headers['content-range'] ?? 'bytes */*');
    const m = /^bytes (?:(\*)|(\d+)-(\d+|\*))\/(\*|\d+)$/.exec(range);
    if (!m) throw new HttpError(400, `bad Content-Range ${range}`);
    const total = m[4] === '*' ? undefined : Number(m[4]);
    if (!m[1]) {
      const start = Number(m[2]);
      if (start > s.received) throw new HttpError(400, `chunk starts at ${start}, have ${s.received}`);
      const fresh = body.subarray(s.received - start);
      s.parts.push(fresh);
      s.received += fresh.length;
      if (m[3] === '*' && total === undefined) {
        return this.completeSession(res, s, req);
      }
    }
    if (total !== undefined && s.received >= total) {
      if (s.received > total) throw new HttpError(400, `received ${s.received} bytes, more than the total ${total}`);
      return this.completeSession(res, s, req);
    }
    res.writeHead(308, s.received > 0 ? { range: `bytes=0-${s.received - 1}`, 'content-length': 0 } : { 'content-length': 0 }).end();
  }

  private completeSession(res: ServerResponse, s: Session, req: IncomingMessage): void {
    const data = Buffer.concat(s.parts);
    if (s.length !== undefined && s.length !== data.length) throw new HttpError(400, `upload has ${data.length} bytes, announced ${s.length}`);
    s.done = this.finish(res, s.bucket, s.name, s.resource, data, parseGoogHash(req.headers['x-goog-hash']), 'application/octet-stream');
  }

  /** Checks the upload's declared hashes, stores it (applying a pending corruption) and answers 200. */
  private finish(
    res: ServerResponse,
    bucket: string,
    name: string,
    resource: Record<string, unknown>,
    data: Buffer,
    header: { md5?: string; crc32c?: string },
    partType: string,
  ): FakeObject {
    const md5 = md5Base64(data);
    const crc = crc32cBase64(data);
    for (const [what, declared, actual] of [
      ['MD5', resource.md5Hash ?? header.md5, md5],
      ['CRC32C', resource.crc32c ?? header.crc32c, crc],
    ] as const) {
      if (declared !== undefined && declared !== actual) {
        throw new HttpError(400, `Provided ${what} hash "${String(declared)}" doesn't match calculated ${what} hash "${actual}".`);
      }
    }
    const kind = this.corruption.shift();
    let stored = data;
    if (kind === 'bytes') {
      stored = Buffer.from(data.length > 0 ? data : Buffer.alloc(1));
      stored[0] = stored[0]! ^ 0xff;
    }
    const contentType = (resource.contentType as string | undefined) ?? partType;
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries((resource.metadata as Record<string, unknown> | undefined) ?? {})) metadata[k] = String(v);
    const o = this.store(bucket, name, stored, contentType, metadata);
    this.counters.uploads++;
    const r = this.resource(o);
    if (kind === 'md5') r.md5Hash = md5Base64(Buffer.from('not the data'));
    if (kind === 'crc32c') r.crc32c = crc32cBase64(Buffer.from('not the data'));
    if (kind === 'size') r.size = String(o.data.length + 1);
    if (kind === 'metadata') r.metadata = { ...metadata, sha256: '0'.repeat(64) };
    if (kind === 'name') r.name = `${name}.other`;
    this.sendJson(res, 200, r);
    return o;
  }

  private store(bucket: string, name: string, data: Buffer, contentType: string, metadata: Record<string, string>): FakeObject {
    const o: FakeObject = {
      bucket,
      name,
      data,
      contentType,
      metadata,
      generation: ++this.generation,
      md5Hash: md5Base64(data),
      crc32c: crc32cBase64(data),
      created: new Date(),
    };
    this.buckets.get(bucket)!.set(name, o);
    return o;
  }

  private list(res: ServerResponse, objects: Map<string, FakeObject>, query: URLSearchParams): void {
    const prefix = query.get('prefix') ?? '';
    const max = Math.max(1, Math.min(1000, Number(query.get('maxResults') ?? 1000) || 1000));
    const after = query.get('pageToken') ? Buffer.from(query.get('pageToken')!, 'base64url').toString('utf8') : undefined;
    const all = [...objects.values()]
      .filter((o) => o.name.startsWith(prefix))
      .sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)))
      .filter((o) => after === undefined || Buffer.compare(Buffer.from(o.name), Buffer.from(after)) > 0);
    const page = all.slice(0, max);
    const out: Record<string, unknown> = { kind: 'storage#objects' };
    if (page.length > 0) out.items = page.map((o) => this.resource(o));
    if (all.length > max) out.nextPageToken = Buffer.from(page.at(-1)!.name, 'utf8').toString('base64url');
    this.sendJson(res, 200, out);
  }

  resource(o: FakeObject): Record<string, unknown> {
    const id = `${o.bucket}/${o.name}/${o.generation}`;
    const path = `/storage/v1/b/${encodeURIComponent(o.bucket)}/o/${encodeURIComponent(o.name)}`;
    return {
      kind: 'storage#object',
      id,
      selfLink: `${this.url}${path}`,
      mediaLink: `${this.url}/download${path}?generation=${o.generation}&alt=media`,
      name: o.name,
      bucket: o.bucket,
      generation: String(o.generation),
      metageneration: '1',
      contentType: o.contentType,
      storageClass: 'STANDARD',
      size: String(o.data.length),
      md5Hash: o.md5Hash,
      crc32c: o.crc32c,
      etag: Buffer.from(id).toString('base64'),
      timeCreated: o.created.toISOString(),
      updated: o.created.toISOString(),
      // GCS leaves `metadata` out of the resource when there is none.
      ...(Object.keys(o.metadata).length > 0 ? { metadata: { ...o.metadata } } : {}),
    };
  }

  private sendJson(res: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8', 'content-length': Buffer.byteLength(text) }).end(text);
  }

  private sendError(res: ServerResponse, status: number, message: string, reason: string): void {
    this.sendJson(res, status, { error: { code: status, message, errors: [{ message, domain: 'global', reason }] } });
  }
}
