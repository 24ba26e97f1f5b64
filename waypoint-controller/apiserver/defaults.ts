// Kind-specific defaulting done by a real API server (and its admission plugins) that clients rely on:
// Service ClusterIP allocation and port defaults, Namespace name label and phase, Pod phase and
// service account. Spec contents are otherwise not validated.
import type { StatusCause } from './errors.js';
import type { KubeObject } from './types.js';
import { isObject } from './types.js';

export interface ServiceCidr { base: number; size: number }

export function parseCidr(cidr: string): ServiceCidr {
  const m = cidr.match(/^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/);
  if (!m) throw new Error(`bad IPv4 CIDR ${cidr}`);
  const bits = Number(m[5]);
  const ip = ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
  const size = 2 ** (32 - bits);
  return { base: ip - (ip % size), size };
}

const ipText = (n: number): string => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');

/** The lowest free address of the range (skipping the network address). */
export function allocateIp(cidr: ServiceCidr, used: Set<string>): string {
  for (let i = 1; i < cidr.size - 1; i++) {
    const ip = ipText(cidr.base + i);
    if (!used.has(ip)) return ip;
  }
  throw new Error('service IP range exhausted');
}

type Obj = Record<string, unknown>;
const spec = (o: KubeObject): Obj => {
  if (!isObject(o.spec)) o.spec = {};
  return o.spec as Obj;
};

/** Defaults for a Service; allocates a ClusterIP from `cidr` unless headless/ExternalName/given. */
export function defaultService(svc: KubeObject, previous: KubeObject | undefined, cidr: ServiceCidr, used: () => Set<string>): StatusCause[] {
  const s = spec(svc);
  const prev = previous ? spec(previous) : undefined;
  s.type ??= 'ClusterIP';
  s.sessionAffinity ??= 'None';
  if (Array.isArray(s.ports)) {
    for (const p of s.ports as Obj[]) {
      if (!isObject(p)) continue;
      p.protocol ??= 'TCP';
      p.targetPort ??= p.port as number;
    }
  }
  if (s.type === 'ExternalName') return [];
  if (prev && prev.clusterIP && !s.clusterIP) s.clusterIP = prev.clusterIP;
  if (prev && prev.clusterIP && s.clusterIP !== prev.clusterIP) {
    return [{ reason: 'FieldValueInvalid', field: 'spec.clusterIPs[0]', message: `Invalid value: ${JSON.stringify(s.clusterIP)}: field is immutable` }];
  }
  if (!s.clusterIP) s.clusterIP = allocateIp(cidr, used());
  s.clusterIPs = [s.clusterIP as string];
  if (s.clusterIP !== 'None') {
    s.ipFamilies ??= [String(s.clusterIP).includes(':') ? 'IPv6' : 'IPv4'];
    s.ipFamilyPolicy ??= 'SingleStack';
  }
  return [];
}

/** Status on create for kinds with a status subresource (the create body's status is ignored). */
export function initialStatus(kind: string): Obj | undefined {
  if (kind === 'Pod') return { phase: 'Pending' };
  if (kind === 'Namespace') return { phase: 'Active' };
  return undefined;
}

/** Defaults applied on every write. Returns validation causes for immutable-field changes. */
export function applyDefaults(obj: KubeObject, previous: KubeObject | undefined, cidr: ServiceCidr, usedIps: () => Set<string>): StatusCause[] {
  switch (obj.kind) {
    case 'Namespace':
      obj.metadata.labels = { ...obj.metadata.labels, 'kubernetes.io/metadata.name': obj.metadata.name! };
      if (!isObject(obj.status)) obj.status = { phase: 'Active' };
      return [];
    case 'Pod': {
      const s = spec(obj);
      s.serviceAccountName ??= (s.serviceAccount as string | undefined) ?? 'default';
      if (previous) {
        const p = spec(previous);
        if (p.nodeName && s.nodeName !== p.nodeName) {
          return [{ reason: 'FieldValueForbidden', field: 'spec.nodeName', message: 'Forbidden: pod updates may not change fields other than those allowed' }];
        }
      }
      return [];
    }
    case 'Service':
      return defaultService(obj, previous, cidr, usedIps);
    default:
      return [];
  }
}
