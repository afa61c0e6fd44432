// Settings schema additions (transcript_apps), provider stats()/close(), and the choice of provider.
import t from 'tap';
import { join } from 'node:path';
import {
  createSettingsProvider,
  DEFAULT_SETTINGS,
  FileSettings,
  HttpSettings,
  mergeSettings,
  parseSettingsFile,
  parseUserSettings,
  RedisSettings,
  SettingsError,
} from '../src/settings/index.js';

t.test('transcript_apps: URLs, at most 32, default [], validated like audio_apps', async (t) => {
  t.same(DEFAULT_SETTINGS.transcript_apps, []);
  t.same(parseUserSettings({ transcript_apps: ['https://t.example/a', 'http://t.example/b'] }, 'x'), { transcript_apps: ['https://t.example/a', 'http://t.example/b'] });
  t.same(parseUserSettings({ transcript_apps: Array(32).fill('http://x/') }, 'x').transcript_apps?.length, 32);
  const bad: [unknown, RegExp][] = [
    [{ transcript_apps: 'http://x/' }, /x\.transcript_apps: expected an array of URLs/],
    [{ transcript_apps: Array(33).fill('http://x/') }, /at most 32 transcript apps/],
    [{ transcript_apps: ['http://x/', 'ftp://y/'] }, /transcript_apps\[1\]: expected an http\(s\) URL, got "ftp:\/\/y\/"/],
    [{ transcript_apps: [null] }, /transcript_apps\[0\]/],
  ];
  for (const [v, re] of bad) t.throws(() => parseUserSettings(v, 'x'), re, JSON.stringify(v));
  t.throws(() => parseUserSettings({ transcript_app: [] }, 'x'), /unknown setting "transcript_app" \(known: .*audio_apps, transcript_apps\)/);
  // Kept apart from audio_apps, replaced (not concatenated) layer by layer, copied.
  const layer = { transcript_apps: ['http://b/'] };
  const m = mergeSettings({ audio_apps: ['http://a/'], transcript_apps: ['http://a/'] }, layer);
  t.same(m.audio_apps, ['http://a/']);
  t.same(m.transcript_apps, ['http://b/']);
  m.transcript_apps.push('http://c/');
  t.same(layer.transcript_apps, ['http://b/'], 'the merge copies lists');
  t.same(mergeSettings().transcript_apps, []);
  t.not(mergeSettings().transcript_apps, DEFAULT_SETTINGS.transcript_apps, 'a fresh list each time');
  const f = new FileSettings(parseSettingsFile(JSON.stringify({ default: { transcript_apps: ['http://d/'] }, users: { u: { transcript_apps: [] } } }), 'f'));
  t.same(f.resolve('u').transcript_apps, []);
  t.same(f.resolve('v').transcript_apps, ['http://d/']);
});

t.test('every provider has stats() and close()', async (t) => {
  const f = new FileSettings();
  await f.get('u');
  t.same(f.stats(), { source: 'file', cached: 0, fetches: 0, errors: 0, hits: 0 });
  t.equal(await f.close(), undefined);
  const h = new HttpSettings({ url: 'http://127.0.0.1:9/settings' });
  t.same(h.stats(), { source: 'http', cached: 0, fetches: 0, errors: 0, hits: 0 });
  t.equal(await h.close(), undefined);
  const r = new RedisSettings({ url: 'redis://127.0.0.1:9' });
  t.same(r.stats(), { source: 'redis', cached: 0, fetches: 0, errors: 0, hits: 0 });
  await r.close(); // never connected: nothing to quit
  t.same(await r.get('u'), DEFAULT_SETTINGS, 'after close: no fetch, the file/defaults');
  t.equal(r.stats().fetches, 0);
});

t.test('createSettingsProvider: one remote source at most', async (t) => {
  const dir = t.testdir({ 's.json': JSON.stringify({ default: { private_cloud_sync: false } }) });
  const file = join(dir, 's.json');
  const err = t.throws(() => createSettingsProvider({ url: 'http://a/', redisUrl: 'redis://b' }), /SETTINGS_URL and SETTINGS_REDIS_URL/);
  t.ok(err instanceof SettingsError);
  t.throws(() => createSettingsProvider({ file: join(dir, 'missing.json'), url: 'http://a/', redisUrl: 'redis://b' }), /SETTINGS_URL and SETTINGS_REDIS_URL/, 'checked before the file');
  const r = createSettingsProvider({ file, redisUrl: 'redis://127.0.0.1:9', url: '' });
  t.ok(r instanceof RedisSettings, 'lazy: constructing does not connect');
  t.equal((await r.close(), r.stats().source), 'redis');
  t.ok(createSettingsProvider({ file, redisUrl: '' }) instanceof FileSettings);
  t.ok(createSettingsProvider({ url: 'http://a/' }) instanceof HttpSettings);
  t.throws(() => createSettingsProvider({ redisUrl: 'http://a/' }), /SETTINGS_REDIS_URL: expected a redis:\/\/ or rediss:\/\/ URL, got "http:"/);
  t.throws(() => createSettingsProvider({ redisUrl: 'not a url' }), /SETTINGS_REDIS_URL: not a valid URL/);
  for (const url of ['http://user:s3cret@h/', 'redis//user:s3cret@h']) {
    const e = t.throws(() => new RedisSettings({ url })) as Error;
    t.notMatch(e.message, /s3cret/, `never echoes credentials: ${e.message}`);
  }
});
