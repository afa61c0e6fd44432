// The real service behind bin/lc3-pusher (needs the build: `npm run build:ts`): the process the
// caller started is the service itself (its /proc/PID/maps has jemalloc, its /metrics and its
// `listening` line say so), SIGTERM drains and exits 0, the opt-out gives glibc, exit codes and
// stdout/stderr pass through untouched.
import t, { type Test } from 'tap';
import { execFile, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { jemallocPath } from '../src/util/allocator.js';
import { until } from './support/service.js';

const launcher = fileURLToPath(new URL('../bin/lc3-pusher', import.meta.url));
const jemalloc = jemallocPath();

function cleanEnv(over: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, _TAPJS_PROCESSINFO_COVERAGE_: '0', UV_THREADPOOL_SIZE: '', ...over };
  for (const k of ['LD_PRELOAD', 'LC3_PUSHER_ALLOCATOR', 'LC3_PUSHER_JEMALLOC', 'LC3_WASM']) if (!(k in over)) delete env[k];
  return env;
}

function threadNames(pid: number): string[] {
  return readdirSync(`/proc/${pid}/task`).flatMap((id) => {
    try {
      return [readFileSync(`/proc/${pid}/task/${id}/comm`, 'utf8').trim()];
    } catch {
      return []; // ended between the listing and the read
    }
  });
}

async function serve(t: Test, over: Record<string, string>) {
  const dir = t.testdir();
  // PORT=0: the kernel picks a free port and the listening line says which (no race with other tests).
  const env = cleanEnv({ PORT: '0', HOST: '127.0.0.1', SHARDS: '1', SLOTS_PER_SHARD: '16', SPOOL_DIR: `${dir}/spool`, STORE_DIR: `${dir}/store`, ...over });
  const child = spawn(launcher, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const deadline = Date.now() + 60_000;
  while (!out.includes('"listening"') && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.match(out, /"msg":"listening"/, 'waited (≤ 60 s) for the listening line on stdout');
  const listening = JSON.parse(out.split('\n').find((l) => l.includes('"listening"')) ?? '{}') as { allocator?: string; threadpool?: number; port?: number };
  const port = listening.port;
  const maps = readFileSync(`/proc/${child.pid}/maps`, 'utf8');
  const comm = readFileSync(`/proc/${child.pid}/comm`, 'utf8').trim();
  // The names of its threads: jemalloc names its background threads jemalloc_bg_thd. A thread
  // names itself once it runs, so a busy machine may list one under its parent's name for a
  // moment: with jemalloc, read again until the name shows (at most 10 s).
  let threads = threadNames(child.pid!);
  if (over.LC3_PUSHER_ALLOCATOR !== 'system' && jemalloc) {
    // A timeout is not thrown here: the test's assertion reports it, with the names seen.
    await until(() => (threads = threadNames(child.pid!)).includes('jemalloc_bg_thd'), 10_000, 'a thread named jemalloc_bg_thd').catch(() => undefined);
  }
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  const info = metrics.split('\n').find((l) => l.startsWith('pusher_build_info{'));
  child.kill('SIGTERM');
  const code = await exited;
  return { listening, maps, comm, threads, info, code, out, err };
}

t.test('default start: jemalloc in the very process that was started; SIGTERM drains, exit 0', { skip: jemalloc ? false : 'libjemalloc2 is not installed' }, async (t) => {
  const r = await serve(t, {});
  t.equal(r.comm, 'node', 'the PID the caller holds is node (exec), not a shell');
  t.ok(r.maps.includes('libjemalloc.so'), 'libjemalloc is mapped into it');
  t.ok(r.threads.includes('jemalloc_bg_thd'), `jemalloc's background threads run (waited ≤ 10 s for the name; threads: ${[...new Set(r.threads)].join(', ')})`);
  t.equal(r.listening.allocator, 'jemalloc', 'the listening line says jemalloc');
  t.equal(r.listening.threadpool, 16, 'bin/lc3-pusher.cjs still sizes the thread pool');
  t.match(r.info, /allocator="jemalloc"/, 'pusher_build_info says jemalloc');
  t.equal(r.code, 0, 'exit 0 after the drain');
  // The service's own JSON log, untouched (which stream each line takes is the logger's business).
  t.match(r.out + r.err, /"msg":"drained"/, 'the drain result is logged');
  t.notMatch(r.err, /^lc3-pusher:/m, 'no word from the launcher');
  for (const line of (r.out + r.err).split('\n').filter(Boolean)) t.doesNotThrow(() => JSON.parse(line), `a JSON log line: ${line.slice(0, 60)}`);
});

t.test('LC3_PUSHER_ALLOCATOR=system: glibc malloc', async (t) => {
  const r = await serve(t, { LC3_PUSHER_ALLOCATOR: 'system' });
  t.notOk(r.maps.includes('libjemalloc'), 'no jemalloc mapped');
  t.notOk(r.threads.includes('jemalloc_bg_thd'), 'no jemalloc threads');
  t.equal(r.listening.allocator, 'system');
  t.match(r.info, /allocator="system"/);
  t.equal(r.code, 0);
});

t.test('exit codes and stderr of a failing command pass through', async (t) => {
  const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    execFile(launcher, ['transcode', 'missing.lc3', 'out.wav'], { env: cleanEnv({}), cwd: t.testdir(), timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
    ),
  );
  t.same(r, { code: 1, stdout: '', stderr: 'lc3-pusher: missing.lc3: no such file or directory\n' });
});
