// DESIGN §2.4: every malformed case closes with the right code and a reason naming the problem,
// is counted, and leaves the other sessions on the shard alone.
import t from 'tap';
import { request } from 'node:http';
import { signToken } from '../src/server/auth.js';
import { audioMsg, closed, pusherMsg, startTestService, until, type TestService } from './support/service.js';

function handshake(svc: TestService, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(svc.url(path), { headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers } });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('upgrade', () => reject(new Error('unexpected upgrade')));
    req.on('error', reject);
    req.end();
  });
}

t.test('handshake errors are HTTP errors with a JSON body, before the upgrade', async (t) => {
  const svc = await startTestService();
  t.teardown(() => svc.close());
  const cases: [string, number, RegExp][] = [
    ['/v1/trigger/listen', 400, /uid is required/],
    ['/v1/trigger/listen?uid=../../etc', 400, /uid must match/],
    ['/v1/trigger/listen?uid=a&codec=mp3', 400, /codec must be/],
    ['/v1/trigger/listen?uid=a&sample_rate=4000', 400, /sample_rate/],
    ['/v1/trigger/listen?uid=a&sample_rate=abc', 400, /integer/],
    ['/v1/audio/stream?uid=a&codec=lc3&frame_us=5000&frame_bytes=40', 400, /frame_us/],
    ['/v1/audio/stream?uid=a&codec=lc3&frame_bytes=10', 400, /frame_bytes/],
    ['/v1/audio/stream?uid=a&codec=lc3&frame_bytes=40&sample_rate=44100', 400, /LC3 sample_rate/],
    ['/v1/audio/stream?uid=a&codec=lc3_fs1030&sample_rate=8000', 400, /16 kHz/],
    ['/v1/audio/stream?uid=a&ack=yes', 400, /ack must be/],
    ['/v1/audio/stream?uid=a&conversation_id=../x', 400, /conversation_id must match/],
    ['/v1/nowhere?uid=a', 404, /no WebSocket endpoint/],
  ];
  for (const [path, status, re] of cases) {
    const r = await handshake(svc, path);
    t.equal(r.status, status, path);
    t.match(JSON.parse(r.body).error, re, path);
  }
  t.equal(await svc.metric('pusher_rejected_total', { reason: 'bad_request' }), 11);
  t.equal(await svc.metric('pusher_rejected_total', { reason: 'not_found' }), 1);
  const plain = await fetch(svc.url('/v1/audio/stream'));
  t.equal(plain.status, 426, 'plain GET on a WebSocket endpoint');
  t.equal((await fetch(svc.url('/nope'))).status, 404);
});

t.test('auth: jwt and static service tokens', async (t) => {
  const jwt = await startTestService({ AUTH_MODE: 'jwt', AUTH_SECRET: 's3cret' });
  t.teardown(() => jwt.close());
  t.equal((await handshake(jwt, '/v1/audio/stream?uid=a')).status, 401, 'no token');
  t.equal((await handshake(jwt, '/v1/audio/stream?uid=a&token=garbage')).status, 401, 'bad token');
  const wrongKey = await signToken('other', 'alice', 60);
  t.equal((await handshake(jwt, '/v1/audio/stream', { authorization: `Bearer ${wrongKey}` })).status, 401, 'wrong key');
  const expired = await signToken('s3cret', 'alice', -10);
  t.match((await handshake(jwt, `/v1/audio/stream?token=${expired}`)).body, /exp/, 'expired');
  const good = await signToken('s3cret', 'alice', 60);
  const ws = await jwt.ws('/v1/audio/stream?uid=mallory', { authorization: `Bearer ${good}` });
  ws.send(Buffer.alloc(30));
  await until(async () => (await jwt.metricSum('pusher_sessions_active')) === 1, 5000, 'session');
  ws.close();

  const st = await startTestService({ AUTH_MODE: 'static', AUTH_SECRET: 'svc-token' });
  t.teardown(() => st.close());
  t.equal((await handshake(st, '/v1/trigger/listen?uid=a', { authorization: 'Bearer nope' })).status, 403);
  const ok = await st.ws('/v1/trigger/listen?uid=a&token=svc-token');
  ok.close();
});

t.test('after the upgrade: close codes and reasons, counted, neighbours unharmed', async (t) => {
  const svc = await startTestService({ SHARDS: '1', RECEIVE_TIMEOUT_S: '1', RING_BYTES: '4096', MAX_MESSAGE_BYTES: '64KiB', MAX_JSON_BYTES: '8KiB' });
  t.teardown(() => svc.close());
  // A well-behaved session on the same (only) shard keeps streaming through all of it.
  const good = await svc.ws('/v1/audio/stream?uid=good');
  let sent = 0;
  const pump = setInterval(() => {
    for (let i = 0; i < 5; i++, sent++) good.send(Buffer.alloc(30, sent & 0xff));
  }, 20);

  const lc3 = '/v1/trigger/listen?uid=p&codec=lc3_fs1030';
  const cases: [string, Buffer | string, number, RegExp, string][] = [
    [lc3, 'hello', 1003, /text message where binary/, 'text_not_binary'],
    [lc3, Buffer.from([1, 2]), 1003, /shorter than its 4-byte header/, 'malformed'],
    [lc3, pusherMsg(999), 1003, /unknown header 999/, 'unknown_header'],
    [lc3, pusherMsg(101, Buffer.alloc(4)), 1003, /8-byte timestamp/, 'malformed'],
    [lc3, audioMsg(1700000000, Buffer.alloc(31)), 1007, /whole 30-byte LC3 frames/, 'bad_frame_size'],
    ['/v1/trigger/listen?uid=p', audioMsg(1700000000, Buffer.alloc(3)), 1007, /odd byte count/, 'bad_frame_size'],
    [lc3, pusherMsg(102, '{not json'), 1007, /not valid JSON/, 'invalid_payload'],
    [lc3, pusherMsg(102, '{"segments":[{"text":1}]}'), 1007, /segment needs/, 'invalid_payload'],
    [lc3, pusherMsg(104, '{"conversation_id":"../../x"}'), 1007, /104/, 'invalid_payload'],
    [lc3, pusherMsg(105, '{"person_id":"p"}'), 1007, /105/, 'invalid_payload'],
    [lc3, pusherMsg(103, '../../escape'), 1007, /conversation id must match/, 'invalid_payload'],
    [lc3, pusherMsg(103, Buffer.from([0xff, 0xfe])), 1007, /not valid UTF-8/, 'invalid_payload'],
    [lc3, audioMsg(1700000000, Buffer.alloc(66000)), 1009, /./, 'oversized'],
    [lc3, pusherMsg(102, JSON.stringify({ segments: [{ text: 'x'.repeat(9000), start: 0, end: 1 }] })), 1009, /MAX_JSON_BYTES/, 'oversized'],
    ['/v1/audio/stream?uid=d', Buffer.alloc(31), 1007, /whole 30-byte/, 'bad_frame_size'],
    ['/v1/audio/stream?uid=d', '{"type":"conversation"', 1007, /not valid JSON/, 'invalid_json'],
    ['/v1/audio/stream?uid=d', '{"type":"other"}', 1007, /must be \{"type":"conversation"/, 'invalid_json'],
    ['/v1/audio/stream?uid=d', '{"type":"conversation","id":"a/b"}', 1007, /conversation id must match/, 'bad_conversation_id'],
  ];
  for (const [path, msg, code, re, reason] of cases) {
    const before = await svc.metric('pusher_rejected_total', { reason });
    const ws = await svc.ws(path);
    const done = closed(ws);
    ws.send(msg);
    const c = await done;
    t.equal(c.code, code, `${reason}: close code`);
    if (re.source !== ".") t.match(c.reason, re, `${reason}: reason names the problem`); // ws closes an oversized frame itself, without a reason
    await until(async () => (await svc.metric('pusher_rejected_total', { reason })) === before + 1, 3000, `${reason} counted`);
  }

  // Idle past the receive timeout → 1001 (heartbeats and audio keep a session alive).
  const idle = await svc.ws('/v1/trigger/listen?uid=idle');
  const idleClose = await closed(idle);
  t.equal(idleClose.code, 1001);
  t.match(idleClose.reason, /idle/);

  clearInterval(pump);
  await new Promise<void>((r) => good.send(Buffer.alloc(30), () => r()));
  sent++;
  await until(async () => (await svc.metricSum('pusher_frames_received_total')) >= sent, 10000, 'good session received');
  t.equal(good.readyState, good.OPEN, 'the good session was never disturbed');
  t.equal(await svc.metricSum('pusher_frames_received_total'), sent, 'every frame of the good session received');
  good.close();
});

t.test('no ring slot free → 1013', async (t) => {
  const svc = await startTestService({ SHARDS: '1', SLOTS_PER_SHARD: '2' });
  t.teardown(() => svc.close());
  const a = await svc.ws('/v1/audio/stream?uid=a');
  const b = await svc.ws('/v1/audio/stream?uid=b');
  const c = await svc.ws('/v1/audio/stream?uid=c');
  const r = await closed(c);
  t.equal(r.code, 1013);
  t.match(r.reason, /overloaded/);
  t.equal(await svc.metric('pusher_rejected_total', { reason: 'overloaded' }), 1);
  const ca = closed(a);
  a.close();
  await ca;
  await until(async () => (await svc.metricSum('pusher_slots_leased')) === 1, 5000, 'slot freed');
  const d = await svc.ws('/v1/audio/stream?uid=d');
  d.send(Buffer.alloc(30));
  await until(async () => (await svc.metricSum('pusher_frames_received_total')) === 1, 5000, 'new session works');
  b.close();
  d.close();
});

t.test('drain: sessions closed with 1001, new ones refused', async (t) => {
  const svc = await startTestService();
  const ws = await svc.ws('/v1/audio/stream?uid=a');
  const c = closed(ws);
  const stopping = svc.close();
  const r = await c;
  t.equal(r.code, 1001);
  t.match(r.reason, /draining/);
  await stopping;
});
