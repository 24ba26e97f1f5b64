// Checks that a parsed results.json has the shape the report reads.
import type { BenchResults } from '../results.js';

const ARRAYS = ['throughput', 'latency', 'connRate', 'cpu', 'idleMemory', 'stateHeap'] as const;

/** Returns `doc` typed as BenchResults, or throws naming what is wrong (`where` names the source in messages). */
export function validateResults(doc: unknown, where = 'results'): BenchResults {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new Error(`${where}: not a JSON object`);
  const o = doc as Record<string, unknown>;
  if (o['version'] !== 1) throw new Error(`${where}: unsupported version ${JSON.stringify(o['version'])} (expected 1)`);
  const machine = o['machine'];
  if (machine === null || typeof machine !== 'object' || Array.isArray(machine)) throw new Error(`${where}: missing "machine" object`);
  const m = machine as Record<string, unknown>;
  if (m['tools'] === null || typeof m['tools'] !== 'object') m['tools'] = {};
  for (const key of ARRAYS) if (!Array.isArray(o[key])) throw new Error(`${where}: "${key}" is missing or not an array`);
  return doc as BenchResults;
}
