// Parses ztunnel's local config YAML (the LOCAL_XDS_PATH format) into the state model.
// Strict like Istio's ztunnel: unknown fields and bad values are errors that name their path.
import { isIP } from 'node:net';
import { parse as parseYaml } from 'yaml';
import { canonicalIp, parseCidr } from '../net/ip.js';
import type {
  Authorization, GatewayAddress, HealthStatus, InboundProtocol, MeshConfig, NetworkAddress, RbacAction, RbacMatch, RbacScope,
  Service, ServiceAccountMatch, StringMatch, Workload,
} from '../state/types.js';

export interface LocalDefaults {
  trustDomain: string;
  clusterId: string;
}

type Obj = Record<string, unknown>;

class ConfigError extends Error {}

function fail(path: string, msg: string): never {
  throw new ConfigError(`${path}: ${msg}`);
}

function obj(v: unknown, path: string, allowed: readonly string[]): Obj {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(path, 'expected a mapping');
  for (const k of Object.keys(v)) if (!allowed.includes(k)) fail(`${path}.${k}`, `unknown field (known: ${allowed.join(', ')})`);
  return v as Obj;
}

function list(v: unknown, path: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) fail(path, 'expected a list');
  return v;
}

function str(v: unknown, path: string, def?: string): string {
  if (v === undefined || v === null) {
    if (def !== undefined) return def;
    fail(path, 'required');
  }
  if (typeof v !== 'string') fail(path, 'expected a string');
  return v;
}

function oneOf<T extends string>(v: unknown, path: string, values: readonly T[], def: T): T {
  const s = str(v, path, def);
  const hit = values.find((x) => x.toLowerCase() === s.toLowerCase());
  if (!hit) fail(path, `expected one of ${values.join(', ')}, got ${JSON.stringify(s)}`);
  return hit;
}

function port(v: unknown, path: string): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 65535) fail(path, `not a port: ${JSON.stringify(v)}`);
  return n;
}

function ip(v: unknown, path: string): string {
  const s = str(v, path);
  if (!isIP(s)) fail(path, `not an IP address: ${JSON.stringify(s)}`);
  return canonicalIp(s);
}

function portMap(v: unknown, path: string): Map<number, number> {
  const m = new Map<number, number>();
  if (v === undefined || v === null) return m;
  for (const [k, t] of Object.entries(obj(v, path, Object.keys(v as Obj)))) m.set(port(k, `${path}.${k}`), port(t, `${path}.${k}`));
  return m;
}

const WORKLOAD_FIELDS = [
  'uid', 'name', 'namespace', 'serviceAccount', 'trustDomain', 'workloadIps', 'network', 'protocol', 'node', 'hostname',
  'canonicalName', 'canonicalRevision', 'workloadName', 'workloadType', 'clusterId', 'status', 'authorizationPolicies', 'services',
  'waypoint',
] as const;

function workload(v: unknown, path: string, d: LocalDefaults): Workload {
  const o = obj(v, path, WORKLOAD_FIELDS);
  const name = str(o.name, `${path}.name`);
  const namespace = str(o.namespace, `${path}.namespace`);
  const clusterId = str(o.clusterId, `${path}.clusterId`, d.clusterId);
  const services = new Map<string, Map<number, number>>();
  if (o.services !== undefined && o.services !== null) {
    const s = obj(o.services, `${path}.services`, Object.keys(o.services as Obj));
    for (const [key, ports] of Object.entries(s)) {
      if (!/^[^/]+\/[^/]+$/.test(key)) fail(`${path}.services.${key}`, 'expected "<namespace>/<hostname>"');
      services.set(key, portMap(ports, `${path}.services.${key}`));
    }
  }
  return {
    uid: str(o.uid, `${path}.uid`, `${clusterId}//v1/Pod/${namespace}/${name}`),
    name,
    namespace,
    serviceAccount: str(o.serviceAccount, `${path}.serviceAccount`, 'default'),
    trustDomain: str(o.trustDomain, `${path}.trustDomain`, d.trustDomain),
    workloadIps: list(o.workloadIps, `${path}.workloadIps`).map((x, i) => ip(x, `${path}.workloadIps[${i}]`)),
    network: str(o.network, `${path}.network`, ''),
    protocol: oneOf<InboundProtocol>(o.protocol, `${path}.protocol`, ['HBONE', 'TCP'], 'TCP'),
    node: str(o.node, `${path}.node`, ''),
    hostname: str(o.hostname, `${path}.hostname`, ''),
    canonicalName: str(o.canonicalName, `${path}.canonicalName`, name),
    canonicalRevision: str(o.canonicalRevision, `${path}.canonicalRevision`, 'latest'),
    workloadName: str(o.workloadName, `${path}.workloadName`, name),
    workloadType: str(o.workloadType, `${path}.workloadType`, 'pod'),
    clusterId,
    status: oneOf<HealthStatus>(o.status, `${path}.status`, ['Healthy', 'Unhealthy'], 'Healthy'),
    authorizationPolicies: list(o.authorizationPolicies, `${path}.authorizationPolicies`).map((x, i) => str(x, `${path}.authorizationPolicies[${i}]`)),
    services,
    ...waypointField(o.waypoint, `${path}.waypoint`),
  };
}

function networkAddress(v: unknown, path: string): NetworkAddress {
  const s = str(v, path);
  const slash = s.lastIndexOf('/');
  return { network: slash < 0 ? '' : s.slice(0, slash), address: ip(s.slice(slash + 1), path) };
}

/**
 * A waypoint as Istio's ztunnel writes it: `{destination: <network>/<ip> | <namespace>/<hostname>, hboneMtlsPort}`.
 * As there, a destination that ends in an IP is an address, anything else a hostname. The port may be left out: istiod
 * always sends HBONE's 15008.
 */
function gatewayAddress(v: unknown, path: string): GatewayAddress {
  const o = obj(v, path, ['destination', 'hboneMtlsPort']);
  const dest = str(o.destination, `${path}.destination`);
  const hboneMtlsPort = o.hboneMtlsPort === undefined ? 15008 : port(o.hboneMtlsPort, `${path}.hboneMtlsPort`);
  if (isIP(dest.slice(dest.lastIndexOf('/') + 1))) return { kind: 'address', ...networkAddress(dest, `${path}.destination`), hboneMtlsPort };
  const m = /^([^/]+)\/([^/]+)$/.exec(dest);
  if (!m) fail(`${path}.destination`, `expected "<network>/<ip>" or "<namespace>/<hostname>", got ${JSON.stringify(dest)}`);
  return { kind: 'hostname', namespace: m[1]!, hostname: m[2]!, hboneMtlsPort };
}

/** `{waypoint}` when the field is set, else nothing (a workload or service without one has no such property). */
const waypointField = (v: unknown, path: string): { waypoint?: GatewayAddress } =>
  v === undefined || v === null ? {} : { waypoint: gatewayAddress(v, path) };

function service(v: unknown, path: string): Service {
  const o = obj(v, path, ['name', 'namespace', 'hostname', 'vips', 'ports', 'subjectAltNames', 'waypoint']);
  return {
    name: str(o.name, `${path}.name`),
    namespace: str(o.namespace, `${path}.namespace`),
    hostname: str(o.hostname, `${path}.hostname`),
    vips: list(o.vips, `${path}.vips`).map((x, i) => networkAddress(x, `${path}.vips[${i}]`)),
    ports: portMap(o.ports, `${path}.ports`),
    subjectAltNames: list(o.subjectAltNames, `${path}.subjectAltNames`).map((x, i) => str(x, `${path}.subjectAltNames[${i}]`)),
    ...waypointField(o.waypoint, `${path}.waypoint`),
  };
}

function stringMatch(v: unknown, path: string): StringMatch {
  // ztunnel writes these as {Exact: x} / {Prefix: x} / {Suffix: x} / {Presence: []}; accept lower-case too.
  const o = obj(v, path, ['Exact', 'Prefix', 'Suffix', 'Presence', 'exact', 'prefix', 'suffix', 'presence']);
  const keys = Object.keys(o);
  if (keys.length !== 1) fail(path, 'expected exactly one of Exact, Prefix, Suffix, Presence');
  const kind = keys[0]!.toLowerCase();
  if (kind === 'presence') return { presence: true };
  const value = str(o[keys[0]!], `${path}.${keys[0]}`);
  return kind === 'exact' ? { exact: value } : kind === 'prefix' ? { prefix: value } : { suffix: value };
}

const MATCH_FIELDS = [
  'namespaces', 'notNamespaces', 'principals', 'notPrincipals', 'serviceAccounts', 'notServiceAccounts',
  'sourceIps', 'notSourceIps', 'destinationIps', 'notDestinationIps', 'destinationPorts', 'notDestinationPorts',
] as const;

function rbacMatch(v: unknown, path: string): RbacMatch {
  const o = obj(v, path, MATCH_FIELDS);
  const strings = (k: string) => list(o[k], `${path}.${k}`).map((x, i) => stringMatch(x, `${path}.${k}[${i}]`));
  const cidrs = (k: string) =>
    list(o[k], `${path}.${k}`).map((x, i) => {
      try {
        return parseCidr(str(x, `${path}.${k}[${i}]`));
      } catch (e) {
        return fail(`${path}.${k}[${i}]`, (e as Error).message);
      }
    });
  const ports = (k: string) => list(o[k], `${path}.${k}`).map((x, i) => port(x, `${path}.${k}[${i}]`));
  const sas = (k: string): ServiceAccountMatch[] =>
    list(o[k], `${path}.${k}`).map((x, i) => {
      const p = `${path}.${k}[${i}]`;
      const s = obj(x, p, ['namespace', 'serviceAccount']);
      return { namespace: str(s.namespace, `${p}.namespace`), serviceAccount: str(s.serviceAccount, `${p}.serviceAccount`) };
    });
  return {
    namespaces: strings('namespaces'), notNamespaces: strings('notNamespaces'),
    principals: strings('principals'), notPrincipals: strings('notPrincipals'),
    serviceAccounts: sas('serviceAccounts'), notServiceAccounts: sas('notServiceAccounts'),
    sourceIps: cidrs('sourceIps'), notSourceIps: cidrs('notSourceIps'),
    destinationIps: cidrs('destinationIps'), notDestinationIps: cidrs('notDestinationIps'),
    destinationPorts: ports('destinationPorts'), notDestinationPorts: ports('notDestinationPorts'),
  };
}

function policy(v: unknown, path: string): Authorization {
  const o = obj(v, path, ['name', 'namespace', 'scope', 'action', 'rules', 'dryRun']);
  if (o.dryRun !== undefined && typeof o.dryRun !== 'boolean') fail(`${path}.dryRun`, 'expected true or false');
  return {
    name: str(o.name, `${path}.name`),
    namespace: str(o.namespace, `${path}.namespace`),
    scope: oneOf<RbacScope>(o.scope, `${path}.scope`, ['Global', 'Namespace', 'WorkloadSelector'], 'WorkloadSelector'),
    action: oneOf<RbacAction>(o.action, `${path}.action`, ['Allow', 'Deny'], 'Allow'),
    rules: list(o.rules, `${path}.rules`).map((rule, r) =>
      list(rule, `${path}.rules[${r}]`).map((clause, c) =>
        list(clause, `${path}.rules[${r}][${c}]`).map((m, i) => rbacMatch(m, `${path}.rules[${r}][${c}][${i}]`)),
      ),
    ),
    dryRun: o.dryRun === true,
  };
}

/** Parse the YAML text; throws an Error naming the offending path when anything is wrong. */
export function parseLocalConfig(text: string, d: LocalDefaults): MeshConfig {
  let doc: unknown;
  try {
    doc = parseYaml(text) ?? {};
  } catch (e) {
    throw new ConfigError(`not valid YAML: ${(e as Error).message}`);
  }
  const o = obj(doc, 'config', ['workloads', 'services', 'policies']);
  const cfg: MeshConfig = {
    workloads: list(o.workloads, 'workloads').map((w, i) => workload(w, `workloads[${i}]`, d)),
    services: list(o.services, 'services').map((s, i) => service(s, `services[${i}]`)),
    policies: list(o.policies, 'policies').map((p, i) => policy(p, `policies[${i}]`)),
  };
  const uids = new Set<string>();
  for (const w of cfg.workloads) {
    if (uids.has(w.uid)) throw new ConfigError(`workloads: duplicate uid ${w.uid}`);
    uids.add(w.uid);
  }
  return cfg;
}
