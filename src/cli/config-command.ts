// `lc3-pusher config`: the effective configuration (defaults ← env ← flags, validated as `serve`
// validates it), secrets masked; `--json` for machines. A bad value fails here exactly as it would
// fail `serve`, so this is also the way to check a deployment's settings before starting it.
import { Command } from 'commander';
import { effectiveJson, effectiveSettings, formatEffective, resolveConfig } from '../config.js';
import { addSettingOptions, overridesFrom } from './settings-options.js';

export function configCommand(out: (line: string) => void, env: NodeJS.ProcessEnv = process.env): Command {
  const cmd = new Command('config')
    .description('print the effective configuration (env + flags + defaults, validated), secrets masked')
    .option('--json', 'one JSON object of typed values');
  addSettingOptions(cmd);
  return cmd.action((opts: Record<string, unknown>) => {
    const r = resolveConfig(env, overridesFrom(opts));
    if (opts.json) out(JSON.stringify(effectiveJson(r), null, 2));
    else for (const line of formatEffective(effectiveSettings(r))) out(line);
  });
}
