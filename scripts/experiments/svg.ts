/**
 * Minimal SVG charts for the experiment report: line charts (loss curves, quantization error, accuracy vs
 * layer) and overlaid histograms in small multiples. Plain strings, no dependencies; axes with "nice" ticks.
 */

export interface Series {
  label: string;
  points: [number, number][];
  dashed?: boolean;
}

export interface Panel {
  title: string;
  series: Series[];
  xLabel?: string;
  yLabel?: string;
  /** Vertical guide lines (e.g. rounding boundaries). */
  vlines?: number[];
  /** Draw points as steps (histograms). */
  step?: boolean;
  logY?: boolean;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** About `n` round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 2.5, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function fmt(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(0);
  return String(Number(v.toPrecision(3)));
}

function panelSvg(p: Panel, x0: number, y0: number, w: number, h: number): string {
  const m = { l: 52, r: 10, t: 22, b: 36 };
  const pw = w - m.l - m.r;
  const ph = h - m.t - m.b;
  const ty = (v: number) => (p.logY ? Math.log10(Math.max(v, 1e-12)) : v);
  const all = p.series.flatMap((s) => s.points);
  if (all.length === 0) return `<text x="${x0 + w / 2}" y="${y0 + h / 2}" text-anchor="middle">${esc(p.title)}: no data</text>`;
  let xmin = Math.min(...all.map((q) => q[0]));
  let xmax = Math.max(...all.map((q) => q[0]));
  let ymin = Math.min(...all.map((q) => ty(q[1])));
  let ymax = Math.max(...all.map((q) => ty(q[1])));
  if (xmax === xmin) xmax = xmin + 1;
  if (ymax === ymin) ymax = ymin + 1;
  const pad = (ymax - ymin) * 0.05;
  ymin -= pad;
  ymax += pad;
  if (!p.logY && p.step === true) ymin = Math.min(0, ymin);
  for (const v of p.vlines ?? []) {
    xmin = Math.min(xmin, v);
    xmax = Math.max(xmax, v);
  }
  const sx = (v: number) => x0 + m.l + ((v - xmin) / (xmax - xmin)) * pw;
  const sy = (v: number) => y0 + m.t + ph - ((ty(v) - ymin) / (ymax - ymin)) * ph;
  const syRaw = (t: number) => y0 + m.t + ph - ((t - ymin) / (ymax - ymin)) * ph;
  const out: string[] = [];
  out.push(`<text x="${x0 + m.l + pw / 2}" y="${y0 + 15}" text-anchor="middle" font-weight="bold">${esc(p.title)}</text>`);
  out.push(`<rect x="${x0 + m.l}" y="${y0 + m.t}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
  for (const t of niceTicks(xmin, xmax)) {
    out.push(`<line x1="${sx(t)}" x2="${sx(t)}" y1="${y0 + m.t + ph}" y2="${y0 + m.t + ph + 4}" stroke="#999"/>`);
    out.push(`<text x="${sx(t)}" y="${y0 + m.t + ph + 15}" text-anchor="middle" font-size="10">${fmt(t)}</text>`);
  }
  for (const t of niceTicks(ymin, ymax)) {
    out.push(`<line x1="${x0 + m.l - 4}" x2="${x0 + m.l}" y1="${syRaw(t)}" y2="${syRaw(t)}" stroke="#999"/>`);
    out.push(`<text x="${x0 + m.l - 6}" y="${syRaw(t) + 3}" text-anchor="end" font-size="10">${fmt(p.logY ? 10 ** t : t)}</text>`);
  }
  if (p.xLabel) out.push(`<text x="${x0 + m.l + pw / 2}" y="${y0 + h - 4}" text-anchor="middle" font-size="11">${esc(p.xLabel)}</text>`);
  if (p.yLabel)
    out.push(`<text transform="translate(${x0 + 12},${y0 + m.t + ph / 2}) rotate(-90)" text-anchor="middle" font-size="11">${esc(p.yLabel)}</text>`);
  for (const v of p.vlines ?? []) out.push(`<line x1="${sx(v)}" x2="${sx(v)}" y1="${y0 + m.t}" y2="${y0 + m.t + ph}" stroke="#aaa" stroke-dasharray="3,3"/>`);
  p.series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length] as string;
    const pts = s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
    const dash = s.dashed === true ? ' stroke-dasharray="5,3"' : '';
    out.push(`<polyline points="${pts}" fill="none" stroke="${c}" stroke-width="1.5"${dash}/>`);
    if (s.points.length <= 12) for (const [x, y] of s.points) out.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="2.5" fill="${c}"/>`);
    out.push(
      `<line x1="${x0 + m.l + 8}" x2="${x0 + m.l + 26}" y1="${y0 + m.t + 12 + i * 13}" y2="${y0 + m.t + 12 + i * 13}" stroke="${c}" stroke-width="2"${dash}/>`,
    );
    out.push(`<text x="${x0 + m.l + 30}" y="${y0 + m.t + 16 + i * 13}" font-size="10">${esc(s.label)}</text>`);
  });
  return out.join('\n');
}

/** Panels laid out in a grid of `cols` columns. */
export function chart(panels: Panel[], o: { cols?: number; panelWidth?: number; panelHeight?: number; title?: string } = {}): string {
  const cols = Math.min(o.cols ?? 1, panels.length);
  const w = o.panelWidth ?? 420;
  const h = o.panelHeight ?? 280;
  const top = o.title === undefined ? 0 : 26;
  const rows = Math.ceil(panels.length / cols);
  const W = cols * w;
  const H = rows * h + top;
  const body = panels.map((p, i) => panelSvg(p, (i % cols) * w, top + Math.floor(i / cols) * h, w, h));
  const title = o.title === undefined ? '' : `<text x="${W / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">${esc(o.title)}</text>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">\n<rect width="100%" height="100%" fill="white"/>\n${title}\n${body.join('\n')}\n</svg>\n`;
}

/** Histogram of `values` over [lo, hi] in `bins` bins, as step points (density: fractions per bin). */
export function histogram(values: Float32Array | number[], lo: number, hi: number, bins: number): [number, number][] {
  const counts = new Float64Array(bins);
  let n = 0;
  for (const v of values) {
    if (v < lo || v >= hi) continue;
    counts[Math.floor(((v - lo) / (hi - lo)) * bins)]! += 1;
    n++;
  }
  const width = (hi - lo) / bins;
  const pts: [number, number][] = [];
  counts.forEach((c, i) => {
    pts.push([lo + i * width, c / Math.max(1, n)]);
    pts.push([lo + (i + 1) * width, c / Math.max(1, n)]);
  });
  return pts;
}
