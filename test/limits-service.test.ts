// The limits through a live service: message and audio rates (1008), sessions per uid (429),
// connections per process (503), the handshake deadline (408) and header size (431), and 101
// timestamps far from the server clock (replaced, counted). Neighbours keep streaming.
import { connect } from 'node:net';
import t from 'tap';
import { WebSocket } from 'ws';
import { audioMsg, closed, pusherMsg, startTestService, until } from './support/service.js';

/** The HTTP status a refused WebSocket handshake got. */
function refusedWith(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once('open', () => reject(new Error(`${url}: opened, expected a refusal`)));
    ws.once('error', () => {});
  });
}

/** Raw bytes to the port; resolves with everything answered and how long until the server closed. */
function raw(port: number, data: string, deadlineMs: number): Promise<{ text: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    let text = '';
    const s = connect(port, '127.0.0.1', () => s.write(data));
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`server did not close the connection within ${deadlineMs} ms (got ${JSON.stringify(text)})`));
    }, deadlineMs);
    s.on('data', (d) => (text += d.toString()));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ text, ms: Date.now() - t0 });
    });
  });
}

t.test('message and audio rates: 1008 with a reason, counted; a real-time neighbour is unharmed', async (t) => {
  const svc = await startTestService({ MAX_MESSAGES_PER_S: '50', MAX_AUDIO_S_PER_S: '2', MAX_MESSAGE_BYTES: '64KiB' });
  t.teardown(() => svc.close());
  const honest = await svc.ws('/v1/trigger/listen?uid=honest&sample_rate=8000');
  const tick = setInterval(() => honest.send(audioMsg(Date.now() / 1000, new Uint8Array(1600))), 100); // real time: 10 msgs/s, 1 s/s
  t.teardown(() => clearInterval(tick));

  const chatty = await svc.ws('/v1/trigger/listen?uid=chatty');
  const chattyClosed = closed(chatty);
  for (let i = 0; i < 50 * 10 + 100; i++) chatty.send(pusherMsg(100)); // more than the 10 s burst of heartbeats at once
  const c1 = await chattyClosed;
  t.equal(c1.code, 1008);
  t.match(c1.reason, /MAX_MESSAGES_PER_S \(50\)/);

  // 8 kHz PCM: 16,000 B/s; the bucket holds 10 s at 2 s/s plus one 64 KiB message = 385,536 bytes.
  const greedy = await svc.ws('/v1/trigger/listen?uid=greedy&sample_rate=8000');
  const greedyClosed = closed(greedy);
  for (let i = 0; i < 30; i++) greedy.send(audioMsg(Date.now() / 1000, new Uint8Array(16000)));
  const c2 = await greedyClosed;
  t.equal(c2.code, 1008);
  t.match(c2.reason, /MAX_AUDIO_S_PER_S \(2\)/);
  t.equal(await svc.metric('pusher_rejected_total', { reason: 'message_rate' }), 1, 'counted once (what follows the close is not accepted)');
  t.equal(await svc.metric('pusher_rejected_total', { reason: 'audio_rate' }), 1);
  t.equal(honest.readyState, WebSocket.OPEN, 'the real-time neighbour is still streaming');
  honest.close();
  await closed(honest);
});

t.test('sessions per uid → 429 before the upgrade; released when a session closes', async (t) => {
  const svc = await startTestService({ MAX_SESSIONS_PER_UID: '2' });
  t.teardown(() => svc.close());
  const a = await svc.ws('/v1/audio/stream?uid=u1');
  const b = await svc.ws('/v1/audio/stream?uid=u1');
  t.equal(await refusedWith(`ws://127.0.0.1:${svc.port}/v1/audio/stream?uid=u1`), 429);
  const other = await svc.ws('/v1/audio/stream?uid=u2');
  t.pass('another uid is admitted');
  t.equal(await svc.metric('pusher_rejected_total', { reason: 'too_many_sessions' }), 1);
  a.close();
  await closed(a);
  await until(() => svc.server.admission.sessionsOf('u1') === 1, 5000, 'u1 down to one session');
  const c = await svc.ws('/v1/audio/stream?uid=u1');
  t.pass('admitted again once one closed');
  for (const w of [b, c, other]) w.close();
  await until(() => svc.server.connections.size === 0, 5000, 'all sessions closed');
  t.equal(svc.server.admission.sessionsOf('u1'), 0, 'no claim left behind');
});

t.test('connections per process → 503 before the upgrade', async (t) => {
  const svc = await startTestService({ MAX_CONNECTIONS: '3' });
  t.teardown(() => svc.close());
  const open = await Promise.all([1, 2, 3].map((i) => svc.ws(`/v1/audio/stream?uid=c${i}`)));
  t.equal(await refusedWith(`ws://127.0.0.1:${svc.port}/v1/audio/stream?uid=c4`), 503);
  t.equal(await svc.metric('pusher_rejected_total', { reason: 'too_many_connections' }), 1);
  t.equal((await fetch(svc.url('/healthz'))).status, 200, 'probes still answered');
  open[0]!.close();
  await until(() => svc.server.connections.size === 2, 5000, 'one session closed');
  const again = await svc.ws('/v1/audio/stream?uid=c4');
  t.pass('admitted once below the limit');
  for (const w of [...open, again]) w.close();
});

t.test('slow and oversized handshakes: 408 within the deadline, 431, counted', async (t) => {
  const svc = await startTestService({ HANDSHAKE_TIMEOUT_MS: '300', MAX_HEADER_BYTES: '2KiB' });
  t.teardown(() => svc.close());
  const stalled = await Promise.all([
    raw(svc.port, 'GET /v1/aud', 3000), // half a request line
    raw(svc.port, 'GET /v1/audio/stream?uid=x HTTP/1.1\r\nHost: x\r\n', 3000), // headers never end
    raw(svc.port, '', 3000), // nothing at all
  ]);
  for (const s of stalled) {
    t.match(s.text, /^HTTP\/1\.1 408 /, 'answered 408');
    t.ok(s.ms < 2000, `closed after ${s.ms} ms (deadline 300 ms, checked every 75 ms)`);
  }
  const big = await raw(svc.port, `GET /v1/audio/stream?uid=x HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(4096)}\r\n\r\n`, 3000);
  t.match(big.text, /^HTTP\/1\.1 431 /);
  t.equal(await svc.metric('pusher_rejected_total', { reason: 'handshake_timeout' }), 3);
  t.equal(await svc.metric('pusher_rejected_total', { reason: 'header_too_large' }), 1);
  const garbage = await raw(svc.port, 'BREW /pot HTCPCP/1.0\r\n\r\n', 3000);
  t.match(garbage.text, /^HTTP\/1\.1 400 /);
  t.equal(await svc.metric('pusher_rejected_total', { reason: 'bad_http' }), 1);
  const badUpgrade = await raw(svc.port, 'GET /v1/audio/stream?uid=x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n', 3000);
  t.match(badUpgrade.text, /^HTTP\/1\.1 400 /, 'an upgrade without a key: ws answers 400');
  t.equal(await svc.metric('pusher_rejected_total', { reason: 'bad_upgrade' }), 1);
  t.equal(svc.server.admission.sessionsOf('x'), 0, 'its uid claim was released');
  const ok = await svc.ws('/v1/audio/stream?uid=fine');
  t.pass('a prompt client still connects');
  ok.close();
});

t.test('101 timestamps more than MAX_CLOCK_SKEW_S away are replaced by the arrival time, counted', async (t) => {
  const svc = await startTestService({ MAX_CLOCK_SKEW_S: '3600' });
  t.teardown(() => svc.close());
  const ws = await svc.ws('/v1/trigger/listen?uid=clock&sample_rate=8000');
  const now = Date.now() / 1000;
  for (const ts of [now, now - 1800, now + 3599]) ws.send(audioMsg(ts, new Uint8Array(160)));
  for (const ts of [0, -5, NaN, now - 7200, now + 86400 * 365 * 80]) ws.send(audioMsg(ts, new Uint8Array(160)));
  // A large 101 goes in pieces, each stamped from the (replaced) first-sample time.
  ws.send(audioMsg(1, new Uint8Array(40000)));
  await until(async () => (await svc.metric('pusher_timestamps_replaced_total')) >= 6, 5000, 'six replaced timestamps counted');
  await new Promise((r) => setTimeout(r, 200));
  t.equal(await svc.metric('pusher_timestamps_replaced_total'), 6, 'the three plausible ones were kept');
  t.equal(ws.readyState, WebSocket.OPEN, 'a replaced timestamp is not an error');
  ws.close();
});
