// The one resolver of thread names (src/server/threads.ts) that /debug/profile, /debug/heap,
// /debug/gc and the per-thread metrics share: names, refusals, restarting shards, remote calls.
import t from 'tap';
import type { MessagePort } from 'node:worker_threads';
import { HttpError } from '../src/server/auth.js';
import { mainThread, remoteThread, ThreadDirectory, type RemoteThreadApi } from '../src/server/threads.js';
import type { Supervisor } from '../src/shard/supervisor.js';

function fakeApi(tag: string): RemoteThreadApi & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    profile: async (s) => (calls.push(`profile ${s}`), `{"tag":"${tag}"}`),
    heapSnapshot: async (port: MessagePort) => {
      calls.push('heap');
      port.postMessage(`{"${tag}":`);
      port.postMessage('1}');
      port.postMessage(null);
    },
    gc: async () => (calls.push('gc'), { heapBefore: 2, heapAfter: 1, ms: 0 }),
    threadStats: () => (calls.push('stats'), { lagP50: 0, lagP99: 0, lagMax: 0, lagSamples: 1, heapUsed: 7, heapTotal: 8, busySeconds: 0, fullGcs: { all: 0, period: 0 } }),
  };
}

t.test('names, live threads, refusals', async (t) => {
  const s0 = fakeApi('shard-0');
  const shards = [
    { index: 0, up: true, api: s0 },
    { index: 1, up: false, api: fakeApi('shard-1') },
  ];
  const up = fakeApi('uploader');
  const dir = new ThreadDirectory({ shards } as unknown as Supervisor, { uploader: remoteThread(() => up) });
  t.same(dir.names(), ['main', 'shard-0', 'shard-1', 'uploader']);
  t.same(dir.live().map((l) => l.name), ['main', 'shard-0', 'uploader'], 'a restarting shard is not live');
  t.equal(dir.resolve('main'), mainThread);
  const err = (f: () => unknown): HttpError => {
    try {
      f();
    } catch (e) {
      return e as HttpError;
    }
    throw new Error('did not throw');
  };
  const unknown = err(() => dir.resolve('shard-7'));
  t.equal(unknown.status, 400);
  t.equal(unknown.message, 'thread must be one of: main, shard-0, shard-1, uploader (got "shard-7")');
  t.match(err(() => dir.resolve('x'.repeat(500), ['all'])).message, /^thread must be all or one of: main, .* \(got "x{40}"\)$/, 'long names are cut in the message');
  for (const bad of ['__proto__', 'constructor', 'shard-01', 'SHARD-0', '']) t.equal(err(() => dir.resolve(bad)).status, 400, `thread=${JSON.stringify(bad)}`);
  const restarting = err(() => dir.resolve('shard-1'));
  t.equal(restarting.status, 503);
  t.match(restarting.message, /shard-1 is restarting/);

  // A worker's control goes over its API: the heap arrives through a MessageChannel, in order.
  const shard = dir.resolve('shard-0');
  t.equal(await shard.profile(0.5), '{"tag":"shard-0"}');
  const pieces: string[] = [];
  await shard.heap((c) => pieces.push(c));
  t.equal(pieces.join(''), '{"shard-0":1}');
  t.same(await shard.gc(), { heapBefore: 2, heapAfter: 1, ms: 0 });
  t.equal((await shard.sample()).heapUsed, 7);
  t.same(s0.calls, ['profile 0.5', 'heap', 'gc', 'stats']);
  t.equal((await dir.resolve('uploader').sample()).heapTotal, 8);
  // A shard that restarted has a new API object: the control asks for the current one each time.
  const s0b = fakeApi('shard-0b');
  shards[0]!.api = s0b;
  t.equal(await shard.profile(1), '{"tag":"shard-0b"}');
});

t.test('main thread control: its own sample and GC', async (t) => {
  const s = await mainThread.sample();
  t.ok(s.heapUsed > 0);
  const gc = await mainThread.gc();
  t.ok(gc.heapAfter > 0 && gc.ms >= 0);
});
