// `npm run bench -- --quick` end to end, so the benchmarks keep working: every figure is produced for every mode, in
// each of two rounds, and the report is written. No timing is asserted (figures on a shared CI machine say nothing);
// only that each figure was measured from real traffic (bytes moved, requests answered, connections held).
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { validateResults } from '../bench/report/validate.js';
import { MODES } from '../bench/results.js';

const RUN = fileURLToPath(new URL('../bench/run.js', import.meta.url));
const out = mkdtempSync(join(tmpdir(), 'ambit-bench-'));
test.after.always(() => rmSync(out, { recursive: true, force: true }));

test('bench --quick --rounds 2 measures every figure for direct, ambit and stunnel twice and writes the report', async (t) => {
  t.timeout(300_000);
  const profiles = join(out, 'cpu profiles'); // with a space, which NODE_OPTIONS must keep in one argument
  const child = spawn(process.execPath, [RUN, '--quick', '--rounds', '2', '--out', out, '--profile', profiles], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (c: Buffer) => (log += c));
  child.stderr.on('data', (c: Buffer) => (log += c));
  const timer = setTimeout(() => child.kill('SIGINT'), 280_000);
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  clearTimeout(timer);
  t.is(code, 0, log);

  const r = validateResults(JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')));
  t.true(r.machine.quick);
  t.is(r.machine.rounds, 2);
  const rounds = (xs: { round?: number }[]) => xs.map((x) => x.round).sort();
  for (const mode of MODES) {
    for (const flows of [1, 4]) {
      const th = r.throughput.filter((x) => x.mode === mode && x.flows === flows);
      t.deepEqual(rounds(th), [1, 2], `throughput ${mode} ${flows}`);
      for (const x of th) t.true(x.bytes > 0 && x.bitsPerSecond > 0, `${mode}: iperf3 moved bytes`);
    }
    for (const rate of [1000, 5000]) {
      const ls = r.latency.filter((x) => x.mode === mode && x.rate === rate);
      t.deepEqual(rounds(ls), [1, 2], `latency ${mode} ${rate}`);
      for (const l of ls) t.true(l.completed > 0 && l.p50 > 0 && l.p50 <= l.p99 && l.p99 <= l.max, `${mode} @${rate}: answered, percentiles ordered`);
    }
    for (const concurrency of [1, 32]) {
      const cs = r.connRate.filter((x) => x.mode === mode && x.concurrency === concurrency);
      t.deepEqual(rounds(cs), [1, 2], `connrate ${mode} c=${concurrency}`);
      for (const c of cs) t.true(c.completed > 0, `connrate ${mode} c=${concurrency} connected`);
    }
  }
  for (const mode of ['ambit', 'stunnel'] as const) {
    const cpu = r.cpu.filter((x) => x.mode === mode);
    t.deepEqual(rounds(cpu), [1, 2], `cpu ${mode}`);
    for (const c of cpu) t.true(c.secondsPerGB > 0 && c.secondsPer1kConnections > 0, `cpu ${mode}`);
    const idle = r.idleMemory.filter((x) => x.mode === mode);
    t.is(idle.length, 2, `idle memory ${mode}`);
    for (const i of idle) t.true(i.connections > 0 && Number.isFinite(i.bytesPerConnection));
  }
  t.deepEqual(r.stateHeap.map((h) => h.workloads), [1000, 20_000]);
  for (const h of r.stateHeap) t.true(h.heapBytes > 0);

  const report = readFileSync(join(out, 'report.md'), 'utf8');
  t.regex(report, /ambit\/direct/);
  t.regex(report, /Range over the rounds: .*ambit 1 flow /);
  for (const f of ['throughput.svg', 'latency-1000.svg', 'connrate.svg']) t.true(existsSync(join(out, f)), f);

  // --profile: every ztunnel process the run stopped (the first two, the two of each of the idle benchmark's two
  // restarts) wrote its CPU profile, and the traffic shows in them.
  const files = readdirSync(profiles).filter((f) => f.endsWith('.cpuprofile'));
  t.is(files.length, 6, files.join(', '));
  const frames = files.map((f) => {
    const p = JSON.parse(readFileSync(join(profiles, f), 'utf8')) as { nodes: { callFrame: { functionName: string } }[]; samples: number[] };
    t.true(p.samples.length > 0, f);
    return new Set(p.nodes.map((n) => n.callFrame.functionName));
  });
  t.true(frames.some((names) => names.has('handleOutbound')), 'a client ztunnel profile shows outbound connections');
  t.true(frames.some((names) => names.has('handleInboundStream')), 'a server ztunnel profile shows inbound tunnels');
});
