// RedisSettings (SETTINGS_REDIS_URL) against a real redis-server in the Omi backend's layout:
// enabled/disabled webhooks, "url" and "url,seconds", bad values, the cache, and Redis going away
// (fail fast, last known value, errors counted) and coming back. The Omi value parsing is also tested
// on its own (no server needed).
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { connect, createServer, type AddressInfo } from 'node:net';
import {
  DEFAULT_SETTINGS,
  FileSettings,
  omiKeys,
  parseOmiWebhooks,
  parseSettingsFile,
  RedisSettings,
  type RedisSettingsOptions,
} from '../src/settings/index.js';

const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
const NO_REDIS = probe.error ? `redis-server is not on PATH (${probe.error.message}); install the Debian package redis-server to run these tests` : false;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns true; fails with `what` after `ms`. */
async function waitFor(what: string, ms: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** `p`, or a failure naming `what` after `ms`. */
async function within<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_r, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Sends one command over a fresh connection and returns its (simple, integer or error) reply line. */
function command(port: number, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let buf = '';
    const timer = setTimeout(() => sock.destroy(new Error(`no reply to ${args[0]} within 2000 ms`)), 2000);
    sock.on('connect', () => sock.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`));
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      const end = buf.indexOf('\r\n');
      if (end < 0) return;
      clearTimeout(timer);
      sock.destroy();
      const line = buf.slice(0, end);
      if (line.startsWith('-')) reject(new Error(`redis ${args[0]}: ${line.slice(1)}`));
      else resolve(line);
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

interface Redis {
  port: number;
  proc: ChildProcess;
  set(kv: Record<string, string | null>): Promise<void>;
  stop(): Promise<void>;
}

/** Starts redis-server on `port` and waits (with a deadline) until it answers PING. */
async function startRedis(port: number): Promise<Redis> {
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  let exited = false;
  const exit = new Promise<void>((r) => proc.once('exit', () => ((exited = true), r())));
  try {
    await waitFor(`redis-server on 127.0.0.1:${port} to answer PING`, 10_000, async () => {
      if (exited) throw new Error(`redis-server exited before answering PING:\n${output}`);
      return (await command(port, 'PING').catch(() => '')) === '+PONG';
    });
  } catch (e) {
    proc.kill('SIGKILL');
    throw e;
  }
  return {
    port,
    proc,
    async set(kv) {
      for (const [k, v] of Object.entries(kv)) await command(port, ...(v === null ? ['DEL', k] : ['SET', k, v]));
    },
    async stop() {
      if (exited) return;
      proc.kill('SIGCONT');
      proc.kill('SIGTERM');
      const killer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
      await exit;
      clearTimeout(killer);
    },
  };
}

/** The Omi keys of one uid: [audio status, audio value, transcript status, transcript value]. */
function omi(uid: string, abStatus: string | null, ab: string | null, tStatus: string | null, tr: string | null): Record<string, string | null> {
  const k = omiKeys(uid);
  return { [k[0]!]: abStatus, [k[1]!]: ab, [k[2]!]: tStatus, [k[3]!]: tr };
}

const BASE = new FileSettings(
  parseSettingsFile(JSON.stringify({ default: { audio_apps: ['http://app.example/a'] }, users: { 'u-file': { transcript_webhook: 'http://file.example/t' } } }), 'base.json'),
);
/** What a uid gets when Redis knows nothing: the file/defaults, every webhook off. */
const FALLBACK = { ...DEFAULT_SETTINGS, audio_apps: ['http://app.example/a'] };

t.test('Omi values: status, "url" / "url,seconds", bad values', async (t) => {
  const p = (ab: [string | null, string | null], tr: [string | null, string | null] = [null, null]) => parseOmiWebhooks('u', [...ab, ...tr]);
  t.same(p([null, null]), { settings: { audio_bytes_webhook: null, transcript_webhook: null }, problems: [] }, 'nothing: both off (keys set, to override the file)');
  t.same(p(['true', 'http://h/a'], ['true', 'https://h/t?a=1,2']).settings, { audio_bytes_webhook: { url: 'http://h/a', seconds: 5 }, transcript_webhook: 'https://h/t?a=1,2' }, 'seconds default 5; a transcript URL is taken whole');
  t.same(p(['true', ' http://h/a , 10 ']).settings.audio_bytes_webhook, { url: 'http://h/a', seconds: 10 });
  t.same(p(['true', 'http://h/a,3600']).settings.audio_bytes_webhook, { url: 'http://h/a', seconds: 3600 });
  t.same(p([null, 'http://h/a'], [null, 'http://h/t']), { settings: { audio_bytes_webhook: null, transcript_webhook: null }, problems: [] }, 'missing status: off (as Omi delivers)');
  t.same(p(['false', 'http://h/a'], ['false', 'nope']), { settings: { audio_bytes_webhook: null, transcript_webhook: null }, problems: [] }, 'disabled: off, value not even checked');
  t.same(p(['true', null], ['true', '']), { settings: { audio_bytes_webhook: null, transcript_webhook: null }, problems: [] }, 'enabled without a URL: off, no error');
  t.same(p(['true', ',5'], ['true', '  ']).problems, [], "Omi's ',5' (URL cleared): off, no error");
  for (const bad of ['abc', '0', '-3', '2.5', '3601', '', '5,6']) {
    const r = p(['true', `http://h/a,${bad}`]);
    t.same(r.settings.audio_bytes_webhook, { url: 'http://h/a', seconds: 5 }, `seconds ${JSON.stringify(bad)}: default 5`);
    t.equal(r.problems.length, 1);
    t.match(r.problems[0]!.message, /users:u:developer:webhook:audio_bytes: seconds must be an integer in \[1, 3600\].*\(using 5\)/);
  }
  const badUrl = p(['true', 'not a url,5'], ['true', 'ftp://h/t']);
  t.same(badUrl.settings, { audio_bytes_webhook: null, transcript_webhook: null }, 'invalid URLs: off');
  t.equal(badUrl.problems.length, 2);
  t.match(badUrl.problems[0]!.message, /webhook:audio_bytes: expected an http\(s\) URL, got "not a url" \(webhook off\)/);
  t.match(badUrl.problems[1]!.message, /webhook:realtime_transcript: expected an http\(s\) URL, got "ftp:\/\/h\/t"/);
  const odd = p(['TRUE', 'http://h/a'], ['1', 'http://h/t']);
  t.same(odd.settings, { audio_bytes_webhook: null, transcript_webhook: null }, "only the exact string 'true' enables");
  t.equal(odd.problems.length, 2);
  t.match(odd.problems[0]!.message, /webhook_status:audio_bytes: expected "true" or "false", got "TRUE"/);
});

t.test('against redis-server', { skip: NO_REDIS }, async (t) => {
  const port = await freePort();
  let redis = await startRedis(port);
  t.teardown(() => redis.stop());
  let now = 1_000_000;
  const errors: string[] = [];
  const make = (o: Partial<RedisSettingsOptions> = {}): RedisSettings => {
    const p = new RedisSettings({ url: `redis://127.0.0.1:${port}`, base: BASE, ttlMs: 1000, errorTtlMs: 500, timeoutMs: 300, now: () => now, onError: (e, uid) => errors.push(`${uid}: ${e.message}`), ...o });
    t.teardown(() => p.close());
    return p;
  };

  await redis.set({
    ...omi('u-on', 'true', 'http://hooks.example/bytes,10', 'true', 'http://hooks.example/t'),
    ...omi('u-five', 'true', 'http://hooks.example/bytes', 'false', 'http://hooks.example/t'),
    ...omi('u-off', 'false', 'http://hooks.example/bytes,10', 'false', 'http://hooks.example/t'),
    ...omi('u-nostatus', null, 'http://hooks.example/bytes,10', null, 'http://hooks.example/t'),
    ...omi('u-bad', 'true', 'not a url', 'true', 'ftp://hooks.example/t'),
    ...omi('u-badsec', 'true', 'http://hooks.example/bytes,soon', null, null),
  });
  const r = make();

  await t.test('values in the Omi layout, merged over the file', async (t) => {
    t.same(await r.get('u-on'), { ...FALLBACK, audio_bytes_webhook: { url: 'http://hooks.example/bytes', seconds: 10 }, transcript_webhook: 'http://hooks.example/t' });
    t.same(await r.get('u-five'), { ...FALLBACK, audio_bytes_webhook: { url: 'http://hooks.example/bytes', seconds: 5 } }, '"url": 5 s; transcript disabled');
    t.same(await r.get('u-off'), FALLBACK, 'disabled');
    t.same(await r.get('u-nostatus'), FALLBACK, 'missing status: disabled');
    t.same(await r.get('u-none'), FALLBACK, 'missing keys: off');
    t.same(await r.get('u-file'), FALLBACK, "Redis's answer (off) overrides the file's transcript_webhook");
    t.same(r.stats(), { source: 'redis', cached: 6, fetches: 6, errors: 0, hits: 0 });
    t.same(await r.get('u-bad'), FALLBACK, 'invalid URLs: off');
    t.equal(r.stats().errors, 2, 'each invalid URL counted');
    t.same((await r.get('u-badsec')).audio_bytes_webhook, { url: 'http://hooks.example/bytes', seconds: 5 }, 'bad seconds: default 5');
    t.equal(r.stats().errors, 3, 'the bad number counted');
    t.match(errors.join('\n'), /u-bad: .*webhook:audio_bytes: expected an http\(s\) URL, got "not a url"/);
    t.match(errors.join('\n'), /u-badsec: .*seconds must be an integer.*"soon"/);
    await t.rejects(r.get('a:b'), /invalid uid/);
  });

  await t.test('cached for the TTL, then refreshed (stale while revalidating)', async (t) => {
    await redis.set(omi('u-on', 'true', 'http://hooks.example/bytes2,20', 'false', null));
    const before = r.stats();
    t.equal((await r.get('u-on')).transcript_webhook, 'http://hooks.example/t', 'within the TTL: the cached answer');
    t.equal(r.stats().fetches, before.fetches, 'no read');
    t.equal(r.stats().hits, before.hits + 1);
    now += 1000;
    t.equal((await r.get('u-on')).transcript_webhook, 'http://hooks.example/t', 'expired: the stale answer at once');
    await waitFor('the background refresh of u-on', 5_000, async () => (await r.get('u-on')).transcript_webhook === null);
    t.same((await r.get('u-on')).audio_bytes_webhook, { url: 'http://hooks.example/bytes2', seconds: 20 });
    t.equal(r.stats().fetches, before.fetches + 1);
    const all = await Promise.all(Array.from({ length: 5 }, () => r.get('u-many')));
    t.ok(all.every((s) => s.audio_bytes_webhook === null));
    t.equal(r.stats().fetches, before.fetches + 2, 'concurrent gets share one read');
  });

  await t.test('Redis stopped: fail fast, last known value, errors counted; back after a restart', async (t) => {
    await redis.stop();
    const errorsBefore = r.stats().errors;
    now += 1000; // u-on expired: its refresh will fail
    let t0 = Date.now();
    const known = await within('get(u-on) while Redis is down', 5_000, r.get('u-on'));
    t.ok(Date.now() - t0 < 3000, `known uid answered in ${Date.now() - t0} ms`);
    t.same(known.audio_bytes_webhook, { url: 'http://hooks.example/bytes2', seconds: 20 }, 'the last known value');
    await waitFor('the failed refresh of u-on to be counted', 5_000, () => r.stats().errors > errorsBefore);
    t.same((await r.get('u-on')).audio_bytes_webhook, { url: 'http://hooks.example/bytes2', seconds: 20 }, 'still the last known value');
    t0 = Date.now();
    const unknown = await within('get(u-new) while Redis is down', 5_000, r.get('u-new'));
    const took = Date.now() - t0;
    t.ok(took < 3000, `never-seen uid answered in ${took} ms (< 3 s)`);
    t.same(unknown, FALLBACK, 'never-seen uid while unreachable: file/defaults, consumers off');
    t.equal(r.stats().errors, errorsBefore + 2);
    t.match(errors.at(-1), /^u-new: settings for u-new: Redis 127\.0\.0\.1:\d+ is unreachable/);
    const fetches = r.stats().fetches;
    await r.get('u-new');
    t.equal(r.stats().fetches, fetches, 'within the error TTL: no new read');

    redis = await startRedis(port);
    await redis.set({ ...omi('u-new', 'true', 'http://hooks.example/new', null, null), ...omi('u-on', 'false', null, 'true', 'http://hooks.example/t3') });
    t.same(await r.get('u-new'), FALLBACK, 'within the error TTL: still the fallback');
    await waitFor('u-new to come back from the restarted Redis', 15_000, async () => {
      now += 501; // past the error TTL: each get tries Redis again
      return (await r.get('u-new')).audio_bytes_webhook?.url === 'http://hooks.example/new';
    });
    now += 1000;
    await waitFor('u-on to be refreshed from the restarted Redis', 5_000, async () => (await r.get('u-on')).transcript_webhook === 'http://hooks.example/t3');
    t.equal((await r.get('u-on')).audio_bytes_webhook, null);
  });

  await t.test('a hung Redis: each read bounded by timeoutMs', async (t) => {
    redis.proc.kill('SIGSTOP');
    t.teardown(() => redis.proc.kill('SIGCONT'));
    const t0 = Date.now();
    const s = await within('get(u-hung) while Redis hangs', 5_000, r.get('u-hung'));
    const took = Date.now() - t0;
    t.ok(took >= 250 && took < 3000, `answered after the 300 ms timeout (${took} ms)`);
    t.same(s, FALLBACK);
    t.match(errors.at(-1), /^u-hung: .*did not answer within 300 ms/);
    redis.proc.kill('SIGCONT');
    await redis.set(omi('u-hung', 'true', 'http://hooks.example/h', null, null));
    await waitFor('u-hung once Redis runs again', 10_000, async () => {
      now += 501;
      return (await r.get('u-hung')).audio_bytes_webhook?.url === 'http://hooks.example/h';
    });
  });

  await t.test('close() quits the client; later gets answer from the cache without reading', async (t) => {
    const fetches = r.stats().fetches;
    await r.close();
    now += 10_000;
    t.equal((await r.get('u-hung')).audio_bytes_webhook?.url, 'http://hooks.example/h');
    t.same(await r.get('u-never'), FALLBACK);
    t.equal(r.stats().fetches, fetches);
    await r.close(); // twice is fine
  });
});

t.test('Redis down from the start: fail fast, then values once it is up', { skip: NO_REDIS }, async (t) => {
  const port = await freePort();
  let now = 0;
  const errors: string[] = [];
  const r = new RedisSettings({ url: `redis://127.0.0.1:${port}/0`, base: BASE, errorTtlMs: 500, timeoutMs: 300, now: () => now, onError: (e) => errors.push(e.message) });
  t.teardown(() => r.close());
  const t0 = Date.now();
  t.same(await within('get(u1) before Redis is up', 5_000, r.get('u1')), FALLBACK);
  t.ok(Date.now() - t0 < 3000, `answered in ${Date.now() - t0} ms`);
  t.match(errors[0], /Redis 127\.0\.0\.1:\d+ is unreachable.*ECONNREFUSED/);
  t.same(r.stats(), { source: 'redis', cached: 1, fetches: 1, errors: 1, hits: 0 });
  const redis = await startRedis(port);
  t.teardown(() => redis.stop());
  await redis.set(omi('u1', 'true', 'http://hooks.example/u1,7', 'true', 'http://hooks.example/t1'));
  await waitFor('u1 from Redis once it is up', 15_000, async () => {
    now += 501;
    return (await r.get('u1')).transcript_webhook === 'http://hooks.example/t1';
  });
  t.same((await r.get('u1')).audio_bytes_webhook, { url: 'http://hooks.example/u1', seconds: 7 });
});
