// The logger factory, the rate-limited warnings, the job queue's levels, the shutdown handler.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { jobLevel, jobLog } from '../src/log/job-log.js';
import { errorKey, LimitedLog } from '../src/log/limited.js';
import { checkLogLevel, createLogger, logCrashes, workerLogger, type Logger } from '../src/log/logger.js';
import { shutdownHandler } from '../src/log/shutdown.js';
import { uploadErrorMessage } from '../src/spool/uploader-worker.js';

/** A logger writing into an array of parsed lines. */
function capture(level = 'info', thread = 'main'): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: createLogger({ level, thread, stream }), lines };
}

t.test('every line: level by name, ISO time, the thread', async (t) => {
  const { log, lines } = capture('info', 'shard-1');
  log.info({ a: 1 }, 'hello');
  log.debug('not at info');
  log.warn('careful');
  t.equal(lines.length, 2, 'debug filtered at info');
  t.match(lines[0], { level: 'info', thread: 'shard-1', a: 1, msg: 'hello' });
  t.match(lines[0]!.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  t.match(lines[1], { level: 'warn', msg: 'careful' });
});

t.test('LOG_LEVEL: every pino level and silent; anything else named', async (t) => {
  for (const l of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) t.equal(checkLogLevel(l), l);
  t.throws(() => checkLogLevel('verbose'), /LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent \(got "verbose"\)/);
  t.throws(() => createLogger({ level: 'loud', thread: 'main' }), /LOG_LEVEL/);
  const { log, lines } = capture('silent');
  log.fatal('nothing');
  t.equal(lines.length, 0);
});

t.test('a worker logger writes synchronously to its destination', async (t) => {
  const file = join(t.testdir(), 'log.jsonl');
  const log = workerLogger({ level: 'warn', dest: file }, 'uploader');
  log.info('filtered');
  log.error({ code: 7 }, 'written before the next statement');
  const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.same(lines.length, 1, 'no flush needed: the line is already in the file');
  t.match(lines[0], { level: 'error', thread: 'uploader', code: 7 });
  const before = process.listenerCount('uncaughtExceptionMonitor');
  logCrashes(log, true); // the main thread: nothing registered (serveFromEnv logs a crash as fatal)
  t.equal(process.listenerCount('uncaughtExceptionMonitor'), before);
});

t.test('LimitedLog: first at once, then once per interval with the count held back', async (t) => {
  let now = 0;
  const { log, lines } = capture('info');
  const l = new LimitedLog(log, 1000, () => now);
  for (let i = 0; i < 10; i++) l.warn('enospc', { shard: 1 }, 'spool problem'); // ten a second, as a full disk retries
  t.equal(lines.length, 1, 'one line for ten');
  t.match(lines[0], { level: 'warn', shard: 1, msg: 'spool problem' });
  t.notOk('suppressed' in lines[0]!, 'the first carries no count');
  l.error('other', {}, 'independent key');
  t.equal(lines.length, 2);
  now = 1000;
  l.warn('enospc', { shard: 1 }, 'spool problem');
  t.match(lines[2], { suppressed: 9 }, 'the nine held back are counted');
  l.clear('enospc');
  l.warn('enospc', {}, 'again');
  t.equal(lines.length, 4, 'cleared: logged at once');
  const quiet = capture('error');
  new LimitedLog(quiet.log).warn('k', {}, 'below the level');
  t.equal(quiet.lines.length, 0);
});

t.test('LimitedLog keys are bounded', async (t) => {
  const { log, lines } = capture('info');
  const l = new LimitedLog(log, 60_000, () => 0);
  for (let i = 0; i < 1100; i++) l.warn(`k${i}`, {}, 'x');
  t.equal(lines.length, 1025, '1024 keys, then one shared key for the rest');
});

t.test('errorKey: the code, else the message without its numbers', async (t) => {
  t.equal(errorKey(Object.assign(new Error('no space'), { code: 'ENOSPC' })), 'ENOSPC');
  t.equal(errorKey(new Error('HTTP 503 after 1200 ms')), 'HTTP N after N ms');
  t.equal(errorKey('plain'), 'plain');
  t.equal(errorKey(new Error('put chunks/u1/_/17.5.lc3: injected failure (HTTP 503)'), 'chunks/u1/_/17.5.lc3'), 'put …: injected failure (HTTP N)', 'without the object it was about');
});

t.test('job queue lines get levels; retries are rate-limited', async (t) => {
  t.equal(jobLevel('jobs resumed from the journal'), 'info');
  t.equal(jobLevel('job interrupted by shutdown; it stays journaled'), 'info');
  t.equal(jobLevel('job failed'), 'error');
  t.equal(jobLevel('job journal: commit failed'), 'error');
  t.equal(jobLevel('job journal: torn tail cut'), 'warn');
  let now = 0;
  const { log, lines } = capture('info');
  const jl = jobLog(log, 1000, () => now);
  jl('job failed', { id: 'a' });
  jl('jobs resumed from the journal');
  for (let i = 0; i < 5; i++) jl('job retry scheduled', { id: `j${i}`, kind: 'process', error: `HTTP 50${i}` });
  jl('job retry scheduled', { id: 'x', kind: 'speaker_sample', error: 'HTTP 500' });
  t.same(
    lines.map((l) => [l.level, l.msg]),
    [
      ['error', 'job failed'],
      ['info', 'jobs resumed from the journal'],
      ['warn', 'job retry scheduled'],
      ['warn', 'job retry scheduled'],
    ],
    'five retries of one kind: one line; another kind: its own',
  );
  now = 1000;
  jl('job retry scheduled', { id: 'y', kind: 'process', error: 'HTTP 500' });
  t.match(lines.at(-1), { suppressed: 4 });
});

t.test('upload error messages say what happens next', async (t) => {
  t.equal(uploadErrorMessage(new Error('EIO'), 'chunks/u/c/1.000.lc3'), 'upload failed, will retry');
  t.equal(uploadErrorMessage(new Error('EACCES'), 'rescan'), 'spool rescan failed');
  t.equal(uploadErrorMessage(new Error('not a chunk name, left alone: sealed/x'), 'x'), 'sealed file is not a chunk; left alone');
});

t.test('shutdown: one drain, "stopped" and exit 0; a second signal only logged', async (t) => {
  const { log, lines } = capture('info');
  const exits: number[] = [];
  let stops = 0;
  let release!: () => void;
  const stop = shutdownHandler({ stop: (why) => (stops++, t.equal(why, 'SIGTERM'), new Promise<void>((r) => (release = r))) }, log, { drainTimeoutS: 5, exit: (c) => exits.push(c) });
  stop('SIGTERM');
  stop('SIGINT');
  t.equal(stops, 1, 'drained once');
  t.match(lines[0], { level: 'info', msg: 'already draining', signal: 'SIGINT' });
  release();
  const deadline = Date.now() + 5000;
  while (exits.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5)); // the exit after the drain
  t.same(exits, [0]);
  t.match(lines.at(-1), { level: 'info', msg: 'stopped', signal: 'SIGTERM' });
});

t.test('shutdown: a failed drain is fatal, exit 1', async (t) => {
  const { log, lines } = capture('info');
  const exits: number[] = [];
  shutdownHandler({ stop: () => Promise.reject(new Error('disk gone')) }, log, { drainTimeoutS: 5, exit: (c) => exits.push(c) })('SIGTERM');
  const deadline = Date.now() + 5000;
  while (exits.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5)); // the exit after the failure
  t.same(exits, [1]);
  t.match(lines.at(-1), { level: 'fatal', msg: 'drain failed', err: { message: 'disk gone' } });
});

t.test('shutdown: a drain that overruns its deadline is fatal, exit 1', async (t) => {
  const { log, lines } = capture('info');
  const exits: number[] = [];
  shutdownHandler({ stop: () => new Promise<void>(() => undefined) }, log, { drainTimeoutS: 0, graceMs: 20, exit: (c) => exits.push(c) })('SIGTERM');
  const deadline = Date.now() + 5000;
  while (exits.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5)); // the watchdog
  t.same(exits, [1]);
  t.match(lines.at(-1), { level: 'fatal', msg: /overran DRAIN_TIMEOUT_S/, drainTimeoutS: 0 });
});
