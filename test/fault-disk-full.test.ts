// A full disk, for real (root: tmpfs mounts): the compiled service as a child, its spool and its
// local store on small tmpfs file systems that live sessions fill. Nothing acknowledged is lost,
// no journal record is torn, sessions are paused, /readyz says why, a paused service with quiet
// clients uses almost no CPU, the condition is logged a few times (not ten times a second), all
// resumes by itself when space frees, and SIGTERM on a full disk exits within DRAIN_TIMEOUT_S.
// Long version: scripts/fault-disk-full.ts.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  canMount,
  coresOver,
  mountTmpfs,
  openStreamers,
  pump,
  readyz,
  resizeTmpfs,
  startService,
  storedPcm,
  tornSegments,
  unmount,
  warnLines,
  type Streamer,
} from '../scripts/lib/fault-disk.js';

const why = canMount();
// Not root: say so and why (mounting a tmpfs needs it), rather than pass without testing.
const skip = why ? `full-disk tests skipped: ${why}` : false;
{
  const MB = 1 << 20;

  /** A temp dir outside the tap fixtures (tmpfs mounts in it); teardown stops `stops` first, then unmounts. */
  function workdir(t: { teardown(fn: () => Promise<void>): void }, mounts: string[], stops: (() => Promise<unknown>)[]): string {
    const base = mkdtempSync(join(tmpdir(), 'lc3p-diskfull-'));
    t.teardown(async () => {
      for (const s of stops) await s().catch(() => undefined);
      for (const m of mounts) unmount(m);
      rmSync(base, { recursive: true, force: true });
    });
    return base;
  }

  async function until(fn: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
    const end = Date.now() + ms;
    while (!(await fn())) {
      if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  const lost = (ss: Streamer[], storeDir: string, prefix: string) =>
    ss.reduce((n, s, i) => n + Math.max(0, s.acked - storedPcm(storeDir, `${prefix}${i}`, i).matching), 0);

  t.test('spool and store fill up: paused, not ready, quiet, logged rarely; all resumes; nothing acked is lost', { skip }, async (t) => {
    const mounts: string[] = [];
    const stops: (() => Promise<unknown>)[] = [];
    const base = workdir(t, mounts, stops);
    const spoolFs = join(base, 'spoolfs');
    const storeFs = join(base, 'storefs');
    mountTmpfs(spoolFs, 3 * MB);
    mounts.push(spoolFs);
    mountTmpfs(storeFs, 1 * MB);
    mounts.push(storeFs);
    const svc = await startService({
      dir: join(base, 'svc'),
      env: { SPOOL_DIR: join(spoolFs, 'spool'), STORE_DIR: join(storeFs, 'store'), SHARDS: '2', FSYNC_MS: '100', CHUNK_SECONDS: '1', DRAIN_TIMEOUT_S: '5' },
    });
    stops.push(() => svc.stop());
    const ss = await openStreamers(svc, 'd', 6);
    let ready = { status: 200 } as { status: number; reason?: string };
    await pump(ss, 30_000, async () => (ready = await readyz(svc)).status === 503 && /disk full/.test(ready.reason ?? ''));
    t.equal(ready.status, 503, '/readyz fails');
    t.match(ready.reason, /spool disk full \(ENOSPC/, 'and says why');
    await pump(ss, 1000); // keep pushing: the server stops reading
    const paused = (await svc.scrape()).find((m) => m.name === 'pusher_sockets_paused')?.value ?? 0;
    t.ok(paused > 0, `sockets paused: TCP backpressure reaches the clients (${paused})`);
    t.ok(ss.every((s) => s.closed === null), 'no session closed');
    const cores = await coresOver(svc, 3000); // quiet clients, paused service
    t.ok(cores < 0.2, `a paused service with quiet clients is idle (${cores.toFixed(3)} cores)`);
    t.same(tornSegments(join(spoolFs, 'spool')), [], 'no journal record torn');
    const lines = warnLines(svc.logFile, /ENOSPC/);
    t.ok(lines >= 1 && lines <= 12, `the condition is logged, rate-limited (${lines} lines)`);
    const ackedAtFull = ss.reduce((n, s) => n + s.acked, 0);
    // Space frees: both file systems grow; everything resumes by itself.
    const t0 = Date.now();
    resizeTmpfs(storeFs, 64 * MB);
    resizeTmpfs(spoolFs, 64 * MB);
    await until(async () => (await readyz(svc)).status === 200, 30_000, '/readyz to pass again');
    const recoverMs = Date.now() - t0;
    await pump(ss, 1000);
    await until(() => ss.every((s) => s.acked === s.sent), 30_000, 'every byte sent to be acknowledged');
    t.ok(ss.reduce((n, s) => n + s.acked, 0) > ackedAtFull, 'acks resumed');
    await Promise.all(ss.map((s) => new Promise((r) => (s.ws.once('close', r), s.ws.close()))));
    const storeDir = join(storeFs, 'store');
    await until(() => lost(ss, storeDir, 'd') === 0, 60_000, 'everything acknowledged to be stored').catch(() => undefined);
    const acked = ss.reduce((n, s) => n + s.acked, 0);
    t.equal(lost(ss, storeDir, 'd'), 0, `acked ${acked} bytes, all stored byte for byte (ready again after ${recoverMs} ms)`);
  });

  t.test('SIGTERM on a full disk exits within DRAIN_TIMEOUT_S; the next start recovers every acked byte', { skip }, async (t) => {
    const mounts: string[] = [];
    const stops: (() => Promise<unknown>)[] = [];
    const base = workdir(t, mounts, stops);
    const spoolFs = join(base, 'spoolfs');
    mountTmpfs(spoolFs, 3 * MB);
    mounts.push(spoolFs);
    // The store is unreachable (a path under a file), so nothing leaves the spool until the restart.
    const env = { SPOOL_DIR: join(spoolFs, 'spool'), STORE_DIR: join(base, 'store'), SHARDS: '2', FSYNC_MS: '100', CHUNK_SECONDS: '1', DRAIN_TIMEOUT_S: '4' };
    const a = await startService({ dir: join(base, 'a'), env: { ...env, STORE_DIR: '/proc/version/store' } });
    stops.push(() => a.stop());
    const ss = await openStreamers(a, 'k', 4);
    await pump(ss, 30_000, async () => (await readyz(a)).status === 503);
    await pump(ss, 500);
    const t0 = Date.now();
    const code = await a.stop(20_000);
    const ms = Date.now() - t0;
    t.equal(code, 0, 'clean exit');
    // The drain spends what is left of its window trying to upload (the store is unreachable), so
    // the exit comes at the deadline: allow the process's own exit on a busy machine.
    t.ok(ms < 4750, `exited at DRAIN_TIMEOUT_S=4 (${ms} ms after SIGTERM, the exit included)`);
    if (code !== 0 || ms >= 4750) t.comment(a.logTail(30));
    t.same(tornSegments(join(spoolFs, 'spool')), [], 'no journal record torn');
    resizeTmpfs(spoolFs, 64 * MB);
    const b = await startService({ dir: join(base, 'b'), env });
    stops.push(() => b.stop());
    const storeDir = join(base, 'store');
    await until(() => lost(ss, storeDir, 'k') === 0, 60_000, 'recovered audio to be stored').catch(() => undefined);
    const acked = ss.reduce((n, s) => n + s.acked, 0);
    t.ok(acked > 0);
    t.equal(lost(ss, storeDir, 'k'), 0, `every acked byte (${acked}) recovered and stored`);
  });
}

{
  const MB = 1 << 20;
  t.test('the local store fills up: uploads back off (no storm, idle CPU), rate-limited logs; drained when space frees', { skip }, async (t) => {
    const base = mkdtempSync(join(tmpdir(), 'lc3p-storefull-'));
    const storeFs = join(base, 'storefs');
    let svc: Awaited<ReturnType<typeof startService>> | undefined;
    t.teardown(async () => {
      await svc?.stop().catch(() => undefined);
      unmount(storeFs);
      rmSync(base, { recursive: true, force: true });
    });
    mountTmpfs(storeFs, 1 * MB);
    svc = await startService({ dir: join(base, 'svc'), env: { STORE_DIR: join(storeFs, 'store'), SHARDS: '2', FSYNC_MS: '100', CHUNK_SECONDS: '1' } });
    const s = svc;
    const ss = await openStreamers(s, 's', 4);
    const errors = async () => (await s.scrape()).find((m) => m.name === 'pusher_uploads_total' && m.labels.result === 'error')?.value ?? 0;
    await pump(ss, 30_000, async () => (await errors()) > 0);
    await pump(ss, 2000);
    t.ok(await errors(), 'uploads fail: the store is full');
    for (const c of ss) c.ws.close();
    const e0 = await errors();
    const cores = await coresOver(s, 4000);
    const e1 = await errors();
    t.ok(e1 - e0 < 40, `uploads back off: ${e1 - e0} failed attempts in 4 s`);
    t.ok(cores < 0.2, `idle meanwhile (${cores.toFixed(3)} cores)`);
    const lines = warnLines(s.logFile, /ENOSPC/);
    t.ok(lines >= 1 && lines <= 12, `logged, rate-limited (${lines} lines)`);
    resizeTmpfs(storeFs, 64 * MB);
    const storeDir = join(storeFs, 'store');
    const lostNow = () => ss.reduce((n, c, i) => n + Math.max(0, c.acked - storedPcm(storeDir, `s${i}`, i).matching), 0);
    const end = Date.now() + 60_000;
    while (lostNow() > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    t.equal(lostNow(), 0, `space freed: every acked byte uploaded (${ss.reduce((n, c) => n + c.acked, 0)} B)`);
  });
}
