// The benchmark's report side: iperf3 parsing, percentiles, targets, Markdown, SVG plots, writing a report.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseIperf3 } from '../bench/parse/iperf3.js';
import { loadResults } from '../bench/report/main.js';
import { renderMarkdown } from '../bench/report/markdown.js';
import { buildPlots } from '../bench/report/plots.js';
import { collapseRounds, medianRun } from '../bench/report/rounds.js';
import { barChart } from '../bench/report/svg.js';
import { connectionsPerZtunnelCoreSecond, evaluateTargets, type TargetRow } from '../bench/report/targets.js';
import { validateResults } from '../bench/report/validate.js';
import { writeReport } from '../bench/report/write.js';
import type { BenchResults, LatencyResult, Mode, ThroughputResult } from '../bench/results.js';
import { percentile, summarize } from '../bench/stats.js';

// Compiled to dist/test/; the fixtures stay in the source tree.
const fixture = (name: string) => readFileSync(new URL(`../../test/fixtures/bench/${name}`, import.meta.url), 'utf8');

const dir = mkdtempSync(join(tmpdir(), 'ambit-bench-report-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

// ---------------------------------------------------------------- builders

function empty(quick = false): BenchResults {
  return {
    version: 1,
    machine: {
      hostname: 'lab', cpus: 8, cpuModel: 'Test CPU', memoryBytes: 16 * 2 ** 30, kernel: '6.1', node: 'v24.21.0',
      date: '2026-01-01T00:00:00.000Z', quick, tools: { iperf3: '3.12' },
    },
    throughput: [], latency: [], connRate: [], cpu: [], idleMemory: [], stateHeap: [],
  };
}

const tp = (mode: Mode, flows: number, gbit: number): ThroughputResult =>
  ({ mode, flows, seconds: 10, bytes: (gbit * 1e9 * 10) / 8, bitsPerSecond: gbit * 1e9, retransmits: 0 });

function lat(mode: Mode, rate: number, p99: number, over: Partial<LatencyResult> = {}): LatencyResult {
  return {
    mode, rate, connections: 8, payloadBytes: 64, seconds: 10, completed: rate * 10, errors: 0, achievedRate: rate,
    p50: p99 / 4, p90: p99 / 2, p99, p999: p99 * 2, max: p99 * 5, ...over,
  };
}

/** A complete run: every target measured, throughput at 4 flows and heap at 50k workloads failing. */
function full(): BenchResults {
  const r = empty();
  r.throughput.push(tp('direct', 1, 10), tp('ambit', 1, 4), tp('direct', 4, 20), tp('ambit', 4, 5), tp('stunnel', 4, 8));
  r.latency.push(lat('direct', 1000, 0.12), lat('ambit', 1000, 0.3), lat('stunnel', 1000, 0.6), lat('direct', 5000, 0.2), lat('ambit', 5000, 1));
  r.connRate.push(
    { mode: 'direct', concurrency: 32, seconds: 5, completed: 50000, errors: 0, connectionsPerSecond: 10000 },
    { mode: 'ambit', concurrency: 32, seconds: 5, completed: 15000, errors: 0, connectionsPerSecond: 3000 },
  );
  r.cpu.push({ mode: 'ambit', secondsPerGB: 0.9, secondsPer1kConnections: 0.8 }, { mode: 'stunnel', secondsPerGB: 0.3, secondsPer1kConnections: 1.6 });
  r.idleMemory.push({ mode: 'ambit', connections: 1000, rssBytesBefore: 1e8, rssBytesAfter: 1e8 + 4.1e6, bytesPerConnection: 4100 });
  r.stateHeap.push(
    { workloads: 20000, services: 2000, heapBytes: 11e6, bytesPerWorkload: 550 },
    { workloads: 50000, services: 5000, heapBytes: 35e6, bytesPerWorkload: 700 },
  );
  return r;
}

const row = (rows: TargetRow[], starts: string) => {
  const hit = rows.find((x) => x.target.startsWith(starts));
  if (!hit) throw new Error(`no target row starting ${starts}: ${rows.map((x) => x.target).join('; ')}`);
  return hit;
};

// ---------------------------------------------------------------- iperf3

test('iperf3: a real 2-flow run gives the receiver totals and the sender retransmits', (t) => {
  t.deepEqual(parseIperf3(fixture('iperf3-2flows.json'), 'ambit', 2), {
    mode: 'ambit', flows: 2, seconds: 1.001669, bytes: 1697382400, bitsPerSecond: 13556433512.467693, retransmits: 1,
  });
});

test('iperf3: the receiver side counts, not what the sender pushed', (t) => {
  const doc = JSON.parse(fixture('iperf3-2flows.json'));
  Object.assign(doc.end.sum_sent, { bytes: 9e9, seconds: 5, bits_per_second: 9e9, retransmits: 42 });
  Object.assign(doc.end.sum_received, { bytes: 1e9, seconds: 2, bits_per_second: 4e9 });
  t.deepEqual(parseIperf3(JSON.stringify(doc), 'stunnel', 4), { mode: 'stunnel', flows: 4, seconds: 2, bytes: 1e9, bitsPerSecond: 4e9, retransmits: 42 });
});

test("iperf3: an error run throws with iperf3's own message", (t) => {
  const err = t.throws(() => parseIperf3(fixture('iperf3-error.json'), 'direct', 1));
  t.regex(err!.message, /^iperf3 failed: unable to connect to server: Connection refused$/);
});

test('iperf3: non-JSON, non-object and incomplete output throw clearly', (t) => {
  t.regex(t.throws(() => parseIperf3('iperf3: error - unable to connect', 'direct', 1))!.message, /not JSON.*unable to connect/);
  t.regex(t.throws(() => parseIperf3('', 'direct', 1))!.message, /not JSON.*\(empty\)/);
  t.regex(t.throws(() => parseIperf3('[1,2]', 'direct', 1))!.message, /not a JSON object/);
  t.regex(t.throws(() => parseIperf3('{"end":{}}', 'direct', 1))!.message, /end\.sum_received\.seconds/);
  const noRetransmits = JSON.stringify({ end: { sum_received: { seconds: 1, bytes: 2, bits_per_second: 16 }, sum_sent: {} } });
  t.regex(t.throws(() => parseIperf3(noRetransmits, 'direct', 1))!.message, /end\.sum_sent\.retransmits/);
  const stringBytes = JSON.stringify({ end: { sum_received: { seconds: 1, bytes: '2', bits_per_second: 16 }, sum_sent: { retransmits: 0 } } });
  t.regex(t.throws(() => parseIperf3(stringBytes, 'direct', 1))!.message, /end\.sum_received\.bytes \(got "2"\)/);
});

// ---------------------------------------------------------------- stats

test('percentile: nearest rank on known arrays', (t) => {
  const five = [15, 20, 35, 40, 50];
  t.deepEqual([5, 30, 40, 50, 100].map((p) => percentile(five, p)), [15, 20, 20, 35, 50]);
  const ten = Float64Array.from({ length: 10 }, (_, i) => i + 1);
  t.deepEqual([0, 10, 11, 50, 90, 99, 100].map((p) => percentile(ten, p)), [1, 1, 2, 5, 9, 10, 10]);
  t.is(percentile([7], 99.9), 7);
});

test('percentile: empty input is NaN, p outside 0..100 throws', (t) => {
  t.true(Number.isNaN(percentile([], 50)));
  for (const p of [-1, 100.5, NaN]) t.throws(() => percentile([1, 2, 3], p), { instanceOf: RangeError });
});

test('summarize: sorts numerically in place and reads the percentiles', (t) => {
  const xs = Float64Array.from({ length: 1000 }, (_, i) => ((i * 617) % 1000) + 1); // 1..1000, shuffled
  t.deepEqual(summarize(xs), { count: 1000, p50: 500, p90: 900, p99: 990, p999: 999, max: 1000 });
  t.deepEqual([...xs.subarray(0, 3)], [1, 2, 3]);
  const twenty = Float64Array.from({ length: 20 }, (_, i) => 20 - i);
  t.deepEqual(summarize(twenty), { count: 20, p50: 10, p90: 18, p99: 20, p999: 20, max: 20 });
  const small = Float64Array.from([10, 9, 100]);
  t.deepEqual(summarize(small), { count: 3, p50: 10, p90: 100, p99: 100, p999: 100, max: 100 });
  t.deepEqual([...small], [9, 10, 100]);
  const none = summarize(new Float64Array(0));
  t.is(none.count, 0);
  t.true([none.p50, none.p99, none.max].every(Number.isNaN));
});

// (99.9 / 100) * 1000 is 999.0000000000001 in floating point: the rank must not come out one too high.
test('percentile: p99.9 of 1..1000 is 999 (nearest rank)', (t) => {
  const xs = Float64Array.from({ length: 1000 }, (_, i) => i + 1);
  t.is(percentile(xs, 99.9), 999);
  t.is(summarize(Float64Array.from({ length: 10000 }, (_, i) => i + 1)).p999, 9990);
});

// ---------------------------------------------------------------- targets

test('targets: met and not met from a full run', (t) => {
  const rows = evaluateTargets(full());
  t.is(rows.length, 6);
  const one = row(rows, 'Throughput ambit/direct, 1 flow');
  t.is(one.met, true);
  t.regex(one.measured, /^0\.40× \(ambit 4\.00 \/ direct 10\.00 Gbit\/s\)$/);
  const four = row(rows, 'Throughput ambit/direct, 4 flows');
  t.is(four.met, false);
  t.regex(four.measured, /^0\.25×/);
  const latency = row(rows, 'Latency added at p99');
  t.is(latency.met, true);
  t.regex(latency.measured, /^0\.180 ms \(ambit p99 0\.300 − direct p99 0\.120 ms\)$/);
  const conn = row(rows, 'New connections/s per ztunnel core');
  t.is(conn.met, true);
  t.regex(conn.measured, /^2,500 conn\/s per CPU-second .*0\.800 CPU-s per 1k conns.*; 3,000 conn\/s measured at concurrency 32$/);
  const heaps = rows.filter((x) => x.target.startsWith('Heap per known workload'));
  t.deepEqual(heaps.map((x) => x.met), [true, false]);
  t.regex(heaps[0]!.measured, /^550 B per workload \(11\.0 MB total\)$/);
  t.regex(heaps[1]!.target, /50,000 workloads, 5,000 services/);
});

test('targets: thresholds are inclusive and failures are reported', (t) => {
  const r = empty();
  r.throughput.push(tp('direct', 1, 10), tp('ambit', 1, 3));
  r.latency.push(lat('direct', 1000, 0.25), lat('ambit', 1000, 0.5, { errors: 3 }));
  r.cpu.push({ mode: 'ambit', secondsPerGB: 1, secondsPer1kConnections: 1 });
  r.stateHeap.push({ workloads: 1000, services: 10, heapBytes: 600000, bytesPerWorkload: 600 });
  let rows = evaluateTargets(r);
  t.deepEqual(rows.map((x) => x.met), [true, true, true, true]);
  t.regex(row(rows, 'Latency').note!, /3 request errors/);
  t.is(connectionsPerZtunnelCoreSecond(1), 2000);

  r.throughput[1] = tp('ambit', 1, 2.9);
  r.latency[1] = lat('ambit', 1000, 0.51);
  r.cpu[0] = { mode: 'ambit', secondsPerGB: 1, secondsPer1kConnections: 1.25 };
  r.stateHeap[0] = { workloads: 1000, services: 10, heapBytes: 601000, bytesPerWorkload: 601 };
  rows = evaluateTargets(r);
  t.deepEqual(rows.map((x) => x.met), [false, false, false, false]);
  t.regex(row(rows, 'New connections').measured, /^1,600 conn\/s per CPU-second/);
});

test('targets: nothing measured, or only half of a comparison, is null', (t) => {
  const none = evaluateTargets(empty());
  t.is(none.length, 4);
  t.true(none.every((x) => x.met === null && x.measured === '–' && x.note !== undefined));

  const r = empty();
  r.throughput.push(tp('ambit', 1, 4), tp('direct', 4, 20));
  r.latency.push(lat('direct', 500, 0.1), lat('ambit', 500, 0.2), lat('direct', 1000, 0.1));
  r.connRate.push({ mode: 'ambit', concurrency: 32, seconds: 5, completed: 5000, errors: 0, connectionsPerSecond: 1000 });
  const rows = evaluateTargets(r);
  t.deepEqual(rows.map((x) => [x.target.slice(0, 20), x.met]), [
    ['Throughput ambit/dir', null], ['Throughput ambit/dir', null], ['Latency added at p99', null],
    ['New connections/s pe', null], ['Heap per known workl', null],
  ]);
  t.is(rows[0]!.note, 'no direct baseline');
  t.is(rows[1]!.note, 'no ambit run');
  t.is(rows[2]!.note, 'no ambit run at 1,000 req/s');
  t.is(rows[3]!.measured, '1,000 conn/s measured at concurrency 32');
});

// ---------------------------------------------------------------- markdown

test('markdown: per-mode tables with ratios, dashes for missing modes, targets and plots', (t) => {
  const md = renderMarkdown(full(), [{ file: 'throughput.svg', title: 'Throughput' }]);
  const lines = md.split('\n');
  t.true(lines.includes('| 1 flow | 10.00 | 4.00 | – | 0.40× | – |'));
  t.true(lines.includes('| 4 flows | 20.00 | 5.00 | 8.00 | 0.25× | 0.63× |'));
  t.true(lines.includes('| p99 | 0.120 | 0.300 | 0.600 | 2.50× | 0.50× | 0.180 |'));
  t.true(lines.includes('| p99.9 | 0.400 | 2.000 | – | 5.00× | – | 1.600 |')); // the 5,000 req/s table
  t.true(lines.includes('| 32 | 10,000 | 3,000 | – | 0.30× | – |'));
  t.true(lines.includes('| CPU-s per GB (1-flow throughput) | 0.900 | 0.300 | 3.00× |'));
  t.true(lines.includes('| CPU-s per 1k connections (concurrency 32) | 0.800 | 1.600 | 0.50× |'));
  t.true(lines.includes('| 1,000 | 4,100 B | – | – |'));
  t.true(lines.includes('| 50,000 | 5,000 | 35.0 MB | 700 B |'));
  t.true(lines.includes('| Throughput ambit/direct, 1 flow | ≥ 0.30× direct | 0.40× (ambit 4.00 / direct 10.00 Gbit/s) | met |  |'));
  t.regex(md, /\| Throughput ambit\/direct, 4 flows \|[^\n]*\| \*\*NOT met\*\* \|/);
  t.true(lines.includes('![Throughput](throughput.svg)'));
  t.true(md.indexOf('## Targets') < md.indexOf('## Throughput'));
  t.false(md.includes('quick mode'));
});

test('markdown: machine CPU during throughput runs and the generator send lag are reported when measured', (t) => {
  const r = full();
  t.notRegex(renderMarkdown(r, []), /Machine CPU busy|send lag/);
  r.throughput[1] = { ...r.throughput[1]!, machineCpuBusy: 0.974 };
  r.latency[1] = { ...r.latency[1]!, sendLagP99: 1.0504 };
  const md = renderMarkdown(r, []);
  t.regex(md, /Machine CPU busy during each run \(all cores\): ambit 1: 97%\./);
  t.regex(md, /send lag at p99 \(ms, already taken out of the figures above\): ambit 1\.050\./);
});

test('markdown: the ztunnel thread count is reported when the run recorded it', (t) => {
  const r = full();
  t.notRegex(renderMarkdown(r, []), /ztunnel threads/);
  r.machine.ztunnelThreads = 2;
  t.regex(renderMarkdown(r, []), /- ztunnel threads serving traffic \(ZTUNNEL_WORKER_THREADS\): 2\n/);
});

// ---------------------------------------------------------------- rounds

/** full() measured three times: round 2 is the median of every figure, rounds 1 and 3 the low and high ends. */
function threeRounds(): BenchResults {
  const r = empty();
  r.machine.rounds = 3;
  const base = full();
  for (const [round, k] of [[1, 0.5], [2, 1], [3, 1.5]] as const) {
    r.throughput.push(...base.throughput.map((x) => ({ ...x, bitsPerSecond: x.bitsPerSecond * k, round })));
    r.latency.push(...base.latency.map((x) => ({ ...x, p50: x.p50 * k, p99: x.p99 * k, round })));
    r.connRate.push(...base.connRate.map((x) => ({ ...x, connectionsPerSecond: x.connectionsPerSecond * k, round })));
    r.cpu.push(...base.cpu.map((x) => ({ ...x, secondsPerGB: x.secondsPerGB * k, secondsPer1kConnections: x.secondsPer1kConnections * k, round })));
  }
  // Rounds come back in any order; a CPU figure not measured in a round (NaN) does not count.
  r.throughput.reverse();
  r.cpu.push({ mode: 'ambit', secondsPerGB: NaN, secondsPer1kConnections: 100, round: 4 });
  return r;
}

test('rounds: the median run, the lower middle one of an even count; NaN left out; nothing for no runs', (t) => {
  const v = (x: number) => x;
  t.deepEqual(medianRun([3, 1, 2], v), { run: 2, range: { n: 3, min: 1, max: 3 } });
  t.deepEqual(medianRun([4, 1, 3, 2], v), { run: 2, range: { n: 4, min: 1, max: 4 } });
  t.deepEqual(medianRun([NaN, 5, 1], v), { run: 1, range: { n: 2, min: 1, max: 5 } });
  t.is(medianRun([NaN], v), undefined);
  t.is(medianRun([], v), undefined);
});

test('rounds: each figure is its median round with the spread; one round is left as it was', (t) => {
  const { results, ranges } = collapseRounds(threeRounds());
  t.deepEqual(results.throughput.map((x) => [x.mode, x.flows, x.bitsPerSecond / 1e9, x.round]).sort(),
    [['ambit', 1, 4, 2], ['ambit', 4, 5, 2], ['direct', 1, 10, 2], ['direct', 4, 20, 2], ['stunnel', 4, 8, 2]]);
  // A latency row stays one run's: p50 comes from the round whose p99 is the median.
  const l = results.latency.find((x) => x.mode === 'ambit' && x.rate === 1000)!;
  t.deepEqual([l.p50, l.p99, l.round], [0.075, 0.3, 2]);
  t.deepEqual(results.connRate.map((x) => x.connectionsPerSecond), [10000, 3000]);
  // CPU figures are taken one by one: ambit's per-1k figure counts the fourth measurement, its per-GB figure does not.
  t.deepEqual(results.cpu, [
    { mode: 'ambit', secondsPerGB: 0.9, secondsPer1kConnections: 0.8 }, // 0.4, 0.8, 1.2, 100: the lower middle
    { mode: 'stunnel', secondsPerGB: 0.3, secondsPer1kConnections: 1.6 },
  ]);
  t.deepEqual(ranges.throughput.find((x) => x.label === 'ambit 1 flow')?.range, { n: 3, min: 2e9, max: 6e9 });
  t.deepEqual(ranges.latency.find((x) => x.label === 'direct p99 at 5000 req/s')?.range, { n: 3, min: 0.1, max: 0.30000000000000004 });
  t.deepEqual(ranges.cpu.map((x) => [x.label, x.range.n]), [['ambit CPU-s per GB', 3], ['ambit CPU-s per 1k connections', 4], ['stunnel CPU-s per GB', 3], ['stunnel CPU-s per 1k connections', 3]]);

  const one = full();
  const same = collapseRounds(one);
  t.deepEqual(same.results, one);
  t.deepEqual(same.ranges, { throughput: [], latency: [], connRate: [], cpu: [] });
});

test('markdown and plots: a run of rounds shows the median rounds, says so, and gives the range under each table', (t) => {
  const md = renderMarkdown(threeRounds(), []);
  const lines = md.split('\n');
  t.true(lines.includes('- Rounds: 3, interleaved; each figure below is its median round, with the range over the rounds under its table'));
  t.true(lines.includes('| 1 flow | 10.00 | 4.00 | – | 0.40× | – |'), 'the median round, as in a single run');
  t.true(lines.includes('| Throughput ambit/direct, 1 flow | ≥ 0.30× direct | 0.40× (ambit 4.00 / direct 10.00 Gbit/s) | met |  |'));
  t.regex(md, /Range over the rounds: [^\n]*ambit 1 flow 2\.00–6\.00[^\n]*\./);
  t.regex(md, /Range over the rounds: [^\n]*ambit p99 at 1000 req\/s 0\.150–0\.450/);
  t.regex(md, /Range over the rounds: [^\n]*ambit at concurrency 32 1,500–4,500/);
  t.regex(md, /Range over the rounds: [^\n]*ambit CPU-s per 1k connections 0\.400–100\.000/);
  t.notRegex(renderMarkdown(full(), []), /Rounds|Range over/);
  const plot = buildPlots(threeRounds()).find((p) => p.file === 'throughput.svg')!;
  t.deepEqual(plot.svg, buildPlots(full()).find((p) => p.file === 'throughput.svg')!.svg, 'plots show the median rounds');
});

test('markdown: quick mode warns, missing figures say so, text cannot break the table', (t) => {
  const r = empty(true);
  r.machine.cpuModel = 'CPU <b>|x';
  const md = renderMarkdown(r, []);
  t.regex(md, /\*\*Warning:\*\* quick mode/);
  t.regex(md, /## Throughput \(Gbit\/s\)\n\nNot measured\./);
  t.regex(md, /\| Heap per known workload \| ≤ 600 B \| – \| not measured \| no state heap measurement \|/);
  t.true(md.includes('CPU &lt;b&gt;|x'));
  t.false(md.includes('## Plots'));
});

// ---------------------------------------------------------------- svg

/** Checks that every tag closes in order under one <svg> root; returns the element names seen. */
function wellFormed(svg: string): string[] {
  const stack: string[] = [];
  const seen: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g)) {
    const [, close, name, , self] = m;
    if (close) {
      if (stack.pop() !== name) throw new Error(`unbalanced </${name}>`);
    } else {
      if (stack.length === 0 && seen.length > 0) throw new Error('more than one root');
      seen.push(name!);
      if (!self) stack.push(name!);
    }
  }
  if (stack.length) throw new Error(`unclosed ${stack.join(',')}`);
  if ([...svg.matchAll(/<\/?[A-Za-z]/g)].length !== seen.length * 2 - [...svg.matchAll(/\/>/g)].length) throw new Error('a tag the checker could not read');
  // Nothing tag-like left over, and every & starts an entity.
  const rest = svg.replace(/<\/?[A-Za-z][^>]*>/g, '');
  if (/[<>]/.test(rest)) throw new Error('stray angle bracket in text');
  if (/&(?!(amp|lt|gt|quot|#39);)/.test(svg)) throw new Error('unescaped &');
  return seen;
}

function bars(svg: string): { series: string; group: string; value: number; y: number; height: number }[] {
  return [...svg.matchAll(/<rect class="bar" data-series="([^"]*)" data-group="([^"]*)" data-value="([^"]*)" x="[^"]*" y="([^"]*)" width="[^"]*" height="([^"]*)"/g)]
    .map(([, series, group, value, y, height]) => ({ series: series!, group: group!, value: Number(value), y: Number(y), height: Number(height) }));
}

test('svg: well-formed, text escaped, bar heights proportional to values, missing bars skipped', (t) => {
  const svg = barChart({
    title: 'A <b>&"\' chart', unit: 'ms', groups: ['p50', 'x<y'],
    series: [{ name: 'direct', values: [1, 2] }, { name: 'a&b', values: [4, undefined] }],
  });
  const names = wellFormed(svg);
  t.is(names[0], 'svg');
  t.true(svg.includes('A &lt;b&gt;&amp;&quot;&#39; chart'));
  t.false(svg.includes('<b>'));
  t.true(svg.includes('>x&lt;y</text>'));
  t.true(svg.includes('>a&amp;b</text>'));
  const bs = bars(svg);
  t.deepEqual(bs.map((b) => [b.series, b.group, b.value]), [['direct', 'p50', 1], ['a&amp;b', 'p50', 4], ['direct', 'x&lt;y', 2]]);
  const perUnit = bs[0]!.height / 1;
  t.true(perUnit > 10);
  for (const b of bs) t.true(Math.abs(b.height - b.value * perUnit) < 0.05, `${b.series} ${b.group}: ${b.height}`);
  const base = bs[0]!.y + bs[0]!.height;
  for (const b of bs) t.true(Math.abs(b.y + b.height - base) < 0.02); // all bars stand on one baseline
  t.true(svg.includes('class="missing"'));
  // Ticks 0..4 at a step of 1 (nice 1/2/5 steps), labelled without needless decimals.
  t.deepEqual([...svg.matchAll(/text-anchor="end">([^<]*)</g)].map((m) => m[1]), ['0', '1', '2', '3', '4']);
  t.regex(svg, /legend|class="swatch"/);
});

test('svg: log scale spaces decades evenly', (t) => {
  const svg = barChart({ title: 'log', unit: 'ms', log: true, groups: ['a', 'b', 'c'], series: [{ name: 's', values: [1, 10, 100] }] });
  wellFormed(svg);
  const [h1, h10, h100] = bars(svg).map((b) => b.height);
  t.true(h1! > 0);
  t.true(Math.abs(h10! - h1! - (h100! - h10!)) < 0.05);
  t.regex(svg, /ms \(log scale\)/);
});

test('plots: one file per figure, series only for the modes that ran', (t) => {
  const plots = buildPlots(full());
  t.deepEqual(plots.map((p) => p.file), ['throughput.svg', 'latency-1000.svg', 'latency-5000.svg', 'connrate.svg']);
  for (const p of plots) wellFormed(p.svg);
  const l1000 = bars(plots[1]!.svg);
  t.deepEqual([...new Set(l1000.map((b) => b.group))], ['p50', 'p90', 'p99', 'p99.9']);
  t.deepEqual([...new Set(l1000.map((b) => b.series))], ['direct', 'ambit', 'stunnel']);
  t.is(l1000.find((b) => b.series === 'ambit' && b.group === 'p99')!.value, 0.3);
  t.deepEqual([...new Set(bars(plots[2]!.svg).map((b) => b.series))], ['direct', 'ambit']);
  const tput = bars(plots[0]!.svg);
  t.deepEqual(tput.map((b) => `${b.series}/${b.group}=${b.value}`), ['direct/1 flow=10', 'ambit/1 flow=4', 'direct/4 flows=20', 'ambit/4 flows=5', 'stunnel/4 flows=8']);
  t.is(plots[1]!.title, 'Latency at 1,000 req/s');
  t.deepEqual(buildPlots(empty()), []);
});

// ---------------------------------------------------------------- writing and loading

test('writeReport writes results.json, report.md and the SVGs', (t) => {
  const out = join(dir, 'report');
  const written = writeReport(full(), out);
  t.deepEqual(readdirSync(out).sort(), ['connrate.svg', 'latency-1000.svg', 'latency-5000.svg', 'report.md', 'results.json', 'throughput.svg']);
  t.deepEqual(written.map((f) => f.slice(out.length + 1)).sort(), readdirSync(out).sort());
  t.deepEqual(JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')), full());
  const md = readFileSync(join(out, 'report.md'), 'utf8');
  t.true(md.includes('![Latency at 5,000 req/s](latency-5000.svg)'));
  t.true(readFileSync(join(out, 'throughput.svg'), 'utf8').startsWith('<svg'));
});

test('loading results: validation names what is wrong', async (t) => {
  t.is(validateResults(full()).version, 1);
  t.throws(() => validateResults([]), { message: /not a JSON object/ });
  t.throws(() => validateResults({ ...full(), version: 2 }), { message: /unsupported version 2/ });
  t.throws(() => validateResults({ ...full(), machine: undefined }), { message: /machine/ });
  t.throws(() => validateResults({ ...full(), connRate: {} }), { message: /"connRate" is missing or not an array/ });
  await t.throwsAsync(loadResults(join(dir, 'nope.json')), { message: /^cannot read .*nope\.json/ });
  writeFileSync(join(dir, 'bad.json'), '{"version": 1,');
  await t.throwsAsync(loadResults(join(dir, 'bad.json')), { message: /bad\.json is not valid JSON/ });
});

test('the CLI re-renders a saved run, and fails clearly on a bad file', (t) => {
  const cli = fileURLToPath(new URL('../bench/report/main.js', import.meta.url));
  const saved = join(dir, 'saved.json');
  writeFileSync(saved, JSON.stringify(full()));
  const out = join(dir, 'cli-out');
  const ok = spawnSync(process.execPath, [cli, saved, out], { encoding: 'utf8' });
  t.is(ok.status, 0, ok.stderr);
  t.true(existsSync(join(out, 'report.md')));
  t.regex(ok.stdout, /report\.md/);
  const bad = spawnSync(process.execPath, [cli, join(dir, 'missing.json')], { encoding: 'utf8' });
  t.is(bad.status, 1);
  t.regex(bad.stderr, /^report: cannot read .*missing\.json/);
  t.is(spawnSync(process.execPath, [cli], { encoding: 'utf8' }).status, 2);
});
