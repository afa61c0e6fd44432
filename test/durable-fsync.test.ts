// A failing fsync through a live shard (the spool's I/O seam, LC3_PUSHER_TEST_SPOOL_FAULTS):
// one failed journal fdatasync costs nothing — the batch is rewritten into a new segment, every
// acked and every sent frame is stored, no session is closed; when the rewrite fails too, the
// shard closes its sessions with 1011 and everything acknowledged before is still stored.
import t from 'tap';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { WebSocket } from 'ws';
import { checkStoredFrames, testLc3Frames } from '../scripts/lib/lc3-store.js';
import { closed, startTestService, until, type TestService } from './support/service.js';

const frames = testLc3Frames();

interface Client {
  ws: WebSocket;
  acked: number;
  sent: number;
  close: Promise<{ code: number; reason: string }>;
}

async function clients(svc: TestService, prefix: string, n: number): Promise<Client[]> {
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const ws = await svc.ws(`/v1/audio/stream?uid=${prefix}${i}&ack=1`);
      const c: Client = { ws, acked: 0, sent: 0, close: closed(ws) };
      ws.on('message', (d: Buffer) => {
        if (d.readUInt32LE(0) === 202) c.acked = (JSON.parse(d.subarray(4).toString()) as { frames: number }).frames;
      });
      return c;
    }),
  );
}

/** Sends 20 frames per client every 20 ms for `ms` (to the clients still open). */
async function streamFor(cs: Client[], ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    for (const c of cs) {
      if (c.ws.readyState !== c.ws.OPEN) continue;
      for (let k = 0; k < 20; k++) c.ws.send(frames[(c.sent + k) % frames.length]!);
      c.sent += 20;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Frames of the first `n` sent that are not in the store, in order, byte for byte. */
function missingOf(storeDir: string, uid: string, n: number, where?: string[]): number {
  const c = checkStoredFrames(storeDir, uid, n, frames);
  // Which frames: a tail not yet uploaded and a hole or duplicate in the middle read differently.
  if (c.missing && where) where.push(`${uid}: ${c.missing} of ${n} from frame ${c.first}; ${c.stored} stored`);
  return c.missing;
}

t.test('one failed journal fsync: rewritten into a new segment; nothing lost, no session closed', async (t) => {
  const rules = join(t.testdir(), 'spool-faults');
  // One shard: the one injected failure is its, and the rewrite (its next commit) succeeds.
  const svc = await startTestService({ CHUNK_SECONDS: '1', FSYNC_MS: '50', SHARDS: '1' }, { LC3_PUSHER_TEST_FAULTS: '1', LC3_PUSHER_TEST_SPOOL_FAULTS: rules });
  t.teardown(() => svc.close());
  const cs = await clients(svc, 'f', 6);
  await streamFor(cs, 500);
  writeFileSync(rules, 'journal datasync EIO 1\n');
  await until(() => readFileSync(rules, 'utf8').includes('EIO 0'), 10_000, 'the injected fsync failure to happen');
  await streamFor(cs, 500);
  await until(() => cs.every((c) => c.acked === c.sent), 20_000, 'every frame acknowledged');
  t.equal(await svc.metric('pusher_spool_fsync_failures_total', { shard: '0' }), 1, 'counted');
  t.ok(cs.every((c) => c.ws.readyState === c.ws.OPEN), 'no session was closed');
  await Promise.all(cs.map((c) => (c.ws.close(), c.close)));
  const storeDir = join(svc.dir, 'store');
  let missing = 0;
  let where: string[] = [];
  await until(() => {
    where = [];
    missing = cs.reduce((m, c, i) => m + missingOf(storeDir, `f${i}`, c.sent, where), 0);
    return missing === 0;
  }, 60_000, 'all frames stored').catch(() => undefined);
  const sent = cs.reduce((s, c) => s + c.sent, 0);
  t.equal(missing, 0, `acked = sent = stored (${sent} frames in ${cs.length} sessions)${where.length ? `: ${where.join('; ')}` : ''}`);
});

t.test('the rewrite fails too: sessions see 1011; every frame acknowledged before is stored', async (t) => {
  const rules = join(t.testdir(), 'spool-faults');
  const svc = await startTestService({ CHUNK_SECONDS: '1', FSYNC_MS: '50' }, { LC3_PUSHER_TEST_FAULTS: '1', LC3_PUSHER_TEST_SPOOL_FAULTS: rules });
  t.teardown(() => svc.close());
  const cs = await clients(svc, 'g', 6);
  await streamFor(cs, 500);
  await until(() => cs.every((c) => c.acked === c.sent), 20_000, 'the first frames acknowledged');
  writeFileSync(rules, 'journal datasync EIO always\n');
  await streamFor(cs, 1000);
  const codes = await Promise.race([
    Promise.all(cs.map((c) => c.close)),
    new Promise<never>((_, rej) => setTimeout(() => rej(new Error('timed out after 10 s waiting for the 1011 closes')), 10_000)),
  ]);
  t.same(new Set(codes.map((c) => c.code)), new Set([1011]), 'every session closed with 1011');
  t.match(codes[0]!.reason, /fsync/);
  const acked = cs.map((c) => c.acked);
  t.ok(cs.every((c) => c.acked < c.sent), 'nothing sent after the fault was acknowledged');
  rmSync(rules); // the disk works again: what the shard still held becomes durable and is stored
  const storeDir = join(svc.dir, 'store');
  let missing = 0;
  await until(() => {
    missing = cs.reduce((m, _c, i) => m + missingOf(storeDir, `g${i}`, acked[i]!), 0);
    return missing === 0;
  }, 30_000, 'acked frames stored').catch(() => undefined);
  t.equal(missing, 0, `every acknowledged frame is stored (${acked.reduce((a, b) => a + b, 0)} frames)`);
  t.ok((await svc.metricSum('pusher_spool_fsync_failures_total')) >= 2, 'counted');
});
