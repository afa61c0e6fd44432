// The benchmarks' waits (scripts/lib/wait.ts) and the load generator child
// (scripts/lib/loadgen-child.ts): a generator that dies rejects whatever waits on it — before its
// clients connected, or during the run — instead of leaving the benchmark hanging. Runs the
// compiled generator (dist/scripts/loadgen.js: npm run build:ts) against a local ws server.
import t, { type Test } from 'tap';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { spawnLoadgen } from '../scripts/lib/loadgen-child.js';
import { sleep, until, within } from '../scripts/lib/wait.js';

async function server(t: Test): Promise<{ port: number; messages: () => number }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  let n = 0;
  wss.on('connection', (ws) => ws.on('message', () => n++));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => r());
      }),
  );
  return { port: (wss.address() as AddressInfo).port, messages: () => n };
}

/** A long wait that does not keep the test process alive once the race is decided. */
const longWait = () => new Promise<void>((r) => setTimeout(r, 60_000).unref());

const args = (port: number, clients = 2) => ['--port', String(port), '--workload', `device:${clients}`, '--ramp', '0.1', '--seconds', '60'];

t.test('within and until: deadlines that name what they waited for', async (t) => {
  t.equal(await within(Promise.resolve(7), 1000, 'seven'), 7);
  await t.rejects(within(sleep(5000), 50, 'the slow thing'), { message: 'timed out after 0.1 s waiting for the slow thing' });
  await t.rejects(within(Promise.reject(new Error('own error')), 1000, 'x'), { message: 'own error' });
  let calls = 0;
  await until(() => ++calls === 3, 1000, 'three calls', { everyMs: 1 });
  t.equal(calls, 3);
  let seen = 0;
  await t.rejects(until(() => ++seen > 1e9, 60, 'a billion', { everyMs: 5, last: () => `${seen} calls` }), { message: /^timed out after 0\.1 s waiting for a billion \(last seen: \d+ calls\)$/ });
});

t.test('a healthy generator: connected, then its final counts on stop', async (t) => {
  const srv = await server(t);
  const gen = spawnLoadgen(args(srv.port));
  await gen.waitConnected(30_000);
  t.ok(gen.alive());
  await until(() => srv.messages() >= 20, 20_000, 'the server to receive 20 messages');
  const r = await gen.stop();
  t.equal(r.clients, 2);
  t.ok(r.messages >= 20, `${r.messages} messages sent`);
  t.notOk(gen.alive(), 'gone after stop');
  await t.rejects(within(gen.died, 1000, 'died'), /timed out/, 'a stop that was asked for is not a death');
});

t.test('a generator that dies before its clients connected rejects the connect wait with why', async (t) => {
  const srv = await server(t);
  const started = Date.now();
  // The test fault: the process exits (code 3) right after starting, without a result.
  const gen = spawnLoadgen(args(srv.port, 20), { LC3_LOADGEN_EXIT_AFTER_MS: '0' });
  await t.rejects(gen.waitConnected(60_000), { message: /^the load generator \(pid \d+\) exited \(3\): .*LC3_LOADGEN_EXIT_AFTER_MS.* before all 20 clients connected \(\d+ were\)$/ });
  await t.rejects(gen.connected, /exited \(3\)/, 'the bare promise rejects too (it used to stay pending)');
  await t.rejects(gen.result, /without a result/);
  await t.rejects(gen.during(longWait()), /exited \(3\).* during the run/, 'waits raced against it end');
  t.ok(Date.now() - started < 30_000, 'in seconds, not at a deadline');
  t.notOk(gen.alive());
});

t.test('a generator that dies during the run ends every wait raced against it', async (t) => {
  const srv = await server(t);
  const gen = spawnLoadgen(args(srv.port));
  await gen.waitConnected(30_000);
  const waiting = gen.during(longWait());
  gen.proc.kill('SIGKILL'); // a crash
  const started = Date.now();
  await t.rejects(waiting, { message: /^the load generator \(pid \d+\) exited \(SIGKILL\) during the run$/ });
  t.ok(Date.now() - started < 10_000, 'at once, not after the 60 s wait');
  await t.rejects(gen.stop(1000), /without a result/, 'stop() says there are no counts');
});

t.test('a bad fault value is refused by the generator with a clear error', async (t) => {
  const srv = await server(t);
  const gen = spawnLoadgen(args(srv.port), { LC3_LOADGEN_EXIT_AFTER_MS: 'soon' });
  await t.rejects(gen.waitConnected(30_000), /exited \(2\).*LC3_LOADGEN_EXIT_AFTER_MS must be a whole number of milliseconds, not "soon"/);
});
