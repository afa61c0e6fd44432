// pusher_build_info on a live /metrics (the service in this process), and where its labels come from.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { addBuildInfo, buildInfo, liblc3Version, packageVersion } from '../src/server/metrics-build.js';
import { allocatorInUse } from '../src/util/allocator.js';
import { wasmPath } from '../wasm/lc3.js';
import { startTestService } from './support/service.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

t.test('live /metrics carries pusher_build_info = 1 with what runs', async (t) => {
  const svc = await startTestService({ SHARDS: '1', SLOTS_PER_SHARD: '16' });
  t.teardown(() => svc.close());
  const text = await (await fetch(svc.url('/metrics'), { signal: AbortSignal.timeout(10_000) })).text();
  const lines = text.split('\n').filter((l) => l.startsWith('pusher_build_info'));
  t.equal(lines.length, 1, 'one series');
  const labels = Object.fromEntries([...lines[0]!.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
  t.same(labels, { version: pkg.version, node: process.version, liblc3: liblc3Version(), allocator: allocatorInUse() });
  t.match(lines[0], / 1$/, 'value 1');
  t.match(text, /# HELP pusher_build_info .*malloc/);
});

t.test('liblc3: the version wasm/build.sh recorded beside lc3.wasm', async (t) => {
  const recorded = readFileSync(join(wasmPath(), '..', '.build', 'version'), 'utf8').trim();
  t.equal(liblc3Version(), recorded);
  t.match(recorded, /^1\.\d+\.\d+/, 'liblc3 ≥ 1.1');
  const dir = t.testdir({ 'lc3.wasm': '', '.build': { version: '<script>\n' } });
  t.equal(liblc3Version(join(dir, 'lc3.wasm')), 'unknown', 'not a version: unknown');
  t.equal(liblc3Version(join(t.testdir(), 'lc3.wasm')), 'unknown', 'nothing recorded: unknown');
});

t.test('version: from the lc3-pusher package.json above the module', async (t) => {
  t.equal(packageVersion(), pkg.version);
  const dir = t.testdir({ 'package.json': JSON.stringify({ name: 'other', version: '9.9.9' }), a: { 'b.js': '' } });
  t.equal(packageVersion(join(dir, 'a', 'b.js')), 'unknown', "another package's version is not ours");
  const nov = t.testdir({ 'package.json': JSON.stringify({ name: 'lc3-pusher' }), 'x.js': '' });
  t.equal(packageVersion(join(nov, 'x.js')), 'unknown');
});

t.test('addBuildInfo registers one gauge with the given labels', async (t) => {
  const r = new Registry();
  const info = { ...buildInfo(), allocator: 'jemalloc' as const };
  t.same(addBuildInfo(r, info), info);
  t.match(await r.metrics(), /pusher_build_info\{version="[^"]+",node="v\d+[^"]*",liblc3="[^"]+",allocator="jemalloc"\} 1/);
});
