// `lc3-pusher serve --help` (and `config --help`) list every setting of the table: flag, env
// name, default, what is accepted, and its meaning.
import t from 'tap';
import { main } from '../src/cli.js';
import { defaultDocOf, flagOf, SETTING_NAMES, settingOf } from '../src/config.js';

async function help(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main([...argv, '--help'], { out: (s) => out.push(s), err: (s) => err.push(s) });
  return { code, text: out.join('\n'), err };
}

for (const cmd of ['serve', 'config']) {
  t.test(`${cmd} --help lists every setting`, async (t) => {
    const r = await help(cmd);
    t.equal(r.code, 0);
    t.same(r.err, []);
    // Commander may wrap long descriptions: compare with the whitespace folded.
    const text = r.text.replace(/\s+/g, ' ');
    for (const name of SETTING_NAMES) {
      const s = settingOf(name);
      const line = new RegExp(`${flagOf(name)} \\S+ ${s.help.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\[env ${name}; default ${defaultDocOf(name).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`);
      t.match(text, line, `${name}: flag, meaning, env and default`);
      if (!(s.kind.kind === 'text' && !s.kind.pattern)) t.ok(text.includes(s.kind.accepted), `${name}: what is accepted`);
      if (s.secret) t.match(text, new RegExp(`env ${name}; [^\\]]*secret\\]`), `${name}: marked secret`);
    }
    t.match(text, /a flag wins over the environment/);
  });
}

t.test('the top-level help lists serve, config and token', async (t) => {
  const r = await help();
  t.equal(r.code, 0);
  for (const c of ['serve', 'config', 'token', 'transcode', 'encode']) t.match(r.text, new RegExp(`^\\s+${c}\\b`, 'm'), c);
});
