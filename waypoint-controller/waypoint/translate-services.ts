// Kubernetes Service + its Pods -> WaypointService (ports with their protocol, endpoints with their identity).
import type { V1Pod, V1Service, V1ServicePort } from '@kubernetes/client-node';
import { selects } from '../translate/labels.js';
import { podPortsFor, serviceHostname, toService, type MeshContext } from '../translate/service.js';
import { isReady } from '../translate/workload.js';
import type { Endpoint, WaypointPort, WaypointService } from './model.js';

/** What the waypoint translation needs of the mesh (a MeshContext minus what only workload xDS uses). */
export interface WaypointMesh {
  trustDomain: string;
  domainSuffix: string;
}

export const meshContext = (m: WaypointMesh): MeshContext => ({ clusterId: '', network: '', ...m });

/** Istio's protocols that the waypoint serves with an HTTP connection manager. */
const HTTP_PROTOCOLS = new Set(['http', 'http2', 'grpc', 'grpc-web', 'h2c']);
/** Kubernetes' well-known appProtocols, as Istio maps them. */
const KUBE_APP_PROTOCOLS: Record<string, string> = { 'kubernetes.io/h2c': 'http2', 'kubernetes.io/ws': 'http', 'kubernetes.io/wss': 'https' };

/** As Istio: appProtocol wins; else the port name's prefix before `-` (`http-web`, `grpc`); anything else is TCP. */
export function portProtocol(p: V1ServicePort): 'http' | 'tcp' {
  const app = p.appProtocol?.toLowerCase();
  const name = (p.name ?? '').toLowerCase();
  const proto = app ? (KUBE_APP_PROTOCOLS[app] ?? app) : name.startsWith('grpc-web') ? 'grpc-web' : name.split('-')[0]!;
  return HTTP_PROTOCOLS.has(proto) ? 'http' : 'tcp';
}

export const identityOf = (pod: V1Pod, trustDomain: string): string =>
  `${trustDomain}/ns/${pod.metadata?.namespace ?? ''}/sa/${pod.spec?.serviceAccountName || 'default'}`;

/** The service's endpoints: its selected pods that have an IP and have not finished; healthy when Running and Ready. */
export function endpointsOf(svc: V1Service, pods: Iterable<V1Pod>, trustDomain: string): Endpoint[] {
  const out: Endpoint[] = [];
  for (const pod of pods) {
    if (pod.metadata?.namespace !== svc.metadata?.namespace || !selects(svc.spec?.selector, pod.metadata?.labels)) continue;
    const ip = pod.status?.podIP;
    if (!ip || pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') continue;
    const ports: Record<number, number> = {};
    for (const p of podPortsFor(svc, pod).ports ?? []) if (p.servicePort && p.targetPort) ports[p.servicePort] = p.targetPort;
    out.push({ ip, ports, identity: identityOf(pod, trustDomain), healthy: isReady(pod) });
  }
  return out.sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0));
}

export function toWaypointService(svc: V1Service, pods: Iterable<V1Pod>, mesh: WaypointMesh): WaypointService {
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
    endpoints: endpointsOf(svc, pods, mesh.trustDomain),
  };
}
