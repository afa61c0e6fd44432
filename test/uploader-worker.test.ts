// The uploader worker: its body in-thread (covered), and the real worker thread over comlink.
import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { MessageChannel, Worker } from 'node:worker_threads';
import { LocalStore } from '../src/store/local.js';
import { announceSealed } from '../src/spool/channel.js';
import { chunkHeader } from '../src/spool/format.js';
import { SpoolQuota } from '../src/spool/quota.js';
import { createUploaderWorker, type UploaderApi } from '../src/spool/index.js';
import { Comlink, nodeEndpoint } from '../src/util/comlink-node.js';
import { workerUrl } from '../src/util/worker-url.js';

const LC3 = { kind: 'lc3', frameUs: 10000, sampleRate: 16000, frameBytes: 30 } as const;

function sealedLc3(dir: string, name: string, frames: number): Buffer {
  const body = Array.from({ length: frames }, (_, k) => Buffer.concat([Buffer.from([30, 0]), Buffer.alloc(30, k)]));
  const buf = Buffer.concat([chunkHeader(LC3, frames), ...body]);
  mkdirSync(dirname(join(dir, 'sealed', name)), { recursive: true });
  writeFileSync(join(dir, 'sealed', name), buf);
  return buf;
}

t.test('worker body: store from the config, quota from the SAB, errors to the events port', async (t) => {
  const dir = t.testdir({ spool: {}, store: {} });
  const spool = join(dir, 'spool');
  const content = sealedLc3(spool, 'chunks/u/c/1.000.lc3', 4);
  mkdirSync(join(spool, 'sealed', 'chunks', 'u', 'c', '2.000.lc3'), { recursive: true }); // a directory: cannot be uploaded
  const quota = new SpoolQuota(1 << 20);
  quota.add(content.length);
  const { port1, port2 } = new MessageChannel();
  const events: unknown[] = [];
  port2.on('message', (m) => events.push(m));
  t.teardown(() => port2.close());
  const api = await createUploaderWorker({ dir: spool, store: { STORE: 'local', STORE_DIR: join(dir, 'store') }, quotaSab: quota.sab, events: port1, rescanMs: 0, concurrency: 2 });
  api.notify('chunks/u/c/2.000.lc3'); // scans only find files; told about it anyway
  const res = await api.drain(300);
  t.same(res, { uploaded: 1, remaining: 1 });
  t.ok((await new LocalStore(join(dir, 'store')).read('chunks/u/c/1.000.lc3')).equals(content));
  t.equal(quota.bytes, 0);
  for (let i = 0; i < 1000 && events.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.match(events[0], { type: 'uploader-error', name: 'chunks/u/c/2.000.lc3', message: /EISDIR|directory/ });
  api.notify('chunks/u/c/3.000.lc3', 10);
  t.equal(api.stats().uploads_ok, 1);
  await api.close();

  // Without an events port errors only count.
  const quiet = await createUploaderWorker({ dir: spool, store: { STORE: 'local', STORE_DIR: join(dir, 'store') }, rescanMs: 0 });
  quiet.notify('chunks/u/c/2.000.lc3');
  await quiet.drain(100);
  t.ok(quiet.stats().uploads_error >= 1);
  await quiet.close();
  await t.rejects(createUploaderWorker({ dir: spool, store: { STORE: 'nope' } }), /STORE must be/);
});

t.test('the real worker thread: comlink control, wakes up on sealed-chunk announcements', async (t) => {
  const dir = t.testdir({ spool: {}, store: {} });
  const spool = join(dir, 'spool');
  const w = new Worker(workerUrl('uploader'), {
    workerData: { dir: spool, store: { STORE: 'local', STORE_DIR: join(dir, 'store') }, rescanMs: 0 },
  });
  t.teardown(() => w.terminate());
  const api = Comlink.wrap<UploaderApi>(nodeEndpoint(w));
  t.equal((await api.stats()).spool_files, 0);
  const content = sealedLc3(spool, 'chunks/u/c/5.000.lc3', 3);
  announceSealed({ name: 'chunks/u/c/5.000.lc3', bytes: content.length });
  const store = new LocalStore(join(dir, 'store'));
  for (let i = 0; i < 2000 && !(await store.stat('chunks/u/c/5.000.lc3')); i++) await new Promise((r) => setTimeout(r, 10));
  t.ok((await store.read('chunks/u/c/5.000.lc3')).equals(content), 'uploaded by the worker');
  t.same(await api.drain(1000), { uploaded: 0, remaining: 0 });
  t.equal((await api.stats()).uploads_ok, 1);
  await api.close();
  api[Comlink.releaseProxy]();
});
