// The built binary: `lc3-pusher serve` takes its settings as flags, over the environment's, and a
// token minted by `lc3-pusher token` opens a session on a service started with --auth-mode jwt.
// (Needs the build: npm run build:ts.)
import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const bin = fileURLToPath(new URL('../bin/lc3-pusher.cjs', import.meta.url));

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Resolves with the HTTP status of the handshake: 101 when the socket opened. */
function handshake(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    const timer = setTimeout(() => (ws.terminate(), reject(new Error(`no handshake answer from ${url} within 10 s`))), 10_000);
    ws.on('open', () => (clearTimeout(timer), ws.close(1000), resolve(101)));
    ws.on('unexpected-response', (_req, res) => (clearTimeout(timer), ws.terminate(), resolve(res.statusCode ?? 0)));
    ws.on('error', (err) => (clearTimeout(timer), reject(err)));
  });
}

t.test('flags over env; a minted token opens a session', async (t) => {
  const dir = t.testdir();
  const [port, envPort] = [await freePort(), await freePort()];
  const secret = 'cli-serve-test-key';
  // The environment says otherwise for PORT, SHARDS and AUTH_MODE: the flags must win.
  const env = { ...process.env, PORT: String(envPort), SHARDS: '2', AUTH_MODE: 'none', AUTH_SECRET: '', UV_THREADPOOL_SIZE: '' };
  const child = spawn(
    process.execPath,
    [bin, 'serve', '--port', String(port), '--host', '127.0.0.1', '--shards', '1', '--slots-per-shard', '16', '--spool-dir', `${dir}/spool`, '--store-dir', `${dir}/store`, '--auth-mode', 'jwt', '--auth-secret', secret, '--log-level', 'info'],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  t.teardown(() => child.kill('SIGKILL'));
  const deadline = Date.now() + 30_000;
  while (!out.includes('"listening"') && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.match(out, /"msg":"listening"/, 'listening within 30 s');
  t.match(out, new RegExp(`"port":${port}\\b`), '--port wins over PORT');
  t.match(out, /"shards":1\b/, '--shards wins over SHARDS');
  t.match(out, /"threadpool":16\b/, "libuv's pool is sized for --shards 1 (8 + 8 × 1), not for the env's SHARDS=2");
  t.same(await (await fetch(`http://127.0.0.1:${port}/healthz`)).json(), { ok: true });
  await t.rejects(fetch(`http://127.0.0.1:${envPort}/healthz`), 'nothing on the environment’s PORT');

  const run = promisify(execFile);
  const { stdout } = await run(process.execPath, [bin, 'token', '--uid', 'dana', '--ttl', '5m'], { env: { ...process.env, AUTH_SECRET: secret }, timeout: 20_000 });
  const token = stdout.trim();
  const url = `ws://127.0.0.1:${port}/v1/audio/stream`;
  t.equal(await handshake(url, { authorization: `Bearer ${token}` }), 101, 'the minted token opens a session (uid from sub)');
  t.equal(await handshake(`${url}?token=${token}`), 101, 'also as ?token=');
  t.equal(await handshake(`${url}?uid=dana`), 401, 'no token: 401 (--auth-mode jwt is in force)');
  const { stdout: foreign } = await run(process.execPath, [bin, 'token', '--uid', 'dana', '--secret', 'another-key'], { timeout: 20_000 });
  t.equal(await handshake(url, { authorization: `Bearer ${foreign.trim()}` }), 401, 'a token signed with another key: 401');

  child.kill('SIGTERM');
  t.equal(await exited, 0, 'exit 0 after the drain');
});

t.test('a bad flag: exit 1, one line, nothing started', async (t) => {
  const run = promisify(execFile);
  const err = await run(process.execPath, [bin, 'serve', '--max-json-bytes', '100GiB'], { env: { ...process.env, UV_THREADPOOL_SIZE: '' }, timeout: 20_000 }).then(
    () => undefined,
    (e: { code: number; stdout: string; stderr: string }) => e,
  );
  t.ok(err, 'non-zero exit');
  t.equal(err?.code, 1);
  t.equal(err?.stdout, '');
  t.equal(err?.stderr, 'lc3-pusher: MAX_JSON_BYTES=100GiB: expected a size in 1KiB..64MiB (env MAX_JSON_BYTES, flag --max-json-bytes)\n');
});
