// The durable job queue against real HTTP receivers on 127.0.0.1: concurrency and queue bounds,
// de-duplication of pending keys, notBefore, backoff, terminal errors, I/O faults, drain and
// restart.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { HttpClient } from '../src/http/client.js';
import { processConversationExecutor, processJobSpec } from '../src/jobs/process-conversation.js';
import { INTERRUPTED, JobQueue, type JobQueueOptions } from '../src/jobs/queue.js';
import { QueueClosedError, QueueFullError, type JobExecutor, type JobSpec } from '../src/jobs/types.js';
import { fault, hookedIo, receiver, until } from './support/jobs-child.js';

const http = new HttpClient({ allowPrivate: true });
t.teardown(() => http.close());

async function queue(t: Test, dir: string, url: string, o: Partial<JobQueueOptions> = {}): Promise<JobQueue> {
  const q = new JobQueue({ dir, executors: { process: processConversationExecutor(http, url) }, concurrency: 4, maxPending: 100, backoff: { baseMs: 40, capMs: 200 }, ...o });
  await q.start();
  t.teardown(() => q.close());
  return q;
}
const spec = (conv: string, extra: Record<string, unknown> = {}): JobSpec => processJobSpec('u1', { conversation_id: conv, ...extra });
const conversations = (rx: { requests: { json?: Record<string, unknown> }[] }): unknown[] => rx.requests.map((r) => r.json?.conversation_id);

t.test('at most `concurrency` POSTs at once; every job succeeds', async (t) => {
  const rx = await receiver(undefined, 0, 80);
  t.teardown(() => rx.close());
  const q = await queue(t, t.testdir(), rx.url, { concurrency: 2 });
  const subs = await Promise.all(Array.from({ length: 6 }, (_, i) => q.submit(spec(`c${i}`))));
  t.match(q.stats(), { pending: 6 });
  t.ok(q.stats().running <= 2);
  const results = await Promise.all(subs.map((s) => s.done));
  t.same(results.map((r) => r.ok), [true, true, true, true, true, true]);
  t.equal(rx.maxInFlight, 2, 'two at once, never more');
  t.same(conversations(rx).sort(), ['c0', 'c1', 'c2', 'c3', 'c4', 'c5']);
  t.match(q.stats(), { pending: 0, running: 0, succeeded: 6, failed: 0, retries: 0 });
});

t.test('maxPending: QueueFullError, counted, never a silent drop', async (t) => {
  let hold = true;
  const rx = await receiver(() => (hold ? 'hang' : { status: 200 }));
  t.teardown(() => rx.close());
  const q = await queue(t, t.testdir(), rx.url, { maxPending: 2 });
  const a = await q.submit(spec('a'));
  await q.submit(spec('b'));
  await t.rejects(q.submit(spec('c')), QueueFullError);
  t.match(q.stats(), { pending: 2, queueFull: 1 });
  const dup = await q.submit(spec('a'));
  t.equal(dup.job.id, a.job.id, 'a duplicate of a pending job is not refused by a full queue');
  await until('both POSTs', () => rx.requests.length === 2);
  hold = false;
  for (const r of rx.requests) r.respond({ status: 200 });
  t.same(await a.done, { ok: true, reply: { conversation_id: 'a', success: true } });
  await until('both jobs to finish', () => q.stats().pending === 0);
  const c = await q.submit(spec('c'));
  t.equal((await c.done).ok, true, 'accepted once there is room');
  t.equal(rx.requests.length, 3, 'the refused submit never reached the receiver');
});

t.test('a pending key is de-duplicated: same job, one POST; a finished one is not', async (t) => {
  const rx = await receiver((r) => (r.n === 1 ? 'hang' : { status: 200 }));
  t.teardown(() => rx.close());
  const q = await queue(t, t.testdir(), rx.url);
  const [s1, s2] = await Promise.all([q.submit(spec('c1', { finalization_job_id: 'f1' })), q.submit(spec('c1', { finalization_job_id: 'f1' }))]);
  t.equal(s2.job.id, s1.job.id, 'a duplicate submitted while the first is being journaled');
  t.same([s1.deduplicated, s2.deduplicated], [false, true]);
  await until('the first POST', () => rx.requests.length === 1);
  const s3 = await q.submit(spec('c1', { finalization_job_id: 'f1', language: 'fr' }));
  t.ok(s3.deduplicated && s3.job.id === s1.job.id, 'a re-sent 104 while the job runs');
  t.equal(s3.done, s1.done, 'the same done promise');
  const other = await q.submit(spec('c1', { finalization_job_id: 'f2' }));
  t.not(other.job.id, s1.job.id, 'another finalization job is another job');
  await other.done;
  rx.requests[0]!.respond({ status: 200 });
  t.same(await s1.done, { ok: true, reply: { conversation_id: 'c1', success: true } });
  t.equal(rx.requests.filter((r) => r.json?.finalization_job_id === 'f1').length, 1, 'one POST for three submits');
  t.equal(q.stats().deduplicated, 2);
  const again = await q.submit(spec('c1', { finalization_job_id: 'f1' }));
  t.ok(!again.deduplicated && again.job.id !== s1.job.id, 'after done, the same key is a new job');
  t.equal((await again.done).ok, true);
  t.equal(rx.requests.filter((r) => r.json?.finalization_job_id === 'f1').length, 2);
});

t.test('notBefore: a job waits until its time, earliest first, one timer', async (t) => {
  const rx = await receiver();
  t.teardown(() => rx.close());
  const q = await queue(t, t.testdir(), rx.url);
  const t0 = Date.now();
  const late = await q.submit({ ...spec('late'), notBefore: t0 + 400 });
  const early = await q.submit({ ...spec('early'), notBefore: t0 + 200 });
  await early.done;
  t.ok(rx.requests[0]!.at >= t0 + 200, `early ran after ${rx.requests[0]!.at - t0} ms`);
  t.equal(rx.requests.length, 1, 'late not yet');
  await late.done;
  t.same(conversations(rx), ['early', 'late']);
  t.ok(rx.requests[1]!.at >= t0 + 400, `late ran after ${rx.requests[1]!.at - t0} ms`);
});

t.test('500s are retried with backoff until a 2xx', async (t) => {
  const rx = await receiver((r) => (r.n <= 2 ? { status: 500, body: { detail: 'down' } } : { status: 200 }));
  t.teardown(() => rx.close());
  const logs: { msg: string; delayMs?: number }[] = [];
  const q = await queue(t, t.testdir(), rx.url, { backoff: { baseMs: 60, capMs: 1000 }, log: (msg, f) => logs.push({ msg, ...(f as object) }) });
  const s = await q.submit(spec('c1'));
  t.same(await s.done, { ok: true, reply: { conversation_id: 'c1', success: true } });
  const [a, b, c] = rx.requests.map((r) => r.at) as [number, number, number];
  t.ok(b - a >= 25 && c - b >= 55, `backoff ${b - a} ms then ${c - b} ms (≥ base/2, ≥ 2·base/2)`);
  t.match(q.stats(), { retries: 2, succeeded: 1 });
  t.equal(s.job.attempts, 3);
  t.match(logs.filter((l) => l.msg === 'job retry scheduled'), [{ delayMs: Number }, { delayMs: Number }]);
});

t.test('thrown errors and retryAfterMs', async (t) => {
  let calls = 0;
  const times: number[] = [];
  const flaky: JobExecutor = async () => {
    times.push(Date.now());
    calls++;
    if (calls === 1) throw new Error('boom');
    if (calls === 2) throw 'not an error';
    if (calls === 3) return { ok: false, terminal: false, error: 'later', retryAfterMs: 150 };
    return { ok: true };
  };
  const q = await queue(t, t.testdir(), 'http://unused.invalid/', { executors: { process: flaky }, backoff: { baseMs: 5, capMs: 10 } });
  const s = await q.submit(spec('c1'));
  t.same(await s.done, { ok: true }, 'no reply field when the executor gives none');
  t.ok(times[3]! - times[2]! >= 145, `retryAfterMs honoured (${times[3]! - times[2]!} ms)`);
  t.equal(q.stats().retries, 3);
});

t.test('a terminal 4xx ends the job with the endpoint\'s error; no executor is terminal too', async (t) => {
  const rx = await receiver(() => ({ status: 422, body: { detail: 'bad' } }));
  t.teardown(() => rx.close());
  const q = await queue(t, t.testdir(), rx.url);
  const s = await q.submit(spec('c1'));
  t.same(await s.done, { ok: false, error: 'bad' });
  t.equal(rx.requests.length, 1, 'never retried');
  const none = await q.submit({ kind: 'speaker_sample', uid: 'u1', key: 'k', payload: {} });
  t.same(await none.done, { ok: false, error: 'no executor for speaker_sample' });
  t.match(q.stats(), { failed: 2, succeeded: 0, pending: 0 });
});

t.test('datasync EIO: submit rejects, the job is not accepted, nothing half-done', async (t) => {
  const rx = await receiver();
  t.teardown(() => rx.close());
  const dir = t.testdir();
  let fail = false;
  const io = hookedIo((op) => {
    if (fail && op === 'datasync') {
      fail = false;
      throw fault('EIO');
    }
  });
  const q = await queue(t, dir, rx.url, { io });
  fail = true;
  await t.rejects(q.submit(spec('c1')), { code: 'EIO' });
  t.match(q.stats(), { pending: 0, running: 0 });
  await new Promise((r) => setTimeout(r, 100));
  t.equal(rx.requests.length, 0, 'no POST for a refused job');
  const s = await q.submit(spec('c1'));
  t.notOk(s.deduplicated, 'the key is free again');
  t.equal((await s.done).ok, true);
  await q.close();
  const q2 = await queue(t, dir, rx.url);
  await new Promise((r) => setTimeout(r, 100));
  t.equal(rx.requests.length, 1, 'nothing resumes after a restart: the refused job is gone, the other is done');
  t.equal(q2.stats().pending, 0);
});

t.test('a done record that cannot be journaled: the job still ends; close rewrites the journal', async (t) => {
  const rx = await receiver();
  t.teardown(() => rx.close());
  const dir = t.testdir();
  let armed = false;
  const io = hookedIo((op) => {
    if (armed && op === 'datasync') {
      armed = false;
      throw fault('EIO');
    }
  });
  const logs: string[] = [];
  const q = new JobQueue({ dir, io, executors: { process: processConversationExecutor(http, rx.url) }, concurrency: 1, maxPending: 10, log: (m) => logs.push(m) });
  await q.start();
  const s = await q.submit(spec('c1'));
  armed = true;
  t.same(await s.done, { ok: true, reply: { conversation_id: 'c1', success: true } }, 'the answer is known: the caller gets it');
  t.ok(logs.some((m) => /done record not journaled/.test(m)), 'logged');
  t.equal(q.stats().pending, 0);
  await q.close();
  const q2 = await queue(t, dir, rx.url);
  t.equal(q2.stats().pending, 0, 'the rewrite at close persisted the done: no second POST');
  t.equal(rx.requests.length, 1);
});

t.test('drain: waits until the deadline, aborts the rest; they resume after a restart', async (t) => {
  const hang = await receiver((r) => (r.json?.conversation_id === 'quick' ? { status: 200 } : 'hang'));
  t.teardown(() => hang.close());
  const dir = t.testdir();
  const q = new JobQueue({ dir, executors: { process: processConversationExecutor(http, hang.url) }, concurrency: 4, maxPending: 10 });
  await q.start();
  const slow = await q.submit(spec('slow'));
  const quick = await q.submit(spec('quick'));
  const waiting = await q.submit({ ...spec('later'), notBefore: Date.now() + 60_000 });
  await until('both POSTs', () => hang.requests.length === 2);
  await quick.done;
  const t0 = Date.now();
  const r = await q.drain(t0 + 300);
  t.same(r, { finished: 0, remaining: 2 }, 'the hanging one and the waiting one remain');
  t.ok(Date.now() - t0 >= 280, `waited for the deadline (${Date.now() - t0} ms)`);
  await until('the receiver to see the request aborted', () => hang.requests.find((x) => x.json?.conversation_id === 'slow')!.aborted);
  t.same(await slow.done, INTERRUPTED);
  t.same(await waiting.done, INTERRUPTED);
  t.equal(q.drain(0), q.drain(0), 'drain is idempotent');
  await t.rejects(q.submit(spec('new')), QueueClosedError);
  await q.close();

  const rx = await receiver(undefined, 0, 150);
  t.teardown(() => rx.close());
  const q2 = await queue(t, dir, rx.url);
  t.equal(q2.stats().pending, 2, 'both still journaled');
  await until('the resumed POST', () => rx.requests.length === 1);
  t.same(conversations(rx), ['slow']);
  const dup = await q2.submit({ ...spec('later') });
  t.ok(dup.deduplicated, 'a replayed pending key still de-duplicates');
  t.same(await q2.drain(Date.now() + 1000), { finished: 1, remaining: 1 }, 'a drain that finishes its running job in time');
});

t.test('restart: a new queue on the same directory POSTs every pending job once', async (t) => {
  const down = await receiver(() => ({ status: 503 }));
  t.teardown(() => down.close());
  const dir = t.testdir();
  const q = new JobQueue({ dir, executors: { process: processConversationExecutor(http, down.url) }, concurrency: 1, maxPending: 10, backoff: { baseMs: 400 } });
  await q.start();
  await t.rejects(new JobQueue({ dir: join(dir, 'unused'), executors: {}, concurrency: 1, maxPending: 1 }).submit(spec('x')), /not started/);
  await t.rejects(q.start(), /already started/);
  for (const c of ['a', 'b', 'c']) await q.submit(spec(c, { dispatch_generation: 2 }));
  await until('the first 503', () => down.requests.length >= 1);
  await q.close();
  const rx = await receiver();
  t.teardown(() => rx.close());
  const logs: string[] = [];
  const t1 = Date.now();
  const q2 = await queue(t, dir, rx.url, { log: (m) => logs.push(m) });
  await until('three resumed POSTs', () => q2.stats().succeeded === 3);
  const a = rx.requests.find((r) => r.json?.conversation_id === 'a')!;
  t.ok(a.at - t1 >= 50, `the journaled backoff of the job that had a 503 is kept across the restart (POST after ${a.at - t1} ms)`);
  t.same(conversations(rx).sort(), ['a', 'b', 'c']);
  t.same(rx.requests.map((r) => r.json?.dispatch_generation), [2, 2, 2]);
  t.match(logs, ['jobs resumed from the journal']);
  t.equal(q2.stats().pending, 0);
});
