// The limit primitives on their own: token buckets, per-connection rates, the clock-skew check,
// admission (connections, sessions per uid) and how Node's client errors are answered.
import { PassThrough } from 'node:stream';
import t from 'tap';
import { Admission, answerClientError, AUDIO_BURST_S, classifyClientError, httpServerLimits, MESSAGE_BURST_S, plausibleTimestamp, SessionRate } from '../src/server/limits.js';
import { RateBucket } from '../src/server/rate-window.js';

t.test('RateBucket: burst, refill at the rate, no refill from a clock that steps back', async (t) => {
  const b = new RateBucket(10, 5, 1000);
  for (let i = 0; i < 5; i++) t.ok(b.take(1, 1000), `burst token ${i + 1}`);
  t.notOk(b.take(1, 1000), 'empty after the burst');
  t.notOk(b.take(1, 1050), '50 ms refill 0.5 of a token: not enough');
  t.ok(b.take(1, 1100), '100 ms at 10/s refills one token');
  t.notOk(b.take(1, 900), 'a clock stepping back refills nothing');
  t.ok(b.take(5, 1e9), 'a long pause refills to the burst');
  t.notOk(b.take(0.5, 1e9), '…and no further');
  t.notOk(b.take(6, 2e9), 'a cost above the burst never passes');
  const off = new RateBucket(0, 0, 0);
  t.ok(off.unlimited);
  t.ok(off.take(1e12, 0), 'rate 0: unlimited');
  t.throws(() => new RateBucket(-1, 1, 0), /must be ≥ 0/);
  t.throws(() => new RateBucket(1, NaN, 0), /must be ≥ 0/);
});

t.test('SessionRate: messages and audio bytes, with the documented bursts', async (t) => {
  const bps = 32000; // PCM16 at 16 kHz
  const r = new SessionRate({ MAX_MESSAGES_PER_S: 100, MAX_AUDIO_S_PER_S: 20, MAX_MESSAGE_BYTES: 1 << 20 }, bps, 0);
  let n = 0;
  while (r.message(0)) n++;
  t.equal(n, 100 * MESSAGE_BURST_S, 'MESSAGE_BURST_S seconds of messages saved up');
  t.ok(r.message(10), 'refills at 100/s (1 message per 10 ms)');
  const burst = 20 * bps * AUDIO_BURST_S + (1 << 20);
  t.ok(r.audioBytes(1 << 20, 0), 'one largest message passes on a fresh bucket');
  t.ok(r.audioBytes(burst - (1 << 20), 0), 'and the rest of the burst');
  t.notOk(r.audioBytes(2, 0), 'then nothing');
  t.ok(r.audioBytes(20 * bps, 1000), '1 s later: 20 s of audio');
  t.notOk(r.audioBytes(2, 1000), '…and not a sample more');
  const off = new SessionRate({ MAX_MESSAGES_PER_S: 0, MAX_AUDIO_S_PER_S: 0, MAX_MESSAGE_BYTES: 1024 }, bps, 0);
  for (let i = 0; i < 1e5; i++) if (!off.message(0)) t.fail('0 = unlimited');
  t.ok(off.audioBytes(1e12, 0), '0 = unlimited audio');
});

t.test('plausibleTimestamp: within the skew, either side; NaN and infinities are not', async (t) => {
  const now = 1_760_000_000_000;
  t.ok(plausibleTimestamp(now / 1000, now, 86400));
  t.ok(plausibleTimestamp(now / 1000 - 86400, now, 86400), 'exactly a day behind');
  t.ok(plausibleTimestamp(now / 1000 + 86400, now, 86400), 'exactly a day ahead');
  t.notOk(plausibleTimestamp(now / 1000 - 86401, now, 86400), 'a day and a second behind');
  t.notOk(plausibleTimestamp(now / 1000 + 86401, now, 86400), 'a day and a second ahead');
  for (const bad of [0, -1, NaN, Infinity, -Infinity, 1e300]) t.notOk(plausibleTimestamp(bad, now, 86400), `${bad}`);
});

t.test('Admission: MAX_CONNECTIONS counts handshakes and sessions; uids are claimed and released', async (t) => {
  let open = 0;
  const a = new Admission({ MAX_CONNECTIONS: 3, MAX_SESSIONS_PER_UID: 2 }, () => open);
  a.enter();
  a.enter();
  open = 1;
  t.equal(a.inProgress, 2);
  t.throws(() => a.enter(), { status: 503, reason: 'too_many_connections', message: /MAX_CONNECTIONS/ });
  a.leave();
  t.doesNotThrow(() => a.enter(), 'a finished handshake frees its place');
  a.claimUid('u');
  a.claimUid('u');
  t.throws(() => a.claimUid('u'), { status: 429, reason: 'too_many_sessions', message: /MAX_SESSIONS_PER_UID=2/ });
  t.doesNotThrow(() => a.claimUid('v'), 'another uid is not affected');
  a.releaseUid('u');
  t.equal(a.sessionsOf('u'), 1);
  t.doesNotThrow(() => a.claimUid('u'), 'a released claim is free again');
  a.releaseUid('u');
  a.releaseUid('u');
  a.releaseUid('u'); // one too many: stays at zero, never negative
  t.equal(a.sessionsOf('u'), 0);
  a.claimUid('u');
  a.claimUid('u');
  t.throws(() => a.claimUid('u'), 'still bounded after an extra release');
});

t.test('Node server limits and client errors', async (t) => {
  const l = httpServerLimits(10_000, 16384);
  t.same(l, { headersTimeout: 10_000, requestTimeout: 10_000, maxHeaderSize: 16384, connectionsCheckingInterval: 1000 });
  t.equal(httpServerLimits(200, 1024).connectionsCheckingInterval, 50, 'checked often enough for a short deadline');
  t.match(classifyClientError(Object.assign(new Error('x'), { code: 'HPE_HEADER_OVERFLOW' })), { status: 431, reason: 'header_too_large' });
  t.match(classifyClientError(Object.assign(new Error('x'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' })), { status: 408, reason: 'handshake_timeout' });
  t.match(classifyClientError(Object.assign(new Error('x'), { code: 'HPE_INVALID_METHOD' })), { status: 400, reason: 'bad_http' });

  const counted: string[] = [];
  const s = new PassThrough();
  let out = '';
  s.on('data', (d: Buffer) => (out += d.toString()));
  answerClientError(Object.assign(new Error('x'), { code: 'HPE_HEADER_OVERFLOW' }), s, (r) => counted.push(r));
  await new Promise((r) => setImmediate(r));
  t.match(out, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n[\s\S]*MAX_HEADER_BYTES/);
  t.ok(s.destroyed, 'socket destroyed');
  const reset = new PassThrough();
  answerClientError(Object.assign(new Error('x'), { code: 'ECONNRESET' }), reset, (r) => counted.push(r));
  t.ok(reset.destroyed, 'a reset socket is only destroyed');
  t.same(counted, ['header_too_large'], 'resets are not refusals');
});
