// The outgoing HTTP pool (src/http/): results and their labels, timeouts, aborts, and the rule that
// webhooks may not reach the operator's own network unless WEBHOOK_ALLOW_PRIVATE=1.
import t from 'tap';
import { createServer, type Server } from 'node:http';
import { HttpClient, isRetryableStatus } from '../src/http/client.js';
import { checkUrlHost, guardedLookup, isPrivateAddress } from '../src/http/destination.js';

async function listen(s: Server): Promise<number> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as { port: number }).port;
}

t.test('private, loopback, link-local and metadata addresses are recognised; public ones are not', async (t) => {
  for (const a of ['127.0.0.1', '10.1.2.3', '172.20.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '224.0.0.1', '::1', 'fe80::1', 'fd00:ec2::254', '::ffff:10.0.0.1', '64:ff9b::a00:1']) {
    t.ok(isPrivateAddress(a), `${a} is refused`);
  }
  for (const a of ['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111', '::ffff:8.8.8.8', 'not-an-ip']) t.notOk(isPrivateAddress(a), `${a} is allowed`);
  t.throws(() => checkUrlHost(new URL('http://[::1]:8080/x')), /private address/);
  t.throws(() => checkUrlHost(new URL('http://169.254.169.254/computeMetadata/v1/')), /WEBHOOK_ALLOW_PRIVATE/);
  t.doesNotThrow(() => checkUrlHost(new URL('https://example.com/hook')));
  // A name is judged by what it resolves to.
  const r = await new Promise<{ err: NodeJS.ErrnoException | null }>((resolve) => guardedLookup('localhost', {}, (err) => resolve({ err })));
  t.match(r.err?.message, /resolves to private address/);
  t.equal((r.err as { code?: string }).code, 'ERR_PRIVATE_DESTINATION');
  const bad = await new Promise<NodeJS.ErrnoException | null>((resolve) => guardedLookup('no-such-host.invalid', 4, (err) => resolve(err)));
  t.ok(bad, 'a name that does not resolve is an error');
});

t.test('results by target: statuses, refused, private destination, timeout, aborted', async (t) => {
  const srv = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      if (req.url === '/slow') return; // never answers
      const status = Number(new URL(req.url!, 'http://x').searchParams.get('status') ?? 200);
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(req.url === '/big' ? 'x'.repeat(200_000) : `${req.headers['content-type']} ${Buffer.concat(parts).length}`);
    });
  });
  const port = await listen(srv);
  t.teardown(() => {
    srv.closeAllConnections();
    srv.close();
  });
  const base = `http://127.0.0.1:${port}`;
  const c = new HttpClient({ allowPrivate: true, responseTimeoutMs: 300 });
  t.teardown(() => c.close());
  t.same(await c.post('hook', `${base}/a`, Buffer.alloc(1000), 'application/octet-stream'), { status: 200, body: 'application/octet-stream 1000' });
  t.equal((await c.post('hook', `${base}/a?status=422`, '{}', 'application/json')).status, 422);
  t.equal((await c.post('hook', `${base}/a?status=503`, '{}', 'application/json')).status, 503);
  t.equal((await c.post('hook', `${base}/a?status=302`, '{}', 'application/json')).status, 302);
  t.equal((await c.post('hook', `${base}/big`, '', 'text/plain')).body.length, 64 * 1024, 'a large answer is cut at 64 KiB');
  await t.rejects(c.post('hook', 'http://127.0.0.1:1/x', '', 'text/plain'), { code: 'ECONNREFUSED' });
  await t.rejects(c.post('slow', `${base}/slow`, '', 'text/plain'), 'no answer within the response timeout');
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 30);
  await t.rejects(c.post('aborted', `${base}/slow`, '', 'text/plain', ac.signal), { name: 'AbortError' });
  const guarded = new HttpClient();
  t.teardown(() => guarded.close());
  await t.rejects(guarded.post('hook', `${base}/a`, '', 'text/plain'), /private address/);
  await t.rejects(guarded.post('hook', `http://localhost:${port}/a`, '', 'text/plain'), /resolves to private address/);
  const byTarget = Object.fromEntries(c.stats().map((s) => [s.target, s]));
  t.same(byTarget.hook!.results, { '2xx': 2, '3xx': 1, '4xx': 1, '5xx': 1, refused: 1 });
  t.same(byTarget.slow!.results, { timeout: 1 });
  t.same(byTarget.aborted!.results, { aborted: 1 });
  t.equal(byTarget.hook!.latency.reduce((a, b) => a + b, 0), 6, 'one latency observation per request');
  t.same(guarded.stats()[0]!.results, { private_destination: 2 });
  t.ok(isRetryableStatus(500) && isRetryableStatus(408) && isRetryableStatus(429));
  t.notOk(isRetryableStatus(400) || isRetryableStatus(404) || isRetryableStatus(200));
});
