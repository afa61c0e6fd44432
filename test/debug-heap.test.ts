// /debug/heap: a .heapsnapshot taken inside the named thread and streamed to the client. Live:
// shard, uploader and main snapshots parse as V8 heap snapshots while the service keeps serving.
// Units (fake threads): one snapshot at a time, a failure before the first piece is a JSON error,
// a failure mid-stream aborts the response, a worker that dies mid-snapshot is noticed.
import t, { type Test } from 'tap';
import { createServer, type Server } from 'node:http';
import { DebugRoutes } from '../src/server/debug.js';
import { HttpError } from '../src/server/auth.js';
import { remoteHeap, type ThreadControl, type ThreadDirectory } from '../src/server/threads.js';
import { startService } from '../scripts/lib/service.js';

const auth = { authorization: 'Bearer adm' };

interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; edge_fields: string[] }; node_count: number; edge_count: number };
  nodes: number[];
  edges: number[];
  strings: string[];
}

// The compiled service (npm run build:ts): from source every worker would carry the TypeScript
// loader in its heap, ten times what a shard holds in production, and take as long to walk.
t.test('live: heap snapshots of a shard, the uploader and main parse as .heapsnapshot', async (t) => {
  const svc = await startService({ env: { ADMIN_TOKEN: 'adm', SHARDS: '2', SLOTS_PER_SHARD: '64' } });
  t.teardown(() => svc.stop());
  // While shard-0 is paused for its snapshot, the main thread answers; afterwards the pause shows
  // as shard-0's event-loop lag (the snapshot is taken inside that thread, on its loop).
  let done = false;
  const pending = fetch(`${svc.baseUrl}/debug/heap?thread=shard-0`, { headers: auth }).then(async (r) => {
    await r.arrayBuffer();
    done = true;
  });
  await new Promise((r) => setTimeout(r, 200));
  const t0 = Date.now();
  t.equal((await fetch(`${svc.baseUrl}/healthz`)).status, 200);
  t.notOk(done, `/healthz answered in ${Date.now() - t0} ms while shard-0's snapshot was being taken`);
  await pending;
  const metrics = await (await fetch(`${svc.baseUrl}/metrics`)).text();
  const stall = Number(/^pusher_event_loop_lag_seconds\{thread="shard-0",quantile="1"\} (\S+)$/m.exec(metrics)?.[1]);
  const other = Number(/^pusher_event_loop_lag_seconds\{thread="shard-1",quantile="1"\} (\S+)$/m.exec(metrics)?.[1]);
  t.ok(stall > 0.05 && stall > other, `the snapshot's pause is shard-0's maximum lag: ${stall} s (shard-1: ${other} s)`);

  const snapshots: Record<string, HeapSnapshot> = {};
  for (const thread of ['shard-0', 'uploader', 'main', 'shard-1']) {
    const t0 = Date.now();
    const res = await fetch(`${svc.baseUrl}/debug/heap?thread=${thread}`, { headers: auth });
    t.equal(res.status, 200, thread);
    t.match(res.headers.get('content-disposition'), new RegExp(`filename="${thread}\\.heapsnapshot"`));
    const body = await res.text();
    const snap = (snapshots[thread] = JSON.parse(body) as HeapSnapshot);
    const keys = Object.keys(snap);
    t.ok(['snapshot', 'nodes', 'edges', 'strings'].every((k) => keys.includes(k)), `${thread}: top-level keys ${keys.join(', ')}`);
    t.equal(snap.nodes.length, snap.snapshot.node_count * snap.snapshot.meta.node_fields.length, `${thread}: ${snap.snapshot.node_count} nodes, all there`);
    t.equal(snap.edges.length, snap.snapshot.edge_count * snap.snapshot.meta.edge_fields.length, `${thread}: ${snap.snapshot.edge_count} edges, all there`);
    t.ok(snap.strings.length > 100, `${thread}: ${snap.strings.length} strings, ${(body.length / 1e6).toFixed(1)} MB in ${Date.now() - t0} ms`);
  }
  // Each snapshot is of its own thread: only main loads the IngestServer (main also loads the
  // shard-core module, for parseFaults, so "ShardCore" alone would not tell them apart).
  const has = (thread: string, s: string) => snapshots[thread]!.strings.includes(s);
  t.ok(has('main', 'IngestServer'), 'main holds the IngestServer');
  t.ok(has('shard-1', 'ShardCore') && !has('shard-1', 'IngestServer'), 'shard-1 holds a ShardCore, no IngestServer');
  t.ok(has('uploader', 'Uploader') && !has('uploader', 'IngestServer') && !has('uploader', 'ShardCore'), 'the uploader holds the Uploader, no IngestServer or ShardCore');
  t.equal((await fetch(`${svc.baseUrl}/healthz`)).status, 200, 'still serving');
  t.equal(await svc.stop(), 0, 'exit 0 after the drain');
});

/** A DebugRoutes on a real HTTP server whose only thread is `main` = `thread`. */
async function routes(t: Test, thread: ThreadControl): Promise<string> {
  const dir = {
    resolve: (name: string) => {
      if (name !== 'main') throw new HttpError(400, 'bad_request', 'thread must be one of: main');
      return thread;
    },
    live: () => [{ name: 'main', thread }],
  } as unknown as ThreadDirectory;
  const debug = new DebugRoutes(dir, 'adm');
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    debug.handle(req, url, res).then(
      (handled) => {
        if (!handled) res.writeHead(404).end();
      },
      (err: Error) => {
        const status = err instanceof HttpError ? err.status : 500;
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ error: err.message }));
      },
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const addr = server.address();
  return `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
}

const unused = { profile: async () => '{}', gc: async () => ({ heapBefore: 1, heapAfter: 1, ms: 0 }), sample: async () => ({ lagP50: 0, lagP99: 0, lagMax: 0, lagSamples: 0, heapUsed: 0, heapTotal: 0, busySeconds: 0, fullGcs: { all: 0, period: 0 } }) };

t.test('one snapshot at a time (409), errors before and after the first piece', async (t) => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let mode: 'slow' | 'fail-first' | 'fail-mid' = 'slow';
  const base = await routes(t, {
    ...unused,
    heap: async (write) => {
      if (mode === 'fail-first') throw new Error('inspector refused');
      write('{"snapshot":');
      if (mode === 'fail-mid') throw new Error('thread died');
      await gate;
      write('{}}');
    },
  });
  const first = fetch(`${base}/debug/heap?thread=main`, { headers: auth });
  // The first request is parked inside heap() (its headers are out): a second one is refused.
  const r1 = await first;
  t.equal(r1.status, 200, 'the first snapshot started streaming');
  const second = await fetch(`${base}/debug/heap?thread=main`, { headers: auth });
  t.equal(second.status, 409);
  t.match(((await second.json()) as { error: string }).error, /a heap snapshot is being taken/);
  release();
  t.equal(await r1.text(), '{"snapshot":{}}', 'the pieces arrive in order, whole');
  mode = 'fail-first';
  const failed = await fetch(`${base}/debug/heap?thread=main`, { headers: auth });
  t.equal(failed.status, 500, 'a failure before the first piece is a plain error response');
  t.match(((await failed.json()) as { error: string }).error, /inspector refused/);
  mode = 'fail-mid';
  const cut = await fetch(`${base}/debug/heap?thread=main`, { headers: auth });
  t.equal(cut.status, 200);
  await t.rejects(cut.text(), 'a failure mid-stream aborts the body: no valid-looking truncated snapshot');
  mode = 'slow';
  release();
  t.equal((await fetch(`${base}/debug/heap?thread=main`, { headers: auth })).status, 200, 'free again after the failures');
  t.equal((await fetch(`${base}/debug/nothing`, { headers: auth })).status, 404, 'not a debug route');
});

t.test('remoteHeap: pieces in order up to the end marker; a worker gone mid-snapshot is an error', async (t) => {
  const got: string[] = [];
  // What heapSnapshotToPort does in a worker (a real in-thread snapshot of this test process,
  // TypeScript loader and all, takes a minute here; the live test covers the real thing).
  await remoteHeap(async (port) => {
    for (const piece of ['{"snapshot":{},', '"nodes":[],"edges":[],', '"strings":[]}']) port.postMessage(piece);
    port.postMessage(null);
  }, (c) => got.push(c));
  t.same(JSON.parse(got.join('')), { snapshot: {}, nodes: [], edges: [], strings: [] }, `${got.length} pieces in order make one snapshot`);
  await t.rejects(
    remoteHeap(async (port) => {
      port.postMessage('{"snapshot":');
      port.close(); // what a crashing worker's end does
    }, () => undefined),
    /went away during the heap snapshot/,
  );
  await t.rejects(remoteHeap(async () => Promise.reject(new Error('no such method')), () => undefined), /no such method/);
});
