// Per-user settings: file merge, SETTINGS_URL with TTL/LRU cache and fallbacks, validation.
import t from 'tap';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import {
  createSettingsProvider,
  DEFAULT_SETTINGS,
  FileSettings,
  HttpSettings,
  loadSettingsFile,
  mergeSettings,
  parseSettingsFile,
  parseUserSettings,
} from '../src/settings/index.js';

const DESIGN_EXAMPLE = {
  default: { private_cloud_sync: true },
  users: {
    u1: { audio_bytes_webhook: { url: 'http://hooks.example/bytes', seconds: 5 }, transcript_webhook: 'http://hooks.example/t', audio_apps: ['http://app.example/a'] },
    u2: { private_cloud_sync: false },
  },
};

t.test('nothing configured: private cloud sync on, every webhook off', async (t) => {
  const p = createSettingsProvider({});
  t.ok(p instanceof FileSettings);
  t.same(await p.get('anyone'), { private_cloud_sync: true, audio_bytes_webhook: null, transcript_webhook: null, audio_apps: [], transcript_apps: [] });
  t.same(mergeSettings(), DEFAULT_SETTINGS);
  await t.rejects(p.get('../x'), /invalid uid/);
});

t.test('the settings file: default and users merged key by key', async (t) => {
  const dir = t.testdir({ 'settings.json': JSON.stringify(DESIGN_EXAMPLE) });
  const p = createSettingsProvider({ file: join(dir, 'settings.json') }) as FileSettings;
  t.same(await p.get('u1'), {
    private_cloud_sync: true,
    audio_bytes_webhook: { url: 'http://hooks.example/bytes', seconds: 5 },
    transcript_webhook: 'http://hooks.example/t',
    audio_apps: ['http://app.example/a'],
    transcript_apps: [],
  });
  t.same(p.resolve('u2'), { ...DEFAULT_SETTINGS, private_cloud_sync: false });
  t.same(p.resolve('u3'), DEFAULT_SETTINGS);
  const off = parseSettingsFile(JSON.stringify({ default: { transcript_webhook: 'https://t.example/' }, users: { u: { transcript_webhook: null } } }), 'f');
  t.same(new FileSettings(off).resolve('u').transcript_webhook, null, 'null turns a default webhook off');
  t.same(new FileSettings(off).resolve('v').transcript_webhook, 'https://t.example/');
  t.same(parseSettingsFile('{}', 'f'), { default: {}, users: new Map() });
  const merged = mergeSettings({ audio_apps: ['http://a/'] }, { audio_apps: ['http://b/'] }, null, undefined);
  t.same(merged.audio_apps, ['http://b/'], 'lists are replaced, not concatenated');
});

t.test('a bad settings file is a clear startup error', async (t) => {
  const dir = t.testdir({ 'bad.json': '{"default": {"private_cloud_sync": "yes"}}', 'broken.json': '{nope' });
  t.throws(() => createSettingsProvider({ file: join(dir, 'missing.json') }), /settings file .*missing\.json: cannot read it/);
  t.throws(() => loadSettingsFile(join(dir, 'broken.json')), /not valid JSON/);
  t.throws(() => loadSettingsFile(join(dir, 'bad.json')), /default\.private_cloud_sync: expected true or false, got "yes"/);
  const bad: [unknown, RegExp][] = [
    [[], /expected an object with "default" and\/or "users"/],
    [{ defaults: {} }, /unknown key "defaults"/],
    [{ users: [] }, /"users" must be an object keyed by uid/],
    [{ users: { 'a/b': {} } }, /invalid uid "a\/b"/],
    [{ users: { u: null } }, /users\.u: expected an object/],
    [{ default: { colour: 'blue' } }, /unknown setting "colour"/],
    [{ default: { audio_bytes_webhook: 'http://x/' } }, /expected \{"url","seconds"\} or null/],
    [{ default: { audio_bytes_webhook: { url: 'http://x/', seconds: 5, extra: 1 } } }, /unknown key "extra"/],
    [{ default: { audio_bytes_webhook: { url: 'http://x/', seconds: 0 } } }, /seconds: expected a number in \(0, 3600\]/],
    [{ default: { audio_bytes_webhook: { url: 'http://x/', seconds: '5' } } }, /seconds/],
    [{ default: { audio_bytes_webhook: { url: 'ftp://x/', seconds: 5 } } }, /url: expected an http\(s\) URL, got "ftp:\/\/x\/"/],
    [{ default: { transcript_webhook: 'not a url' } }, /transcript_webhook: expected an http\(s\) URL/],
    [{ default: { transcript_webhook: 42 } }, /expected an http\(s\) URL, got 42/],
    [{ default: { audio_apps: 'http://x/' } }, /audio_apps: expected an array of URLs/],
    [{ default: { audio_apps: Array(33).fill('http://x/') } }, /at most 32 audio apps/],
    [{ default: { audio_apps: ['http://x/', 'nope'] } }, /audio_apps\[1\]/],
  ];
  for (const [content, re] of bad) t.throws(() => parseSettingsFile(JSON.stringify(content), 'f.json'), re, JSON.stringify(content));
  t.same(parseUserSettings({ audio_bytes_webhook: null }, 'x'), { audio_bytes_webhook: null });
});

interface Server {
  url: string;
  hits: Map<string, number>;
  headers: IncomingMessage['headers'][];
  answer: (uid: string, res: ServerResponse) => void;
  close(): Promise<void>;
}

async function settingsServer(): Promise<Server> {
  const s: Partial<Server> = { hits: new Map(), headers: [] };
  const server = createServer((req, res) => {
    const u = new URL(req.url!, 'http://x');
    const uid = u.searchParams.get('uid')!;
    s.hits!.set(uid, (s.hits!.get(uid) ?? 0) + 1);
    s.headers!.push(req.headers);
    s.answer!(uid, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  s.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/settings?tenant=t1`;
  s.close = () =>
    new Promise((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return s as Server;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
}

t.test('SETTINGS_URL: fetched per uid, cached for the TTL, merged over the file', async (t) => {
  const srv = await settingsServer();
  t.teardown(() => srv.close());
  let version = 1;
  srv.answer = (uid, res) => json(res, 200, { transcript_webhook: `http://t.example/${uid}/${version}` });
  let now = 1_000_000;
  const dir = t.testdir({ 's.json': JSON.stringify({ default: { audio_apps: ['http://app/'] }, users: { u1: { private_cloud_sync: false } } }) });
  const p = createSettingsProvider({ file: join(dir, 's.json'), url: srv.url, http: { ttlMs: 1000, now: () => now, headers: { authorization: 'Bearer k' } } });
  t.ok(p instanceof HttpSettings);
  const h = p as HttpSettings;
  t.same(await h.get('u1'), { private_cloud_sync: false, audio_bytes_webhook: null, transcript_webhook: 'http://t.example/u1/1', audio_apps: ['http://app/'], transcript_apps: [] });
  await h.get('u1');
  t.equal(srv.hits.get('u1'), 1, 'second get served from the cache');
  t.equal(srv.headers[0]!.authorization, 'Bearer k');
  t.equal(srv.headers[0]!.accept, 'application/json');
  // Expired: the stale answer now, a refresh in the background, the new answer next time.
  version = 2;
  now += 1500;
  t.equal((await h.get('u1')).transcript_webhook, 'http://t.example/u1/1', 'stale while revalidating');
  for (let i = 0; i < 1000 && h.stats().fetches < 2; i++) await new Promise((r) => setTimeout(r, 10));
  for (let i = 0; i < 1000 && (await h.get('u1')).transcript_webhook !== 'http://t.example/u1/2'; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal((await h.get('u1')).transcript_webhook, 'http://t.example/u1/2');
  t.match(h.stats(), { cached: 1, fetches: 2, errors: 0 });
  t.ok(h.stats().hits >= 2);
});

t.test('SETTINGS_URL: concurrent gets share one request; 404 and null mean "nothing special"', async (t) => {
  const srv = await settingsServer();
  t.teardown(() => srv.close());
  srv.answer = (uid, res) => {
    if (uid === 'ghost') json(res, 404, { error: 'no such user' });
    else if (uid === 'nobody') json(res, 200, 'null');
    else setTimeout(() => json(res, 200, { private_cloud_sync: false }), 50);
  };
  const h = new HttpSettings({ url: srv.url });
  const all = await Promise.all(Array.from({ length: 5 }, () => h.get('busy')));
  t.equal(srv.hits.get('busy'), 1);
  t.ok(all.every((s) => s.private_cloud_sync === false));
  t.same(await h.get('ghost'), DEFAULT_SETTINGS);
  t.same(await h.get('nobody'), DEFAULT_SETTINGS);
  await t.rejects(h.get(''), /invalid uid/);
  srv.answer = (_uid, res) => json(res, 503, 'down');
  t.same(await new HttpSettings({ url: srv.url }).get('quiet'), DEFAULT_SETTINGS, 'errors without an onError hook');
  t.throws(() => new HttpSettings({ url: 'file:///etc/passwd' }), /SETTINGS_URL: expected an http\(s\) URL/);
});

t.test('SETTINGS_URL errors: last known answer, else file/defaults; retried after errorTtlMs', async (t) => {
  const srv = await settingsServer();
  t.teardown(() => srv.close());
  let mode: 'ok' | '500' | 'garbage' | 'invalid' | 'hang' = 'ok';
  srv.answer = (_uid, res) => {
    if (mode === 'ok') json(res, 200, { private_cloud_sync: false, audio_apps: ['http://known/'] });
    else if (mode === '500') json(res, 500, { error: 'boom' });
    else if (mode === 'garbage') json(res, 200, '<html>');
    else if (mode === 'invalid') json(res, 200, { private_cloud_sync: 'nope' });
    // 'hang': never answers
  };
  let now = 0;
  const errors: string[] = [];
  const h = new HttpSettings({ url: srv.url, ttlMs: 100, errorTtlMs: 1000, timeoutMs: 200, now: () => now, onError: (e, uid) => errors.push(`${uid}: ${e.message}`) });
  const known = await h.get('k');
  t.equal(known.private_cloud_sync, false);
  // Never answered for this uid: file/defaults — sync ON.
  mode = '500';
  t.same(await h.get('fresh'), DEFAULT_SETTINGS);
  t.match(errors.at(-1), /fresh: settings for fresh: HTTP 500/);
  // Within errorTtlMs: no new request.
  await h.get('fresh');
  t.equal(srv.hits.get('fresh'), 1);
  for (const m of ['garbage', 'invalid', 'hang'] as const) {
    mode = m;
    now += 5000;
    t.same(await h.get('fresh'), DEFAULT_SETTINGS, `${m}: defaults`);
    // Known uid, expired: the stale answer, then the failed refresh keeps it.
    const stale = await h.get('k');
    t.same(stale, known, `${m}: last known answer`);
    for (let i = 0; i < 1000 && errors.length < 1 + 2 * (['garbage', 'invalid', 'hang'].indexOf(m) + 1); i++) await new Promise((r) => setTimeout(r, 10));
    t.same(await h.get('k'), known);
  }
  t.match(errors.join('\n'), /not JSON/);
  t.match(errors.join('\n'), /private_cloud_sync: expected true or false/);
  t.match(errors.join('\n'), /aborted|timeout/i);
  t.ok(h.stats().errors >= 7);
});

t.test('SETTINGS_URL cache is bounded (least recently used go first)', async (t) => {
  const srv = await settingsServer();
  t.teardown(() => srv.close());
  srv.answer = (uid, res) => json(res, 200, { transcript_webhook: `http://t/${uid}` });
  const h = new HttpSettings({ url: srv.url, maxEntries: 2 });
  await h.get('a');
  await h.get('b');
  await h.get('a'); // a is now the most recent
  await h.get('c'); // evicts b
  t.equal(h.stats().cached, 2);
  await h.get('a');
  t.equal(srv.hits.get('a'), 1, 'a stayed');
  await h.get('b');
  t.equal(srv.hits.get('b'), 2, 'b was evicted and fetched again');
});

t.test('an unreadable settings file named in the config is refused', async (t) => {
  const dir = t.testdir();
  writeFileSync(join(dir, 'x.json'), JSON.stringify({ users: { ok: { audio_apps: [] } } }));
  t.same(createSettingsProvider({ file: join(dir, 'x.json'), url: '' }) instanceof FileSettings, true);
  t.throws(() => createSettingsProvider({ url: 'not a url' }), /SETTINGS_URL/);
});
