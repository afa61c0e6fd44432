// deploy/Dockerfile: what it says (parsed here: stages, steps, user, init, probe, port, volume)
// and what it does. No image can be built on these machines (no container daemon), so the second
// test runs the Dockerfile's own RUN lines, in order, on a copy of exactly what it COPYs, then
// starts the assembled /app under tini as the image's user and probes it with the HEALTHCHECK.
import t from 'tap';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { loadConfig } from '../src/config.js';
import { freePort } from '../scripts/lib/service.js';

const root = join(import.meta.dirname, '..');
const dockerfile = readFileSync(join(root, 'deploy/Dockerfile'), 'utf8');
const steps = readFileSync(join(root, 'deploy/build-steps.sh'), 'utf8');
const defaults = loadConfig({});

interface Instr {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name: string;
  instrs: Instr[];
}

/** Dockerfile → stages of instructions (continuations joined, comments dropped, ARGs of FROM expanded). */
function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let cur = '';
  for (const line of text.split('\n')) {
    if (/^\s*#/.test(line) && cur === '') continue;
    if (/^\s*#/.test(line)) continue; // a comment inside a continuation
    if (line.endsWith('\\')) {
      cur += line.slice(0, -1) + ' ';
      continue;
    }
    cur += line;
    if (cur.trim()) logical.push(cur.trim());
    cur = '';
  }
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const l of logical) {
    const m = /^(\w+)\s+(.*)$/s.exec(l);
    if (!m) throw new Error(`Dockerfile: cannot read "${l}"`);
    const op = m[1]!.toUpperCase();
    const rest = m[2]!.replace(/\s+/g, ' ').trim();
    if (op === 'ARG' && stages.length === 0) {
      const [k, v = ''] = rest.split('=');
      args[k!] = v;
    } else if (op === 'FROM') {
      const f = /^(\S+)(?: AS (\S+))?$/i.exec(rest)!;
      stages.push({ from: f[1]!.replace(/\$\{(\w+)\}/g, (_, k: string) => args[k] ?? ''), name: f[2] ?? '', instrs: [] });
    } else {
      stages.at(-1)!.instrs.push({ op, args: rest });
    }
  }
  return stages;
}

const json = (s: string): string[] => JSON.parse(s) as string[];
const stages = parseDockerfile(dockerfile);
const [build, runtime] = stages as [Stage, Stage];
const all = (st: Stage, op: string) => st.instrs.filter((i) => i.op === op).map((i) => i.args);
const one = (st: Stage, op: string) => {
  const a = all(st, op);
  if (a.length !== 1) throw new Error(`expected one ${op} in stage ${st.name}, found ${a.length}`);
  return a[0]!;
};
/** ENV lines (k=v, space separated; values here have no spaces). */
const envOf = (st: Stage) => Object.fromEntries(all(st, 'ENV').flatMap((a) => a.split(' ').map((kv) => kv.split('=') as [string, string])));
/** Each RUN as its commands: `[VAR=x …] <script> <step> [args]`, split on &&. */
const runSteps = (st: Stage) =>
  all(st, 'RUN').flatMap((r) =>
    r.split('&&').map((c) => {
      const words = c.trim().split(' ');
      const env: Record<string, string> = {};
      while (/^[A-Z_]+=/.test(words[0]!)) {
        const [k, v] = words.shift()!.split('=');
        env[k!] = v!;
      }
      return { env, script: words[0]!, step: words[1] ?? '', args: words.slice(2) };
    }),
  );
const knownSteps = /^ {2}([a-z-]+)\) step_/gm;
const stepNames = [...steps.matchAll(knownSteps)].map((m) => m[1]!);
const healthcheck = json(one(runtime, 'HEALTHCHECK').replace(/^(--\S+ )*CMD /, ''));
const entrypoint = json(one(runtime, 'ENTRYPOINT'));
const appUid = /^APP_UID=(\d+)$/m.exec(steps)![1]!;

t.test('the Dockerfile', async (t) => {
  t.equal(stages.length, 2, 'two stages: build and runtime');
  t.match(build.from, /^node:(\d+)-bookworm$/, 'build stage: Debian bookworm Node image');
  t.match(runtime.from, /^node:(\d+)-bookworm-slim$/, 'runtime stage: slim');
  for (const st of stages) t.ok(Number(/^node:(\d+)/.exec(st.from)![1]) >= 22, `${st.from}: an LTS newer than Node 20`);
  t.equal(build.name, 'build');

  t.ok(stepNames.length >= 9, 'steps read from build-steps.sh');
  const b = runSteps(build);
  const r = runSteps(runtime);
  for (const s of [...b, ...r]) {
    t.match(s.script, /(^|\/)build-steps\.sh$/, `every RUN is a build step (${s.script} ${s.step})`);
    t.ok(stepNames.includes(s.step), `${s.step} is a step of build-steps.sh`);
  }
  t.same(b.map((s) => s.step), ['toolchain', 'wasm', 'deps', 'ts', 'assemble', 'prune', 'smoke'], 'build: wasm, npm ci, TypeScript, then prune');
  t.same(r.map((s) => s.step), ['runtime-packages', 'runtime-user']);
  t.same(b.find((s) => s.step === 'assemble')!.args, ['/app']);
  t.ok(all(runtime, 'COPY').includes('--from=build /app /app'), 'the runtime copies what assemble made');
  t.match(steps, /apt_install tini libjemalloc2/, 'the runtime has tini and jemalloc');

  // Everything the build stage COPYs is in the repository (the build context).
  for (const c of all(build, 'COPY')) for (const src of c.split(' ').slice(0, -1)) t.ok(existsSync(join(root, src)), `COPY ${src} exists`);

  const user = one(runtime, 'USER');
  t.equal(user, `${appUid}:${appUid}`, 'USER is the uid runtime-user creates');
  t.not(user.split(':')[0], '0', 'not root');

  t.same(entrypoint.slice(0, 2), ['/usr/bin/tini', '--'], 'tini is PID 1');
  t.match(entrypoint[2], /^\/app\/bin\//);
  t.ok(existsSync(join(root, entrypoint[2]!.replace(/^\/app\//, ''))), `${entrypoint[2]} is a launcher of this repository`);
  t.same(json(one(runtime, 'CMD')), ['serve']);

  t.equal(healthcheck[0], 'node', 'HEALTHCHECK needs no curl');
  t.match(healthcheck.join(' '), /\/healthz'/, 'HEALTHCHECK probes /healthz');
  const env = envOf(runtime);
  t.equal(Number(one(runtime, 'EXPOSE')), defaults.PORT, 'EXPOSE is the default PORT');
  t.equal(Number(env.PORT), defaults.PORT);
  t.equal(env.SPOOL_DIR, '/data/spool');
  t.ok(json(one(runtime, 'VOLUME')).includes(env.SPOOL_DIR!), 'the spool is a VOLUME');
  t.ok(json(one(runtime, 'VOLUME')).includes(env.STORE_DIR!), 'the local store is a VOLUME');
  t.equal(one(runtime, 'STOPSIGNAL'), 'SIGTERM');
  t.doesNotThrow(() => loadConfig(env), 'the image ENV is a valid configuration');
});

t.test('build-steps.sh refuses bad input with the problem named', async (t) => {
  const script = join(root, 'deploy/build-steps.sh');
  const cwd = t.testdir({ full: { x: '' } });
  const cases: [string[], RegExp][] = [
    [['bogus'], /unknown step 'bogus'; steps: toolchain deps wasm ts assemble prune smoke runtime-packages runtime-user/],
    [[], /unknown step ''/],
    [['assemble'], /assemble: which directory\?/],
    [['assemble', 'full'], /assemble: full is not empty/],
    [['assemble', 'new'], /assemble: package.json is missing .*build it first/],
    [['prune', 'nowhere'], /prune: nowhere has no package.json/],
    [['smoke'], /smoke: \(none\) has no bin\//],
    [['ts'], /ts: deploy\/tsconfig.image.json is missing/],
  ];
  for (const [args, want] of cases) {
    const r = spawnSync('bash', [script, ...args], { cwd, encoding: 'utf8' });
    t.not(r.status, 0, `${args.join(' ') || '(no step)'} fails`);
    t.match(r.stderr, want, `${args.join(' ') || '(no step)'}: says why`);
  }
});

/** Paths a .dockerignore line excludes (plain paths and `**\/*.ext`, what ours uses). */
function ignored(patterns: string[], rel: string): boolean {
  return patterns.some((p) => (p.startsWith('**/*') ? rel.endsWith(p.slice(4)) : rel === p || rel.startsWith(`${p}/`)));
}

const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

t.test('its build steps run here, and the result serves under tini as the image user', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'lc3p-image-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  chmodSync(tmp, 0o755); // the image user must reach /app inside it
  const ctx = join(tmp, 'src');
  const app = join(tmp, 'app');
  const fsRoot = join(tmp, 'root');
  const ignore = readFileSync(join(root, 'deploy/Dockerfile.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));

  // The build context, as the Dockerfile's COPYs lay it out (minus .dockerignore).
  for (const c of all(build, 'COPY')) {
    const words = c.split(' ');
    const dest = words.at(-1)!;
    for (const src of words.slice(0, -1)) {
      const to = dest.endsWith('/') ? join(ctx, dest, src.endsWith('/') ? '' : src.split('/').at(-1)!) : join(ctx, dest);
      cpSync(join(root, src), to, { recursive: true, filter: (p) => !ignored(ignore, relative(root, p)) });
    }
  }
  t.notOk(existsSync(join(ctx, 'wasm/.build')), 'the context has no local wasm build');
  // A cache, not a shortcut: wasm/build.sh checks its stamp (script, glue, tarball hash) and
  // rebuilds when anything differs. LC3_DEPLOY_FULL=1 builds from nothing, as in the image.
  if (process.env.LC3_DEPLOY_FULL !== '1' && existsSync(join(root, 'wasm/.build/stamp'))) {
    cpSync(join(root, 'wasm/.build'), join(ctx, 'wasm/.build'), { recursive: true });
    cpSync(join(root, 'wasm/lc3.wasm'), join(ctx, 'wasm/lc3.wasm'));
  }
  mkdirSync(join(fsRoot, 'etc'), { recursive: true });
  // A scratch root for runtime-user (useradd --prefix), like a base image's /etc.
  const etc = { passwd: 'root:x:0:0:root:/root:/bin/sh', group: 'root:x:0:', shadow: 'root:*:19000:0:99999:7:::', gshadow: 'root:*::' };
  for (const [f, line] of Object.entries(etc)) writeFileSync(join(fsRoot, 'etc', f), `${line}\n`);

  const lockBefore = sha(join(root, 'node_modules/.package-lock.json'));
  const run = (step: { env: Record<string, string>; step: string; args: string[] }) => {
    const started = Date.now();
    // Host-safe substitutions: /app and / are scratch directories, and apt's lists are not deleted
    // (BUILD_STEPS_CLEAN_APT is for image layers). `deps` is npm ci: this machine may not run it
    // (LC3_DEPLOY_FULL=1 does); a hard-linked copy of the installed tree stands in.
    const args = step.args.map((a) => (a === '/app' ? app : a));
    if (step.step === 'runtime-user') args.push(fsRoot);
    if (step.step === 'deps' && process.env.LC3_DEPLOY_FULL !== '1') {
      execFileSync('cp', ['-al', join(root, 'node_modules'), join(ctx, 'node_modules')]);
      rmSync(join(ctx, 'node_modules/.package-lock.json'));
      cpSync(join(root, 'node_modules/.package-lock.json'), join(ctx, 'node_modules/.package-lock.json'));
      return t.pass('deps: the installed node_modules, hard-linked (LC3_DEPLOY_FULL=1 runs npm ci)');
    }
    const env = { ...process.env, ...step.env, BUILD_STEPS_CLEAN_APT: '', BUILD_STEPS_LINK: '1', _TAPJS_PROCESSINFO_COVERAGE_: '0' };
    const r = spawnSync('bash', [join(ctx, 'deploy/build-steps.sh'), step.step, ...args], { cwd: ctx, env, encoding: 'utf8', timeout: 300_000 });
    return t.equal(r.status, 0, `step ${step.step} (${Date.now() - started} ms)${r.status === 0 ? '' : `:\n${r.stderr}${r.stdout}`}`);
  };
  // In the Dockerfile's order; a failed step ends the build, as it would there.
  for (const s of [...runSteps(build), ...runSteps(runtime)]) if (!run(s)) return;

  t.equal(sha(join(root, 'node_modules/.package-lock.json')), lockBefore, 'the work tree’s node_modules is untouched');
  t.ok(existsSync(join(root, 'node_modules/typescript')), 'and keeps its devDependencies');
  t.notOk(existsSync(join(app, 'node_modules/typescript')), 'pruned: no devDependencies in /app');
  t.ok(existsSync(join(app, 'node_modules/ws')), 'runtime dependencies stay');
  t.ok(existsSync(join(app, 'wasm/lc3.wasm')));
  t.match(readFileSync(join(fsRoot, 'etc/passwd'), 'utf8'), new RegExp(`^lc3:x:${appUid}:${appUid}:`, 'm'), 'the image user');

  // ENTRYPOINT + CMD, under the image's ENV, as the image's user (setpriv: util-linux, like runuser).
  const tini = entrypoint[0]!;
  if (!existsSync(tini)) return t.fail(`${tini} missing after runtime-packages`);
  const port = await freePort();
  const imageEnv = envOf(runtime);
  const env: Record<string, string> = {
    PATH: process.env.PATH!,
    ...imageEnv,
    PORT: String(port),
    HOST: '127.0.0.1',
    SPOOL_DIR: join(fsRoot, imageEnv.SPOOL_DIR!),
    STORE_DIR: join(fsRoot, imageEnv.STORE_DIR!),
    SHARDS: '1',
    SLOTS_PER_SHARD: '16',
    DRAIN_TIMEOUT_S: '10',
    TINI_SUBREAPER: '1', // not PID 1 here; as a subreaper tini still reaps and forwards
    _TAPJS_PROCESSINFO_COVERAGE_: '0',
  };
  const asUser = process.getuid?.() === 0 ? ['setpriv', `--reuid=${appUid}`, `--regid=${appUid}`, '--clear-groups'] : [];
  // `env -u NODE_OPTIONS`: tap's process-info hook adds itself to every node child through
  // NODE_OPTIONS, and the image user may not write its records under the work tree.
  const cmd = ['env', '-u', 'NODE_OPTIONS', ...asUser, tini, entrypoint[1]!, join(app, entrypoint[2]!.replace(/^\/app\//, '')), ...json(one(runtime, 'CMD'))];
  const child = spawn(cmd[0]!, cmd.slice(1), { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, sig) => resolve((code ?? sig)!)));
  t.teardown(() => void child.kill('SIGKILL'));

  const probe = () => spawnSync(healthcheck[0] === 'node' ? process.execPath : healthcheck[0]!, healthcheck.slice(1), { env: { ...env }, timeout: 10_000 }).status;
  const deadline = Date.now() + 90_000; // a cold start on a busy 2-core machine: wasm, shard, uploader
  while (probe() !== 0) {
    if (child.exitCode !== null || Date.now() > deadline) return t.fail(`the assembled service did not pass its HEALTHCHECK within 90 s:\n${log}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  t.pass('HEALTHCHECK passes against the assembled service');
  // /healthz can answer a moment before the `listening` line reaches our pipe.
  const listeningLine = () => log.split('\n').find((l) => l.includes('"listening"'));
  while (!listeningLine() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const listening = listeningLine();
  t.ok(listening, `it logged listening (waited up to the 90 s start deadline)`);
  if (asUser.length) {
    const kids = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(' ');
    t.equal(kids.length, 1, 'tini has one child: bin/lc3-pusher exec’d node');
    t.match(readFileSync(`/proc/${kids[0]}/status`, 'utf8'), new RegExp(`^Uid:\\s+${appUid}\\s`, 'm'), 'node runs as the image user');
  }
  if (existsSync('/usr/lib/x86_64-linux-gnu/libjemalloc.so.2') || existsSync('/usr/lib/aarch64-linux-gnu/libjemalloc.so.2')) t.match(listening, /"allocator":"jemalloc"/, 'on jemalloc');

  child.kill('SIGTERM'); // to tini, as `docker stop` and the kubelet do
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const code = await exited;
  clearTimeout(timer);
  t.equal(code, 0, `tini forwarded SIGTERM: drained and exited 0 (${code})`);
  t.match(log, /"msg":"[^"]*drained"/, 'the drain is in the log');
  t.notMatch(log, /"level":("fatal"|"error"|50|60)/, 'no error on the way out');
  t.not(probe(), 0, 'HEALTHCHECK fails once the service is gone');
});
