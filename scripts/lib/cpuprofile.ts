// Summary of a V8 .cpuprofile (from /debug/profile or --cpu-prof): where the self time goes.

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface HotFunction {
  /** "name file:line" (line 1-based; native and runtime entries have no file). */
  name: string;
  selfPct: number;
}

/** The `n` functions with the most self time, as a share of all samples (idle included). */
export function topFunctions(p: CpuProfile, n = 15): { top: HotFunction[]; idlePct: number; totalMs: number } {
  const byId = new Map(p.nodes.map((x) => [x.id, x]));
  const self = new Map<string, number>();
  let total = 0;
  p.samples.forEach((id, i) => {
    const dt = p.timeDeltas[i] ?? 0;
    total += dt;
    const cf = byId.get(id)?.callFrame;
    const file = cf?.url ? cf.url.split('/').slice(-2).join('/') : '';
    const key = `${cf?.functionName || '(anonymous)'}${file ? ` ${file}:${cf!.lineNumber + 1}` : ''}`;
    self.set(key, (self.get(key) ?? 0) + dt);
  });
  const pct = (t: number) => (total > 0 ? (100 * t) / total : 0);
  const top = [...self]
    .filter(([k]) => k !== '(idle)')
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, t]) => ({ name, selfPct: pct(t) }));
  return { top, idlePct: pct(self.get('(idle)') ?? 0), totalMs: total / 1000 };
}
