// Kubernetes Service + its Pods -> WaypointService (ports with their protocol, endpoints with their identity).
import type { V1Namespace, V1Pod, V1Service, V1ServicePort } from '@kubernetes/client-node';
import { isEnrolled, selects } from '../translate/labels.js';
import { podPortsFor, serviceHostname, toService, type MeshContext } from '../translate/service.js';
import { isReady } from '../translate/workload.js';
import type { Endpoint, PortProtocol, WaypointPort, WaypointService } from './model.js';

/** What the waypoint translation needs of the mesh (a MeshContext minus what only workload xDS uses). */
export interface WaypointMesh {
  trustDomain: string;
  domainSuffix: string;
}

export const meshContext = (m: WaypointMesh): MeshContext => ({ clusterId: '', network: '', ...m });

/** Istio's protocol names (pkg/config/protocol Parse; plus h2c, which Istio sniffs to the same end) served as HTTP. */
const HTTP_PROTOCOLS = new Set(['http', 'http2', 'http_proxy', 'grpc', 'grpc-web', 'h2c']);
/** Istio's other known protocol names: declared not-HTTP, so TCP only (TLS passes through untouched). */
const TCP_PROTOCOLS = new Set(['tcp', 'udp', 'https', 'tls', 'mongo', 'redis', 'mysql']);
/** Kubernetes' well-known appProtocols, as Istio maps them. */
const KUBE_APP_PROTOCOLS: Record<string, string> = { 'kubernetes.io/h2c': 'http2', 'kubernetes.io/ws': 'http', 'kubernetes.io/wss': 'https' };
/** Istio never sniffs these undeclared ports (SMTP, DNS, MySQL, MongoDB): server-first protocols would wait. */
const WELL_KNOWN_TCP_PORTS = new Set([25, 53, 3306, 27017]);

/**
 * As Istio's ConvertProtocol: appProtocol, if set, replaces the name; then the prefix before `-` (`http-web`,
 * `grpc`; `grpc-web` whole). A known name decides; else a server-first well-known port is TCP; else unknown.
 */
export function portProtocol(p: V1ServicePort): PortProtocol {
  const declared = p.appProtocol ?? p.name ?? '';
  const lower = declared.toLowerCase();
  const proto = KUBE_APP_PROTOCOLS[declared] ?? (lower.startsWith('grpc-web') ? 'grpc-web' : lower.split('-')[0]!);
  if (HTTP_PROTOCOLS.has(proto)) return 'http';
  return TCP_PROTOCOLS.has(proto) || WELL_KNOWN_TCP_PORTS.has(p.port) ? 'tcp' : 'unknown';
}

/** Istio's label for a (sidecar) pod that accepts HBONE although not ambient-enrolled. */
const TUNNEL_LABEL = 'networking.istio.io/tunnel';

/** Whether the pod's ztunnel (or proxy) takes HBONE, as Istio's supportTunnel: ambient-enrolled or tunnel-labelled. */
export const supportsHbone = (pod: V1Pod, ns: V1Namespace | undefined): boolean =>
  isEnrolled(pod, ns) || pod.metadata?.labels?.[TUNNEL_LABEL] === 'http';

export const identityOf = (pod: V1Pod, trustDomain: string): string =>
  `${trustDomain}/ns/${pod.metadata?.namespace ?? ''}/sa/${pod.spec?.serviceAccountName || 'default'}`;

/**
 * The service's endpoints: its selected pods that have an IP and have not finished; healthy when Running and Ready.
 * `ns` is the service's (and so its pods') Namespace, for enrollment.
 */
export function endpointsOf(svc: V1Service, pods: Iterable<V1Pod>, trustDomain: string, ns: V1Namespace | undefined): Endpoint[] {
  const out: Endpoint[] = [];
  for (const pod of pods) {
    if (pod.metadata?.namespace !== svc.metadata?.namespace || !selects(svc.spec?.selector, pod.metadata?.labels)) continue;
    const ip = pod.status?.podIP;
    if (!ip || pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') continue;
    const ports: Record<number, number> = {};
    for (const p of podPortsFor(svc, pod).ports ?? []) if (p.servicePort && p.targetPort) ports[p.servicePort] = p.targetPort;
    out.push({ ip, ports, identity: identityOf(pod, trustDomain), healthy: isReady(pod), hbone: supportsHbone(pod, ns) });
  }
  return out.sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0));
}

export function toWaypointService(svc: V1Service, pods: Iterable<V1Pod>, mesh: WaypointMesh, ns: V1Namespace | undefined): WaypointService {
  const ctx = meshContext(mesh);
  // toService keeps TCP ports and knows numeric target ports (0 = named, resolved per endpoint).
  const targets = new Map((toService(svc, ctx).ports ?? []).map((p) => [p.servicePort ?? 0, p.targetPort ?? 0]));
  const ports: WaypointPort[] = (svc.spec?.ports ?? [])
    .filter((p) => targets.has(p.port))
    .map((p) => ({ port: p.port, targetPort: targets.get(p.port)!, protocol: portProtocol(p), routes: [] }));
  const vips = (svc.spec?.clusterIPs ?? (svc.spec?.clusterIP ? [svc.spec.clusterIP] : [])).filter((ip) => ip && ip !== 'None');
  return {
    namespace: svc.metadata?.namespace ?? '',
    name: svc.metadata?.name ?? '',
    hostname: serviceHostname(svc, ctx),
    vips,
    ports,
    endpoints: endpointsOf(svc, pods, mesh.trustDomain, ns),
  };
}
