// A small grouped-bar-chart renderer producing standalone SVG text.
import { fixed, num } from './format.js';

export interface BarSeries {
  name: string;
  /** One per group; undefined (or, on a log axis, ≤ 0) draws no bar. */
  values: (number | undefined)[];
  /** CSS colour; by default one from a fixed palette by position. */
  color?: string;
}

export interface BarChart {
  title: string;
  unit: string;
  groups: string[];
  series: BarSeries[];
  log?: boolean;
}

const WIDTH = 720;
const HEIGHT = 400;
const LEFT = 80;
const RIGHT = 16;
const TOP = 48;
const BOTTOM = 84;
const PLOT_W = WIDTH - LEFT - RIGHT;
const PLOT_H = HEIGHT - TOP - BOTTOM;
const BASE = TOP + PLOT_H;
const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b'];

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const r2 = (x: number) => Math.round(x * 100) / 100;
const clean = (x: number) => Number(x.toPrecision(12));

/** A 1/2/5 × 10^k step giving about `count` intervals up to `max`. */
export function niceStep(max: number, count = 5): number {
  const raw = max / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

interface Scale {
  ticks: number[];
  /** Decimals that tell the ticks apart. */
  decimals(t: number): number;
  /** Height in pixels of a bar for v, or undefined when v cannot be drawn. */
  height(v: number): number | undefined;
}

function linearScale(values: number[]): Scale {
  const max = Math.max(0, ...values);
  const step = max > 0 ? niceStep(max) : 0.2;
  const top = max > 0 ? Math.ceil(clean(max / step)) * step : 1;
  const ticks: number[] = [];
  for (let i = 0; clean(i * step) <= top; i++) ticks.push(clean(i * step));
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return { ticks, decimals: () => decimals, height: (v) => (v >= 0 ? (v / top) * PLOT_H : undefined) };
}

function logScale(values: number[]): Scale {
  const pos = values.filter((v) => v > 0);
  let lo = pos.length ? Math.floor(Math.log10(Math.min(...pos))) : 0;
  const hi = pos.length ? Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...pos)))) : 1;
  if (pos.length && 10 ** lo === Math.min(...pos)) lo -= 1; // keep the smallest bar visible
  const ticks: number[] = [];
  for (let e = lo; e <= hi; e++) ticks.push(clean(10 ** e));
  return { ticks, decimals: (t) => Math.max(0, -Math.round(Math.log10(t))), height: (v) => (v > 0 ? ((Math.log10(v) - lo) / (hi - lo)) * PLOT_H : undefined) };
}

const text = (x: number, y: number, s: string, attrs = '') => `<text x="${r2(x)}" y="${r2(y)}"${attrs}>${escapeXml(s)}</text>`;

export function barChart(c: BarChart): string {
  const values = c.series.flatMap((s) => s.values).filter((v): v is number => v !== undefined && Number.isFinite(v));
  const scale = c.log ? logScale(values) : linearScale(values);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12" role="img" aria-label="${escapeXml(c.title)}">`,
    `<title>${escapeXml(c.title)}</title>`,
    `<rect x="0" y="0" width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    text(WIDTH / 2, 24, c.title, ' text-anchor="middle" font-size="16" font-weight="bold"'),
    text(18, TOP + PLOT_H / 2, c.log ? `${c.unit} (log scale)` : c.unit, ` text-anchor="middle" transform="rotate(-90 18 ${r2(TOP + PLOT_H / 2)})"`),
  ];
  for (const t of scale.ticks) {
    const y = BASE - (scale.height(t) ?? 0);
    out.push(`<line class="grid" x1="${LEFT}" y1="${r2(y)}" x2="${LEFT + PLOT_W}" y2="${r2(y)}" stroke="#dddddd"/>`,
      `<line class="tick" x1="${LEFT - 5}" y1="${r2(y)}" x2="${LEFT}" y2="${r2(y)}" stroke="#000000"/>`,
      text(LEFT - 8, y + 4, fixed(t, scale.decimals(t)), ' text-anchor="end"'));
  }
  const groupW = c.groups.length ? PLOT_W / c.groups.length : PLOT_W;
  const barW = c.series.length ? (groupW * 0.8) / c.series.length : 0;
  const color = (si: number) => escapeXml(c.series[si]!.color ?? PALETTE[si % PALETTE.length]!);
  c.groups.forEach((g, gi) => {
    const gx = LEFT + gi * groupW;
    out.push(text(gx + groupW / 2, BASE + 18, g, ' text-anchor="middle"'));
    c.series.forEach((s, si) => {
      const v = s.values[gi];
      const x = gx + groupW * 0.1 + si * barW;
      const h = v === undefined || !Number.isFinite(v) ? undefined : scale.height(v);
      if (h === undefined) {
        out.push(text(x + barW / 2, BASE - 4, 'n/a', ' class="missing" text-anchor="middle" font-size="10" fill="#999999"'));
        return;
      }
      out.push(`<rect class="bar" data-series="${escapeXml(s.name)}" data-group="${escapeXml(g)}" data-value="${v}" x="${r2(x)}" y="${r2(BASE - h)}" width="${r2(barW)}" height="${r2(h)}" fill="${color(si)}"><title>${escapeXml(`${s.name}, ${g}: ${num(v)} ${c.unit}`)}</title></rect>`,
        text(x + barW / 2, BASE - h - 4, num(v), ' text-anchor="middle" font-size="10"'));
    });
  });
  out.push(`<line class="axis" x1="${LEFT}" y1="${TOP}" x2="${LEFT}" y2="${BASE}" stroke="#000000"/>`,
    `<line class="axis" x1="${LEFT}" y1="${BASE}" x2="${LEFT + PLOT_W}" y2="${BASE}" stroke="#000000"/>`);
  const legendY = HEIGHT - 28;
  let lx = LEFT;
  c.series.forEach((s, si) => {
    out.push(`<rect class="swatch" x="${r2(lx)}" y="${legendY - 10}" width="12" height="12" fill="${color(si)}"/>`,
      text(lx + 18, legendY, s.name));
    lx += 18 + 8 * s.name.length + 24;
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
