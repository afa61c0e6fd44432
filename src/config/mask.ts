// What `lc3-pusher config` may print: secrets masked (the settings marked secret, and the
// credentials inside URLs — `redis://:pw@host`, `https://user:pw@host`, `?token=…`), so the
// output can be pasted into a ticket.
import type { Resolved, Source } from './load.js';
import { flagOf, SETTING_NAMES, settingOf, type SettingName } from './settings.js';

export const MASK = '***';

/** Query parameters whose values are credentials by their name. */
const SECRET_PARAM = /token|key|secret|pass|pwd|sig|auth|cred/i;

/** A URL with its user, password and credential-like query values replaced by ***. */
export function maskUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    // Not a URL (validation would have refused it for a URL setting): show nothing of it.
    return raw === '' ? raw : MASK;
  }
  if (u.username) u.username = MASK;
  if (u.password) u.password = MASK;
  for (const k of [...new Set(u.searchParams.keys())]) if (SECRET_PARAM.test(k)) u.searchParams.set(k, MASK);
  return u.href;
}

export interface EffectiveSetting {
  name: SettingName;
  flag: string;
  /** Formatted as the setting would be written ('16MiB', '1'), masked. */
  value: string;
  source: Source;
}

export function effectiveSettings(r: Resolved): EffectiveSetting[] {
  return SETTING_NAMES.map((name) => {
    const s = settingOf(name);
    const v = r.config[name];
    // Each value came out of this setting's own kind, so its formatter takes it.
    let value = (s.kind.format as (x: unknown) => string)(v);
    if (s.secret) value = value === '' ? '' : MASK;
    else if (s.kind.kind === 'url') value = maskUrl(value);
    return { name, flag: flagOf(name), value, source: r.sources[name] };
  });
}

/** `NAME=value` lines (shell-style, '' for unset) with where each value came from. */
export function formatEffective(list: EffectiveSetting[]): string[] {
  // Sources line up, except after a value so long that aligning to it would push all of them right.
  const width = Math.min(48, Math.max(...list.map((e) => e.name.length + 1 + JSON.stringify(e.value).length)));
  return list.map((e) => {
    const v = /^[\w./:@*%+,=-]*$/.test(e.value) && e.value !== '' ? e.value : JSON.stringify(e.value);
    const line = `${e.name}=${v}`;
    return `${line.padEnd(width)}  # ${e.source}`;
  });
}

/** Machine output: the typed values (numbers, booleans), secrets masked. */
export function effectiveJson(r: Resolved): Record<SettingName, unknown> {
  const out = {} as Record<SettingName, unknown>;
  for (const e of effectiveSettings(r)) {
    const s = settingOf(e.name);
    out[e.name] = s.secret || s.kind.kind === 'url' || s.kind.kind === 'text' || s.kind.kind === 'enum' ? e.value : r.config[e.name];
  }
  return out;
}
