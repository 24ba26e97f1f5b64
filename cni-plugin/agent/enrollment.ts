// Which pods belong in the mesh, as Istio's node agent decides (cni/pkg/util, informers.go): the pod or its
// namespace is labelled istio.io/dataplane-mode=ambient, the pod is not labelled `none`, its namespace is not
// excluded, it does not use the host network, has no sidecar and is not ztunnel itself.
import type { V1Namespace, V1Pod } from '@kubernetes/client-node';

export const DATAPLANE_MODE_LABEL = 'istio.io/dataplane-mode';
export const AMBIENT = 'ambient';
export const NONE = 'none';
export const REDIRECTION_ANNOTATION = 'ambient.istio.io/redirection';
export const REDIRECTION_ENABLED = 'enabled';
export const REDIRECTION_PENDING = 'pending';
const SIDECAR_STATUS_ANNOTATION = 'sidecar.istio.io/status';

export interface EnrollmentConfig {
  /** Namespaces whose pods are never enrolled (default kube-system). */
  excludeNamespaces: ReadonlySet<string>;
  /** Where ztunnel runs (its pods are never enrolled). */
  systemNamespace: string;
}

export const namespaceAmbient = (ns: V1Namespace | undefined) => ns?.metadata?.labels?.[DATAPLANE_MODE_LABEL] === AMBIENT;

/** Whether the labels put the pod in the mesh (Istio's enablement selectors). */
export function labelsSelect(pod: V1Pod, ns: V1Namespace | undefined): boolean {
  const mode = pod.metadata?.labels?.[DATAPLANE_MODE_LABEL];
  if (mode === AMBIENT) return true;
  if (mode === NONE) return false;
  return namespaceAmbient(ns);
}

export const podTerminal = (pod: V1Pod) => pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';

/** Why a pod is not to be enrolled, or undefined when it is. */
export function notEnrolledBecause(pod: V1Pod, ns: V1Namespace | undefined, cfg: EnrollmentConfig): string | undefined {
  const namespace = pod.metadata?.namespace ?? 'default';
  if (!labelsSelect(pod, ns)) return 'not labelled for ambient';
  if (cfg.excludeNamespaces.has(namespace)) return `namespace ${namespace} is excluded`;
  if (pod.spec?.hostNetwork) return 'uses the host network';
  if (pod.metadata?.annotations?.[SIDECAR_STATUS_ANNOTATION] !== undefined) return 'has a sidecar';
  if (namespace === cfg.systemNamespace && pod.metadata?.labels?.app === 'ztunnel') return 'is ztunnel';
  if (podTerminal(pod)) return 'has terminated';
  return undefined;
}

export const shouldEnroll = (pod: V1Pod, ns: V1Namespace | undefined, cfg: EnrollmentConfig) => notEnrolledBecause(pod, ns, cfg) === undefined;

/** The pod's IPs (status.podIPs, else status.podIP). */
export function podIps(pod: V1Pod): string[] {
  const ips = (pod.status?.podIPs ?? []).map((p) => p.ip).filter((ip): ip is string => !!ip);
  if (ips.length) return ips;
  return pod.status?.podIP ? [pod.status.podIP] : [];
}

export const redirectionState = (pod: V1Pod) => pod.metadata?.annotations?.[REDIRECTION_ANNOTATION];
