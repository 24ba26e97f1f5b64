// HBONE request headers: how a CONNECT names its target and carries the source's metadata.
import { randomBytes } from 'node:crypto';
import { formatHostPort, parseHostPort } from '../net/ip.js';

export interface BaggageSource {
  clusterId: string;
  namespace: string;
  workloadType: string;
  workloadName: string;
  canonicalName: string;
  canonicalRevision: string;
}

/** W3C baggage with the keys Istio puts on HBONE requests; empty values are left out. */
export function buildBaggage(w: BaggageSource): string {
  const pairs: [string, string][] = [
    ['k8s.cluster.name', w.clusterId],
    ['k8s.namespace.name', w.namespace],
    [`k8s.${w.workloadType || 'pod'}.name`, w.workloadName],
    ['service.name', w.canonicalName],
    ['service.version', w.canonicalRevision],
  ];
  return pairs
    .filter(([, v]) => v !== '')
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
    .join(',');
}

export interface ParsedBaggage {
  clusterId?: string;
  namespace?: string;
  workloadType?: string;
  workloadName?: string;
  canonicalName?: string;
  canonicalRevision?: string;
}

export function parseBaggage(header: string | undefined): ParsedBaggage {
  const out: ParsedBaggage = {};
  if (!header) return out;
  for (const member of header.split(',')) {
    const eq = member.indexOf('=');
    if (eq < 0) continue;
    const key = member.slice(0, eq).trim();
    let value: string;
    try {
      value = decodeURIComponent(member.slice(eq + 1).split(';')[0]!.trim());
    } catch {
      continue; // one bad member must not discard the rest
    }
    if (key === 'k8s.cluster.name') out.clusterId = value;
    else if (key === 'k8s.namespace.name') out.namespace = value;
    else if (key === 'service.name') out.canonicalName = value;
    else if (key === 'service.version') out.canonicalRevision = value;
    else {
      const m = /^k8s\.([a-z]+)\.name$/.exec(key);
      if (m) [out.workloadType, out.workloadName] = [m[1], value];
    }
  }
  return out;
}

/** `forwarded: for="<ip:port>"`, plus `;host=<svc>` when the app addressed a service. */
export function buildForwarded(srcIp: string, srcPort: number, serviceHost?: string): string {
  const base = `for="${formatHostPort(srcIp, srcPort)}"`;
  return serviceHost ? `${base};host=${serviceHost}` : base;
}

/** The original client address from a `forwarded` header (the first element's `for`). */
export function parseForwardedFor(header: string | undefined): { ip: string; port: number } | undefined {
  if (!header) return undefined;
  const first = header.split(',')[0]!;
  for (const pair of first.split(';')) {
    const [k, v] = pair.split('=') as [string, string | undefined];
    if (k?.trim().toLowerCase() === 'for' && v) return parseHostPort(v.trim().replace(/^"|"$/g, ''));
  }
  return undefined;
}

// Random bytes for trace ids come from a pool refilled 4 KiB at a time: one randomBytes call per connection cost
// more than the rest of building the request headers.
const POOL_SIZE = 4096;
const ID_BYTES = 24;
let pool = Buffer.alloc(0);
let poolOffset = POOL_SIZE;

/** A fresh W3C traceparent, not sampled: `00-<32 hex trace id>-<16 hex span id>-00`. */
export function newTraceparent(): string {
  if (poolOffset + ID_BYTES > pool.length) {
    pool = randomBytes(POOL_SIZE);
    poolOffset = 0;
  }
  const b = pool.toString('hex', poolOffset, (poolOffset += ID_BYTES));
  return `00-${b.slice(0, 32)}-${b.slice(32, 48)}-00`;
}

export interface ConnectRequestHeaders {
  [name: string]: string;
  ':method': 'CONNECT';
  ':authority': string;
  baggage: string;
  forwarded: string;
  traceparent: string;
}

export function buildConnectHeaders(opts: {
  dstIp: string;
  dstPort: number;
  srcIp: string;
  srcPort: number;
  source?: BaggageSource;
  serviceHost?: string;
}): ConnectRequestHeaders {
  return {
    ':method': 'CONNECT',
    ':authority': formatHostPort(opts.dstIp, opts.dstPort),
    baggage: opts.source ? buildBaggage(opts.source) : '',
    forwarded: buildForwarded(opts.srcIp, opts.srcPort, opts.serviceHost),
    traceparent: newTraceparent(),
  };
}

export type ConnectCheck = { ok: true; ip: string; port: number } | { ok: false; status: 400; reason: string };

/** Validate an incoming request's method and `:authority` (before any policy or routing). */
export function checkConnectRequest(headers: Record<string, string | string[] | undefined>): ConnectCheck {
  const method = headers[':method'];
  if (method !== 'CONNECT') return { ok: false, status: 400, reason: `method ${String(method)} is not CONNECT` };
  const authority = headers[':authority'];
  if (typeof authority !== 'string') return { ok: false, status: 400, reason: 'missing :authority' };
  const target = parseHostPort(authority);
  if (!target) return { ok: false, status: 400, reason: `malformed :authority ${JSON.stringify(authority)}` };
  return { ok: true, ...target };
}
