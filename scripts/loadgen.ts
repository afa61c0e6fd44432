// Load generator CLI (the logic is scripts/lib/loadgen.ts, also used by the chaos harness and
// the benchmarks). Loopback only; every run is bounded by --seconds and stops by itself.
//
//   node dist/scripts/loadgen.js --port 8080 --workload device:1000 --seconds 60 [--churn 20-60 --kill 0.2]
//   node dist/scripts/loadgen.js --port 8080 --workload omi-leak1:30,omi-leak2:15 --seconds 60
//   node dist/scripts/loadgen.js --port 8080 --workload device:200@max --seconds 10   (blast)
//
// --workload NAME[+ack][:CLIENTS][@RATE|@max],…  NAME ∈ device, omi-leak1, omi-leak2, idle
// --json: prints JSON lines (events, then {"event":"result",…}) for a parent process to read.
// LC3_LOADGEN_EXIT_AFTER_MS=N (a test fault): the process exits with code 3 after N ms, without a
// result — how the benchmark tests prove that a generator that dies ends a run instead of hanging it.
import { parseArgs } from 'node:util';
import { LoadGen, parseChurn, parseGroups, type LoadStats } from './lib/loadgen.js';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    workload: { type: 'string', default: 'device:100' },
    seconds: { type: 'string', default: '30' },
    churn: { type: 'string', default: 'off' },
    kill: { type: 'string', default: '0.2' },
    ramp: { type: 'string', default: '2' },
    tick: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});

if (values.help || !values.port) {
  console.log(`usage: node dist/scripts/loadgen.js --port PORT [--workload device:100] [--seconds 30]
       [--churn MIN-MAX seconds | off] [--kill FRACTION] [--ramp SECONDS] [--tick MS] [--json]
workloads: device (lc3_fs1030, 100 msgs/s), device+ack, omi-leak1 (103 then 104 every 0.1 s),
           omi-leak2 (103 then 16,000 B of PCM every 0.05 s), idle; :N clients, @RATE msgs/s or @max`);
  process.exit(values.help ? 0 : 2);
}

const seconds = Number(values.seconds);
if (!(seconds > 0 && seconds <= 24 * 3600)) throw new Error('--seconds must be in (0, 86400]');
const json = values.json;
const dieAfter = process.env.LC3_LOADGEN_EXIT_AFTER_MS;
if (dieAfter !== undefined && !/^\d+$/.test(dieAfter)) {
  console.error(`loadgen: LC3_LOADGEN_EXIT_AFTER_MS must be a whole number of milliseconds, not "${dieAfter}"`);
  process.exit(2);
}
const out = (event: string, fields: object) => {
  if (json) console.log(JSON.stringify({ event, ...fields }));
};
const gen = new LoadGen({
  host: values.host,
  port: Number(values.port),
  groups: parseGroups(values.workload),
  churn: parseChurn(values.churn, Number(values.kill)),
  rampS: Number(values.ramp),
  tickMs: Number(values.tick),
  maxSeconds: seconds + 5,
}).start();
out('started', { pid: process.pid, clients: gen.stats().clients });
if (dieAfter !== undefined) {
  setTimeout(() => {
    console.error(`loadgen: exiting after ${dieAfter} ms without a result (LC3_LOADGEN_EXIT_AFTER_MS, a test fault)`);
    process.exit(3);
  }, Number(dieAfter));
}
const t0 = Date.now();
// "connected" as soon as it is true (checked every 50 ms, not with the 1 s progress lines): a
// parent waiting for it should not wait up to a second more than it must.
const watchConnects = setInterval(() => {
  const s = gen.stats();
  if (s.connected !== s.clients) return;
  clearInterval(watchConnects);
  out('connected', { clients: s.clients, afterS: (Date.now() - t0) / 1000 });
}, 50);
const progress = setInterval(() => {
  const s = gen.stats();
  if (json) out('progress', { t: s.elapsedS, connected: s.connected, messages: s.messages, lc3Frames: s.lc3Frames, late: s.blockedTicks });
  else console.error(`t=${s.elapsedS.toFixed(0)}s connected ${s.connected}/${s.clients} messages ${s.messages} frames ${s.lc3Frames} reconnects ${s.reconnects} kills ${s.kills} server closes ${JSON.stringify(s.serverCloses)}`);
}, 1000);

const stop = async (why: string) => {
  clearInterval(progress);
  clearInterval(watchConnects);
  const r: LoadStats = await gen.stop();
  if (json) out('result', { why, ...r });
  else {
    const { perKey: _p, uncertain, ...rest } = r;
    console.log(JSON.stringify({ why, ...rest, uncertain: { frames: uncertain.frames, bytes: uncertain.bytes }, keys: Object.keys(r.perKey).length }, null, 1));
  }
  process.exit(0);
};
setTimeout(() => void stop('time'), seconds * 1000);
process.once('SIGTERM', () => void stop('SIGTERM'));
process.once('SIGINT', () => void stop('SIGINT'));
