// npm run bench: every figure for direct TCP, ambit and stunnel in one run on one lab, then the report.
// See bench/README.md. Flags: --quick (CI: seconds), --out DIR (default bench/out), --only a,b (benchmarks by name),
// --threads N (ZTUNNEL_WORKER_THREADS of both ztunnels, default 1), --rounds N (times each of throughput, latency and
// connection rate is measured, interleaved; full default 3, quick 1), --profile DIR (both ztunnels' CPU profiles).
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import os from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BenchLab } from './lab.js';
import { parseIperf3 } from './parse/iperf3.js';
import { cpuSeconds, lastJson, machineCpu, rssBytes, runIn, runTool, startIn, TOOL } from './proc.js';
import { writeReport } from './report/write.js';
import { MODES, type BenchResults, type ConnRateResult, type LatencyResult, type MachineInfo, type Mode } from './results.js';
import { measureStateHeap } from './state-heap.js';

const BENCHMARKS = ['throughput', 'latency', 'connrate', 'idle', 'heap'] as const;
type Benchmark = (typeof BENCHMARKS)[number];

const PROFILES = {
  quick: { throughputS: 2, flows: [1, 4], rates: [1000, 5000], rounds: 1, latencyS: 2, connrateS: 2, connrateWarmS: 0.5, concurrency: [1, 32], idle: [200, 1000], heap: [1000, 20_000] },
  full: { throughputS: 10, flows: [1, 4], rates: [1000, 5000], rounds: 3, latencyS: 15, connrateS: 10, connrateWarmS: 10, concurrency: [1, 32], idle: [1000, 10_000], heap: [1000, 20_000, 100_000] },
};
type Profile = (typeof PROFILES)['full'];

const PROXIES = ['ambit', 'stunnel'] as const;
type Proxy = (typeof PROXIES)[number];

function usage(): never {
  console.log(`usage: npm run bench -- [--quick] [--out DIR] [--only ${BENCHMARKS.join(',')}] [--threads N] [--rounds N] [--profile DIR]`);
  process.exit(2);
}

function machineInfo(quick: boolean, ztunnelThreads: number, rounds: number): MachineInfo {
  // The first line that names the tool (stunnel prints its version on stderr).
  const version = (cmd: string, arg: string, name: RegExp) => {
    const r = spawnSync(cmd, [arg], { encoding: 'utf8' });
    return `${r.stdout ?? ''}\n${r.stderr ?? ''}`.split('\n').find((l) => name.test(l))?.trim() ?? 'unknown';
  };
  return {
    hostname: os.hostname(),
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryBytes: os.totalmem(),
    kernel: os.release(),
    node: process.version,
    date: new Date().toISOString(),
    quick,
    tools: { iperf3: version('iperf3', '--version', /^iperf /), stunnel: version('stunnel4', '-version', /^stunnel /) },
    ztunnelThreads,
    rounds,
  };
}

/** CPU seconds the mode's proxies use while `work` runs. */
async function withCpu<T>(lab: BenchLab, mode: Mode, work: () => Promise<T>): Promise<{ result: T; cpu?: number }> {
  if (mode === 'direct') return { result: await work() };
  const pids = lab.proxyPids(mode);
  const before = pids.map(cpuSeconds);
  const result = await work();
  return { result, cpu: pids.reduce((sum, pid, i) => sum + cpuSeconds(pid) - before[i]!, 0) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean' }, out: { type: 'string' }, only: { type: 'string' }, threads: { type: 'string' }, rounds: { type: 'string' }, profile: { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help) usage();
  const only = new Set<Benchmark>((values.only?.split(',') ?? BENCHMARKS) as Benchmark[]);
  for (const b of only) if (!BENCHMARKS.includes(b)) usage();
  const threads = Number(values.threads ?? 1);
  if (!Number.isInteger(threads) || threads < 1 || threads > 64) usage();
  const quick = values.quick ?? false;
  const p: Profile = quick ? PROFILES.quick : PROFILES.full;
  const rounds = Number(values.rounds ?? p.rounds);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) usage();
  // CPU per connection is taken at the highest concurrency, which the warm-up uses too.
  const topConcurrency = Math.max(...p.concurrency);
  const out = resolve(values.out ?? 'bench/out');
  const results: BenchResults = { version: 1, machine: machineInfo(quick, threads, rounds), throughput: [], latency: [], connRate: [], cpu: [], idleMemory: [], stateHeap: [] };
  const log = (msg: string) => console.log(`[bench] ${msg}`);

  const profile = values.profile === undefined ? undefined : resolve(values.profile);
  if (profile) mkdirSync(profile, { recursive: true });
  const lab = new BenchLab(threads, profile);
  const stop = () => void lab.cleanup().finally(() => process.exit(130));
  process.once('SIGINT', stop).once('SIGTERM', stop);
  try {
    log('starting the lab (2 nodes, ztunnels, iperf3 and echo servers, stunnel pair)');
    await lab.start();

    if (only.has('connrate')) {
      // Steady state: the connection path is compiled (V8 spends seconds optimising it) before CPU is counted.
      for (const mode of MODES) {
        const t = lab.target(mode, 'echo');
        const args = ['connrate', t.host, String(t.port), '--concurrency', String(topConcurrency), '--seconds', String(p.connrateWarmS)];
        await runTool(t.ns, 'loadgen', args, (p.connrateWarmS + 30) * 1000);
      }
    }
    // Rounds interleave (all of round 1, then round 2, ...), so a slow spell of a shared machine hits one round of
    // every mode rather than every round of one; the report takes each figure's median round.
    for (let round = 1; round <= rounds; round++) {
      const tag = rounds > 1 ? ` [round ${round}/${rounds}]` : '';
      const cpu = new Map<Proxy, { perGB?: number; per1k?: number }>(PROXIES.map((m) => [m, {}]));

      if (only.has('throughput')) {
        for (const flows of p.flows) {
          for (const mode of MODES) {
            const t = lab.target(mode, 'iperf');
            const args = ['-c', t.host, '-p', String(t.port), '-t', String(p.throughputS), '-P', String(flows), '-J'];
            const m0 = machineCpu();
            const { result: json, cpu: used } = await withCpu(lab, mode, () => runIn(t.ns, 'iperf3', args, (p.throughputS + 30) * 1000));
            const m1 = machineCpu();
            const r = { ...parseIperf3(json, mode, flows), machineCpuBusy: (m1.busy - m0.busy) / (m1.total - m0.total), round };
            results.throughput.push(r);
            if (used !== undefined && flows === 1) cpu.get(mode as Proxy)!.perGB = used / (r.bytes / 1e9);
            log(`throughput ${mode} ${flows} flow(s): ${(r.bitsPerSecond / 1e9).toFixed(2)} Gbit/s, machine CPU ${(r.machineCpuBusy * 100).toFixed(0)}% busy${tag}`);
          }
        }
      }

      if (only.has('latency')) {
        for (const rate of p.rates) {
          for (const mode of MODES) {
            const t = lab.target(mode, 'echo');
            const args = ['latency', t.host, String(t.port), '--rate', String(rate), '--seconds', String(p.latencyS), '--connections', '8', '--size', '64'];
            const r = lastJson<Omit<LatencyResult, 'mode'>>(await runTool(t.ns, 'loadgen', args, (p.latencyS + 30) * 1000));
            results.latency.push({ mode, ...r, round });
            log(`latency ${mode} @${rate}/s: p50 ${r.p50.toFixed(3)} p99 ${r.p99.toFixed(3)} p99.9 ${r.p999.toFixed(3)} ms (${r.errors} errors)${tag}`);
          }
        }
      }

      if (only.has('connrate')) {
        for (const concurrency of p.concurrency) {
          for (const mode of MODES) {
            const t = lab.target(mode, 'echo');
            const args = ['connrate', t.host, String(t.port), '--concurrency', String(concurrency), '--seconds', String(p.connrateS)];
            const { result: out, cpu: used } = await withCpu(lab, mode, () => runTool(t.ns, 'loadgen', args, (p.connrateS + 30) * 1000));
            const r = lastJson<Omit<ConnRateResult, 'mode'>>(out);
            results.connRate.push({ mode, ...r, round });
            if (used !== undefined && concurrency === topConcurrency) cpu.get(mode as Proxy)!.per1k = used / (r.completed / 1000);
            log(`connrate ${mode} c=${concurrency}: ${r.connectionsPerSecond.toFixed(0)} conn/s (${r.errors} errors)${tag}`);
          }
        }
      }
      for (const [mode, c] of cpu) {
        if (c.perGB !== undefined || c.per1k !== undefined) results.cpu.push({ mode, secondsPerGB: c.perGB ?? NaN, secondsPer1kConnections: c.per1k ?? NaN, round });
      }
    }

    if (only.has('idle')) {
      for (const mode of PROXIES) {
        for (const count of p.idle) {
          await lab.restartProxies(mode);
          const t = lab.target(mode, 'echo');
          await runTool(t.ns, 'loadgen', ['connrate', t.host, String(t.port), '--concurrency', '4', '--seconds', '0.5'], 30_000); // warm: pool, certificates
          const rss = () => lab.proxyPids(mode).reduce((sum, pid) => sum + rssBytes(pid), 0);
          const before = rss();
          const { child: holder, output } = await startIn(t.ns, process.execPath, [TOOL('loadgen'), 'hold', t.host, String(t.port), '--count', String(count)], /"held".*\n/, 120_000);
          const held = lastJson<{ held: number; errors: number }>(output);
          await new Promise((r) => setTimeout(r, 1000)); // let the proxies settle
          const after = rss();
          holder.stdin!.end();
          await new Promise((r) => holder.once('exit', r));
          if (held.held === 0) throw new Error(`${mode}: no connection could be held (${held.errors} errors)`);
          results.idleMemory.push({ mode, connections: held.held, rssBytesBefore: before, rssBytesAfter: after, bytesPerConnection: (after - before) / held.held });
          log(`idle ${mode} ${held.held} connections (${held.errors} errors): ${((after - before) / held.held / 1024).toFixed(1)} KiB/conn`);
        }
      }
    }
  } finally {
    await lab.cleanup();
  }
  if (profile) log(`ztunnel CPU profiles (open in Chrome DevTools or speedscope): ${profile}`);

  if (only.has('heap')) {
    for (const n of p.heap) {
      const r = await measureStateHeap(n);
      results.stateHeap.push(r);
      log(`state heap ${n} workloads: ${r.bytesPerWorkload.toFixed(0)} B/workload`);
    }
  }

  for (const f of writeReport(results, out)) log(`wrote ${f}`);
}

main().catch((e) => {
  console.error(`bench failed: ${(e as Error).stack ?? e}`);
  process.exit(1);
});
