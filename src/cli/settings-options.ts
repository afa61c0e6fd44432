// One commander option per setting of the table (`--spool-max-bytes <size>` for SPOOL_MAX_BYTES),
// for `serve` and `config`. The options only collect raw strings: parsing and range checks are
// loadConfig's, so a bad value reads the same from a flag as from the environment.
import { Option, type Command } from 'commander';
import { defaultDocOf, flagOf, SETTING_NAMES, settingOf, type Kind, type Overrides, type SettingName } from '../config.js';

function placeholder(k: Kind): string {
  switch (k.kind) {
    case 'int':
      return '<n>';
    case 'size':
      return '<size>';
    case 'enum':
      // Long lists make the option column too wide: `--help` lists the values in the description.
      return k.values.join('|').length <= 16 ? `<${k.values.join('|')}>` : '<value>';
    case 'bool':
      return '[0|1]'; // the bare flag means 1
    case 'url':
      return '<url>';
    case 'text':
      return '<value>';
  }
}

/** The help line of one setting: meaning, then env name, default and what is accepted. */
export function settingHelp(name: SettingName): string {
  const s = settingOf(name);
  const parts = [`env ${name}`, `default ${defaultDocOf(name)}`];
  if (!(s.kind.kind === 'text' && !s.kind.pattern)) parts.push(s.kind.accepted);
  if (s.secret) parts.push('secret');
  return `${s.help} [${parts.join('; ')}]`;
}

export function addSettingOptions(cmd: Command): Command {
  for (const name of SETTING_NAMES) {
    const opt = new Option(`${flagOf(name)} ${placeholder(settingOf(name).kind)}`, settingHelp(name));
    cmd.addOption(opt);
  }
  return cmd.addHelpText(
    'after',
    '\nEvery flag can be given instead as its environment variable; a flag wins over the environment.\n' +
      'Sizes take a unit (KiB, MiB, GiB, TiB; KB, MB, GB, TB) or plain bytes. An empty value means unset.',
  );
}

/** The raw values given as flags, by setting name. */
export function overridesFrom(opts: Record<string, unknown>): Overrides {
  const out: Overrides = {};
  for (const name of SETTING_NAMES) {
    const v = opts[new Option(flagOf(name)).attributeName()];
    if (v === undefined) continue;
    out[name] = v === true ? '1' : String(v);
  }
  return out;
}
