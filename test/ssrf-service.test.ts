// SSRF end to end: a live service whose settings file points users' webhooks at 127.0.0.1,
// 10.0.0.1, 169.254.169.254, a name resolving to loopback (localhost) and IPv6 forms. Without
// WEBHOOK_ALLOW_PRIVATE every one is refused and counted by reason, and the loopback receiver
// sees nothing; with WEBHOOK_ALLOW_PRIVATE=1 (the control) the same settings reach it.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startReceiver } from './support/receiver.js';
import { closed, pusherMsg, startTestService, until } from './support/service.js';

const transcript = JSON.stringify({ segments: [{ text: 'hello', start: 0, end: 1 }] });

function settingsFile(dir: string, port: number): { file: string; expect: Record<string, string> } {
  const hooks: Record<string, [string, string]> = {
    loop4: [`http://127.0.0.1:${port}/hook`, 'loopback'],
    rfc1918: ['http://10.0.0.1/hook', 'private'],
    metadata: ['http://169.254.169.254/latest/meta-data/iam/security-credentials/', 'metadata'],
    byname: [`http://localhost:${port}/hook`, 'loopback'],
    loop6: [`http://[::1]:${port}/hook`, 'loopback'],
    mapped: [`http://[::ffff:127.0.0.1]:${port}/hook`, 'loopback'],
    ula: ['http://[fd00::1]/hook', 'unique_local'],
    linklocal: ['http://[fe80::1]/hook', 'link_local'],
  };
  const users = Object.fromEntries(Object.entries(hooks).map(([uid, [url]]) => [uid, { transcript_webhook: url }]));
  const file = join(dir, 'settings.json');
  writeFileSync(file, JSON.stringify({ default: { private_cloud_sync: false }, users }));
  return { file, expect: Object.fromEntries(Object.entries(hooks).map(([uid, [, reason]]) => [uid, reason])) };
}

t.test('private webhook destinations from a settings file are refused and counted by reason', async (t) => {
  const rx = await startReceiver();
  t.teardown(() => rx.close());
  const dir = t.testdir({});
  const { file, expect } = settingsFile(dir, rx.port);
  const svc = await startTestService({ SETTINGS_FILE: file });
  t.teardown(() => svc.close());
  const byReason: Record<string, number> = {};
  for (const r of Object.values(expect)) byReason[r] = (byReason[r] ?? 0) + 1;
  const sessions = await Promise.all(Object.keys(expect).map((uid) => svc.ws(`/v1/trigger/listen?uid=${uid}`)));
  for (const ws of sessions) ws.send(pusherMsg(102, transcript));
  const refusedBy = async (reason: string) => {
    let sum = 0;
    for (const line of (await (await fetch(svc.url('/metrics'))).text()).split('\n')) {
      if (line.startsWith('pusher_http_destinations_refused_total{') && line.includes(`reason="${reason}"`) && line.includes('target="transcript_webhook"')) sum += Number(line.split(' ').pop());
    }
    return sum;
  };
  // The transcript queue sends once a second: wait for one refusal per session.
  await until(async () => {
    for (const [reason, n] of Object.entries(byReason)) if ((await refusedBy(reason)) < n) return false;
    return true;
  }, 15000, `refusals by reason ${JSON.stringify(byReason)}`);
  for (const [reason, n] of Object.entries(byReason)) t.equal(await refusedBy(reason), n, `${reason}: ${n} refused`);
  t.equal(await svc.metric('pusher_http_requests_total', { target: 'transcript_webhook', result: 'private_destination' }) > 0, true, 'and in pusher_http_requests_total{result="private_destination"}');
  t.same(rx.requests, [], 'nothing reached the loopback receiver');
  for (const ws of sessions) t.equal(ws.readyState, ws.OPEN, 'a refused webhook does not hurt the session');
  for (const ws of sessions) ws.close();
  await Promise.all(sessions.map((ws) => (ws.readyState === ws.CLOSED ? undefined : closed(ws))));
});

t.test('control: with WEBHOOK_ALLOW_PRIVATE=1 the same settings reach the receiver', async (t) => {
  const rx = await startReceiver();
  t.teardown(() => rx.close());
  const dir = t.testdir({});
  const { file } = settingsFile(dir, rx.port);
  const svc = await startTestService({ SETTINGS_FILE: file, WEBHOOK_ALLOW_PRIVATE: '1' });
  t.teardown(() => svc.close());
  const ws = await svc.ws('/v1/trigger/listen?uid=loop4');
  const ws2 = await svc.ws('/v1/trigger/listen?uid=byname');
  ws.send(pusherMsg(102, transcript));
  ws2.send(pusherMsg(102, transcript));
  await until(() => rx.to('/hook').length >= 2, 15000, 'two transcript webhooks on the loopback receiver');
  t.equal(rx.to('/hook').length, 2, 'by address and by name');
  t.equal(await svc.metricSum('pusher_http_destinations_refused_total'), 0, 'nothing refused');
  ws.close();
  ws2.close();
});
