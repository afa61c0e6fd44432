// SETTINGS_FILE: `{ "default": {…}, "users": { uid: {…} } }` (both optional), read once at startup.
// A bad settings file is a startup error. FileSettings is also the base layer of the remote providers.
import { readFileSync } from 'node:fs';
import { isValidUid } from '../spool/names.js';
import {
  checkUidArg,
  isObject,
  mergeSettings,
  parseUserSettings,
  SettingsError,
  type ManagedSettingsProvider,
  type PartialSettings,
  type SettingsStats,
  type UserSettings,
} from './schema.js';

export interface SettingsFile {
  default: PartialSettings;
  users: Map<string, PartialSettings>;
}

/** Parses the SETTINGS_FILE content: `{ "default": {…}, "users": { uid: {…} } }` (both optional). */
export function parseSettingsFile(text: string, path: string): SettingsFile {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new SettingsError(`settings file ${path}: not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(j)) throw new SettingsError(`settings file ${path}: expected an object with "default" and/or "users"`);
  const extra = Object.keys(j).filter((k) => k !== 'default' && k !== 'users');
  if (extra.length > 0) throw new SettingsError(`settings file ${path}: unknown key ${JSON.stringify(extra[0])} (expected "default", "users")`);
  const users = new Map<string, PartialSettings>();
  if (j.users !== undefined) {
    if (!isObject(j.users)) throw new SettingsError(`settings file ${path}: "users" must be an object keyed by uid`);
    for (const [uid, v] of Object.entries(j.users)) {
      if (!isValidUid(uid)) throw new SettingsError(`settings file ${path}: invalid uid ${JSON.stringify(uid)} in "users"`);
      users.set(uid, parseUserSettings(v, `settings file ${path}: users.${uid}`));
    }
  }
  return { default: j.default === undefined ? {} : parseUserSettings(j.default, `settings file ${path}: default`), users };
}

export function loadSettingsFile(path: string): SettingsFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new SettingsError(`settings file ${path}: cannot read it (${(e as Error).message})`);
  }
  return parseSettingsFile(text, path);
}

/** Settings from the file only (or built-in defaults when there is none). */
export class FileSettings implements ManagedSettingsProvider {
  constructor(private readonly file: SettingsFile | null = null) {}

  /** The layers for a uid without a remote source: [file default, file user]. */
  layers(uid: string): PartialSettings[] {
    return this.file ? [this.file.default, this.file.users.get(uid) ?? {}] : [];
  }

  resolve(uid: string): UserSettings {
    checkUidArg(uid);
    return mergeSettings(...this.layers(uid));
  }

  get(uid: string): Promise<UserSettings> {
    try {
      return Promise.resolve(this.resolve(uid));
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }

  /** Nothing is fetched or cached: all zeros. */
  stats(): SettingsStats {
    return { source: 'file', cached: 0, fetches: 0, errors: 0, hits: 0 };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
