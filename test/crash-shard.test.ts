// Crash isolation of a shard (issue 10 §6): 200 ack=1 sessions stream over two shards; one shard
// is killed mid-stream. Only its sessions see 1011 (the others keep streaming), its restart time
// is measured, and every byte acknowledged to any session — on the dead shard too — is stored.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { LocalStore } from '../src/store/local.js';
import { audioMsg, startTestService, until } from './support/service.js';

const N = 200;

interface S {
  uid: string;
  shard: number;
  ws: WebSocket;
  sent: number;
  acked: number;
  closeCode?: number;
}

t.test(`a shard killed under ${N} sessions: only its sessions see 1011, nothing acknowledged is lost`, async (t) => {
  const dir = t.testdir({});
  const settings = join(dir, 'settings.json');
  writeFileSync(settings, JSON.stringify({ default: { private_cloud_sync: true } }));
  const svc = await startTestService({ SHARDS: '2', SETTINGS_FILE: settings, CHUNK_SECONDS: '2' });
  t.teardown(() => svc.close());
  const sessions: S[] = await Promise.all(
    Array.from({ length: N }, (_, i) => {
      const uid = `crash${i}`;
      const ws = new WebSocket(`ws://127.0.0.1:${svc.port}/v1/trigger/listen?uid=${uid}&sample_rate=8000&codec=pcm16&ack=1`);
      const s: S = { uid, shard: svc.server.supervisor.pick(uid).index, ws, sent: 0, acked: 0 };
      ws.on('message', (d: Buffer) => {
        if (d.readUInt32LE(0) === 202) s.acked = (JSON.parse(d.subarray(4).toString()) as { bytes: number }).bytes;
      });
      ws.on('close', (code) => (s.closeCode ??= code));
      return new Promise<S>((resolve, reject) => {
        ws.once('open', () => resolve(s));
        ws.once('error', reject);
      });
    }),
  );
  const victims = sessions.filter((s) => s.shard === 0);
  const others = sessions.filter((s) => s.shard === 1);
  t.ok(victims.length > N / 4 && others.length > N / 4, `sessions on both shards (${victims.length} / ${others.length})`);
  const pcm = Buffer.alloc(1600, 0x22); // 100 ms at 8 kHz
  const tick = setInterval(() => {
    for (const s of sessions) {
      if (s.ws.readyState !== WebSocket.OPEN) continue;
      s.ws.send(audioMsg(Date.now() / 1000, pcm));
      s.sent += pcm.length;
    }
  }, 100);
  t.teardown(() => clearInterval(tick));
  await until(() => sessions.every((s) => s.acked > 0), 30000, 'every session acknowledged at least once');
  await new Promise((r) => setTimeout(r, 2000)); // mid-stream: a few commits and a sealed chunk behind each

  const killedAt = Date.now();
  await svc.server.supervisor.shards[0]!.worker.terminate(); // as if the thread died
  await until(() => victims.every((s) => s.closeCode !== undefined), 15000, "the dead shard's sessions closed");
  t.same([...new Set(victims.map((s) => s.closeCode))], [1011], "the dead shard's sessions got 1011");
  await until(() => svc.server.supervisor.shards[0]!.up, 60000, 'shard 0 restarted');
  const restartMs = Date.now() - killedAt;
  t.ok(restartMs < 60000, `shard 0 back up in ${restartMs} ms`);
  t.equal(others.filter((s) => s.closeCode !== undefined).length, 0, 'no session on the other shard was closed');
  const ackedBefore = others.map((s) => s.acked);
  await new Promise((r) => setTimeout(r, 1000));
  t.ok(others.every((s, i) => s.acked > ackedBefore[i]!), 'and they kept streaming (new acks after the crash)');

  // Stop streaming; let the survivors' last bytes be acknowledged, then close them.
  clearInterval(tick);
  await until(() => others.every((s) => s.acked === s.sent), 15000, 'survivors fully acknowledged');
  for (const s of others) s.ws.close();
  await until(() => svc.server.connections.size === 0, 15000, 'all sessions closed');

  // Everything acknowledged is stored: the victims' from the recovered journal, the others' as sealed.
  const store = new LocalStore(join(svc.dir, 'store'));
  const storedBytes = async (uid: string) => (await store.list(`chunks/${uid}/`)).reduce((n, o) => n + Number(o.metadata.frames ?? 0) * 2, 0);
  let lost = 0;
  let acked = 0;
  await until(
    async () => {
      lost = 0;
      acked = 0;
      for (const s of sessions) {
        acked += s.acked;
        lost += Math.max(0, s.acked - (await storedBytes(s.uid)));
      }
      return lost === 0;
    },
    60000,
    'every acknowledged byte stored',
  );
  t.equal(lost, 0, `0 of ${acked} acknowledged bytes lost (victims acked ${victims.reduce((n, s) => n + s.acked, 0)})`);
  t.comment(`restart time ${restartMs} ms; ${victims.length} sessions saw 1011, ${others.length} were not affected`);
});
