// Evaluates design.md §5's performance targets against a run's results.
import type { BenchResults, LatencyResult, Mode, ThroughputResult } from '../results.js';
import { DASH, bytes, fixed, flowsLabel, gbps, mb, uniqueSorted } from './format.js';

export interface TargetRow {
  target: string;
  threshold: string;
  measured: string;
  /** null: not measured. */
  met: boolean | null;
  note?: string;
}

export const THROUGHPUT_RATIO_MIN = 0.3;
export const LATENCY_RATE = 1000;
export const LATENCY_ADDED_P99_MAX_MS = 0.25;
export const CONNS_PER_CORE_SECOND_MIN = 2000;
export const CONNRATE_CONCURRENCY = 32;
export const HEAP_BYTES_PER_WORKLOAD_MAX = 600;

const find = <T extends { mode: Mode }>(xs: readonly T[], mode: Mode, pred: (x: T) => boolean): T | undefined =>
  xs.find((x) => x.mode === mode && pred(x));

const fixed2 = (x: number | undefined) => fixed(x, 2);

function throughputRows(r: BenchResults): TargetRow[] {
  const threshold = `≥ ${fixed(THROUGHPUT_RATIO_MIN, 2)}× direct`;
  const flows = uniqueSorted(r.throughput.map((x) => x.flows));
  if (flows.length === 0) return [{ target: 'Throughput ambit/direct', threshold, measured: DASH, met: null, note: 'no throughput runs' }];
  return flows.map((n): TargetRow => {
    const target = `Throughput ambit/direct, ${flowsLabel(n)}`;
    const byFlows = (x: ThroughputResult) => x.flows === n;
    const direct = find(r.throughput, 'direct', byFlows);
    const ambit = find(r.throughput, 'ambit', byFlows);
    if (!direct || !ambit || direct.bitsPerSecond <= 0) {
      const have = [direct && `direct ${fixed2(gbps(direct.bitsPerSecond))} Gbit/s`, ambit && `ambit ${fixed2(gbps(ambit.bitsPerSecond))} Gbit/s`];
      return { target, threshold, measured: have.filter(Boolean).join(', ') || DASH, met: null, note: !ambit ? 'no ambit run' : 'no direct baseline' };
    }
    const q = ambit.bitsPerSecond / direct.bitsPerSecond;
    return {
      target, threshold, met: q >= THROUGHPUT_RATIO_MIN,
      measured: `${fixed(q, 2)}× (ambit ${fixed2(gbps(ambit.bitsPerSecond))} / direct ${fixed2(gbps(direct.bitsPerSecond))} Gbit/s)`,
    };
  });
}

function latencyRow(r: BenchResults): TargetRow {
  const target = `Latency added at p99, ${fixed(LATENCY_RATE, 0)} req/s`;
  const threshold = `≤ ${fixed(LATENCY_ADDED_P99_MAX_MS, 2)} ms`;
  const atRate = (x: LatencyResult) => x.rate === LATENCY_RATE;
  const direct = find(r.latency, 'direct', atRate);
  const ambit = find(r.latency, 'ambit', atRate);
  if (!direct || !ambit) {
    return { target, threshold, measured: DASH, met: null, note: `no ${!ambit ? 'ambit' : 'direct'} run at ${fixed(LATENCY_RATE, 0)} req/s` };
  }
  const added = ambit.p99 - direct.p99;
  const errors = ambit.errors + direct.errors;
  const row: TargetRow = {
    target, threshold, met: added <= LATENCY_ADDED_P99_MAX_MS,
    measured: `${fixed(added, 3)} ms (ambit p99 ${fixed(ambit.p99, 3)} − direct p99 ${fixed(direct.p99, 3)} ms)`,
  };
  if (errors > 0) row.note = `${fixed(errors, 0)} request errors (ambit ${ambit.errors}, direct ${direct.errors})`;
  return row;
}

/** secondsPer1kConnections is CPU summed over both ztunnels (client and server node), and every connection
 *  passes through both; so one ztunnel spends half of it, and handles 1000 / (s / 2) = 2000 / s connections
 *  per CPU-second. */
export function connectionsPerZtunnelCoreSecond(secondsPer1kConnections: number): number {
  return 2000 / secondsPer1kConnections;
}

function connRateRow(r: BenchResults): TargetRow {
  const target = 'New connections/s per ztunnel core';
  const threshold = `≥ ${fixed(CONNS_PER_CORE_SECOND_MIN, 0)}`;
  const cpu = r.cpu.find((x) => x.mode === 'ambit');
  const raw = find(r.connRate, 'ambit', (x) => x.concurrency === CONNRATE_CONCURRENCY);
  const rawText = raw ? `; ${fixed(raw.connectionsPerSecond, 0)} conn/s measured at concurrency ${CONNRATE_CONCURRENCY}` : '';
  const s = cpu?.secondsPer1kConnections;
  if (s === undefined || !Number.isFinite(s) || s <= 0) {
    return { target, threshold, measured: rawText ? rawText.slice(2) : DASH, met: null, note: cpu ? 'CPU per connection not measured' : 'no ambit CPU measurement' };
  }
  const perCore = connectionsPerZtunnelCoreSecond(s);
  return {
    target, threshold, met: perCore >= CONNS_PER_CORE_SECOND_MIN,
    measured: `${fixed(perCore, 0)} conn/s per CPU-second (${fixed(s, 3)} CPU-s per 1k conns over both ztunnels)${rawText}`,
    note: 'assumes the client and server ztunnels share the CPU equally',
  };
}

function heapRows(r: BenchResults): TargetRow[] {
  const threshold = `≤ ${fixed(HEAP_BYTES_PER_WORKLOAD_MAX, 0)} B`;
  if (r.stateHeap.length === 0) return [{ target: 'Heap per known workload', threshold, measured: DASH, met: null, note: 'no state heap measurement' }];
  return r.stateHeap.map((h) => ({
    target: `Heap per known workload (${fixed(h.workloads, 0)} workloads, ${fixed(h.services, 0)} services)`,
    threshold,
    measured: `${bytes(h.bytesPerWorkload)} per workload (${mb(h.heapBytes)} total)`,
    met: h.bytesPerWorkload <= HEAP_BYTES_PER_WORKLOAD_MAX,
  }));
}

export function evaluateTargets(r: BenchResults): TargetRow[] {
  return [...throughputRows(r), latencyRow(r), connRateRow(r), ...heapRows(r)];
}
