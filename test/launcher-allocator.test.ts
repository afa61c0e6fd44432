// bin/lc3-pusher, the launcher, with a stand-in `node` first on PATH that prints what it was
// given: which LD_PRELOAD the launcher chose, the arguments, and its PID (exec: the launcher's
// own). The real service behind the launcher is test/launcher-serve.test.ts.
import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import { chmodSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { JEMALLOC_DEFAULT_CONF, jemallocConf, jemallocPath } from '../src/util/allocator.js';

const launcher = fileURLToPath(new URL('../bin/lc3-pusher', import.meta.url));
const cjs = fileURLToPath(new URL('../bin/lc3-pusher.cjs', import.meta.url));
const dir = t.testdir({ fakebin: {}, lib: { 'libjemalloc.so.2': 'not a real library: the stand-in node never loads it' } });
const fakeNode = join(dir, 'fakebin', 'node');
// Prints one JSON line; exits with the code in FAKE_EXIT; answers SIGTERM with exit 0 after a line on stderr.
writeFileSync(
  fakeNode,
  `#!/bin/sh
trap 'echo "fake node: SIGTERM" >&2; exit 0' TERM
printf '{"preload":"%s","conf":"%s","pid":%s,"args":"%s"}\\n' "\${LD_PRELOAD-<unset>}" "\${MALLOC_CONF-<unset>}" "$$" "$*"
[ -n "\${FAKE_WAIT-}" ] && { while :; do sleep 0.05; done; }
exit "\${FAKE_EXIT:-0}"
`,
);
chmodSync(fakeNode, 0o755);
const fakeLib = join(dir, 'lib', 'libjemalloc.so.2');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  pid: number;
}

function run(env: Record<string, string>, args: string[] = ['serve'], cmd = launcher): Promise<Run> {
  return new Promise((resolve) => {
    const base = { ...process.env };
    for (const k of ['LD_PRELOAD', 'LC3_PUSHER_ALLOCATOR', 'LC3_PUSHER_JEMALLOC', 'MALLOC_CONF']) delete base[k];
    const child = execFile(cmd, args, { env: { ...base, PATH: `${join(dir, 'fakebin')}:${process.env.PATH}`, ...env }, timeout: 20_000 }, (err, stdout, stderr) =>
      // The stand-in library is not loadable: the loader says so for every program the stand-in runs.
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr: stderr.replace(/^ERROR: ld\.so: .*\n/gm, ''), pid: child.pid! }),
    );
  });
}
const parsed = (r: Run) => JSON.parse(r.stdout) as { preload: string; conf: string; pid: number; args: string };

t.test('default: jemalloc preloaded when installed, then exec node on bin/lc3-pusher.cjs with the arguments', async (t) => {
  const r = await run({ LC3_PUSHER_JEMALLOC: fakeLib }, ['serve', 'a b', 'c']);
  t.equal(r.code, 0);
  t.equal(r.stderr, '', 'nothing on stderr');
  const out = parsed(r);
  t.equal(out.preload, fakeLib);
  t.equal(out.conf, JEMALLOC_DEFAULT_CONF, "jemalloc's background threads on");
  t.equal(out.args, `${cjs} serve a b c`);
  t.equal(out.pid, r.pid, 'exec: node runs as the PID the caller started');
});

t.test('the search agrees with jemallocPath() (what the chaos harness preloads)', async (t) => {
  const lib = jemallocPath({});
  const r = await run({});
  if (lib) t.equal(parsed(r).preload, lib, `found ${lib}`);
  else t.equal(parsed(r).preload, '<unset>', 'no jemalloc on this machine: glibc');
  t.equal(jemallocPath({ LC3_PUSHER_JEMALLOC: fakeLib }), fakeLib);
  t.equal(jemallocPath({ LC3_PUSHER_JEMALLOC: join(dir, 'missing.so') }), undefined);
});

t.test('an existing LD_PRELOAD is kept, a second jemalloc is not added', async (t) => {
  const r = await run({ LC3_PUSHER_JEMALLOC: fakeLib, LD_PRELOAD: `/other/libfoo.so:/old/libjemalloc.so.2` });
  t.equal(parsed(r).preload, `${fakeLib}:/other/libfoo.so`);
});

t.test("the caller's MALLOC_CONF comes after the launcher's, so it can turn background threads off", async (t) => {
  const r = await run({ LC3_PUSHER_JEMALLOC: fakeLib, MALLOC_CONF: 'background_thread:false,narenas:2' });
  t.equal(parsed(r).conf, 'background_thread:true,background_thread:false,narenas:2');
  t.equal(jemallocConf('background_thread:false,narenas:2'), parsed(r).conf, 'jemallocConf() (what the chaos harness sets) agrees');
  t.equal(jemallocConf(undefined), JEMALLOC_DEFAULT_CONF);
  t.equal(jemallocConf(''), JEMALLOC_DEFAULT_CONF, 'an empty MALLOC_CONF is no setting');
  t.equal(parsed(await run({ LC3_PUSHER_JEMALLOC: fakeLib, MALLOC_CONF: '' })).conf, JEMALLOC_DEFAULT_CONF, 'the launcher agrees on an empty one');
  t.equal(parsed(await run({ LC3_PUSHER_ALLOCATOR: 'system', MALLOC_CONF: 'narenas:2' })).conf, 'narenas:2', 'glibc: MALLOC_CONF left as it was');
  t.equal(parsed(await run({ LC3_PUSHER_ALLOCATOR: 'system' })).conf, '<unset>');
});

t.test('LC3_PUSHER_ALLOCATOR=system keeps glibc and strips an inherited jemalloc', async (t) => {
  t.equal(parsed(await run({ LC3_PUSHER_ALLOCATOR: 'system', LC3_PUSHER_JEMALLOC: fakeLib })).preload, '<unset>');
  t.equal(parsed(await run({ LC3_PUSHER_ALLOCATOR: 'system', LD_PRELOAD: `${fakeLib} /other/libfoo.so` })).preload, '/other/libfoo.so');
  t.equal(parsed(await run({ LC3_PUSHER_ALLOCATOR: 'system', LD_PRELOAD: fakeLib })).preload, '<unset>');
});

t.test('library missing: a warning by default, a failure when jemalloc was asked for', async (t) => {
  const missing = join(dir, 'missing.so');
  const warn = await run({ LC3_PUSHER_JEMALLOC: missing });
  t.equal(warn.code, 0, 'still starts');
  t.equal(parsed(warn).preload, '<unset>');
  t.match(warn.stderr, /^lc3-pusher: warning: libjemalloc\.so\.2 not found, running on glibc malloc.*apt-get install -y libjemalloc2/);
  const fail = await run({ LC3_PUSHER_ALLOCATOR: 'jemalloc', LC3_PUSHER_JEMALLOC: missing });
  t.equal(fail.code, 1);
  t.equal(fail.stdout, '', 'node never started');
  t.equal(fail.stderr, `lc3-pusher: LC3_PUSHER_ALLOCATOR=jemalloc but libjemalloc.so.2 was not found at LC3_PUSHER_JEMALLOC=${missing}; install it (apt-get install -y libjemalloc2) or set LC3_PUSHER_ALLOCATOR=system\n`);
  const ok = await run({ LC3_PUSHER_ALLOCATOR: 'jemalloc', LC3_PUSHER_JEMALLOC: fakeLib });
  t.equal(parsed(ok).preload, fakeLib, '=jemalloc with the library: preloaded');
});

t.test('a bad LC3_PUSHER_ALLOCATOR names the problem', async (t) => {
  const r = await run({ LC3_PUSHER_ALLOCATOR: 'tcmalloc' });
  t.equal(r.code, 1);
  t.equal(r.stderr, 'lc3-pusher: LC3_PUSHER_ALLOCATOR=tcmalloc: expected jemalloc or system (or unset: jemalloc when installed)\n');
  t.equal(r.stdout, '');
});

t.test("node's exit code is the launcher's", async (t) => {
  t.equal((await run({ FAKE_EXIT: '3' })).code, 3);
});

t.test('through a symlink (npm links bins into node_modules/.bin)', async (t) => {
  const link = join(dir, 'fakebin', 'lc3-pusher');
  symlinkSync(launcher, link);
  t.equal(parsed(await run({ LC3_PUSHER_JEMALLOC: fakeLib }, ['x'], link)).args, `${cjs} x`);
});

t.test('SIGTERM reaches node itself', async (t) => {
  const base = { ...process.env };
  delete base.LD_PRELOAD;
  const child = spawn(launcher, ['serve'], { env: { ...base, PATH: `${join(dir, 'fakebin')}:${process.env.PATH}`, FAKE_WAIT: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const deadline = Date.now() + 10_000;
  while (!out.includes('"pid"') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.ok(out.includes('"pid"'), 'waited (≤ 10 s) for the stand-in node to start');
  t.equal((JSON.parse(out) as { pid: number }).pid, child.pid, 'same PID');
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'exit 0 from its SIGTERM handler');
  t.match(err, /fake node: SIGTERM/);
});
