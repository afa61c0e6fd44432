// Value kinds of the settings table (src/config/settings.ts): each parses the raw string of an
// env var or flag into its typed value, or throws a ConfigProblem saying what was expected. The
// kind also carries its bounds as data, so `--help`, the README table and the table-driven tests
// (which derive bad values from min/max/values) all read the same numbers.

/** A raw value did not parse; the message says what is accepted ("expected …"). */
export class ConfigProblem extends Error {}

interface KindBase<T> {
  parse(raw: string): T;
  /** What is accepted, as a phrase: "an integer in 0..65535". */
  readonly accepted: string;
  /** The effective value as `config` prints it. */
  format(v: T): string;
}

export interface IntKind extends KindBase<number> {
  readonly kind: 'int';
  readonly min: number;
  readonly max: number;
  readonly powerOfTwo: boolean;
}
export interface SizeKind extends KindBase<number> {
  readonly kind: 'size';
  readonly min: number;
  readonly max: number;
}
export interface EnumKind<T extends string> extends KindBase<T> {
  readonly kind: 'enum';
  readonly values: readonly T[];
}
export interface BoolKind extends KindBase<boolean> {
  readonly kind: 'bool';
}
export interface UrlKind extends KindBase<string> {
  readonly kind: 'url';
  readonly schemes: readonly string[];
}
export interface TextKind extends KindBase<string> {
  readonly kind: 'text';
  /** A pattern the value must match (undefined: free-form, e.g. a path or a secret). */
  readonly pattern: RegExp | undefined;
}

export type Kind = IntKind | SizeKind | EnumKind<string> | BoolKind | UrlKind | TextKind;

const SIZE_UNITS: Record<string, number> = { '': 1, B: 1, KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30, TIB: 2 ** 40, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12 };

/** "10GiB", "512MiB", "1.5MB", "1000" → bytes. */
export function parseBytes(v: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
  const unit = m ? SIZE_UNITS[m[2]!.toUpperCase()] : undefined;
  if (!m || unit === undefined) throw new ConfigProblem(`not a size: "${v}" (use e.g. 10GiB, 512MiB, 1000000)`);
  return Math.floor(Number(m[1]) * unit);
}

/** Bytes in the largest binary unit that divides them: 16777216 → "16MiB". */
export function formatBytes(n: number): string {
  for (const [u, f] of [['TiB', 2 ** 40], ['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (n >= f && n % f === 0) return `${n / f}${u}`;
  }
  return String(n);
}

/** An integer in min..max; `powerOfTwo` for sizes that index rings with a mask. */
export function int(min: number, max: number, opts: { powerOfTwo?: boolean } = {}): IntKind {
  const powerOfTwo = opts.powerOfTwo ?? false;
  const accepted = `${powerOfTwo ? 'a power of two' : 'an integer'} in ${min}..${max}`;
  return {
    kind: 'int',
    min,
    max,
    powerOfTwo,
    accepted,
    parse(raw) {
      // Number('') is 0 and Number(' 1e3 ') is 1000: only plain decimal digits are an integer here.
      const n = /^-?\d+$/.test(raw.trim()) ? Number(raw) : NaN;
      if (!Number.isSafeInteger(n) || n < min || n > max) throw new ConfigProblem(`expected ${accepted}`);
      if (powerOfTwo && (n & (n - 1)) !== 0) throw new ConfigProblem(`must be a power of two in ${min}..${max}`);
      return n;
    },
    format: String,
  };
}

/** A byte size ("16MiB", "1000000") in min..max bytes. */
export function size(min: number, max: number): SizeKind {
  const accepted = `a size in ${formatBytes(min)}..${formatBytes(max)}`;
  return {
    kind: 'size',
    min,
    max,
    accepted,
    parse(raw) {
      let n: number;
      try {
        n = parseBytes(raw);
      } catch {
        throw new ConfigProblem(`expected ${accepted} (a number with a unit, e.g. 512KiB, 16MiB, or plain bytes)`);
      }
      if (n < min || n > max) throw new ConfigProblem(`expected ${accepted}`);
      return n;
    },
    format: formatBytes,
  };
}

export function oneOf<const T extends string>(values: readonly T[]): EnumKind<T> {
  const accepted = `one of ${values.join(', ')}`;
  return {
    kind: 'enum',
    values,
    accepted,
    parse(raw) {
      if (!(values as readonly string[]).includes(raw)) throw new ConfigProblem(`expected ${accepted}`);
      return raw as T;
    },
    format: String,
  };
}

/** 0/1 (as DESIGN §6 writes them), also false/true. */
export function bool(): BoolKind {
  return {
    kind: 'bool',
    accepted: '0 or 1',
    parse(raw) {
      const v = raw.trim().toLowerCase();
      if (v === '1' || v === 'true') return true;
      if (v === '0' || v === 'false') return false;
      throw new ConfigProblem('expected 0 or 1');
    },
    format: (v) => (v ? '1' : '0'),
  };
}

/** An absolute URL with one of the schemes, or '' for unset. */
export function url(schemes: readonly string[] = ['http', 'https']): UrlKind {
  const accepted = `a URL (${schemes.join(' or ')})`;
  return {
    kind: 'url',
    schemes,
    accepted,
    parse(raw) {
      if (raw === '') return raw;
      let u: URL | undefined;
      try {
        u = new URL(raw);
      } catch {
        u = undefined;
      }
      if (!u || !schemes.includes(u.protocol.slice(0, -1)) || !u.host) throw new ConfigProblem(`expected ${accepted}`);
      return raw;
    },
    format: String,
  };
}

/** Any string, or one matching `pattern` ('' always means unset). */
export function text(pattern?: RegExp, accepted = pattern ? `a value matching ${pattern.source}` : 'any text'): TextKind {
  return {
    kind: 'text',
    pattern,
    accepted,
    parse(raw) {
      if (pattern && raw !== '' && !pattern.test(raw)) throw new ConfigProblem(`expected ${accepted}`);
      return raw;
    },
    format: String,
  };
}
