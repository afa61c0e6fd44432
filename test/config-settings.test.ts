// Every setting of the table, bad and good, as env and as flag — derived from the table itself
// (kind, bounds, values), so a setting added later is covered without touching this file.
import t from 'tap';
import { main } from '../src/cli.js';
import { ConfigError, flagOf, formatBytes, loadConfig, parseBytes, resolveConfig, SETTING_NAMES, settingOf, type Kind, type SettingName } from '../src/config.js';

// The test process's own environment must not leak into the expectations.
for (const n of SETTING_NAMES) delete process.env[n];

/** Values each kind must refuse: wrong type, out of range, unknown value. */
function badValues(k: Kind): string[] {
  switch (k.kind) {
    case 'int': {
      const v = ['x', '1.5', '1e3', '0x10', String(k.min - 1), String(k.max + 1)];
      if (k.powerOfTwo) v.push(String(k.min + 1));
      return v;
    }
    case 'size':
      return ['lots', '12XB', '-1', String(k.min - 1), String(k.max + 1)];
    case 'enum':
      return ['nope', `${k.values[0]}x`];
    case 'bool':
      return ['2', 'maybe'];
    case 'url':
      return ['not a url', 'ftp://example.com/x', ...(k.schemes.includes('http') ? ['redis://h:6379'] : ['http://h/'])];
    case 'text':
      // Free-form text (paths, secrets) has no bad value; patterned text refuses these.
      return k.pattern ? ['has space', 'a/b?', 'UPPER!'].filter((v) => !k.pattern!.test(v)) : [];
  }
}

/** Two different values each kind must accept, and what they parse to. */
function goodValues(k: Kind): [string, unknown][] {
  switch (k.kind) {
    case 'int':
      return k.powerOfTwo
        ? [[String(k.min), k.min], [String(k.min * 2), k.min * 2]]
        : [[String(k.min), k.min], [String(k.max), k.max]];
    case 'size':
      return [[formatBytes(k.min), k.min], [String(k.max), k.max]];
    case 'enum':
      return [[k.values[0]!, k.values[0]], [k.values[k.values.length - 1]!, k.values[k.values.length - 1]]];
    case 'bool':
      return [['1', true], ['0', false]];
    case 'url': {
      const s = k.schemes[0]!;
      return [[`${s}://a.example:1234/p`, `${s}://a.example:1234/p`], [`${s}://b.example/`, `${s}://b.example/`]];
    }
    case 'text':
      return [['abc-1', 'abc-1'], ['abc-2', 'abc-2']];
  }
}

/** What the rules between settings need so that one setting's good value is accepted alone. */
const BASE = { AUTH_SECRET: 's3cret', GCS_BUCKET: 'bucket-1' };

async function cli(argv: string[], env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  for (const [k, v] of Object.entries(env)) process.env[k] = v;
  try {
    const code = await main(argv, { out: (s) => out.push(s), err: (s) => err.push(s) });
    return { code, out, err };
  } finally {
    for (const k of Object.keys(env)) delete process.env[k];
  }
}

t.test('the table itself: names, flags, help, kinds with samples', async (t) => {
  t.ok(SETTING_NAMES.length >= 30, `${SETTING_NAMES.length} settings`);
  const flags = new Set(SETTING_NAMES.map(flagOf));
  t.equal(flags.size, SETTING_NAMES.length, 'one flag per setting');
  for (const name of SETTING_NAMES) {
    const s = settingOf(name);
    t.match(name, /^[A-Z][A-Z0-9_]*$/, `${name}: an env name`);
    t.ok(s.help.length > 5 && !s.help.includes('\n'), `${name}: one line of help`);
    t.equal(goodValues(s.kind).length, 2, `${name}: good samples for kind ${s.kind.kind}`);
    const free = s.kind.kind === 'text' && !s.kind.pattern;
    t.ok(free || badValues(s.kind).length > 0, `${name}: bad samples for kind ${s.kind.kind}`);
    // The default must be valid (else `serve` with no configuration would not start).
    t.doesNotThrow(() => s.kind.parse(typeof s.default === 'function' ? s.default() : s.default), `${name}: default parses`);
  }
  t.same(Object.keys(loadConfig({})).sort(), [...SETTING_NAMES].sort(), 'loadConfig yields every setting');
});

for (const name of SETTING_NAMES) {
  const s = settingOf(name);
  const flag = flagOf(name);
  t.test(`${name} (${flag}): bad values refused the same from env and flag`, async (t) => {
    const bad = badValues(s.kind);
    if (bad.length === 0) {
      t.equal(loadConfig({ ...BASE, [name]: 'any thing/../ at all' })[name], 'any thing/../ at all', 'free-form text is taken as given');
      return;
    }
    for (const v of bad) {
      let msg = '';
      t.throws(
        () => {
          try {
            loadConfig({ ...BASE, [name]: v });
          } catch (e) {
            msg = (e as Error).message;
            t.ok(e instanceof ConfigError && e.setting === name, `${name}=${v}: a ConfigError for ${name}`);
            throw e;
          }
        },
        `${name}=${JSON.stringify(v)} refused`,
      );
      t.match(msg, `${name}=`, 'names the env var');
      t.match(msg, `flag ${flag}`, 'names the flag');
      t.match(msg, s.kind.accepted, 'says what is accepted');
      t.throws(() => loadConfig(BASE, { [name]: v }), { message: msg }, 'the same message as an override');

      const viaEnv = await cli(['config'], { ...BASE, [name]: v });
      const viaFlag = await cli(['config', flag, v], BASE);
      for (const [how, r] of [['env', viaEnv], ['flag', viaFlag]] as const) {
        t.equal(r.code, 1, `${how}: exit 1`);
        t.same(r.err, [`lc3-pusher: ${msg}`], `${how}: one line, the same message`);
        t.same(r.out, [], `${how}: nothing printed`);
      }
    }
  });

  t.test(`${name} (${flag}): good values from env and flag; the flag wins`, async (t) => {
    const [[a, pa], [b, pb]] = goodValues(s.kind) as [[string, unknown], [string, unknown]];
    t.same(loadConfig({ ...BASE, [name]: a })[name], pa, `env ${name}=${a}`);
    t.same(loadConfig(BASE, { [name]: b })[name], pb, `flag ${flag} ${b}`);
    const r = resolveConfig({ ...BASE, [name]: a }, { [name]: b });
    t.same(r.config[name], pb, 'the flag wins over the environment');
    t.equal(r.sources[name], 'flag');
    t.equal(resolveConfig({ ...BASE, [name]: a }).sources[name], 'env');
    t.equal(resolveConfig({ ...BASE, [name]: '' }).sources[name], 'default', 'an empty value is unset');
    // Through the command line: config --json shows the flag's value (masked when secret).
    const out = await cli(['config', '--json', flag, b], { ...BASE, [name]: a });
    t.equal(out.code, 0, `config ${flag} ${b}`);
    const json = JSON.parse(out.out.join('\n')) as Record<SettingName, unknown>;
    if (s.secret) t.equal(json[name], '***');
    else if (s.kind.kind === 'size' || s.kind.kind === 'int' || s.kind.kind === 'bool') t.same(json[name], pb);
    else t.equal(json[name], String(pb));
  });
}

t.test('rules between settings name the setting to fix, as env and flag', async (t) => {
  t.throws(() => loadConfig({ AUTH_MODE: 'jwt' }), { message: 'AUTH_MODE=jwt needs AUTH_SECRET (env AUTH_SECRET, flag --auth-secret)' });
  t.throws(() => loadConfig({}, { AUTH_MODE: 'static' }), { message: /AUTH_MODE=static needs AUTH_SECRET/ });
  t.throws(() => loadConfig({ STORE: 'gcs' }), { message: 'STORE=gcs needs GCS_BUCKET (env GCS_BUCKET, flag --gcs-bucket)' });
  t.throws(() => loadConfig({ SETTINGS_URL: 'http://a/', SETTINGS_REDIS_URL: 'redis://b' }), { message: /SETTINGS_URL and SETTINGS_REDIS_URL exclude each other: .* \(env SETTINGS_URL, flag --settings-url\)$/ });
  t.equal(loadConfig({ AUTH_MODE: 'jwt' }, { AUTH_SECRET: 'k' }).AUTH_SECRET, 'k', 'a flag satisfies the rule');
  const r = await cli(['serve', '--auth-mode', 'jwt']);
  t.equal(r.code, 1, 'serve refuses before starting anything');
  t.same(r.err, ['lc3-pusher: AUTH_MODE=jwt needs AUTH_SECRET (env AUTH_SECRET, flag --auth-secret)']);
});

t.test('serve validates flags and env exactly as config does, before starting', async (t) => {
  for (const [argv, env, re] of [
    [['serve', '--port', '70000'], {}, /^lc3-pusher: PORT=70000: expected an integer in 0\.\.65535 \(env PORT, flag --port\)$/],
    [[], { PORT: '70000' }, /^lc3-pusher: PORT=70000: /],
    [['serve', '--store', 's3'], {}, /^lc3-pusher: STORE=s3: expected one of local, gcs \(env STORE, flag --store\)$/],
    [['serve', '--log-level', 'loud'], {}, /^lc3-pusher: LOG_LEVEL=loud: expected one of fatal, error, warn, info, debug, trace, silent/],
    [['serve', '--spool-max-bytes', 'lots'], {}, /^lc3-pusher: SPOOL_MAX_BYTES=lots: expected a size in /],
    [['serve', '--ring-bytes', '3000'], {}, /^lc3-pusher: RING_BYTES=3000: must be a power of two in 1024\.\.67108864/],
  ] as const) {
    const r = await cli(argv.length ? [...argv] : ['serve'], { ...env });
    t.equal(r.code, 1, `${argv.join(' ') || JSON.stringify(env)}: exit 1`);
    t.equal(r.err.length, 1, 'one line');
    t.match(r.err[0], re);
  }
  const unknown = await cli(['serve', '--prot', '1']);
  t.equal(unknown.code, 1);
  t.same(unknown.err, ["error: unknown option '--prot' (Did you mean --port?)"], 'an unknown flag: one line with the suggestion');
  const bare = await cli(['config', '--webhook-allow-private', '--json']);
  t.equal(JSON.parse(bare.out.join('\n')).WEBHOOK_ALLOW_PRIVATE, true, 'a bare boolean flag means 1');
});

t.test('sizes: units in, the largest whole binary unit out', async (t) => {
  t.equal(parseBytes('1000'), 1000);
  t.equal(parseBytes('1.5MB'), 1.5e6);
  t.equal(parseBytes(' 2 gib '), 2 * 2 ** 30, 'units are case-insensitive, spaces ignored');
  t.throws(() => parseBytes('lots'), { message: /not a size: "lots"/ });
  t.equal(formatBytes(16 * 2 ** 20), '16MiB');
  t.equal(formatBytes(3 * 2 ** 40), '3TiB');
  t.equal(formatBytes(1536), '1536', 'not a whole KiB: plain bytes');
  t.equal(formatBytes(1.5e6), '1500000');
  const r = await cli(['config', '--spool-max-bytes', '1.5MB']);
  t.ok(r.out.some((l) => /^SPOOL_MAX_BYTES=1500000 +# flag$/.test(l)), 'config shows what was parsed');
});
