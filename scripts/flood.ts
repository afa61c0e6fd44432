// Connection flood (issue 10 §7): 20,000 connection attempts and 500 slow handshakes against a
// live service (a child process) while honest ack=1 sessions stream. Prints what the attempts
// got (101 up to MAX_CONNECTIONS, then 503; TCP past MAX_CONNECTIONS + 1024 closed at accept),
// how long the slow handshakes lived (HANDSHAKE_TIMEOUT_MS, then 408), honest bytes lost (must
// be 0) and the service's RSS before, at the peak and after. Exits 1 when the service died,
// honest audio was lost, a slow handshake outlived its deadline by far, or RSS was unbounded.
//   npm run build:ts && node dist/scripts/flood.js [--attempts 20000] [--slow 500]
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';
import { startService } from './lib/service.js';
import { formatFlood, runFlood } from './lib/wire-flood.js';
import { HonestStreams } from './lib/wire-fuzz.js';

const { values: a } = parseArgs({
  options: {
    attempts: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '1000' },
    slow: { type: 'string', default: '500' },
    honest: { type: 'string', default: '8' },
    'max-connections': { type: 'string', default: '2000' },
    'handshake-timeout-ms': { type: 'string', default: '3000' },
    'max-rss-mib': { type: 'string', default: '1024' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (a.help) {
  console.log('usage: flood [--attempts N] [--concurrency C] [--slow S] [--honest H] [--max-connections M] [--handshake-timeout-ms T] [--max-rss-mib R]');
  process.exit(0);
}
const num = (name: string, v: string | undefined, min: number) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min} (got ${v})`);
  return n;
};
const attempts = num('attempts', a.attempts, 1);
const concurrency = num('concurrency', a.concurrency, 1);
const slow = num('slow', a.slow, 0);
const honestN = num('honest', a.honest, 1);
const maxConn = num('max-connections', a['max-connections'], 1);
const hsMs = num('handshake-timeout-ms', a['handshake-timeout-ms'], 100);
const maxRss = num('max-rss-mib', a['max-rss-mib'], 1);

const users = Object.fromEntries(Array.from({ length: honestN }, (_, i) => [`honest${i}`, { private_cloud_sync: true }]));
const svc = await startService({
  settings: { default: { private_cloud_sync: false }, users },
  env: { SHARDS: '2', MAX_CONNECTIONS: String(maxConn), HANDSHAKE_TIMEOUT_MS: String(hsMs), LOG_LEVEL: 'error' },
});
let exited: number | string | undefined;
void svc.exited.then((v) => (exited = v));
const honest = new HonestStreams(svc.port, honestN);
await honest.start();
await new Promise((r) => setTimeout(r, 1000));
const mib = (b: number | undefined) => (b ?? 0) / 2 ** 20;
const rssBefore = mib(svc.rss());
let rssPeak = rssBefore;
console.log(`service pid ${svc.pid} on :${svc.port}: MAX_CONNECTIONS=${maxConn}, HANDSHAKE_TIMEOUT_MS=${hsMs}; ${attempts} attempts at ${concurrency} at once, ${slow} slow handshakes, ${honestN} honest sessions`);
const f = await runFlood({ port: svc.port, attempts, concurrency, slow, slowDeadlineMs: hsMs * 3 + 5000, sample: () => (rssPeak = Math.max(rssPeak, mib(svc.rss()))) });
// Still serving: a new session opens once the flood is gone.
const after = await new Promise<string>((resolve) => {
  const ws = new WebSocket(`ws://127.0.0.1:${svc.port}/v1/audio/stream?uid=after`);
  ws.once('open', () => (ws.close(), resolve('opened')));
  ws.once('error', (e) => resolve(`failed: ${e.message}`));
});
const h = await honest.stop();
await new Promise((r) => setTimeout(r, 2000));
const rssAfter = mib(svc.rss());
console.log(formatFlood(f));
console.log(`honest frames lost:  ${h.lostBytes} bytes (${h.sessions} ack=1 sessions sent ${h.sentBytes} bytes, ${h.ackedBytes} acknowledged); closed early: ${JSON.stringify(h.unexpectedCloses)}`);
console.log(`a new session after the flood: ${after}`);
console.log(`service RSS: ${rssBefore.toFixed(0)} MiB before, ${rssPeak.toFixed(0)} MiB at the peak, ${rssAfter.toFixed(0)} MiB after; ${exited === undefined ? 'alive' : `EXITED (${exited})`}`);
if (exited === undefined) {
  const rejected = (await svc.scrape()).filter((m) => m.name === 'pusher_rejected_total').map((m) => `${m.labels.reason}=${m.value}`);
  console.log(`pusher_rejected_total: ${rejected.join(', ')}`);
}
const slowOk = f.slow.closedByServer === f.slow.opened && f.slow.maxMs < hsMs + 3000;
const ok = exited === undefined && h.lostBytes === 0 && Object.keys(h.unexpectedCloses).length === 0 && after === 'opened' && slowOk && rssPeak < maxRss;
await svc.stop();
console.log(ok ? 'PASS' : 'FAIL');
process.exit(ok ? 0 : 1);
