// A crashed shard, the long version of test/crash-shard.test.ts: the service runs in-process (from
// source, test/support/service.ts) with two shards; N ack=1 PCM sessions stream at real time; a
// shard's worker is killed K times mid-stream, alternating shards, S seconds apart. After each
// kill: only that shard's sessions may see 1011, the other shard's sessions must keep streaming
// (not closed, new acks), the shard must serve again (a new session on it acknowledged), and the
// dead shard's sessions reconnect (new uids on the same shard), as clients would. At the end every
// acknowledged byte of every session must be in the store, byte for byte.
//
//   npx tsx scripts/fault-crash.ts [--sessions 200] [--kills 5] [--interval-s 10] [--seconds T]
//
// --seconds: how long the audio streams in all (default: (kills + 1) × interval; the kills come
// first, S seconds apart, then it streams on until T). Prints a row per kill, the acked and stored
// bytes, and PASS or FAIL (exit 1). Every wait has a deadline and says what it waited for.
import { WebSocket } from 'ws';
import { startTestService, type TestService } from '../test/support/service.js';
import { pcmChunk, storedPcm } from './lib/fault-disk.js';
import { ensureTsWorkers } from './lib/ts-workers.js';
import { sleep, until, within } from './lib/wait.js';
import { numArg } from './lib/num-arg.js';

ensureTsWorkers(import.meta.url); // from source: re-run under a loader the shard workers get too

const arg = (name: string, dflt: number): number => numArg(name, dflt);

const SESSIONS = arg('sessions', 200);
const KILLS = arg('kills', 5);
const INTERVAL_S = arg('interval-s', 10);
const SECONDS = arg('seconds', (KILLS + 1) * INTERVAL_S);
const SHARDS = 2;
/** 100 ms of PCM16 at 8 kHz per message, every 100 ms: real time. */
const MSG_BYTES = 1600;

interface Conn {
  /** Connection number: its uid is `crash${n}`, its audio pcmChunk(n, offset). */
  n: number;
  uid: string;
  shard: number;
  ws: WebSocket;
  sent: number;
  acked: number;
  firstAckAt?: number;
  closeCode?: number;
  closedAt?: number;
}

interface KillRow {
  kill: number;
  shard: number;
  /** Open sessions on the killed shard / on the other one when it was killed. */
  onShard: number;
  others: number;
  /** Sessions of the killed shard that got 1011, or another code (or none). */
  saw1011: number;
  otherCode: number;
  /** Sessions NOT on the killed shard that were closed after the kill (1011 or anything). */
  closedElsewhere: number;
  /** Of the other shard's sessions: closed, or no new ack in the second after the kill. */
  disturbed: number;
  /** Kill → the shard is up again (its worker answers). */
  upMs: number;
  /** Kill → the first acknowledgement to a new session on the shard. */
  servesMs: number;
}

const all: Conn[] = [];
let next = 0;

function connect(svc: TestService, shard?: number): Promise<Conn> {
  let n = next++;
  if (shard !== undefined) while (svc.server.supervisor.pick(`crash${n}`).index !== shard) n = next++;
  const uid = `crash${n}`;
  const ws = new WebSocket(`ws://127.0.0.1:${svc.port}/v1/audio/stream?uid=${uid}&codec=pcm16&sample_rate=8000&ack=1`);
  const c: Conn = { n, uid, shard: svc.server.supervisor.pick(uid).index, ws, sent: 0, acked: 0 };
  all.push(c);
  ws.on('message', (d: Buffer) => {
    if (d.length < 4 || d.readUInt32LE(0) !== 202) return;
    c.acked = (JSON.parse(d.subarray(4).toString()) as { bytes: number }).bytes;
    c.firstAckAt ??= Date.now();
  });
  ws.on('close', (code) => {
    c.closeCode ??= code;
    c.closedAt ??= Date.now();
  });
  ws.on('error', () => undefined); // a refused or reset socket shows as its close
  return within(
    new Promise<Conn>((resolve, reject) => {
      ws.once('open', () => resolve(c));
      ws.once('close', (code) => reject(new Error(`session ${uid} closed (${code}) before it opened`)));
    }),
    30_000,
    `session ${uid} to open`,
  );
}

const open = (c: Conn): boolean => c.closeCode === undefined && c.ws.readyState === WebSocket.OPEN;

function send(): void {
  for (const c of all) {
    if (!open(c) || c.ws.bufferedAmount > 64 * 1024) continue;
    c.ws.send(pcmChunk(c.n, c.sent, MSG_BYTES));
    c.sent += MSG_BYTES;
  }
}

async function killOnce(svc: TestService, kill: number): Promise<KillRow> {
  const shard = (kill - 1) % SHARDS;
  const h = svc.server.supervisor.shards[shard]!;
  const victims = all.filter((c) => open(c) && c.shard === shard);
  const others = all.filter((c) => open(c) && c.shard !== shard);
  const ackedBefore = others.map((c) => c.acked);
  const killedAt = Date.now();
  await within(h.worker.terminate(), 15_000, `shard ${shard}'s worker to terminate`); // as if the thread died
  await until(() => victims.every((c) => c.closeCode !== undefined), 15_000, `the ${victims.length} sessions of dead shard ${shard} to be closed`, {
    last: () => `${victims.filter((c) => c.closeCode === undefined).length} still open`,
  });
  await until(() => h.up, 60_000, `shard ${shard} to be restarted`, { everyMs: 10 });
  const upMs = Date.now() - killedAt;
  // The dead shard's clients reconnect (a new uid each, on the same shard) and stream again.
  const fresh = await Promise.all(victims.map(() => connect(svc, shard)));
  await until(() => fresh.some((c) => c.firstAckAt !== undefined), 30_000, `a first acknowledgement from restarted shard ${shard}`, { everyMs: 10 });
  const servesMs = Math.min(...fresh.flatMap((c) => (c.firstAckAt ? [c.firstAckAt - killedAt] : [])));
  await until(() => fresh.every((c) => c.acked > 0), 30_000, `every reconnected session on shard ${shard} acknowledged`, {
    last: () => `${fresh.filter((c) => c.acked === 0).length} of ${fresh.length} without an ack`,
  });
  await sleep(Math.max(0, killedAt + 1000 - Date.now())); // at least a second after the kill for the others' acks
  const closedElsewhere = all.filter((c) => c.shard !== shard && c.closedAt !== undefined && c.closedAt >= killedAt).length;
  const disturbed = others.filter((c, i) => c.closeCode !== undefined || c.acked <= ackedBefore[i]!).length;
  return {
    kill,
    shard,
    onShard: victims.length,
    others: others.length,
    saw1011: victims.filter((c) => c.closeCode === 1011).length,
    otherCode: victims.filter((c) => c.closeCode !== 1011).length,
    closedElsewhere,
    disturbed,
    upMs,
    servesMs,
  };
}

function rowOk(r: KillRow): boolean {
  return r.onShard > 0 && r.saw1011 === r.onShard && r.otherCode === 0 && r.closedElsewhere === 0 && r.disturbed === 0;
}

function printTable(rows: KillRow[]): void {
  const head = ['kill', 'shard', 'its sessions', 'saw 1011', 'other code', 'others', 'closed elsewhere', 'others disturbed', 'up (ms)', 'serves (ms)', 'ok'];
  const body = rows.map((r) => [r.kill, r.shard, r.onShard, r.saw1011, r.otherCode, r.others, r.closedElsewhere, r.disturbed, r.upMs, r.servesMs, rowOk(r) ? 'yes' : 'NO'].map(String));
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => `   ${cells.map((c, i) => c.padStart(w[i]!)).join('  ')}`;
  console.log(line(head));
  for (const b of body) console.log(line(b));
}

/** Per connection: acked bytes not in the store (byte-exact); a connection once complete is not read again. */
async function lostBytes(svc: TestService, ms: number): Promise<{ acked: number; sent: number; stored: number; lost: number; short: string[] }> {
  const storeDir = `${svc.dir}/store`;
  const done = new Map<Conn, number>();
  let f = { acked: 0, sent: 0, stored: 0, lost: 0, short: [] as string[] };
  const measure = (): boolean => {
    f = { acked: 0, sent: 0, stored: 0, lost: 0, short: [] };
    for (const c of all) {
      let matching = done.get(c);
      if (matching === undefined) {
        matching = storedPcm(storeDir, c.uid, c.n).matching;
        if (matching >= c.acked) done.set(c, matching);
      }
      f.acked += c.acked;
      f.sent += c.sent;
      f.stored += matching;
      const lost = Math.max(0, c.acked - matching);
      f.lost += lost;
      if (lost) f.short.push(`${c.uid} (shard ${c.shard}, closed ${c.closeCode}): ${lost} of ${c.acked} acked bytes`);
    }
    return f.lost === 0;
  };
  await until(measure, ms, 'every acknowledged byte in the store', { everyMs: 2000, last: () => `${f.lost} bytes in ${f.short.length} sessions` }).catch((e: Error) =>
    console.log(`   ${e.message}`),
  );
  return f;
}

const rows: KillRow[] = [];
const failures: string[] = [];
const svc = await within(startTestService({ SHARDS: String(SHARDS), CHUNK_SECONDS: '2', LOG_LEVEL: 'error' }), 120_000, 'the in-process service to start');
let tick: NodeJS.Timeout | undefined;
try {
  const t0 = Date.now();
  await Promise.all(Array.from({ length: SESSIONS }, () => connect(svc)));
  const per = [0, 1].map((s) => all.filter((c) => c.shard === s).length);
  console.log(`1. ${SESSIONS} PCM sessions (ack=1, 8 kHz, real time) over ${SHARDS} shards (${per.join(' / ')}), in-process service on 127.0.0.1:${svc.port}`);
  if (per.some((p) => p === 0)) throw new Error(`every session is on one shard (${per.join(' / ')}): use more --sessions`);
  const streamStart = Date.now();
  tick = setInterval(send, 100);
  await until(() => all.every((c) => c.acked > 0), 30_000, 'every session acknowledged at least once', {
    last: () => `${all.filter((c) => c.acked === 0).length} without an ack`,
  });
  console.log(`2. ${KILLS} kills, alternating shards, ${INTERVAL_S} s apart (streaming ${SECONDS} s in all)`);
  for (let k = 1; k <= KILLS; k++) {
    await sleep(Math.max(0, streamStart + k * INTERVAL_S * 1000 - Date.now()));
    const r = await killOnce(svc, k);
    rows.push(r);
    console.log(
      `   kill ${k}: shard ${r.shard}: ${r.saw1011} of its ${r.onShard} sessions saw 1011 (${r.otherCode} another code); ` +
        `other shard: ${r.disturbed} of ${r.others} disturbed, ${r.closedElsewhere} closed; up in ${r.upMs} ms, serving in ${r.servesMs} ms`,
    );
  }
  await sleep(Math.max(0, streamStart + SECONDS * 1000 - Date.now()));
  clearInterval(tick);
  const openNow = all.filter(open);
  await until(() => openNow.every((c) => c.acked === c.sent), 30_000, 'the open sessions fully acknowledged', {
    last: () => `${openNow.filter((c) => c.acked !== c.sent).length} behind`,
  });
  await Promise.all(openNow.map((c) => within(new Promise((r) => (c.ws.once('close', r), c.ws.close())), 15_000, `session ${c.uid} to close`)));
  await until(() => svc.server.connections.size === 0, 15_000, 'the service to have no session left');
  const restarts = await within(svc.metricSum('pusher_shard_restarts_total'), 10_000, 'a /metrics scrape');
  const f = await lostBytes(svc, 180_000);
  console.log(`3. ${all.length} sessions in all (${all.length - SESSIONS} reconnects); pusher_shard_restarts_total ${restarts}; ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  console.log(`   sent ${f.sent} B, acked ${f.acked} B, stored (byte-exact) ${f.stored} B, acked but lost ${f.lost} B`);
  for (const s of f.short.slice(0, 10)) console.log(`     ${s}`);
  if (f.lost) failures.push(`${f.lost} acknowledged bytes lost`);
  if (restarts !== KILLS) failures.push(`pusher_shard_restarts_total is ${restarts}, ${KILLS} kills`);
  for (const r of rows) if (!rowOk(r)) failures.push(`kill ${r.kill} (shard ${r.shard}) touched sessions it should not have, or missed some`);
} catch (e) {
  failures.push((e as Error).message);
} finally {
  clearInterval(tick);
  for (const c of all) c.ws.terminate();
  await within(svc.close(), 60_000, 'the service to stop').catch((e: Error) => failures.push(e.message));
}
console.log('4. per kill:');
printTable(rows);
if (rows.length) {
  const up = rows.map((r) => r.upMs);
  console.log(`   restart: up in ${Math.min(...up)}..${Math.max(...up)} ms, serving in ${Math.min(...rows.map((r) => r.servesMs))}..${Math.max(...rows.map((r) => r.servesMs))} ms`);
}
if (rows.length < KILLS) failures.push(`${rows.length} of ${KILLS} kills done`);
console.log(failures.length ? `FAIL: ${failures.join('; ')}` : `PASS: ${KILLS} kills; only the killed shard's sessions saw 1011, 0 disturbed elsewhere, 0 acknowledged bytes lost`);
process.exit(failures.length ? 1 : 0);
