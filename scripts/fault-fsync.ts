// A failing fsync, the long version of test/durable-fsync.test.ts: the service runs in-process
// (from source, test/support/service.ts; under tsx the script re-runs itself under the test
// suite's TS loader so the shard workers load too: scripts/lib/ts-workers.ts) with LC3_PUSHER_TEST_FAULTS=1 and a rule file in
// LC3_PUSHER_TEST_SPOOL_FAULTS, read by the spool's I/O seam (src/spool/io.ts faultInjectingIo).
//
// 1. single: N ack=1 LC3 sessions stream (10× real time); K single journal fdatasync failures
//    are injected, spread over --seconds. Each costs nothing: the batch is rewritten into a new
//    segment, acks resume, no session is closed; at the end every frame sent is acknowledged and
//    stored, byte for byte, and pusher_spool_fsync_failures_total counted each failure.
// 2. rewrite: N new sessions; every journal fdatasync fails from then on ("the rewrite fails
//    too"): every session must be closed with 1011, nothing sent after the fault acknowledged;
//    then the disk works again (the rule file is removed): every frame acknowledged before is
//    stored and a new session is acknowledged again.
//
//   npx tsx scripts/fault-fsync.ts [--sessions 20] [--faults 5] [--seconds 30] [--mode both|single|rewrite] [--shards 1]
//
// --shards 1 (default) because the one rule file is read by every shard: with more shards, one
// "EIO 1" line can be taken by two shards at the same moment (counted = injected + 1). Prints a
// row per fault, the failures injected and counted, sessions closed with 1011, acked vs stored
// frames, and PASS or FAIL (exit 1). Every wait has a deadline and says what it waited for.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WebSocket } from 'ws';
import { closed, startTestService, type TestService } from '../test/support/service.js';
import { checkStoredFrames, testLc3Frames } from './lib/lc3-store.js';
import { ensureTsWorkers } from './lib/ts-workers.js';
import { sleep, until, within } from './lib/wait.js';
import { numArg } from './lib/num-arg.js';

ensureTsWorkers(import.meta.url); // from source: re-run under a loader the shard workers get too

const arg = (name: string, dflt: number): number => numArg(name, dflt);

function choice<T extends string>(name: string, values: readonly T[], dflt: T): T {
  const i = process.argv.indexOf(`--${name}`);
  const v = i > 0 ? process.argv[i + 1] : dflt;
  if (!(values as readonly (string | undefined)[]).includes(v)) throw new Error(`--${name} must be one of ${values.join(', ')}, got ${v}`);
  return v as T;
}

const SESSIONS = arg('sessions', 20);
const FAULTS = arg('faults', 5);
const SECONDS = arg('seconds', 30);
const SHARDS = arg('shards', 1);
const MODE = choice('mode', ['both', 'single', 'rewrite'] as const, 'both');
const frames = testLc3Frames();

interface Client {
  uid: string;
  ws: WebSocket;
  acked: number;
  sent: number;
  lastAckAt: number;
  close: Promise<{ code: number; reason: string }>;
  closeCode?: number;
  closeReason?: string;
}

async function clients(svc: TestService, prefix: string, n: number): Promise<Client[]> {
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const uid = `${prefix}${i}`;
      const ws = await within(svc.ws(`/v1/audio/stream?uid=${uid}&ack=1`), 30_000, `session ${uid} to open`);
      const c: Client = { uid, ws, acked: 0, sent: 0, lastAckAt: 0, close: closed(ws) };
      void c.close.then((x) => ((c.closeCode = x.code), (c.closeReason = x.reason)));
      ws.on('message', (d: Buffer) => {
        if (d.length < 4 || d.readUInt32LE(0) !== 202) return;
        c.acked = (JSON.parse(d.subarray(4).toString()) as { frames: number }).frames;
        c.lastAckAt = Date.now();
      });
      return c;
    }),
  );
}

/** Sends 20 frames per open client every 20 ms (10× real time) until stopped. */
function stream(cs: Client[]): { stop(): void } {
  const t = setInterval(() => {
    for (const c of cs) {
      if (c.ws.readyState !== c.ws.OPEN || c.ws.bufferedAmount > 64 * 1024) continue;
      for (let k = 0; k < 20; k++) c.ws.send(frames[(c.sent + k) % frames.length]!);
      c.sent += 20;
    }
  }, 20);
  return { stop: () => clearInterval(t) };
}

/** Acked (or sent) frames not in the store; a session once complete is not read again. */
async function missingFrames(svc: TestService, cs: Client[], want: (c: Client) => number, ms: number, what: string): Promise<{ missing: number; where: string[] }> {
  const storeDir = join(svc.dir, 'store');
  const done = new Set<Client>();
  let r = { missing: 0, where: [] as string[] };
  const measure = (): boolean => {
    r = { missing: 0, where: [] };
    for (const c of cs) {
      if (done.has(c)) continue;
      const n = want(c);
      const k = checkStoredFrames(storeDir, c.uid, n, frames);
      if (k.missing === 0) done.add(c);
      else {
        r.missing += k.missing;
        r.where.push(`${c.uid}: ${k.missing} of ${n} from frame ${k.first}; ${k.stored} stored`);
      }
    }
    return r.missing === 0;
  };
  await until(measure, ms, what, { everyMs: 1000, last: () => `${r.missing} frames in ${r.where.length} sessions` }).catch((e: Error) => console.log(`   ${e.message}`));
  return r;
}

/** pusher_spool_fsync_failures_total over every shard (a bounded scrape). */
const failuresCounted = (svc: TestService): Promise<number> => within(svc.metricSum('pusher_spool_fsync_failures_total'), 10_000, 'a /metrics scrape');
const sum = (cs: Client[], f: (c: Client) => number): number => cs.reduce((n, c) => n + f(c), 0);
const failures: string[] = [];
const check = (ok: boolean, what: string): void => void (ok || failures.push(what));

interface FaultRow {
  fault: number;
  atS: number;
  /** Rule written → the seam took it (the count went to 0). */
  takenMs: number;
  /** Rule written → every open session had an ack newer than the failure. */
  acksResumeMs: number;
  counted: number;
  closed: number;
}

async function single(svc: TestService, rules: string): Promise<FaultRow[]> {
  const rows: FaultRow[] = [];
  const cs = await clients(svc, 'f', SESSIONS);
  const base = await failuresCounted(svc);
  console.log(`1. single: ${SESSIONS} LC3 sessions (ack=1, 10× real time), ${FAULTS} single journal fdatasync failures over ${SECONDS} s, ${SHARDS} shard(s)`);
  const t0 = Date.now();
  const s = stream(cs);
  try {
    for (let k = 1; k <= FAULTS; k++) {
      await sleep(Math.max(0, t0 + (k * SECONDS * 1000) / (FAULTS + 1) - Date.now()));
      const at = Date.now();
      writeFileSync(rules, 'journal datasync EIO 1\n');
      await until(() => readFileSync(rules, 'utf8').includes('EIO 0'), 10_000, `injected fsync failure ${k} to be taken by the spool`, { everyMs: 10 });
      const takenMs = Date.now() - at;
      const taken = Date.now();
      await until(() => cs.every((c) => c.closeCode !== undefined || c.lastAckAt > taken), 10_000, `every session acknowledged again after failure ${k}`, {
        everyMs: 10,
        last: () => `${cs.filter((c) => c.closeCode === undefined && c.lastAckAt <= taken).length} waiting`,
      });
      const row = { fault: k, atS: (at - t0) / 1000, takenMs, acksResumeMs: Date.now() - at, counted: (await failuresCounted(svc)) - base, closed: cs.filter((c) => c.closeCode !== undefined).length };
      rows.push(row);
      console.log(`   fault ${k} at ${row.atS.toFixed(1)} s: taken in ${row.takenMs} ms, every session acked again in ${row.acksResumeMs} ms; counted ${row.counted}, sessions closed ${row.closed}`);
    }
    await sleep(Math.max(0, t0 + SECONDS * 1000 - Date.now()));
  } finally {
    s.stop();
  }
  await until(() => cs.every((c) => c.acked === c.sent || c.closeCode !== undefined), 30_000, 'every frame sent acknowledged', {
    last: () => `${cs.filter((c) => c.acked !== c.sent).length} sessions behind`,
  });
  const counted = (await failuresCounted(svc)) - base;
  const closedN = cs.filter((c) => c.closeCode !== undefined).length;
  await Promise.all(cs.map((c) => (c.ws.close(), within(c.close, 15_000, `session ${c.uid} to close`))));
  const sent = sum(cs, (c) => c.sent);
  const acked = sum(cs, (c) => c.acked);
  const m = await missingFrames(svc, cs, (c) => c.sent, 120_000, 'every frame sent in the store');
  console.log(`   injected ${rows.length}, counted (pusher_spool_fsync_failures_total) ${counted}; sessions closed by the server ${closedN} (1011: ${cs.filter((c) => c.closeCode === 1011).length})`);
  console.log(`   frames sent ${sent}, acked ${acked}, stored (byte-exact, in order) ${sent - m.missing}, missing ${m.missing}`);
  for (const w of m.where.slice(0, 10)) console.log(`     ${w}`);
  check(rows.length === FAULTS, `single: ${rows.length} of ${FAULTS} failures injected`);
  check(SHARDS === 1 ? counted === rows.length : counted >= rows.length && counted <= rows.length * SHARDS, `single: ${counted} failures counted, ${rows.length} injected`);
  check(closedN === 0, `single: ${closedN} sessions closed by the server`);
  check(acked === sent, `single: ${acked} of ${sent} frames acknowledged`);
  check(m.missing === 0, `single: ${m.missing} frames missing from the store`);
  return rows;
}

async function rewrite(svc: TestService, rules: string): Promise<void> {
  const cs = await clients(svc, 'g', SESSIONS);
  const base = await failuresCounted(svc);
  console.log(`2. rewrite: ${SESSIONS} new sessions; then every journal fdatasync fails (the rewrite fails too)`);
  let s = stream(cs);
  await sleep(2000);
  s.stop();
  await until(() => cs.every((c) => c.acked === c.sent), 30_000, 'the first frames acknowledged');
  s = stream(cs);
  const at = Date.now();
  writeFileSync(rules, 'journal datasync EIO always\n');
  let codes: { code: number; reason: string }[] = [];
  try {
    codes = await within(Promise.all(cs.map((c) => c.close)), 15_000, 'every session to be closed (1011) after the rewrite failed');
  } catch (e) {
    failures.push(`rewrite: ${(e as Error).message} (${cs.filter((c) => c.closeCode === undefined).length} still open)`);
  } finally {
    s.stop();
  }
  const closedMs = Date.now() - at;
  const n1011 = codes.filter((c) => c.code === 1011).length;
  const reasons = [...new Set(codes.map((c) => c.reason))];
  const ackedAfter = cs.filter((c) => c.acked >= c.sent).length;
  const counted = (await failuresCounted(svc)) - base;
  rmSync(rules); // the disk works again: what the shard still held becomes durable and is stored
  const acked = sum(cs, (c) => c.acked);
  const sent = sum(cs, (c) => c.sent);
  const m = await missingFrames(svc, cs, (c) => c.acked, 120_000, 'every acknowledged frame in the store');
  // And the service takes audio again: a new session is acknowledged.
  const [probe] = await clients(svc, 'h', 1);
  const p = stream([probe!]);
  let again = true;
  await until(() => probe!.acked > 0, 15_000, 'a new session to be acknowledged once the disk works again').catch((e: Error) => {
    again = false;
    console.log(`   ${e.message}`);
  });
  p.stop();
  probe!.ws.close();
  console.log(`   closed: ${codes.length} of ${cs.length} sessions in ${closedMs} ms, ${n1011} with 1011 (reason ${JSON.stringify(reasons)}); sessions with everything acked: ${ackedAfter}`);
  console.log(`   failures counted ${counted}; frames sent ${sent}, acked ${acked}, acked frames stored ${acked - m.missing}, missing ${m.missing}; a new session acknowledged afterwards: ${again ? 'yes' : 'NO'}`);
  for (const w of m.where.slice(0, 10)) console.log(`     ${w}`);
  check(n1011 === cs.length, `rewrite: ${n1011} of ${cs.length} sessions closed with 1011`);
  check(reasons.every((r) => /fsync/.test(r)), `rewrite: close reasons ${JSON.stringify(reasons)} do not name the fsync`);
  check(ackedAfter === 0, `rewrite: ${ackedAfter} sessions had frames sent after the fault acknowledged`);
  check(counted >= 2, `rewrite: ${counted} failures counted (at least the failure and its rewrite)`);
  check(m.missing === 0, `rewrite: ${m.missing} acknowledged frames missing from the store`);
  check(again, 'rewrite: no new session acknowledged after the disk worked again');
}

const dir = mkdtempSync(join(tmpdir(), 'lc3p-fsync-'));
const rules = join(dir, 'spool-faults');
const svc = await within(
  startTestService({ SHARDS: String(SHARDS), CHUNK_SECONDS: '1', FSYNC_MS: '50', LOG_LEVEL: 'error' }, { LC3_PUSHER_TEST_FAULTS: '1', LC3_PUSHER_TEST_SPOOL_FAULTS: rules }),
  120_000,
  'the in-process service to start',
);
let rows: FaultRow[] = [];
try {
  const t0 = Date.now();
  if (MODE !== 'rewrite') rows = await single(svc, rules);
  if (MODE !== 'single') await rewrite(svc, rules);
  console.log(`   ${((Date.now() - t0) / 1000).toFixed(0)} s in all`);
} catch (e) {
  failures.push((e as Error).message);
} finally {
  rmSync(rules, { force: true });
  await within(svc.close(), 60_000, 'the service to stop').catch((e: Error) => failures.push(e.message));
  rmSync(dir, { recursive: true, force: true });
}
if (rows.length) {
  console.log('3. per fault:');
  const head = ['fault', 'at (s)', 'taken (ms)', 'acks resume (ms)', 'counted', 'closed'];
  const body = rows.map((r) => [r.fault, r.atS.toFixed(1), r.takenMs, r.acksResumeMs, r.counted, r.closed].map(String));
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  for (const cells of [head, ...body]) console.log(`   ${cells.map((c, i) => c.padStart(w[i]!)).join('  ')}`);
}
console.log(failures.length ? `FAIL: ${failures.join('; ')}` : `PASS: ${MODE === 'rewrite' ? '' : `${FAULTS} single fsync failures cost nothing; `}${MODE === 'single' ? '' : 'a failed rewrite closed every session with 1011; '}0 acknowledged frames lost`);
process.exit(failures.length ? 1 : 0);
