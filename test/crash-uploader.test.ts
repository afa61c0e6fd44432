// Crash isolation of the uploader (issue 10 §6): the real uploader worker killed mid-upload is
// restarted, calls made meanwhile wait for the new one, calls in flight are rejected (not left
// hanging), and every sealed chunk ends up in the store exactly once, as its own content.
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import t from 'tap';
import { chunkHeader } from '../src/spool/format.js';
import { UPLOADER_LIMITS, UploaderSupervisor } from '../src/spool/uploader-supervisor.js';
import { LocalStore } from '../src/store/local.js';

const LC3 = { kind: 'lc3', frameUs: 10000, sampleRate: 16000, frameBytes: 30 } as const;

function sealed(spool: string, name: string, seed: number): Buffer {
  const frames = 200;
  const body = Array.from({ length: frames }, (_, k) => Buffer.concat([Buffer.from([30, 0]), Buffer.alloc(30, (k + seed) & 0xff)]));
  const buf = Buffer.concat([chunkHeader(LC3, frames), ...body]);
  mkdirSync(dirname(join(spool, 'sealed', name)), { recursive: true });
  writeFileSync(join(spool, 'sealed', name), buf);
  return buf;
}

function filesUnder(dir: string): string[] {
  try {
    return readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((d) => d.isFile())
      .map((d) => join(d.parentPath, d.name));
  } catch {
    return [];
  }
}

t.test('killed mid-upload, restarted; every chunk stored once with its content', async (t) => {
  const dir = t.testdir({ spool: {}, store: {} });
  const spool = join(dir, 'spool');
  const chunks = new Map<string, Buffer>();
  for (let i = 0; i < 300; i++) {
    const name = `chunks/u${i % 7}/c${i % 3}/${1_760_000_000 + i}.000.lc3`;
    chunks.set(name, sealed(spool, name, i));
  }
  const crashes: { code: number; restarts: number }[] = [];
  const restarted: number[] = [];
  const sup = new UploaderSupervisor({
    data: { dir: spool, store: { STORE: 'local', STORE_DIR: join(dir, 'store') }, rescanMs: 0, concurrency: 4 },
    minBackoffMs: 50,
    onCrash: (c) => crashes.push(c),
    onRestarted: (r) => restarted.push(r.ms),
  });
  await sup.start();
  t.teardown(async () => {
    sup.state.stopping = true;
    try {
      await sup.worker.terminate();
    } catch {
      // already stopped
    }
  });
  // The first worker has scanned the spool and is uploading: kill it in the middle.
  const first = sup.worker;
  t.equal(first.resourceLimits?.maxYoungGenerationSizeMb, UPLOADER_LIMITS.maxYoungGenerationSizeMb, 'the uploader runs with its young generation capped');
  const inFlight = sup.api.drain(60_000);
  await new Promise((r) => setTimeout(r, 30));
  const before = (await sup.api.stats()).uploads_ok;
  await first.terminate();
  await t.rejects(inFlight, /uploader thread exited/, 'a call in flight on the dead worker is rejected, not left hanging');
  // A call made during the restart waits for the new worker.
  const during = await sup.api.stats();
  t.ok(sup.worker !== first, 'a new worker');
  t.equal(sup.worker.resourceLimits?.maxYoungGenerationSizeMb, UPLOADER_LIMITS.maxYoungGenerationSizeMb, 'so does a restarted one');
  t.equal(crashes.length, 1, 'one crash reported');
  t.equal(restarted.length, 1, `restarted in ${restarted[0]} ms`);
  t.type(during.uploads_ok, 'number', 'the new worker answers');
  t.ok(before < chunks.size, `killed mid-upload: ${before} of ${chunks.size} uploaded before`);
  const r = await sup.api.drain(60_000);
  t.equal(r.remaining, 0, 'the new worker finished the rest');
  const store = new LocalStore(join(dir, 'store'));
  const stored = (await store.list('chunks/')).map((o) => o.name).sort();
  t.same(stored, [...chunks.keys()].sort(), 'every chunk stored once, under its own name (no second copy)');
  for (const [name, content] of chunks) if (!(await store.read(name)).equals(content)) t.fail(`${name}: content differs`);
  t.same(filesUnder(join(spool, 'sealed')), [], 'the spool is empty: everything confirmed');

  // A second crash: restarted again (backoff grows), still answering.
  await sup.worker.terminate();
  t.equal((await sup.api.drain(1000)).remaining, 0);
  t.equal(crashes.length, 2);
  t.ok(crashes[1]!.restarts === 2, 'restarts are counted');

  // An intended stop is not a crash.
  sup.state.stopping = true;
  await sup.api.close();
  await sup.worker.terminate();
  await new Promise((r) => setTimeout(r, 100));
  t.equal(crashes.length, 2, 'no restart after a stop');
  await t.rejects(sup.api.stats(), /uploader stopped/);
});
