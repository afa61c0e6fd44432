// Helpers for the job-queue tests (real HTTP receivers, bounded waits, an I/O fault seam) and,
// run as a script, the crash-test child:
//   node [tap's loader flags] test/support/jobs-child.ts DIR URL
// starts a JobQueue on DIR with the process-conversation executor against URL, submits one 104
// job, prints {"submitted":ID} once it is journaled, and keeps retrying until it is killed.
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { nodeIo, type SpoolFile, type SpoolIo } from '../../src/spool/io.js';

export interface Received {
  n: number;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
  json: Record<string, unknown> | undefined;
  at: number;
  /** The client went away before an answer (an aborted or timed-out request). */
  aborted: boolean;
  /** Answers a request its handler left hanging. */
  respond(reply: Exclude<Reply, 'hang'>): void;
}
export type Reply = { status: number; body?: string | object } | 'hang';

export interface Receiver {
  url: string;
  port: number;
  requests: Received[];
  /** Requests being handled right now (for concurrency bounds) and the most seen at once. */
  inFlight: number;
  maxInFlight: number;
  close(): Promise<void>;
}

/** A node:http server on 127.0.0.1 answering every POST with `handler` (after `delayMs`). */
export async function receiver(handler: (r: Received) => Reply = () => ({ status: 200, body: {} }), port = 0, delayMs = 0): Promise<Receiver> {
  const rx: Receiver = { url: '', port: 0, requests: [], inFlight: 0, maxInFlight: 0, close: async () => {} };
  const server = createServer((req, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let json: Record<string, unknown> | undefined;
      try {
        json = JSON.parse(body) as Record<string, unknown>;
      } catch {
        json = undefined;
      }
      const respond = (reply: Exclude<Reply, 'hang'>): void => {
        const text = typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body ?? {});
        res.writeHead(reply.status, { 'content-type': typeof reply.body === 'string' ? 'text/plain' : 'application/json' }).end(text);
      };
      const r: Received = { n: rx.requests.length + 1, url: req.url ?? '', headers: req.headers, body, json, at: Date.now(), aborted: false, respond };
      rx.requests.push(r);
      rx.inFlight++;
      rx.maxInFlight = Math.max(rx.maxInFlight, rx.inFlight);
      res.on('close', () => {
        rx.inFlight--;
        if (!res.writableFinished) r.aborted = true;
      });
      const reply = handler(r);
      if (reply === 'hang') return;
      if (delayMs > 0) setTimeout(() => respond(reply), delayMs);
      else respond(reply);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  rx.port = (server.address() as AddressInfo).port;
  rx.url = `http://127.0.0.1:${rx.port}/v1/conversations/process`;
  rx.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return rx;
}

/** A port nothing listens on (bound once, then released): connections to it are refused. */
export async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Polls `cond` every 10 ms; throws, naming `what`, when it is not true within `ms`. */
export async function until(what: string, cond: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export type IoOp = 'open' | 'write' | 'datasync' | 'truncate' | 'mkdirp' | 'readFile' | 'readdir' | 'stat' | 'link' | 'rename' | 'unlink' | 'rmdir' | 'fsyncDir';

export function fault(code = 'EIO'): Error {
  return Object.assign(new Error(`injected ${code}`), { code });
}

/**
 * nodeIo with `before(op, path)` called ahead of every operation (it may throw to inject a fault)
 * and `after(op, path)` once it succeeded. Closing a file always goes through (no fd leaks).
 */
export function hookedIo(before: (op: IoOp, path: string) => void, after: (op: IoOp, path: string) => void = () => {}): SpoolIo {
  const run = async <T>(op: IoOp, path: string, f: () => Promise<T>): Promise<T> => {
    before(op, path);
    const v = await f();
    after(op, path);
    return v;
  };
  const wrap = (f: SpoolFile, path: string): SpoolFile => ({
    write: (d, pos) => run('write', path, () => f.write(d, pos)),
    datasync: () => run('datasync', path, () => f.datasync()),
    truncate: (n) => run('truncate', path, () => f.truncate(n)),
    close: () => f.close(),
  });
  return {
    open: async (p, mode) => wrap(await run('open', p, () => nodeIo.open(p, mode)), p),
    mkdirp: (p) => run('mkdirp', p, () => nodeIo.mkdirp(p)),
    readFile: (p) => run('readFile', p, () => nodeIo.readFile(p)),
    readdir: (p) => run('readdir', p, () => nodeIo.readdir(p)),
    stat: (p) => run('stat', p, () => nodeIo.stat(p)),
    link: (a, b) => run('link', b, () => nodeIo.link(a, b)),
    rename: (a, b) => run('rename', b, () => nodeIo.rename(a, b)),
    unlink: (p) => run('unlink', p, () => nodeIo.unlink(p)),
    rmdir: (p) => run('rmdir', p, () => nodeIo.rmdir(p)),
    fsyncDir: (p) => run('fsyncDir', p, () => nodeIo.fsyncDir(p)),
  };
}

/** The 104 the crash child submits (every field the executor must pass through). */
export const CHILD_104 = {
  conversation_id: 'conv-crash',
  language: 'de',
  finalization_job_id: 'fin-7',
  dispatch_generation: 3,
  byok_keys: { openai: 'sk-test' },
};

async function child(dir: string, url: string): Promise<void> {
  const { HttpClient } = await import('../../src/http/client.js');
  const { JobQueue } = await import('../../src/jobs/queue.js');
  const { processConversationExecutor, processJobSpec } = await import('../../src/jobs/process-conversation.js');
  const http = new HttpClient({ allowPrivate: true, connectTimeoutMs: 500 });
  const q = new JobQueue({ dir, executors: { process: processConversationExecutor(http, url) }, concurrency: 2, maxPending: 10, backoff: { baseMs: 50, capMs: 200 } });
  await q.start();
  const { job } = await q.submit(processJobSpec('u-crash', CHILD_104));
  process.stdout.write(JSON.stringify({ submitted: job.id }) + '\n');
  // The queue's retry timer keeps this process alive until the test kills it.
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [dir, url] = process.argv.slice(2);
  if (!dir || !url) {
    process.stderr.write('usage: jobs-child.ts DIR URL\n');
    process.exit(2);
  }
  await child(dir, url);
}
