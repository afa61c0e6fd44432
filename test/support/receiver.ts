// A real HTTP receiver on loopback for webhook, app and job tests: records every request (method,
// path, query, headers, body, arrival time) and answers as told (status, body, delay), or stops
// listening altogether to refuse connections.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface Received {
  method: string;
  path: string;
  query: URLSearchParams;
  contentType: string | undefined;
  body: Buffer;
  at: number;
}

export type Answer = { status: number; body?: string; delayMs?: number };

export interface Receiver {
  readonly port: number;
  readonly requests: Received[];
  url(path: string): string;
  /** How to answer the next requests (default 200 "ok"); a function sees each request. */
  answer(a: Answer | ((r: Received) => Answer)): void;
  /** Requests to `path` so far. */
  to(path: string): Received[];
  /** Stops listening (connections are refused) until listen() again, on the same port. */
  refuse(): Promise<void>;
  listen(): Promise<void>;
  close(): Promise<void>;
}

export async function startReceiver(port = 0): Promise<Receiver> {
  const requests: Received[] = [];
  let answer: Answer | ((r: Received) => Answer) = { status: 200, body: 'ok' };
  const timers = new Set<NodeJS.Timeout>();
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      const u = new URL(req.url ?? '/', 'http://x');
      const r: Received = { method: req.method ?? '', path: u.pathname, query: u.searchParams, contentType: req.headers['content-type'], body: Buffer.concat(parts), at: Date.now() };
      requests.push(r);
      const a = typeof answer === 'function' ? answer(r) : answer;
      const send = () => {
        if (res.destroyed) return;
        res.writeHead(a.status, { 'content-type': 'application/json' });
        res.end(a.body ?? '');
      };
      if (a.delayMs) {
        const t = setTimeout(() => (timers.delete(t), send()), a.delayMs);
        timers.add(t);
      } else send();
    });
  };
  let server: Server = createServer(handle);
  const open = (p: number) => new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(p, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
  });
  const actualPort = await open(port);
  const shut = () =>
    new Promise<void>((resolve) => {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return {
    port: actualPort,
    requests,
    url: (path) => `http://127.0.0.1:${actualPort}${path}`,
    answer: (a) => {
      answer = a;
    },
    to: (path) => requests.filter((r) => r.path === path),
    refuse: shut,
    listen: async () => {
      server = createServer(handle);
      await open(actualPort);
    },
    close: shut,
  };
}
