// A hand-written SVG line chart (no dependencies): time on x, one or two y axes, shaded phases,
// legend. Opens in any browser.

export interface ChartSeries {
  name: string;
  axis: 'left' | 'right';
  color: string;
  dashed?: boolean;
  /** [x, y] points; non-finite y values break the line. */
  points: readonly (readonly [number, number])[];
}

export interface ChartPhase {
  name: string;
  start: number;
  end: number;
  color: string;
}

export interface ChartSpec {
  title: string;
  subtitle?: string;
  xLabel: string;
  leftLabel: string;
  rightLabel?: string;
  series: readonly ChartSeries[];
  phases?: readonly ChartPhase[];
  width?: number;
  height?: number;
}

export function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** About `count` round tick values (1, 2, 5 × 10^k steps) covering [min, max]. */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!(max > min)) return [min];
  const raw = (max - min) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

/** The y range an axis shows: from 0 (or the data minimum if negative) to a round maximum. */
export function axisRange(values: readonly number[]): [number, number] {
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return [0, 1];
  const lo = Math.min(0, ...finite);
  const hi = Math.max(...finite);
  if (hi <= lo) return [lo, lo + 1];
  // The tick step is below 2/5 of the range, so there are always at least two ticks.
  const ticks = niceTicks(lo, hi, 5);
  const step = ticks[1]! - ticks[0]!;
  return [lo, Math.ceil(hi / step) * step];
}

function fmtTick(v: number): string {
  return Math.abs(v) >= 1e4 ? v.toExponential(1) : String(Number(v.toPrecision(4)));
}

/** Renders the chart as a standalone SVG document. */
export function renderSvg(spec: ChartSpec): string {
  const W = spec.width ?? 960;
  const H = spec.height ?? 480;
  const m = { top: spec.subtitle ? 62 : 44, right: 76, bottom: 84, left: 76 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const all = spec.series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]).concat((spec.phases ?? []).flatMap((p) => [p.start, p.end]));
  const xMin = xs.length ? Math.min(...xs) : 0;
  const xMax = xs.length && Math.max(...xs) > xMin ? Math.max(...xs) : xMin + 1;
  const yRange = (axis: 'left' | 'right') => axisRange(spec.series.filter((s) => s.axis === axis).flatMap((s) => s.points.map((p) => p[1])));
  const ranges = { left: yRange('left'), right: yRange('right') };
  const X = (x: number) => m.left + ((x - xMin) / (xMax - xMin)) * pw;
  const Y = (axis: 'left' | 'right', y: number) => {
    const [lo, hi] = ranges[axis];
    return m.top + ph - ((y - lo) / (hi - lo)) * ph;
  };
  const f = (n: number) => n.toFixed(1);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(spec.title)}</text>`);
  if (spec.subtitle) out.push(`<text x="${W / 2}" y="42" text-anchor="middle" fill="#444">${escapeXml(spec.subtitle)}</text>`);
  for (const p of spec.phases ?? []) {
    const x0 = X(p.start);
    const x1 = X(p.end);
    out.push(`<rect x="${f(x0)}" y="${m.top}" width="${f(Math.max(0, x1 - x0))}" height="${ph}" fill="${p.color}" fill-opacity="0.35"/>`);
    out.push(`<text x="${f((x0 + x1) / 2)}" y="${m.top + 14}" text-anchor="middle" fill="#333">${escapeXml(p.name)}</text>`);
  }
  // Grid and axes.
  for (const t of niceTicks(xMin, xMax, 10)) {
    out.push(`<line x1="${f(X(t))}" y1="${m.top}" x2="${f(X(t))}" y2="${m.top + ph}" stroke="#ddd"/>`);
    out.push(`<text x="${f(X(t))}" y="${m.top + ph + 16}" text-anchor="middle">${fmtTick(t)}</text>`);
  }
  for (const t of niceTicks(ranges.left[0], ranges.left[1], 5)) {
    out.push(`<line x1="${m.left}" y1="${f(Y('left', t))}" x2="${m.left + pw}" y2="${f(Y('left', t))}" stroke="#ddd"/>`);
    out.push(`<text x="${m.left - 6}" y="${f(Y('left', t) + 4)}" text-anchor="end">${fmtTick(t)}</text>`);
  }
  const hasRight = spec.series.some((s) => s.axis === 'right');
  if (hasRight) {
    for (const t of niceTicks(ranges.right[0], ranges.right[1], 5)) {
      out.push(`<text x="${m.left + pw + 6}" y="${f(Y('right', t) + 4)}">${fmtTick(t)}</text>`);
    }
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="${m.top + ph + 36}" text-anchor="middle">${escapeXml(spec.xLabel)}</text>`);
  const ly = m.top + ph / 2;
  out.push(`<text x="18" y="${ly}" text-anchor="middle" transform="rotate(-90 18 ${ly})">${escapeXml(spec.leftLabel)}</text>`);
  if (hasRight && spec.rightLabel) {
    out.push(`<text x="${W - 14}" y="${ly}" text-anchor="middle" transform="rotate(90 ${W - 14} ${ly})">${escapeXml(spec.rightLabel)}</text>`);
  }
  // Lines.
  for (const s of spec.series) {
    const d: string[] = [];
    let pen = false;
    for (const [x, y] of s.points) {
      if (!Number.isFinite(y)) {
        pen = false;
        continue;
      }
      d.push(`${pen ? 'L' : 'M'}${f(X(x))},${f(Y(s.axis, y))}`);
      pen = true;
    }
    if (d.length === 0) continue;
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    out.push(`<path d="${d.join(' ')}" fill="none" stroke="${s.color}" stroke-width="2"${dash}><title>${escapeXml(s.name)}</title></path>`);
  }
  // Legend below the x label.
  let lx = m.left;
  const legendY = H - 20;
  for (const s of spec.series) {
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    const label = `${s.name} (${s.axis === 'left' ? spec.leftLabel : (spec.rightLabel ?? 'right axis')})`;
    out.push(`<line x1="${lx}" y1="${legendY - 4}" x2="${lx + 22}" y2="${legendY - 4}" stroke="${s.color}" stroke-width="2"${dash}/>`);
    out.push(`<text x="${lx + 26}" y="${legendY}">${escapeXml(label)}</text>`);
    lx += 34 + label.length * 6.5;
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}
