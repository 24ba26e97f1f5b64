// Keeping the state small: most fields of a workload repeat across many workloads (namespace, node, service account,
// trust domain, its port maps; all but a few fields across a deployment's replicas), so each distinct value is stored
// once and shared. Shared values are never mutated.
//
// Strings decoded by protobufjs are built by concatenation, which V8 keeps as a chain of small pieces (several hundred
// bytes for a 60-character uid); whatever the state keeps is copied into one flat string first.
import type { WorkloadProfile } from './profiled-workload.js';
import type { GatewayAddress, PortMap } from './types.js';

/** Past this many distinct values the pools of shared objects start over: stale values then cost nothing, and sharing
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

/**
 * FNV-1a over a value's content (strings and small integers), each part followed by a mark that no character is: a
 * 32-bit integer, which a Map keeps as a key without allocating a heap number. Equal content, equal hash; the converse
 * does not hold, so a hit is always compared.
 */
export function contentHash(parts: readonly (string | number)[]): number {
  let h = 0x811c9dc5;
  for (const part of parts) {
    if (typeof part === 'number') h = Math.imul(h ^ part, 0x01000193);
    else for (let i = 0; i < part.length; i++) h = Math.imul(h ^ part.charCodeAt(i), 0x01000193);
    h = Math.imul(h ^ 0x10000, 0x01000193);
  }
  return h;
}

/** Every pool, for them to start over together: MAX_POOL bounds the values they hold in all. */
const pools: { clear(): void }[] = [];
let pooled = 0;

/** The values in one pool slot when their hashes collide (rare). A class, as some shared values are arrays. */
class Collided<T> {
  constructor(readonly values: T[]) {}
}

/**
 * Shared values of one kind, one per content, found by a hash of their content: the pool keeps no key of its own (a
 * string spelling out a workload profile would be longer than the profile). `matches` tells whether a pooled value has
 * the content of an input, `make` builds a value from an input the pool does not have yet.
 */
class SharedPool<T, In> {
  private readonly byHash = new Map<number, T | Collided<T>>();

  constructor(
    private readonly matches: (value: T, input: In) => boolean,
    private readonly make: (input: In) => T,
  ) {
    pools.push(this);
  }

  clear(): void {
    this.byHash.clear();
  }

  get(hash: number, input: In): T {
    if (pooled >= MAX_POOL) {
      for (const p of pools) p.clear();
      pooled = 0;
    }
    const slot = this.byHash.get(hash);
    if (slot instanceof Collided) {
      const hit = slot.values.find((v) => this.matches(v, input));
      if (hit !== undefined) return hit;
    } else if (slot !== undefined && this.matches(slot, input)) return slot;
    const made = this.make(input);
    pooled++;
    if (slot === undefined) this.byHash.set(hash, made);
    else if (slot instanceof Collided) slot.values.push(made);
    else this.byHash.set(hash, new Collided([slot, made]));
    return made;
  }
}

const EMPTY_STRINGS: readonly string[] = Object.freeze([]);
const stringLists = new SharedPool<readonly string[], readonly string[]>(
  (v, list) => v.length === list.length && v.every((s, i) => s === list[i]),
  (list) => Object.freeze(list.map(intern)),
);

/** A shared, frozen list of interned strings (e.g. the policies selecting a workload: the same for all its replicas). */
export function sharedStrings(list: readonly string[]): readonly string[] {
  if (list.length === 0) return EMPTY_STRINGS;
  return stringLists.get(contentHash(list), list);
}

type Pairs = readonly (readonly [number, number])[];
const portMaps = new SharedPool<PortMap, Pairs>(
  (v, pairs) => {
    if (v.size !== pairs.length) return false;
    let i = 0;
    for (const [from, to] of v) if (pairs[i]![0] !== from || pairs[i++]![1] !== to) return false;
    return true;
  },
  (pairs) => new Map(pairs),
);

/** A shared port map (service port -> target port) with these pairs, in this order. */
export function sharedPortMap(pairs: Pairs): PortMap {
  return portMaps.get(contentHash(pairs.flat()), pairs);
}

// Port maps are shared ones: the same content is the same map (but for maps from before the pools started over, which
// then only share less).
type ServiceEntries = readonly (readonly [string, PortMap])[];
const servicePorts = new SharedPool<ReadonlyMap<string, PortMap>, ServiceEntries>(
  (v, entries) => {
    if (v.size !== entries.length) return false;
    let i = 0;
    for (const [svc, ports] of v) if (entries[i]![0] !== svc || entries[i++]![1] !== ports) return false;
    return true;
  },
  (entries) => new Map(entries.map(([svc, ports]) => [intern(svc), ports])),
);

/** A shared `ns/hostname` -> port map (a workload's services: the same for all replicas of a deployment); the port maps
 *  are to be shared ones. */
export function sharedServicePorts(entries: ServiceEntries): ReadonlyMap<string, PortMap> {
  return servicePorts.get(contentHash(entries.flatMap(([svc, ports]) => [svc, ...[...ports].flat()])), entries);
}

/** A waypoint's content: its kind, the two strings that name it, its port. */
const gatewayParts = (g: GatewayAddress): [string, string, string, number] =>
  g.kind === 'hostname' ? [g.kind, g.namespace, g.hostname, g.hboneMtlsPort] : [g.kind, g.network, g.address, g.hboneMtlsPort];
const gateways = new SharedPool<GatewayAddress, GatewayAddress>(
  (v, g) => {
    const [a, b] = [gatewayParts(v), gatewayParts(g)];
    return a.every((part, i) => part === b[i]);
  },
  (g): GatewayAddress =>
    Object.freeze(
      g.kind === 'hostname'
        ? { kind: g.kind, namespace: intern(g.namespace), hostname: intern(g.hostname), hboneMtlsPort: g.hboneMtlsPort }
        : { kind: g.kind, network: intern(g.network), address: intern(g.address), hboneMtlsPort: g.hboneMtlsPort },
    ),
);

/** A shared, frozen waypoint address: the services and workloads of a namespace mostly use one waypoint. */
export function sharedGatewayAddress(g: GatewayAddress): GatewayAddress {
  return gateways.get(contentHash(gatewayParts(g)), g);
}

const PROFILE_FIELDS = [
  'namespace', 'serviceAccount', 'trustDomain', 'network', 'protocol', 'hostname', 'canonicalName', 'canonicalRevision', 'workloadName',
  'workloadType', 'clusterId', 'status', 'authorizationPolicies', 'services', 'waypoint',
] as const satisfies readonly (keyof WorkloadProfile)[];
const profiles = new SharedPool<WorkloadProfile, WorkloadProfile>(
  (v, p) => PROFILE_FIELDS.every((f) => v[f] === p[f]),
  (p) => Object.freeze(p),
);

/** A shared, frozen workload profile with these fields (see profiled-workload.ts): its strings are to be interned, its
 *  lists, maps and waypoint shared ones (which are compared by identity). */
export function sharedProfile(p: WorkloadProfile): WorkloadProfile {
  const text = [p.namespace, p.serviceAccount, p.trustDomain, p.network, p.protocol, p.hostname, p.canonicalName, p.canonicalRevision,
    p.workloadName, p.workloadType, p.clusterId, p.status, ...p.authorizationPolicies, ...p.services.keys(), ...(p.waypoint ? gatewayParts(p.waypoint) : [])];
  return profiles.get(contentHash(text), p);
}
