// A run with several rounds is reported as each figure's median round, with the range over the rounds beside it: on a
// shared machine one round can be off by a third, and a single round would be reported as if it were the figure.
import type { BenchResults, CpuResult } from '../results.js';
import { flowsLabel } from './format.js';

export interface Range {
  /** Rounds the figure was measured in. */
  n: number;
  min: number;
  max: number;
}

/** A figure's spread over rounds, named as the report's text names it (e.g. "ambit 1 flow"). */
export interface LabelledRange {
  label: string;
  range: Range;
}

export interface RoundsView {
  /** One result per figure (the median round's), as a single-round run would have it. */
  results: BenchResults;
  /** Per section, the spread of each figure that was measured more than once. */
  ranges: Record<'throughput' | 'latency' | 'connRate' | 'cpu', LabelledRange[]>;
}

/** The run with the median value (the lower middle one of an even count; NaN values are left out) and the range. */
export function medianRun<T>(runs: readonly T[], value: (x: T) => number): { run: T; range: Range } | undefined {
  const sorted = runs.filter((x) => !Number.isNaN(value(x))).sort((a, b) => value(a) - value(b));
  if (sorted.length === 0) return undefined;
  return { run: sorted[(sorted.length - 1) >> 1]!, range: { n: sorted.length, min: value(sorted[0]!), max: value(sorted.at(-1)!) } };
}

function groups<T>(xs: readonly T[], key: (x: T) => string): T[][] {
  const m = new Map<string, T[]>();
  for (const x of xs) {
    const k = key(x);
    const g = m.get(k);
    if (g) g.push(x);
    else m.set(k, [x]);
  }
  return [...m.values()];
}

/** Each group's median run by `value`; the spread of groups measured more than once goes into `ranges`. */
function collapse<T>(xs: readonly T[], key: (x: T) => string, value: (x: T) => number, label: (x: T) => string, ranges: LabelledRange[]): T[] {
  return groups(xs, key).map((g) => {
    const m = medianRun(g, value);
    if (!m) return g[0]!;
    if (m.range.n > 1) ranges.push({ label: label(m.run), range: m.range });
    return m.run;
  });
}

/** Latency's median round is chosen by p99 (the figure its target is about), so a row's percentiles stay one run's. */
export function collapseRounds(r: BenchResults): RoundsView {
  const ranges: RoundsView['ranges'] = { throughput: [], latency: [], connRate: [], cpu: [] };
  const cpu = groups(r.cpu, (x) => x.mode).map((g): CpuResult => {
    const field = (f: 'secondsPerGB' | 'secondsPer1kConnections', what: string) => {
      const m = medianRun(g, (x) => x[f]);
      if (m && m.range.n > 1) ranges.cpu.push({ label: `${g[0]!.mode} ${what}`, range: m.range });
      return m ? m.run[f] : NaN;
    };
    return { mode: g[0]!.mode, secondsPerGB: field('secondsPerGB', 'CPU-s per GB'), secondsPer1kConnections: field('secondsPer1kConnections', 'CPU-s per 1k connections') };
  });
  const results: BenchResults = {
    ...r,
    throughput: collapse(r.throughput, (x) => `${x.mode} ${x.flows}`, (x) => x.bitsPerSecond, (x) => `${x.mode} ${flowsLabel(x.flows)}`, ranges.throughput),
    latency: collapse(r.latency, (x) => `${x.mode} ${x.rate}`, (x) => x.p99, (x) => `${x.mode} p99 at ${x.rate} req/s`, ranges.latency),
    connRate: collapse(r.connRate, (x) => `${x.mode} ${x.concurrency}`, (x) => x.connectionsPerSecond, (x) => `${x.mode} at concurrency ${x.concurrency}`, ranges.connRate),
    cpu,
  };
  return { results, ranges };
}
