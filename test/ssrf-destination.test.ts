// The webhook destination guard (src/http/destination.ts, src/http/client.ts): which addresses are
// refused and why, every spelling of them a URL can carry, names judged by what the socket's own
// lookup resolves (each connect again), and redirects that cannot lead anywhere.
import { createServer, type Server } from 'node:http';
import type { LookupAddress } from 'node:dns';
import t, { type Test } from 'tap';
import { HttpClient } from '../src/http/client.js';
import { checkUrlHost, isPrivateAddress, makeGuardedLookup, privateReason, type Resolver } from '../src/http/destination.js';

async function listen(s: Server): Promise<number> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as { port: number }).port;
}

/** A loopback receiver counting what reaches it. */
async function receiver(t: Test, answer: (path: string) => { status: number; headers?: Record<string, string> } = () => ({ status: 200 })): Promise<{ port: number; hits: string[] }> {
  const hits: string[] = [];
  const srv = createServer((req, res) => {
    hits.push(req.url ?? '');
    req.resume();
    req.on('end', () => {
      const a = answer(req.url ?? '');
      res.writeHead(a.status, a.headers ?? {});
      res.end();
    });
  });
  const port = await listen(srv);
  t.teardown(() => {
    srv.closeAllConnections();
    srv.close();
  });
  return { port, hits };
}

/** A resolver that answers every name with `address`, counting calls. */
function fixedResolver(address: string): Resolver & { calls: number } {
  const r = ((_h: string, _o: unknown, cb: (e: NodeJS.ErrnoException | null, a: LookupAddress[]) => void) => {
    r.calls++;
    setImmediate(() => cb(null, [{ address, family: address.includes(':') ? 6 : 4 }]));
  }) as Resolver & { calls: number };
  r.calls = 0;
  return r;
}

t.test('every refused range, with its reason; public addresses pass', async (t) => {
  const cases: [string, string][] = [
    ['127.0.0.1', 'loopback'],
    ['127.255.0.9', 'loopback'],
    ['10.0.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.0.1', 'private'],
    ['169.254.169.254', 'metadata'],
    ['100.100.100.200', 'metadata'],
    ['fd00:ec2::254', 'metadata'],
    ['169.254.1.1', 'link_local'],
    ['100.64.0.1', 'cgnat'],
    ['0.0.0.0', 'unspecified'],
    ['224.0.0.251', 'multicast'],
    ['255.255.255.255', 'reserved'],
    ['192.0.2.10', 'reserved'],
    ['::', 'unspecified'],
    ['::1', 'loopback'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'], // the same, as WHATWG URL spells it
    ['::ffff:a00:1', 'private'],
    ['::ffff:169.254.169.254', 'metadata'],
    ['::127.0.0.1', 'translated'],
    ['64:ff9b::a00:1', 'translated'],
    ['2002:7f00:1::', 'translated'],
    ['fd00::1', 'unique_local'],
    ['fc00::1', 'unique_local'],
    ['fe80::1', 'link_local'],
    ['fe80::1%eth0', 'link_local'],
    ['febf:ffff::1', 'link_local'],
    ['ff02::1', 'multicast'],
  ];
  for (const [a, reason] of cases) t.equal(privateReason(a), reason, `${a}: ${reason}`);
  for (const a of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8', '2001:db9::1', 'example.com', '']) {
    t.notOk(isPrivateAddress(a), `${a || '(empty)'} passes`);
  }
});

t.test('URL spellings of loopback and private hosts are all caught before any connect', async (t) => {
  for (const u of [
    'http://127.0.0.1:8080/',
    'http://127.1/',
    'http://2130706433/', // decimal
    'http://0x7f000001/', // hex
    'http://0177.0.0.1/', // octal
    'http://10.0.0.1/hook',
    'http://169.254.169.254/latest/meta-data/',
    'http://[::1]:9/',
    'http://[::ffff:127.0.0.1]/',
    'http://[::ffff:10.0.0.1]/',
    'http://[fd00::1]/',
    'http://[fe80::1]/',
    'https://[0:0:0:0:0:0:0:1]/',
  ]) {
    t.throws(() => checkUrlHost(new URL(u)), { code: 'ERR_PRIVATE_DESTINATION' }, u);
  }
  t.doesNotThrow(() => checkUrlHost(new URL('https://hooks.example.com/x')), 'names are judged at connect');
});

t.test('a name is judged by the address the socket connects to, on every connect', async (t) => {
  const rx = await receiver(t);
  const toLoopback = fixedResolver('127.0.0.1');
  const guarded = new HttpClient({ resolver: toLoopback });
  t.teardown(() => guarded.close());
  for (let i = 0; i < 2; i++) {
    await t.rejects(guarded.post('audio_webhook', `http://hooks.example.test:${rx.port}/a`, 'x', 'text/plain'), /resolves to private address 127\.0\.0\.1 \(loopback/);
  }
  t.equal(toLoopback.calls, 2, 'resolved again for each connect: a re-pointed name is caught the next time');
  t.same(rx.hits, [], 'nothing reached the loopback receiver');
  const meta = new HttpClient({ resolver: fixedResolver('169.254.169.254') });
  t.teardown(() => meta.close());
  await t.rejects(meta.post('transcript_webhook', 'http://metadata.example.test/computeMetadata/v1/', '{}', 'application/json'), /metadata/);
  const v6 = new HttpClient({ resolver: fixedResolver('::ffff:127.0.0.1') });
  t.teardown(() => v6.close());
  await t.rejects(v6.post('app', `http://v6.example.test:${rx.port}/`, '{}', 'application/json'), /loopback/);
  const literal = new HttpClient();
  t.teardown(() => literal.close());
  await t.rejects(literal.post('app', 'http://[fd00::1]:9/', '{}', 'application/json'), /unique_local/);
  await t.rejects(literal.post('app', `http://localhost:${rx.port}/`, '{}', 'application/json'), /resolves to private address/);
  t.same(guarded.stats()[0]!.refused, { loopback: 2 });
  t.same(guarded.stats()[0]!.results, { private_destination: 2 });
  t.same(meta.stats()[0]!.refused, { metadata: 1 });
  t.same(v6.stats()[0]!.refused, { loopback: 1 });
  t.same(literal.stats()[0]!.refused, { unique_local: 1, loopback: 1 });

  // Control: the same fake name with private destinations allowed reaches the receiver, so the
  // refusals above come from the guard (and the resolver is the one the socket uses).
  const open = new HttpClient({ allowPrivate: true, resolver: fixedResolver('127.0.0.1') });
  t.teardown(() => open.close());
  t.equal((await open.post('audio_webhook', `http://hooks.example.test:${rx.port}/a`, 'x', 'text/plain')).status, 200);
  t.same(rx.hits, ['/a']);
});

t.test('guarded lookup: any private answer refuses the name; no answer is an error', async (t) => {
  const mixed: Resolver = (_h, _o, cb) => cb(null, [{ address: '93.184.216.34', family: 4 }, { address: '10.0.0.1', family: 4 }]);
  const err = await new Promise<NodeJS.ErrnoException | null>((r) => makeGuardedLookup(mixed)('mixed.test', { all: true }, (e) => r(e)));
  t.match(err, { code: 'ERR_PRIVATE_DESTINATION', reason: 'private' }, 'one private address among public ones is enough to refuse');
  const none: Resolver = (_h, _o, cb) => cb(null, []);
  const err2 = await new Promise<NodeJS.ErrnoException | null>((r) => makeGuardedLookup(none)('none.test', 4, (e) => r(e)));
  t.match(err2, { code: 'ENOTFOUND' });
  const pub: Resolver = (_h, _o, cb) => cb(null, [{ address: '93.184.216.34', family: 4 }]);
  const one = await new Promise<unknown[]>((r) => makeGuardedLookup(pub)('pub.test', {}, (...a) => r(a)));
  t.same(one, [null, '93.184.216.34', 4], 'a single-address lookup gets address and family');
});

t.test('redirects are answers, never followed: a 3xx to 127.0.0.1 reaches nothing', async (t) => {
  const secret = await receiver(t);
  const hop = await receiver(t, (path) => ({ status: path === '/307' ? 307 : 302, headers: { location: `http://127.0.0.1:${secret.port}/secret` } }));
  // Even with private destinations allowed (the hop itself is on loopback), nothing follows.
  const c = new HttpClient({ allowPrivate: true });
  t.teardown(() => c.close());
  t.equal((await c.post('audio_webhook', `http://127.0.0.1:${hop.port}/302`, 'x', 'text/plain')).status, 302);
  t.equal((await c.post('audio_webhook', `http://127.0.0.1:${hop.port}/307`, 'x', 'text/plain')).status, 307);
  t.same(hop.hits, ['/302', '/307']);
  t.same(secret.hits, [], 'the redirect target was never asked');
  t.same(c.stats()[0]!.results, { '3xx': 2 });
});
