// The benchmark smoke CI runs: `node dist/scripts/bench.js --smoke` (every benchmark once, tiny)
// must print its figures and exit 0, and a load generator that dies must end it with exit code 1
// and a line saying what happened — in seconds, not by hanging (as `npm run bench` once did at
// "blast (device-pcm)"). Needs the build (npm run build: dist/, wasm/lc3.wasm, the native tools).
import t from 'tap';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../scripts/lib/service.js';

const root = repoRoot();
// The bench and its children are not this test's code: keep the test runner's coverage out of them.
const NO_CHILD_COVERAGE = { _TAPJS_PROCESSINFO_COVERAGE_: '0' };

interface Run {
  code: number | string;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Runs the bench, SIGKILLed after `deadlineMs` (then the run reports code "SIGKILL"). */
function bench(args: string[], env: Record<string, string>, deadlineMs: number): Promise<Run> {
  const t0 = Date.now();
  const p = spawn(process.execPath, [join(root, 'dist', 'scripts', 'bench.js'), ...args], { cwd: root, env: { ...process.env, ...NO_CHILD_COVERAGE, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const timer = setTimeout(() => p.kill('SIGKILL'), deadlineMs);
  return new Promise((resolve) => {
    p.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: (code ?? signal)!, stdout, stderr, seconds: (Date.now() - t0) / 1000 });
    });
  });
}

t.test('bench --smoke prints every figure and exits 0', async (t) => {
  const out = t.testdir();
  // ~20 s on an idle 2-core machine; the deadline only keeps a hang from stalling CI.
  const r = await bench(['--smoke', '--out', out], {}, 240_000);
  t.comment(`bench --smoke took ${r.seconds.toFixed(1)} s`);
  t.equal(r.code, 0, `exit code 0 (stderr tail: ${r.stderr.slice(-600)})`);
  const summary = r.stdout.slice(r.stdout.indexOf('\nsummary\n'));
  t.ok(summary.length > 10, 'a summary table');
  for (const figure of ['LC3 decode, wasm (µs/frame)', 'blast LC3: msgs/s (end to end)', 'blast PCM: msgs/s through main', 'main-thread µs per message', 'RSS per idle session (KiB)', 'real-time streams, full throughput']) {
    const line = summary.split('\n').find((l) => l.startsWith(figure));
    t.ok(line, `summary has "${figure}"`);
    const value = line?.slice(figure.length).trim().split(/\s{2,}/)[0] ?? '';
    // The memory figure may come out below zero here, and only here: 100 idle sessions add 2-5 MiB,
    // less than a just-started service's RSS moves by itself (V8 frees its start-up garbage some
    // 8 s in, at a time no baseline can wait for cheaply). The full runs open 1,000-2,000.
    const number = figure.startsWith('RSS per idle session') ? /^-?[\d,.]+$/ : /^[\d,.]+$/;
    t.match(value, number, `"${figure}" is a number (${value})`);
  }
  t.match(r.stdout, /streams — real-time lc3_fs1030 \(100 msgs\/s each\), storage only/, 'the streams table, storage only');
  t.match(r.stdout, /streams — real-time lc3_fs1030 \(100 msgs\/s each\), with a PCM consumer/, 'and with a PCM consumer');
  const cap = r.stdout.slice(r.stdout.indexOf('\ncapacity — '));
  t.ok(cap.length > 10, 'the capacity table');
  for (const config of ['storage only', 'with a PCM consumer (audio-bytes webhook)']) {
    const line = cap.split('\n').find((l) => l.trim().startsWith(config));
    t.ok(line, `capacity row: ${config}`);
    const cells = line!.trim().split(/\s{2,}/);
    t.equal(cells.length, 10, `${config}: every column`);
    for (const c of cells.slice(1)) t.match(c, /^[\d.]+$/, `${config}: "${c}" is a number (the shard ÷ decode ratio needs the codec figure: printed after the summary)`);
    t.equal(cells[8], '0', `${config}: nothing lost`);
  }
  const files = readdirSync(out).filter((f) => f.endsWith('.json'));
  t.equal(files.length, 1, 'one JSON report in --out');
  const report = JSON.parse(readFileSync(join(out, files[0]!), 'utf8')) as {
    codec: unknown[];
    ingest: { blast: { msgsPerSec: number }; blastPcm: { msgsPerSec: number }; memory: { sessions: number }; streams: { steps: { lost: number }[] }; streamsPcm: { steps: { lost: number; sinkRequests: number }[] } };
  };
  t.ok(report.codec.length >= 2, 'codec rows');
  t.ok(report.ingest.blast.msgsPerSec > 0 && report.ingest.blastPcm.msgsPerSec > 0, 'both blasts moved messages');
  t.equal(report.ingest.memory.sessions, 100);
  t.same(report.ingest.streams.steps.map((s) => s.lost), [0], 'one stream step, nothing lost');
  t.same(report.ingest.streamsPcm.steps.map((s) => s.lost), [0], 'one stream step with PCM, nothing lost');
  t.ok(report.ingest.streamsPcm.steps[0]!.sinkRequests > 0, 'the PCM consumer POSTed audio to the sink');
});

t.test('a load generator that dies early ends the bench with exit code 1 and why, not a hang', async (t) => {
  const out = t.testdir();
  // The test fault: every load generator exits (code 3) right after it starts, without a result.
  const r = await bench(['--smoke', '--skip-codec', '--out', out], { LC3_LOADGEN_EXIT_AFTER_MS: '0' }, 120_000);
  t.equal(r.code, 1, 'exit code 1 (not killed at the deadline)');
  t.match(r.stderr, /\[bench\] FAILED: the load generator \(pid \d+\) exited \(3\): .* before all 20 clients connected/, 'says what it waited for and why that ended');
  t.ok(r.seconds < 60, `ended in ${r.seconds.toFixed(1)} s`);
  t.same(readdirSync(out), [], 'no report for a failed run');
});
