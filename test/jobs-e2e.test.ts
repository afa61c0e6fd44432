// Conversation processing (104, DESIGN §3.4) end to end through the real service and a real HTTP
// endpoint on loopback: an endpoint that refuses connections for 30 s (a 104 re-sent meanwhile, as
// Omi clients do, is the same job: one POST, one 201 per 104); the same outage with the service
// SIGKILLed and restarted on its spool directory (the journaled job is resumed and POSTed once);
// the endpoint's own error passed back, a 500 retried, no endpoint configured, and clients that go
// away right after their 104. The three scenarios run in parallel (the two outages overlap).
import t from 'tap';
import { WebSocket } from 'ws';
import { metricSum, type PromSample } from '../scripts/lib/prom.js';
import { startService, type ChildService } from '../scripts/lib/service.js';
import { startReceiver, type Receiver } from './support/receiver.js';
import { closed, pusherMsg, startTestService, until } from './support/service.js';

t.jobs = 3;

const OUTAGE_MS = 30_000;
// The job queue retries with 1 s base, doubling, 60 s cap, each delay jittered in [d/2, d]: the
// attempt that follows a 30 s outage comes at most 32 s after it ended (the 6th delay is ≤ 32 s).
const AFTER_OUTAGE_MS = 45_000;
const NO_CHILD_COVERAGE = { _TAPJS_PROCESSINFO_COVERAGE_: '0' };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** Every `header` reply the socket gets, parsed, in arrival order. */
function collect(ws: WebSocket, header = 201): Record<string, unknown>[] {
  const got: Record<string, unknown>[] = [];
  ws.on('message', (d: Buffer) => {
    if (d.length >= 4 && d.readUInt32LE(0) === header) got.push(JSON.parse(d.subarray(4).toString()) as Record<string, unknown>);
  });
  return got;
}

function bodies(rx: Receiver, path = '/process'): Record<string, unknown>[] {
  return rx.to(path).map((r) => JSON.parse(r.body.toString()) as Record<string, unknown>);
}

function openWs(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

const pending = (m: PromSample[]) => metricSum(m, 'pusher_jobs_pending') ?? -1;

t.test('endpoint refusing connections for 30 s; the 104 re-sent meanwhile: one POST, a 201 for each 104', async (t) => {
  t.setTimeout(OUTAGE_MS + AFTER_OUTAGE_MS + 30_000);
  const rx = await startReceiver();
  t.teardown(() => rx.close());
  await rx.refuse();
  const down = Date.now();
  const svc = await startTestService({ PROCESS_CONVERSATION_URL: rx.url('/process'), WEBHOOK_ALLOW_PRIVATE: '1', SHARDS: '1' });
  t.teardown(() => svc.close());

  const ws = await svc.ws('/v1/trigger/listen?uid=ja&sample_rate=16000');
  t.teardown(() => ws.terminate());
  const got = collect(ws);
  const m104 = pusherMsg(104, JSON.stringify({ conversation_id: 'c1', language: 'en', finalization_job_id: 'f1' }));
  ws.send(m104);
  await until(async () => (await svc.metric('pusher_http_requests_total', { target: 'process', result: 'refused' })) >= 2, 15_000, 'two refused attempts of the job (journaled and retrying)');

  await sleep(down + 10_000 - Date.now());
  ws.send(pusherMsg(100));
  ws.send(m104); // an Omi client re-sends a 104 it got no answer for
  await until(async () => (await svc.metric('pusher_jobs_deduplicated_total')) === 1, 10_000, 'the second 104 taken as the same job (pusher_jobs_deduplicated_total = 1)');
  t.equal(await svc.metric('pusher_jobs_pending'), 1, 'one job pending, not two');
  t.same(got, [], 'no 201 while the endpoint is down');

  await sleep(down + OUTAGE_MS - Date.now());
  ws.send(pusherMsg(100));
  t.equal(rx.requests.length, 0, 'nothing reached the endpoint during the outage');
  const refused = await svc.metric('pusher_http_requests_total', { target: 'process', result: 'refused' });
  await rx.listen();
  const up = Date.now();
  await until(() => got.length >= 2, AFTER_OUTAGE_MS, 'a 201 for each of the two 104s after the endpoint came back');
  const tookMs = Date.now() - up;
  await sleep(1500); // anything extra would come now
  t.same(got, [{ conversation_id: 'c1', success: true }, { conversation_id: 'c1', success: true }], 'one 201 success per 104 sent');
  t.same(bodies(rx), [{ uid: 'ja', conversation_id: 'c1', language: 'en', finalization_job_id: 'f1' }], 'exactly one POST: uid added, fields passed through');
  t.equal(rx.requests[0]!.query.get('uid'), null, 'the uid is in the body, the URL as configured');
  t.match(rx.requests[0]!.contentType, /^application\/json/, 'a JSON body');
  t.equal(await svc.metric('pusher_jobs_pending'), 0, 'no job pending');
  t.equal(await svc.metric('pusher_jobs_total', { result: 'succeeded' }), 1, 'one job succeeded');
  t.ok(refused >= 3, `the outage was retried (${refused} refused attempts in 30 s)`);
  t.comment(`${refused} refused attempts; POSTed ${tookMs} ms after the endpoint came back`);
  t.equal(ws.readyState, WebSocket.OPEN, 'the session stayed open throughout');
});

t.test('SIGKILL while the endpoint refuses, restart on the same spool: the job is resumed and POSTed once', async (t) => {
  t.setTimeout(OUTAGE_MS + AFTER_OUTAGE_MS + 60_000);
  const rx = await startReceiver();
  t.teardown(() => rx.close());
  await rx.refuse();
  const down = Date.now();
  const dir = t.testdir();
  const env = { ...NO_CHILD_COVERAGE, PROCESS_CONVERSATION_URL: rx.url('/process'), WEBHOOK_ALLOW_PRIVATE: '1', SHARDS: '1', SLOTS_PER_SHARD: '16' };
  const children: ChildService[] = [];
  t.teardown(async () => {
    for (const c of children) await c.stop(5000);
  });
  const first = await startService({ dir, env });
  children.push(first);
  const ws = await openWs(`ws://127.0.0.1:${first.port}/v1/trigger/listen?uid=jb&sample_rate=16000`);
  ws.on('error', () => {});
  const got = collect(ws);
  const gone = closed(ws);
  ws.send(pusherMsg(104, JSON.stringify({ conversation_id: 'c2', language: 'de', finalization_job_id: 'f2', dispatch_generation: 7 })));
  await until(async () => (metricSum(await first.scrape(), 'pusher_http_requests_total', { target: 'process', result: 'refused' }) ?? 0) >= 1, 20_000, 'a refused attempt of the job in the first process (it is journaled)');
  first.proc.kill('SIGKILL');
  t.equal(await first.exited, 'SIGKILL', 'the first process was killed');
  await gone;
  t.same(got, [], 'no 201 before the kill');

  const second = await startService({ dir, env });
  children.push(second);
  t.equal(second.spoolDir, first.spoolDir, 'restarted on the same spool directory');
  await until(async () => pending(await second.scrape()) === 1, 20_000, 'the journaled job pending in the restarted process');
  t.comment(`restarted ${Date.now() - down} ms into the ${OUTAGE_MS} ms outage`);

  await sleep(down + OUTAGE_MS - Date.now());
  t.equal(rx.requests.length, 0, 'nothing reached the endpoint during the outage');
  await rx.listen();
  const up = Date.now();
  await until(() => rx.to('/process').length >= 1, AFTER_OUTAGE_MS, 'the resumed job POSTed after the endpoint came back');
  const tookMs = Date.now() - up;
  await until(async () => (metricSum(await second.scrape(), 'pusher_jobs_total', { result: 'succeeded' }) ?? 0) === 1, 10_000, 'the resumed job journaled as done');
  await sleep(1500);
  t.same(bodies(rx), [{ uid: 'jb', conversation_id: 'c2', language: 'de', finalization_job_id: 'f2', dispatch_generation: 7 }], 'exactly one POST over both processes, fields passed through');
  const m = await second.scrape();
  t.equal(pending(m), 0, 'nothing pending');
  t.comment(`POSTed ${tookMs} ms after the endpoint came back, by the restarted process`);
  t.ok(second.alive(), 'the restarted service is still up');
});

t.test('endpoint errors, a retried 500, no endpoint, clients gone right after their 104', async (t) => {
  t.setTimeout(60_000);
  const rx = await startReceiver();
  t.teardown(() => rx.close());
  rx.answer((r) => {
    const b = JSON.parse(r.body.toString()) as { conversation_id: string };
    if (b.conversation_id === 'c-missing') return { status: 422, body: '{"detail":"conversation not found"}' };
    if (b.conversation_id === 'c-flaky' && bodies(rx).filter((x) => x.conversation_id === 'c-flaky').length === 1) return { status: 500, body: '{"detail":"try again"}' };
    return { status: 200, body: '{}' };
  });
  const svc = await startTestService({ PROCESS_CONVERSATION_URL: rx.url('/process'), WEBHOOK_ALLOW_PRIVATE: '1', SHARDS: '1' });
  t.teardown(() => svc.close());
  const none = await startTestService({ WEBHOOK_ALLOW_PRIVATE: '1', SHARDS: '1' });
  t.teardown(() => none.close());

  const m104 = (conversation_id: string) => pusherMsg(104, JSON.stringify({ conversation_id, language: 'en', finalization_job_id: `f-${conversation_id}` }));
  const ws = await svc.ws('/v1/trigger/listen?uid=jc&sample_rate=16000');
  t.teardown(() => ws.terminate());
  const got = collect(ws);
  ws.send(m104('c-missing'));
  await until(() => got.length >= 1, 10_000, 'the 201 for a 422');
  t.same(got[0], { conversation_id: 'c-missing', error: 'conversation not found' }, 'a terminal 4xx: its detail passed back');
  t.equal(bodies(rx).filter((b) => b.conversation_id === 'c-missing').length, 1, 'a 422 is not retried');

  ws.send(m104('c-flaky'));
  await until(() => got.length >= 2, 15_000, 'the 201 for a 500 then 200');
  t.same(got[1], { conversation_id: 'c-flaky', success: true }, 'success after a retry');
  const flaky = rx.to('/process').filter((r) => r.body.includes('"c-flaky"'));
  t.equal(flaky.length, 2, 'one 500, one 200');
  t.ok(flaky[1]!.body.equals(flaky[0]!.body), 'the retry POSTs the same body');
  t.ok((await svc.metric('pusher_jobs_retries_total')) >= 1, 'the retry counted');
  t.equal(await svc.metric('pusher_http_requests_total', { target: 'process', result: '5xx' }), 1, 'the 500 counted');

  // Gone right after the 104: a normal close, and an abrupt one once the bytes are on the wire.
  const ws2 = await svc.ws('/v1/trigger/listen?uid=jd&sample_rate=16000');
  ws2.send(m104('c-closed'));
  ws2.close(1000);
  const ws3 = await svc.ws('/v1/trigger/listen?uid=je&sample_rate=16000');
  ws3.on('error', () => {});
  ws3.send(m104('c-killed'), () => ws3.terminate());
  await until(() => ['c-closed', 'c-killed'].every((c) => bodies(rx).some((b) => b.conversation_id === c)), 15_000, 'the POSTs of the two 104s whose clients left');
  await until(async () => (await svc.metricSum('pusher_sessions_active')) === 1, 5000, 'the two sessions closed');
  await sleep(1000);
  t.same(
    bodies(rx)
      .filter((b) => b.uid !== 'jc')
      .sort((a, b) => String(a.uid).localeCompare(String(b.uid))),
    [
      { uid: 'jd', conversation_id: 'c-closed', language: 'en', finalization_job_id: 'f-c-closed' },
      { uid: 'je', conversation_id: 'c-killed', language: 'en', finalization_job_id: 'f-c-killed' },
    ],
    'each POSTed exactly once, for its own uid',
  );
  t.equal(got.length, 2, 'the remaining session got no 201 for other sessions\' jobs');

  // No endpoint configured: answered at once, nothing journaled.
  const ws4 = await none.ws('/v1/trigger/listen?uid=jf&sample_rate=16000');
  t.teardown(() => ws4.terminate());
  const got4 = collect(ws4);
  ws4.send(m104('c-x'));
  await until(() => got4.length >= 1, 10_000, 'the 201 of a service without PROCESS_CONVERSATION_URL');
  t.same(got4, [{ conversation_id: 'c-x', error: 'conversation processing is not configured' }], 'PROCESS_CONVERSATION_URL unset: a 201 error at once');
  t.equal(await none.metric('pusher_jobs_pending'), 0, 'nothing queued');
  t.equal(await none.metricSum('pusher_http_requests_total'), 0, 'no request made');
});
