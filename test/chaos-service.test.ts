// The harness's service process handling: start-up failures are reported with the service's
// own words, a service that dies mid-run is flagged, stop escalates to SIGKILL.
import t from 'tap';
import { describe, runChaos } from '../scripts/lib/chaos.js';
import { WebSocketServer } from 'ws';
import { spawnLoadgen } from '../scripts/lib/loadgen-child.js';
import { freePort, repoRoot, startService } from '../scripts/lib/service.js';
import { jemallocPath } from '../src/util/allocator.js';

const NO_CHILD_COVERAGE = { _TAPJS_PROCESSINFO_COVERAGE_: '0' };

t.test('repository root and free ports', async (t) => {
  t.ok(repoRoot().length > 0);
  t.throws(() => repoRoot('/nonexistent/a/b/c.js'), /cannot find the repository root/);
  const p = await freePort();
  t.ok(p > 0 && p < 65536);
});

t.test('the load generator in its own process', async (t) => {
  await t.rejects(spawnLoadgen([], NO_CHILD_COVERAGE).result, /load generator exited \(2\) without a result/, 'usage error');
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => wss.once('listening', r));
  t.teardown(() => new Promise((r) => wss.close(r)));
  const port = String((wss.address() as { port: number }).port);
  const child = spawnLoadgen(['--port', port, '--workload', 'device:2', '--seconds', '600', '--ramp', '0'], NO_CHILD_COVERAGE);
  await child.connected;
  while (child.progress().lc3Frames === 0) await new Promise((r) => setTimeout(r, 100));
  t.ok(child.progress().connected >= 0 && child.pid > 0, 'progress reported');
  const r = await child.stop();
  t.equal(r.clients, 2);
  t.ok(r.lc3Frames > 0);
});

t.test('start-up failures', async (t) => {
  await t.rejects(startService({ env: { ...NO_CHILD_COVERAGE, SHARDS: 'many' } }), /service exited \(1\) before it was ready:[\s\S]*SHARDS=many/);
  await t.rejects(startService({ env: NO_CHILD_COVERAGE, readyTimeoutMs: 0 }), /service not ready after 0 ms/);
});

t.test('a chaos run whose service cannot start fails with its reason', async (t) => {
  await t.rejects(
    runChaos({ name: 'x', groups: [], warmupS: 1, loadS: 1, cooldownS: 1, bounds: { slopeMbPerMin: 1, cooldownGrowthMb: 1 }, env: { ...NO_CHILD_COVERAGE, RING_BYTES: '1000' }, outDir: t.testdir() }),
    /RING_BYTES/,
  );
});

t.test('a running service: metrics, memory, CPU, logs, stop', async (t) => {
  const dir = t.testdir();
  const svc = await startService({ dir, env: { ...NO_CHILD_COVERAGE, SHARDS: '1', SLOTS_PER_SHARD: '16', LOG_LEVEL: 'info' }, faults: 'drain_delay_ms=1', settings: { default: { private_cloud_sync: false } }, nodeArgs: ['--max-old-space-size=256'] });
  t.ok(svc.alive());
  t.equal(svc.dir, dir);
  const m = await svc.scrape();
  t.ok(m.some((s) => s.name === 'pusher_sessions_active'));
  // Started as bin/lc3-pusher would be: on jemalloc when it is installed (benchmarks measure the default).
  const info = m.find((s) => s.name === 'pusher_build_info');
  t.equal(info?.labels.allocator, jemallocPath() ? 'jemalloc' : 'system', 'the launcher\'s default allocator');
  t.ok(svc.rss()! > 10e6, 'RSS from /proc');
  t.ok(svc.cpuSeconds()! > 0);
  t.match(svc.logTail(), /TEST FAULTS ENABLED/);
  t.match(svc.logTail(1), /listening/);
  const code = await svc.stop(0); // SIGTERM and, at once, SIGKILL
  t.ok(code === 'SIGKILL' || code === 0, `stopped (${code})`);
  t.equal(await svc.stop(), code, 'stop again: same result');
  t.notOk(svc.alive());
  t.equal(svc.rss(), undefined, 'no RSS once gone');
  t.equal(svc.cpuSeconds(), undefined);
});

t.test('a service that dies mid-run is flagged', async (t) => {
  const dir = t.testdir();
  const lines: string[] = [];
  const r = await runChaos({
    name: 'crash',
    groups: [{ workload: 'device', clients: 2 }],
    idleS: 0.5,
    warmupS: 3,
    loadS: 3,
    cooldownS: 1,
    bounds: { slopeMbPerMin: 1000, cooldownGrowthMb: 1000 },
    sync: false,
    sinks: false,
    env: { ...NO_CHILD_COVERAGE, SHARDS: '1', SLOTS_PER_SHARD: '16' },
    outDir: dir,
    // The run's own watchdog kills the service (SIGKILL) during the warm-up.
    deadlineS: 2,
    log: (line) => lines.push(line),
  });
  for (const line of describe(r)) t.comment(line);
  t.ok(lines.some((l) => /run exceeded 2 s: killing the service/.test(l)), 'watchdog fired');
  t.ok(r.crashed, 'crash noticed');
  t.equal(r.exit, 'SIGKILL');
  t.notOk(r.passed);
  const healthy = r.checks.find((c) => c.name === 'service-healthy')!;
  t.notOk(healthy.ok);
  t.match(healthy.detail, /service died during the run/);
  t.match(r.checks.find((c) => c.name === 'frames-stored')!.detail, /sync is off/);
  t.notOk(r.phases.some((p) => p.name === 'load'), 'no load phase after the crash');
});
