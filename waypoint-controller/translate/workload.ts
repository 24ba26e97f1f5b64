// Kubernetes Pod (+ its namespace, the services selecting it, the policies selecting it) -> istio.workload.Workload.
import type { V1Namespace, V1Node, V1Pod, V1Service } from '@kubernetes/client-node';
import type { GatewayAddress, MessageInit, PortList, Workload } from '../../protos/index.js';
import { ipToBytes } from '../../ztunnel/net/ip.js';
import { canonicalName, canonicalRevision, isEnrolled, owningWorkload, selects } from './labels.js';
import { podPortsFor, serviceKey, type MeshContext } from './service.js';

export const workloadUid = (clusterId: string, pod: V1Pod): string => `${clusterId}//v1/Pod/${pod.metadata?.namespace}/${pod.metadata?.name}`;

export function isReady(pod: V1Pod): boolean {
  return pod.status?.phase === 'Running' && !!pod.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
}

/** Undefined for pods that are no workload yet or ever: no IP, host network, finished. */
export function toWorkload(
  pod: V1Pod,
  ns: V1Namespace | undefined,
  services: Iterable<V1Service>,
  selectorPolicies: Iterable<{ key: string; namespace: string; selector: Record<string, string> }>,
  ctx: MeshContext,
  node?: V1Node,
  waypoint?: MessageInit<GatewayAddress>,
): MessageInit<Workload> | undefined {
  const ips = (pod.status?.podIPs?.map((p) => p.ip) ?? (pod.status?.podIP ? [pod.status.podIP] : [])).filter(Boolean);
  if (ips.length === 0 || pod.spec?.hostNetwork) return undefined;
  if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return undefined;
  const namespace = pod.metadata?.namespace ?? '';
  const labels = pod.metadata?.labels;
  const owner = owningWorkload(pod);
  const svcPorts: Record<string, MessageInit<PortList>> = {};
  for (const svc of services) {
    if (svc.metadata?.namespace === namespace && selects(svc.spec?.selector, labels)) svcPorts[serviceKey(svc, ctx)] = podPortsFor(svc, pod);
  }
  const policies: string[] = [];
  for (const p of selectorPolicies) if (p.namespace === namespace && selects(p.selector, labels)) policies.push(p.key);
  return {
    uid: workloadUid(ctx.clusterId, pod),
    name: pod.metadata?.name ?? '',
    namespace,
    addresses: ips.map(ipToBytes),
    network: ctx.network,
    tunnelProtocol: isEnrolled(pod, ns) ? 'HBONE' : 'NONE',
    trustDomain: ctx.trustDomain,
    serviceAccount: pod.spec?.serviceAccountName || 'default',
    node: pod.spec?.nodeName ?? '',
    canonicalName: canonicalName(pod.metadata, owner.name),
    canonicalRevision: canonicalRevision(pod.metadata),
    workloadType: owner.type,
    workloadName: owner.name,
    status: isReady(pod) ? 'HEALTHY' : 'UNHEALTHY',
    clusterId: ctx.clusterId,
    services: svcPorts,
    authorizationPolicies: policies.sort(),
    ...(node ? { locality: localityOf(node) } : {}),
    ...(waypoint ? { waypoint } : {}),
  };
}

/** The node's topology labels, which Istio uses for locality-aware routing. */
export function localityOf(node: V1Node): { region: string; zone: string; subzone: string } {
  const l = node.metadata?.labels ?? {};
  return { region: l['topology.kubernetes.io/region'] ?? '', zone: l['topology.kubernetes.io/zone'] ?? '', subzone: l['topology.istio.io/subzone'] ?? '' };
}
