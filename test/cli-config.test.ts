// `lc3-pusher config`: the effective configuration (defaults ← env ← flags), where each value came
// from, secrets and URL credentials masked in text and JSON.
import t from 'tap';
import { cli } from './support/cli.js';
import { maskUrl, SETTING_NAMES } from '../src/config.js';

for (const n of SETTING_NAMES) delete process.env[n];

const SECRETS = ['jwt-key-123', 'adm-tok-456', 'redispw789', 'gcspw000', 'apikey111', 'hookuser', 'settingspw'];
const env = {
  AUTH_MODE: 'jwt',
  AUTH_SECRET: 'jwt-key-123',
  SETTINGS_REDIS_URL: 'redis://:redispw789@redis.internal:6379/2',
  GCS_API_ENDPOINT: 'https://svc:gcspw000@gcs.example/storage',
  PORT: '9000',
  SHARDS: '3',
};
const flags = ['config', '--admin-token', 'adm-tok-456', '--process-conversation-url', 'https://hookuser@jobs.example/process?api_key=apikey111&region=eu', '--port', '9100', '--spool-max-bytes', '2GiB'];

t.test('text: NAME=value, source, secrets masked', async (t) => {
  const r = await cli(flags, env);
  t.equal(r.code, 0);
  t.same(r.err, []);
  t.equal(r.out.length, SETTING_NAMES.length, 'one line per setting');
  const text = r.out.join('\n');
  for (const s of SECRETS) t.notMatch(text, s, `${s} is not printed`);
  const line = (name: string) => r.out.find((l) => l.startsWith(`${name}=`)) ?? '';
  t.match(line('PORT'), /^PORT=9100\s+# flag$/, 'the flag wins over PORT=9000');
  t.match(line('SHARDS'), /^SHARDS=3\s+# env$/);
  t.match(line('HOST'), /^HOST=0\.0\.0\.0\s+# default$/);
  t.match(line('SPOOL_MAX_BYTES'), /^SPOOL_MAX_BYTES=2GiB\s+# flag$/);
  t.match(line('AUTH_SECRET'), /^AUTH_SECRET=\*\*\*\s+# env$/);
  t.match(line('ADMIN_TOKEN'), /^ADMIN_TOKEN=\*\*\*\s+# flag$/);
  t.match(line('SETTINGS_REDIS_URL'), /^SETTINGS_REDIS_URL=redis:\/\/:\*\*\*@redis\.internal:6379\/2\s+# env$/);
  t.match(line('GCS_API_ENDPOINT'), /^GCS_API_ENDPOINT=https:\/\/\*\*\*:\*\*\*@gcs\.example\/storage\s/);
  t.match(line('PROCESS_CONVERSATION_URL'), /^PROCESS_CONVERSATION_URL="https:\/\/\*\*\*@jobs\.example\/process\?api_key=\*\*\*&region=eu"/);
  t.match(line('SETTINGS_FILE'), /^SETTINGS_FILE=""\s+# default$/, 'unset shows as ""');
});

t.test('--json: typed values, the same masking', async (t) => {
  const r = await cli([...flags, '--json'], env);
  t.equal(r.code, 0);
  const text = r.out.join('\n');
  for (const s of SECRETS) t.notMatch(text, s, `${s} is not printed`);
  const j = JSON.parse(text) as Record<string, unknown>;
  t.same(Object.keys(j), SETTING_NAMES, 'every setting, in table order');
  t.equal(j.PORT, 9100);
  t.equal(j.SPOOL_MAX_BYTES, 2 * 2 ** 30);
  t.equal(j.WEBHOOK_ALLOW_PRIVATE, false);
  t.equal(j.AUTH_MODE, 'jwt');
  t.equal(j.AUTH_SECRET, '***');
  t.equal(j.ADMIN_TOKEN, '***');
  t.equal(j.SETTINGS_REDIS_URL, 'redis://:***@redis.internal:6379/2');
  t.equal(j.SETTINGS_URL, '', 'unset URL stays empty');
  const none = JSON.parse((await cli(['config', '--json'])).out.join('\n')) as Record<string, unknown>;
  t.equal(none.AUTH_SECRET, '', 'an unset secret shows as empty, not ***');
});

t.test('config refuses what serve refuses', async (t) => {
  const r = await cli(['config', '--json'], { CHUNK_SECONDS: '0' });
  t.equal(r.code, 1);
  t.same(r.err, ['lc3-pusher: CHUNK_SECONDS=0: expected an integer in 1..86400 (env CHUNK_SECONDS, flag --chunk-seconds)']);
  t.same(r.out, []);
});

t.test('maskUrl', async (t) => {
  t.equal(maskUrl('redis://:pw@host:6379'), 'redis://:***@host:6379');
  t.equal(maskUrl('rediss://user:pw@host'), 'rediss://***:***@host');
  t.equal(maskUrl('https://user:pw@host/x'), 'https://***:***@host/x');
  t.equal(maskUrl('https://host/x?token=abc&sig=1&page=2'), 'https://host/x?token=***&sig=***&page=2');
  t.equal(maskUrl('https://host/x?Password=a&password=b'), 'https://host/x?Password=***&password=***', 'every credential-like name, repeated or not');
  t.equal(maskUrl('http://plain.example/p'), 'http://plain.example/p', 'nothing to mask');
  t.equal(maskUrl(''), '');
  t.equal(maskUrl('not a url with a pw'), '***', 'what is not a URL is not shown at all');
});
