// The real executable: bin/lc3-pusher.cjs over the compiled build, run as a child process. Bad
// input must end it with a non-zero exit code and exactly one line on stderr. The build is the
// repository's dist/ when `npm run build:ts` made it after the last source change (as `npm test`
// does); otherwise the same compilation goes to a scratch directory, leaving the shared dist/ alone.
import t from 'tap';
import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { wavToLc3 } from '../src/codec/transcode.js';
import { encodeWav } from '../src/formats/wav.js';
import { testSignal } from './support/audio.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const dir = t.testdir({ bin: {}, wasm: {}, nodist: { bin: {} } });

/** Newest modification time of the TypeScript sources the build compiles. */
function newestSource(d: string): number {
  let newest = 0;
  for (const e of readdirSync(d, { withFileTypes: true })) {
    const p = join(d, e.name);
    if (e.isDirectory()) newest = e.name.startsWith('.') ? newest : Math.max(newest, newestSource(p));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}
const built = statSync(join(root, 'dist/src/cli.js'), { throwIfNoEntry: false })?.mtimeMs ?? 0;
const fresh = built > Math.max(...['src', 'wasm', 'workers'].map((d) => newestSource(join(root, d))));

let bin = join(root, 'bin/lc3-pusher.cjs');
if (!fresh) {
  // `npm run build:ts` into <dir>/dist. Work in progress elsewhere may not type-check at this
  // moment; tsc still emits JavaScript then, and only our own files need to be there.
  try {
    execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', join(dir, 'dist')], {
      stdio: 'pipe',
    });
  } catch (err) {
    t.comment(`tsc reported errors (JavaScript emitted anyway): ${String((err as { stdout?: Buffer }).stdout ?? err).split('\n')[0]}`);
  }
  copyFileSync(join(root, 'bin/lc3-pusher.cjs'), join(dir, 'bin/lc3-pusher.cjs'));
  copyFileSync(join(root, 'wasm/lc3.wasm'), join(dir, 'wasm/lc3.wasm'));
  bin = join(dir, 'bin/lc3-pusher.cjs');
}
t.comment(fresh ? 'using the repository build (dist/ is current)' : 'dist/ is missing or stale: compiled into a scratch directory');
copyFileSync(join(root, 'bin/lc3-pusher.cjs'), join(dir, 'nodist/bin/lc3-pusher.cjs'));

const env = { ...process.env };
delete env.LC3_WASM; // the binary finds its own wasm

function run(bin: string, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { env, cwd: dir, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr });
    });
  });
}

const lc3 = wavToLc3(encodeWav(16000, 1, testSignal(16000, 1)), { bitrate: 32000, frameUs: 10000 });
writeFileSync(join(dir, 'good.lc3'), lc3);
writeFileSync(join(dir, 'bad.lc3'), Buffer.from('RIFF, not LC3 at all'));

t.test('the build is there', async (t) => {
  t.ok(existsSync(join(bin, '../../dist/src/cli.js')), 'dist/src/cli.js');
});

t.test('bad input: non-zero exit, one clear line', async (t) => {
  for (const [args, line] of [
    [['transcode', 'missing.lc3', 'out.wav'], 'lc3-pusher: missing.lc3: no such file or directory'],
    [['transcode', 'bad.lc3', 'out.wav'], 'lc3-pusher: bad.lc3: not an .lc3 file: magic 0x4952, expected 0xcc1c'],
    [['encode', 'good.lc3', 'out.lc3', '--bitrate', '32000'], 'lc3-pusher: good.lc3: not a WAV file (no RIFF/WAVE header)'],
    [['encode', 'x.wav', 'out.lc3'], "error: required option '--bitrate <bps>' not specified"],
  ] as const) {
    const r = await run(bin, ...args);
    t.equal(r.code, 1, `${args.join(' ')}: exit code 1`);
    t.equal(r.stderr, `${line}\n`, 'exactly one line on stderr');
    t.equal(r.stdout, '', 'nothing on stdout');
  }
  t.notOk(existsSync(join(dir, 'out.wav')) || existsSync(join(dir, 'out.lc3')), 'no output file');
});

t.test('good input: exit 0', async (t) => {
  const r = await run(bin, 'transcode', 'good.lc3', 'good.wav');
  t.same(r, { code: 0, stdout: 'good.wav: 101 frames, 1.00 s\n', stderr: '' });
  // A directory on the worker pool: the compiled worker entry point (.js) is found and runs.
  mkdirSync(join(dir, 'many'));
  copyFileSync(join(dir, 'good.lc3'), join(dir, 'many', 'a.lc3'));
  const d = await run(bin, 'transcode', 'many', 'manyout', '--threads', '1');
  t.same(d, { code: 0, stdout: 'transcoded 1 file(s), 1.0 s of audio, 0 failed\n', stderr: '' });
  t.ok(existsSync(join(dir, 'manyout', 'a.wav')));
});

t.test('without a build: says so', async (t) => {
  const r = await run(join(dir, 'nodist/bin/lc3-pusher.cjs'), 'transcode', 'good.lc3', 'x.wav');
  t.same(r, { code: 1, stdout: '', stderr: 'lc3-pusher: the build is missing; run `npm run build` first\n' });
});
