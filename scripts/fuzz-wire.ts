// Wire fuzzer (issue 10 §7): mutated handshakes, frame-level violations and message-level
// mutations over raw TCP against a live service (a child process), while honest ack=1 sessions
// stream at real time. Prints inputs sent, crashes (must be 0), honest frames lost (must be 0)
// and the close codes seen; exits 1 when a must-be-0 figure is not.
//   npm run build:ts && node dist/scripts/fuzz-wire.js --cases 100000 --concurrency 48
import { parseArgs } from 'node:util';
import { metricSum } from './lib/prom.js';
import { startService } from './lib/service.js';
import { formatFuzz, HonestStreams, runWireFuzz } from './lib/wire-fuzz.js';

const { values: a } = parseArgs({
  options: {
    cases: { type: 'string', default: '100000' },
    concurrency: { type: 'string', default: '48' },
    seed: { type: 'string', default: String(Date.now() % 1e9) },
    honest: { type: 'string', default: '8' },
    shards: { type: 'string', default: '2' },
    'by-kind': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (a.help) {
  console.log('usage: fuzz-wire [--cases N] [--concurrency C] [--seed S] [--honest H] [--shards N] [--by-kind]');
  process.exit(0);
}
const num = (name: string, v: string | undefined, min: number) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min} (got ${v})`);
  return n;
};
const cases = num('cases', a.cases, 1);
const concurrency = num('concurrency', a.concurrency, 1);
const seed = num('seed', a.seed, 0);
const honestN = num('honest', a.honest, 1);

const users = Object.fromEntries(Array.from({ length: honestN }, (_, i) => [`honest${i}`, { private_cloud_sync: true }]));
const svc = await startService({
  // Fuzzed sessions are not spooled (their audio is noise); the honest ones are, with acks.
  settings: { default: { private_cloud_sync: false }, users },
  env: { SHARDS: a.shards!, HANDSHAKE_TIMEOUT_MS: '1000', LOG_LEVEL: 'error' },
});
let exited: number | string | undefined;
void svc.exited.then((v) => (exited = v));
console.log(`service pid ${svc.pid} on :${svc.port}; seed ${seed}; ${cases} cases at concurrency ${concurrency}; ${honestN} honest sessions`);
const honest = new HonestStreams(svc.port, honestN);
await honest.start();
const f = await runWireFuzz({ port: svc.port, cases, seed, concurrency, closeWaitMs: 5000, onProgress: (n) => n % 10000 === 0 && console.log(`  ${n} cases, RSS ${((svc.rss() ?? 0) / 2 ** 20).toFixed(0)} MiB`) });
const h = await honest.stop();
const m = exited === undefined ? await svc.scrape() : [];
const restarts = metricSum(m, 'pusher_shard_restarts_total') ?? 0;
const crashes = (exited === undefined ? 0 : 1) + restarts;
console.log(formatFuzz(f, h, crashes));
console.log(`service: ${exited === undefined ? 'alive' : `EXITED (${exited})`}, shard restarts ${restarts}, RSS ${((svc.rss() ?? 0) / 2 ** 20).toFixed(0)} MiB`);
if (a['by-kind']) for (const [k, o] of Object.entries(f.byKind).sort()) console.log(`  ${k.padEnd(36)} ${JSON.stringify(o)}`);
for (const h of f.hungSamples) console.log(`  hung: ${h.kind} status ${h.status} close ${h.closeCode}: ${JSON.stringify(Buffer.from(h.bytes, 'base64').toString('latin1').slice(0, 300))}`);
if (exited !== undefined) console.log(svc.logTail(40));
await svc.stop();
const ok = crashes === 0 && h.lostBytes === 0 && Object.keys(h.unexpectedCloses).length === 0 && f.hung === 0;
console.log(ok ? 'PASS' : 'FAIL');
process.exit(ok ? 0 : 1);
