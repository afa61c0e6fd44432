// Prometheus text exposition (what /metrics serves), parsed into samples, and the queries the
// harness needs: sums over a label, per-label values, and histogram quantiles from bucket deltas.
import { fetchWithin } from './wait.js';

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseValue(v: string): number {
  if (v === '+Inf' || v === 'Inf') return Infinity;
  if (v === '-Inf') return -Infinity;
  return Number(v); // "NaN" → NaN as well
}

function unescape(s: string): string {
  return s.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
}

/** Parses exposition text; comment and malformed lines are skipped. */
export function parseMetrics(text: string): PromSample[] {
  const out: PromSample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    if (m[2]) {
      const re = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
      for (let l = re.exec(m[2]); l; l = re.exec(m[2])) labels[l[1]!] = unescape(l[2]!);
    }
    out.push({ name: m[1]!, labels, value: parseValue(m[3]!) });
  }
  return out;
}

function matches(s: PromSample, name: string, where: Record<string, string>): boolean {
  if (s.name !== name) return false;
  for (const [k, v] of Object.entries(where)) if (s.labels[k] !== v) return false;
  return true;
}

/** Sum of every sample of `name` whose labels include `where`; undefined when there is none. */
export function metricSum(samples: readonly PromSample[], name: string, where: Record<string, string> = {}): number | undefined {
  let found = false;
  let sum = 0;
  for (const s of samples) {
    if (!matches(s, name, where)) continue;
    found = true;
    sum += s.value;
  }
  return found ? sum : undefined;
}

/** The value of `name` per value of `label` (e.g. per shard). */
export function metricBy(samples: readonly PromSample[], name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples) {
    if (s.name !== name) continue;
    const k = s.labels[label] ?? '';
    out[k] = (out[k] ?? 0) + s.value;
  }
  return out;
}

/** Largest value of `name` over all its label sets; undefined when there is none. */
export function metricMax(samples: readonly PromSample[], name: string): number | undefined {
  let max: number | undefined;
  for (const s of samples) if (s.name === name && (max === undefined || s.value > max)) max = s.value;
  return max;
}

/**
 * Cumulative histogram buckets (`{name}_bucket{le}`) summed over every other label, as
 * [upper bound, cumulative count] sorted by bound.
 */
export function histogramBuckets(samples: readonly PromSample[], name: string): [number, number][] {
  const byLe = new Map<number, number>();
  for (const s of samples) {
    if (s.name !== `${name}_bucket` || s.labels.le === undefined) continue;
    const le = parseValue(s.labels.le);
    byLe.set(le, (byLe.get(le) ?? 0) + s.value);
  }
  return [...byLe.entries()].sort((a, b) => a[0] - b[0]);
}

/**
 * Quantile q (0..1) of the observations made between two scrapes, from the difference of their
 * cumulative buckets: the upper bound of the bucket holding it (linear interpolation inside the
 * bucket when `interpolate`). undefined when nothing was observed in between.
 */
export function quantileBetween(before: [number, number][], after: [number, number][], q: number, interpolate = false): number | undefined {
  const prev = new Map(before);
  const deltas = after.map(([le, c]) => [le, c - (prev.get(le) ?? 0)] as const);
  const total = deltas.at(-1)?.[1] ?? 0;
  if (total <= 0) return undefined;
  const want = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [le, c] of deltas) {
    if (c >= want) {
      if (!interpolate || !Number.isFinite(le) || c === lowerCount) return le;
      return lowerBound + ((le - lowerBound) * (want - lowerCount)) / (c - lowerCount);
    }
    lowerBound = le;
    lowerCount = c;
  }
  /* c8 ignore next 2 */
  return deltas.at(-1)![0];
}

/** GET /metrics and parse it. */
export async function scrape(baseUrl: string, timeoutMs = 5000): Promise<PromSample[]> {
  const res = await fetchWithin(`${baseUrl}/metrics`, timeoutMs);
  if (!res.ok) throw new Error(`GET ${baseUrl}/metrics: HTTP ${res.status}`);
  return parseMetrics(await res.text());
}
