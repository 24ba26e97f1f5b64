// Parses the JSON an iperf3 client prints with -J into a ThroughputResult.
import type { Mode, ThroughputResult } from '../results.js';

function field(obj: unknown, path: string[]): unknown {
  let cur = obj;
  for (const key of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

function finite(obj: unknown, path: string[]): number {
  const v = field(obj, path);
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new Error(`iperf3 output lacks a numeric ${path.join('.')} (got ${v === undefined ? 'nothing' : JSON.stringify(v)})`);
  }
  return v;
}

/** Receiver-side totals (what actually arrived) and the sender's retransmit count. Throws on iperf3 errors,
 *  non-JSON output, or output missing those fields. */
export function parseIperf3(json: string, mode: Mode, flows: number): ThroughputResult {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (err) {
    const head = json.trim().slice(0, 120);
    throw new Error(`iperf3 output is not JSON (${(err as Error).message}): ${head === '' ? '(empty)' : JSON.stringify(head)}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new Error('iperf3 output is not a JSON object');
  const error = (doc as Record<string, unknown>)['error'];
  if (error !== undefined) throw new Error(`iperf3 failed: ${typeof error === 'string' ? error : JSON.stringify(error)}`);
  return {
    mode,
    flows,
    seconds: finite(doc, ['end', 'sum_received', 'seconds']),
    bytes: finite(doc, ['end', 'sum_received', 'bytes']),
    bitsPerSecond: finite(doc, ['end', 'sum_received', 'bits_per_second']),
    retransmits: finite(doc, ['end', 'sum_sent', 'retransmits']),
  };
}
