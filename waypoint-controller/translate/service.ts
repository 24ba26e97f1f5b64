// Kubernetes Service -> istio.workload.Service.
import type { V1Pod, V1Service, V1ServicePort } from '@kubernetes/client-node';
import type { GatewayAddress, MessageInit, Port, PortList, Service } from '../../protos/index.js';
import { ipToBytes } from '../../ztunnel/net/ip.js';

export interface MeshContext {
  clusterId: string;
  trustDomain: string;
  network: string;
  domainSuffix: string;
}

export const serviceHostname = (svc: V1Service, ctx: MeshContext): string =>
  `${svc.metadata?.name}.${svc.metadata?.namespace}.svc.${ctx.domainSuffix}`;

export const serviceKey = (svc: V1Service, ctx: MeshContext): string => `${svc.metadata?.namespace}/${serviceHostname(svc, ctx)}`;

/** Numeric target port, or 0 when it names a container port (resolved per workload). */
function numericTarget(p: V1ServicePort): number {
  const t = p.targetPort;
  if (t === undefined || t === null) return p.port;
  if (typeof t === 'number') return t;
  return /^\d+$/.test(t) ? Number(t) : 0;
}

export function toService(svc: V1Service, ctx: MeshContext, waypoint?: MessageInit<GatewayAddress>): MessageInit<Service> {
  const ips = (svc.spec?.clusterIPs ?? (svc.spec?.clusterIP ? [svc.spec.clusterIP] : [])).filter((ip) => ip && ip !== 'None');
  return {
    name: svc.metadata?.name ?? '',
    namespace: svc.metadata?.namespace ?? '',
    hostname: serviceHostname(svc, ctx),
    addresses: ips.map((ip) => ({ network: ctx.network, address: ipToBytes(ip) })),
    ports: (svc.spec?.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP').map((p) => ({ servicePort: p.port, targetPort: numericTarget(p) })),
    subjectAltNames: [],
    ...(waypoint ? { waypoint } : {}),
  };
}

/** The port map a pod gets for a service that selects it: named target ports resolved against the pod's containers. */
export function podPortsFor(svc: V1Service, pod: V1Pod): MessageInit<PortList> {
  const ports: MessageInit<Port>[] = [];
  for (const p of svc.spec?.ports ?? []) {
    if ((p.protocol ?? 'TCP') !== 'TCP') continue;
    let target = numericTarget(p);
    if (target === 0 && typeof p.targetPort === 'string') {
      for (const c of pod.spec?.containers ?? []) {
        const hit = c.ports?.find((cp) => cp.name === p.targetPort && (cp.protocol ?? 'TCP') === 'TCP');
        if (hit) target = hit.containerPort;
      }
    }
    if (target) ports.push({ servicePort: p.port, targetPort: target });
  }
  return { ports };
}
