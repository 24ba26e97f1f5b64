// Renders a run's results as a Markdown report: machine, targets, one table per figure, plots.
import { MODES, type BenchResults, type Mode } from '../results.js';
import { DASH, bytes, fixed, flowsLabel, gbps, mb, num, ratio, uniqueSorted } from './format.js';
import { collapseRounds, type LabelledRange, type RoundsView } from './rounds.js';
import { evaluateTargets, type TargetRow } from './targets.js';

export interface PlotRef {
  file: string;
  title: string;
}

/** Free text (host names, CPU models) kept from being read as HTML or table syntax. */
const md = (s: string) => s.replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\r?\n/g, ' ');
const cell = (s: string) => md(s).replace(/\|/g, '\\|');

/** A Markdown table; columns from `rightFrom` on are right-aligned (numbers). */
export function table(header: string[], rows: string[][], rightFrom = 1): string {
  const line = (cells: string[]) => `| ${cells.map(cell).join(' | ')} |`;
  const rule = `|${header.map((_, i) => (i >= rightFrom ? ' ---: ' : ' --- ')).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
}

/** A row of one value per mode, then ambit/direct and ambit/stunnel. */
function modeRow(label: string, v: Record<Mode, number | undefined>, show: (x: number | undefined) => string = num): string[] {
  return [label, ...MODES.map((m) => show(v[m])), ratio(v.ambit, v.direct), ratio(v.ambit, v.stunnel)];
}

const MODE_HEADER = [...MODES, 'ambit/direct', 'ambit/stunnel'];

function byMode<T extends { mode: Mode }>(xs: readonly T[], pred: (x: T) => boolean, value: (x: T) => number): Record<Mode, number | undefined> {
  const out = {} as Record<Mode, number | undefined>;
  for (const m of MODES) {
    const hit = xs.find((x) => x.mode === m && pred(x));
    out[m] = hit ? value(hit) : undefined;
  }
  return out;
}

const verdict = (met: boolean | null) => (met === null ? 'not measured' : met ? 'met' : '**NOT met**');

function machine(r: BenchResults): string {
  const m = r.machine;
  const tools = md(Object.entries(m.tools).map(([k, v]) => `${k} ${v}`).join(', ')) || DASH;
  const lines = [
    '## Machine',
    '',
    ...(m.quick ? ['> **Warning:** quick mode — short durations and small counts; these figures are indicative only.', ''] : []),
    `- Host: ${md(m.hostname)}, ${m.cpus} × ${md(m.cpuModel)}, ${fixed(m.memoryBytes / 2 ** 30, 1)} GiB memory`,
    `- Kernel: ${md(m.kernel)}; Node.js ${md(m.node)}`,
    `- Tools: ${tools}`,
    ...(m.ztunnelThreads !== undefined ? [`- ztunnel threads serving traffic (ZTUNNEL_WORKER_THREADS): ${m.ztunnelThreads}`] : []),
    ...((m.rounds ?? 1) > 1 ? [`- Rounds: ${m.rounds}, interleaved; each figure below is its median round, with the range over the rounds under its table`] : []),
    `- Started: ${md(m.date)}`,
  ];
  return lines.join('\n');
}

function targets(rows: TargetRow[]): string {
  return ['## Targets (design §5)', '', table(['Target', 'Threshold', 'Measured', 'Result', 'Note'],
    rows.map((t) => [t.target, t.threshold, t.measured, verdict(t.met), t.note ?? '']), 5)].join('\n');
}

/** The spread of figures measured in several rounds, as a line under their table. */
function rangeLines(rs: readonly LabelledRange[], show: (x: number) => string): string[] {
  if (rs.length === 0) return [];
  return ['', `Range over the rounds: ${rs.map((x) => `${x.label} ${show(x.range.min)}–${show(x.range.max)}`).join(', ')}.`];
}

/** One line per run that had errors. */
function errorLines<T extends { mode: Mode; errors: number; completed: number }>(xs: readonly T[], where: (x: T) => string): string[] {
  return xs.filter((x) => x.errors > 0).map((x) => `- ${x.mode} ${where(x)}: ${fixed(x.errors, 0)} errors, ${fixed(x.completed, 0)} completed`);
}

function throughput(r: BenchResults, ranges: RoundsView['ranges']): string {
  const flows = uniqueSorted(r.throughput.map((x) => x.flows));
  if (flows.length === 0) return '## Throughput (Gbit/s)\n\nNot measured.';
  const rows = flows.map((n) => modeRow(flowsLabel(n), byMode(r.throughput, (x) => x.flows === n, (x) => gbps(x.bitsPerSecond)!), (x) => fixed(x, 2)));
  const busy = r.throughput.filter((x) => x.machineCpuBusy !== undefined)
    .map((x) => `${x.mode} ${x.flows}: ${fixed(x.machineCpuBusy! * 100, 0)}%`);
  const out = ['## Throughput (Gbit/s)', '', table(['Flows', ...MODE_HEADER], rows)];
  out.push(...rangeLines(ranges.throughput, (x) => fixed(gbps(x), 2)));
  if (busy.length) out.push('', `Machine CPU busy during each run (all cores): ${busy.join(', ')}.`);
  return out.join('\n');
}

const PERCENTILES: [string, 'p50' | 'p90' | 'p99' | 'p999' | 'max'][] = [['p50', 'p50'], ['p90', 'p90'], ['p99', 'p99'], ['p99.9', 'p999'], ['max', 'max']];

function latency(r: BenchResults, ranges: RoundsView['ranges']): string {
  const rates = uniqueSorted(r.latency.map((x) => x.rate));
  if (rates.length === 0) return '## Latency (ms)\n\nNot measured.';
  const out = ['## Latency (ms)', '', 'Measured from each request\'s scheduled send time (corrected for coordinated omission), less the load generator\'s own timer lag.'];
  for (const rate of rates) {
    const at = r.latency.filter((x) => x.rate === rate);
    const rows = PERCENTILES.map(([label, key]) => {
      const v = byMode(at, () => true, (x) => x[key]);
      const added = v.ambit !== undefined && v.direct !== undefined ? fixed(v.ambit - v.direct, 3) : DASH;
      return [...modeRow(label, v, (x) => fixed(x, 3)), added];
    });
    const achieved = MODES.map((m) => at.find((x) => x.mode === m)).filter((x) => x !== undefined)
      .map((x) => `${x.mode} ${fixed(x.achievedRate, 1)}`).join(', ');
    out.push('', `### ${fixed(rate, 0)} req/s`, '', table(['Percentile', ...MODE_HEADER, 'added by ambit (ms)'], rows),
      '', `Achieved req/s: ${achieved}.`);
    const lag = at.filter((x) => x.sendLagP99 !== undefined).map((x) => `${x.mode} ${fixed(x.sendLagP99!, 3)}`);
    if (lag.length) out.push('', `Load generator's own send lag at p99 (ms, already taken out of the figures above): ${lag.join(', ')}.`);
    const errors = errorLines(at, () => `at ${fixed(rate, 0)} req/s`);
    if (errors.length) out.push('', ...errors);
  }
  out.push(...rangeLines(ranges.latency, (x) => fixed(x, 3)));
  return out.join('\n');
}

function connRate(r: BenchResults, ranges: RoundsView['ranges']): string {
  const conc = uniqueSorted(r.connRate.map((x) => x.concurrency));
  if (conc.length === 0) return '## New connections per second\n\nNot measured.';
  const rows = conc.map((c) => modeRow(String(c), byMode(r.connRate, (x) => x.concurrency === c, (x) => x.connectionsPerSecond), (x) => fixed(x, 0)));
  const errors = errorLines(r.connRate, (x) => `at concurrency ${x.concurrency}`);
  return ['## New connections per second', '', table(['Concurrency', ...MODE_HEADER], rows), ...rangeLines(ranges.connRate, (x) => fixed(x, 0)),
    ...(errors.length ? ['', ...errors] : [])].join('\n');
}

/** Proxy-only figures: direct has no proxy, so only ambit, stunnel and their ratio. */
function proxyRow(label: string, ambit: number | undefined, stunnel: number | undefined, show: (x: number | undefined) => string): string[] {
  return [label, show(ambit), show(stunnel), ratio(ambit, stunnel)];
}

function cpu(r: BenchResults, ranges: RoundsView['ranges']): string {
  if (r.cpu.length === 0) return '## Proxy CPU (user + system, both ends)\n\nNot measured.';
  const a = r.cpu.find((x) => x.mode === 'ambit');
  const s = r.cpu.find((x) => x.mode === 'stunnel');
  return ['## Proxy CPU (user + system, both ends)', '', table(['Work', 'ambit', 'stunnel', 'ambit/stunnel'], [
    proxyRow('CPU-s per GB (1-flow throughput)', a?.secondsPerGB, s?.secondsPerGB, (x) => fixed(x, 3)),
    proxyRow('CPU-s per 1k connections (concurrency 32)', a?.secondsPer1kConnections, s?.secondsPer1kConnections, (x) => fixed(x, 3)),
  ]), ...rangeLines(ranges.cpu, (x) => fixed(x, 3))].join('\n');
}

function idleMemory(r: BenchResults): string {
  const counts = uniqueSorted(r.idleMemory.map((x) => x.connections));
  if (counts.length === 0) return '## Idle memory (RSS bytes per idle connection, both ends)\n\nNot measured.';
  const rows = counts.map((n) => {
    const get = (m: Mode) => r.idleMemory.find((x) => x.mode === m && x.connections === n)?.bytesPerConnection;
    return proxyRow(fixed(n, 0), get('ambit'), get('stunnel'), bytes);
  });
  return ['## Idle memory (RSS bytes per idle connection, both ends)', '', table(['Connections', 'ambit', 'stunnel', 'ambit/stunnel'], rows)].join('\n');
}

function stateHeap(r: BenchResults): string {
  if (r.stateHeap.length === 0) return '## ztunnel state heap\n\nNot measured.';
  const rows = r.stateHeap.map((h) => [fixed(h.workloads, 0), fixed(h.services, 0), mb(h.heapBytes), bytes(h.bytesPerWorkload)]);
  return ['## ztunnel state heap', '', table(['Workloads', 'Services', 'Heap', 'Bytes/workload'], rows)].join('\n');
}

function plotsSection(plots: readonly PlotRef[]): string {
  if (plots.length === 0) return '';
  return ['## Plots', '', ...plots.flatMap((p) => [`### ${p.title}`, '', `![${p.title.replace(/[[\]]/g, '')}](${encodeURI(p.file)})`, ''])].join('\n').trimEnd();
}

export function renderMarkdown(all: BenchResults, plots: readonly PlotRef[]): string {
  const { results, ranges } = collapseRounds(all);
  const sections = [
    '# ambit benchmark report',
    machine(results),
    targets(evaluateTargets(results)),
    throughput(results, ranges),
    latency(results, ranges),
    connRate(results, ranges),
    cpu(results, ranges),
    idleMemory(results),
    stateHeap(results),
    plotsSection(plots),
  ];
  return sections.filter((s) => s !== '').join('\n\n') + '\n';
}
