// A full disk, the long version (root: tmpfs mounts). The compiled service (npm run build:ts) runs
// as a child with its spool and its local store on small tmpfs file systems; live PCM sessions
// with ack=1 fill both; the service is left full and quiet for a while; then space frees (the
// file systems grow) and everything must resume by itself. Then the same once more, ended with
// SIGTERM on the full disk and a restart with room (recovery).
//
//   npx tsx scripts/fault-disk-full.ts [--sessions 20] [--spool-mb 24] [--store-mb 2] [--full-s 10] [--drain-s 5]
//
// Prints: acked vs stored bytes, time to recover, CPU while full and quiet, log lines, sessions
// affected (closed), SIGTERM exit time.
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
} from './lib/fault-disk.js';
import { numArg } from './lib/num-arg.js';

const arg = (name: string, dflt: number): number => numArg(name, dflt);

const SESSIONS = arg('sessions', 20);
const SPOOL_MB = arg('spool-mb', 24);
const STORE_MB = arg('store-mb', 2);
const FULL_S = arg('full-s', 10);
const DRAIN_S = arg('drain-s', 5);
const MB = 1 << 20;

async function until(fn: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function figures(ss: Streamer[], storeDir: string, prefix: string): { acked: number; sent: number; stored: number; lost: number } {
  let acked = 0;
  let sent = 0;
  let stored = 0;
  let lost = 0;
  ss.forEach((s, i) => {
    const st = storedPcm(storeDir, `${prefix}${i}`, i);
    acked += s.acked;
    sent += s.sent;
    stored += st.matching;
    lost += Math.max(0, s.acked - st.matching);
  });
  return { acked, sent, stored, lost };
}

async function fillAndResume(base: string): Promise<void> {
  const spoolFs = join(base, 'spoolfs');
  const storeFs = join(base, 'storefs');
  mountTmpfs(spoolFs, SPOOL_MB * MB);
  mountTmpfs(storeFs, STORE_MB * MB);
  const svc = await startService({
    dir: join(base, 'svc'),
    env: { SPOOL_DIR: join(spoolFs, 'spool'), STORE_DIR: join(storeFs, 'store'), SHARDS: '2', DRAIN_TIMEOUT_S: String(DRAIN_S) },
  });
  try {
    const ss = await openStreamers(svc, 'd', SESSIONS);
    const t0 = Date.now();
    await pump(ss, 300_000, async () => (await readyz(svc)).status === 503 && /disk full/.test((await readyz(svc)).reason ?? ''));
    console.log(`1. spool ${SPOOL_MB} MB + store ${STORE_MB} MB on tmpfs, ${SESSIONS} PCM sessions (ack=1)`);
    console.log(`   full after ${((Date.now() - t0) / 1000).toFixed(1)} s; /readyz: ${JSON.stringify(await readyz(svc))}`);
    await pump(ss, 1000);
    const paused = (await svc.scrape()).find((m) => m.name === 'pusher_sockets_paused')?.value ?? 0;
    const cores = await coresOver(svc, FULL_S * 1000);
    console.log(`   full and quiet for ${FULL_S} s: ${cores.toFixed(3)} cores; sockets paused ${paused}; torn journal segments ${tornSegments(join(spoolFs, 'spool')).length}`);
    console.log(`   log lines (warn/error) about ENOSPC so far: ${warnLines(svc.logFile, /ENOSPC/)}`);
    const tf = Date.now();
    resizeTmpfs(storeFs, 4 * SPOOL_MB * MB);
    resizeTmpfs(spoolFs, 4 * SPOOL_MB * MB);
    await until(async () => (await readyz(svc)).status === 200, 120_000, '/readyz to pass');
    const readyMs = Date.now() - tf;
    await pump(ss, 2000);
    await until(() => ss.every((s) => s.acked === s.sent), 120_000, 'all acknowledged');
    const ackedMs = Date.now() - tf;
    await Promise.all(ss.map((s) => new Promise((r) => (s.ws.once('close', r), s.ws.close()))));
    const storeDir = join(storeFs, 'store');
    await until(() => figures(ss, storeDir, 'd').lost === 0, 300_000, 'all stored').catch((e: Error) => console.log(`   ${e.message}`));
    const f = figures(ss, storeDir, 'd');
    console.log(`   space freed: ready again in ${readyMs} ms, every byte sent acknowledged in ${ackedMs} ms`);
    console.log(`   sent ${f.sent} B, acked ${f.acked} B, stored (byte-exact) ${f.stored} B, acked but lost ${f.lost} B; sessions closed by the server: ${ss.filter((s) => s.closed && s.closed.code !== 1000 && s.closed.code !== 1005).length}`);
  } finally {
    await svc.stop();
    unmount(spoolFs);
    unmount(storeFs);
  }
}

async function sigtermWhenFull(base: string): Promise<void> {
  const spoolFs = join(base, 'spoolfs2');
  mountTmpfs(spoolFs, SPOOL_MB * MB);
  const env = { SPOOL_DIR: join(spoolFs, 'spool'), STORE_DIR: join(base, 'store2'), SHARDS: '2', DRAIN_TIMEOUT_S: String(DRAIN_S) };
  const a = await startService({ dir: join(base, 'a'), env: { ...env, STORE_DIR: '/proc/version/store' } });
  try {
    const ss = await openStreamers(a, 'k', SESSIONS);
    await pump(ss, 300_000, async () => (await readyz(a)).status === 503);
    await pump(ss, 1000);
    const t0 = Date.now();
    const code = await a.stop(60_000);
    console.log(`2. SIGTERM on a full spool disk (store unreachable), DRAIN_TIMEOUT_S=${DRAIN_S}: exit ${code} after ${Date.now() - t0} ms; torn journal segments ${tornSegments(join(spoolFs, 'spool')).length}`);
    resizeTmpfs(spoolFs, 4 * SPOOL_MB * MB);
    const tb = Date.now();
    const b = await startService({ dir: join(base, 'b'), env });
    try {
      const storeDir = join(base, 'store2');
      await until(() => figures(ss, storeDir, 'k').lost === 0, 300_000, 'recovered audio stored').catch((e: Error) => console.log(`   ${e.message}`));
      const f = figures(ss, storeDir, 'k');
      console.log(`   restart with room: recovered and stored in ${Date.now() - tb} ms; acked ${f.acked} B, stored ${f.stored} B, acked but lost ${f.lost} B`);
    } finally {
      await b.stop();
    }
  } finally {
    await a.stop();
    unmount(spoolFs);
  }
}

const why = canMount();
if (why) {
  console.error(`fault-disk-full: ${why}`);
  process.exit(2);
}
const base = mkdtempSync(join(tmpdir(), 'lc3p-diskfull-'));
try {
  await fillAndResume(base);
  await sigtermWhenFull(base);
} finally {
  rmSync(base, { recursive: true, force: true });
}
