// The capacity search of the ingest benchmark (pure): which stream count to try next.

export interface StepVerdict {
  n: number;
  pass: boolean;
}

/**
 * The next stream count to try: double from `start` while steps pass, then bisect between the
 * largest pass and the smallest failure down to `resolution`; undefined when done.
 */
export function nextStreams(history: readonly StepVerdict[], o: { start: number; max: number; resolution: number }): number | undefined {
  if (history.length === 0) return o.start;
  const passes = history.filter((h) => h.pass).map((h) => h.n);
  const fails = history.filter((h) => !h.pass).map((h) => h.n);
  const lo = passes.length ? Math.max(...passes) : 0;
  const hi = fails.length ? Math.min(...fails) : Infinity;
  if (hi === Infinity) return lo >= o.max ? undefined : Math.min(o.max, lo * 2);
  if (hi - lo <= o.resolution) return undefined;
  // hi − lo > resolution, so the rounded midpoint lies strictly between them.
  return Math.round((lo + hi) / 2 / o.resolution) * o.resolution;
}
