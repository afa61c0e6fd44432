// The "process conversation" job (104) against real receivers: the request shape, the status →
// outcome mapping with the endpoint's own error passed through, an endpoint that refuses
// connections for a while, and a SIGKILL'd process whose journaled job another one finishes.
import t from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HttpClient } from '../src/http/client.js';
import { JobJournal } from '../src/jobs/journal.js';
import { endpointError, processConversationExecutor, processJobSpec } from '../src/jobs/process-conversation.js';
import { JobQueue } from '../src/jobs/queue.js';
import type { Job, JobOutcome } from '../src/jobs/types.js';
import { CHILD_104, closedPort, receiver, until } from './support/jobs-child.js';

const http = new HttpClient({ allowPrivate: true, connectTimeoutMs: 500 });
t.teardown(() => http.close());

t.test('processJobSpec: payload passes every field through; uid is the session\'s; the key', async (t) => {
  const msg = { uid: 'intruder', conversation_id: 'c1', finalization_job_id: 'f1', dispatch_generation: 4, byok_keys: { openai: 'k' }, extra: [1, 2] };
  const s = processJobSpec('u1', msg);
  t.same(s, {
    kind: 'process',
    uid: 'u1',
    key: 'u1\nc1\nf1',
    payload: { uid: 'u1', conversation_id: 'c1', language: 'en', finalization_job_id: 'f1', dispatch_generation: 4, byok_keys: { openai: 'k' }, extra: [1, 2] },
  });
  t.same(Object.keys(s.payload).slice(0, 3), ['uid', 'conversation_id', 'language'], 'the Omi fields first');
  t.equal(msg.uid, 'intruder', 'the message is not modified');
  t.same(processJobSpec('u1', { conversation_id: 'c1', language: null }).payload.language, 'en');
  t.same(processJobSpec('u1', { conversation_id: 'c1', language: 'pt' }).payload.language, 'pt');
  t.equal(processJobSpec('u1', { conversation_id: 'c1' }).key, 'u1\nc1\n');
  t.equal(processJobSpec('u1', { conversation_id: 'c1', finalization_job_id: 7 }).key, 'u1\nc1\n7');
  t.throws(() => processJobSpec('u1', { language: 'en' }), TypeError);
  t.throws(() => processJobSpec('u1', { conversation_id: '' }), /conversation_id/);
  t.throws(() => processJobSpec('u1', { conversation_id: 5 }), /conversation_id/);
});

t.test('the executor: request shape, status → outcome, the endpoint\'s error passed through', async (t) => {
  const rx = await receiver((r) => {
    const want = r.json?.want as { status: number; body?: string | object };
    return { status: want.status, ...(want.body === undefined ? {} : { body: want.body }) };
  });
  t.teardown(() => rx.close());
  const exec = processConversationExecutor(http, rx.url);
  const run = (status: number, body?: string | object): Promise<JobOutcome> => {
    const spec = processJobSpec('u1', { conversation_id: `c${status}`, want: { status, body } });
    const job: Job = { ...spec, id: 'j', createdMs: 0, attempts: 1, notBefore: 0 };
    return exec(job, new AbortController().signal);
  };
  t.same(await run(200, { whatever: true }), { ok: true, reply: { conversation_id: 'c200', success: true } });
  const req = rx.requests[0]!;
  t.equal(req.headers['content-type'], 'application/json');
  t.equal(req.url, '/v1/conversations/process');
  t.same(req.json, { uid: 'u1', conversation_id: 'c200', language: 'en', want: { status: 200, body: { whatever: true } } });
  t.same(await run(204, ''), { ok: true, reply: { conversation_id: 'c204', success: true } });
  t.same(await run(422, { detail: 'bad' }), { ok: false, terminal: true, error: 'bad' });
  t.same(await run(400, { error: 'nope', detail: 'ignored' }), { ok: false, terminal: true, error: 'nope' });
  const detail = [{ loc: ['body', 'language'], msg: 'field required' }];
  t.same(await run(404, { detail }), { ok: false, terminal: true, error: JSON.stringify(detail) });
  t.same(await run(403, '  forbidden here \n'), { ok: false, terminal: true, error: 'forbidden here' });
  t.same(await run(400, 'é'.repeat(600)), { ok: false, terminal: true, error: 'é'.repeat(500) }, 'at most 500 characters');
  t.same(await run(409, ''), { ok: false, terminal: true, error: 'HTTP 409' });
  t.same(await run(400, { other: 1 }), { ok: false, terminal: true, error: '{"other":1}' });
  for (const status of [500, 503, 408, 429, 302]) {
    const o = await run(status, { detail: 'try later' });
    t.same(o, { ok: false, terminal: false, error: `HTTP ${status}: try later` }, `${status} is retried`);
  }
  t.ok(http.stats().some((s) => s.target === 'process' && (s.results['2xx'] ?? 0) >= 2), 'counted under target "process"');

  const refused = await processConversationExecutor(http, `http://127.0.0.1:${await closedPort()}/x`)({ ...processJobSpec('u', { conversation_id: 'c' }), id: 'j', createdMs: 0, attempts: 1, notBefore: 0 }, new AbortController().signal);
  t.match(refused, { ok: false, terminal: false, error: /ECONNREFUSED/ }, 'a refused connection is retried');
  const impatient = new HttpClient({ allowPrivate: true, responseTimeoutMs: 200 });
  t.teardown(() => impatient.close());
  const hang = await receiver(() => 'hang');
  t.teardown(() => hang.close());
  const timedOut = await processConversationExecutor(impatient, hang.url)({ ...processJobSpec('u', { conversation_id: 'c' }), id: 'j', createdMs: 0, attempts: 1, notBefore: 0 }, new AbortController().signal);
  t.match(timedOut, { ok: false, terminal: false, error: /\(UND_ERR_HEADERS_TIMEOUT\)$/ }, 'a response timeout is retried, its code named');
  const aborted = new AbortController();
  aborted.abort(new Error('gone'));
  t.match(await exec({ ...processJobSpec('u', { conversation_id: 'c' }), id: 'j', createdMs: 0, attempts: 1, notBefore: 0 }, aborted.signal), { ok: false, terminal: false });
});

t.test('endpointError corner cases', async (t) => {
  t.equal(endpointError(400, '{"error":"","detail":"d"}'), 'd');
  t.equal(endpointError(400, '{"error":"","detail":""}'), '{"error":"","detail":""}');
  t.equal(endpointError(400, '{"detail":null}'), '{"detail":null}');
  t.equal(endpointError(400, '"just a string"'), '"just a string"');
  t.equal(endpointError(400, '{"detail":{"code":1}}'), '{"code":1}');
  t.equal(endpointError(500, ' \n '), 'HTTP 500');
});

t.test('an endpoint that refuses connections for ~3 s: the job is processed once it is back', async (t) => {
  const port = await closedPort();
  const url = `http://127.0.0.1:${port}/v1/conversations/process`;
  const q = new JobQueue({ dir: t.testdir(), executors: { process: processConversationExecutor(http, url) }, concurrency: 2, maxPending: 10, backoff: { baseMs: 100, capMs: 400 } });
  await q.start();
  t.teardown(() => q.close());
  const s = await q.submit(processJobSpec('u1', { conversation_id: 'c-outage', language: 'en' }));
  await new Promise((r) => setTimeout(r, 3_000));
  t.ok(q.stats().retries >= 3, `retried ${q.stats().retries} times while refused`);
  t.match(q.stats(), { pending: 1, succeeded: 0, failed: 0 });
  const rx = await receiver(undefined, port);
  t.teardown(() => rx.close());
  await until('the POST once the endpoint listens', () => rx.requests.length === 1, 5_000);
  t.same(await s.done, { ok: true, reply: { conversation_id: 'c-outage', success: true } });
  t.equal(rx.requests.length, 1);
  t.match(q.stats(), { pending: 0, succeeded: 1 });
});

t.test('SIGKILL with a job journaled: a new queue on the directory POSTs it exactly once', async (t) => {
  const dir = t.testdir();
  const port = await closedPort();
  const url = `http://127.0.0.1:${port}/v1/conversations/process`;
  const childPath = fileURLToPath(new URL('./support/jobs-child.ts', import.meta.url));
  const child = spawn(process.execPath, [...process.execArgv, childPath, dir, url], {
    env: { ...process.env, _TAPJS_PROCESSINFO_COVERAGE_: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, signal) => r(signal)));
  t.teardown(() => void child.kill('SIGKILL'));
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  await until('the child to report its job journaled', () => out.includes('\n'), 30_000);
  const { submitted } = JSON.parse(out.split('\n')[0]!) as { submitted: string };
  const journal = join(dir, 'jobs', 'journal-1.jsonl');
  await until('the child to journal a retry (its endpoint refuses)', () => readFileSync(journal, 'utf8').includes('"op":"attempt"'), 10_000);
  child.kill('SIGKILL');
  t.equal(await exited, 'SIGKILL');

  const rx = await receiver(undefined, port);
  t.teardown(() => rx.close());
  const q = new JobQueue({ dir, executors: { process: processConversationExecutor(http, url) }, concurrency: 2, maxPending: 10, backoff: { baseMs: 50, capMs: 200 } });
  await q.start();
  t.equal(q.stats().pending, 1, 'the job survived the kill');
  const again = await q.submit(processJobSpec('u-crash', CHILD_104));
  t.ok(again.deduplicated && again.job.id === submitted, 'the client\'s re-sent 104 joins the resumed job');
  t.same(await again.done, { ok: true, reply: { conversation_id: 'conv-crash', success: true } });
  await q.close();
  t.equal(rx.requests.length, 1, 'exactly one POST');
  t.same(rx.requests[0]!.json, { uid: 'u-crash', ...CHILD_104 }, 'every field of the 104 passed through');
  const j = new JobJournal({ dir });
  t.same(await j.replay(), [], 'done is journaled: nothing resumes a second time');
  await j.close();
});
