// Builds the configuration from the settings table: defaults ← environment ← flags, every value
// parsed by its kind, then the rules between settings. A bad value is one ConfigError whose
// message names the setting both ways (env name and flag) and what is accepted, so the same
// mistake reads the same whether it came from the environment or the command line.
import { ConfigProblem } from './kinds.js';
import { CHECKS, defaultOf, flagOf, SETTING_NAMES, settingOf, type Config, type SettingName } from './settings.js';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    /** The setting the message points at. */
    readonly setting: SettingName,
    message: string,
  ) {
    super(message);
  }
}

export type Source = 'default' | 'env' | 'flag';
export type Overrides = Partial<Record<SettingName, string>>;

export interface Resolved {
  config: Config;
  /** Where each value came from. */
  sources: Record<SettingName, Source>;
}

/** `env PORT, flag --port`: how every message names a setting. */
export function nameBothWays(name: SettingName): string {
  return `env ${name}, flag ${flagOf(name)}`;
}

function shown(name: SettingName, raw: string): string {
  if (settingOf(name).secret) return '***';
  return raw === '' || /[\s"]/.test(raw) ? JSON.stringify(raw) : raw;
}

/** Parses and checks everything; throws the first ConfigError in table order. */
export function resolveConfig(env: NodeJS.ProcessEnv = process.env, overrides: Overrides = {}): Resolved {
  const config = {} as Record<SettingName, unknown>;
  const sources = {} as Record<SettingName, Source>;
  for (const name of SETTING_NAMES) {
    // An empty value means "unset" (as `FOO= cmd` does in a shell): the default applies.
    const flag = overrides[name];
    const fromEnv = env[name];
    let raw: string;
    if (flag !== undefined && flag !== '') [raw, sources[name]] = [flag, 'flag'];
    else if (fromEnv !== undefined && fromEnv !== '') [raw, sources[name]] = [fromEnv, 'env'];
    else [raw, sources[name]] = [defaultOf(name), 'default'];
    try {
      config[name] = settingOf(name).kind.parse(raw);
    } catch (e) {
      /* c8 ignore next */
      if (!(e instanceof ConfigProblem)) throw e;
      throw new ConfigError(name, `${name}=${shown(name, raw)}: ${e.message} (${nameBothWays(name)})`);
    }
  }
  const cfg = config as Config;
  for (const check of CHECKS) {
    const problem = check.problem(cfg);
    if (problem) throw new ConfigError(check.names[0]!, `${problem} (${nameBothWays(check.names[0]!)})`);
  }
  return { config: cfg, sources };
}

/** The validated configuration (defaults ← env ← overrides). */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Overrides = {}): Config {
  return resolveConfig(env, overrides).config;
}
