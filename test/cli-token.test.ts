// `lc3-pusher token`: what it mints is accepted by the service's own verifier (src/server/auth.ts,
// AUTH_MODE=jwt) as the uid it names; expired, foreign-key or tampered tokens are not; bad input
// is one line.
import t from 'tap';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { cli } from './support/cli.js';
import { MAX_TTL_S, mintToken, parseTtl } from '../src/cli/token.js';
import { authenticate } from '../src/server/auth.js';

delete process.env.AUTH_SECRET;

const jwt = (secret: string) => ({ AUTH_MODE: 'jwt' as const, AUTH_SECRET: secret });

t.test('a minted token is accepted by the service verifier as its uid', async (t) => {
  const r = await cli(['token', '--uid', 'alice_01', '--ttl', '1h', '--secret', 'k1']);
  t.equal(r.code, 0);
  t.same(r.err, []);
  t.equal(r.out.length, 1, 'only the token on stdout');
  const token = r.out[0]!;
  t.same(decodeProtectedHeader(token), { alg: 'HS256' });
  const claims = decodeJwt(token);
  t.equal(claims.sub, 'alice_01');
  const now = Math.floor(Date.now() / 1000);
  t.ok(Math.abs(claims.exp! - (now + 3600)) <= 2, `exp = now + 1h (${claims.exp! - now} s)`);
  t.equal(await authenticate(jwt('k1'), token), 'alice_01', 'authenticate() returns the uid');
  await t.rejects(authenticate(jwt('other'), token), { status: 401, message: /signature verification failed/ }, 'another key: refused');
  const [h, p, s] = token.split('.');
  const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, sub: 'mallory' })).toString('base64url')}.${s}`;
  t.not(forged, `${h}.${p}.${s}`);
  await t.rejects(authenticate(jwt('k1'), forged), { status: 401, message: /signature verification failed/ }, 'a changed sub: refused');

  const fromEnv = await cli(['token', '--uid', 'bob'], { AUTH_SECRET: 'envkey' });
  t.equal(fromEnv.code, 0, 'AUTH_SECRET from the environment; --ttl defaults to 1h');
  t.equal(await authenticate(jwt('envkey'), fromEnv.out[0]), 'bob');
  t.ok(decodeJwt(fromEnv.out[0]!).exp! - now <= 3602);
  const flagWins = await cli(['token', '--uid', 'bob', '--secret', 'flagkey'], { AUTH_SECRET: 'envkey' });
  t.equal(await authenticate(jwt('flagkey'), flagWins.out[0]), 'bob', '--secret wins over AUTH_SECRET');
});

t.test('an expired token is refused', async (t) => {
  // Minted "two hours ago" with a 1 h ttl: exp lies an hour in the past, no waiting needed.
  const realNow = Date.now;
  Date.now = () => realNow() - 2 * 3600_000;
  let token: string;
  try {
    token = await mintToken({ uid: 'carol', ttl: '1h', secret: 'k' }, {});
  } finally {
    Date.now = realNow;
  }
  t.ok(decodeJwt(token).exp! < Date.now() / 1000, 'exp in the past');
  await t.rejects(authenticate(jwt('k'), token), { status: 401, message: /invalid token: .*exp/ });
});

t.test('ttl forms and bounds', async (t) => {
  t.equal(parseTtl('90'), 90);
  t.equal(parseTtl('90s'), 90);
  t.equal(parseTtl('15m'), 900);
  t.equal(parseTtl('1h'), 3600);
  t.equal(parseTtl('7d'), 7 * 86400);
  t.equal(parseTtl('366d'), MAX_TTL_S);
  for (const bad of ['0', '367d', '1w', '-1h', 'soon', '1.5h', '']) t.throws(() => parseTtl(bad), /--ttl .*expected a duration in 1s\.\.366d/, `${JSON.stringify(bad)} refused`);
});

t.test('bad input: one line, exit 1, nothing on stdout', async (t) => {
  for (const [argv, env, re] of [
    [['token', '--uid', 'a/b', '--secret', 'k'], {}, /^lc3-pusher: --uid "a\/b": a uid must match \^\[A-Za-z0-9_-\]\{1,128\}\$$/],
    [['token', '--uid', 'x'.repeat(129), '--secret', 'k'], {}, /a uid must match/],
    [['token', '--uid', '', '--secret', 'k'], {}, /a uid must match/],
    [['token', '--uid', 'a', '--ttl', '2y', '--secret', 'k'], {}, /^lc3-pusher: --ttl "2y": expected a duration/],
    [['token', '--uid', 'a'], {}, /^lc3-pusher: no secret: set AUTH_SECRET .* or pass --secret$/],
    [['token', '--uid', 'a', '--secret', ''], {}, /no secret/],
    [['token'], {}, /^error: required option '--uid <uid>' not specified$/],
  ] as const) {
    const r = await cli([...argv], { ...env });
    t.equal(r.code, 1, `${argv.join(' ')}: exit 1`);
    t.equal(r.err.length, 1, 'one line');
    t.match(r.err[0], re);
    t.same(r.out, []);
  }
});
