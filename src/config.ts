// Service configuration (DESIGN §6). The settings table, the one place every setting is declared,
// is src/config/settings.ts; this module is what the rest of the code imports.
export { ConfigProblem, formatBytes, parseBytes, type Kind } from './config/kinds.js';
export { CHECKS, defaultDocOf, defaultOf, flagOf, SETTING_NAMES, SETTINGS, settingOf, type Config, type Setting, type SettingName } from './config/settings.js';
export { ConfigError, loadConfig, nameBothWays, resolveConfig, type Overrides, type Resolved, type Source } from './config/load.js';
export { effectiveJson, effectiveSettings, formatEffective, MASK, maskUrl, type EffectiveSetting } from './config/mask.js';
