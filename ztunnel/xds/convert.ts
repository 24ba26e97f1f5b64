// Pure conversion of workload xDS protos (istio.workload.Address, istio.security.Authorization) into the state model.
// Every validation problem throws an XdsConvertError whose message names the field, so the client can NACK with it.
import type * as pb from '../../protos/index.js';
import { bytesToIp, canonicalIp } from '../net/ip.js';
import { flat, intern, sharedGatewayAddress, sharedPortMap, sharedProfile, sharedServicePorts, sharedStrings } from '../state/intern.js';
import { ProfiledWorkload } from '../state/profiled-workload.js';
import type {
  Authorization, Cidr, GatewayAddress, HealthStatus, InboundProtocol, NetworkAddress, PortMap, RbacAction, RbacMatch, RbacScope, Service,
  ServiceAccountMatch, StringMatch, Workload,
} from '../state/types.js';

export interface ConvertDefaults {
  trustDomain: string;
  clusterId: string;
}

export class XdsConvertError extends Error {}

function fail(path: string, msg: string): never {
  throw new XdsConvertError(`${path}: ${msg}`);
}

function nonEmpty(v: string, path: string): string {
  if (!v) fail(path, 'required');
  return v;
}

function ipFromBytes(b: Uint8Array | undefined, path: string): string {
  if (!b || (b.length !== 4 && b.length !== 16)) fail(path, `an IP address has 4 or 16 bytes, got ${b?.length ?? 0}`);
  return canonicalIp(bytesToIp(b));
}

function port(n: number, path: string): number {
  if (!Number.isInteger(n) || n < 0 || n > 65535) fail(path, `not a port: ${n}`);
  return n;
}

function enumName<T extends string>(v: string | number, path: string, map: Record<string, T>): T {
  const hit = typeof v === 'string' ? map[v] : undefined;
  if (hit === undefined) fail(path, `unsupported value ${JSON.stringify(v)} (known: ${Object.keys(map).join(', ')})`);
  return hit;
}

const serviceKeyRe = /^[^/]+\/[^/]+$/;

export type ConvertedAddress = { kind: 'workload'; workload: Workload } | { kind: 'service'; service: Service };

function portMap(ports: pb.Port[], path: string): PortMap {
  return sharedPortMap(ports.map((pt, i) => [port(pt.servicePort, `${path}[${i}].servicePort`), port(pt.targetPort, `${path}[${i}].targetPort`)]));
}

function networkAddress(a: pb.NetworkAddress, path: string): NetworkAddress {
  return { network: intern(a.network), address: ipFromBytes(a.address, `${path}.address`) };
}

/** A waypoint: by hostname (`namespace` and `hostname`) or by address; as Istio's ztunnel, one of them must be set. */
function gatewayAddress(g: pb.GatewayAddress, path: string): GatewayAddress {
  const hboneMtlsPort = port(g.hboneMtlsPort, `${path}.hboneMtlsPort`);
  if (g.hostname) {
    const namespace = nonEmpty(g.hostname.namespace, `${path}.hostname.namespace`);
    return sharedGatewayAddress({ kind: 'hostname', namespace, hostname: nonEmpty(g.hostname.hostname, `${path}.hostname.hostname`), hboneMtlsPort });
  }
  if (g.address) return sharedGatewayAddress({ kind: 'address', ...networkAddress(g.address, `${path}.address`), hboneMtlsPort });
  fail(path, 'neither hostname nor address is set');
}

// The state keeps what this returns for as long as the workload exists: unique strings are flattened, repeated ones,
// port maps and the fields replicas have in common shared (see state/intern.ts and state/profiled-workload.ts).
export function convertWorkload(w: pb.Workload, d: ConvertDefaults, path = 'workload'): Workload {
  const uid = flat(nonEmpty(w.uid, `${path}.uid`));
  const rawName = nonEmpty(w.name, `${path}.name`);
  // A pod's uid ends with its name (`<cluster>//v1/Pod/<ns>/<name>`): the name can then be a slice of the uid's characters.
  const name = uid.endsWith(`/${rawName}`) ? uid.slice(uid.length - rawName.length) : flat(rawName);
  const namespace = intern(nonEmpty(w.namespace, `${path}.namespace`));
  const services: [string, PortMap][] = [];
  for (const [key, list] of Object.entries(w.services ?? {})) {
    const p = `${path}.services[${JSON.stringify(key)}]`;
    if (!serviceKeyRe.test(key)) fail(p, 'expected "<namespace>/<hostname>"');
    services.push([key, portMap(list?.ports ?? [], `${p}.ports`)]);
  }
  const protocol = enumName<InboundProtocol>(w.tunnelProtocol, `${path}.tunnelProtocol`, { NONE: 'TCP', HBONE: 'HBONE' });
  const status = enumName<HealthStatus>(w.status, `${path}.status`, { HEALTHY: 'Healthy', UNHEALTHY: 'Unhealthy' });
  const workloadType = typeof w.workloadType === 'string' ? intern(w.workloadType.toLowerCase()) : fail(`${path}.workloadType`, `unsupported value ${w.workloadType}`);
  const workloadIps = w.addresses.map((a, i) => ipFromBytes(a, `${path}.addresses[${i}]`));
  // What the workload has in common with its deployment's replicas: one shared profile for them all.
  const profile = sharedProfile({
    namespace,
    serviceAccount: intern(w.serviceAccount || 'default'),
    trustDomain: intern(w.trustDomain || d.trustDomain),
    network: intern(w.network),
    protocol,
    hostname: intern(w.hostname),
    // Empty stands for the workload's name (the profile is shared by workloads of different names).
    canonicalName: intern(w.canonicalName),
    canonicalRevision: intern(w.canonicalRevision || 'latest'),
    workloadName: intern(w.workloadName),
    workloadType,
    clusterId: intern(w.clusterId || d.clusterId),
    status,
    authorizationPolicies: sharedStrings(w.authorizationPolicies),
    services: sharedServicePorts(services),
    waypoint: w.waypoint && gatewayAddress(w.waypoint, `${path}.waypoint`),
  });
  return new ProfiledWorkload(uid, name, workloadIps, intern(w.node), profile);
}

export function convertService(s: pb.Service, path = 'service'): Service {
  return {
    name: intern(nonEmpty(s.name, `${path}.name`)),
    namespace: intern(nonEmpty(s.namespace, `${path}.namespace`)),
    hostname: intern(nonEmpty(s.hostname, `${path}.hostname`)),
    vips: s.addresses.map((a, i) => networkAddress(a, `${path}.addresses[${i}]`)),
    ports: portMap(s.ports, `${path}.ports`),
    subjectAltNames: sharedStrings(s.subjectAltNames),
    // Only when set: most services have none.
    ...(s.waypoint && { waypoint: gatewayAddress(s.waypoint, `${path}.waypoint`) }),
  };
}

export function convertAddress(a: pb.Address, d: ConvertDefaults): ConvertedAddress {
  if (a.workload) return { kind: 'workload', workload: convertWorkload(a.workload, d) };
  if (a.service) return { kind: 'service', service: convertService(a.service) };
  fail('address', 'neither workload nor service is set');
}

// Policies are kept as long as they exist, like workloads: their strings are flattened, and those that recur across
// policies (namespaces, principals, service accounts) interned.
function stringMatch(m: pb.StringMatch, path: string): StringMatch {
  if (m.exact !== undefined) return { exact: intern(m.exact) };
  if (m.prefix !== undefined) return { prefix: intern(m.prefix) };
  if (m.suffix !== undefined) return { suffix: intern(m.suffix) };
  if (m.presence !== undefined) return { presence: true };
  fail(path, 'no match type set');
}

function cidr(a: pb.AuthzAddress, path: string): Cidr {
  const address = ipFromBytes(a.address, `${path}.address`);
  const max = a.address.length * 8;
  if (!Number.isInteger(a.length) || a.length < 0 || a.length > max) fail(`${path}.length`, `prefix length ${a.length} is not within 0..${max}`);
  // An IPv4-mapped IPv6 prefix is compared as IPv4 (addresses are canonical).
  if (a.address.length === 16 && !address.includes(':')) return { address, prefixLen: Math.max(0, a.length - 96) };
  return { address, prefixLen: a.length };
}

function rbacMatch(m: pb.Match, path: string): RbacMatch {
  const strings = (xs: pb.StringMatch[], k: string) => xs.map((x, i) => stringMatch(x, `${path}.${k}[${i}]`));
  const cidrs = (xs: pb.AuthzAddress[], k: string) => xs.map((x, i) => cidr(x, `${path}.${k}[${i}]`));
  const ports = (xs: number[], k: string) => xs.map((x, i) => port(x, `${path}.${k}[${i}]`));
  const sas = (xs: pb.ServiceAccountMatch[], k: string): ServiceAccountMatch[] =>
    xs.map((x, i) => ({ namespace: intern(x.namespace), serviceAccount: intern(nonEmpty(x.serviceAccount, `${path}.${k}[${i}].serviceAccount`)) }));
  return {
    namespaces: strings(m.namespaces, 'namespaces'), notNamespaces: strings(m.notNamespaces, 'notNamespaces'),
    principals: strings(m.principals, 'principals'), notPrincipals: strings(m.notPrincipals, 'notPrincipals'),
    serviceAccounts: sas(m.serviceAccounts, 'serviceAccounts'), notServiceAccounts: sas(m.notServiceAccounts, 'notServiceAccounts'),
    sourceIps: cidrs(m.sourceIps, 'sourceIps'), notSourceIps: cidrs(m.notSourceIps, 'notSourceIps'),
    destinationIps: cidrs(m.destinationIps, 'destinationIps'), notDestinationIps: cidrs(m.notDestinationIps, 'notDestinationIps'),
    destinationPorts: ports(m.destinationPorts, 'destinationPorts'), notDestinationPorts: ports(m.notDestinationPorts, 'notDestinationPorts'),
  };
}

export function convertAuthorization(p: pb.Authorization, path = 'authorization'): Authorization {
  return {
    name: flat(nonEmpty(p.name, `${path}.name`)),
    namespace: intern(p.namespace),
    scope: enumName<RbacScope>(p.scope, `${path}.scope`, { GLOBAL: 'Global', NAMESPACE: 'Namespace', WORKLOAD_SELECTOR: 'WorkloadSelector' }),
    action: enumName<RbacAction>(p.action, `${path}.action`, { ALLOW: 'Allow', DENY: 'Deny' }),
    rules: p.rules.map((r, ri) =>
      r.clauses.map((c, ci) => c.matches.map((m, mi) => rbacMatch(m, `${path}.rules[${ri}].clauses[${ci}].matches[${mi}]`))),
    ),
    dryRun: p.dryRun,
  };
}
