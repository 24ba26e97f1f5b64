// The report's figures as SVG bar charts: latency per rate, throughput, connection rate.
import { MODES, type BenchResults, type Mode } from '../results.js';
import { fixed, flowsLabel, gbps, uniqueSorted } from './format.js';
import { collapseRounds } from './rounds.js';
import { barChart, type BarSeries } from './svg.js';

export interface Plot {
  file: string;
  title: string;
  svg: string;
}

const COLORS: Record<Mode, string> = { direct: '#7f7f7f', ambit: '#1f77b4', stunnel: '#ff7f0e' };

/** One series per mode that has any result in `xs`, valued per group by `value` (undefined where not run). */
function modeSeries<T extends { mode: Mode }>(xs: readonly T[], groups: number, value: (mode: Mode, group: number) => number | undefined): BarSeries[] {
  return MODES.filter((m) => xs.some((x) => x.mode === m))
    .map((m) => ({ name: m, color: COLORS[m], values: Array.from({ length: groups }, (_, g) => value(m, g)) }));
}

const PERCENTILES: [string, 'p50' | 'p90' | 'p99' | 'p999' | 'max'][] = [['p50', 'p50'], ['p90', 'p90'], ['p99', 'p99'], ['p99.9', 'p999']];

function latencyPlots(r: BenchResults): Plot[] {
  return uniqueSorted(r.latency.map((x) => x.rate)).map((rate) => {
    const at = r.latency.filter((x) => x.rate === rate);
    const title = `Latency at ${fixed(rate, 0)} req/s`;
    const series = modeSeries(at, PERCENTILES.length, (m, g) => at.find((x) => x.mode === m)?.[PERCENTILES[g]![1]]);
    return { file: `latency-${rate}.svg`, title, svg: barChart({ title, unit: 'ms', groups: PERCENTILES.map(([l]) => l), series }) };
  });
}

function throughputPlot(r: BenchResults): Plot[] {
  const flows = uniqueSorted(r.throughput.map((x) => x.flows));
  if (flows.length === 0) return [];
  const title = 'Throughput';
  const series = modeSeries(r.throughput, flows.length, (m, g) => gbps(r.throughput.find((x) => x.mode === m && x.flows === flows[g])?.bitsPerSecond));
  const groups = flows.map(flowsLabel);
  return [{ file: 'throughput.svg', title, svg: barChart({ title, unit: 'Gbit/s', groups, series }) }];
}

function connRatePlot(r: BenchResults): Plot[] {
  const conc = uniqueSorted(r.connRate.map((x) => x.concurrency));
  if (conc.length === 0) return [];
  const title = 'New connections per second';
  const series = modeSeries(r.connRate, conc.length, (m, g) => r.connRate.find((x) => x.mode === m && x.concurrency === conc[g])?.connectionsPerSecond);
  const groups = conc.map((c) => `concurrency ${c}`);
  return [{ file: 'connrate.svg', title, svg: barChart({ title, unit: 'conn/s', groups, series }) }];
}

/** Figures for whatever the results hold (each figure's median round); a figure with no data is left out. */
export function buildPlots(all: BenchResults): Plot[] {
  const r = collapseRounds(all).results;
  return [...throughputPlot(r), ...latencyPlots(r), ...connRatePlot(r)];
}
