// The real binary: `lc3-pusher serve` starts on its defaults, answers health checks, profiles
// threads for admins, and drains on SIGTERM with exit code 0.
import t from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startTestService } from './support/service.js';

const bin = fileURLToPath(new URL('../bin/lc3-pusher.cjs', import.meta.url));

t.test('serve from the environment; SIGTERM drains and exits 0', async (t) => {
  const dir = t.testdir();
  const port = 20000 + Math.floor(Math.random() * 20000);
  const child = spawn(process.execPath, [bin, 'serve'], {
    env: { ...process.env, UV_THREADPOOL_SIZE: '', PORT: String(port), HOST: '127.0.0.1', SHARDS: '1', SLOTS_PER_SHARD: '16', SPOOL_DIR: `${dir}/spool`, STORE_DIR: `${dir}/store` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const deadline = Date.now() + 30000;
  while (!out.includes('"listening"') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.match(out, /"msg":"listening"/, 'JSON log line when listening');
  t.match(out, /"threadpool":16\b/, "the executable sizes libuv's thread pool for the fsyncs of 1 shard");
  t.same(await (await fetch(`http://127.0.0.1:${port}/healthz`)).json(), { ok: true });
  t.same(await (await fetch(`http://127.0.0.1:${port}/readyz`)).json(), { ready: true });
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'exit 0 after the drain');
  t.match(out, /draining/);
});

t.test('bad configuration is one clear line and a non-zero exit', async (t) => {
  const child = spawn(process.execPath, [bin, 'serve'], { env: { ...process.env, RING_BYTES: '3000' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  t.equal(code, 1);
  t.match(err, /RING_BYTES=3000: must be a power of two/);
});

t.test('/debug/profile: admin-only CPU profiles of main and shard threads', async (t) => {
  const off = await startTestService();
  t.teardown(() => off.close());
  t.equal((await fetch(off.url('/debug/profile?seconds=0.1'))).status, 403, 'disabled without ADMIN_TOKEN');
  const svc = await startTestService({ ADMIN_TOKEN: 'adm' });
  t.teardown(() => svc.close());
  t.equal((await fetch(svc.url('/debug/profile?seconds=0.1'))).status, 401);
  const auth = { authorization: 'Bearer adm' };
  t.equal((await fetch(svc.url('/debug/profile?seconds=0'), { headers: auth })).status, 400);
  t.equal((await fetch(svc.url('/debug/profile?thread=shard-9&seconds=0.1'), { headers: auth })).status, 400);
  for (const thread of ['main', 'shard-1']) {
    const res = await fetch(svc.url(`/debug/profile?thread=${thread}&seconds=0.2`), { headers: auth });
    t.equal(res.status, 200, thread);
    t.match(res.headers.get('content-disposition'), `${thread}.cpuprofile`);
    t.ok(Array.isArray(((await res.json()) as { nodes: unknown }).nodes), `${thread}: a .cpuprofile`);
  }
  const res = await fetch(svc.url('/debug/profile?seconds=0.1&token=adm'));
  t.equal(res.status, 200, 'token in the query works too');
  await res.arrayBuffer();
});

t.test('/debug/gc: admin-only full GC in one thread or all of them', async (t) => {
  const svc = await startTestService({ ADMIN_TOKEN: 'adm' });
  t.teardown(() => svc.close());
  t.equal((await fetch(svc.url('/debug/gc'))).status, 401, 'admin token required');
  const auth = { authorization: 'Bearer adm' };
  for (const bad of ['shard-9', '__proto__', 'toString']) {
    const res = await fetch(svc.url(`/debug/gc?thread=${bad}`), { headers: auth });
    t.equal(res.status, 400, `thread=${bad}`);
    t.match(((await res.json()) as { error: string }).error, /one of: main, shard-0, shard-1, uploader/);
  }
  // An unreachable array big enough for the large-object space (only a full GC frees it) in this,
  // the service's main thread: after a GC of main it must be gone.
  let junk: number[] | null = new Array<number>(2_000_000).fill(1);
  const weak = new WeakRef(junk);
  junk = null;
  const one = (await (await fetch(svc.url('/debug/gc?thread=main'), { headers: auth })).json()) as { threads: Record<string, { heapBefore: number; heapAfter: number }> };
  t.same(Object.keys(one.threads), ['main']);
  // t.ok, not t.equal: a failing t.equal would try to print all 2 M elements.
  t.ok(weak.deref() === undefined, `the unreachable array was collected (main heap ${one.threads.main?.heapBefore} → ${one.threads.main?.heapAfter} bytes)`);
  const all = (await (await fetch(svc.url('/debug/gc?thread=all'), { headers: auth })).json()) as { threads: Record<string, { heapAfter: number; ms: number }> };
  t.same(Object.keys(all.threads).sort(), ['main', 'shard-0', 'shard-1', 'uploader']);
  for (const [name, r] of Object.entries(all.threads)) t.ok(r.heapAfter > 0 && r.ms >= 0, `${name}: ${r.heapAfter} bytes after GC`);
});
