// Keeping the state small: most fields of a workload repeat across many workloads (namespace, node, service account,
// trust domain, its port maps), so each distinct value is stored once and shared. Shared values are never mutated.
//
// Strings decoded by protobufjs are built by concatenation, which V8 keeps as a chain of small pieces (several hundred
// bytes for a 60-character uid); whatever the state keeps is copied into one flat string first.
import type { PortMap } from './types.js';

/** Past this many distinct values the pool of shared objects starts over: stale values then cost nothing, and sharing
 *  resumes as values recur. */
const MAX_POOL = 1 << 17;

/** The same characters in a single flat (sequential) string. */
export function flat(s: string): string {
  if (s.length === 0) return '';
  const copy = Buffer.from(s, 'utf8').toString('utf8');
  // Only a lone surrogate does not survive the UTF-8 round trip (decoded protobuf strings never hold one).
  return copy === s ? copy : s;
}

// V8 keeps a single copy of every string used as a property name, in a table that forgets strings nothing refers to
// any more; a name read back from an object is that copy. Interning through it costs no pool of our own and never
// keeps a stale value alive. (A name that looks like an array index comes back as a new, equal string: no harm.)
const probe: Record<string, number> = Object.create(null);

/** One shared flat copy of a string that many objects repeat. */
export function intern(s: string): string {
  if (s.length === 0) return '';
  probe[s] = 0;
  const copy = Object.keys(probe)[0]!;
  delete probe[s];
  return copy;
}

const shared = new Map<string, unknown>();

/** One shared value per `key` (the value's content written as a string); `make` builds it the first time. */
function share<T>(key: string, make: () => T): T {
  let hit = shared.get(key) as T | undefined;
  if (hit === undefined) {
    if (shared.size >= MAX_POOL) shared.clear();
    hit = make();
    shared.set(flat(key), hit);
  }
  return hit;
}

const EMPTY_STRINGS: readonly string[] = Object.freeze([]);

/** A shared, frozen list of interned strings (e.g. the policies selecting a workload: the same for all its replicas). */
export function sharedStrings(list: readonly string[]): readonly string[] {
  if (list.length === 0) return EMPTY_STRINGS;
  return share(`a:${JSON.stringify(list)}`, () => Object.freeze(list.map(intern)));
}

/** A shared port map (service port -> target port) with these pairs, in this order. */
export function sharedPortMap(pairs: readonly (readonly [number, number])[]): PortMap {
  return share(`p:${pairs.join(';')}`, () => new Map(pairs));
}

/** A shared `ns/hostname` -> port map (a workload's services: the same for all replicas of a deployment). */
export function sharedServicePorts(entries: readonly (readonly [string, PortMap])[]): ReadonlyMap<string, PortMap> {
  const key = `s:${JSON.stringify(entries.map(([svc, ports]) => [svc, [...ports].join(';')]))}`;
  return share(key, () => new Map(entries.map(([svc, ports]) => [intern(svc), ports])));
}
