// HBONE request headers: how a CONNECT names its target and carries the source's metadata.
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { parseHostPort } from '../net/ip.js';

// Request headers stay referenced by the HTTP/2 stream for as long as the tunnel is open, so the values we build are
// joined into one flat string each: `a + b` (or a template literal) would leave a tree of several strings behind.

/** formatHostPort's `ip:port` / `[v6]:port`, as parts to join. */
const hostPortParts = (ip: string, port: number): (string | number)[] => (isIP(ip) === 6 ? ['[', ip, ']:', port] : [ip, ':', port]);

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
  const parts = ['for="', ...hostPortParts(srcIp, srcPort), '"'];
  if (serviceHost) parts.push(';host=', serviceHost);
  return parts.join('');
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

const HEX = Buffer.from('0123456789abcdef', 'latin1');
const TRACEPARENT = Buffer.from(`00-${'0'.repeat(32)}-${'0'.repeat(16)}-00`, 'latin1');

/** A fresh W3C traceparent, not sampled: `00-<32 hex trace id>-<16 hex span id>-00`. */
export function newTraceparent(): string {
  if (poolOffset + ID_BYTES > pool.length) {
    pool = randomBytes(POOL_SIZE);
    poolOffset = 0;
  }
  // Hex digits written into a template and read out as one flat string.
  for (let i = 0; i < ID_BYTES; i++) {
    const b = pool[poolOffset + i]!;
    const at = i < 16 ? 3 + 2 * i : 4 + 2 * i; // trace id (16 bytes) after `00-`, span id (8 bytes) after the next `-`
    TRACEPARENT[at] = HEX[b >> 4]!;
    TRACEPARENT[at + 1] = HEX[b & 15]!;
  }
  poolOffset += ID_BYTES;
  return TRACEPARENT.toString('latin1');
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
  /** buildBaggage of the source workload; none when absent. */
  baggage?: string;
  serviceHost?: string;
}): ConnectRequestHeaders {
  return {
    ':method': 'CONNECT',
    ':authority': hostPortParts(opts.dstIp, opts.dstPort).join(''),
    baggage: opts.baggage ?? '',
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
